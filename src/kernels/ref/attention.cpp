#include "kernels/ref/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/kernels.h"

namespace slm::ref {

void attend_group(const float* q, int n_q, int64_t ldq, const float* kt, int64_t ldk,
                  const float* v, int64_t ldv, int64_t n, int d_k, int d_v, float scale,
                  float softcap, float* scratch, float* out, int64_t ldo) {
  float* s = scratch;
  for (int i = 0; i < n_q; ++i) {
    const float* qi = q + i * ldq;
    for (int64_t j = 0; j < n; ++j) s[j] = 0.0f;
    for (int d = 0; d < d_k; ++d)  // dimension-major, as the keys are stored
      for (int64_t j = 0; j < n; ++j) s[j] += qi[d] * kt[d * ldk + j];
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      s[j] *= scale;
      if (softcap > 0.0f) s[j] = std::tanh(s[j] / softcap) * softcap;
      mx = std::max(mx, s[j]);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    float* o = out + i * ldo;
    for (int d = 0; d < d_v; ++d) o[d] = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      const float p = s[j] * inv;
      for (int d = 0; d < d_v; ++d) o[d] += p * v[j * ldv + d];
    }
  }
}

void attend_group_cache(const float* q, int n_q, int n_tok, int slide, int64_t ldq, const kern::CacheKeysValues& kv,
                        int d_k, int d_v, float scale, float softcap, float* scratch, float* out, int64_t ldo) {
  constexpr int B = kern::kKeyBlock;
  const int64_t n = kv.n;
  auto half = [](const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_fp32(h);
  };
  std::vector<float> kt(static_cast<size_t>(d_k * n)), vf(static_cast<size_t>(n * d_v));
  for (int64_t j = 0; j < n; ++j) {
    // Block and lane of key j, counted from its run's first block; its value row.
    const bool first_run = j < kv.n_first;
    const int64_t jj = first_run ? kv.lane0 + j : j - kv.n_first;
    const uint8_t* kb = (first_run ? kv.kb : kv.kb_wrap) + (jj / B) * kv.kblock_stride;
    const uint8_t* v = first_run ? kv.v + j * kv.ldv : kv.v_wrap + (j - kv.n_first) * kv.ldv;
    for (int d = 0; d < d_k; ++d) {
      if (kv.keys == kern::CacheFormat::F16) {
        kt[d * n + j] = half(kb + 2 * (d * B + jj % B));
      } else if (kv.keys == kern::CacheFormat::F32) {
        std::memcpy(&kt[d * n + j], kb + 4 * (d * B + jj % B), 4);
      } else {
        const uint8_t* g = kb + (d / 32) * kern::kQ8KeyGroupBytes;
        kt[d * n + j] = half(g + 2 * (jj % B)) * static_cast<int8_t>(g[2 * B + (d % 32) * B + jj % B]);
      }
    }
    for (int d = 0; d < d_v; ++d) {
      if (kv.values == kern::CacheFormat::F16) {
        vf[j * d_v + d] = half(v + 2 * d);
      } else if (kv.values == kern::CacheFormat::F32) {
        std::memcpy(&vf[j * d_v + d], v + 4 * d, 4);
      } else {
        const uint8_t* blk = v + (d / 32) * 34;
        vf[j * d_v + d] = half(blk) * static_cast<int8_t>(blk[2 + d % 32]);
      }
    }
  }
  const int heads = n_q / n_tok;
  for (int r = 0; r < n_tok; ++r) {  // token r sees keys lo .. n - n_tok + r
    const int64_t lo = int64_t{r} * slide;
    attend_group(q + r * heads * ldq, heads, ldq, kt.data() + lo, n, vf.data() + lo * d_v, d_v,
                 n - (n_tok - 1 - r) - lo, d_k, d_v, scale, softcap, scratch, out + r * heads * ldo, ldo);
  }
}

}  // namespace slm::ref
