// Float kernels: SwiGLU (kern::Kernels::swiglu) with a vectorized exp, fp16 rows to f32 (the
// F16 KV cache), and attention over float keys and values (kern::AttendFn): the scores of all
// the query heads of a KV group against kLanes keys at a time, from keys stored transposed (one
// vector load = one dimension of kLanes keys, broadcast query values, no horizontal sums); a
// vectorized exp for the softmax; then the value rows weighted and summed kLanes dimensions at
// a time.
// Replaced a scalar loop (one dot product per key and head) that took a third of prompt time.
#include <math.h>  // tanhf, INFINITY: C functions, no inline C++ wrappers (see kernels.h)

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
#else
inline VF vdiv(VF a, VF b) { return _mm256_div_ps(a, b); }
#endif

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

constexpr int kMaxQ = 8;  // query heads per pass (accumulators: kMaxQ vectors)

void scores(const float* q, int n_q, int64_t ldq, const float* kt, int64_t ldk, int64_t n,
            int d_k, float scale, float* s, int64_t lds) {
  const VF vs = vset(scale);
  for (int64_t j = 0; j < n; j += kLanes) {
    const int m = n - j < kLanes ? static_cast<int>(n - j) : kLanes;
    VF acc[kMaxQ];
    for (int i = 0; i < n_q; ++i) acc[i] = fzero();
    for (int d = 0; d < d_k; ++d) {
      const VF kv = m == kLanes ? loadf(kt + d * ldk + j) : loadf_n(kt + d * ldk + j, m);
      for (int i = 0; i < n_q; ++i) acc[i] = fmadd(bcastf(q + i * ldq + d), kv, acc[i]);
    }
    for (int i = 0; i < n_q; ++i) storef(s + i * lds + j, mul(acc[i], vs));  // lds >= n + kLanes
  }
}

void attend_group(const float* q, int n_q, int64_t ldq, const float* kt, int64_t ldk,
                  const float* v, int64_t ldv, int64_t n, int d_k, int d_v, float scale,
                  float softcap, float* scratch, float* out, int64_t ldo) {
  const int64_t lds = n + 16;
  for (int i0 = 0; i0 < n_q; i0 += kMaxQ) {
    const int nq = n_q - i0 < kMaxQ ? n_q - i0 : kMaxQ;
    scores(q + i0 * ldq, nq, ldq, kt, ldk, n, d_k, scale, scratch, lds);
    for (int i = 0; i < nq; ++i) {
      float* s = scratch + i * lds;
      if (softcap > 0.0f)
        for (int64_t j = 0; j < n; ++j) s[j] = tanhf(s[j] / softcap) * softcap;
      // Pad to whole vectors with -inf: their exp is 0.
      for (int64_t j = n; j < (n + kLanes - 1) / kLanes * kLanes; ++j) s[j] = -INFINITY;
      const int64_t np = (n + kLanes - 1) / kLanes * kLanes;
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
      float* o = out + (i0 + i) * ldo;
      // Value rows weighted by the unnormalized probabilities, up to 8 vectors of dimensions
      // per pass; 1/sum applied once at the end.
      for (int c0 = 0; c0 < d_v; c0 += 8 * kLanes) {
        const int nc = (d_v - c0) / kLanes < 8 ? (d_v - c0) / kLanes : 8;
        VF acc[8];
        for (int c = 0; c < nc; ++c) acc[c] = fzero();
        for (int64_t j = 0; j < n; ++j) {
          const VF p = bcastf(s + j);
          const float* vr = v + j * ldv + c0;
          for (int c = 0; c < nc; ++c) acc[c] = fmadd(p, loadf(vr + c * kLanes), acc[c]);
        }
        for (int c = 0; c < nc; ++c) storef(o + c0 + c * kLanes, acc[c]);
      }
    }
  }
}

}  // namespace

void register_attention(Kernels& k) {
  k.attend = &attend_group;
  k.swiglu = &swiglu;
  k.fp16_to_f32 = &fp16_to_f32;
}

}  // namespace slm::kern::SLM_ISA_NS
