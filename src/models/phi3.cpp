// Phi-3 / Phi-3.5: fused attn_qkv rows [Q | K | V], fused ffn_up rows [gate | up] (SwiGLU),
// NEOX RoPE with LongRoPE factors for the 128k variants, untied output (optional bias), and
// sliding-window attention on every layer when the metadata sets a window.
#include <cmath>

#include "core/error.h"
#include "models/blocks.h"
#include "models/decoder_view.h"
#include "models/registry.h"

namespace slm {

namespace {

class Phi3Model : public Model {
 public:
  explicit Phi3Model(std::unique_ptr<GGUFFile> file) : Model(std::move(file)) {
    read_hparams();
    bind_tensors();
  }

  std::unique_ptr<KVCache> make_cache(int n_ctx, int n_seq, int n_batch, KVTypes types) const override {
    if (hp_.sliding_window <= 0) return Model::make_cache(n_ctx, n_seq, n_batch, types);
    std::vector<int32_t> windows(hp_.n_layer, hp_.sliding_window);
    return std::make_unique<RingKVCache>(kv_shape(), windows, n_ctx, n_seq, n_batch, types);
  }

  void forward(ComputeContext& ctx, const Batch& b, KVCache& cache, float* logits) const override;

  DecoderView decoder_view(int n_ctx) const override {
    DecoderView d;
    d.hp = hp_;
    d.token_embd = &token_embd_;
    d.output = &output_;
    d.output_norm = &output_norm_;
    if (!output_bias_.empty()) d.output_bias = &output_bias_;
    d.attn = blocks::attention_spec(hp_);
    d.attn.rope.freq_factors = rope_factors(n_ctx);
    for (const Layer& L : layers_) {
      DecoderLayerView v;
      v.attn_norm = &L.attn_norm;
      v.ffn_norm = &L.ffn_norm;
      if (L.wqkv) v.wqkv = &L.wqkv;
      else v.wq = &L.wq, v.wk = &L.wk, v.wv = &L.wv;
      v.wo = &L.wo;
      v.gate_up = &L.gate_up;
      v.down = &L.down;
      v.window = hp_.sliding_window;
      d.layers.push_back(v);
    }
    return d;
  }

 private:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    Weight wqkv, wq, wk, wv, wo, gate_up, down;
  };

  void read_hparams() {
    read_common_hparams();
    hp_.rope.mode = RopeMode::Neox;
    hp_.sliding_window = static_cast<int32_t>(key_int("attention.sliding_window", 0));
    n_ctx_orig_ = key_int("rope.scaling.original_context_length", hp_.n_ctx_train);
    hp_.rope.attn_factor = key_float("rope.scaling.attn_factor", 1.0f);
  }

  void bind_tensors() {
    const int64_t E = hp_.n_embd, F = hp_.n_ff, V = hp_.n_vocab;
    const int64_t q_dim = hp_.n_head * hp_.head_dim_k, k_dim = hp_.n_head_kv * hp_.head_dim_k;
    const int64_t v_dim = hp_.n_head_kv * hp_.head_dim_v, o_dim = hp_.n_head * hp_.head_dim_v;
    token_embd_ = bind("token_embd.weight", E, V);
    output_norm_ = bind_vector("output_norm.weight", E);
    output_ = bind("output.weight", E, V);
    output_bias_ = bind_vector("output.bias", V, false);
    rope_long_ = bind_vector("rope_factors_long.weight", hp_.rope.n_rot / 2, false);
    rope_short_ = bind_vector("rope_factors_short.weight", hp_.rope.n_rot / 2, false);
    layers_.resize(hp_.n_layer);
    for (int64_t l = 0; l < hp_.n_layer; ++l) {
      Layer& L = layers_[l];
      L.attn_norm = bind_vector(layer_name(l, "attn_norm.weight"), E);
      L.wqkv = bind(layer_name(l, "attn_qkv.weight"), E, q_dim + k_dim + v_dim, false);
      if (!L.wqkv) {  // some conversions keep Q, K, V apart
        L.wq = bind(layer_name(l, "attn_q.weight"), E, q_dim);
        L.wk = bind(layer_name(l, "attn_k.weight"), E, k_dim);
        L.wv = bind(layer_name(l, "attn_v.weight"), E, v_dim);
      }
      L.wo = bind(layer_name(l, "attn_output.weight"), o_dim, E);
      L.ffn_norm = bind_vector(layer_name(l, "ffn_norm.weight"), E);
      L.gate_up = bind(layer_name(l, "ffn_up.weight"), E, 2 * F);
      L.down = bind(layer_name(l, "ffn_down.weight"), F, E);
    }
  }

  // LongRoPE: llama.cpp uses the long factors when the context asked for exceeds the
  // original training context, the short ones otherwise.
  const float* rope_factors(int n_ctx) const {
    const auto& f = (n_ctx > n_ctx_orig_ && !rope_long_.empty()) ? rope_long_ : rope_short_;
    return f.empty() ? nullptr : f.data();
  }

  Weight token_embd_, output_;
  std::vector<float> output_norm_, output_bias_, rope_long_, rope_short_;
  std::vector<Layer> layers_;
  int64_t n_ctx_orig_ = 0;
};

void Phi3Model::forward(ComputeContext& ctx, const Batch& b, KVCache& cache, float* logits) const {
  using namespace blocks;
  validate_batch(b, cache, hp_.n_vocab);
  const int64_t T = b.size(), E = hp_.n_embd;
  const LayerBuffers buf = layer_buffers(ctx, hp_, T);
  float *x = buf.x, *h = buf.h, *q = buf.q, *k = buf.k, *v = buf.v, *attn = buf.attn, *proj = buf.proj;
  const int64_t q_dim = hp_.n_head * hp_.head_dim_k, k_dim = hp_.n_head_kv * hp_.head_dim_k;
  const int64_t v_dim = hp_.n_head_kv * hp_.head_dim_v;
  float* qkv = ctx.buffer(kQKV, T * (q_dim + k_dim + v_dim));

  AttentionSpec spec = attention_spec(hp_);
  spec.rope.freq_factors = rope_factors(cache.n_ctx());

  embed(token_embd_, b, x);
  for (int64_t l = 0; l < hp_.n_layer; ++l) {
    const Layer& L = layers_[l];
    rms_norm(ctx, x, L.attn_norm.data(), T, E, hp_.norm_eps, h);
    if (L.wqkv) {
      linear(ctx, L.wqkv, h, T, qkv);
      split_qkv(qkv, T, q_dim, k_dim, v_dim, q, k, v);
    } else {
      linear(ctx, L.wq, h, T, q);
      linear(ctx, L.wk, h, T, k);
      linear(ctx, L.wv, h, T, v);
    }
    attend(ctx, b, cache, static_cast<int>(l), spec, q, k, v, attn);
    linear(ctx, L.wo, attn, T, proj);
    add_inplace(x, proj, T * E);
    rms_norm(ctx, x, L.ffn_norm.data(), T, E, hp_.norm_eps, h);
    ffn_glu_fused(ctx, L.gate_up, L.down, Activation::SiLU, h, T, proj);
    add_inplace(x, proj, T * E);
  }
  output_head(ctx, b, x, E, output_norm_, hp_.norm_eps, output_, 0.0f, logits);
  if (!output_bias_.empty()) add_bias(logits, output_bias_.data(), b.n_outputs(), hp_.n_vocab);
}

}  // namespace

std::unique_ptr<Model> make_phi3(std::unique_ptr<GGUFFile> file) {
  return std::make_unique<Phi3Model>(std::move(file));
}

}  // namespace slm
