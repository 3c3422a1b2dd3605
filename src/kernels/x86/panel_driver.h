// The loops around a weight type's panel micro-kernel, shared by panels_*_x86.cpp.
//
// A type K provides:
//   static constexpr Corr kCorr;                        what its activation tiles hold
//   static size_t panel_bytes(int64_t n_in);
//   static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p);
//   template <int T> static void tile(const uint8_t* panel, int64_t n_in, const uint8_t* act,
//                                     const TileLayout& l, VF* acc);
//   static constexpr int kMaxT;                          most tokens per pass (<= kTile)
//   static constexpr int kBlockVals, kCorrPerBlock, kActBytes;  values per panel block (32 or
//       256; its data are contiguous in the panel), corrections per block in the activation
//       tile, bytes per activation value (1, or 2 for int16)
//   static constexpr size_t kBlockBytes;                 panel bytes per block
// where tile() adds to acc[t] (t < T) the kLanes row results of the panel for the first T
// tokens of the activation tile.
#pragma once
#include "kernels/x86/act.h"

namespace slm::kern::SLM_ISA_NS {

inline TileLayout layout_for(Corr c, int64_t n_in) {
  if (c == Corr::I16) return tile_i16(n_in);
  return corr_b32(c) ? tile_q8_0(n_in) : tile_q8_K(n_in);
}

// Streaming weights from memory does so little work per byte (decoding: one token; a server's
// batch: one token per sequence, up to kTile) that the out-of-order window alone keeps too few
// cache misses in flight; the tile kernels then prefetch the weight stream this many bytes
// ahead (one core streaming Q4_0 panels at one token: 13.7 -> 16.8 GB/s on Zen 4; the
// 128256 x 2048 output head at 8 tokens, Zen 5, 2 threads: Q6_K 19.7 -> 9.8 ms, Q4_0 10.1 ->
// 5.6 ms, `slm_benches --benchmark_filter=head/`). Not for prompts (several tiles), whose
// panel slices are in L1 already: there it cost Q6_K up to a third of its speed.
constexpr size_t kPrefetch = 4096;
template <int T>
inline void prefetch_ahead(const uint8_t* p, size_t bytes, const TileLayout& l) {
  if (T <= 2 || l.stream)
    for (size_t i = 0; i < bytes; i += 64) prefetch_at(p, kPrefetch + i);
}

// Scalars from the byte-addressed tiles and panels, through memcpy (no aliasing, no alignment
// assumptions; the compiler folds these into broadcast loads).
inline VF bcastf_at(const uint8_t* p) { float v; std::memcpy(&v, p, 4); return VF(bcastf(&v)); }

template <int...>
struct Seq {};

// The super-block loop of the K-quants whose sub-blocks have integer scales and no mins (Q3_K,
// Q6_K): K::sub_blocks<T>(o, a, corr, sacc, Seq<0..15>) adds one super-block's scaled integer
// sums to sacc (corr: the tile's 16 corrections for it), and the fp16 d at K::kD (in units of
// kLanes bytes) turns them into floats once per super-block.
template <class K, int T>
inline void scaled_super_blocks(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
  const int64_t nsb = n_in / 256;
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* o = p + sb * K::kSb;
    const uint8_t* a = act + sb * 64 * kTile * 4;
    prefetch_ahead<T>(o, K::kSb, l);
    VI sacc[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sacc[t] = vzero();
    K::template sub_blocks<T>(o, a, act + l.c_off + sb * 16 * kTile * 4, sacc,
                              Seq<0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15>{});
    const VF d = load_h(o + K::kD * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
      acc[t] = fmadd(cvt(sacc[t]), mul(d, bcastf_at(act + l.d_off + (sb * kTile + t) * 4)), acc[t]);
  }
}

// acc = the partial sums so far (accumulate) or zero, plus this k-range's, stored to y.
template <class K, int T>
inline void run_tile_store(const uint8_t* panel, int64_t n_in, const uint8_t* act,
                           const TileLayout& l, float* y, int64_t ldy, int rows, bool accumulate) {
  VF acc[T];
  for (int t = 0; t < T; ++t)
    acc[t] = !accumulate ? fzero() : rows == kLanes ? loadf(y + t * ldy) : loadf_n(y + t * ldy, rows);
  if constexpr (T > K::kMaxT) {
    // Two passes over the panel, each for half the tokens: kernels that keep three
    // accumulators per token would otherwise spill registers. Tokens t0.. of a tile are
    // reached by offsetting every activation address by t0 dwords (see act.h).
    constexpr int H = T / 2;
    K::template tile<H>(panel, n_in, act, l, acc);
    K::template tile<T - H>(panel, n_in, act + H * 4, l, acc + H);
  } else {
    K::template tile<T>(panel, n_in, act, l, acc);
  }
  for (int t = 0; t < T; ++t) {
    if (rows == kLanes) storef(y + t * ldy, acc[t]);
    else storef_n(y + t * ldy, acc[t], rows);
  }
}

template <class K>
void run_tile(int nt, const uint8_t* panel, int64_t n_in, const uint8_t* act, const TileLayout& l,
              float* y, int64_t ldy, int rows, bool accumulate) {
  switch (nt) {
    case 1: run_tile_store<K, 1>(panel, n_in, act, l, y, ldy, rows, accumulate); break;
    case 2: run_tile_store<K, 2>(panel, n_in, act, l, y, ldy, rows, accumulate); break;
    case 3: run_tile_store<K, 3>(panel, n_in, act, l, y, ldy, rows, accumulate); break;
    case 4: run_tile_store<K, 4>(panel, n_in, act, l, y, ldy, rows, accumulate); break;
    default:
      if constexpr (kTile == 8) {
        switch (nt) {
          case 5: run_tile_store<K, 5>(panel, n_in, act, l, y, ldy, rows, accumulate); break;
          case 6: run_tile_store<K, 6>(panel, n_in, act, l, y, ldy, rows, accumulate); break;
          case 7: run_tile_store<K, 7>(panel, n_in, act, l, y, ldy, rows, accumulate); break;
          default: run_tile_store<K, 8>(panel, n_in, act, l, y, ldy, rows, accumulate); break;
        }
      }
      break;
  }
}

// The loops, outermost first: k-slices of the rows, chunks of tokens, panels, tiles.
//  - k-slices: long rows (n_in 8192: a 16-row Q4_0 panel is 73 KB) are cut into slices of
//    about kPanelSliceBytes of panel, with partial sums kept in y, so that a panel slice stays
//    in L1 while every tile of the chunk uses it.
//  - token chunks: the activations of a chunk's tiles, for one k-slice, stay in L2
//    (kActChunkBytes) while the thread sweeps its panels; the weights are streamed once per
//    chunk. Sizing chunks by the slice rather than the whole row keeps that to once or twice
//    per call even for int16 activations of n_in 8192 (F16 2048x8192, 512 tokens: 167 -> ~230
//    GOP/s per core on Zen 4).
constexpr size_t kActChunkBytes = 512 * 1024;
constexpr size_t kPanelSliceBytes = 20 * 1024;

template <class K>
void gemm(const uint8_t* panels, int64_t p0, int64_t p1, int64_t n_out, int64_t n_in,
          const uint8_t* tiles, int64_t n_tok, float* y, int64_t ldy) {
  const size_t pb = K::panel_bytes(n_in);
  const TileLayout l = layout_for(K::kCorr, n_in);
  const int64_t n_tiles = (n_tok + kTile - 1) / kTile;
  // k-slices of equal size (whole blocks), each at most kPanelSliceBytes of panel if possible.
  // A single tile (decoding) reuses nothing: it reads each panel in one sequential sweep.
  const int64_t nblk = n_in / K::kBlockVals;
  const int64_t n_slices =
      n_tiles <= 1
          ? 1
          : (nblk * static_cast<int64_t>(K::kBlockBytes) + kPanelSliceBytes - 1) /
                static_cast<int64_t>(kPanelSliceBytes);
  const int64_t sblk = (nblk + n_slices - 1) / n_slices;
  for (int64_t kb0 = 0; kb0 < nblk; kb0 += sblk) {
    const int64_t kb1 = kb0 + sblk < nblk ? kb0 + sblk : nblk;
    const int64_t nk = (kb1 - kb0) * K::kBlockVals;
    // The slice's view of each activation tile: quants from its first value on, and the
    // scales and corrections of its blocks, at offsets relative to the shifted pointer.
    const size_t qs_shift = static_cast<size_t>(kb0) * K::kBlockVals * K::kActBytes * kTile;
    TileLayout ls = l;
    ls.stream = n_tiles == 1;
    ls.d_off = l.d_off - qs_shift + static_cast<size_t>(kb0) * kTile * 4;
    ls.c_off = l.c_off - qs_shift + static_cast<size_t>(kb0) * K::kCorrPerBlock * kTile * 4;
    const size_t slice_tile_bytes =
        static_cast<size_t>(nk) * K::kActBytes * kTile +
        static_cast<size_t>(kb1 - kb0) * (1 + K::kCorrPerBlock) * kTile * 4;
    int64_t chunk = static_cast<int64_t>(kActChunkBytes / slice_tile_bytes);
    if (chunk < 1) chunk = 1;
    for (int64_t c0 = 0; c0 < n_tiles; c0 += chunk) {
      const int64_t c1 = c0 + chunk < n_tiles ? c0 + chunk : n_tiles;
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t left = n_out - p * kLanes;
        const int rows = left < kLanes ? static_cast<int>(left) : kLanes;
        const uint8_t* panel = panels + static_cast<size_t>(p) * pb + static_cast<size_t>(kb0) * K::kBlockBytes;
        for (int64_t g = c0; g < c1; ++g) {
          const int64_t t0 = g * kTile;
          const int nt = n_tok - t0 < kTile ? static_cast<int>(n_tok - t0) : kTile;
          run_tile<K>(nt, panel, nk, tiles + static_cast<size_t>(g) * l.bytes + qs_shift, ls,
                      y + t0 * ldy + p * kLanes, ldy, rows, kb0 > 0);
        }
      }
    }
  }
}

template <class K>
void prepare(const float* x, int n_tok, int64_t n_in, uint8_t* tile) {
  if (K::kCorr == Corr::I16) prepare_tile_i16(x, n_tok, n_in, tile);
  else prepare_tile(K::kCorr, x, n_tok, n_in, tile);
}

template <class K>
size_t tile_bytes(int64_t n_in) { return layout_for(K::kCorr, n_in).bytes; }

template <class K>
PanelKernels panel_kernels() {
  PanelKernels p{};
  p.rows = kLanes;
  p.tile_tokens = kTile;
  p.panel_bytes = &K::panel_bytes;
  p.pack = &K::pack;
  p.tile_bytes = &tile_bytes<K>;
  p.prepare = &prepare<K>;
  p.gemm = &gemm<K>;
  return p;
}

}  // namespace slm::kern::SLM_ISA_NS
