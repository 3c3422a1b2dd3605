#include "kernels/ref/sgemm.h"

namespace slm::ref {
namespace {

constexpr int kMr = 4, kNr = 8;

template <int W>
void pack(const float* src, int64_t sx, int64_t sk, int64_t nx, int64_t k, float* dst) {
  for (int64_t x0 = 0; x0 < nx; x0 += W, dst += k * W) {
    const int64_t w = nx - x0 < W ? nx - x0 : W;
    for (int64_t p = 0; p < k; ++p)
      for (int64_t x = 0; x < W; ++x) dst[p * W + x] = x < w ? src[(x0 + x) * sx + p * sk] : 0.0f;
  }
}

void kernel(int64_t k, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
            float alpha, float beta) {
  float acc[kMr][kNr] = {};
  for (int64_t p = 0; p < k; ++p)
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += a[p * kMr + i] * b[p * kNr + j];
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float& y = c[i * ldc + j];
      y = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * y;
    }
}

}  // namespace

const kern::SgemmKernels& sgemm_kernels() {
  static const kern::SgemmKernels k{kMr, kNr, &pack<kMr>, &pack<kNr>, &kernel};
  return k;
}

}  // namespace slm::ref
