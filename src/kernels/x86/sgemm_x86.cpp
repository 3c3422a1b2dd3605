// F32 matrix products for ops/gemm.cpp: panel packing and the register-blocked micro-kernel
// (kern::SgemmKernels in kernels/kernels.h; ref/sgemm.cpp is the scalar twin).
//
// The tile is MR rows x NV vectors of C. Every step over k loads NV vectors of the B panel and
// broadcasts MR values of the A panel, then issues MR * NV independent FMAs: with 8 x 2 zmm
// (16 accumulators) that is 16 FMAs for 10 loads, enough independent chains to cover the FMA
// latency on both pipes, and the B panel (k x 32 floats, 32 KiB at k = 256) stays in L1 while
// ops/gemm.cpp sweeps the A panels past it. AVX2 has 16 registers: 6 x 2 ymm (12 accumulators).
#include "kernels/x86/simd.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

#if defined(__AVX512F__)
constexpr int kMr = 8, kNv = 2;
#else
constexpr int kMr = 6, kNv = 2;
#endif
constexpr int kNr = kNv * kLanes;

// dst[p * ldd + i] = src[i * ld + p] for an 8 x 8 block (AVX, in both builds).
__attribute__((always_inline)) inline void transpose8(const float* src, int64_t ld, float* dst, int64_t ldd) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

// See SgemmPackFn. The two layouts a row-major matrix can present are done with vectors: the
// panel's W values contiguous in the source (sx == 1: a copy per k step, k outermost so that
// each step reads one contiguous run across all panels rather than W floats from each of k
// rows, which at a 4 KiB stride all fall into the same L1 set) or its k values contiguous
// (sk == 1: 8 x 8 transposes). A partial last panel and odd strides take the plain loop.
template <int W>
void pack(const float* src, int64_t sx, int64_t sk, int64_t nx, int64_t k, float* dst) {
  int64_t full = 0;  // whole panels done by a vector path
  if (sx == 1) {
    full = nx / W;
    for (int64_t p = 0; p < k; ++p)
      for (int64_t q = 0; q < full; ++q) {
#pragma GCC unroll 8
        for (int x = 0; x < W; ++x) dst[q * k * W + p * W + x] = src[p * sk + q * W + x];
      }
  } else if (sk == 1 && W % 8 == 0) {
    full = nx / W;
    for (int64_t q = 0; q < full; ++q) {
      const float* s = src + q * W * sx;
      float* d = dst + q * k * W;
      int64_t p = 0;
      for (; p + 8 <= k; p += 8)
        for (int g = 0; g < W; g += 8) transpose8(s + g * sx + p, sx, d + p * W + g, W);
      for (; p < k; ++p)
        for (int x = 0; x < W; ++x) d[p * W + x] = s[x * sx + p];
    }
  }
  for (int64_t x0 = full * W; x0 < nx; x0 += W) {
    const int64_t w = nx - x0 < W ? nx - x0 : W;
    const float* s = src + x0 * sx;
    float* d = dst + x0 * k;
    for (int64_t p = 0; p < k; ++p)
      for (int64_t x = 0; x < W; ++x) d[p * W + x] = x < w ? s[x * sx + p * sk] : 0.0f;
  }
}

template <int MR, int NV>
void kernel(int64_t k, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
            float alpha, float beta) {
  constexpr int NR = NV * kLanes;
  VF acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = fzero();
  // The tile of C is read and written only after the k loop: start fetching it now.
  for (int i = 0; i < m; ++i)
    for (int off = 0; off < NR * 4; off += 64) prefetch_at(c + i * ldc, off);
  for (int64_t p = 0; p < k; ++p, a += MR, b += NR) {
    VF bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = loadf(b + v * kLanes);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const VF av = bcastf(a + i);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = fmadd(av, bv[v], acc[i][v]);
    }
  }
  const VF va = bcastf(&alpha), vb = bcastf(&beta);
  // Rows unrolled with a run-time test rather than a loop to m, so acc stays in registers.
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    float* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const int left = n - v * kLanes;
      if (left <= 0) break;
      VF r = mul(acc[i][v], va);
      if (left >= kLanes) {
        if (beta != 0.0f) r = fmadd(loadf(ci + v * kLanes), vb, r);
        storef(ci + v * kLanes, r);
      } else {
        if (beta != 0.0f) r = fmadd(loadf_n(ci + v * kLanes, left), vb, r);
        storef_n(ci + v * kLanes, r, left);
      }
    }
  }
}

}  // namespace

void register_sgemm(Kernels& k) {
  k.sgemm.mr = kMr;
  k.sgemm.nr = kNr;
  k.sgemm.pack_a = &pack<kMr>;
  k.sgemm.pack_b = &pack<kNr>;
  k.sgemm.kernel = &kernel<kMr, kNv>;
}

}  // namespace slm::kern::SLM_ISA_NS
