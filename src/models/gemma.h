// The Gemma 2 / Gemma 3 block: embeddings scaled by sqrt(n_embd); RMSNorms before and after
// attention and the FFN; GeGLU (tanh GELU); NEOX RoPE; tied output; sliding-window attention on
// some layers. Gemma 2 soft-caps attention and final logits and slides on every other layer;
// Gemma 3 normalizes each head's query and key before RoPE, slides on five layers of six with a
// RoPE base of their own (10,000) and caps nothing.
#pragma once
#include "models/model.h"

namespace slm {

class GemmaModel : public Model {
 public:
  struct Variant {
    int swa_pattern = 2;   // layer l slides where l % swa_pattern < swa_pattern - 1
    bool gemma3 = false;   // q/k norms, local RoPE base, Gemma 3's query scale, no softcaps
  };
  GemmaModel(std::unique_ptr<GGUFFile> file, const Variant& variant);

  std::unique_ptr<KVCache> make_cache(int n_ctx, int n_seq, int n_batch, KVTypes types) const override;
  void forward(ComputeContext& ctx, const Batch& b, KVCache& cache, float* logits) const override;
  DecoderView decoder_view(int n_ctx) const override;

 private:
  struct Layer {
    std::vector<float> attn_norm, post_attn_norm, ffn_norm, post_ffw_norm;
    std::vector<float> q_norm, k_norm;  // Gemma 3
    Weight wq, wk, wv, wo, gate, up, down;
  };
  void read_hparams();  // step 1
  void bind_tensors();  // step 2
  std::vector<int32_t> layer_windows() const;
  // The RoPE of layer l: the file's for full-attention layers, local_rope_ for sliding ones
  // in Gemma 3.
  const RopeParams& layer_rope(size_t l) const;

  Variant variant_;
  RopeParams local_rope_;  // Gemma 3's sliding-window layers
  Weight token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
};

}  // namespace slm
