// slm convert-lora: a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) to
// the GGUF adapter format llama.cpp's convert_lora_to_gguf.py writes (see models/lora.h):
// tensors "blk.N.<gguf name>.weight.lora_a" (PEFT's lora_A [r][n_in] as stored, ggml ne
// [n_in, r]) and ".lora_b" (lora_B [n_out][r], ne [r, n_out]), with the row permutation the
// base conversion applies (Llama's q/k rows -> GGML's RoPE layout; for a LoRA pair only B's
// rows move, as B A's rows are B's), and adapter.lora.alpha = lora_alpha.
//
// The base names the architecture and the shapes every pair must have: a GGUF model file
// (its general.architecture, tensors and head counts) or the Hugging Face folder it was
// converted from (config.json). Families: LlamaForCausalLM / llama, Qwen2ForCausalLM / qwen2,
// Gemma2ForCausalLM / gemma2 (q, k, v, o, gate, up, down projections), Phi3ForCausalLM / phi3
// (fused qkv_proj -> attn_qkv, gate_up_proj -> ffn_up, o_proj, down_proj).
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "models/lora.h"

namespace slm::convert {

struct LoraConvertOptions {
  std::string peft_dir;  // adapter_config.json + adapter_model.safetensors
  std::string base;      // a .gguf model file or a Hugging Face model folder
  std::string out_path;
  std::string outtype = "f32";  // f32, f16 or bf16 (the adapter's tensors)
};

struct LoraConvertReport {
  std::string arch;        // general.architecture written
  std::string base_kind;   // "gguf" or "hf"
  size_t n_pairs = 0;      // adapted matrices (2 tensors each)
  int64_t rank = 0;        // r of adapter_config.json (every pair has it)
  float alpha = 0.0f;
  int64_t n_params = 0;
  uint64_t file_bytes = 0;
};

// Reads and checks the PEFT folder against the base and builds the adapter (F32, in memory).
// Throws slm::Error naming the file, the setting or the tensor that cannot be converted.
LoraAdapter build_lora_from_peft(const std::string& peft_dir, const std::string& base,
                                 LoraConvertReport* report = nullptr);

// build_lora_from_peft, then LoraAdapter::save in the output type. Nothing is written unless
// every check passes; a failed write leaves no partial file.
LoraConvertReport convert_lora(const LoraConvertOptions& opts);

}  // namespace slm::convert
