// Quantized activation tiles for the panel kernels (see PanelKernels in kernels/kernels.h).
//
// A tile holds kTile tokens. Their int8 quants are interleaved four at a time: the bytes of
// group g (values 4g..4g+3) of token t sit at qs + (g * kTile + t) * 4, so a kernel working on
// kTile tokens broadcasts each token's four bytes from fixed offsets of one pointer. Then come
// the block scales as floats, d[b * kTile + t], and int32 corrections corr[c * kTile + t] whose
// meaning depends on the weight type (listed with Corr below). Padding tokens are all zero.
#pragma once
#include "kernels/x86/simd.h"

namespace slm::kern::SLM_ISA_NS {

struct TileLayout {
  size_t d_off = 0;  // float d[n_scales * kTile]
  size_t c_off = 0;  // int32 corr[n_corr * kTile]
  size_t bytes = 0;  // whole tile, a multiple of 64
  // Set by the panel driver when the call has a single tile (decoding, a server's batch of
  // one token per sequence): each panel is used once, streamed from memory, so the tile
  // kernels prefetch ahead (panel_driver.h).
  bool stream = false;
};

// Q8_0 activations (the 32-value block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL): one scale
// and one correction per 32 values.
inline TileLayout tile_q8_0(int64_t n_in) {
  TileLayout l;
  const size_t nb = static_cast<size_t>(n_in / 32);
  l.d_off = round_up(static_cast<size_t>(n_in) * kTile, 64);
  l.c_off = l.d_off + round_up(nb * kTile * 4, 64);
  l.bytes = l.c_off + round_up(nb * kTile * 4, 64);
  return l;
}
// Q8_K activations (K-quant and IQ4_XS weights): one scale and 16 corrections per 256 values.
// (Q2_K's eight pairs sit in the first 8.)
inline TileLayout tile_q8_K(int64_t n_in) {
  TileLayout l;
  const size_t nb = static_cast<size_t>(n_in / 256);
  l.d_off = round_up(static_cast<size_t>(n_in) * kTile, 64);
  l.c_off = l.d_off + round_up(nb * kTile * 4, 64);
  l.bytes = l.c_off + round_up(nb * 16 * kTile * 4, 64);
  return l;
}

// Int16 activations (F16 weights on VPDPWSSD): pairs of int16 instead of quadruples of int8,
// so a group holds values 2g, 2g+1; one scale per 32 values, no corrections.
inline TileLayout tile_i16(int64_t n_in) {
  TileLayout l;
  const size_t nb = static_cast<size_t>(n_in / 32);
  l.d_off = round_up(static_cast<size_t>(n_in) * 2 * kTile, 64);
  l.c_off = l.d_off + round_up(nb * kTile * 4, 64);
  l.bytes = l.c_off;
  return l;
}
// The int16 range both sides use: 32 products of at most 8191^2 still fit an int32.
constexpr int kI16Max = 8191;

// What corr holds, per weight type. The kernels take unsigned weight bytes (VPDPBUSD), so a
// type stored with an offset (value = u - k) needs k * sum(activation quants) subtracted.
enum class Corr {
  Q4_0,   // per 32: -8 * sum
  Q8_0,   // per 32: -128 * sum (Q8_0 weights are fed as u = q + 128; IQ4_NL's levels too)
  Q5_0,   // per 32: -16 * sum
  Q8_1,   // per 32: not an integer but the float s = fp16(d * sum) of a Q8_1 block (its bits),
          // which the weight's offset m multiplies (Q4_1, Q5_1: value = q * d + m)
  Q4_K,   // per 256, c = 0..3: the int16 pair (sum of values 64c..64c+31, of 64c+32..64c+63),
          // for VPMADDWD against the pairs of six-bit mins (Q4_K, Q5_K)
  Q6_K,   // per 256, c = 0..15: -32 * sum of values 16c..16c+15
  Q3_K,   // per 256, c = 0..15: -4 * sum of values 16c..16c+15
  Q2_K,   // per 256, c = 0..7: the int16 pair (sum of values 32c..32c+15, of 32c+16..32c+31),
          // for VPMADDWD against the pairs of four-bit mins
  IQ4_XS, // per 256, c = 0..7: -128 * sum of values 32c..32c+31 (levels fed as u = v + 128)
  I16     // int16 activations (tile_i16), no corrections
};

// Quantize one block; the quants, the scale as the dot product sees it, and per-16 sums.
// q8_0_block: 32 values, llama.cpp's x86 rounding; returns d rounded through fp16 (stored);
// d_raw, if given, receives d before that rounding (what a Q8_1 block's s is computed from).
float q8_0_block(const float* x, int8_t* qs, uint16_t* d_half, int32_t* sum, float* d_raw = nullptr);
// Whether a Corr kind's tiles are Q8_0-shaped (32-value blocks) rather than Q8_K-shaped.
inline bool corr_b32(Corr c) { return c == Corr::Q4_0 || c == Corr::Q8_0 || c == Corr::Q5_0 || c == Corr::Q8_1; }
// q8_K_block: 256 values, returns d; bsums[16] are the per-16 sums.
float q8_K_block(const float* x, int8_t* qs, int16_t* bsums);

void prepare_tile(Corr kind, const float* x, int n_tok, int64_t n_in, uint8_t* tile);
// Int16 tiles: each value is first rounded through fp16 (as llama.cpp feeds F16 weights), then
// scaled so the block's largest magnitude becomes kI16Max.
void prepare_tile_i16(const float* x, int n_tok, int64_t n_in, uint8_t* tile);

}  // namespace slm::kern::SLM_ISA_NS
