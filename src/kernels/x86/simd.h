// A thin layer over the vector registers of the level this copy of src/kernels/x86/ is built
// for: 512-bit for avx512 / avx512vnni, 256-bit for avx2. The kernels are written once against
// it; kLanes (int32 or float lanes per register) is the height of a weight panel.
//
// Everything here lives in namespace slm::kern::SLM_ISA_NS, so each level's copies of these
// inline functions are distinct symbols (see the note in kernels/kernels.h). Only intrinsics
// and C headers are included: no slm header with inline code, no STL.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"

#ifndef SLM_ISA_NS
#error "src/kernels/x86 is compiled only through the slm_kern_<isa> targets of CMakeLists.txt"
#endif

namespace slm::kern::SLM_ISA_NS {

// Unaligned scalar reads of little-endian fields (memcpy: no alignment assumptions, no UB).
inline int32_t rd_i32(const void* p) { int32_t v; std::memcpy(&v, p, 4); return v; }
inline uint16_t rd_u16(const void* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline float rd_f32(const void* p) { float v; std::memcpy(&v, p, 4); return v; }
inline void wr_i32(void* p, int32_t v) { std::memcpy(p, &v, 4); }
inline void wr_f32(void* p, float v) { std::memcpy(p, &v, 4); }
inline void wr_u16(void* p, uint16_t v) { std::memcpy(p, &v, 2); }
// IEEE half <-> float through F16C: exact, and round-to-nearest-even on the way down, which is
// what the reference fp32_to_fp16 computes for every non-NaN input.
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t f2h(float f) { return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }
inline constexpr size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
// Prefetch p + off into L1. The address may lie past the end of the buffer (a prefetch never
// faults), so it is formed as an integer: pointer arithmetic out of bounds would be UB.
inline void prefetch_at(const void* p, size_t off) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + off), _MM_HINT_T0);
}

#if defined(__AVX512F__)

constexpr int kLanes = 16;
using VI = __m512i;
using VF = __m512;

inline VI vzero() { return _mm512_setzero_si512(); }
inline VF fzero() { return _mm512_setzero_ps(); }
inline VI load(const void* p) { return _mm512_loadu_si512(p); }
inline VF loadf(const float* p) { return _mm512_loadu_ps(p); }
inline void storef(float* p, VF v) { _mm512_storeu_ps(p, v); }
// Stores the first n lanes only (the last panel of a matrix whose height is not a multiple).
inline void storef_n(float* p, VF v, int n) {
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
}
inline VF loadf_n(const float* p, int n) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
}
inline VI bcast32(const void* p) { return _mm512_set1_epi32(rd_i32(p)); }
inline VF bcastf(const float* p) { return _mm512_set1_ps(*p); }
inline VI set8(int8_t v) { return _mm512_set1_epi8(v); }
inline VI and_(VI a, VI b) { return _mm512_and_si512(a, b); }
inline VI or_(VI a, VI b) { return _mm512_or_si512(a, b); }
inline VI srl16(VI a, int n) { return _mm512_srli_epi16(a, n); }
inline VI sll16(VI a, int n) { return _mm512_slli_epi16(a, n); }
inline VI srl32(VI a, int n) { return _mm512_srli_epi32(a, n); }
inline VI set32(int32_t v) { return _mm512_set1_epi32(v); }
inline VI add32(VI a, VI b) { return _mm512_add_epi32(a, b); }
inline VI mul32(VI a, VI b) { return _mm512_mullo_epi32(a, b); }
inline VF cvt(VI a) { return _mm512_cvtepi32_ps(a); }
inline VF mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
inline VF fmadd(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
inline VF fnmadd(VF a, VF b, VF c) { return _mm512_fnmadd_ps(a, b, c); }
// kLanes halves -> floats.
inline VF load_h(const void* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p))); }
// kLanes bytes -> int32 lanes (zero- or sign-extended).
inline VI load_u8x(const void* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
inline VI load_i8x(const void* p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
// 2*kLanes bytes -> int16 lanes, zero-extended.
inline VI load_u8w(const void* p) { return _mm512_cvtepu8_epi16(_mm256_loadu_si256(static_cast<const __m256i*>(p))); }
// Byte table lookup within each 128-bit lane (the table repeated in every lane).
inline VI lut16(VI table, VI idx) { return _mm512_shuffle_epi8(table, idx); }
inline VI table16(const int8_t* t16) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t16)));
}
inline float hsum(VF v) { return _mm512_reduce_add_ps(v); }

#if defined(__AVX512VNNI__)
constexpr bool kVnni = true;
// acc + the sums of four products u8 x s8 per int32 lane.
inline VI dot4(VI acc, VI u, VI s) { return _mm512_dpbusd_epi32(acc, u, s); }
inline VI dot4w(VI acc, VI u, VI s) { return _mm512_dpbusd_epi32(acc, u, s); }
// acc + the sums of two products s16 x s16 per int32 lane.
inline VI dot2w16(VI acc, VI a, VI b) { return _mm512_dpwssd_epi32(acc, a, b); }
#else
constexpr bool kVnni = false;
// Without VNNI: VPMADDUBSW adds two products into a saturating int16, exact while
// u <= 127 (|u0*s0 + u1*s1| <= 127*128*2 < 32768); dot4w below is exact for any u8.
inline VI dot4(VI acc, VI u, VI s) {
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}
inline VI dot4w(VI acc, VI u, VI s) {
  // Widen to int16 lanes, odd and even bytes apart, and let VPMADDWD add the pairs.
  const VI ue = _mm512_and_si512(u, _mm512_set1_epi16(0x00FF)), uo = _mm512_srli_epi16(u, 8);
  const VI se = _mm512_srai_epi16(_mm512_slli_epi16(s, 8), 8), so = _mm512_srai_epi16(s, 8);
  return _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_madd_epi16(ue, se), _mm512_madd_epi16(uo, so)));
}
inline VI dot2w16(VI acc, VI a, VI b) { return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b)); }
#endif
// Signed weight bytes w (|w| <= 127) against activation bytes a (never -128): VPMADDUBSW on |w|
// and a with w's sign, whose pairs cannot saturate (127 * 127 * 2 < 32768). Without VNNI this
// is cheaper than dot4w on weights offset to unsigned bytes.
inline VI abs8(VI w) { return _mm512_abs_epi8(w); }
inline VI dot4s(VI acc, VI w_abs, VI w, VI a) {
  const VI a_signed = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(w), _mm512_setzero_si512(), a);
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(w_abs, a_signed), _mm512_set1_epi16(1)));
}

#else  // AVX2

constexpr int kLanes = 8;
constexpr bool kVnni = false;
using VI = __m256i;
using VF = __m256;

inline VI vzero() { return _mm256_setzero_si256(); }
inline VF fzero() { return _mm256_setzero_ps(); }
inline VI load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline VF loadf(const float* p) { return _mm256_loadu_ps(p); }
inline void storef(float* p, VF v) { _mm256_storeu_ps(p, v); }
inline void storef_n(float* p, VF v, int n) {
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, v);
  std::memcpy(p, tmp, static_cast<size_t>(n) * sizeof(float));
}
inline VF loadf_n(const float* p, int n) {
  alignas(32) float tmp[8] = {};
  std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(float));
  return _mm256_load_ps(tmp);
}
inline VI bcast32(const void* p) { return _mm256_set1_epi32(rd_i32(p)); }
inline VF bcastf(const float* p) { return _mm256_set1_ps(*p); }
inline VI set8(int8_t v) { return _mm256_set1_epi8(v); }
inline VI and_(VI a, VI b) { return _mm256_and_si256(a, b); }
inline VI or_(VI a, VI b) { return _mm256_or_si256(a, b); }
inline VI srl16(VI a, int n) { return _mm256_srli_epi16(a, n); }
inline VI sll16(VI a, int n) { return _mm256_slli_epi16(a, n); }
inline VI srl32(VI a, int n) { return _mm256_srli_epi32(a, n); }
inline VI set32(int32_t v) { return _mm256_set1_epi32(v); }
inline VI add32(VI a, VI b) { return _mm256_add_epi32(a, b); }
inline VI mul32(VI a, VI b) { return _mm256_mullo_epi32(a, b); }
inline VF cvt(VI a) { return _mm256_cvtepi32_ps(a); }
inline VF mul(VF a, VF b) { return _mm256_mul_ps(a, b); }
inline VF fmadd(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
inline VF fnmadd(VF a, VF b, VF c) { return _mm256_fnmadd_ps(a, b, c); }
inline VF load_h(const void* p) { return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
inline VI load_u8x(const void* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p))); }
inline VI load_i8x(const void* p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p))); }
inline VI load_u8w(const void* p) { return _mm256_cvtepu8_epi16(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
inline VI lut16(VI table, VI idx) { return _mm256_shuffle_epi8(table, idx); }
inline VI table16(const int8_t* t16) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t16)));
}
inline float hsum(VF v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline VI dot4(VI acc, VI u, VI s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
inline VI dot4w(VI acc, VI u, VI s) {
  const VI ue = _mm256_and_si256(u, _mm256_set1_epi16(0x00FF)), uo = _mm256_srli_epi16(u, 8);
  const VI se = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), so = _mm256_srai_epi16(s, 8);
  return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(ue, se), _mm256_madd_epi16(uo, so)));
}
inline VI dot2w16(VI acc, VI a, VI b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
inline VI abs8(VI w) { return _mm256_abs_epi8(w); }
inline VI dot4s(VI acc, VI w_abs, VI w, VI a) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(a, w)), _mm256_set1_epi16(1)));
}

#endif

// IQ4_NL / IQ4_XS's 16 levels (ggml's kvalues_iq4nl), as signed bytes and offset by 128 to
// unsigned ones (bytes as VPSHUFB returns them), for the byte-shuffle tables of the kernels.
inline constexpr int8_t kIQ4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
inline constexpr int8_t kIQ4LevelsU[16] = {1, 24, 45, 63, 79, 93, 106, 118, -127, -115, -103, -90, -75, -59, -39, -15};

// Bit kFrom of every byte of h moved to bit kTo of the same byte (the other bits are whatever
// the 16-bit shift brings: callers mask them away). Exact for any positions 0..7: a 16-bit
// shift moves a byte's own bit kFrom to kTo, and the bits it carries across the byte boundary
// land elsewhere.
template <int kFrom, int kTo>
inline VI move_bit(VI h) {
  if constexpr (kFrom > kTo) return srl16(h, kFrom - kTo);
  else if constexpr (kFrom < kTo) return sll16(h, kTo - kFrom);
  else return h;
}

// Tokens per activation tile: enough accumulators to reuse each unpacked weight vector many
// times, few enough to keep them all in registers (32 zmm / 16 ymm).
constexpr int kTile = kLanes == 16 ? 8 : 4;

// Entry points of this level's translation units, gathered into its table by table_x86.cpp.
void quantize_q8_0(const float* x, void* dst, int64_t n);
void quantize_q8_K(const float* x, void* dst, int64_t n);
void register_float(Kernels& k, bool bf16);

}  // namespace slm::kern::SLM_ISA_NS
