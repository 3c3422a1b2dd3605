// Block layouts of ggml's quantized types and the scalar reference kernels for them.
// Private to slm_core: dtype.cpp wires these into the traits table; SIMD kernels may reuse the
// layouts. Every block is declared with byte members only (alignment 1), so a block may start
// at any address; multi-byte fields are read and written through memcpy helpers (GGUF data is
// little endian, as is every host we build for).
//
// The algorithms follow ggml-quants.c (dequantize_row_*, quantize_row_*_ref) and the generic
// dot products of ggml-cpu/quants.c operation for operation, so that encoded bytes and integer
// block sums agree with llama.cpp exactly.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/fp16.h"

namespace slm::ref {

constexpr int kQK4_0 = 32, kQK4_1 = 32, kQK5_0 = 32, kQK5_1 = 32, kQK8_0 = 32, kQK8_1 = 32;
constexpr int kQK4_NL = 32;
constexpr int kQK_K = 256;  // super-block size of the K-quants, Q8_K and IQ4_XS
constexpr int kK_SCALE_SIZE = 12;

// ---- byte-level field access ------------------------------------------------------------------
inline uint16_t load_u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t load_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline int16_t load_i16(const uint8_t* p) { int16_t v; std::memcpy(&v, p, 2); return v; }
inline float load_f32(const uint8_t* p) { float v; std::memcpy(&v, p, 4); return v; }
inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void store_i16(uint8_t* p, int16_t v) { std::memcpy(p, &v, 2); }
inline void store_f32(uint8_t* p, float v) { std::memcpy(p, &v, 4); }
inline float load_f16(const uint8_t* p) { return fp16_to_fp32(load_u16(p)); }
inline void store_f16(uint8_t* p, float v) { store_u16(p, fp32_to_fp16(v)); }

// ---- block layouts (sizes and field order as in ggml-common.h) -------------------------------
struct BlockQ4_0 { uint8_t d[2]; uint8_t qs[kQK4_0 / 2]; };                  // q in 0..15, (q-8)*d
struct BlockQ4_1 { uint8_t d[2]; uint8_t m[2]; uint8_t qs[kQK4_1 / 2]; };    // q*d + m
struct BlockQ5_0 { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[kQK5_0 / 2]; };   // 5th bits in qh
struct BlockQ5_1 { uint8_t d[2]; uint8_t m[2]; uint8_t qh[4]; uint8_t qs[kQK5_1 / 2]; };
struct BlockQ8_0 { uint8_t d[2]; int8_t qs[kQK8_0]; };
struct BlockQ8_1 { uint8_t d[2]; uint8_t s[2]; int8_t qs[kQK8_1]; };         // s = d * sum(qs)
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // low nibble scale, high nibble min, per 16 values
  uint8_t qs[kQK_K / 4];
  uint8_t d[2];
  uint8_t dmin[2];
};
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];  // high bit of each 3-bit quant
  uint8_t qs[kQK_K / 4];     // low 2 bits
  uint8_t scales[12];        // 16 six-bit scales, packed
  uint8_t d[2];
};
struct BlockQ4_K {
  uint8_t d[2];
  uint8_t dmin[2];
  uint8_t scales[kK_SCALE_SIZE];  // 8 six-bit scales and 8 six-bit mins, packed
  uint8_t qs[kQK_K / 2];
};
struct BlockQ5_K {
  uint8_t d[2];
  uint8_t dmin[2];
  uint8_t scales[kK_SCALE_SIZE];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];  // low 4 bits
  uint8_t qh[kQK_K / 4];  // high 2 bits
  int8_t scales[kQK_K / 16];
  uint8_t d[2];
};
struct BlockQ8_K {
  uint8_t d[4];               // float, not fp16
  int8_t qs[kQK_K];
  uint8_t bsums[kQK_K / 16 * 2];  // int16 sums of each group of 16 quants
};
struct BlockIQ4_NL { uint8_t d[2]; uint8_t qs[kQK4_NL / 2]; };
struct BlockIQ4_XS {
  uint8_t d[2];
  uint8_t scales_h[2];  // uint16: 2 high bits of each of the 8 six-bit scales
  uint8_t scales_l[kQK_K / 64];
  uint8_t qs[kQK_K / 2];
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);
static_assert(alignof(BlockQ8_K) == 1 && alignof(BlockQ4_K) == 1);

// The 16 levels of IQ4_NL / IQ4_XS (ggml's kvalues_iq4nl).
inline constexpr int8_t kValuesIQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// ggml's nearest_int: round to nearest, ties to even, through the float mantissa. Exact for
// |x| < 2^22; unlike lroundf at .5 ties, which is why we do not use the library rounding.
inline int nearest_int(float fval) {
  const float val = fval + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, sizeof(i));
  return (i & 0x007fffff) - 0x00400000;
}

// C's float -> integer truncation as x86 performs it (cvttss2si): NaN and out-of-range values
// give INT32_MIN instead of undefined behaviour. Callers then narrow with modular conversion,
// which reproduces what ggml's `(int8_t)(float)` casts do on the machines llama.cpp runs on.
inline int32_t trunc_to_i32(float v) {
  if (!(v > -2147483648.0f && v < 2147483648.0f)) return INT32_MIN;
  return static_cast<int32_t>(v);
}

// ---- kernels: decoders (n values, n a multiple of the block size) ----------------------------
void to_float_f32(const void* src, float* dst, int64_t n);
void to_float_f16(const void* src, float* dst, int64_t n);
void to_float_bf16(const void* src, float* dst, int64_t n);
void to_float_q4_0(const void* src, float* dst, int64_t n);
void to_float_q4_1(const void* src, float* dst, int64_t n);
void to_float_q5_0(const void* src, float* dst, int64_t n);
void to_float_q5_1(const void* src, float* dst, int64_t n);
void to_float_q8_0(const void* src, float* dst, int64_t n);
void to_float_q8_1(const void* src, float* dst, int64_t n);
void to_float_iq4_nl(const void* src, float* dst, int64_t n);
void to_float_q2_K(const void* src, float* dst, int64_t n);
void to_float_q3_K(const void* src, float* dst, int64_t n);
void to_float_q4_K(const void* src, float* dst, int64_t n);
void to_float_q5_K(const void* src, float* dst, int64_t n);
void to_float_q6_K(const void* src, float* dst, int64_t n);
void to_float_q8_K(const void* src, float* dst, int64_t n);
void to_float_iq4_xs(const void* src, float* dst, int64_t n);

// ---- kernels: reference encoders (ggml's quantize_row_*_ref, no importance matrix) -----------
void from_float_f32(const float* src, void* dst, int64_t n);
void from_float_f16(const float* src, void* dst, int64_t n);
void from_float_bf16(const float* src, void* dst, int64_t n);
void from_float_q4_0(const float* src, void* dst, int64_t n);
void from_float_q4_1(const float* src, void* dst, int64_t n);
void from_float_q5_0(const float* src, void* dst, int64_t n);
void from_float_q5_1(const float* src, void* dst, int64_t n);
void from_float_q8_0(const float* src, void* dst, int64_t n);
void from_float_q8_1(const float* src, void* dst, int64_t n);
void from_float_iq4_nl(const float* src, void* dst, int64_t n);
void from_float_q2_K(const float* src, void* dst, int64_t n);
void from_float_q3_K(const float* src, void* dst, int64_t n);
void from_float_q4_K(const float* src, void* dst, int64_t n);
void from_float_q5_K(const float* src, void* dst, int64_t n);
void from_float_q6_K(const float* src, void* dst, int64_t n);
void from_float_q8_K(const float* src, void* dst, int64_t n);
void from_float_iq4_xs(const float* src, void* dst, int64_t n);

// llama.cpp's x86 (AVX/AVX2/AVX-512 builds) activation quantizers for Q8_0 and Q8_1 differ from
// the _ref ones above: the multiplier is 127/amax instead of 1/(amax/127), and values round to
// nearest with ties to even instead of away from zero. Same layout and scale bytes; a few quants
// differ by one. Use these to reproduce llama.cpp's x86 matmul inputs bit for bit. (Q8_K has no
// such variant: x86 uses quantize_row_q8_K_ref.)
void from_float_q8_0_x86(const float* src, void* dst, int64_t n);
void from_float_q8_1_x86(const float* src, void* dst, int64_t n);

// ---- kernels: dot products, x in the weight type, y in its vec_dot_type ----------------------
float vec_dot_f32(int64_t n, const void* x, const void* y);
float vec_dot_f16(int64_t n, const void* x, const void* y);
float vec_dot_bf16(int64_t n, const void* x, const void* y);
float vec_dot_q4_0_q8_0(int64_t n, const void* x, const void* y);
float vec_dot_q4_1_q8_1(int64_t n, const void* x, const void* y);
float vec_dot_q5_0_q8_0(int64_t n, const void* x, const void* y);
float vec_dot_q5_1_q8_1(int64_t n, const void* x, const void* y);
float vec_dot_q8_0_q8_0(int64_t n, const void* x, const void* y);
float vec_dot_iq4_nl_q8_0(int64_t n, const void* x, const void* y);
float vec_dot_q2_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_q3_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_q4_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_q5_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_q6_K_q8_K(int64_t n, const void* x, const void* y);
float vec_dot_iq4_xs_q8_K(int64_t n, const void* x, const void* y);

// Index of the IQ4_NL level nearest to x (ggml's best_index_int8 over kValuesIQ4NL).
int iq4_best_index(float x);

}  // namespace slm::ref
