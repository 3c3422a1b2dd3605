// Long-batch products of Q4_0, Q8_0, Q4_K and Q6_K weights on Intel AMX tiles: the amx level
// (issue 13).
//
// Compiled into the avx512vnni copy of the kernels (namespace avx512vnni, its flags plus
// -mamx-tile -mamx-int8; see CMakeLists.txt), because the amx level is avx512vnni's table
// with these products added: decoding and short batches keep the VNNI panel kernels, and a
// batch of kLongMin tokens or more goes through the tile unit on the very same panels.
//
// Why the panels need no second layout: a VNNI panel block of 32 values is, per group of four
// values, kLanes (16) dwords holding four bytes of each of 16 weight rows. That is exactly the
// B operand of TDPBSUD for K = 32: 8 rows of 64 bytes, row k holding values 4k..4k+3 of each of
// the 16 output columns. Q8_0 blocks are read by the tile load as they lie (bytes u = q + 128,
// unsigned); Q4_0 blocks hold nibbles and are widened to bytes first (low nibbles are values
// 0..15, high nibbles 16..31, so rows 0-3 of the tile take the low and rows 4-7 the high ones).
//
// The activations get their own tiles: 16 tokens x 32 bytes per block, row t the 32 int8
// quants of token t (the A operand), quantized exactly as for the VNNI kernels (q8_0_block),
// with each block's scale and offset correction (-8 or -128 times the sum of its quants).
// Per block, C = A x B gives 16 tokens x 16 rows of int32 sums, the same integers VPDPBUSD
// accumulates, and they are scaled into y in the same order (block after block, one FMA
// each): the results are the VNNI kernels' to the bit, which is what the tests check.
//
// Not yet run on AMX hardware: no session so far had an AMX CPU. The tile unit is therefore
// reached only by SLM_FORCE_ISA=amx, and the tests run the same code on EmuTiles (a scalar
// model of the three tile instructions used) everywhere, and on the real unit with
// SLM_TEST_AMX=1 on an AMX machine. Left for that machine: verify, measure, make it the default
// (kernels/isa.cpp detected_isa), then larger blockings (2x2 C tiles, K = 64 where two blocks
// share a scale pair) for speed.
#include "kernels/x86/panel_driver.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

constexpr int kAmxTok = 16;      // tokens per A tile (its rows)
constexpr int kLongMin = 16;     // fewer tokens stay on the VNNI panel kernels
constexpr size_t kABlock = static_cast<size_t>(kAmxTok) * 32;  // one block's A tile: 512 bytes

// Activation tile of kAmxTok tokens: quants [block][token][32], then float d[block][token],
// then int32 corr[block][token]; padding tokens are all zero.
struct LongLayout {
  size_t d_off, c_off, bytes;
};
LongLayout long_layout(int64_t n_in) {
  const size_t nb = static_cast<size_t>(n_in / 32);
  LongLayout l;
  l.d_off = nb * kABlock;
  l.c_off = l.d_off + round_up(nb * kAmxTok * 4, 64);
  l.bytes = l.c_off + round_up(nb * kAmxTok * 4, 64);
  return l;
}

template <int kOffset>
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
      wr_i32(tile + l.c_off + (b * kAmxTok + t) * 4, -kOffset * sum);
    }
  }
}

size_t long_tile_bytes(int64_t n_in) { return long_layout(n_in).bytes; }

// The tile registers: 0 = A (16 tokens x K bytes), 1 = B (K/4 x 64 bytes), 2 = C (16 x 16
// int32). K is 32 (a Q4_0 / Q8_0 block, a Q4_K sub-block) or 16 (a Q6_K sub-block).
struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// The tile unit.
template <int K>
struct HwTiles {
  static void begin() {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    cfg.rows[0] = kAmxTok;
    cfg.colsb[0] = K;
    cfg.rows[1] = K / 4;
    cfg.colsb[1] = 64;
    cfg.rows[2] = kAmxTok;
    cfg.colsb[2] = 64;
    _tile_loadconfig(&cfg);
  }
  static void end() { _tile_release(); }
  // c[t * 16 + n] = the sum over K values of a (signed; token t's at a + t * a_stride) times
  // b (unsigned; row k holds values 4k..4k+3 of each of the 16 columns).
  static void block(const uint8_t* a, size_t a_stride, const uint8_t* b, int32_t* c) {
    _tile_zero(2);
    _tile_loadd(0, a, a_stride);
    _tile_loadd(1, b, 64);
    _tile_dpbsud(2, 0, 1);
    _tile_stored(2, c, 64);
  }
};

// The same instructions as the Intel SDM defines them (TILEZERO, TILELOADD, TDPBSUD,
// TILESTORED for these shapes), in plain code: C[m][n] += sum over k < K/4, i < 4 of
// int8(A[m][4k + i]) * uint8(B[k][4n + i]).
template <int K>
struct EmuTiles {
  static void begin() {}
  static void end() {}
  static void block(const uint8_t* a, size_t a_stride, const uint8_t* b, int32_t* c) {
    for (int m = 0; m < kAmxTok; ++m) {
      for (int n = 0; n < 16; ++n) {
        int32_t s = 0;
        for (int k = 0; k < K / 4; ++k)
          for (int i = 0; i < 4; ++i)
            s += static_cast<int32_t>(static_cast<int8_t>(a[m * a_stride + 4 * k + i])) *
                 static_cast<int32_t>(b[k * 64 + 4 * n + i]);
        c[m * 16 + n] = s;
      }
    }
  }
};

// The VNNI panel layouts of panels_x86.cpp (kLanes = 16): per 32-value block, the quant
// groups (Q8_0: 8 x 64 bytes; Q4_0: 4 x 64 bytes of nibbles), then 16 fp16 row scales.
struct Q8_0Panel {
  static constexpr int kOffset = 128;
  static constexpr size_t kBlk = 34 * 16, kScales = 32 * 16;
  // The B tile of block q: the panel's bytes themselves.
  static const uint8_t* b_tile(const uint8_t* q, uint8_t*) { return q; }
};
struct Q4_0Panel {
  static constexpr int kOffset = 8;
  static constexpr size_t kBlk = 18 * 16, kScales = 16 * 16;
  static const uint8_t* b_tile(const uint8_t* q, uint8_t* buf) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int j = 0; j < 4; ++j) {
      const __m512i v = _mm512_loadu_si512(q + j * 64);
      _mm512_store_si512(buf + j * 64, _mm512_and_si512(v, m4));
      _mm512_store_si512(buf + (4 + j) * 64, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
    }
    return buf;
  }
};

// y[t * ldy + o] for the rows o of panels [p0, p1) below n_out and the n_tok tokens. For each
// panel and block: B once, then every 16-token group's C = A x B scaled into y, which holds
// the running sums (the first block assigns them).
template <class P, template <int> class Tiles>
void long_gemm(const uint8_t* panels, int64_t p0, int64_t p1, int64_t n_out, int64_t n_in,
               const uint8_t* tiles, int64_t n_tok, float* y, int64_t ldy) {
  const int64_t nb = n_in / 32;
  const size_t pb = round_up(static_cast<size_t>(nb) * P::kBlk, 64);
  const LongLayout l = long_layout(n_in);
  const int64_t n_groups = (n_tok + kAmxTok - 1) / kAmxTok;
  alignas(64) int32_t c[kAmxTok * 16];
  alignas(64) uint8_t bbuf[512];
  using T32 = Tiles<32>;
  T32::begin();
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t left = n_out - p * 16;
    const int rows = left < 16 ? static_cast<int>(left) : 16;
    const uint8_t* panel = panels + static_cast<size_t>(p) * pb;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* q = panel + static_cast<size_t>(b) * P::kBlk;
      const uint8_t* bt = P::b_tile(q, bbuf);
      const VF dw = load_h(q + P::kScales);
      for (int64_t g = 0; g < n_groups; ++g) {
        const uint8_t* act = tiles + static_cast<size_t>(g) * l.bytes;
        T32::block(act + static_cast<size_t>(b) * kABlock, 32, bt, c);
        const int64_t t0 = g * kAmxTok;
        const int nt = n_tok - t0 < kAmxTok ? static_cast<int>(n_tok - t0) : kAmxTok;
        const uint8_t* da = act + l.d_off + static_cast<size_t>(b) * kAmxTok * 4;
        const uint8_t* corr = act + l.c_off + static_cast<size_t>(b) * kAmxTok * 4;
        for (int t = 0; t < nt; ++t) {
          float* yt = y + (t0 + t) * ldy + p * 16;
          const VF s = cvt(add32(load(c + t * 16), bcast32(corr + t * 4)));
          const VF scale = mul(dw, bcastf_at(da + t * 4));
          const VF prev = b == 0 ? fzero() : rows == 16 ? loadf(yt) : loadf_n(yt, rows);
          const VF acc = fmadd(s, scale, prev);
          if (rows == 16) storef(yt, acc);
          else storef_n(yt, acc, rows);
        }
      }
    }
  }
  T32::end();
}

template <class P, template <int> class Tiles>
void add_long(PanelKernels& pk) {
  pk.long_min_tokens = kLongMin;
  pk.long_tile_tokens = kAmxTok;
  pk.long_tile_bytes = &long_tile_bytes;
  pk.long_prepare = &long_prepare<P::kOffset>;
  pk.long_gemm = &long_gemm<P, Tiles>;
}

// ---- K-quants: Q4_K and Q6_K --------------------------------------------------------------
// Activations as Q8_K (256-value super-blocks, one scale each), tiles of kAmxTok tokens: quants
// [super-block][token][256], so that the A tile of any sub-block is a tile load with a stride
// of 256 bytes; then float d[super-block][token]; then the VNNI tiles' int32 corrections,
// corr[(super-block * 16 + slot) * kAmxTok + token] (act.h's Corr::Q4_K and Corr::Q6_K).
struct LongLayoutK {
  size_t d_off, c_off, bytes;
};
LongLayoutK long_layout_k(int64_t n_in) {
  const size_t nsb = static_cast<size_t>(n_in / 256);
  LongLayoutK l;
  l.d_off = nsb * kAmxTok * 256;
  l.c_off = l.d_off + round_up(nsb * kAmxTok * 4, 64);
  l.bytes = l.c_off + round_up(nsb * 16 * kAmxTok * 4, 64);
  return l;
}
size_t long_tile_bytes_k(int64_t n_in) { return long_layout_k(n_in).bytes; }

template <Corr kKind>
void long_prepare_k(const float* x, int n_tok, int64_t n_in, uint8_t* tile) {
  const LongLayoutK l = long_layout_k(n_in);
  std::memset(tile, 0, l.bytes);
  for (int t = 0; t < n_tok; ++t) {
    const float* xt = x + static_cast<int64_t>(t) * n_in;
    for (int64_t sb = 0; sb < n_in / 256; ++sb) {
      alignas(64) int8_t qs[256];
      int16_t bsums[16];
      const float d = q8_K_block(xt + 256 * sb, qs, bsums);
      std::memcpy(tile + (static_cast<size_t>(sb) * kAmxTok + t) * 256, qs, 256);
      wr_f32(tile + l.d_off + (sb * kAmxTok + t) * 4, d);
      for (int j = 0; j < 16; ++j) {
        int32_t v = 0;
        if (kKind == Corr::Q4_K && j < 4) {  // the int16 pair (sum of values 64j.., of 64j+32..)
          const int32_t lo = bsums[4 * j] + bsums[4 * j + 1], hi = bsums[4 * j + 2] + bsums[4 * j + 3];
          v = static_cast<int32_t>((static_cast<uint32_t>(hi) << 16) | (static_cast<uint32_t>(lo) & 0xFFFF));
        } else if (kKind == Corr::Q6_K) {
          v = -32 * bsums[j];
        }
        wr_i32(tile + l.c_off + ((sb * 16 + j) * kAmxTok + t) * 4, v);
      }
    }
  }
}

// Q4_K panel super-block (panels_k_x86.cpp, QK45<false>, kLanes = 16; offsets in 16 bytes):
// 32 groups of nibbles (group 8c + g: sub-block 2c in the low, 2c + 1 in the high nibbles),
// 8 x 16 six-bit scales at 128, 4 x 16 pairs of mins at 136, d and dmin (16 fp16 each) at 144.
template <template <int> class Tiles>
void long_gemm_q4_k(const uint8_t* panels, int64_t p0, int64_t p1, int64_t n_out, int64_t n_in,
                    const uint8_t* tiles, int64_t n_tok, float* y, int64_t ldy) {
  constexpr size_t kSc = 128, kMn = 136, kD = 144, kSb = (kD + 4) * 16;
  const int64_t nsb = n_in / 256;
  const LongLayoutK l = long_layout_k(n_in);
  const int64_t n_groups = (n_tok + kAmxTok - 1) / kAmxTok;
  alignas(64) int32_t c[kAmxTok * 16];
  alignas(64) uint8_t bt[8][512];
  using T32 = Tiles<32>;
  T32::begin();
  const VI m4 = set8(0x0F);
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t left = n_out - p * 16;
    const int rows = left < 16 ? static_cast<int>(left) : 16;
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* o = panels + (static_cast<size_t>(p) * nsb + sb) * kSb;
      for (int cc = 0; cc < 4; ++cc) {
        for (int g = 0; g < 8; ++g) {
          const VI v = load(o + (8 * cc + g) * 64);
          _mm512_store_si512(bt[2 * cc] + g * 64, and_(v, m4));
          _mm512_store_si512(bt[2 * cc + 1] + g * 64, and_(srl16(v, 4), m4));
        }
      }
      const VF d = load_h(o + kD * 16), dmin = load_h(o + (kD + 2) * 16);
      for (int64_t grp = 0; grp < n_groups; ++grp) {
        const uint8_t* act = tiles + static_cast<size_t>(grp) * l.bytes;
        const uint8_t* a = act + static_cast<size_t>(sb) * kAmxTok * 256;
        VI sacc[kAmxTok];
        for (int t = 0; t < kAmxTok; ++t) sacc[t] = vzero();
        for (int s = 0; s < 8; ++s) {
          T32::block(a + 32 * s, 256, bt[s], c);
          const VI sc = load_u8x(o + kSc * 16 + s * 16);
          for (int t = 0; t < kAmxTok; ++t) sacc[t] = add32(sacc[t], mul32(load(c + t * 16), sc));
        }
        const int64_t t0 = grp * kAmxTok;
        const int nt = n_tok - t0 < kAmxTok ? static_cast<int>(n_tok - t0) : kAmxTok;
        for (int t = 0; t < nt; ++t) {
          VI macc = vzero();
          for (int cc = 0; cc < 4; ++cc)
            macc = dot2w16(macc, load_u8w(o + kMn * 16 + cc * 32),
                           bcast32(act + l.c_off + ((sb * 16 + cc) * kAmxTok + t) * 4));
          const VF da = bcastf_at(act + l.d_off + (sb * kAmxTok + t) * 4);
          float* yt = y + (t0 + t) * ldy + p * 16;
          VF acc = sb == 0 ? fzero() : rows == 16 ? loadf(yt) : loadf_n(yt, rows);
          acc = fmadd(cvt(sacc[t]), mul(d, da), acc);
          acc = fnmadd(cvt(macc), mul(dmin, da), acc);
          if (rows == 16) storef(yt, acc);
          else storef_n(yt, acc, rows);
        }
      }
    }
  }
  T32::end();
}

// Q6_K panel super-block (panels_k_x86.cpp, Q6_K; offsets in 16 bytes): ql 32 groups, qh 16
// groups at 128, 16 x 16 signed scales at 192, d at 208; 212 in all. Sub-block SUB (16 values,
// one scale) is value u = low nibble | two high bits << 4 (0..63, -32 through corr).
template <template <int> class Tiles>
void long_gemm_q6_k(const uint8_t* panels, int64_t p0, int64_t p1, int64_t n_out, int64_t n_in,
                    const uint8_t* tiles, int64_t n_tok, float* y, int64_t ldy) {
  constexpr size_t kSb = 212 * 16;
  const int64_t nsb = n_in / 256;
  const LongLayoutK l = long_layout_k(n_in);
  const int64_t n_groups = (n_tok + kAmxTok - 1) / kAmxTok;
  alignas(64) int32_t c[kAmxTok * 16];
  alignas(64) uint8_t bt[16][256];
  using T16 = Tiles<16>;
  T16::begin();
  const VI m4 = set8(0x0F), m30 = set8(0x30);
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t left = n_out - p * 16;
    const int rows = left < 16 ? static_cast<int>(left) : 16;
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* o = panels + (static_cast<size_t>(p) * nsb + sb) * kSb;
      for (int sub = 0; sub < 16; ++sub) {
        const int n = sub / 8, q = (sub / 2) % 4, h = sub % 2;
        for (int g = 4 * h; g < 4 * h + 4; ++g) {
          const VI v = load(o + (16 * n + 8 * (q & 1) + g) * 64);
          const VI hb = load(o + 128 * 16 + (8 * n + g) * 64);
          const VI lo = q < 2 ? and_(v, m4) : and_(srl16(v, 4), m4);
          const VI up = q == 0 ? sll16(hb, 4) : q == 1 ? sll16(hb, 2) : q == 2 ? hb : srl16(hb, 2);
          _mm512_store_si512(bt[sub] + (g - 4 * h) * 64, or_(lo, and_(up, m30)));
        }
      }
      const VF d = load_h(o + 208 * 16);
      for (int64_t grp = 0; grp < n_groups; ++grp) {
        const uint8_t* act = tiles + static_cast<size_t>(grp) * l.bytes;
        const uint8_t* a = act + static_cast<size_t>(sb) * kAmxTok * 256;
        VI sacc[kAmxTok];
        for (int t = 0; t < kAmxTok; ++t) sacc[t] = vzero();
        for (int sub = 0; sub < 16; ++sub) {
          T16::block(a + 16 * sub, 256, bt[sub], c);
          const VI sc = load_i8x(o + 192 * 16 + sub * 16);
          const uint8_t* corr = act + l.c_off + (sb * 16 + sub) * kAmxTok * 4;
          for (int t = 0; t < kAmxTok; ++t)
            sacc[t] = add32(sacc[t], mul32(add32(bcast32(corr + t * 4), load(c + t * 16)), sc));
        }
        const int64_t t0 = grp * kAmxTok;
        const int nt = n_tok - t0 < kAmxTok ? static_cast<int>(n_tok - t0) : kAmxTok;
        for (int t = 0; t < nt; ++t) {
          const VF da = bcastf_at(act + l.d_off + (sb * kAmxTok + t) * 4);
          float* yt = y + (t0 + t) * ldy + p * 16;
          const VF prev = sb == 0 ? fzero() : rows == 16 ? loadf(yt) : loadf_n(yt, rows);
          const VF acc = fmadd(cvt(sacc[t]), mul(d, da), prev);
          if (rows == 16) storef(yt, acc);
          else storef_n(yt, acc, rows);
        }
      }
    }
  }
  T16::end();
}

template <Corr kKind>
void add_long_k(PanelKernels& pk, decltype(PanelKernels::long_gemm) gemm) {
  pk.long_min_tokens = kLongMin;
  pk.long_tile_tokens = kAmxTok;
  pk.long_tile_bytes = &long_tile_bytes_k;
  pk.long_prepare = &long_prepare_k<kKind>;
  pk.long_gemm = gemm;
}

constexpr int kQ4_0Id = 2, kQ8_0Id = 8, kQ4_KId = 12, kQ6_KId = 14;  // ggml type ids

template <template <int> class Tiles>
Kernels with_tiles(const Kernels& vnni) {
  Kernels k = vnni;
  add_long<Q4_0Panel, Tiles>(k.panel[kQ4_0Id]);
  add_long<Q8_0Panel, Tiles>(k.panel[kQ8_0Id]);
  add_long_k<Corr::Q4_K>(k.panel[kQ4_KId], &long_gemm_q4_k<Tiles>);
  add_long_k<Corr::Q6_K>(k.panel[kQ6_KId], &long_gemm_q6_k<Tiles>);
  return k;
}

}  // namespace

const Kernels* table(bool bf16);  // table_x86.cpp

const Kernels* table_amx(bool bf16) {
  static const Kernels with_bf16 = [] {
    Kernels k = with_tiles<HwTiles>(*table(true));
    k.isa = Isa::Amx;
    return k;
  }();
  static const Kernels without_bf16 = [] {
    Kernels k = with_tiles<HwTiles>(*table(false));
    k.isa = Isa::Amx;
    return k;
  }();
  return bf16 ? &with_bf16 : &without_bf16;
}

const PanelKernels* amx_panels(int type, bool emulated) {
  if (type < 0 || type >= kTypeSlots) return nullptr;
  static const Kernels hw = with_tiles<HwTiles>(*table(false));
  static const Kernels emu = with_tiles<EmuTiles>(*table(false));
  return emulated ? &emu.panel[type] : &hw.panel[type];
}

}  // namespace slm::kern::SLM_ISA_NS
