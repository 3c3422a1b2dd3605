// Qwen2 / Qwen2.5: the Llama block with q/k/v biases and NEOX-style RoPE (rotating pairs
// i, i + d/2); tied embeddings in the small models.
#include "models/llama.h"
#include "models/registry.h"

namespace slm {

std::unique_ptr<Model> make_qwen2(std::unique_ptr<GGUFFile> file) {
  LlamaModel::Variant v;
  v.rope_mode = RopeMode::Neox;
  v.qkv_biases = true;
  return std::make_unique<LlamaModel>(std::move(file), v);
}

}  // namespace slm
