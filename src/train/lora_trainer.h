// The forward and backward pass of LoRA fine-tuning: the base model's weights stay frozen in
// whatever type they have, only the adapters' A and B matrices get gradients.
//
// The forward pass is the decoder's (models/decoder_view.h) over a batch of independent
// windows of T tokens (positions 0..T-1 each), with the intermediate values a backward pass
// needs kept; products with base weights use the engine's matmul, their backward
// (dx = dy W) ops/gemm.h's matmul_transposed, the low-rank products sgemm. Everything after
// the weights is F32: RMSNorm, RoPE, causal (sliding-window, soft-capped) attention, SiLU or
// tanh-GELU gates, the output head (soft-capped for Gemma 2) and the cross-entropy.
//
// Memory: with `recompute` each layer keeps only its input and recomputes its intermediates
// during the backward pass (one more forward pass of work); without, every layer's are kept.
// LoraTrainer chooses by a budget (TrainerOptions::keep_budget_bytes).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/decoder_view.h"
#include "models/lora.h"
#include "models/model.h"
#include "ops/compute.h"

namespace slm::train {

// Which projections get adapters: any of q k v o gate up down (Phi-3's fused matrices are
// adapted as a whole when any of their parts is asked for).
struct LoraTargets {
  bool q = true, k = true, v = true, o = true, gate = true, up = true, down = true;
  // "q,k,v,o,gate,up,down" (also "all"); throws slm::Error naming an unknown part.
  static LoraTargets parse(const std::string& s);
  std::string str() const;
};

// A new adapter for the model: A ~ U(-1/sqrt(n_in), 1/sqrt(n_in)) (PEFT's kaiming-uniform
// default), B = 0, so training starts from the base model exactly. Deterministic in `seed`.
std::shared_ptr<LoraAdapter> make_adapter(const Model& model, const LoraTargets& targets, int rank,
                                          float alpha, uint64_t seed);

// Gradients of an adapter's tensors, in the adapter's order.
struct LoraGrads {
  std::vector<std::vector<float>> a, b;
  void zero_like(const LoraAdapter& ad);
};

struct TrainerOptions {
  int n_threads = 1;
  int batch = 1;    // windows per step
  int seq_len = 0;  // tokens per window
  // Keep every layer's intermediates when they take at most this many bytes; otherwise keep
  // each layer's input only and recompute.
  size_t keep_budget_bytes = size_t{1} << 30;
  int force_recompute = -1;  // -1: by the budget; 0: never; 1: always (tests)
};

class LoraTrainer {
 public:
  LoraTrainer(const Model& model, LoraAdapter& adapter, const TrainerOptions& opts);
  ~LoraTrainer();

  // Mean cross-entropy of predicting token t+1 from tokens 0..t over the batch's windows
  // (tokens: batch * seq_len ids, one window per row). With grads, also d(loss)/d(A, B) of
  // every adapter tensor (overwritten).
  double forward_backward(const int32_t* tokens, LoraGrads* grads);
  double loss(const int32_t* tokens) { return forward_backward(tokens, nullptr); }

  bool recomputes() const { return recompute_; }
  // Bytes of activations and scratch held for one batch (besides the mapped model).
  size_t activation_bytes() const { return act_bytes_; }
  ComputeContext& context() { return ctx_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ComputeContext ctx_;
  bool recompute_ = false;
  size_t act_bytes_ = 0;
};

}  // namespace slm::train
