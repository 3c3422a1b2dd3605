// slm finetune: LoRA fine-tuning of a GGUF model on a text file, on the CPU.
//
// Windows of `ctx` tokens are sampled from the tokenized training text (BOS first when the
// vocabulary adds one, as the perplexity evaluation sees text), `batch` per step, at offsets
// drawn from a generator seeded by (seed, step): the same windows for the same seed however
// the run is cut into resumed pieces. AdamW as PyTorch's (bias-corrected moments, decoupled
// weight decay), constant learning rate. A checkpoint holds the adapter, both moments and the
// step; `resume` continues it bit for bit (same threads).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "models/lora.h"

namespace slm::train {

struct FinetuneOptions {
  std::string model_path, train_path, eval_path, out_path;
  int rank = 8;
  float alpha = 16.0f;
  std::string targets = "q,k,v,o,gate,up,down";
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, adam_eps = 1e-8f, weight_decay = 0.0f;
  int steps = 100;
  int batch = 4;
  int ctx = 256;
  uint64_t seed = 42;
  int n_threads = 0;  // 0: one
  int checkpoint_every = 0;     // 0: no checkpoints
  std::string checkpoint_path;  // default: out_path + ".ckpt"
  std::string resume_path;      // continue this checkpoint
  int eval_ctx = 512;           // perplexity chunk size for --eval
  int eval_chunks = -1;         // -1: all
  DType out_type = DType::F32;  // adapter tensor type
  int force_recompute = -1;     // -1: by memory; 0/1 forced (tests)
};

struct StepInfo {
  int step = 0, steps = 0;  // step counts from 1
  double loss = 0;
  double tokens_per_s = 0;  // this step's
  double eta_s = 0;
};

struct FinetuneReport {
  int64_t train_tokens = 0;
  int first_step = 0;         // 0, or where a resumed run started
  double first_loss = 0, last_loss = 0;
  double eval_ppl_before = 0, eval_ppl_after = 0;  // 0 when no eval file
  double seconds = 0, tokens_per_s = 0;
  size_t activation_bytes = 0, state_bytes = 0;
  bool recompute = false;
  int64_t n_params = 0;
};

struct FinetuneCallbacks {
  std::function<void(const std::string&)> log;   // set-up and memory lines
  std::function<void(const StepInfo&)> on_step;  // after each step
};

// Checks every input before any work (missing or too-short training text, a context larger
// than the model's, rank 0, an unwritable output, a checkpoint for other settings) and throws
// slm::Error naming the problem.
FinetuneReport finetune(const FinetuneOptions& opts, const FinetuneCallbacks& cb);

}  // namespace slm::train
