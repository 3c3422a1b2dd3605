#include "kernels/ref/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "kernels/kernels.h"
#include "kernels/ref/quants.h"

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

float cache_key(kern::CacheFormat f, const uint8_t* block, int lane, int d) {
  using kern::CacheFormat;
  constexpr int B = kern::kKeyBlock;
  switch (f) {
    case CacheFormat::F16: return load_f16(block + 2 * (d * B + lane));
    case CacheFormat::F32: return load_f32(block + 4 * (d * B + lane));
    case CacheFormat::BF16: return bf16_to_fp32(load_u16(block + 2 * (d * B + lane)));
    case CacheFormat::Q8_0: {
      const uint8_t* g = block + (d / 32) * kern::kQ8KeyGroupBytes;
      return load_f16(g + 2 * lane) * static_cast<int8_t>(g[2 * B + (d % 32) * B + lane]);
    }
    default: break;
  }
  // The 4- and 5-bit formats: scales, [minimums], [fifth bits], codes.
  const bool has_min = f == CacheFormat::Q4_1 || f == CacheFormat::Q5_1;
  const bool five = f == CacheFormat::Q5_0 || f == CacheFormat::Q5_1;
  const uint8_t* g = block + (d / 32) * kern::cache_key_group_bytes(f);
  const int dd = d % 32;
  const float scale = load_f16(g + 2 * lane);
  size_t at = 2 * B;
  float min = 0.0f;
  if (has_min) {
    min = load_f16(g + at + 2 * lane);
    at += 2 * B;
  }
  int q = 0;
  if (five) {
    q = ((load_u16(g + at + 2 * dd) >> lane) & 1) << 4;
    at += 2 * 32;
  }
  const uint8_t byte = g[at + 8 * dd + lane % 8];
  q |= lane < 8 ? byte & 0x0F : byte >> 4;
  switch (f) {
    case CacheFormat::Q4_0: return scale * static_cast<float>(q - 8);
    case CacheFormat::Q5_0: return scale * static_cast<float>(q - 16);
    case CacheFormat::IQ4_NL: return scale * static_cast<float>(kValuesIQ4NL[q]);
    default: return scale * static_cast<float>(q) + min;  // Q4_1, Q5_1
  }
}

void cache_value_row(kern::CacheFormat f, const uint8_t* row, float* out, int d_v) {
  using kern::CacheFormat;
  switch (f) {
    case CacheFormat::F16: to_float_f16(row, out, d_v); break;
    case CacheFormat::F32: to_float_f32(row, out, d_v); break;
    case CacheFormat::BF16: to_float_bf16(row, out, d_v); break;
    case CacheFormat::Q8_0: to_float_q8_0(row, out, d_v); break;
    case CacheFormat::Q4_0: to_float_q4_0(row, out, d_v); break;
    case CacheFormat::Q4_1: to_float_q4_1(row, out, d_v); break;
    case CacheFormat::Q5_0: to_float_q5_0(row, out, d_v); break;
    case CacheFormat::Q5_1: to_float_q5_1(row, out, d_v); break;
    case CacheFormat::IQ4_NL: to_float_iq4_nl(row, out, d_v); break;
  }
}

void decode_cache_keys(kern::CacheFormat f, const uint8_t* kb, int64_t stride, int64_t n_blocks, int d_k, float* out) {
  constexpr int B = kern::kKeyBlock;
  for (int64_t b = 0; b < n_blocks; ++b)
    for (int d = 0; d < d_k; ++d)
      for (int l = 0; l < B; ++l) out[(b * d_k + d) * B + l] = cache_key(f, kb + b * stride, l, d);
}

void decode_cache_values(kern::CacheFormat f, const uint8_t* v, int64_t ldv, int64_t n, int d_v, float* out) {
  for (int64_t j = 0; j < n; ++j) cache_value_row(f, v + j * ldv, out + j * d_v, d_v);
}

void attend_group_cache(const float* q, int n_q, int n_tok, int slide, int64_t ldq, const kern::CacheKeysValues& kv,
                        int d_k, int d_v, float scale, float softcap, float* scratch, float* out, int64_t ldo) {
  constexpr int B = kern::kKeyBlock;
  const int64_t n = kv.n;
  std::vector<float> kt(static_cast<size_t>(d_k * n)), vf(static_cast<size_t>(n * d_v));
  for (int64_t j = 0; j < n; ++j) {
    // Block and lane of key j, counted from its run's first block; its value row.
    const bool first_run = j < kv.n_first;
    const int64_t jj = first_run ? kv.lane0 + j : j - kv.n_first;
    const uint8_t* kb = (first_run ? kv.kb : kv.kb_wrap) + (jj / B) * kv.kblock_stride;
    const uint8_t* v = first_run ? kv.v + j * kv.ldv : kv.v_wrap + (j - kv.n_first) * kv.ldv;
    for (int d = 0; d < d_k; ++d) kt[d * n + j] = cache_key(kv.keys, kb, static_cast<int>(jj % B), d);
    cache_value_row(kv.values, v, &vf[j * d_v], d_v);
  }
  const int heads = n_q / n_tok;
  for (int r = 0; r < n_tok; ++r) {  // token r sees keys lo .. n - n_tok + r
    const int64_t lo = int64_t{r} * slide;
    attend_group(q + r * heads * ldq, heads, ldq, kt.data() + lo, n, vf.data() + lo * d_v, d_v,
                 n - (n_tok - 1 - r) - lo, d_k, d_v, scale, softcap, scratch, out + r * heads * ldo, ldo);
  }
}

}  // namespace slm::ref
