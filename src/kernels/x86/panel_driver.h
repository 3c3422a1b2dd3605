// The loops around a weight type's panel micro-kernel, shared by panels_*_x86.cpp.
//
// A type K provides:
//   static constexpr Corr kCorr;                        what its activation tiles hold
//   static size_t panel_bytes(int64_t n_in);
//   static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p);
//   template <int T> static void tile(const uint8_t* panel, int64_t n_in, const uint8_t* act,
//                                     const TileLayout& l, VF* acc);
// where tile() adds to acc[t] (t < T) the kLanes row results of the panel for the first T
// tokens of the activation tile.
#pragma once
#include "kernels/x86/act.h"

namespace slm::kern::SLM_ISA_NS {

inline TileLayout layout_for(Corr c, int64_t n_in) {
  return c == Corr::Q4_0 || c == Corr::Q8_0 ? tile_q8_0(n_in) : tile_q8_K(n_in);
}

// Scalars from the byte-addressed tiles and panels, through memcpy (no aliasing, no alignment
// assumptions; the compiler folds these into broadcast loads).
inline VF bcastf_at(const uint8_t* p) { float v; std::memcpy(&v, p, 4); return VF(bcastf(&v)); }

template <class K, int T>
inline void run_tile_store(const uint8_t* panel, int64_t n_in, const uint8_t* act,
                           const TileLayout& l, float* y, int64_t ldy, int rows) {
  VF acc[T];
  for (int t = 0; t < T; ++t) acc[t] = fzero();
  K::template tile<T>(panel, n_in, act, l, acc);
  for (int t = 0; t < T; ++t) {
    if (rows == kLanes) storef(y + t * ldy, acc[t]);
    else storef_n(y + t * ldy, acc[t], rows);
  }
}

template <class K>
void run_tile(int nt, const uint8_t* panel, int64_t n_in, const uint8_t* act, const TileLayout& l,
              float* y, int64_t ldy, int rows) {
  switch (nt) {
    case 1: run_tile_store<K, 1>(panel, n_in, act, l, y, ldy, rows); break;
    case 2: run_tile_store<K, 2>(panel, n_in, act, l, y, ldy, rows); break;
    case 3: run_tile_store<K, 3>(panel, n_in, act, l, y, ldy, rows); break;
    case 4: run_tile_store<K, 4>(panel, n_in, act, l, y, ldy, rows); break;
    default:
      if constexpr (kTile == 8) {
        switch (nt) {
          case 5: run_tile_store<K, 5>(panel, n_in, act, l, y, ldy, rows); break;
          case 6: run_tile_store<K, 6>(panel, n_in, act, l, y, ldy, rows); break;
          case 7: run_tile_store<K, 7>(panel, n_in, act, l, y, ldy, rows); break;
          default: run_tile_store<K, 8>(panel, n_in, act, l, y, ldy, rows); break;
        }
      }
      break;
  }
}

// Activation bytes a thread keeps in its L2 while it sweeps its panels; beyond it the weights
// are streamed again for the next chunk of tokens (cheap: each panel is reused by every token
// of the chunk).
constexpr size_t kActChunkBytes = 512 * 1024;

template <class K>
void gemm(const uint8_t* panels, int64_t p0, int64_t p1, int64_t n_out, int64_t n_in,
          const uint8_t* tiles, int64_t n_tok, float* y, int64_t ldy) {
  const size_t pb = K::panel_bytes(n_in);
  const TileLayout l = layout_for(K::kCorr, n_in);
  const int64_t n_tiles = (n_tok + kTile - 1) / kTile;
  int64_t chunk = static_cast<int64_t>(kActChunkBytes / l.bytes);
  if (chunk < 1) chunk = 1;
  for (int64_t c0 = 0; c0 < n_tiles; c0 += chunk) {
    const int64_t c1 = c0 + chunk < n_tiles ? c0 + chunk : n_tiles;
    for (int64_t p = p0; p < p1; ++p) {
      const uint8_t* panel = panels + static_cast<size_t>(p) * pb;
      const int64_t left = n_out - p * kLanes;
      const int rows = left < kLanes ? static_cast<int>(left) : kLanes;
      for (int64_t g = c0; g < c1; ++g) {
        const int64_t t0 = g * kTile;
        const int nt = n_tok - t0 < kTile ? static_cast<int>(n_tok - t0) : kTile;
        run_tile<K>(nt, panel, n_in, tiles + static_cast<size_t>(g) * l.bytes, l,
                    y + t0 * ldy + p * kLanes, ldy, rows);
      }
    }
  }
}

template <class K>
void prepare(const float* x, int n_tok, int64_t n_in, uint8_t* tile) {
  prepare_tile(K::kCorr, x, n_tok, n_in, tile);
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
