// Float kernels: SwiGLU (kern::Kernels::swiglu) with a vectorized exp, fp16 rows to and from
// f32 (the F16 KV cache), and attention over float keys and values (kern::AttendFn): the scores of all
// the query heads of a KV group against kLanes keys at a time, from keys stored transposed (one
// vector load = one dimension of kLanes keys, broadcast query values, no horizontal sums); a
// vectorized exp for the softmax; then the value rows weighted and summed kLanes dimensions at
// a time.
// Replaced a scalar loop (one dot product per key and head) that took a third of prompt time.
#include <math.h>  // INFINITY: C header, no inline C++ wrappers (see kernels.h)

#include "kernels/x86/simd.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

#if defined(__AVX512F__)
inline VF vset(float x) { return _mm512_set1_ps(x); }
inline VF vmax(VF a, VF b) { return _mm512_max_ps(a, b); }
inline VF vadd(VF a, VF b) { return _mm512_add_ps(a, b); }
inline VF vsub(VF a, VF b) { return _mm512_sub_ps(a, b); }
inline VF vround(VF a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline VF vpow2i(VF n) {  // 2^n for integral n in [-126, 127]
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
}
inline VF vzero_below(VF x, VF lim, VF y) {  // y where x >= lim, else 0
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lim, _CMP_GE_OQ), y);
}
inline float hmax(VF v) { return _mm512_reduce_max_ps(v); }
#else
inline VF vset(float x) { return _mm256_set1_ps(x); }
inline VF vmax(VF a, VF b) { return _mm256_max_ps(a, b); }
inline VF vadd(VF a, VF b) { return _mm256_add_ps(a, b); }
inline VF vsub(VF a, VF b) { return _mm256_sub_ps(a, b); }
inline VF vround(VF a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline VF vpow2i(VF n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
}
inline VF vzero_below(VF x, VF lim, VF y) { return _mm256_and_ps(_mm256_cmp_ps(x, lim, _CMP_GE_OQ), y); }
inline float hmax(VF v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
#endif

// e^x: x = n ln2 + r with |r| <= ln2/2, e^r by the Cephes polynomial (about 1 ulp), 2^n put
// into the exponent. x is clamped to [-87.3, 88] first: e^88 ~ 1.7e38 stays finite, and below
// -87.3 (2^-126) the result is 0.
inline VF vexp(VF x) {
  const VF hi = vset(88.0f);
#if defined(__AVX512F__)
  x = _mm512_min_ps(x, hi);
#else
  x = _mm256_min_ps(x, hi);
#endif
  const VF lim = vset(-87.3f);
  const VF xc = vmax(x, lim);
  const VF n = vround(mul(xc, vset(1.44269504088896341f)));
  VF r = fnmadd(n, vset(0.693359375f), xc);
  r = fnmadd(n, vset(-2.12194440e-4f), r);
  VF p = vset(1.9875691500e-4f);
  p = fmadd(p, r, vset(1.3981999507e-3f));
  p = fmadd(p, r, vset(8.3334519073e-3f));
  p = fmadd(p, r, vset(4.1665795894e-2f));
  p = fmadd(p, r, vset(1.6666665459e-1f));
  p = fmadd(p, r, vset(5.0000001201e-1f));
  const VF e = vadd(fmadd(mul(p, r), r, r), vset(1.0f));
  return vzero_below(x, lim, mul(e, vpow2i(n)));
}

#if defined(__AVX512F__)
inline VF vdiv(VF a, VF b) { return _mm512_div_ps(a, b); }
inline VF vabs(VF a) { return _mm512_abs_ps(a); }
inline VF vsign_of(VF mag, VF x) {  // |mag| with the sign of x
  return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(mag), _mm512_castps_si512(x),
                                                       _mm512_set1_epi32(0x7FFFFFFF), 0xE4));
}
inline VF vselect_below(VF x, VF lim, VF a, VF b) {  // a where x < lim, else b
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lim, _CMP_LT_OQ), b, a);
}
#else
inline VF vdiv(VF a, VF b) { return _mm256_div_ps(a, b); }
inline VF vabs(VF a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline VF vsign_of(VF mag, VF x) {
  const VF sign = _mm256_set1_ps(-0.0f);
  return _mm256_or_ps(_mm256_andnot_ps(sign, mag), _mm256_and_ps(sign, x));
}
inline VF vselect_below(VF x, VF lim, VF a, VF b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, lim, _CMP_LT_OQ)); }
#endif

// tanh(x) to within ~2 ulp of tanhf: below |x| = 0.625 an odd polynomial x + x^3 P(x^2) (the
// Cephes coefficients), where 1 - 2 / (e^2|x| + 1) would lose the low bits to cancellation;
// above it that formula, whose e^2|x| saturates (vexp clamps at 88) so that tanh goes to 1.
inline VF vtanh(VF x) {
  const VF a = vabs(x);
  const VF z = mul(x, x);
  VF p = vset(-5.70498872745e-3f);
  p = fmadd(p, z, vset(2.06390887954e-2f));
  p = fmadd(p, z, vset(-5.37397155531e-2f));
  p = fmadd(p, z, vset(1.33314422036e-1f));
  p = fmadd(p, z, vset(-3.33332819422e-1f));
  const VF small = fmadd(mul(p, z), x, x);
  const VF e = vexp(vadd(a, a));
  const VF large = vsign_of(vsub(vset(1.0f), vdiv(vset(2.0f), vadd(e, vset(1.0f)))), x);
  return vselect_below(a, vset(0.625f), small, large);
}

// x[i] = cap * tanh(x[i] / cap): Gemma 2's soft-capping of attention scores and logits.
void softcap(float* x, int64_t n, float cap) {
  const VF c = vset(cap), inv = vset(1.0f / cap);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) storef(x + i, mul(vtanh(mul(loadf(x + i), inv)), c));
  if (i < n) {
    const int m = static_cast<int>(n - i);
    storef_n(x + i, mul(vtanh(mul(loadf_n(x + i, m), inv)), c), m);
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  const VF one = vset(1.0f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const VF g = loadf(gate + i);
    const VF e = vexp(vsub(fzero(), g));
    storef(out + i, mul(vdiv(g, vadd(one, e)), loadf(up + i)));
  }
  if (i < n) {
    const int m = static_cast<int>(n - i);
    const VF g = loadf_n(gate + i, m);
    const VF e = vexp(vsub(fzero(), g));
    storef_n(out + i, mul(vdiv(g, vadd(one, e)), loadf_n(up + i, m)), m);
  }
}

void fp16_to_f32(const uint16_t* x, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) storef(out + i, load_h(x + i));
  if (i < n) {
    uint16_t tail[kLanes] = {};
    const int m = static_cast<int>(n - i);
    std::memcpy(tail, x + i, static_cast<size_t>(m) * sizeof(uint16_t));
    storef_n(out + i, load_h(tail), m);
  }
}

inline void store_h(uint16_t* p, VF v) {
#if defined(__AVX512F__)
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
}

void f32_to_fp16(const float* x, uint16_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store_h(out + i, loadf(x + i));
  if (i < n) {
    uint16_t tail[kLanes];
    const int m = static_cast<int>(n - i);
    store_h(tail, loadf_n(x + i, m));
    std::memcpy(out + i, tail, static_cast<size_t>(m) * sizeof(uint16_t));
  }
}

// The loops below take their head and vector counts as template arguments so that the
// accumulators live in registers: with run-time bounds GCC kept them on the stack, and every
// FMA went through a store and a reload (the kernel ran at a third of the FMA rate).
//
// They read keys and values through small views, so that one body serves float copies
// (AttendFn) and a KV cache as stored in each of its formats (AttendCacheFn, converted in the
// loads).

// Keys stored transposed as floats: key j of dimension d at kt[d * ldk + j].
struct F32Keys {
  const float* kt;
  int64_t ldk;
  VF load(int64_t j, int d) const { return loadf(kt + d * ldk + j); }
  VF load_n(int64_t j, int d, int m) const { return loadf_n(kt + d * ldk + j, m); }
};
// Elements of the F16, F32 and BF16 formats as floats.
inline VF load_f32(const uint16_t* p) { return load_h(p); }
inline VF load_f32(const float* p) { return loadf(p); }
// A bf16 element (CacheFormat::BF16): the top half of a float.
struct BF16 {
  uint16_t bits;
};
inline VF load_f32(const BF16* p) {
#if defined(__AVX512F__)
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
#else
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
#endif
}

// F16, F32 or BF16 key blocks (T uint16_t, float or BF16; stride in bytes). j is
// counted from the first block's start and is a multiple of kLanes (16 or 8), so a vector never
// straddles two blocks; partial vectors read the whole block (allocated), their extra lanes
// ignored.
template <class T>
struct BlockKeys {
  const uint8_t* kb;
  int64_t stride;
  VF load(int64_t j, int d) const {
    return load_f32(reinterpret_cast<const T*>(kb + (j / kKeyBlock) * stride) + d * kKeyBlock + j % kKeyBlock);
  }
  VF load_n(int64_t j, int d, int) const { return load(j, d); }
};
// Q8_0 key blocks (CacheFormat::Q8_0): int8 values times their position's scale.
struct Q8Keys {
  const uint8_t* kb;
  int64_t stride;
  VF load(int64_t j, int d) const {
    const uint8_t* g = kb + (j / kKeyBlock) * stride + (d / 32) * kQ8KeyGroupBytes;
    const int lane = static_cast<int>(j % kKeyBlock);
    return mul(cvt(load_i8x(g + 2 * kKeyBlock + (d % 32) * kKeyBlock + lane)), load_h(g + 2 * lane));
  }
  VF load_n(int64_t j, int d, int) const { return load(j, d); }
};
struct F32Rows {
  const float* v;
  int64_t ldv;
  VF load(int64_t j, int c) const { return loadf(v + j * ldv + c); }
};
// A cache's F16, F32 or BF16 value rows (T uint16_t, float or BF16; ldv in bytes).
template <class T>
struct CacheRows {
  const uint8_t* v;
  int64_t ldv;
  VF load(int64_t j, int c) const { return load_f32(reinterpret_cast<const T*>(v + j * ldv) + c); }
};

// q8_0 value rows: c is a multiple of kLanes, so a vector stays inside one 32-value block.
struct Q8Rows {
  const uint8_t* v;
  int64_t ldv;
  VF load(int64_t j, int c) const {
    const uint8_t* blk = v + j * ldv + (c / 32) * 34;
    uint16_t h;
    std::memcpy(&h, blk, 2);
    return mul(cvt(load_i8x(blk + 2 + c % 32)), vset(_cvtsh_ss(h)));
  }
};

// The 4- and 5-bit formats (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL): kLanes codes as bytes in the low
// part of a 128-bit register, then as floats.
inline VF bytes_to_f(__m128i x) {
#if defined(__AVX512F__)
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(x));
#else
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x));
#endif
}
// The codes of lanes first .. first + kLanes - 1 of a key block dimension: 8 bytes whose low
// nibbles are lanes 0-7 and high nibbles lanes 8-15 (first is 0, or 8 with 8-lane vectors).
inline __m128i key_codes(const uint8_t* p, int first) {
  const __m128i x = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0F);
#if defined(__AVX512F__)
  (void)first;
  return _mm_unpacklo_epi64(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m));
#else
  return first == 0 ? _mm_and_si128(x, m) : _mm_and_si128(_mm_srli_epi16(x, 4), m);
#endif
}
// The codes of elements e0 .. e0 + kLanes - 1 of a ggml block's 16 bytes qs (e0 a multiple of
// kLanes below 32): elements 0-15 are the low nibbles of qs, 16-31 the high ones.
inline __m128i value_codes(const uint8_t* qs, int e0) {
#if defined(__AVX512F__)
  const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
#else
  const __m128i x = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + e0 % 16));
#endif
  const __m128i m = _mm_set1_epi8(0x0F);
  return e0 >= 16 ? _mm_and_si128(_mm_srli_epi16(x, 4), m) : _mm_and_si128(x, m);
}
// Bit i of bits as byte i: 16 where set, else 0 (the fifth bit of Q5_0 / Q5_1 codes).
inline __m128i fifth_bits(uint32_t bits) {
#if defined(__AVX512F__)
  return _mm_maskz_mov_epi8(static_cast<__mmask16>(bits), _mm_set1_epi8(16));
#else
  const __m128i sel = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m128i b = _mm_set1_epi8(static_cast<char>(bits & 0xFF));
  return _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(b, sel), sel), _mm_set1_epi8(16));
#endif
}
template <CacheFormat F>
struct Codes {
  static constexpr bool kMin = F == CacheFormat::Q4_1 || F == CacheFormat::Q5_1;  // d q + m
  static constexpr bool kFive = F == CacheFormat::Q5_0 || F == CacheFormat::Q5_1;
  // The codes' levels before the scale: q - 8, q - 16, kIQ4Levels[q], or q.
  static VF levels(__m128i q) {
    if constexpr (F == CacheFormat::IQ4_NL)
      return bytes_to_f(_mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4Levels)), q));
    else if constexpr (F == CacheFormat::Q4_0)
      return bytes_to_f(_mm_sub_epi8(q, _mm_set1_epi8(8)));
    else if constexpr (F == CacheFormat::Q5_0)
      return bytes_to_f(_mm_sub_epi8(q, _mm_set1_epi8(16)));
    else
      return bytes_to_f(q);
  }
};
// Key blocks of a 4- or 5-bit format (kernels.h: scales, minimums, fifth bits, codes).
template <CacheFormat F>
struct CodeKeys {
  const uint8_t* kb;
  int64_t stride;
  VF load(int64_t j, int d) const {
    using C = Codes<F>;
    const uint8_t* g = kb + (j / kKeyBlock) * stride + (d / 32) * cache_key_group_bytes(F);
    const int lane = static_cast<int>(j % kKeyBlock), dd = d % 32;
    const VF scale = load_h(g + 2 * lane);
    const uint8_t* at = g + 2 * kKeyBlock;
    VF min = fzero();
    if constexpr (C::kMin) {
      min = load_h(at + 2 * lane);
      at += 2 * kKeyBlock;
    }
    __m128i q = key_codes(at + (C::kFive ? 64 : 0) + 8 * dd, lane);
    if constexpr (C::kFive) q = _mm_or_si128(q, fifth_bits(static_cast<uint32_t>(rd_u16(at + 2 * dd)) >> lane));
    const VF x = C::levels(q);
    if constexpr (C::kMin) return fmadd(x, scale, min);
    return mul(x, scale);
  }
  VF load_n(int64_t j, int d, int) const { return load(j, d); }
};
// Value rows of a 4- or 5-bit format: ggml's blocks of 32 (d, [m], [qh], qs).
template <CacheFormat F>
struct CodeRows {
  const uint8_t* v;
  int64_t ldv;
  VF load(int64_t j, int c) const {
    using C = Codes<F>;
    const uint8_t* blk = v + j * ldv + (c / 32) * (cache_key_group_bytes(F) / kKeyBlock);
    const int e0 = c % 32;
    const VF scale = vset(h2f(rd_u16(blk)));
    const uint8_t* at = blk + 2;
    VF min = fzero();
    if constexpr (C::kMin) {
      min = vset(h2f(rd_u16(at)));
      at += 2;
    }
    uint32_t qh = 0;
    if constexpr (C::kFive) {
      qh = static_cast<uint32_t>(rd_i32(at));
      at += 4;
    }
    __m128i q = value_codes(at, e0);
    if constexpr (C::kFive) q = _mm_or_si128(q, fifth_bits(qh >> e0));
    const VF x = C::levels(q);
    if constexpr (C::kMin) return fmadd(x, scale, min);
    return mul(x, scale);
  }
};

constexpr int kMaxQ = 8;  // query heads per scores pass
// Key vectors per scores step: two halve the broadcasts of the query per FMA. AVX2 has 16
// registers: one key vector when eight heads' accumulators already take eight.
template <int NQ>
constexpr int kKeyVecs = kLanes == 16 ? (NQ <= 4 ? 4 : 2) : NQ <= 4 ? 2 : 1;

// s[i * lds + j] = scale * (q_i . k_j) for NQ heads and keys j < n (whole vectors written:
// lds >= n + kLanes).
template <int NQ, class Keys>
void scores_t(const float* q, int64_t ldq, const Keys& keys, int64_t n, int d_k, float scale,
              float* s, int64_t lds) {
  constexpr int KB = kKeyVecs<NQ>;
  const VF vs = vset(scale);
  int64_t j = 0;
  for (; j + KB * kLanes <= n; j += KB * kLanes) {
    VF acc[NQ][KB];
#pragma GCC unroll 8
    for (int i = 0; i < NQ; ++i)
      for (int b = 0; b < KB; ++b) acc[i][b] = fzero();
    for (int d = 0; d < d_k; ++d) {
      VF kv[KB];
      for (int b = 0; b < KB; ++b) kv[b] = keys.load(j + b * kLanes, d);
#pragma GCC unroll 8
      for (int i = 0; i < NQ; ++i) {
        const VF qv = bcastf(q + i * ldq + d);
        for (int b = 0; b < KB; ++b) acc[i][b] = fmadd(qv, kv[b], acc[i][b]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NQ; ++i)
      for (int b = 0; b < KB; ++b) storef(s + i * lds + j + b * kLanes, mul(acc[i][b], vs));
  }
  for (; j < n; j += kLanes) {
    const int m = n - j < kLanes ? static_cast<int>(n - j) : kLanes;
    VF acc[NQ];
#pragma GCC unroll 8
    for (int i = 0; i < NQ; ++i) acc[i] = fzero();
    for (int d = 0; d < d_k; ++d) {
      const VF kv = m == kLanes ? keys.load(j, d) : keys.load_n(j, d, m);
#pragma GCC unroll 8
      for (int i = 0; i < NQ; ++i) acc[i] = fmadd(bcastf(q + i * ldq + d), kv, acc[i]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NQ; ++i) storef(s + i * lds + j, mul(acc[i], vs));
  }
}

template <class Keys>
void scores(const float* q, int n_q, int64_t ldq, const Keys& keys, int64_t n, int d_k, float scale,
            float* s, int64_t lds) {
  switch (n_q) {
    case 1: scores_t<1>(q, ldq, keys, n, d_k, scale, s, lds); break;
    case 2: scores_t<2>(q, ldq, keys, n, d_k, scale, s, lds); break;
    case 3: scores_t<3>(q, ldq, keys, n, d_k, scale, s, lds); break;
    case 4: scores_t<4>(q, ldq, keys, n, d_k, scale, s, lds); break;
    case 5: scores_t<5>(q, ldq, keys, n, d_k, scale, s, lds); break;
    case 6: scores_t<6>(q, ldq, keys, n, d_k, scale, s, lds); break;
    case 7: scores_t<7>(q, ldq, keys, n, d_k, scale, s, lds); break;
    default: scores_t<8>(q, ldq, keys, n, d_k, scale, s, lds); break;
  }
}

// Row i of s (length n, padded to whole vectors) becomes softmax(row i), with Gemma's softcap
// first when softcap > 0.
void softmax_row(float* s, int64_t n, float cap) {
  if (cap > 0.0f) softcap(s, n, cap);
  // Pad to whole vectors with -inf: their exp is 0.
  const int64_t np = (n + kLanes - 1) / kLanes * kLanes;
  for (int64_t j = n; j < np; ++j) s[j] = -INFINITY;
  VF mx = vset(-INFINITY);
  for (int64_t j = 0; j < np; j += kLanes) mx = vmax(mx, loadf(s + j));
  const VF vmx = vset(hmax(mx));
  VF sum = fzero();
  for (int64_t j = 0; j < np; j += kLanes) {
    const VF e = vexp(vsub(loadf(s + j), vmx));
    storef(s + j, e);
    sum = vadd(sum, e);
  }
  const VF inv = vset(1.0f / hsum(sum));
  for (int64_t j = 0; j < np; j += kLanes) storef(s + j, mul(loadf(s + j), inv));
}

// The visible keys, or their values, as up to two runs (a wrapped ring's end, then its start):
// run r holds n[r] keys, its scores following the previous run's in a row of scores. Keys and
// values are separate types so that each view's loops are compiled once, not once per pair.
template <class View>
struct Runs {
  View view[2];
  int64_t n[2];
  int count;
};

// out_i[c0 .. c0 + NC * kLanes) = sum_j p_i[j] v_j, for NQ heads at once: each value vector
// loaded serves every head.
template <int NQ, int NC, class Rows>
void weighted_values(const float* p, int64_t lds, const Runs<Rows>& runs, int c0, float* out,
                     int64_t ldo) {
  VF acc[NQ][NC];
#pragma GCC unroll 8
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < NC; ++c) acc[i][c] = fzero();
  const float* pr = p;  // the run's first probability
  for (int r = 0; r < runs.count; ++r) {
    const Rows& rows = runs.view[r];
    for (int64_t j = 0; j < runs.n[r]; ++j) {
      VF vv[NC];
      for (int c = 0; c < NC; ++c) vv[c] = rows.load(j, c0 + c * kLanes);
#pragma GCC unroll 8
      for (int i = 0; i < NQ; ++i) {
        const VF pv = bcastf(pr + i * lds + j);
        for (int c = 0; c < NC; ++c) acc[i][c] = fmadd(pv, vv[c], acc[i][c]);
      }
    }
    pr += runs.n[r];
  }
#pragma GCC unroll 8
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < NC; ++c) storef(out + i * ldo + c0 + c * kLanes, acc[i][c]);
}

// Heads per pass of weighted_values: NQ x 4 accumulators, 4 value vectors and a broadcast
// fit the register file (32 vectors with AVX-512, 16 with AVX2).
constexpr int kValueHeads = kLanes == 16 ? 4 : 2;

template <int NQ, class Rows>
void values_for_heads(const float* p, int64_t lds, const Runs<Rows>& runs, int d_v, float* out,
                      int64_t ldo) {
  int c0 = 0;
  for (; c0 + 4 * kLanes <= d_v; c0 += 4 * kLanes) weighted_values<NQ, 4>(p, lds, runs, c0, out, ldo);
  switch ((d_v - c0) / kLanes) {
    case 1: weighted_values<NQ, 1>(p, lds, runs, c0, out, ldo); break;
    case 2: weighted_values<NQ, 2>(p, lds, runs, c0, out, ldo); break;
    case 3: weighted_values<NQ, 3>(p, lds, runs, c0, out, ldo); break;
    default: break;
  }
}

template <class Rows>
void values(const float* p, int n_q, int64_t lds, const Runs<Rows>& runs, int d_v, float* out,
            int64_t ldo) {
  for (int i0 = 0; i0 < n_q; i0 += kValueHeads) {
    const float* pi = p + i0 * lds;
    float* oi = out + i0 * ldo;
    switch (n_q - i0 < kValueHeads ? n_q - i0 : kValueHeads) {
      case 1: values_for_heads<1>(pi, lds, runs, d_v, oi, ldo); break;
      case 2: values_for_heads<2>(pi, lds, runs, d_v, oi, ldo); break;
      case 3: values_for_heads<3>(pi, lds, runs, d_v, oi, ldo); break;
      default: values_for_heads<kValueHeads>(pi, lds, runs, d_v, oi, ldo); break;
    }
  }
}

// Scores are computed for keys 0 .. lane0 + n[0] - 1 of the first run's view and the first
// lane0 dropped (F16 blocks: the first visible position may sit inside its block; lane0 = 0
// otherwise); a second run starts at lane 0 of its view, its scores right after the first's
// (lane0 + n[0] is then a whole number of vectors). Rows of n_tok tokens: every row's scores
// are computed over all n keys, and a token's probabilities outside the keys it sees are 0,
// so that one pass over the keys and one over the values serve every token (the few extra
// products cost less than reading the keys once per token).
template <class Keys, class Rows>
void attend_t(const float* q, int n_q, int n_tok, int slide, int64_t ldq, const Runs<Keys>& runs,
              const Runs<Rows>& value_runs, int lane0, int d_k, int d_v, float scale, float softcap, float* scratch, float* out,
              int64_t ldo) {
  int64_t n = 0;
  for (int r = 0; r < runs.count; ++r) n += runs.n[r];
  const int heads = n_q / n_tok;
  const int64_t lds = n + 32;  // lane0 + n rounded up to whole vectors, plus the padding
  for (int i0 = 0; i0 < n_q; i0 += kMaxQ) {
    const int nq = n_q - i0 < kMaxQ ? n_q - i0 : kMaxQ;
    int64_t at = 0;
    for (int r = 0; r < runs.count; ++r) {
      const int64_t keys = (r == 0 ? lane0 : 0) + runs.n[r];
      scores(q + i0 * ldq, nq, ldq, runs.view[r], keys, d_k, scale, scratch + at, lds);
      at += keys;
    }
    float* p = scratch + lane0;
    for (int i = 0; i < nq; ++i) {
      const int r = (i0 + i) / heads;  // token r sees keys lo .. hi - 1
      const int64_t lo = int64_t{r} * slide, hi = n - (n_tok - 1 - r);
      float* pi = p + i * lds;
      softmax_row(pi + lo, hi - lo, softcap);  // pads past hi with zeros, at most to n + 15
      for (int64_t j = 0; j < lo; ++j) pi[j] = 0.0f;
      for (int64_t j = hi; j < n; ++j) pi[j] = 0.0f;
    }
    values(p, nq, lds, value_runs, d_v, out + i0 * ldo, ldo);
  }
}

void attend_group(const float* q, int n_q, int64_t ldq, const float* kt, int64_t ldk,
                  const float* v, int64_t ldv, int64_t n, int d_k, int d_v, float scale,
                  float softcap, float* scratch, float* out, int64_t ldo) {
  const Runs<F32Keys> keys{{{kt, ldk}, {}}, {n, 0}, 1};
  const Runs<F32Rows> rows{{{v, ldv}, {}}, {n, 0}, 1};
  attend_t(q, n_q, 1, 0, ldq, keys, rows, 0, d_k, d_v, scale, softcap, scratch, out, ldo);
}

// A cache's keys and values as stored, in one or two runs.
template <class Keys, class Rows>
void attend_runs(const float* q, int n_q, int n_tok, int slide, int64_t ldq, const CacheKeysValues& kv, int d_k,
                 int d_v, float scale, float softcap, float* scratch, float* out, int64_t ldo) {
  const bool wraps = kv.n_first < kv.n;
  const int64_t n0 = wraps ? kv.n_first : kv.n, n1 = kv.n - kv.n_first;
  const int count = wraps ? 2 : 1;
  const Runs<Keys> keys{{{kv.kb, kv.kblock_stride}, {kv.kb_wrap, kv.kblock_stride}}, {n0, n1}, count};
  const Runs<Rows> rows{{{kv.v, kv.ldv}, {kv.v_wrap, kv.ldv}}, {n0, n1}, count};
  attend_t(q, n_q, n_tok, slide, ldq, keys, rows, kv.lane0, d_k, d_v, scale, softcap, scratch, out, ldo);
}

// fn(view) with a default view of format f's keys (values: the rows) as its argument, so that
// one instantiation per pair of formats follows from two switches (llama.cpp's -ctk and -ctv
// may differ).
template <class Fn>
void with_key_view(CacheFormat f, Fn&& fn) {
  switch (f) {
    case CacheFormat::F16: fn(BlockKeys<uint16_t>{}); break;
    case CacheFormat::F32: fn(BlockKeys<float>{}); break;
    case CacheFormat::BF16: fn(BlockKeys<BF16>{}); break;
    case CacheFormat::Q8_0: fn(Q8Keys{}); break;
    case CacheFormat::Q4_0: fn(CodeKeys<CacheFormat::Q4_0>{}); break;
    case CacheFormat::Q4_1: fn(CodeKeys<CacheFormat::Q4_1>{}); break;
    case CacheFormat::Q5_0: fn(CodeKeys<CacheFormat::Q5_0>{}); break;
    case CacheFormat::Q5_1: fn(CodeKeys<CacheFormat::Q5_1>{}); break;
    case CacheFormat::IQ4_NL: fn(CodeKeys<CacheFormat::IQ4_NL>{}); break;
  }
}
template <class Fn>
void with_value_view(CacheFormat f, Fn&& fn) {
  switch (f) {
    case CacheFormat::F16: fn(CacheRows<uint16_t>{}); break;
    case CacheFormat::F32: fn(CacheRows<float>{}); break;
    case CacheFormat::BF16: fn(CacheRows<BF16>{}); break;
    case CacheFormat::Q8_0: fn(Q8Rows{}); break;
    case CacheFormat::Q4_0: fn(CodeRows<CacheFormat::Q4_0>{}); break;
    case CacheFormat::Q4_1: fn(CodeRows<CacheFormat::Q4_1>{}); break;
    case CacheFormat::Q5_0: fn(CodeRows<CacheFormat::Q5_0>{}); break;
    case CacheFormat::Q5_1: fn(CodeRows<CacheFormat::Q5_1>{}); break;
    case CacheFormat::IQ4_NL: fn(CodeRows<CacheFormat::IQ4_NL>{}); break;
  }
}

void attend_group_cache(const float* q, int n_q, int n_tok, int slide, int64_t ldq, const CacheKeysValues& kv,
                        int d_k, int d_v, float scale, float softcap, float* scratch, float* out, int64_t ldo) {
  with_value_view(kv.values, [&](auto rows) {
    with_key_view(kv.keys, [&](auto keys) {
      attend_runs<decltype(keys), decltype(rows)>(q, n_q, n_tok, slide, ldq, kv, d_k, d_v, scale, softcap, scratch,
                                                  out, ldo);
    });
  });
}

// The views' loads, stored: the floats attend_group_cache computes from format f.
void decode_cache_keys(CacheFormat f, const uint8_t* kb, int64_t stride, int64_t n_blocks, int d_k, float* out) {
  with_key_view(f, [&](auto keys) {
    keys.kb = kb;
    keys.stride = stride;
    for (int64_t b = 0; b < n_blocks; ++b)
      for (int d = 0; d < d_k; ++d)
        for (int l = 0; l < kKeyBlock; l += kLanes)
          storef(out + (b * d_k + d) * kKeyBlock + l, keys.load(b * kKeyBlock + l, d));
  });
}

void decode_cache_values(CacheFormat f, const uint8_t* v, int64_t ldv, int64_t n, int d_v, float* out) {
  with_value_view(f, [&](auto rows) {
    rows.v = v;
    rows.ldv = ldv;
    for (int64_t j = 0; j < n; ++j)
      for (int c = 0; c < d_v; c += kLanes) storef(out + j * d_v + c, rows.load(j, c));
  });
}

}  // namespace

void register_attention(Kernels& k) {
  k.decode_cache_keys = &decode_cache_keys;
  k.decode_cache_values = &decode_cache_values;
  k.attend = &attend_group;
  k.attend_cache = &attend_group_cache;
  k.swiglu = &swiglu;
  k.softcap = &softcap;
  k.fp16_to_f32 = &fp16_to_f32;
  k.f32_to_fp16 = &f32_to_fp16;
}

}  // namespace slm::kern::SLM_ISA_NS
