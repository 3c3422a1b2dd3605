// Scalar reference kernels for the float types and the 32-value block types (Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q8_1, IQ4_NL). Each function mirrors ggml's scalar code step by step: the same
// float expressions in the same order, so the encoded bytes and the dot products match.
#include <cmath>
#include <cstring>

#include "kernels/ref/quants.h"

namespace slm::ref {

namespace {

template <class Block>
const Block* blocks(const void* p) { return static_cast<const Block*>(p); }
template <class Block>
Block* blocks(void* p) { return static_cast<Block*>(p); }

// ggml's best_index_int8: index of the level of `val` (sorted, n a power of two) nearest to x;
// x picks level j once it reaches the midpoint of val[j-1] and val[j] (ties go up). Doubling
// both sides keeps the comparison exact.
int best_index_int8(int n, const int8_t* val, float x) {
  const float x2 = x + x;
  int idx = 0;
  for (int step = n >> 1; step > 0; step >>= 1) {
    const int j = idx + step;
    if (x2 >= static_cast<float>(val[j - 1] + val[j])) idx = j;
  }
  return idx;
}

}  // namespace

// ================================ float types ==================================================

void to_float_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void from_float_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void to_float_f16(const void* src, float* dst, int64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = load_f16(p + 2 * i);
}

void from_float_f16(const float* src, void* dst, int64_t n) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) store_f16(p + 2 * i, src[i]);
}

void to_float_bf16(const void* src, float* dst, int64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(load_u16(p + 2 * i));
}

void from_float_bf16(const float* src, void* dst, int64_t n) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) store_u16(p + 2 * i, fp32_to_bf16(src[i]));
}

// ggml's scalar float dot products accumulate in double (ggml_float) over float products.
float vec_dot_f32(int64_t n, const void* vx, const void* vy) {
  const uint8_t* x = static_cast<const uint8_t*>(vx);
  const uint8_t* y = static_cast<const uint8_t*>(vy);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(load_f32(x + 4 * i) * load_f32(y + 4 * i));
  return static_cast<float>(sum);
}

float vec_dot_f16(int64_t n, const void* vx, const void* vy) {
  const uint8_t* x = static_cast<const uint8_t*>(vx);
  const uint8_t* y = static_cast<const uint8_t*>(vy);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(load_f16(x + 2 * i) * load_f16(y + 2 * i));
  return static_cast<float>(sum);
}

float vec_dot_bf16(int64_t n, const void* vx, const void* vy) {
  const uint8_t* x = static_cast<const uint8_t*>(vx);
  const uint8_t* y = static_cast<const uint8_t*>(vy);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += static_cast<double>(bf16_to_fp32(load_u16(x + 2 * i)) * bf16_to_fp32(load_u16(y + 2 * i)));
  }
  return static_cast<float>(sum);
}

// ================================ Q4_0 =========================================================

void to_float_q4_0(const void* src, float* dst, int64_t n) {
  const BlockQ4_0* x = blocks<BlockQ4_0>(src);
  const int64_t nb = n / kQK4_0;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      dst[i * kQK4_0 + j] = x0 * d;
      dst[i * kQK4_0 + j + kQK4_0 / 2] = x1 * d;
    }
  }
}

// The scale maps the signed value of largest magnitude to -8, so that value is exact and the
// other side gets the extra level (+7).
void from_float_q4_0(const float* src, void* dst, int64_t n) {
  BlockQ4_0* y = blocks<BlockQ4_0>(dst);
  const int64_t nb = n / kQK4_0;
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQK4_0;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j) {
      if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y[i].d, d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK4_0 / 2 + j] * id;
      // ggml: MIN(15, (int8_t)(x + 8.5f)) -- truncation after the +8.5 offset rounds half up.
      const int q0 = static_cast<int8_t>(trunc_to_i32(x0 + 8.5f));
      const int q1 = static_cast<int8_t>(trunc_to_i32(x1 + 8.5f));
      const uint8_t xi0 = static_cast<uint8_t>(q0 < 15 ? q0 : 15);
      const uint8_t xi1 = static_cast<uint8_t>(q1 < 15 ? q1 : 15);
      y[i].qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

float vec_dot_q4_0_q8_0(int64_t n, const void* vx, const void* vy) {
  const BlockQ4_0* x = blocks<BlockQ4_0>(vx);
  const BlockQ8_0* y = blocks<BlockQ8_0>(vy);
  const int64_t nb = n / kQK8_0;
  float sumf = 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK8_0 / 2; ++j) {
      const int v0 = (x[ib].qs[j] & 0x0F) - 8;
      const int v1 = (x[ib].qs[j] >> 4) - 8;
      sumi0 += v0 * y[ib].qs[j];
      sumi1 += v1 * y[ib].qs[j + kQK8_0 / 2];
    }
    const int sumi = sumi0 + sumi1;
    sumf += sumi * load_f16(x[ib].d) * load_f16(y[ib].d);
  }
  return sumf;
}

// ================================ Q4_1 =========================================================

void to_float_q4_1(const void* src, float* dst, int64_t n) {
  const BlockQ4_1* x = blocks<BlockQ4_1>(src);
  const int64_t nb = n / kQK4_1;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    const float m = load_f16(x[i].m);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const int x0 = x[i].qs[j] & 0x0F;
      const int x1 = x[i].qs[j] >> 4;
      dst[i * kQK4_1 + j] = x0 * d + m;
      dst[i * kQK4_1 + j + kQK4_1 / 2] = x1 * d + m;
    }
  }
}

void from_float_q4_1(const float* src, void* dst, int64_t n) {
  BlockQ4_1* y = blocks<BlockQ4_1>(dst);
  const int64_t nb = n / kQK4_1;
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQK4_1;
    float min = 3.402823466e+38f, max = -3.402823466e+38f;
    for (int j = 0; j < kQK4_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y[i].d, d);
    store_f16(y[i].m, min);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[kQK4_1 / 2 + j] - min) * id;
      const int q0 = static_cast<int8_t>(trunc_to_i32(x0 + 0.5f));
      const int q1 = static_cast<int8_t>(trunc_to_i32(x1 + 0.5f));
      const uint8_t xi0 = static_cast<uint8_t>(q0 < 15 ? q0 : 15);
      const uint8_t xi1 = static_cast<uint8_t>(q1 < 15 ? q1 : 15);
      y[i].qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

float vec_dot_q4_1_q8_1(int64_t n, const void* vx, const void* vy) {
  const BlockQ4_1* x = blocks<BlockQ4_1>(vx);
  const BlockQ8_1* y = blocks<BlockQ8_1>(vy);
  const int64_t nb = n / kQK8_1;
  float sumf = 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK8_1 / 2; ++j) {
      const int v0 = x[ib].qs[j] & 0x0F;
      const int v1 = x[ib].qs[j] >> 4;
      sumi0 += v0 * y[ib].qs[j];
      sumi1 += v1 * y[ib].qs[j + kQK8_1 / 2];
    }
    const int sumi = sumi0 + sumi1;
    // The min term uses s = d_y * sum(q_y), precomputed by the Q8_1 encoder.
    sumf += (load_f16(x[ib].d) * load_f16(y[ib].d)) * sumi + load_f16(x[ib].m) * load_f16(y[ib].s);
  }
  return sumf;
}

// ================================ Q5_0 =========================================================

void to_float_q5_0(const void* src, float* dst, int64_t n) {
  const BlockQ5_0* x = blocks<BlockQ5_0>(src);
  const int64_t nb = n / kQK5_0;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    const uint32_t qh = load_u32(x[i].qh);
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const uint8_t xh_0 = static_cast<uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
      const uint8_t xh_1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
      const int32_t x0 = ((x[i].qs[j] & 0x0F) | xh_0) - 16;
      const int32_t x1 = ((x[i].qs[j] >> 4) | xh_1) - 16;
      dst[i * kQK5_0 + j] = x0 * d;
      dst[i * kQK5_0 + j + kQK5_0 / 2] = x1 * d;
    }
  }
}

void from_float_q5_0(const float* src, void* dst, int64_t n) {
  BlockQ5_0* y = blocks<BlockQ5_0>(dst);
  const int64_t nb = n / kQK5_0;
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQK5_0;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK5_0; ++j) {
      if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
    }
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y[i].d, d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK5_0 / 2 + j] * id;
      const int q0 = static_cast<int8_t>(trunc_to_i32(x0 + 16.5f));
      const int q1 = static_cast<int8_t>(trunc_to_i32(x1 + 16.5f));
      const uint8_t xi0 = static_cast<uint8_t>(q0 < 31 ? q0 : 31);
      const uint8_t xi1 = static_cast<uint8_t>(q1 < 31 ? q1 : 31);
      y[i].qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + kQK5_0 / 2);
    }
    store_u32(y[i].qh, qh);
  }
}

float vec_dot_q5_0_q8_0(int64_t n, const void* vx, const void* vy) {
  const BlockQ5_0* x = blocks<BlockQ5_0>(vx);
  const BlockQ8_0* y = blocks<BlockQ8_0>(vy);
  const int64_t nb = n / kQK8_0;
  float sumf = 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    const uint32_t qh = load_u32(x[ib].qh);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK8_0 / 2; ++j) {
      const uint8_t xh_0 = static_cast<uint8_t>(((qh & (1u << (j + 0))) >> (j + 0)) << 4);
      const uint8_t xh_1 = static_cast<uint8_t>((qh & (1u << (j + 16))) >> (j + 12));
      const int32_t x0 = static_cast<int8_t>(((x[ib].qs[j] & 0x0F) | xh_0) - 16);
      const int32_t x1 = static_cast<int8_t>(((x[ib].qs[j] >> 4) | xh_1) - 16);
      sumi0 += x0 * y[ib].qs[j];
      sumi1 += x1 * y[ib].qs[j + kQK8_0 / 2];
    }
    const int sumi = sumi0 + sumi1;
    sumf += (load_f16(x[ib].d) * load_f16(y[ib].d)) * sumi;
  }
  return sumf;
}

// ================================ Q5_1 =========================================================

void to_float_q5_1(const void* src, float* dst, int64_t n) {
  const BlockQ5_1* x = blocks<BlockQ5_1>(src);
  const int64_t nb = n / kQK5_1;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    const float m = load_f16(x[i].m);
    const uint32_t qh = load_u32(x[i].qh);
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const uint8_t xh_0 = static_cast<uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
      const uint8_t xh_1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
      const int x0 = (x[i].qs[j] & 0x0F) | xh_0;
      const int x1 = (x[i].qs[j] >> 4) | xh_1;
      dst[i * kQK5_1 + j] = x0 * d + m;
      dst[i * kQK5_1 + j + kQK5_1 / 2] = x1 * d + m;
    }
  }
}

void from_float_q5_1(const float* src, void* dst, int64_t n) {
  BlockQ5_1* y = blocks<BlockQ5_1>(dst);
  const int64_t nb = n / kQK5_1;
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQK5_1;
    float min = 3.402823466e+38f, max = -3.402823466e+38f;
    for (int j = 0; j < kQK5_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y[i].d, d);
    store_f16(y[i].m, min);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[kQK5_1 / 2 + j] - min) * id;
      // ggml casts straight to uint8_t here (no clamp): values stay within 0..31 by design.
      const uint8_t xi0 = static_cast<uint8_t>(trunc_to_i32(x0 + 0.5f));
      const uint8_t xi1 = static_cast<uint8_t>(trunc_to_i32(x1 + 0.5f));
      y[i].qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + kQK5_1 / 2);
    }
    store_u32(y[i].qh, qh);
  }
}

float vec_dot_q5_1_q8_1(int64_t n, const void* vx, const void* vy) {
  const BlockQ5_1* x = blocks<BlockQ5_1>(vx);
  const BlockQ8_1* y = blocks<BlockQ8_1>(vy);
  const int64_t nb = n / kQK8_1;
  float sumf = 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    const uint32_t qh = load_u32(x[ib].qh);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK8_1 / 2; ++j) {
      const uint8_t xh_0 = static_cast<uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
      const uint8_t xh_1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
      const int32_t x0 = (x[ib].qs[j] & 0xF) | xh_0;
      const int32_t x1 = (x[ib].qs[j] >> 4) | xh_1;
      sumi0 += x0 * y[ib].qs[j];
      sumi1 += x1 * y[ib].qs[j + kQK8_1 / 2];
    }
    const int sumi = sumi0 + sumi1;
    sumf += (load_f16(x[ib].d) * load_f16(y[ib].d)) * sumi + load_f16(x[ib].m) * load_f16(y[ib].s);
  }
  return sumf;
}

// ================================ Q8_0 / Q8_1 ==================================================

void to_float_q8_0(const void* src, float* dst, int64_t n) {
  const BlockQ8_0* x = blocks<BlockQ8_0>(src);
  const int64_t nb = n / kQK8_0;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    for (int j = 0; j < kQK8_0; ++j) dst[i * kQK8_0 + j] = x[i].qs[j] * d;
  }
}

// d = amax/127 and q = roundf(x / d) (half away from zero), as quantize_row_q8_0_ref.
void from_float_q8_0(const float* src, void* dst, int64_t n) {
  BlockQ8_0* y = blocks<BlockQ8_0>(dst);
  const int64_t nb = n / kQK8_0;
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQK8_0;
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) {
      const float ax = std::fabs(x[j]);
      amax = amax > ax ? amax : ax;  // ggml's MAX(): a NaN input propagates, as there
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y[i].d, d);
    for (int j = 0; j < kQK8_0; ++j) {
      y[i].qs[j] = static_cast<int8_t>(trunc_to_i32(std::round(x[j] * id)));
    }
  }
}

float vec_dot_q8_0_q8_0(int64_t n, const void* vx, const void* vy) {
  const BlockQ8_0* x = blocks<BlockQ8_0>(vx);
  const BlockQ8_0* y = blocks<BlockQ8_0>(vy);
  const int64_t nb = n / kQK8_0;
  float sumf = 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    int sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
    sumf += sumi * (load_f16(x[ib].d) * load_f16(y[ib].d));
  }
  return sumf;
}

void to_float_q8_1(const void* src, float* dst, int64_t n) {
  const BlockQ8_1* x = blocks<BlockQ8_1>(src);
  const int64_t nb = n / kQK8_1;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    for (int j = 0; j < kQK8_1; ++j) dst[i * kQK8_1 + j] = x[i].qs[j] * d;
  }
}

void from_float_q8_1(const float* src, void* dst, int64_t n) {
  BlockQ8_1* y = blocks<BlockQ8_1>(dst);
  const int64_t nb = n / kQK8_1;
  for (int64_t i = 0; i < nb; ++i) {
    const float* x = src + i * kQK8_1;
    float amax = 0.0f;
    for (int j = 0; j < kQK8_1; ++j) {
      const float ax = std::fabs(x[j]);
      amax = amax > ax ? amax : ax;
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y[i].d, d);
    int sum = 0;
    for (int j = 0; j < kQK8_1 / 2; ++j) {
      y[i].qs[j] = static_cast<int8_t>(trunc_to_i32(std::round(x[j] * id)));
      y[i].qs[kQK8_1 / 2 + j] = static_cast<int8_t>(trunc_to_i32(std::round(x[kQK8_1 / 2 + j] * id)));
      sum += y[i].qs[j];
      sum += y[i].qs[kQK8_1 / 2 + j];
    }
    // s uses the float d, not its fp16 rounding, exactly as ggml does.
    store_f16(y[i].s, static_cast<float>(sum) * d);
  }
}

// The AVX path of quantize_row_q8_0 / q8_1: id = 127/amax, _mm256_round_ps(_MM_ROUND_NEAREST)
// (ties to even), cvtps_epi32 (INT32_MIN when out of range) and saturating packs to int8.
namespace {
int8_t x86_round_q8(float v) {
  const float r = std::nearbyint(v);  // default rounding mode: nearest, ties to even
  const int32_t i = trunc_to_i32(r);
  return static_cast<int8_t>(i < -128 ? -128 : i > 127 ? 127 : i);
}

template <class Block>
float x86_q8_block(const float* x, Block& y, int8_t* qs) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float ax = std::fabs(x[j]);
    amax = amax > ax ? amax : ax;
  }
  const float d = amax / 127.f;
  store_f16(y.d, d);
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  for (int j = 0; j < 32; ++j) qs[j] = x86_round_q8(x[j] * id);
  return d;
}
}  // namespace

void from_float_q8_0_x86(const float* src, void* dst, int64_t n) {
  BlockQ8_0* y = blocks<BlockQ8_0>(dst);
  for (int64_t i = 0; i < n / kQK8_0; ++i) x86_q8_block(src + i * kQK8_0, y[i], y[i].qs);
}

void from_float_q8_1_x86(const float* src, void* dst, int64_t n) {
  BlockQ8_1* y = blocks<BlockQ8_1>(dst);
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    const float d = x86_q8_block(src + i * kQK8_1, y[i], y[i].qs);
    int sum = 0;
    for (int j = 0; j < kQK8_1; ++j) sum += y[i].qs[j];
    store_f16(y[i].s, d * static_cast<float>(sum));
  }
}

// ================================ IQ4_NL =======================================================

void to_float_iq4_nl(const void* src, float* dst, int64_t n) {
  const BlockIQ4_NL* x = blocks<BlockIQ4_NL>(src);
  const int64_t nb = n / kQK4_NL;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = load_f16(x[i].d);
    for (int j = 0; j < kQK4_NL / 2; ++j) {
      dst[i * kQK4_NL + j] = d * kValuesIQ4NL[x[i].qs[j] & 0xf];
      dst[i * kQK4_NL + j + kQK4_NL / 2] = d * kValuesIQ4NL[x[i].qs[j] >> 4];
    }
  }
}

// quantize_row_iq4_nl_ref: one 32-value block, weights x^2, no scale search (ntry = -1), so
// the scale is the weighted least-squares fit to the levels chosen with d = max / -127.
void from_float_iq4_nl(const float* src, void* dst, int64_t n) {
  BlockIQ4_NL* y = blocks<BlockIQ4_NL>(dst);
  const int64_t nb = n / kQK4_NL;
  uint8_t L[kQK4_NL];
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float* xb = src + ib * kQK4_NL;
    std::memset(y[ib].qs, 0, sizeof(y[ib].qs));
    float amax = 0, max = 0;
    for (int j = 0; j < kQK4_NL; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) { amax = ax; max = xb[j]; }
    }
    float d = 0.0f;
    if (amax < 1e-15f) {  // GROUP_MAX_EPS
      std::memset(L, 0, sizeof(L));
    } else {
      d = max / kValuesIQ4NL[0];
      const float id = 1 / d;
      float sumqx = 0, sumq2 = 0;
      for (int j = 0; j < kQK4_NL; ++j) {
        const int l = best_index_int8(16, kValuesIQ4NL, id * xb[j]);
        L[j] = static_cast<uint8_t>(l);
        const float q = kValuesIQ4NL[l];
        const float w = xb[j] * xb[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    }
    store_f16(y[ib].d, d);
    for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<uint8_t>(L[j] | (L[16 + j] << 4));
  }
}

float vec_dot_iq4_nl_q8_0(int64_t n, const void* vx, const void* vy) {
  const BlockIQ4_NL* x = blocks<BlockIQ4_NL>(vx);
  const BlockQ8_0* y = blocks<BlockQ8_0>(vy);
  const int64_t nb = n / kQK4_NL;
  float sumf = 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float d = load_f16(y[ib].d) * load_f16(x[ib].d);
    int sumi1 = 0, sumi2 = 0;
    for (int j = 0; j < kQK4_NL / 2; ++j) {
      sumi1 += y[ib].qs[j] * kValuesIQ4NL[x[ib].qs[j] & 0xf];
      sumi2 += y[ib].qs[j + kQK4_NL / 2] * kValuesIQ4NL[x[ib].qs[j] >> 4];
    }
    sumf += d * (sumi1 + sumi2);
  }
  return sumf;
}

// Shared with the IQ4_XS encoder in quants_k.cpp.
int iq4_best_index(float x) { return best_index_int8(16, kValuesIQ4NL, x); }

}  // namespace slm::ref
