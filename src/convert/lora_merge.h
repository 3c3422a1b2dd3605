// slm export-lora: a base GGUF model with LoRA adapters merged in, W' = W + sum_k s_k B_k A_k
// (s_k = LoraAdapter::scale_for(t, user scale)), as llama.cpp's llama-export-lora does. The
// output keeps the base's metadata, tensor order and tensor types: F32/F16/BF16 matrices are
// merged in F32 and stored in their own type; a quantized matrix is decoded, merged and
// re-encoded to its own type with the reference encoder (what slm quantize uses). Tensors no
// adapter changes are copied byte for byte. Memory: about one tensor's worth of batches.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace slm::convert {

struct LoraMergeOptions {
  std::string base_path;
  std::string out_path;
  std::vector<std::pair<std::string, float>> adapters;  // path, user scale (parse_lora_arg)
  int n_threads = 1;
  bool progress = true;
};

struct LoraMergeReport {
  std::string arch;
  size_t n_tensors = 0;   // in the output
  size_t n_merged = 0;    // of them, changed by an adapter
  size_t n_adapters = 0;
  uint64_t file_bytes = 0;
  double seconds = 0;
};

// Throws slm::Error (unreadable base or adapter, an adapter for another model, a base type
// that cannot be re-encoded, a merged value that is not finite, unwritable output); no
// partial output file is left behind.
LoraMergeReport merge_lora(const LoraMergeOptions& opts);

}  // namespace slm::convert
