#include "models/llama.h"

#include <cmath>

#include "core/error.h"
#include "models/blocks.h"
#include "models/decoder_view.h"
#include "models/registry.h"

namespace slm {

LlamaModel::LlamaModel(std::unique_ptr<GGUFFile> file, const Variant& variant)
    : Model(std::move(file)) {
  read_hparams(variant);
  bind_tensors(variant);
}

void LlamaModel::read_hparams(const Variant& variant) {
  read_common_hparams();
  hp_.rope.mode = variant.rope_mode;
}

void LlamaModel::bind_tensors(const Variant& variant) {
  const bool biases = variant.qkv_biases;
  const int64_t E = hp_.n_embd, F = hp_.n_ff, V = hp_.n_vocab;
  const int64_t q_dim = hp_.n_head * hp_.head_dim_k;
  const int64_t k_dim = hp_.n_head_kv * hp_.head_dim_k;
  const int64_t v_dim = hp_.n_head_kv * hp_.head_dim_v;
  token_embd_ = bind("token_embd.weight", E, V);
  output_norm_ = bind_vector("output_norm.weight", E);
  output_ = bind("output.weight", E, V, /*required=*/false);
  if (!output_) output_ = token_embd_;  // tied embeddings
  rope_freqs_ = bind_vector("rope_freqs.weight", hp_.rope.n_rot / 2, /*required=*/false);
  layers_.resize(hp_.n_layer);
  for (int64_t l = 0; l < hp_.n_layer; ++l) {
    Layer& L = layers_[l];
    L.attn_norm = bind_vector(layer_name(l, "attn_norm.weight"), E);
    L.wq = bind(layer_name(l, "attn_q.weight"), E, q_dim);
    L.wk = bind(layer_name(l, "attn_k.weight"), E, k_dim);
    L.wv = bind(layer_name(l, "attn_v.weight"), E, v_dim);
    L.wo = bind(layer_name(l, "attn_output.weight"), q_dim == v_dim ? q_dim : hp_.n_head * hp_.head_dim_v, E);
    L.bq = bind_vector(layer_name(l, "attn_q.bias"), q_dim, biases);
    L.bk = bind_vector(layer_name(l, "attn_k.bias"), k_dim, biases);
    L.bv = bind_vector(layer_name(l, "attn_v.bias"), v_dim, biases);
    if (variant.qk_norm) bind_head_norms(l, L.q_norm, L.k_norm);
    L.ffn_norm = bind_vector(layer_name(l, "ffn_norm.weight"), E);
    L.gate = bind(layer_name(l, "ffn_gate.weight"), E, F);
    L.up = bind(layer_name(l, "ffn_up.weight"), E, F);
    L.down = bind(layer_name(l, "ffn_down.weight"), F, E);
  }
}

void LlamaModel::forward(ComputeContext& ctx, const Batch& b, KVCache& cache, float* logits) const {
  using namespace blocks;
  validate_batch(b, cache, hp_.n_vocab);
  const int64_t T = b.size(), E = hp_.n_embd;
  const LayerBuffers buf = layer_buffers(ctx, hp_, T);
  float *x = buf.x, *h = buf.h, *q = buf.q, *k = buf.k, *v = buf.v, *attn = buf.attn, *proj = buf.proj;

  AttentionSpec spec = attention_spec(hp_);
  spec.rope.freq_factors = rope_freqs_.empty() ? nullptr : rope_freqs_.data();

  embed(token_embd_, b, x);
  for (int64_t l = 0; l < hp_.n_layer; ++l) {
    const Layer& L = layers_[l];
    rms_norm(ctx, x, L.attn_norm.data(), T, E, hp_.norm_eps, h);
    linear(ctx, L.wq, h, T, q);
    linear(ctx, L.wk, h, T, k);
    linear(ctx, L.wv, h, T, v);
    if (!L.bq.empty()) add_bias(q, L.bq.data(), T, static_cast<int64_t>(L.bq.size()));
    if (!L.bk.empty()) add_bias(k, L.bk.data(), T, static_cast<int64_t>(L.bk.size()));
    if (!L.bv.empty()) add_bias(v, L.bv.data(), T, static_cast<int64_t>(L.bv.size()));
    if (!L.q_norm.empty()) head_norms(ctx, hp_, T, L.q_norm, L.k_norm, q, k);
    attend(ctx, b, cache, static_cast<int>(l), spec, q, k, v, attn);
    linear(ctx, L.wo, attn, T, proj);
    add_inplace(x, proj, T * E);
    rms_norm(ctx, x, L.ffn_norm.data(), T, E, hp_.norm_eps, h);
    ffn_glu(ctx, L.gate, L.up, L.down, Activation::SiLU, h, T, proj);
    add_inplace(x, proj, T * E);
  }
  output_head(ctx, b, x, E, output_norm_, hp_.norm_eps, output_, 0.0f, logits);
}

DecoderView LlamaModel::decoder_view(int) const {
  DecoderView d;
  d.hp = hp_;
  d.token_embd = &token_embd_;
  d.output = &output_;
  d.output_norm = &output_norm_;
  d.attn = blocks::attention_spec(hp_);
  d.attn.rope.freq_factors = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
  for (const Layer& L : layers_) {
    DecoderLayerView v;
    v.attn_norm = &L.attn_norm;
    v.ffn_norm = &L.ffn_norm;
    v.wq = &L.wq, v.wk = &L.wk, v.wv = &L.wv, v.wo = &L.wo;
    v.bq = &L.bq, v.bk = &L.bk, v.bv = &L.bv;
    if (!L.q_norm.empty()) v.q_norm = &L.q_norm, v.k_norm = &L.k_norm;
    v.gate = &L.gate, v.up = &L.up, v.down = &L.down;
    d.layers.push_back(v);
  }
  return d;
}

std::unique_ptr<Model> make_llama(std::unique_ptr<GGUFFile> file) {
  return std::make_unique<LlamaModel>(std::move(file), LlamaModel::Variant{});
}

}  // namespace slm
