// Gemma 3 (the text models: 1B, and the language part of 4B/12B/27B files): the Gemma 2 block
// (models/gemma.h) with each head's query and key RMS-normalized (attn_q_norm, attn_k_norm)
// before RoPE; five sliding-window layers to one full-attention layer, the sliding ones rotating
// with base 10,000 and the others with the file's base and linear scaling; no soft-capping.
#include "models/gemma.h"
#include "models/registry.h"

namespace slm {

std::unique_ptr<Model> make_gemma3(std::unique_ptr<GGUFFile> file) {
  GemmaModel::Variant v;
  v.swa_pattern = 6;
  v.gemma3 = true;
  return std::make_unique<GemmaModel>(std::move(file), v);
}

}  // namespace slm
