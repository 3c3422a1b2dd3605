// Scalar reference kernels for the 256-value super-block types: Q2_K..Q6_K, Q8_K (the
// activation type they are multiplied with) and IQ4_XS. The encoders are ggml's
// quantize_row_*_ref (no importance matrix) including their scale searches, written so that
// every float expression is evaluated in the same order; this is what makes our bytes equal to
// llama-quantize's for the same input. The dot products follow ggml's generic (non-SIMD) code,
// including its 8-lane float accumulators, so results match its scalar path exactly.
#include <cmath>
#include <cstring>

#include "kernels/ref/quants.h"

namespace slm::ref {

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: "all zero" threshold

template <class Block>
const Block* blocks(const void* p) { return static_cast<const Block*>(p); }
template <class Block>
Block* blocks(void* p) { return static_cast<Block*>(p); }

inline int imax(int a, int b) { return a > b ? a : b; }
inline int imin(int a, int b) { return a < b ? a : b; }

// Symmetric quantization of n values to integers in [-nmax, nmax-1] (stored as L + nmax).
// rmse_type 1 weights errors by x^2 and tries 18 nearby scales, keeping the one with the best
// weighted fit; returns the scale.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      const int l = nearest_int(iscale * x[i]);
      L[i] = static_cast<int8_t>(nmax + imax(-nmax, imin(nmax - 1, l)));
    }
    return 1 / iscale;
  }
  bool return_early = false;
  if (rmse_type < 0) { rmse_type = -rmse_type; return_early = true; }
  auto weight = [&](int i) -> float {
    return rmse_type == 1 ? x[i] * x[i]
         : rmse_type == 2 ? 1.0f
         : rmse_type == 3 ? std::fabs(x[i])
                          : std::sqrt(std::fabs(x[i]));
  };
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = imax(-nmax, imin(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = weight(i);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = imax(-nmax, imin(nmax - 1, l));
      const float w = weight(i);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + imax(-nmax, imin(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's per-16 quantizer: start from the max-based scale, then (do_rmse) move single values
// to the level that improves the x^2-weighted fit, up to 5 passes. L holds l + nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = -nmax / max;
  if (do_rmse) {
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = imax(-nmax, imin(nmax - 1, l));
      L[i] = static_cast<int8_t>(l);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
      int n_changed = 0;
      for (int i = 0; i < n; ++i) {
        const float w = x[i] * x[i];
        float slx = sumlx - w * x[i] * L[i];
        if (slx > 0) {
          float sl2 = suml2 - w * L[i] * L[i];
          int new_l = nearest_int(x[i] * sl2 / slx);
          new_l = imax(-nmax, imin(nmax - 1, new_l));
          if (new_l != L[i]) {
            slx += w * x[i] * new_l;
            sl2 += w * new_l * new_l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
              L[i] = static_cast<int8_t>(new_l);
              sumlx = slx;
              suml2 = sl2;
              ++n_changed;
            }
          }
        }
      }
      if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
  }
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = imax(-nmax, imin(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
  }
  return 1 / iscale;
}

// Asymmetric quantization x ~ scale * L - min with L in [0, nmax]: starts from the min/max
// fit, then tries nstep+1 scales around it, solving the weighted least-squares scale and min
// for each level assignment and keeping the lowest weighted error (abs or squared).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(imax(0, imin(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = imax(0, imin(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Six-bit scale j and min j (j < 8) of the packed 12-byte Q4_K/Q5_K scales: the first four
// live in the low 6 bits of bytes 0..7; the last four are split into a nibble in bytes 8..11
// and the top two bits of bytes 0..7.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// Inverse of get_scale_min_k4 for all eight pairs; `scales` must be zeroed first.
inline void set_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* scales) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
    scales[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
  }
}

// Signed six-bit scale j (0..15) of Q3_K's packed 12 bytes: low nibble from bytes 0..7,
// high two bits from bytes 8..11.
inline int q3_K_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// The shared shape of ggml's generic K-quant dot products: 8 int32 lanes accumulate
// scale * q8 * q over each group, then the block's float factor multiplies each lane.
struct Lanes {
  float sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int32_t aux32[8];
  void start_block() { std::memset(aux32, 0, sizeof(aux32)); }
  void add8(int scale, const int8_t* q8, const int8_t* a) {
    for (int l = 0; l < 8; ++l) {
      const int16_t p = static_cast<int16_t>(q8[l] * a[l]);
      aux32[l] += scale * p;
    }
  }
  void end_block(float d) {
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
  }
  float total(float sumf) const {
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
  }
};

}  // namespace

// ================================ Q8_K =========================================================

void to_float_q8_K(const void* src, float* dst, int64_t n) {
  const BlockQ8_K* x = blocks<BlockQ8_K>(src);
  const int64_t nb = n / kQK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f32(x[i].d);
    for (int j = 0; j < kQK_K; ++j) dst[i * kQK_K + j] = d * x[i].qs[j];
  }
}

// The value of largest magnitude maps to -127 exactly (iscale = -127/max, kept negative as in
// ggml); bsums hold each group of 16 quants' sum for the K-quants' min terms.
void from_float_q8_K(const float* src, void* dst, int64_t n) {
  BlockQ8_K* y = blocks<BlockQ8_K>(dst);
  const int64_t nb = n / kQK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQK_K;
    float max = 0, amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (amax == 0.0f) {
      // ggml leaves bsums untouched here; zeroing them keeps the block deterministic and is
      // what the sums of all-zero quants are anyway.
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = nearest_int(iscale * x[j]);
      y[i].qs[j] = static_cast<int8_t>(imin(127, v));
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
      store_i16(y[i].bsums + 2 * j, static_cast<int16_t>(sum));
    }
    store_f32(y[i].d, 1 / iscale);
  }
}

// ================================ Q2_K =========================================================

void to_float_q2_K(const void* src, float* dst, int64_t n) {
  const BlockQ2_K* x = blocks<BlockQ2_K>(src);
  const int64_t nb = n / kQK_K;
  float* y = dst;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    const float min = load_f16(x[i].dmin);
    const uint8_t* q = x[i].qs;
    int is = 0;
    for (int nn = 0; nn < kQK_K; nn += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        uint8_t sc = x[i].scales[is++];
        float dl = d * (sc & 0xF), ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l] >> shift) & 3) - ml;
        sc = x[i].scales[is++];
        dl = d * (sc & 0xF);
        ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l + 16] >> shift) & 3) - ml;
        shift += 2;
      }
      q += 32;
    }
  }
}

void from_float_q2_K(const float* src, void* dst, int64_t n) {
  BlockQ2_K* y = blocks<BlockQ2_K>(dst);
  const int64_t nb = n / kQK_K;
  uint8_t L[kQK_K], Laux[16];
  float weights[16], mins[kQK_K / 16], scales[kQK_K / 16];
  const float q4scale = 15.f;
  const float* x = src;
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float max_scale = 0, max_min = 0;  // scales are positive once the min is taken out
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                   0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      }
      store_f16(y[i].d, max_scale / q4scale);
    } else {
      for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = 0;
      store_f16(y[i].d, 0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < kQK_K / 16; ++j) {
        const int l = nearest_int(iscale * mins[j]);
        y[i].scales[j] = static_cast<uint8_t>(y[i].scales[j] | (l << 4));
      }
      store_f16(y[i].dmin, max_min / q4scale);
    } else {
      store_f16(y[i].dmin, 0.f);
    }
    // Requantize against the scales as stored (fp16 d, 4-bit multipliers).
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = load_f16(y[i].d) * (y[i].scales[j] & 0xF);
      if (d == 0.0f) continue;
      const float dm = load_f16(y[i].dmin) * (y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = static_cast<uint8_t>(imax(0, imin(3, l)));
      }
    }
    for (int j = 0; j < kQK_K; j += 128) {
      for (int l = 0; l < 32; ++l) {
        y[i].qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) |
                                                  (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
      }
    }
  }
}

float vec_dot_q2_K_q8_K(int64_t n, const void* vx, const void* vy) {
  const BlockQ2_K* x = blocks<BlockQ2_K>(vx);
  const BlockQ8_K* y = blocks<BlockQ8_K>(vy);
  const int64_t nb = n / kQK_K;
  float sumf = 0;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q2 = x[i].qs;
    const int8_t* q8 = y[i].qs;
    const uint8_t* sc = x[i].scales;
    int summs = 0;
    for (int j = 0; j < 16; ++j) summs += load_i16(y[i].bsums + 2 * j) * (sc[j] >> 4);
    const float yd = load_f32(y[i].d);
    const float dall = yd * load_f16(x[i].d);
    const float dmin = yd * load_f16(x[i].dmin);
    int isum = 0, is = 0;
    for (int k = 0; k < kQK_K / 128; ++k) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        int d = sc[is++] & 0xF;
        int isuml = 0;
        for (int l = 0; l < 16; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
        isum += d * isuml;
        d = sc[is++] & 0xF;
        isuml = 0;
        for (int l = 16; l < 32; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
        isum += d * isuml;
        shift += 2;
        q8 += 32;
      }
      q2 += 32;
    }
    sumf += dall * isum - dmin * summs;
  }
  return sumf;
}

// ================================ Q3_K =========================================================

void to_float_q3_K(const void* src, float* dst, int64_t n) {
  const BlockQ3_K* x = blocks<BlockQ3_K>(src);
  const int64_t nb = n / kQK_K;
  float* y = dst;
  for (int64_t i = 0; i < nb; ++i) {
    const float d_all = load_f16(x[i].d);
    const uint8_t* q = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    uint8_t m = 1;
    int is = 0;
    for (int nn = 0; nn < kQK_K; nn += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        float dl = d_all * q3_K_scale(x[i].scales, is++);
        for (int l = 0; l < 16; ++l) {
          *y++ = dl * (static_cast<int8_t>((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
        }
        dl = d_all * q3_K_scale(x[i].scales, is++);
        for (int l = 0; l < 16; ++l) {
          *y++ = dl * (static_cast<int8_t>((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
        }
        shift += 2;
        m = static_cast<uint8_t>(m << 1);
      }
      q += 32;
    }
  }
}

void from_float_q3_K(const float* src, void* dst, int64_t n) {
  BlockQ3_K* y = blocks<BlockQ3_K>(dst);
  const int64_t nb = n / kQK_K;
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  const float* x = src;
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) { amax = scale; max_scale = scales[j]; }
    }
    std::memset(y[i].scales, 0, 12);
    if (max_scale != 0.0f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        int8_t l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
        l = static_cast<int8_t>(imax(-32, imin(31, l)) + 32);
        if (j < 8) {
          y[i].scales[j] = l & 0xF;
        } else {
          y[i].scales[j - 8] = static_cast<uint8_t>(y[i].scales[j - 8] | ((l & 0xF) << 4));
        }
        l = static_cast<int8_t>(l >> 4);
        y[i].scales[j % 4 + 8] = static_cast<uint8_t>(y[i].scales[j % 4 + 8] | (l << (2 * (j / 4))));
      }
      store_f16(y[i].d, 1 / iscale);
    } else {
      store_f16(y[i].d, 0.f);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = load_f16(y[i].d) * q3_K_scale(y[i].scales, j);
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(imax(-4, imin(3, l)) + 4);
      }
    }
    // High bit of quant j goes to hmask[j % 32], bit j / 32.
    std::memset(y[i].hmask, 0, kQK_K / 8);
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < kQK_K; ++j) {
      if (L[j] > 3) {
        y[i].hmask[m] |= hm;
        L[j] = static_cast<int8_t>(L[j] - 4);
      }
      if (++m == kQK_K / 8) {
        m = 0;
        hm = static_cast<uint8_t>(hm << 1);
      }
    }
    for (int j = 0; j < kQK_K; j += 128) {
      for (int l = 0; l < 32; ++l) {
        y[i].qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) |
                                                  (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
      }
    }
  }
}

float vec_dot_q3_K_q8_K(int64_t n, const void* vx, const void* vy) {
  const BlockQ3_K* x = blocks<BlockQ3_K>(vx);
  const BlockQ8_K* y = blocks<BlockQ8_K>(vy);
  const int64_t nb = n / kQK_K;
  int8_t aux8[kQK_K];
  Lanes lanes;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q3 = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    const int8_t* q8 = y[i].qs;
    lanes.start_block();
    int8_t* a = aux8;
    uint8_t m = 1;
    for (int j = 0; j < kQK_K; j += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int l = 0; l < 32; ++l) {
          a[l] = static_cast<int8_t>(((q3[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
        }
        a += 32;
        m = static_cast<uint8_t>(m << 1);
      }
      q3 += 32;
    }
    a = aux8;
    for (int j = 0; j < kQK_K / 16; ++j) {
      const int scale = q3_K_scale(x[i].scales, j);
      lanes.add8(scale, q8, a);
      q8 += 8; a += 8;
      lanes.add8(scale, q8, a);
      q8 += 8; a += 8;
    }
    lanes.end_block(load_f16(x[i].d) * load_f32(y[i].d));
  }
  return lanes.total(0.0f);
}

// ================================ Q4_K =========================================================

void to_float_q4_K(const void* src, float* dst, int64_t n) {
  const BlockQ4_K* x = blocks<BlockQ4_K>(src);
  const int64_t nb = n / kQK_K;
  float* y = dst;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q = x[i].qs;
    const float d = load_f16(x[i].d);
    const float min = load_f16(x[i].dmin);
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < kQK_K; j += 64) {
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per-32 asymmetric fits, then 6-bit scales and
// mins relative to the largest of each, then requantization against the stored values.
static void quantize_k_scales_mins(const float* x, int nmax, float rmin, int nstep,
                                   uint8_t* dq_d, uint8_t* dq_dmin, uint8_t* packed_scales,
                                   uint8_t* L) {
  uint8_t Laux[32];
  float weights[32], mins[kQK_K / 32], scales[kQK_K / 32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                                 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(packed_scales, 0, kK_SCALE_SIZE);
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    set_scale_min_k4(j, ls, lm, packed_scales);
  }
  store_f16(dq_d, max_scale / 63.f);
  store_f16(dq_dmin, max_min / 63.f);
  uint8_t sc, m;
  for (int j = 0; j < kQK_K / 32; ++j) {
    get_scale_min_k4(j, packed_scales, &sc, &m);
    const float d = load_f16(dq_d) * sc;
    if (d == 0.0f) continue;
    const float dm = load_f16(dq_dmin) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(imax(0, imin(nmax, l)));
    }
  }
}

void from_float_q4_K(const float* src, void* dst, int64_t n) {
  BlockQ4_K* y = blocks<BlockQ4_K>(dst);
  const int64_t nb = n / kQK_K;
  uint8_t L[kQK_K];
  const float* x = src;
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quantize_k_scales_mins(x, 15, -1.f, 20, y[i].d, y[i].dmin, y[i].scales, L);
    uint8_t* q = y[i].qs;
    for (int j = 0; j < kQK_K; j += 64) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
      q += 32;
    }
  }
}

float vec_dot_q4_K_q8_K(int64_t n, const void* vx, const void* vy) {
  const BlockQ4_K* x = blocks<BlockQ4_K>(vx);
  const BlockQ8_K* y = blocks<BlockQ8_K>(vy);
  const int64_t nb = n / kQK_K;
  int8_t aux8[kQK_K];
  Lanes lanes;
  float sumf = 0;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q4 = x[i].qs;
    const int8_t* q8 = y[i].qs;
    lanes.start_block();
    int8_t* a = aux8;
    for (int j = 0; j < kQK_K / 64; ++j) {
      for (int l = 0; l < 32; ++l) a[l] = static_cast<int8_t>(q4[l] & 0xF);
      a += 32;
      for (int l = 0; l < 32; ++l) a[l] = static_cast<int8_t>(q4[l] >> 4);
      a += 32;
      q4 += 32;
    }
    uint8_t scales[8], mins[8];
    for (int j = 0; j < 8; ++j) get_scale_min_k4(j, x[i].scales, &scales[j], &mins[j]);
    int sumi = 0;
    for (int j = 0; j < kQK_K / 16; ++j) sumi += load_i16(y[i].bsums + 2 * j) * mins[j / 2];
    a = aux8;
    for (int j = 0; j < kQK_K / 32; ++j) {
      const int32_t scale = scales[j];
      for (int k = 0; k < 4; ++k) {
        lanes.add8(scale, q8, a);
        q8 += 8; a += 8;
      }
    }
    const float yd = load_f32(y[i].d);
    lanes.end_block(load_f16(x[i].d) * yd);
    const float dmin = load_f16(x[i].dmin) * yd;
    sumf -= dmin * sumi;
  }
  return lanes.total(sumf);
}

// ================================ Q5_K =========================================================

void to_float_q5_K(const void* src, float* dst, int64_t n) {
  const BlockQ5_K* x = blocks<BlockQ5_K>(src);
  const int64_t nb = n / kQK_K;
  float* y = dst;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    const float d = load_f16(x[i].d);
    const float min = load_f16(x[i].dmin);
    int is = 0;
    uint8_t sc, m;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < kQK_K; j += 64) {
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

void from_float_q5_K(const float* src, void* dst, int64_t n) {
  BlockQ5_K* y = blocks<BlockQ5_K>(dst);
  const int64_t nb = n / kQK_K;
  uint8_t L[kQK_K];
  const float* x = src;
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quantize_k_scales_mins(x, 31, -0.5f, 15, y[i].d, y[i].dmin, y[i].scales, L);
    uint8_t* qh = y[i].qh;
    uint8_t* ql = y[i].qs;
    std::memset(qh, 0, kQK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int nn = 0; nn < kQK_K; nn += 64) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[nn + j];
        if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
        int l2 = L[nn + j + 32];
        if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<uint8_t>(m1 << 2);
      m2 = static_cast<uint8_t>(m2 << 2);
      ql += 32;
    }
  }
}

float vec_dot_q5_K_q8_K(int64_t n, const void* vx, const void* vy) {
  const BlockQ5_K* x = blocks<BlockQ5_K>(vx);
  const BlockQ8_K* y = blocks<BlockQ8_K>(vy);
  const int64_t nb = n / kQK_K;
  int8_t aux8[kQK_K];
  Lanes lanes;
  float sumf = 0;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q4 = x[i].qs;
    const uint8_t* hm = x[i].qh;
    const int8_t* q8 = y[i].qs;
    lanes.start_block();
    int8_t* a = aux8;
    uint8_t m = 1;
    for (int j = 0; j < kQK_K / 64; ++j) {
      for (int l = 0; l < 32; ++l) a[l] = static_cast<int8_t>((q4[l] & 0xF) + (hm[l] & m ? 16 : 0));
      a += 32;
      m = static_cast<uint8_t>(m << 1);
      for (int l = 0; l < 32; ++l) a[l] = static_cast<int8_t>((q4[l] >> 4) + (hm[l] & m ? 16 : 0));
      a += 32;
      m = static_cast<uint8_t>(m << 1);
      q4 += 32;
    }
    uint8_t scales[8], mins[8];
    for (int j = 0; j < 8; ++j) get_scale_min_k4(j, x[i].scales, &scales[j], &mins[j]);
    int sumi = 0;
    for (int j = 0; j < kQK_K / 16; ++j) sumi += load_i16(y[i].bsums + 2 * j) * mins[j / 2];
    a = aux8;
    for (int j = 0; j < kQK_K / 32; ++j) {
      const int32_t scale = scales[j];
      for (int k = 0; k < 4; ++k) {
        lanes.add8(scale, q8, a);
        q8 += 8; a += 8;
      }
    }
    const float yd = load_f32(y[i].d);
    lanes.end_block(load_f16(x[i].d) * yd);
    const float dmin = load_f16(x[i].dmin) * yd;
    sumf -= dmin * sumi;
  }
  return lanes.total(sumf);
}

// ================================ Q6_K =========================================================

void to_float_q6_K(const void* src, float* dst, int64_t n) {
  const BlockQ6_K* x = blocks<BlockQ6_K>(src);
  const int64_t nb = n / kQK_K;
  float* y = dst;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int nn = 0; nn < kQK_K; nn += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int8_t q1 = static_cast<int8_t>(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        const int8_t q2 = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        const int8_t q3 = static_cast<int8_t>(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        const int8_t q4 = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void from_float_q6_K(const float* src, void* dst, int64_t n) {
  BlockQ6_K* y = blocks<BlockQ6_K>(dst);
  const int64_t nb = n / kQK_K;
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  const float* x = src;
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
      scales[ib] = scale;
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scale; }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      continue;
    }
    const float iscale = -128.f / max_scale;
    store_f16(y[i].d, 1 / iscale);
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      y[i].scales[ib] = static_cast<int8_t>(imin(127, nearest_int(iscale * scales[ib])));
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = load_f16(y[i].d) * y[i].scales[j];
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(imax(-32, imin(31, l)) + 32);
      }
    }
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < kQK_K; j += 128) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l + 0] & 0xF;
        const uint8_t q2 = L[j + l + 32] & 0xF;
        const uint8_t q3 = L[j + l + 64] & 0xF;
        const uint8_t q4 = L[j + l + 96] & 0xF;
        ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                     ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
      ql += 64;
      qh += 32;
    }
  }
}

float vec_dot_q6_K_q8_K(int64_t n, const void* vx, const void* vy) {
  const BlockQ6_K* x = blocks<BlockQ6_K>(vx);
  const BlockQ8_K* y = blocks<BlockQ8_K>(vy);
  const int64_t nb = n / kQK_K;
  int8_t aux8[kQK_K];
  Lanes lanes;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q4 = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* q8 = y[i].qs;
    lanes.start_block();
    int8_t* a = aux8;
    for (int j = 0; j < kQK_K; j += 128) {
      for (int l = 0; l < 32; ++l) {
        a[l + 0] = static_cast<int8_t>(((q4[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        a[l + 32] = static_cast<int8_t>(((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        a[l + 64] = static_cast<int8_t>(((q4[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        a[l + 96] = static_cast<int8_t>(((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
      a += 128;
      q4 += 64;
      qh += 32;
    }
    a = aux8;
    for (int j = 0; j < kQK_K / 16; ++j) {
      const int scale = x[i].scales[j];
      lanes.add8(scale, q8, a);
      q8 += 8; a += 8;
      lanes.add8(scale, q8, a);
      q8 += 8; a += 8;
    }
    lanes.end_block(load_f16(x[i].d) * load_f32(y[i].d));
  }
  return lanes.total(0.0f);
}

// ================================ IQ4_XS =======================================================

void to_float_iq4_xs(const void* src, float* dst, int64_t n) {
  const BlockIQ4_XS* x = blocks<BlockIQ4_XS>(src);
  const int64_t nb = n / kQK_K;
  float* y = dst;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* qs = x[i].qs;
    const float d = load_f16(x[i].d);
    const uint16_t scales_h = load_u16(x[i].scales_h);
    for (int ib = 0; ib < kQK_K / 32; ++ib) {
      const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
      const float dl = d * (ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j + 0] = dl * kValuesIQ4NL[qs[j] & 0xf];
        y[j + 16] = dl * kValuesIQ4NL[qs[j] >> 4];
      }
      y += 32;
      qs += 16;
    }
  }
}

// ggml's quantize_row_iq4_nl_impl for a 256-value super-block of eight 32-value blocks with
// x^2 weights and a 15-scale search per block (ntry = 7), then 6-bit block scales relative to
// the largest, and a final level choice against each block's stored scale.
void from_float_iq4_xs(const float* src, void* dst, int64_t n) {
  BlockIQ4_XS* y = blocks<BlockIQ4_XS>(dst);
  const int64_t nb = n / kQK_K;
  constexpr int kBlock = 32;
  constexpr int kNtry = 7;
  uint8_t L[kQK_K];
  float scales[kQK_K / kBlock];
  float weight[kBlock];
  for (int64_t ibl = 0; ibl < nb; ++ibl) {
    const float* x = src + ibl * kQK_K;
    std::memset(y[ibl].qs, 0, sizeof(y[ibl].qs));
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < kQK_K / kBlock; ++ib) {
      const float* xb = x + ib * kBlock;
      uint8_t* Lb = L + ib * kBlock;
      for (int j = 0; j < kBlock; ++j) weight[j] = xb[j] * xb[j];
      float amax = 0, max = 0;
      for (int j = 0; j < kBlock; ++j) {
        const float ax = std::fabs(xb[j]);
        if (ax > amax) { amax = ax; max = xb[j]; }
      }
      if (amax < kGroupMaxEps) {
        scales[ib] = 0;
        std::memset(Lb, 0, kBlock);
        continue;
      }
      float d = -max / kValuesIQ4NL[0];
      float id = 1 / d;
      float sumqx = 0, sumq2 = 0;
      for (int j = 0; j < kBlock; ++j) {
        const float al = id * xb[j];
        const int l = iq4_best_index(al);
        Lb[j] = static_cast<uint8_t>(l);
        const float q = kValuesIQ4NL[l];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
      float best = d * sumqx;
      for (int itry = -kNtry; itry <= kNtry; ++itry) {
        id = (itry + kValuesIQ4NL[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < kBlock; ++j) {
          const float al = id * xb[j];
          const int l = iq4_best_index(al);
          const float q = kValuesIQ4NL[l];
          const float w = weight[j];
          sumqx += w * q * xb[j];
          sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
      scales[ib] = d;
      const float abs_d = std::fabs(d);
      if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = d; }
    }
    uint16_t scales_h = 0;
    const float d = -max_scale / 32;
    store_f16(y[ibl].d, d);
    const float id = d != 0.0f ? 1 / d : 0.f;
    for (int ib = 0; ib < kQK_K / kBlock; ++ib) {
      int l = nearest_int(id * scales[ib]);
      l = imax(-32, imin(31, l));
      const float dl = d * l;
      const float idl = dl != 0.0f ? 1 / dl : 0.f;
      uint8_t* Lb = L + ib * kBlock;
      const float* xb = x + ib * kBlock;
      for (int j = 0; j < kBlock; ++j) Lb[j] = static_cast<uint8_t>(iq4_best_index(idl * xb[j]));
      l += 32;
      const uint8_t l_l = static_cast<uint8_t>(l & 0xf);
      const uint8_t l_h = static_cast<uint8_t>(l >> 4);
      if (ib % 2 == 0) {
        y[ibl].scales_l[ib / 2] = l_l;
      } else {
        y[ibl].scales_l[ib / 2] = static_cast<uint8_t>(y[ibl].scales_l[ib / 2] | (l_l << 4));
      }
      scales_h = static_cast<uint16_t>(scales_h | (l_h << 2 * (ib % 8)));
    }
    store_u16(y[ibl].scales_h, scales_h);
    for (int i = 0; i < kQK_K / 32; ++i) {
      for (int j = 0; j < 16; ++j) {
        y[ibl].qs[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
      }
    }
  }
}

float vec_dot_iq4_xs_q8_K(int64_t n, const void* vx, const void* vy) {
  const BlockIQ4_XS* x = blocks<BlockIQ4_XS>(vx);
  const BlockQ8_K* y = blocks<BlockQ8_K>(vy);
  const int64_t nb = n / kQK_K;
  float sumf = 0;
  for (int64_t ibl = 0; ibl < nb; ++ibl) {
    const float d4d8 = load_f16(x[ibl].d) * load_f32(y[ibl].d);
    uint16_t h = load_u16(x[ibl].scales_h);
    const uint8_t* qs = x[ibl].qs;
    const int8_t* q8 = y[ibl].qs;
    for (int ib = 0; ib < kQK_K / 32; ib += 2) {
      const uint8_t ls1 = static_cast<uint8_t>((x[ibl].scales_l[ib / 2] & 0xf) | ((h << 4) & 0x30));
      const uint8_t ls2 = static_cast<uint8_t>((x[ibl].scales_l[ib / 2] >> 4) | ((h << 2) & 0x30));
      h = static_cast<uint16_t>(h >> 4);
      const float d1 = d4d8 * (ls1 - 32);
      const float d2 = d4d8 * (ls2 - 32);
      int sumi1 = 0, sumi2 = 0;
      for (int j = 0; j < 16; ++j) {
        sumi1 += q8[j + 0] * kValuesIQ4NL[qs[j] & 0xf];
        sumi2 += q8[j + 16] * kValuesIQ4NL[qs[j] >> 4];
      }
      sumf += d1 * (sumi1 + sumi2);
      qs += 16;
      q8 += 32;
      sumi1 = sumi2 = 0;
      for (int j = 0; j < 16; ++j) {
        sumi1 += q8[j + 0] * kValuesIQ4NL[qs[j] & 0xf];
        sumi2 += q8[j + 16] * kValuesIQ4NL[qs[j] >> 4];
      }
      sumf += d2 * (sumi1 + sumi2);
      qs += 16;
      q8 += 32;
    }
  }
  return sumf;
}

}  // namespace slm::ref
