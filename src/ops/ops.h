// The numerical building blocks of a forward pass, on float activations laid out as
// [n_tokens][n] rows. Each follows ggml's arithmetic (accumulation widths, order of
// operations) closely enough to agree with llama.cpp to ~1e-6 relative.
#pragma once
#include <cstdint>
#include <utility>

#include "ops/compute.h"
#include "ops/tensor.h"

namespace slm {

// y[t][o] = sum_i W[o][i] * x[t][i]. Activations are first converted to the weight type's
// dot-product type (e.g. Q8_0 blocks for Q4_0 weights), as llama.cpp does.
void matmul(ComputeContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y);

// out[t] = decoded row ids[t] of w (embedding lookup).
void get_rows(const Weight& w, const int32_t* ids, int64_t n, float* out);

// out = x / sqrt(mean(x^2) + eps) * weight, per row of n values (weight may be null).
void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
              float* out);
// The same, rows shared among ctx's threads (a prompt's 128-row passes: the double-precision
// sums are a serial chain of n adds per row).
void rms_norm(ComputeContext& ctx, const float* x, const float* weight, int64_t n_rows, int64_t n,
              float eps, float* out);

// LayerNorm (BERT-family encoders; decoders use rms_norm): per row of n values,
// out = (x - mean) / sqrt(var + eps) * weight + bias with var = mean((x - mean)^2), as ggml_norm
// followed by ggml_mul and ggml_add computes it (sums in double, the rest in float). weight and
// bias may be null. out may equal x.
void layer_norm(const float* x, const float* weight, const float* bias, int64_t n_rows, int64_t n,
                float eps, float* out);
// The same, rows shared among ctx's threads.
void layer_norm(ComputeContext& ctx, const float* x, const float* weight, const float* bias,
                int64_t n_rows, int64_t n, float eps, float* out);

// Add bias[n] to each of n_rows rows.
void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n);

enum class RopeMode { Normal, Neox };
struct RopeParams {
  RopeMode mode = RopeMode::Normal;
  int n_rot = 0;            // rotated dimensions per head (<= head_dim)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;  // linear scaling: 1 / factor
  const float* freq_factors = nullptr;  // n_rot/2 divisors (llama3 rope_freqs, LongRoPE)
  float attn_factor = 1.0f;             // scales cos/sin (LongRoPE's mscale; YaRN's, folded in)
  // YaRN (ext_factor > 0): pair i turns by a mix of the interpolated angle (freq_scale * theta)
  // and the original one, all original below pair yarn_low, all interpolated above yarn_high
  // (ggml's corr_dims), linear between. YaRN's magnitude 1 + 0.1 ln(1 / freq_scale) is not
  // applied here but folded into attn_factor by whoever fills this in, so that a rotation at
  // unit magnitude (a context shift) stays one.
  float ext_factor = 0.0f;
  float yarn_low = 0.0f, yarn_high = 0.0f;
};
// ggml's YaRN correction range for n_rot rotated dimensions, trained context n_ctx_orig and
// the beta_fast / beta_slow rotation counts: {yarn_low, yarn_high}.
std::pair<float, float> yarn_corr_dims(int n_rot, int64_t n_ctx_orig, float freq_base, float beta_fast, float beta_slow);
// Rotate n_heads heads of head_dim values at position pos, in place.
void rope(float* x, int64_t n_heads, int64_t head_dim, int32_t pos, const RopeParams& p);

// In-place softmax over n values.
void softmax(float* x, int64_t n);

float silu(float x);
float gelu_tanh(float x);
// GELU as llama.cpp's CPU backend computes it: through a table indexed by the fp16 value of
// x and holding fp16 results (exact outside [-10, 10]). Matching it keeps Gemma logits
// within ~1e-6 of llama.cpp instead of ~1e-3.
float gelu_tanh_fp16_table(float x);
// x[i] = gelu_tanh_fp16_table(x[i]) over n values, in place, through a 64K-entry table built
// once (as ggml's ggml_table_gelu_f16): one tanh per element cost as much as the matrix
// products of a BERT encoder's feed-forward layers.
// With `times`, x[i] = gelu(x[i]) * times[i] in the same pass (Gemma's GeGLU: the up projection).
void gelu_fp16_table_inplace(ComputeContext& ctx, float* x, int64_t n, const float* times = nullptr);

}  // namespace slm
