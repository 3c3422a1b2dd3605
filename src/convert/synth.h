// slm synth: a random-weight model with the exact shape and metadata of a real one (Llama 3.2,
// Qwen2.5, Gemma 2, Phi-3, the bge-small embedding model), for benchmarks and tests without
// downloading weights. Weights are N(0, 0.02) from a counter-seeded PRNG (the same file for the
// same seed, whatever the thread count), norms 1, biases 0; the tokenizer comes from a
// vocab-only GGUF file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/gguf.h"

namespace slm::convert {

struct SynthShape {
  const char* name;     // the --like value
  const char* arch;     // general.architecture
  const char* display;  // the real model's name
  bool hidden;          // tiny-* shapes: for tests, not listed in the help
  int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim;
  int64_t n_vocab;      // the real model's; 0: whatever the vocab file has (tiny shapes)
  const char* vocab_hint;  // which vocab file has that many tokens
  int64_t n_ctx;
  float rope_base;
  float norm_eps;
  bool tied;            // no output.weight: token_embd doubles as the output matrix
  bool qkv_bias;        // qwen2: attn_q/k/v biases
  bool llama3_rope;     // rope_freqs.weight from Llama 3's frequency scaling
  int64_t sliding_window;  // gemma2 / phi3 metadata (0: none)
  float attn_softcap, final_softcap;  // gemma2
};

// All shapes, hidden ones last.
const std::vector<SynthShape>& synth_shapes();
const SynthShape* find_synth_shape(const std::string& name);
std::string synth_shape_names();  // the visible ones, for help and errors

enum class SynthInit { Normal, Ones, Zeros, RopeFreqs };

struct SynthTensor {
  std::string name;
  std::vector<int64_t> ne;
  DType type = DType::F32;
  SynthInit init = SynthInit::Normal;
  int64_t nelements() const { int64_t n = 1; for (int64_t d : ne) n *= d; return n; }
};

// The tensors a shape has, in file order, without data. Matrices get `type`; vectors (norms,
// biases, rope factors) stay F32 as llama.cpp's converter keeps them.
std::vector<SynthTensor> synth_plan(const SynthShape& shape, int64_t n_vocab, DType type);

// Llama 3's RoPE frequency factors (convert_hf_to_gguf's rope_freqs): head_dim/2 values.
std::vector<float> llama3_rope_factors(int64_t head_dim, float base, float factor, float low_freq,
                                       float high_freq, int64_t original_ctx);

struct SynthOptions {
  std::string like, vocab_path, out_path;
  DType type = DType::F16;
  uint64_t seed = 42;
  int n_threads = 1;
  bool progress = true;
};

struct SynthReport {
  int64_t n_params = 0, n_vocab = 0;
  uint64_t file_bytes = 0;
  double seconds = 0;
};

// Throws slm::Error: unknown shape, unsupported type, vocab file unreadable or of the wrong
// size for the shape, output unwritable (no partial file is left).
SynthReport synth_model(const SynthOptions& opts);

}  // namespace slm::convert
