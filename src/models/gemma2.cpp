// Gemma 2 and the Gemma block Gemma 3 shares (models/gemma.h): embeddings scaled by
// sqrt(n_embd); norms before and after attention and FFN; GeGLU (tanh GELU); NEOX RoPE; tied
// output. Gemma 2: attention logits soft-capped, sliding-window attention on even layers, final
// logits soft-capped.
#include <cmath>

#include "core/error.h"
#include "models/blocks.h"
#include "models/decoder_view.h"
#include "models/gemma.h"
#include "models/registry.h"

namespace slm {

GemmaModel::GemmaModel(std::unique_ptr<GGUFFile> file, const Variant& variant)
    : Model(std::move(file)), variant_(variant) {
  read_hparams();
  bind_tensors();
}

std::unique_ptr<KVCache> GemmaModel::make_cache(int n_ctx, int n_seq, int n_batch, KVTypes types) const {
  return std::make_unique<RingKVCache>(kv_shape(), layer_windows(), n_ctx, n_seq, n_batch, types);
}

void GemmaModel::read_hparams() {
  read_common_hparams();
  hp_.rope.mode = RopeMode::Neox;
  if (!variant_.gemma3) {
    hp_.sliding_window = static_cast<int32_t>(key_int("attention.sliding_window", 4096));
    hp_.attn_softcap = key_float("attn_logit_softcapping", 50.0f);
    hp_.final_softcap = key_float("final_logit_softcapping", 30.0f);
    // Query scaling: 1/sqrt(head_dim) unless the file says otherwise.
    const float pre_attn = key_float("attention.query_pre_attn_scalar", 0.0f);
    hp_.attn_scale = pre_attn > 0 ? 1.0f / std::sqrt(pre_attn)
                                  : 1.0f / std::sqrt(static_cast<float>(hp_.head_dim_k));
    if (hp_.sliding_window <= 0) fail("{}: gemma2.attention.sliding_window must be positive", file_->path());
    return;
  }
  // Gemma 3, as llama.cpp reads it: the window from the file (absent: every layer attends to
  // everything), no attention softcap, and queries scaled by 1/sqrt(head_dim) except in the
  // 27B (62 layers), whose query_pre_attn_scalar is n_embd / n_head.
  hp_.sliding_window = static_cast<int32_t>(key_int("attention.sliding_window", 0));
  if (hp_.sliding_window < 0) fail("{}: gemma3.attention.sliding_window must not be negative", file_->path());
  if (hp_.sliding_window == 0) hp_.final_softcap = key_float("final_logit_softcapping", 0.0f);
  const float pre_attn = hp_.n_layer == 62 ? static_cast<float>(hp_.n_embd / hp_.n_head)
                                           : static_cast<float>(hp_.head_dim_k);
  hp_.attn_scale = 1.0f / std::sqrt(pre_attn);
  // Sliding layers rotate with base 10,000 and no scaling; the full-attention layers with the
  // file's base and linear factor (1e6 and 8 in the 4B and larger).
  local_rope_ = hp_.rope;
  local_rope_.freq_base = key_float("rope.freq_base_swa", 10000.0f);
  local_rope_.freq_scale = 1.0f;
  local_rope_.ext_factor = 0.0f;  // no YaRN there either
  local_rope_.attn_factor = 1.0f;
}

void GemmaModel::bind_tensors() {
  const int64_t E = hp_.n_embd, F = hp_.n_ff, V = hp_.n_vocab;
  const int64_t q_dim = hp_.n_head * hp_.head_dim_k, k_dim = hp_.n_head_kv * hp_.head_dim_k;
  const int64_t v_dim = hp_.n_head_kv * hp_.head_dim_v, o_dim = hp_.n_head * hp_.head_dim_v;
  token_embd_ = bind("token_embd.weight", E, V);
  output_norm_ = bind_vector("output_norm.weight", E);
  output_ = bind("output.weight", E, V, false);
  if (!output_) output_ = token_embd_;
  layers_.resize(hp_.n_layer);
  for (int64_t l = 0; l < hp_.n_layer; ++l) {
    Layer& L = layers_[l];
    L.attn_norm = bind_vector(layer_name(l, "attn_norm.weight"), E);
    L.wq = bind(layer_name(l, "attn_q.weight"), E, q_dim);
    L.wk = bind(layer_name(l, "attn_k.weight"), E, k_dim);
    L.wv = bind(layer_name(l, "attn_v.weight"), E, v_dim);
    L.wo = bind(layer_name(l, "attn_output.weight"), o_dim, E);
    if (variant_.gemma3) bind_head_norms(l, L.q_norm, L.k_norm);
    L.post_attn_norm = bind_vector(layer_name(l, "post_attention_norm.weight"), E);
    L.ffn_norm = bind_vector(layer_name(l, "ffn_norm.weight"), E);
    L.gate = bind(layer_name(l, "ffn_gate.weight"), E, F);
    L.up = bind(layer_name(l, "ffn_up.weight"), E, F);
    L.down = bind(layer_name(l, "ffn_down.weight"), F, E);
    L.post_ffw_norm = bind_vector(layer_name(l, "post_ffw_norm.weight"), E);
  }
}

// Gemma 2 slides on even layers (pattern 2), Gemma 3 on five of six (pattern 6: layers 5, 11,
// ... see everything), as llama.cpp's set_swa_pattern.
std::vector<int32_t> GemmaModel::layer_windows() const {
  std::vector<int32_t> w(hp_.n_layer, 0);
  const int p = variant_.swa_pattern;
  for (int64_t l = 0; l < hp_.n_layer; ++l)
    if (l % p < p - 1) w[l] = hp_.sliding_window;
  return w;
}

const RopeParams& GemmaModel::layer_rope(size_t l) const {
  return variant_.gemma3 && static_cast<int64_t>(l) % variant_.swa_pattern < variant_.swa_pattern - 1 &&
                 hp_.sliding_window > 0
             ? local_rope_
             : hp_.rope;
}

DecoderView GemmaModel::decoder_view(int) const {
  DecoderView d;
  d.hp = hp_;
  d.token_embd = &token_embd_;
  d.output = &output_;
  d.output_norm = &output_norm_;
  d.embd_scale = std::sqrt(static_cast<float>(hp_.n_embd));
  // Exact tanh GELU: training needs its derivative, and the fp16 table inference matches
  // llama.cpp with has none (the two differ by ~1e-3 relative).
  d.act = blocks::Activation::GeluTanh;
  d.attn = blocks::attention_spec(hp_);
  const std::vector<int32_t> windows = layer_windows();
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    DecoderLayerView v;
    v.attn_norm = &L.attn_norm, v.post_attn_norm = &L.post_attn_norm;
    v.ffn_norm = &L.ffn_norm, v.post_ffw_norm = &L.post_ffw_norm;
    v.wq = &L.wq, v.wk = &L.wk, v.wv = &L.wv, v.wo = &L.wo;
    if (!L.q_norm.empty()) v.q_norm = &L.q_norm, v.k_norm = &L.k_norm;
    v.gate = &L.gate, v.up = &L.up, v.down = &L.down;
    v.window = windows[l];
    if (&layer_rope(l) != &hp_.rope) v.rope = &layer_rope(l);
    d.layers.push_back(v);
  }
  return d;
}

void GemmaModel::forward(ComputeContext& ctx, const Batch& b, KVCache& cache, float* logits) const {
  using namespace blocks;
  validate_batch(b, cache, hp_.n_vocab);
  const int64_t T = b.size(), E = hp_.n_embd;
  const LayerBuffers buf = layer_buffers(ctx, hp_, T);
  float *x = buf.x, *h = buf.h, *q = buf.q, *k = buf.k, *v = buf.v, *attn = buf.attn, *proj = buf.proj;

  AttentionSpec spec = attention_spec(hp_);

  embed(token_embd_, b, x);
  const float embd_scale = std::sqrt(static_cast<float>(E));
  for (int64_t i = 0; i < T * E; ++i) x[i] *= embd_scale;
  for (int64_t l = 0; l < hp_.n_layer; ++l) {
    const Layer& L = layers_[l];
    rms_norm(ctx, x, L.attn_norm.data(), T, E, hp_.norm_eps, h);
    linear(ctx, L.wq, h, T, q);
    linear(ctx, L.wk, h, T, k);
    linear(ctx, L.wv, h, T, v);
    if (!L.q_norm.empty()) head_norms(ctx, hp_, T, L.q_norm, L.k_norm, q, k);
    spec.rope = layer_rope(static_cast<size_t>(l));
    attend(ctx, b, cache, static_cast<int>(l), spec, q, k, v, attn);
    linear(ctx, L.wo, attn, T, proj);
    rms_norm(ctx, proj, L.post_attn_norm.data(), T, E, hp_.norm_eps, proj);
    add_inplace(x, proj, T * E);
    rms_norm(ctx, x, L.ffn_norm.data(), T, E, hp_.norm_eps, h);
    ffn_glu(ctx, L.gate, L.up, L.down, Activation::GeluTanhFp16Table, h, T, proj);
    rms_norm(ctx, proj, L.post_ffw_norm.data(), T, E, hp_.norm_eps, proj);
    add_inplace(x, proj, T * E);
  }
  output_head(ctx, b, x, E, output_norm_, hp_.norm_eps, output_, hp_.final_softcap, logits);
}

std::unique_ptr<Model> make_gemma2(std::unique_ptr<GGUFFile> file) {
  return std::make_unique<GemmaModel>(std::move(file), GemmaModel::Variant{});
}

}  // namespace slm
