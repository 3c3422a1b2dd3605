// One conversation's state on a model: its KV cache, compute context and the tokens it has
// seen. A server owns one Session per user (or one with many sequences); nothing global.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "models/lora.h"
#include "models/model.h"
#include "ops/compute.h"
#include "runtime/kv_cache.h"

namespace slm {

struct SessionOptions {
  int n_ctx = 4096;      // 0: the model's training context
  int n_threads = 1;
  // Prompt tokens evaluated per forward pass. 128 rather than llama.cpp's 512: the activations
  // of a pass then stay small (peak RSS of `slm bench` on the 1B Q4_0 file: 802 MiB against
  // 846 MiB at 512), and the panel kernels already reuse each weight load across a whole tile
  // of tokens, so prompt speed does not suffer (pp512: 226 t/s against 199 at 512).
  int n_batch = 128;
  KVTypes kv_types = DType::F16;
  // Whether a pass of up to kern::kRowMaxTokens tokens may use the row kernels on the mapped
  // weights (no copy of the model) until a longer one repacks a matrix into panels. Off for a
  // speculative target, whose passes are all several tokens: the first pass repacks, and an
  // 8-token verification then costs 1.05-1.3x one token instead of up to 4.6x.
  bool row_kernels = true;
  // LoRA adapters applied on top of the model (models/lora.h); null: none.
  std::shared_ptr<const LoraSet> lora;
};

// The context a command uses for a -c value: negative (the default) min(training context,
// 4096); 0 the training context (at most 2^20); otherwise the value. Shared by slm run/chat and
// slm serve, so that -c means the same everywhere.
int context_size(const Model& m, int requested);
// A warning for a context longer than the model was trained on (positions past it give text
// that falls apart), as llama.cpp warns; empty when n_ctx is within it.
std::string context_warning(const Model& m, int64_t n_ctx);

class Session {
 public:
  Session(const Model& model, const SessionOptions& opts);

  const Model& model() const { return model_; }
  int n_ctx() const { return cache_->n_ctx(); }
  int32_t n_past() const { return static_cast<int32_t>(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  size_t kv_bytes() const { return cache_->bytes(); }
  const SessionOptions& options() const { return opts_; }

  // Appends tokens to the sequence and evaluates them in batches of n_batch. Returns the
  // logits of the last token (n_vocab floats), or, with all_logits, of every token
  // (n_tokens x n_vocab). Throws slm::Error if they do not fit in the context.
  const std::vector<float>& eval(std::span<const int32_t> tokens, bool all_logits = false);
  // Forget everything from position n on (keeps the cached prefix).
  void truncate(int32_t n);
  void reset() { truncate(0); }
  // A context shift as llama.cpp makes it (KVCache::shift): tokens from .. from + n - 1 leave
  // the sequence, the cached keys of those after them are rotated to their new positions.
  // Returns false, changing nothing, where the cache cannot (a sliding-window ring that has
  // wrapped): truncate and evaluate again instead.
  bool shift(int32_t from, int32_t n);
  // How many of the first tokens have the cached rows a fresh pass over them gives: all of
  // them, unless a shift rotated keys (those after its start saw the tokens it dropped). Only
  // these may be reused for another prompt (generate(), a prompt cache file).
  int32_t n_exact() const { return std::min(n_past(), exact_); }

  // The sequence so far, its tokens and cache rows, to a prompt cache file (llama.cpp's
  // --prompt-cache), and back: a later run whose prompt starts with those tokens evaluates only
  // the rest (eval and generate() reuse the common prefix). The file names the model (its
  // shape, file size and a sample of its weights), the adapters and the cache types; load_state
  // throws slm::Error, leaving the session as it was, for a file that is not one, is cut short,
  // or was made for another model or settings.
  void save_state(const std::string& path) const;
  void load_state(const std::string& path);
  // What a prompt cache file must say of the model and settings to be loaded by this session.
  std::string state_identity() const;

 private:
  const Model& model_;
  SessionOptions opts_;
  std::unique_ptr<KVCache> cache_;
  ComputeContext ctx_;
  Batch batch_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  KVCache::KeyRotation rotate_keys_;  // made at the first shift
  int32_t exact_ = std::numeric_limits<int32_t>::max();  // n_exact()
};

}  // namespace slm
