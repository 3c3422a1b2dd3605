// Llama 3.x (and Llama 2, TinyLlama, stories260K): RMSNorm, GQA attention with RoPE,
// SwiGLU FFN, tied or untied output. Qwen2 reuses this forward pass with biases and NEOX RoPE,
// Qwen3 with NEOX RoPE and each head's query and key RMS-normalized before RoPE.
#pragma once
#include "models/model.h"

namespace slm {

class LlamaModel : public Model {
 public:
  // The variations of the Llama block that other architectures (Qwen2, Qwen3) are made of.
  struct Variant {
    RopeMode rope_mode = RopeMode::Normal;
    bool qkv_biases = false;  // required q/k/v biases (otherwise optional)
    bool qk_norm = false;     // required attn_q_norm / attn_k_norm (head_dim weights each)
  };
  LlamaModel(std::unique_ptr<GGUFFile> file, const Variant& variant);
  void forward(ComputeContext& ctx, const Batch& batch, KVCache& cache, float* logits) const override;
  DecoderView decoder_view(int n_ctx) const override;

 protected:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    Weight wq, wk, wv, wo, gate, up, down;
    std::vector<float> bq, bk, bv;  // empty when the file has none
    std::vector<float> q_norm, k_norm;  // per-head RMSNorm weights (Qwen3), else empty
  };
  void read_hparams(const Variant& variant);  // step 1
  void bind_tensors(const Variant& variant);  // step 2

  Weight token_embd_, output_;
  std::vector<float> output_norm_, rope_freqs_;
  std::vector<Layer> layers_;
};

}  // namespace slm
