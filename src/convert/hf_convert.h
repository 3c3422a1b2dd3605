// slm convert: a Hugging Face model folder (config.json, safetensors, tokenizer.json) to one
// GGUF file, doing what llama.cpp's convert_hf_to_gguf.py does for the architectures slm runs,
// so that the file also loads in llama.cpp:
//   LlamaForCausalLM   q/k rows permuted to GGML's RoPE layout (pairs 2i, 2i+1 of a head);
//                      rope_freqs.weight from Llama 3's rope scaling; tied or untied output
//   Qwen2ForCausalLM   q/k/v biases; NEOX RoPE needs no permutation
//   Gemma2ForCausalLM  every norm stored as 1 + w (Gemma's RMSNorm multiplies by 1 + w);
//                      soft-caps and the sliding window in the metadata
//   Phi3ForCausalLM    fused qkv_proj / gate_up_proj kept fused; LongRoPE factors as
//                      rope_factors_short/long.weight and the attention factor in the metadata
// Tensor names and metadata keys are llama.cpp's. Matrices get the output type, 1-D tensors
// (norms, biases, rope factors) stay F32 as llama.cpp keeps them.
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace slm::convert {

struct ConvertOptions {
  std::string dir;       // the Hugging Face folder
  std::string out_path;  // the GGUF file to write
  // f32, f16, bf16, q8_0, or auto (llama.cpp's rule: bf16 for a bf16 checkpoint, else f16).
  std::string outtype = "f16";
  bool vocab_only = false;  // tokenizer metadata only, no tensors (config.json optional)
  int n_threads = 1;
  bool progress = true;
};

struct ConvertReport {
  std::string hf_arch;  // "LlamaForCausalLM" ("" for --vocab-only without config.json)
  std::string arch;     // general.architecture
  std::string outtype;  // what was written: f32, f16, bf16, q8_0
  int64_t n_params = 0;
  size_t n_tensors = 0;
  int64_t n_vocab = 0;
  std::string pre;          // tokenizer.ggml.pre
  uint64_t bytes_read = 0;  // checkpoint tensor data
  uint64_t file_bytes = 0;
  double seconds = 0;
};

// Throws slm::Error naming the file and what is wrong; no partial output is left behind.
ConvertReport convert_hf(const ConvertOptions& opts);

// The supported Hugging Face architecture names, for help and errors.
std::string hf_architecture_names();

// Llama's q/k permutation: the checkpoint row that row j of the GGUF matrix comes from, for a
// matrix of `rows` rows in `heads` heads of an even size. slm convert-lora applies the same
// permutation to the rows of lora_B, so that adapters line up with converted bases.
int64_t permuted_source_row(int64_t j, int64_t rows, int64_t heads);

}  // namespace slm::convert
