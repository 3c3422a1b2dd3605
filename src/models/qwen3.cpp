// Qwen3 (the dense models, 0.6B to 32B): the Llama block without q/k/v biases, NEOX-style
// RoPE, and each head's query and key RMS-normalized (attn_q_norm, attn_k_norm, head_dim weights)
// before RoPE. The head size is its own (attention.key_length: 128 in every size), not
// n_embd / n_head.
#include "models/llama.h"
#include "models/registry.h"

namespace slm {

std::unique_ptr<Model> make_qwen3(std::unique_ptr<GGUFFile> file) {
  LlamaModel::Variant v;
  v.rope_mode = RopeMode::Neox;
  v.qk_norm = true;
  return std::make_unique<LlamaModel>(std::move(file), v);
}

}  // namespace slm
