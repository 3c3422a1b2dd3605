// Long-batch products of Q4_0, Q8_0, Q4_K, Q6_K and BF16 weights on Intel AMX tiles: the amx
// level (issue 13).
//
// Compiled into the avx512vnni copy of the kernels (namespace avx512vnni, its flags plus
// -mamx-tile -mamx-int8 -mamx-bf16; see CMakeLists.txt), because the amx level is avx512vnni's table
// with these products added: decoding and short batches keep the VNNI panel kernels, and a
// batch of kLongMin tokens or more goes through the tile unit on the very same panels.
//
// Why the panels need no second layout: a VNNI panel block of 32 values is, per group of four
// values, kLanes (16) dwords holding four bytes of each of 16 weight rows. That is the B operand
// of a tile product with K = 32 (TDPBSSD / TDPBSUD): 8 rows of 64 bytes, row k holding values
// 4k..4k+3 of each of the 16 output columns. Only the byte values change on the way to a tile,
// once per slice of the panel (see the driver below): Q8_0's u = q + 128 back to q, Q4_0's and
// the K-quants' nibbles widened to bytes (Q4_0 and Q6_K minus their offsets 8 and 32).
//
// (The K-quants' B tiles also carry their sub-block scales: see folded_pipeline.)
//
// The activations get their own tiles: 16 tokens x 32 bytes per block (Q8_0 quants), or
// 16 x 256 per super-block (Q8_K), row t the int8 quants of token t (the A operand), quantized
// exactly as for the VNNI kernels (q8_0_block, q8_K_block). C = A x B gives 16 tokens x 16 rows
// of int32 sums equal to the VNNI kernels' (offset-corrected, scale-weighted) integer sums, and
// they are scaled in the same order (block after block, the same FMAs): the results are the
// VNNI kernels' to the bit, which is what the tests check.
//
// The tests run the same code on EmuTiles (a scalar model of the tile instructions used) on
// any avx512vnni CPU, and on the real unit where AMX is present (first run on a Xeon with AMX
// on 2026-12-06: the unit gave its model's results). The K-quants fold their sub-block scales
// into the B tiles (folded_pipeline below); Q4_0 and Q8_0, whose fp16 block scales cannot be
// folded exactly, make a product and a store per block (pipeline).
#include "kernels/x86/panel_driver.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

constexpr int kAmxTok = 16;      // tokens per A tile (its rows)
constexpr int kLongMin = 16;     // fewer tokens stay on the VNNI panel kernels
constexpr size_t kABlock = static_cast<size_t>(kAmxTok) * 32;  // one block's A tile: 512 bytes

// Where an activation tile of kAmxTok tokens keeps its scales (d_off), corrections (c_off, if
// any) and how long it is.
struct LongLayout {
  size_t d_off, c_off, bytes;
};

// For Q4_0 / Q8_0 weights: quants [block][token][32], then float d[block][token]; padding
// tokens are all zero. (No offset corrections: the B tiles are signed.)
LongLayout long_layout(int64_t n_in) {
  const size_t nb = static_cast<size_t>(n_in / 32);
  LongLayout l;
  l.d_off = nb * kABlock;
  l.bytes = l.c_off = l.d_off + round_up(nb * kAmxTok * 4, 64);
  return l;
}

void long_prepare(const float* x, int n_tok, int64_t n_in, uint8_t* tile) {
  const LongLayout l = long_layout(n_in);
  std::memset(tile, 0, l.bytes);
  for (int t = 0; t < n_tok; ++t) {
    const float* xt = x + static_cast<int64_t>(t) * n_in;
    for (int64_t b = 0; b < n_in / 32; ++b) {
      alignas(64) int8_t qs[32];
      uint16_t dh;
      int32_t sum;
      const float d = q8_0_block(xt + 32 * b, qs, &dh, &sum);
      std::memcpy(tile + static_cast<size_t>(b) * kABlock + static_cast<size_t>(t) * 32, qs, 32);
      wr_f32(tile + l.d_off + (b * kAmxTok + t) * 4, d);
    }
  }
}

size_t long_tile_bytes(int64_t n_in) { return long_layout(n_in).bytes; }

// The tile registers: 0 and 1 = A (16 tokens x K bytes), 2 and 3 = B (K/4 x 64 bytes),
// 4 to 7 = C (16 x 16 int32). K is 32 (a Q4_0 / Q8_0 block) or 64 (a chunk of a K-quant
// super-block, folded_pipeline).
struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// The tile instructions, with the memory they read and write stated to the compiler. GCC 12's
// _tile_loadd names no memory at all, so the stores that fill a B tile may legally be moved past
// the load that reads them; and its _tile_stored clobbers all memory, which made the accumulators
// of the epilogue below go through the stack at every store (they live in registers otherwise).
// A load states a read of kSpan bytes from its base (by default 4 KiB, more than any tile here
// spans: 16 rows of at most 256 bytes apart); a store writes one 16 x 64-byte C tile, densely.
template <size_t kBytes>
struct Span {
  char bytes[kBytes];
};
using CTile = Span<1024>;
template <int T, size_t kSpan = 4096>
inline void tile_load(const void* base, size_t stride) {
  asm volatile("tileloadd (%0,%1,1), %%tmm%c3" ::"r"(base), "r"(stride),
               "m"(*static_cast<const Span<kSpan>*>(base)), "i"(T));
}
// A load whose rows lie further apart (the BF16 activations, a whole row of n_in values apart)
// says it may read any memory.
template <int T>
inline void tile_load_far(const void* base, size_t stride) {
  asm volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(base), "r"(stride), "i"(T) : "memory");
}
template <int T>
inline void tile_store(void* c) {
  asm volatile("tilestored %%tmm%c3, (%1,%2,1)" : "=m"(*static_cast<CTile*>(c)) : "r"(c), "r"(size_t{64}), "i"(T));
}
template <int T>
inline void tile_zero() {
  asm volatile("tilezero %%tmm%c0" ::"i"(T));
}
// C += A x B: int8 x int8 (kSignedB) or int8 x uint8 sums, or bf16 pairs to fp32 (tile_dp_bf16).
template <int C, int A, int B, bool kSignedB>
inline void tile_dp_i8() {
  if constexpr (kSignedB) asm volatile("tdpbssd %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(C), "i"(A), "i"(B));
  else asm volatile("tdpbsud %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(C), "i"(A), "i"(B));
}
template <int C, int A, int B>
inline void tile_dp_bf16() {
  asm volatile("tdpbf16ps %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(C), "i"(A), "i"(B));
}

// The tile unit: products into four C tiles in turn (see pipeline below), with two A and two B
// tiles taking turns.
template <int K>
struct HwTiles {
  static void begin() {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 2; ++i) {
      cfg.rows[i] = kAmxTok;
      cfg.colsb[i] = K;
      cfg.rows[2 + i] = K / 4;
      cfg.colsb[2 + i] = 64;
    }
    for (int i = 4; i < 8; ++i) {
      cfg.rows[i] = kAmxTok;
      cfg.colsb[i] = 64;
    }
    _tile_loadconfig(&cfg);
  }
  static void end() { _tile_release(); }
  template <int TA, int TB, int TC, bool kSignedB>
  static void product(const uint8_t* a, size_t a_stride, const uint8_t* b) {
    tile_zero<TC>();
    tile_load<TA>(a, a_stride);
    tile_load<TB>(b, 64);
    tile_dp_i8<TC, TA, TB, kSignedB>();
  }
  // One product into C tile 4 + slot (slot < 4; A and B tiles by the slot's parity), and the
  // store of C tile 4 + slot.
  template <bool kSignedB>
  static void issue(int slot, const uint8_t* a, size_t a_stride, const uint8_t* b) {
    switch (slot) {
      case 0: product<0, 2, 4, kSignedB>(a, a_stride, b); break;
      case 1: product<1, 3, 5, kSignedB>(a, a_stride, b); break;
      case 2: product<0, 2, 6, kSignedB>(a, a_stride, b); break;
      default: product<1, 3, 7, kSignedB>(a, a_stride, b); break;
    }
  }
  static void store(int slot, int32_t* c) {
    switch (slot) {
      case 0: tile_store<4>(c); break;
      case 1: tile_store<5>(c); break;
      case 2: tile_store<6>(c); break;
      default: tile_store<7>(c); break;
    }
  }
  // Scales folded into the weights (K = 64; see folded_pipeline): C tiles 4 + 2 * pair
  // (low bytes, unsigned) and 5 + 2 * pair (high bytes, signed if kSignedH) accumulate the
  // chunks of one unit; A alternates between tiles 0 and 1, the two B tiles are 2 and 3.
  template <int TA, int CL, int CH, bool kSignedH>
  static void chunk_in(const uint8_t* a, size_t a_stride, const uint8_t* bl, const uint8_t* bh) {
    tile_load<TA>(a, a_stride);
    tile_load<2>(bl, 64);
    tile_load<3>(bh, 64);
    tile_dp_i8<CL, TA, 2, false>();
    tile_dp_i8<CH, TA, 3, kSignedH>();
  }
  template <bool kSignedH>
  static void chunk(int pair, int k, const uint8_t* a, size_t a_stride, const uint8_t* bl, const uint8_t* bh) {
    if (pair == 0) {
      if (k == 0) {
        tile_zero<4>();
        tile_zero<5>();
      }
      if (k & 1) chunk_in<1, 4, 5, kSignedH>(a, a_stride, bl, bh);
      else chunk_in<0, 4, 5, kSignedH>(a, a_stride, bl, bh);
    } else {
      if (k == 0) {
        tile_zero<6>();
        tile_zero<7>();
      }
      if (k & 1) chunk_in<1, 6, 7, kSignedH>(a, a_stride, bl, bh);
      else chunk_in<0, 6, 7, kSignedH>(a, a_stride, bl, bh);
    }
  }
  static void store_pair(int pair, int32_t* cl, int32_t* ch) {
    if (pair == 0) {
      tile_store<4>(cl);
      tile_store<5>(ch);
    } else {
      tile_store<6>(cl);
      tile_store<7>(ch);
    }
  }
};

// The same instructions as the Intel SDM defines them (TILEZERO, TILELOADD, TDPBSSD / TDPBSUD,
// TILESTORED for these shapes), in plain code: C[m][n] += sum over k < K/4, i < 4 of
// int8(A[m][4k + i]) * int8 or uint8(B[k][4n + i]).
template <int K>
struct EmuTiles {
  static void begin() {}
  static void end() {}
  // C tile 4 + slot: the product is made at issue, copied out at store.
  static inline thread_local int32_t slots[4][256];
  template <bool kSignedB>
  static void issue(int slot, const uint8_t* a, size_t a_stride, const uint8_t* b) {
    for (int m = 0; m < kAmxTok; ++m) {
      for (int j = 0; j < 16; ++j) {
        int32_t s = 0;
        for (int k = 0; k < K / 4; ++k)
          for (int i = 0; i < 4; ++i)
            s += static_cast<int32_t>(static_cast<int8_t>(a[m * a_stride + 4 * k + i])) *
                 (kSignedB ? static_cast<int32_t>(static_cast<int8_t>(b[k * 64 + 4 * j + i]))
                           : static_cast<int32_t>(b[k * 64 + 4 * j + i]));
        slots[slot][m * 16 + j] = s;
      }
    }
  }
  static void store(int slot, int32_t* c) { std::memcpy(c, slots[slot], sizeof slots[slot]); }
  // The folded chunks (HwTiles::chunk): pairs of C tiles accumulated over a unit's chunks.
  static inline thread_local int32_t pairs[2][2][256];
  template <bool kSigned>
  static void dp(const uint8_t* a, size_t a_stride, const uint8_t* b, int32_t* c) {
    for (int m = 0; m < kAmxTok; ++m)
      for (int j = 0; j < 16; ++j)
        for (int k = 0; k < K / 4; ++k)
          for (int i = 0; i < 4; ++i)
            c[m * 16 + j] += static_cast<int32_t>(static_cast<int8_t>(a[m * a_stride + 4 * k + i])) *
                             (kSigned ? static_cast<int32_t>(static_cast<int8_t>(b[k * 64 + 4 * j + i]))
                                      : static_cast<int32_t>(b[k * 64 + 4 * j + i]));
  }
  template <bool kSignedH>
  static void chunk(int pair, int k, const uint8_t* a, size_t a_stride, const uint8_t* bl, const uint8_t* bh) {
    if (k == 0) std::memset(pairs[pair], 0, sizeof pairs[pair]);
    dp<false>(a, a_stride, bl, pairs[pair][0]);
    dp<kSignedH>(a, a_stride, bh, pairs[pair][1]);
  }
  static void store_pair(int pair, int32_t* cl, int32_t* ch) {
    std::memcpy(cl, pairs[pair][0], sizeof pairs[pair][0]);
    std::memcpy(ch, pairs[pair][1], sizeof pairs[pair][1]);
  }
};

// The tile products of n blocks, each block's sums handed on when stored: epi(j, c, acc) with
// c[t * 16 + i] the int32 sum of block j, token t, column i. Product j goes out, then product
// j - 1 is stored, then the sums of j - 2 (stored one step earlier) are handed on. So the tile
// unit has a product in flight while a store drains, and the epilogue does not read what the
// store just issued. Measured on a Xeon with AMX (2048 x 2048, 512 tokens, one thread, Q4_0):
// products in one C tile, each stored and read at once, 9.0 ms; four at a time, 8.8; this
// order, 7.5 (VNNI: 11.0); the accumulators in registers (next sentence), 7.0. c: four blocks' sums
// (4 KiB). The accumulators reach epi as an argument: captured by reference in epi, they
// stayed on the stack, with a load and a store per row of every epilogue.
template <class TT, bool kSignedB, class AOf, class BOf, class Epi>
inline void pipeline(int n, size_t a_stride, AOf a_of, BOf b_of, int32_t* c, VF* acc, Epi epi) {
  for (int j = 0; j < n + 2; ++j) {
    if (j < n) TT::template issue<kSignedB>(j & 3, a_of(j), a_stride, b_of(j));
    if (j >= 1 && j <= n) TT::store((j - 1) & 3, c + ((j - 1) & 3) * 256);
    if (j >= 2) epi(j - 2, c + ((j - 2) & 3) * 256, acc);
  }
}

// The K-quants with their sub-block scales folded into the weights: a super-block's B tiles hold
// q * sc (the quant times its sub-block's integer scale: 0..945 for Q4_K, -4064..4064 for
// Q6_K), split into low bytes (unsigned) and high bytes (q * sc = 256 * high + low). The whole
// super-block then shares one scale per row and one per token, so its four chunks of 64 values
// accumulate in the same pair of C tiles, and sum = low + 256 * high is exactly the integer the
// VNNI kernels sum (scale times sub-block sum, added up). Per super-block that is 8 products and
// 2 stores, where a product and a store per sub-block (8 or 16 of each, K = 32 or 16) took
// about as long as the VNNI kernel. Unit u's chunks go out, then unit u - 1's pair is stored,
// then unit u - 2's sums are handed on: epi(u, low, high, acc).
// The units are super-blocks u0 .. u0 + n - 1 of the activation tile act (Q8_K, 256 bytes a
// token row) and their B tiles at bt, kFoldedBuf bytes each: 4 chunks of 1024 low bytes, then
// the high bytes 4096 on.
constexpr size_t kFoldedBuf = 2 * 4096;
// The accumulators reach epi as an argument, as in pipeline.
template <class TT, bool kSignedH, class Epi>
inline void folded_pipeline(int n, const uint8_t* act, int64_t u0, const uint8_t* bt, int32_t* c, VF* acc, Epi epi) {
  for (int u = 0; u < n + 2; ++u) {
    if (u < n) {
      const uint8_t* a = act + static_cast<size_t>(u0 + u) * kAmxTok * 256;
      const uint8_t* b = bt + u * kFoldedBuf;
      for (int k = 0; k < 4; ++k)
        TT::template chunk<kSignedH>(u & 1, k, a + 64 * k, 256, b + k * 1024, b + k * 1024 + 4096);
    }
    if (u >= 1 && u <= n) TT::store_pair((u - 1) & 1, c + ((u - 1) % 3) * 512, c + ((u - 1) % 3) * 512 + 256);
    if (u >= 2) epi(u - 2, c + ((u - 2) % 3) * 512, c + ((u - 2) % 3) * 512 + 256, acc);
  }
}

// The scales of a panel group's 16 rows (sc[j] at sc16, signed or not) as 32 int16 lanes:
// lanes 2j and 2j + 1 hold sc[j], so that they line up with the values of row j (bytes 4j to
// 4j + 3 of a group). Made once per sub-block, used by its groups.
template <bool kSigned>
inline VI row_scales16(const uint8_t* sc16) {
  const VI x = kSigned ? load_i8x(sc16) : load_u8x(sc16);
  return _mm512_or_si512(_mm512_and_si512(x, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(x, 16));
}

// The 64 bytes of a panel group (dword j: four values of row j) times their rows' scales (s16,
// row_scales16), split into low and high bytes. Even and odd bytes are multiplied in their
// 16-bit lanes (products fit: 15 x 63, 32 x 127) and the bytes go back in place, so nothing
// crosses a lane.
template <bool kSigned>
inline void fold_group(VI v, VI s16, uint8_t* lo, uint8_t* hi) {
  const VI lo8 = _mm512_set1_epi16(0x00FF), hi8 = _mm512_set1_epi16(static_cast<short>(0xFF00));
  const VI ve = kSigned ? _mm512_srai_epi16(_mm512_slli_epi16(v, 8), 8) : _mm512_and_si512(v, lo8);
  const VI vo = kSigned ? _mm512_srai_epi16(v, 8) : _mm512_srli_epi16(v, 8);
  const VI pe = _mm512_mullo_epi16(ve, s16), po = _mm512_mullo_epi16(vo, s16);
  const VI l = _mm512_or_si512(_mm512_and_si512(pe, lo8), _mm512_slli_epi16(po, 8));
  const VI h = _mm512_or_si512(kSigned ? _mm512_and_si512(_mm512_srai_epi16(pe, 8), lo8) : _mm512_srli_epi16(pe, 8),
                               _mm512_and_si512(po, hi8));
  _mm512_store_si512(lo, l);
  _mm512_store_si512(hi, h);
}

// ---- K-quants: Q4_K and Q6_K --------------------------------------------------------------
// Activations as Q8_K (256-value super-blocks, one scale each), tiles of kAmxTok tokens: quants
// [super-block][token][256], so that the A tile of any sub-block is a tile load with a stride
// of 256 bytes; then float d[super-block][token]; then, for Q4_K's mins, the int16 pairs of
// act.h's Corr::Q4_K, corr[(super-block * 4 + pair) * kAmxTok + token] (Q6_K needs none: its
// B tiles are signed).
LongLayout long_layout_k(int64_t n_in) {
  const size_t nsb = static_cast<size_t>(n_in / 256);
  LongLayout l;
  l.d_off = nsb * kAmxTok * 256;
  l.c_off = l.d_off + round_up(nsb * kAmxTok * 4, 64);
  l.bytes = l.c_off + round_up(nsb * 4 * kAmxTok * 4, 64);
  return l;
}
size_t long_tile_bytes_k(int64_t n_in) { return long_layout_k(n_in).bytes; }

template <bool kMins>
void long_prepare_k(const float* x, int n_tok, int64_t n_in, uint8_t* tile) {
  const LongLayout l = long_layout_k(n_in);
  std::memset(tile, 0, l.bytes);
  for (int t = 0; t < n_tok; ++t) {
    const float* xt = x + static_cast<int64_t>(t) * n_in;
    for (int64_t sb = 0; sb < n_in / 256; ++sb) {
      alignas(64) int8_t qs[256];
      int16_t bsums[16];
      const float d = q8_K_block(xt + 256 * sb, qs, bsums);
      std::memcpy(tile + (static_cast<size_t>(sb) * kAmxTok + t) * 256, qs, 256);
      wr_f32(tile + l.d_off + (sb * kAmxTok + t) * 4, d);
      for (int j = 0; kMins && j < 4; ++j) {  // the int16 pair (sum of values 64j.., of 64j+32..)
        const int32_t lo = bsums[4 * j] + bsums[4 * j + 1], hi = bsums[4 * j + 2] + bsums[4 * j + 3];
        wr_i32(tile + l.c_off + ((sb * 4 + j) * kAmxTok + t) * 4,
               static_cast<int32_t>((static_cast<uint32_t>(hi) << 16) | (static_cast<uint32_t>(lo) & 0xFFFF)));
      }
    }
  }
}

// ---- the products ------------------------------------------------------------------------
// A weight type's "unit" is what one activation scale covers: a 32-value block (Q4_0, Q8_0)
// or a 256-value super-block (Q4_K, Q6_K). The driver below walks, per panel, slices of
// kSlice units: their B tiles are made once (unpacked into a per-call buffer where the
// panel holds nibbles), then every 16-token group runs the slice with its 16 token rows
// accumulated in registers, which go to y once per slice (the first slice assigns). So y is
// read and written once per slice, not per unit. Measured on Zen 5 (no AMX) with the tile
// instructions replaced by nothing, 2048 x 2048, 512 tokens, one thread: with a y round trip
// per block the remaining work took 55 ms against the VNNI kernels' whole 10 ms (Q4_0); with
// the slices and signed B tiles (no offset corrections) it takes 3.8-4.6 ms against VNNI's
// 9.3-12.5 (Q4_0, Q8_0), 3.4-3.7 against 13.6-15.3 (Q4_K), 5.8-6.8 against 18.4-21.4 (Q6_K).
// With the tile instructions, on a Xeon with AMX: see pipeline and folded_pipeline above, and
// docs/performance.md.
//
// Each type provides kValues (values per unit), kTileK (bytes of K per tile product), kUnit
// (panel bytes per unit), kBuf (B-tile buffer bytes per unit), kSlice (units per slice), and
//   static size_t panel_bytes(int64_t n_in)                            as the VNNI panels'
//   static LongLayout layout(int64_t n_in)                             its activation tiles'
//   static void b_tiles(const uint8_t* o, uint8_t* buf)                unit o's B tiles to buf
//   template <class TT> static void units(const uint8_t* o, const uint8_t* bt, const uint8_t* act,
//       int64_t u0, int n, int32_t* c, VF* acc, const LongLayout& l)
//       acc[t] += units u0..u0 + n - 1 of token t (t < 16), in that order; o and bt are unit
//       u0's panel bytes and B tiles (the next units follow at kUnit and kBuf); c: 8 KiB of
//       scratch

// Q8_0 and Q4_0 (the VNNI panels of panels_x86.cpp, kLanes = 16): per block the quant groups
// (Q8_0: 8 x 64 bytes, u = q + 128; Q4_0: 4 x 64 bytes of nibbles), then 16 fp16 row scales.
// The B tiles are made signed once per slice (q for Q8_0, nibble - 8 for Q4_0), so the tile
// sums need no offset correction: they equal the VNNI kernels' corrected sums exactly. What
// the two types share; each adds its b_tiles.
template <size_t kUnitBytes, size_t kScalesAt>
struct BlockLong {
  static constexpr int kTileK = 32, kSlice = 64, kValues = 32;
  static constexpr size_t kUnit = kUnitBytes, kBuf = 512;
  static size_t panel_bytes(int64_t n_in) { return round_up(static_cast<size_t>(n_in / 32) * kUnit, 64); }
  static LongLayout layout(int64_t n_in) { return long_layout(n_in); }
  template <class TT>
  static void units(const uint8_t* o, const uint8_t* bt, const uint8_t* act, int64_t b0, int n, int32_t* c,
                    VF* acc, const LongLayout& l) {
    pipeline<TT, true>(
        n, 32, [&](int j) { return act + static_cast<size_t>(b0 + j) * kABlock; }, [&](int j) { return bt + j * kBuf; },
        c, acc, [&](int j, const int32_t* cj, VF* r) {
          const VF dw = load_h(o + j * kUnit + kScalesAt);
          const uint8_t* da = act + l.d_off + static_cast<size_t>(b0 + j) * kAmxTok * 4;
#pragma GCC unroll 16
          for (int t = 0; t < kAmxTok; ++t) r[t] = fmadd(cvt(load(cj + t * 16)), mul(dw, bcastf_at(da + t * 4)), r[t]);
        });
  }
};

struct Q8_0Long : BlockLong<34 * 16, 32 * 16> {
  static void b_tiles(const uint8_t* o, uint8_t* buf) {
    const VI flip = set8(static_cast<int8_t>(0x80));
    for (int j = 0; j < 8; ++j) _mm512_store_si512(buf + j * 64, _mm512_xor_si512(load(o + j * 64), flip));
  }
};

struct Q4_0Long : BlockLong<18 * 16, 16 * 16> {
  // Low nibbles are values 0..15 (B rows 0-3), high nibbles 16..31 (rows 4-7).
  static void b_tiles(const uint8_t* o, uint8_t* buf) {
    const VI m4 = set8(0x0F), eight = set8(8);
    for (int j = 0; j < 4; ++j) {
      const VI v = load(o + j * 64);
      _mm512_store_si512(buf + j * 64, _mm512_sub_epi8(and_(v, m4), eight));
      _mm512_store_si512(buf + (4 + j) * 64, _mm512_sub_epi8(and_(srl16(v, 4), m4), eight));
    }
  }
};

// Q4_K (panels_k_x86.cpp, QK45<false>; offsets in 16 bytes): 32 groups of nibbles (group
// 8c + g: sub-block 2c in the low, 2c + 1 in the high nibbles), 8 x 16 six-bit scales at 128,
// 4 x 16 pairs of mins at 136, d and dmin (16 fp16 each) at 144. B tiles: nibble times its
// sub-block's scale, split (folded_pipeline); the mins as the VNNI kernel takes them.
struct Q4_KLong {
  static constexpr int kTileK = 64, kSlice = 4, kValues = 256;
  static constexpr size_t kSc = 128, kMn = 136, kD = 144, kUnit = (kD + 4) * 16, kBuf = kFoldedBuf;
  static size_t panel_bytes(int64_t n_in) { return static_cast<size_t>(n_in / 256) * kUnit; }
  static LongLayout layout(int64_t n_in) { return long_layout_k(n_in); }
  // Sub-block s (32 values, 8 groups) at s * 512, the low bytes first, the high ones 4096 on.
  static void b_tiles(const uint8_t* o, uint8_t* buf) {
    const VI m4 = set8(0x0F);
    for (int s = 0; s < 8; ++s) {
      const VI s16 = row_scales16<false>(o + kSc * 16 + s * 16);
      for (int g = 0; g < 8; ++g) {
        const VI v = load(o + (8 * (s / 2) + g) * 64);
        fold_group<false>(s % 2 ? and_(srl16(v, 4), m4) : and_(v, m4), s16, buf + s * 512 + g * 64,
                          buf + 4096 + s * 512 + g * 64);
      }
    }
  }
  template <class TT>
  static void units(const uint8_t* o0, const uint8_t* bt, const uint8_t* act, int64_t u0, int n, int32_t* c,
                    VF* acc, const LongLayout& l) {
    folded_pipeline<TT, false>(n, act, u0, bt, c, acc, [&](int u, const int32_t* lo, const int32_t* hi, VF* r) {
      const uint8_t* o = o0 + u * kUnit;
      const int64_t sb = u0 + u;
      const VF d = load_h(o + kD * 16), dmin = load_h(o + (kD + 2) * 16);
      VI mins[4];
      for (int cc = 0; cc < 4; ++cc) mins[cc] = load_u8w(o + kMn * 16 + cc * 32);
      // Unrolled, so that acc[t] stays in a register (an indexed acc goes through memory).
#pragma GCC unroll 16
      for (int t = 0; t < kAmxTok; ++t) {
        const VI si = add32(load(lo + t * 16), _mm512_slli_epi32(load(hi + t * 16), 8));
        VI macc = vzero();
#pragma GCC unroll 4
        for (int cc = 0; cc < 4; ++cc)
          macc = dot2w16(macc, mins[cc], bcast32(act + l.c_off + ((sb * 4 + cc) * kAmxTok + t) * 4));
        const VF da = bcastf_at(act + l.d_off + (sb * kAmxTok + t) * 4);
        r[t] = fmadd(cvt(si), mul(d, da), r[t]);
        r[t] = fnmadd(cvt(macc), mul(dmin, da), r[t]);
      }
    });
  }
};

// Q6_K (panels_k_x86.cpp; offsets in 16 bytes): ql 32 groups, qh 16 groups at 128, 16 x 16
// signed scales at 192, d at 208; 212 in all. Sub-block SUB (16 values, one scale) is
// low nibble | two high bits << 4, minus 32; in the B tiles times its scale, split
// (folded_pipeline).
struct Q6_KLong {
  static constexpr int kTileK = 64, kSlice = 4, kValues = 256;
  static constexpr size_t kUnit = 212 * 16, kBuf = kFoldedBuf;
  static size_t panel_bytes(int64_t n_in) { return static_cast<size_t>(n_in / 256) * kUnit; }
  static LongLayout layout(int64_t n_in) { return long_layout_k(n_in); }
  // Sub-block SUB (16 values, 4 groups) at SUB * 256, the low bytes first, the high ones 4096 on.
  static void b_tiles(const uint8_t* o, uint8_t* buf) {
    const VI m4 = set8(0x0F), m30 = set8(0x30), m32 = set8(32);
    for (int sub = 0; sub < 16; ++sub) {
      const int n = sub / 8, q = (sub / 2) % 4, h = sub % 2;
      const VI s16 = row_scales16<true>(o + 192 * 16 + sub * 16);
      for (int g = 4 * h; g < 4 * h + 4; ++g) {
        const VI v = load(o + (16 * n + 8 * (q & 1) + g) * 64);
        const VI hb = load(o + 128 * 16 + (8 * n + g) * 64);
        const VI lo = q < 2 ? and_(v, m4) : and_(srl16(v, 4), m4);
        const VI up = q == 0 ? sll16(hb, 4) : q == 1 ? sll16(hb, 2) : q == 2 ? hb : srl16(hb, 2);
        const size_t at = sub * 256 + (g - 4 * h) * 64;
        fold_group<true>(_mm512_sub_epi8(or_(lo, and_(up, m30)), m32), s16, buf + at, buf + 4096 + at);
      }
    }
  }
  template <class TT>
  static void units(const uint8_t* o0, const uint8_t* bt, const uint8_t* act, int64_t u0, int n, int32_t* c,
                    VF* acc, const LongLayout& l) {
    folded_pipeline<TT, true>(n, act, u0, bt, c, acc, [&](int u, const int32_t* lo, const int32_t* hi, VF* r) {
      const VF d = load_h(o0 + u * kUnit + 208 * 16);
      const uint8_t* da = act + l.d_off + (u0 + u) * kAmxTok * 4;
#pragma GCC unroll 16
      for (int t = 0; t < kAmxTok; ++t) {
        const VI si = add32(load(lo + t * 16), _mm512_slli_epi32(load(hi + t * 16), 8));
        r[t] = fmadd(cvt(si), mul(d, bcastf_at(da + t * 4)), r[t]);
      }
    });
  }
};

// y[t * ldy + o] for the rows o of panels [p0, p1) below n_out and the n_tok tokens.
// kPanels panels at a time share each token group's slice of activations: the slice is read
// once from wherever it lies and then stays in L1 for the kPanels products, where one panel at
// a time streamed all of the activations through once per panel (4 MiB for 512 tokens of 8192
// values, more than L2: ffn_down ran at 1.26x the VNNI kernels, the square products at 1.5x).
template <class K, template <int> class Tiles>
void long_gemm(const uint8_t* panels, int64_t p0, int64_t p1, int64_t n_out, int64_t n_in,
               const uint8_t* tiles, int64_t n_tok, float* y, int64_t ldy) {
  constexpr int kPanels = 4;
  using TT = Tiles<K::kTileK>;
  const int64_t nu = n_in / K::kValues;
  const size_t pb = K::panel_bytes(n_in);
  const LongLayout l = K::layout(n_in);
  const int64_t n_groups = (n_tok + kAmxTok - 1) / kAmxTok;
  alignas(64) int32_t c[8 * 256];  // C tiles as stored: 4 for pipeline, 3 pairs for folded_pipeline
  alignas(64) uint8_t buf[kPanels][K::kBuf * K::kSlice];
  TT::begin();
  for (int64_t pc = p0; pc < p1; pc += kPanels) {
    const int np = p1 - pc < kPanels ? static_cast<int>(p1 - pc) : kPanels;
    for (int64_t u0 = 0; u0 < nu; u0 += K::kSlice) {
      const int64_t u1 = u0 + K::kSlice < nu ? u0 + K::kSlice : nu;
      for (int i = 0; i < np; ++i)
        for (int64_t u = u0; u < u1; ++u)
          K::b_tiles(panels + static_cast<size_t>(pc + i) * pb + static_cast<size_t>(u) * K::kUnit,
                     buf[i] + (u - u0) * K::kBuf);
      for (int64_t g = 0; g < n_groups; ++g) {
        const int64_t t0 = g * kAmxTok;
        const int nt = n_tok - t0 < kAmxTok ? static_cast<int>(n_tok - t0) : kAmxTok;
        const uint8_t* act = tiles + static_cast<size_t>(g) * l.bytes;
        for (int i = 0; i < np; ++i) {
          const int64_t p = pc + i;
          const int64_t left = n_out - p * 16;
          const int rows = left < 16 ? static_cast<int>(left) : 16;
          float* yp = y + t0 * ldy + p * 16;
          // Every access to acc has a constant index (the loops over t unrolled), so that the
          // compiler keeps it in registers through the products; one loop bounded by nt put it
          // on the stack, with a load and a store per row of every block's epilogue.
          VF acc[kAmxTok];
#pragma GCC unroll 16
          for (int t = 0; t < kAmxTok; ++t)
            acc[t] = u0 == 0 || t >= nt ? fzero() : rows == 16 ? loadf(yp + t * ldy) : loadf_n(yp + t * ldy, rows);
          K::template units<TT>(panels + static_cast<size_t>(p) * pb + static_cast<size_t>(u0) * K::kUnit, buf[i], act,
                                u0, static_cast<int>(u1 - u0), c, acc, l);
#pragma GCC unroll 16
          for (int t = 0; t < kAmxTok; ++t) {
            if (t >= nt) break;
            if (rows == 16) storef(yp + t * ldy, acc[t]);
            else storef_n(yp + t * ldy, acc[t], rows);
          }
        }
      }
    }
  }
  TT::end();
}

template <class K, template <int> class Tiles>
void add_long(PanelKernels& pk, decltype(PanelKernels::long_prepare) prepare, size_t (*tile_bytes)(int64_t)) {
  pk.long_min_tokens = kLongMin;
  pk.long_tile_tokens = kAmxTok;
  pk.long_tile_bytes = tile_bytes;
  pk.long_prepare = prepare;
  pk.long_gemm = &long_gemm<K, Tiles>;
}

// ---- BF16 weights on AMX-BF16 -----------------------------------------------------------
// On the row-major weights as mapped (no repacking, like the VNNI path's), with the VNNI
// path's activations (rounded to bf16, row-major): TDPBF16PS multiplies 16 tokens x 32 values
// (the A tile: a tile load of 16 activation rows, n_in * 2 bytes apart) by 32 values x 16
// rows (the B tile: pairs of values, row k holding values 2k, 2k + 1 of each of 16 weight
// rows, so the 16 x 16 dwords of a weight block are transposed once per slice) into 16 x 16
// fp32 sums that stay in the tile register over the slice. Products of two bf16 are exact in
// fp32, so the sums differ from the VNNI path's only in their order.

// Tiles: 0 = A (16 x 64 bytes), 1 = B (16 x 64 bytes), 2 = C (16 x 16 fp32).
struct HwBf16 {
  void begin() {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 3; ++i) {
      cfg.rows[i] = 16;
      cfg.colsb[i] = 64;
    }
    _tile_loadconfig(&cfg);
  }
  void end() { _tile_release(); }
  void load_c(const float* c) { tile_load<2, 1024>(c, 64); }
  void dot(const uint8_t* a, size_t a_stride, const uint8_t* b) {
    tile_load_far<0>(a, a_stride);
    tile_load<1, 1024>(b, 64);
    tile_dp_bf16<2, 0, 1>();
  }
  void store_c(float* c) { tile_store<2>(c); }
};

// TDPBF16PS as the Intel SDM defines it: C[m][n] += A[m][2k] * B[k][2n], then
// += A[m][2k + 1] * B[k][2n + 1], for k = 0..15 (bf16 widened to fp32). (The unit also treats
// denormal inputs and results as zero; the tests' values stay far from them.)
struct EmuBf16 {
  float creg[256];
  void begin() {}
  void end() {}
  void load_c(const float* c) { std::memcpy(creg, c, sizeof creg); }
  static float bf(const uint8_t* p) {
    const uint32_t u = static_cast<uint32_t>(rd_u16(p)) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  void dot(const uint8_t* a, size_t a_stride, const uint8_t* b) {
    for (int m = 0; m < 16; ++m)
      for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 16; ++n) {
          float& c = creg[m * 16 + n];
          c += bf(a + m * a_stride + 4 * k) * bf(b + k * 64 + 4 * n);
          c += bf(a + m * a_stride + 4 * k + 2) * bf(b + k * 64 + 4 * n + 2);
        }
  }
  void store_c(float* c) { std::memcpy(c, creg, sizeof creg); }
};

// The B tile of weight rows [0, nr) (row_bytes apart, from 32 values at src): dword k of row n
// (values 2k, 2k + 1) goes to row k, column n; rows past nr are zero.
inline void make_b_bf16(const uint8_t* src, size_t row_bytes, int nr, uint8_t* bt) {
  alignas(64) uint32_t m[16][16];
  for (int n = 0; n < 16; ++n) {
    if (n < nr) std::memcpy(m[n], src + static_cast<size_t>(n) * row_bytes, 64);
    else std::memset(m[n], 0, 64);
  }
  auto* out = reinterpret_cast<uint32_t*>(bt);
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 16; ++n) out[k * 16 + n] = m[n][k];
}

template <class TU>
void long_gemm_bf16(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in, const void* act_v,
                    int64_t n_tok, float* y, int64_t ldy, void*) {
  constexpr int64_t kSliceK = 512;  // values per slice: 16 B tiles of 32
  const auto* act = static_cast<const uint8_t*>(act_v);
  const size_t a_stride = static_cast<size_t>(n_in) * 2;
  alignas(64) uint8_t bt[kSliceK / 32][1024];
  alignas(64) float c[256];
  alignas(64) uint8_t apad[16 * kSliceK * 2];  // a last group of fewer than 16 tokens, zero-padded
  TU tu;
  tu.begin();
  for (int64_t r = r0; r < r1; r += 16) {
    const int nr = r1 - r < 16 ? static_cast<int>(r1 - r) : 16;
    for (int64_t k0 = 0; k0 < n_in; k0 += kSliceK) {
      const int64_t nk = n_in - k0 < kSliceK ? n_in - k0 : kSliceK;
      const int nc = static_cast<int>(nk / 32);
      for (int kc = 0; kc < nc; ++kc) make_b_bf16(w + r * row_bytes + (k0 + 32 * kc) * 2, row_bytes, nr, bt[kc]);
      for (int64_t t0 = 0; t0 < n_tok; t0 += 16) {
        const int nt = n_tok - t0 < 16 ? static_cast<int>(n_tok - t0) : 16;
        for (int t = 0; t < 16; ++t) {  // C: zero, or the sums of the slices before
          const VF v = k0 == 0 || t >= nt ? fzero()
                       : nr == 16         ? loadf(y + (t0 + t) * ldy + r)
                                          : loadf_n(y + (t0 + t) * ldy + r, nr);
          storef(c + t * 16, v);
        }
        const uint8_t* a = act + (static_cast<size_t>(t0) * n_in + k0) * 2;
        size_t as = a_stride;
        if (nt < 16) {  // the tile load reads 16 rows: do not read past the last token
          std::memset(apad, 0, sizeof apad);
          for (int t = 0; t < nt; ++t) std::memcpy(apad + t * nk * 2, a + t * a_stride, nk * 2);
          a = apad;
          as = static_cast<size_t>(nk) * 2;
        }
        tu.load_c(c);
        for (int kc = 0; kc < nc; ++kc) tu.dot(a + kc * 64, as, bt[kc]);
        tu.store_c(c);
        for (int t = 0; t < nt; ++t) {
          if (nr == 16) storef(y + (t0 + t) * ldy + r, loadf(c + t * 16));
          else storef_n(y + (t0 + t) * ldy + r, loadf(c + t * 16), nr);
        }
      }
    }
  }
  tu.end();
}

constexpr int kQ4_0Id = 2, kQ8_0Id = 8, kQ4_KId = 12, kQ6_KId = 14, kBF16Id = 30;  // ggml type ids

template <template <int> class Tiles, class Bf16Tiles>
Kernels with_tiles(const Kernels& vnni) {
  Kernels k = vnni;
  // BF16 on tiles only where the VNNI path already takes bf16 activations (AVX512_BF16).
  if (k.flt[kBF16Id].gemv && k.flt[kBF16Id].gemm_act == kActBF16) {
    k.flt[kBF16Id].long_min_tokens = kLongMin;
    k.flt[kBF16Id].long_gemm = &long_gemm_bf16<Bf16Tiles>;
  }
  add_long<Q4_0Long, Tiles>(k.panel[kQ4_0Id], &long_prepare, &long_tile_bytes);
  add_long<Q8_0Long, Tiles>(k.panel[kQ8_0Id], &long_prepare, &long_tile_bytes);
  add_long<Q4_KLong, Tiles>(k.panel[kQ4_KId], &long_prepare_k<true>, &long_tile_bytes_k);
  add_long<Q6_KLong, Tiles>(k.panel[kQ6_KId], &long_prepare_k<false>, &long_tile_bytes_k);
  k.isa = Isa::Amx;
  return k;
}

}  // namespace

const Kernels* table(bool bf16);  // table_x86.cpp

namespace {

// avx512vnni's table (with or without its AVX512_BF16 products) and the tile products on top,
// built once per choice.
template <template <int> class Tiles, class Bf16Tiles>
const Kernels* amx_table(bool bf16) {
  static const Kernels with_bf16 = with_tiles<Tiles, Bf16Tiles>(*table(true));
  static const Kernels without_bf16 = with_tiles<Tiles, Bf16Tiles>(*table(false));
  return bf16 ? &with_bf16 : &without_bf16;
}

}  // namespace

const Kernels* table_amx(bool bf16) { return amx_table<HwTiles, HwBf16>(bf16); }
const Kernels* table_amx_emulated(bool bf16) { return amx_table<EmuTiles, EmuBf16>(bf16); }

}  // namespace slm::kern::SLM_ISA_NS
