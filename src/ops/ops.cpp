#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"

namespace slm {

Weight Weight::from(const TensorInfo& t) {
  for (size_t d = 2; d < t.ne.size(); ++d)
    if (t.ne[d] != 1)
      fail("tensor {}: expected a 2-D matrix, found dimensions {}", t.name, fmt::join(t.ne, " x "));
  Weight w;
  w.name = t.name;
  w.type = t.type;
  w.n_in = t.ne[0];
  w.n_out = t.ne.size() > 1 ? t.ne[1] : 1;
  w.data = t.data;
  w.row_bytes = row_size(t.type, t.ne[0]);
  return w;
}

std::vector<float> tensor_to_floats(const TensorInfo& t) {
  const TypeTraits& tt = type_traits(t.type);
  if (!tt.to_float) fail("tensor {}: cannot decode type {}", t.name, dtype_name(t.type));
  std::vector<float> out(static_cast<size_t>(t.nelements));
  tt.to_float(t.data, out.data(), t.nelements);
  return out;
}

void matmul(ComputeContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y) {
  const TypeTraits& wt = type_traits(w.type);
  if (!wt.vec_dot) fail("matmul with {}: no dot product for type {}", w.name, wt.name);
  const TypeTraits& at = type_traits(wt.vec_dot_type);
  const int64_t n_in = w.n_in, n_out = w.n_out;
  const void* xq = x;
  size_t xq_row = n_in * sizeof(float);
  if (wt.vec_dot_type != DType::F32) {
    if (!at.from_float_act) fail("matmul with {}: cannot encode activations as {}", w.name, at.name);
    xq_row = row_size(wt.vec_dot_type, n_in);
    uint8_t* buf = ctx.act_scratch(xq_row * n_tokens);
    ctx.pool().parallel_for(n_tokens, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) at.from_float_act(x + t * n_in, buf + t * xq_row, n_in);
    });
    xq = buf;
  }
  const auto* xb = static_cast<const uint8_t*>(xq);
  // Each thread takes a band of output rows; tokens are the inner loop so a weight row is
  // read from memory once per call and reused from cache for every token.
  ctx.pool().parallel_for(n_out, [&](int64_t b, int64_t e, int) {
    for (int64_t o = b; o < e; ++o) {
      const uint8_t* wr = w.row(o);
      for (int64_t t = 0; t < n_tokens; ++t)
        y[t * n_out + o] = wt.vec_dot(n_in, wr, xb + t * xq_row);
    }
  }, 4);
}

void get_rows(const Weight& w, const int32_t* ids, int64_t n, float* out) {
  const TypeTraits& tt = type_traits(w.type);
  if (!tt.to_float) fail("embedding lookup in {}: cannot decode type {}", w.name, tt.name);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= w.n_out)
      fail("token id {} is outside the vocabulary (0..{})", ids[i], w.n_out - 1);
    tt.to_float(w.row(ids[i]), out + i * w.n_in, w.n_in);
  }
}

void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
              float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = out + r * n;
    double sum = 0.0;  // ggml accumulates in double
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float mean = static_cast<float>(sum / n);
    const float scale = 1.0f / std::sqrt(mean + eps);
    if (weight)
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * weight[i];
    else
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale;
  }
}

void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < n; ++i) x[r * n + i] += bias[i];
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int32_t pos, const RopeParams& p) {
  const int64_t n_rot = p.n_rot;
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(n_rot));
  // ggml builds the angles by repeated multiplication in float; do the same so the
  // rounding matches.
  float cache_cos[512], cache_sin[512];
  if (n_rot / 2 > 512) fail("rope: {} rotated dimensions is more than slm supports (1024)", n_rot);
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const float ff = p.freq_factors ? p.freq_factors[i] : 1.0f;
    const float angle = p.freq_scale * (theta / ff);
    cache_cos[i] = std::cos(angle) * p.attn_factor;
    cache_sin[i] = std::sin(angle) * p.attn_factor;
    theta *= theta_scale;
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    if (p.mode == RopeMode::Normal) {
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * cache_cos[i] - x1 * cache_sin[i];
        v[2 * i + 1] = x0 * cache_sin[i] + x1 * cache_cos[i];
      }
    } else {
      const int64_t half = n_rot / 2;
      for (int64_t i = 0; i < half; ++i) {
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cache_cos[i] - x1 * cache_sin[i];
        v[i + half] = x0 * cache_sin[i] + x1 * cache_cos[i];
      }
    }
  }
}

void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = (x[i] == -INFINITY) ? 0.0f : std::exp(x[i] - mx);
    x[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x)));
}

float gelu_tanh_fp16_table(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  const float xr = fp16_to_fp32(fp32_to_fp16(x));
  return fp16_to_fp32(fp32_to_fp16(gelu_tanh(xr)));
}

}  // namespace slm
