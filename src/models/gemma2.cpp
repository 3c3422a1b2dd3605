// Gemma 2: embeddings scaled by sqrt(n_embd); norms before and after attention and FFN;
// GeGLU (tanh GELU); attention logits soft-capped; sliding-window attention on even layers;
// final logits soft-capped; NEOX RoPE; tied output.
#include <cmath>

#include "core/error.h"
#include "models/blocks.h"
#include "models/decoder_view.h"
#include "models/registry.h"

namespace slm {

namespace {

class Gemma2Model : public Model {
 public:
  explicit Gemma2Model(std::unique_ptr<GGUFFile> file) : Model(std::move(file)) {
    read_hparams();
    bind_tensors();
  }

  std::unique_ptr<KVCache> make_cache(int n_ctx, int n_seq, int n_batch, KVTypes types) const override {
    return std::make_unique<RingKVCache>(kv_shape(), layer_windows(), n_ctx, n_seq, n_batch, types);
  }

  void forward(ComputeContext& ctx, const Batch& b, KVCache& cache, float* logits) const override;

  DecoderView decoder_view(int) const override {
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
      v.gate = &L.gate, v.up = &L.up, v.down = &L.down;
      v.window = windows[l];
      d.layers.push_back(v);
    }
    return d;
  }

 private:
  struct Layer {
    std::vector<float> attn_norm, post_attn_norm, ffn_norm, post_ffw_norm;
    Weight wq, wk, wv, wo, gate, up, down;
  };

  void read_hparams() {
    read_common_hparams();
    hp_.rope.mode = RopeMode::Neox;
    hp_.sliding_window = static_cast<int32_t>(key_int("attention.sliding_window", 4096));
    hp_.attn_softcap = key_float("attn_logit_softcapping", 50.0f);
    hp_.final_softcap = key_float("final_logit_softcapping", 30.0f);
    // Query scaling: 1/sqrt(head_dim) unless the file says otherwise.
    const float pre_attn = key_float("attention.query_pre_attn_scalar", 0.0f);
    hp_.attn_scale = pre_attn > 0 ? 1.0f / std::sqrt(pre_attn)
                                  : 1.0f / std::sqrt(static_cast<float>(hp_.head_dim_k));
    if (hp_.sliding_window <= 0) fail("{}: gemma2.attention.sliding_window must be positive", file_->path());
  }

  void bind_tensors() {
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
      L.post_attn_norm = bind_vector(layer_name(l, "post_attention_norm.weight"), E);
      L.ffn_norm = bind_vector(layer_name(l, "ffn_norm.weight"), E);
      L.gate = bind(layer_name(l, "ffn_gate.weight"), E, F);
      L.up = bind(layer_name(l, "ffn_up.weight"), E, F);
      L.down = bind(layer_name(l, "ffn_down.weight"), F, E);
      L.post_ffw_norm = bind_vector(layer_name(l, "post_ffw_norm.weight"), E);
    }
  }

  // Even layers attend within the sliding window; odd layers see everything.
  std::vector<int32_t> layer_windows() const {
    std::vector<int32_t> w(hp_.n_layer, 0);
    for (int64_t l = 0; l < hp_.n_layer; l += 2) w[l] = hp_.sliding_window;
    return w;
  }

  Weight token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
};

void Gemma2Model::forward(ComputeContext& ctx, const Batch& b, KVCache& cache, float* logits) const {
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

}  // namespace

std::unique_ptr<Model> make_gemma2(std::unique_ptr<GGUFFile> file) {
  return std::make_unique<Gemma2Model>(std::move(file));
}

}  // namespace slm
