// What a training pass (src/train/) needs of a decoder model: its weights and the variations
// of its block, in one description the decoder families fill in (Model::decoder_view).
// Inference keeps its own forward passes; training recomputes the same function with its
// intermediate values kept, so that it can run backwards.
#pragma once
#include <cstdint>
#include <vector>

#include "models/blocks.h"
#include "models/model.h"

namespace slm {

struct DecoderLayerView {
  const std::vector<float>* attn_norm = nullptr;
  const std::vector<float>* post_attn_norm = nullptr;  // Gemma 2 (null: none)
  const std::vector<float>* ffn_norm = nullptr;
  const std::vector<float>* post_ffw_norm = nullptr;   // Gemma 2 (null: none)
  // Separate q/k/v, or one fused matrix with rows [q | k | v] (Phi-3).
  const Weight* wq = nullptr;
  const Weight* wk = nullptr;
  const Weight* wv = nullptr;
  const Weight* wqkv = nullptr;
  const std::vector<float>* bq = nullptr;  // null or empty: no bias (Qwen2 has them)
  const std::vector<float>* bk = nullptr;
  const std::vector<float>* bv = nullptr;
  const Weight* wo = nullptr;
  // Each head's query and key RMS-normalized before RoPE (Qwen3, Gemma 3; null: not).
  const std::vector<float>* q_norm = nullptr;
  const std::vector<float>* k_norm = nullptr;
  // Separate gate/up, or one fused matrix with rows [gate | up] (Phi-3).
  const Weight* gate = nullptr;
  const Weight* up = nullptr;
  const Weight* gate_up = nullptr;
  const Weight* down = nullptr;
  int32_t window = 0;  // sliding attention window in positions (0: full causal)
  // This layer's RoPE where it is not DecoderView::attn's (Gemma 3's sliding-window layers
  // have a base of their own; null: attn's).
  const RopeParams* rope = nullptr;
};

struct DecoderView {
  HParams hp;
  const Weight* token_embd = nullptr;
  const Weight* output = nullptr;
  const std::vector<float>* output_norm = nullptr;
  const std::vector<float>* output_bias = nullptr;  // Phi-3 (null: none)
  float embd_scale = 1.0f;                          // Gemma 2: sqrt(n_embd)
  blocks::Activation act = blocks::Activation::SiLU;
  blocks::AttentionSpec attn;  // heads, scale, softcap, RoPE (with its frequency factors)
  std::vector<DecoderLayerView> layers;
};

}  // namespace slm
