// LoRA adapters: low-rank corrections W' = W + s * B * A for some of a model's matrices, in
// the GGUF adapter format llama.cpp reads and writes (general.type = "adapter",
// adapter.type = "lora", adapter.lora.alpha; tensors "<base tensor name>.lora_a" with ggml
// shape [n_in, rank] and ".lora_b" with [rank, n_out]). slm applies them unmerged at run time
// (y = W x + s * B (A x), so one quantized base serves several adapters), merges them
// (export-lora) and trains them (src/train/).
//
// The effective scale of a tensor is user_scale * alpha / rank as in llama.cpp (user_scale
// when alpha is 0). PEFT's scale is alpha / r, so a PEFT adapter runs at user scale 1.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"

namespace slm {

class Model;
class ComputeContext;
struct Weight;

// One adapted matrix: A [rank][n_in] and B [n_out][rank], row-major F32.
struct LoraTensor {
  std::string base;  // the base tensor's name, e.g. "blk.3.attn_q.weight"
  int64_t n_in = 0, n_out = 0, rank = 0;
  std::vector<float> a;  // rank * n_in
  std::vector<float> b;  // n_out * rank
};

class LoraAdapter {
 public:
  // Reads an adapter file and checks it against the base: same architecture, every tensor
  // names a matrix of the base with matching n_in / n_out, A and B of the same rank. Throws
  // slm::Error naming the file, the tensor and the shapes.
  static std::shared_ptr<LoraAdapter> load(const std::string& path, const Model& base);
  // The same checks against an already built adapter (convert-lora, finetune).
  void check_against(const Model& base) const;

  // Writes the adapter as GGUF (`type` F32, F16 or BF16 for the tensors). Throws slm::Error
  // on I/O failure (no partial file is left).
  void save(const std::string& path, DType type = DType::F32) const;

  // The tensor adapting `base_name`, or null.
  const LoraTensor* find(const std::string& base_name) const;
  LoraTensor* find(const std::string& base_name);
  // Adds a tensor (zero A and B of the given shape) and returns it.
  LoraTensor& add(const std::string& base_name, int64_t n_in, int64_t n_out, int64_t rank);

  float scale_for(const LoraTensor& t, float user_scale) const {
    return alpha > 0.0f ? user_scale * alpha / static_cast<float>(t.rank) : user_scale;
  }
  int64_t n_params() const;

  std::string path;  // file it came from ("" when built in memory)
  std::string arch;  // general.architecture of the base
  float alpha = 0.0f;
  std::vector<LoraTensor> tensors;
  // Extra metadata written by save() (e.g. training settings), key -> string value.
  std::vector<std::pair<std::string, std::string>> notes;

 private:
  std::unordered_map<std::string, size_t> index_;
};

// The adapters a forward pass applies, each with its user scale. Set on a ComputeContext
// (ComputeContext::lora); a null or empty set means the base model alone.
struct LoraSet {
  std::vector<std::shared_ptr<const LoraAdapter>> adapters;
  std::vector<float> scales;  // user scale per adapter
  // Optional per-token scale multipliers, [n_tokens][adapters.size()] for the batch being run
  // (the server's requests choose their own adapters): null means 1 for every token.
  const float* token_scales = nullptr;
  bool empty() const { return adapters.empty(); }
};

// "FILE" or "FILE:SCALE" (as llama.cpp's --lora / --lora-scaled) -> path and scale.
std::pair<std::string, float> parse_lora_arg(const std::string& arg);

// The adapters of --lora arguments ("FILE" or "FILE:SCALE" each), loaded and checked against
// the base; null when there are none.
std::shared_ptr<LoraSet> load_lora_set(const std::vector<std::string>& specs, const Model& base);

// y [T][w.n_out] += the adapters' corrections for weight w applied to x [T][w.n_in]
// (nothing when no adapter in the context's set adapts w).
void apply_lora(ComputeContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y);

}  // namespace slm
