// Continuous batching for a server: one thread owns the model, a multi-sequence KV cache and
// the compute context, and runs one forward pass per step that holds the next token of every
// generating request plus chunks of waiting prompts (chunked prefill), so a long prompt never
// freezes the other streams. Requests come from any thread through submit(); their text
// comes back through a RequestHandle that the caller reads (blocking, with a timeout) or
// cancels. Slots keep their tokens after a request ends, so a request whose prompt begins
// with what a slot already holds (the next turn of a chat) evaluates only the new part.
//
// Behind the Scheduler interface so that a server can later run another policy (speculative
// decoding, several models) without touching the HTTP layer.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "models/model.h"
#include "sampling/sampler.h"
#include "models/lora.h"
#include "tokenizer/tokenizer.h"

namespace slm {

struct GenerationRequest {
  std::vector<int32_t> prompt;  // at least one token
  SamplerParams sampling;
  int max_tokens = -1;             // -1: until end of generation or the context is full
  std::vector<std::string> stop;   // stop strings (the text ends before the first match)
  int top_logprobs = -1;           // -1: no log-probabilities; 0..20: the token's and that many more
  bool ignore_eos = false;         // generate through end-of-generation tokens (benchmarks)
  // LoRA scales by adapter index (SchedulerOptions::lora) that this request sets; the others
  // keep the server's scale (--lora FILE:SCALE). Scale 0 turns an adapter off.
  std::vector<std::pair<int, float>> lora;
  // Constrained output (response_format, grammar): the text must follow it; null: free text.
  std::shared_ptr<const Grammar> grammar;
  // Code completion limits (llama.cpp's /infill fields), 0: off. n_indent: after the first
  // line, a line indented less than this ends the text before its first non-blank character
  // (the completion has left the block). t_max_predict_ms: once a line is complete, stop when
  // generating has taken longer than this. Both end with finish_reason "length".
  int n_indent = 0;
  double t_max_predict_ms = 0;
  // llama.cpp's n_keep, with SchedulerOptions::context_shift: prompt tokens that stay when the
  // text fills the context (the BOS token besides; -1: the whole prompt).
  int n_keep = 0;
};

struct TokenLogprob {
  int32_t id = 0;
  std::string piece;  // the token's bytes (may be part of a UTF-8 character)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // most likely alternatives, best first
};

// What a request produced since it was last read.
struct RequestEvents {
  std::string text;                  // complete UTF-8, stop strings held back until resolved
  std::vector<TokenLogprob> logprobs;  // tokens generated since the last read
  bool finished = false;
  std::string finish_reason;         // "stop", "length", "cancelled", "error" (when finished)
  std::string error;                 // with finish_reason "error"
  std::string stop_word;             // with finish_reason "stop": the stop string that ended it ("" for end of generation)
  int prompt_tokens = 0, cached_tokens = 0;
  int completion_tokens = 0;         // generated so far (set on every read, final when finished)
  // When finished: milliseconds from submission to the first generated token (waiting for a
  // slot and the prompt), and from there to the end.
  double prompt_ms = 0, generation_ms = 0;
};

// Shared between the scheduler thread and the thread that serves the request.
class RequestHandle {
 public:
  // Waits up to `timeout` for new output (or the end); returns what arrived (possibly nothing).
  RequestEvents wait(std::chrono::milliseconds timeout);
  // Asks the scheduler to stop this request; it is dropped within one step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class BatchScheduler;
  void push(const std::string& text, std::vector<TokenLogprob>&& lp, int generated);
  void finish(const std::string& reason, const std::string& error, int prompt, int cached, int completion,
              const std::string& stop_word = {}, double prompt_ms = 0, double generation_ms = 0);

  std::mutex mu_;
  std::condition_variable cv_;
  RequestEvents pending_;       // text and log-probabilities not read yet
  RequestEvents final_;         // the finish, once it happened
  bool finished_ = false, finish_read_ = false;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int n_parallel = 4;   // sequences generating at once (KV cache sequences)
  int n_ctx = 4096;     // context per sequence
  int n_batch = 256;    // tokens per forward pass (decode tokens + prompt chunks)
  int n_threads = 1;
  int max_queue = 64;   // requests waiting for a slot; beyond it submit() refuses
  KVTypes kv_types = DType::F16;
  // LoRA adapters every request may use, with their default scales (models/lora.h).
  std::shared_ptr<const LoraSet> lora;
  // Speculative decoding (null: off): a small model with the same vocabulary proposes up to
  // n_draft tokens per generating request and step, while it is at least draft_p_min sure of
  // them; the model checks them in the step's pass and keeps them up to the first one its own
  // sampler would not have picked (runtime/speculative.h). Must outlive the scheduler.
  const Model* draft = nullptr;
  int n_draft = 7;
  float draft_p_min = 0.75f;
  // Prompt lookup decoding instead of a draft (runtime/speculative.h, LookupParams): proposals
  // from the request's own prompt and text, no forward pass.
  bool lookup = false;
  int lookup_ngram_min = 2, lookup_ngram_max = 3;
  // llama-server's --context-shift: a request whose text fills the context drops half of it
  // after its n_keep tokens and goes on (runtime/generate.h, ContextShift: the cached keys of
  // the rest are rotated, or where a wrapped ring cannot be moved, the rest is evaluated again
  // in the steps' batches like a prompt). Not with a draft or lookup.
  bool context_shift = false;
};

// Counts for /metrics, read with stats().
struct SchedulerStats {
  int slots_total = 0, slots_busy = 0, queue_depth = 0;
  uint64_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0, steps = 0;
  uint64_t drafted_tokens = 0, accepted_tokens = 0;  // speculative decoding: proposed, and kept
  uint64_t context_shifts = 0;                       // SchedulerOptions::context_shift
};

// One slot as GET /slots shows it (llama.cpp's server), as of the scheduler's last step.
struct SlotInfo {
  int id = 0;
  bool processing = false;
  int n_past = 0;     // tokens the slot's cache holds
  int n_prompt = 0;   // the running request's prompt tokens (0 when free)
  int n_decoded = 0;  // tokens it has generated
  int n_remain = -1;  // tokens it may still generate (-1: no limit)
};

// llama-server's slot actions (POST /slots/ID?action=save|restore|erase): a slot's cached
// tokens and KV rows to a prompt cache file (runtime/prompt_state.h), back from one, or
// forgotten.
struct SlotAction {
  enum class Kind { Save, Restore, Erase };
  Kind kind = Kind::Save;
  int slot = 0;
  std::string path;  // save and restore
};
struct SlotActionResult {
  int status = 200;  // as HTTP: 200; 400 no such slot or a file that does not fit; 409 busy; 500 I/O
  std::string error;
  std::string param;  // the request's part the error is about: "id_slot" or "filename"; empty: none
  int n_tokens = 0;    // saved, restored or erased
  size_t n_bytes = 0;  // written or read
  double ms = 0;
};

// Called on the scheduler thread: first token of a request (seconds after submit), and the gap
// between two tokens of a request.
struct SchedulerObserver {
  virtual ~SchedulerObserver() = default;
  virtual void on_first_token(double seconds) = 0;
  virtual void on_inter_token(double seconds) = 0;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  enum class Submit { Accepted, QueueFull, ShuttingDown };
  // Thread-safe. The request must fit: prompt + max_tokens <= n_ctx (checked by the caller
  // with n_ctx(); a request that does not fit finishes with an error).
  virtual Submit submit(GenerationRequest req, std::shared_ptr<RequestHandle> handle) = 0;
  virtual SchedulerStats stats() const = 0;
  // Thread-safe: the slots as of the last step.
  virtual std::vector<SlotInfo> slots() const = 0;
  virtual int n_ctx() const = 0;
  // Thread-safe: runs on the scheduler thread between two steps and waits for it. A slot
  // that is serving a request is refused (409), as is everything once shutting down.
  virtual SlotActionResult slot_action(const SlotAction& action) = 0;
  // Ends every queued and running request (finish_reason "stop") and stops the thread.
  virtual void shutdown() = 0;
};

class BatchScheduler : public Scheduler {
 public:
  // The model and tokenizer must outlive the scheduler. Starts the scheduler thread.
  BatchScheduler(const Model& model, const Tokenizer& tok, const SchedulerOptions& opts,
                 SchedulerObserver* observer = nullptr);
  ~BatchScheduler() override;
  Submit submit(GenerationRequest req, std::shared_ptr<RequestHandle> handle) override;
  SchedulerStats stats() const override;
  std::vector<SlotInfo> slots() const override;
  int n_ctx() const override { return opts_.n_ctx; }
  SlotActionResult slot_action(const SlotAction& action) override;
  void shutdown() override;
  // Whether a draft model or prompt lookup proposes tokens.
  bool speculative() const { return dcache_ != nullptr || opts_.lookup; }

 private:
  struct Slot;
  struct Pending {
    GenerationRequest req;
    std::shared_ptr<RequestHandle> handle;
    std::chrono::steady_clock::time_point submitted;
  };
  void run();
  // Slot actions waiting for the thread, each with the promise its caller waits on.
  struct PendingAction {
    SlotAction action;
    std::promise<SlotActionResult> done;
  };
  SlotActionResult do_slot_action(const SlotAction& action);
  void admit(std::deque<Pending>& incoming);
  bool step();
  void finish(Slot& s, const std::string& reason, const std::string& error = {});
  // Returns false when the slot has finished.
  bool emit(Slot& s, int32_t token, const float* logits);
  // The draft's proposals for every generating slot (Slot::proposal), in batched draft passes.
  void propose();
  // The same from each slot's own text (prompt lookup).
  void propose_lookup();
  // How many tokens a generating slot may have proposed this step (<= 0: none).
  int proposal_room(const Slot& s) const;
  // Draft passes over dbatch_; false (and the proposals dropped) if the draft failed.
  bool draft_forward();

  const Model& model_;
  const Tokenizer& tok_;
  // DRY's breaker tokens for the last breaker strings a request asked for.
  std::vector<std::string> dry_breakers_for_;
  std::vector<int32_t> dry_breaker_ids_;
  std::vector<std::vector<int32_t>> dry_breaker_seqs_;
  bool dry_resolved_ = false;
  std::shared_ptr<const GrammarVocab> grammar_vocab_;  // built by the scheduler thread at the first grammar
  SchedulerOptions opts_;
  SchedulerObserver* observer_;
  std::unique_ptr<KVCache> cache_;
  KVCache::KeyRotation rotate_keys_;  // SchedulerOptions::context_shift: KVCache::shift's
  std::unique_ptr<ComputeContext> ctx_;
  std::vector<std::unique_ptr<Slot>> slots_;
  Batch batch_;
  std::vector<Slot*> owners_;   // the slot of each batch entry (kept: a step allocates nothing)
  std::vector<Slot*> prefill_;  // slots with prompt left, oldest first
  std::vector<float> logits_;
  // The adapters with unit scales and, per batch token, the scale its request asked for
  // (LoraSet::token_scales): requests with different adapters share one step.
  LoraSet lora_;
  std::vector<float> lora_token_scales_;
  // Speculative decoding: the draft's cache (one sequence per slot, as the model's) and context.
  std::unique_ptr<KVCache> dcache_;
  std::unique_ptr<ComputeContext> dctx_;
  Batch dbatch_;
  std::vector<Slot*> downers_;
  std::vector<float> dlogits_;

  mutable std::mutex mu_;
  // What slots() returns, written after every step (the slots themselves belong to the thread).
  mutable std::mutex slot_info_mu_;
  std::vector<SlotInfo> slot_info_;
  void publish_slots();
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::deque<PendingAction> actions_;
  bool stopping_ = false;
  std::atomic<int> busy_{0};
  std::atomic<uint64_t> n_prompt_{0}, n_cached_{0}, n_generated_{0}, n_steps_{0}, n_drafted_{0}, n_accepted_{0},
      n_shifts_{0};
  uint64_t admissions_ = 0;  // scheduler thread only
  std::thread thread_;
};

// llama.cpp's n_indent rule on generated text, character by character: after the first newline,
// a line whose indentation (spaces and tabs) is below the minimum ends the text just before its
// first other character (a blank line counts as indentation 0).
class IndentLimit {
 public:
  explicit IndentLimit(int min_indent) : min_(min_indent) {}
  // Returns the part of `text` that stays; reached() once the limit cut it.
  std::string push(const std::string& text);
  bool reached() const { return reached_; }

 private:
  int min_;
  bool at_line_start_ = false;  // inside the indentation of a line after a newline
  int indent_ = 0;
  bool reached_ = false;
};

// Stop strings over a stream of text: releases text as soon as it cannot be the start of a
// stop string, and reports the first match (the text before it is released, the rest dropped).
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Adds text; returns what may be released now. Sets matched() when a stop string appeared.
  std::string push(const std::string& text);
  // The text still held back (call at the end when no stop string matched).
  std::string flush() { return std::exchange(held_, {}); }
  bool matched() const { return matched_; }
  const std::string& matched_word() const { return word_; }  // which stop string, once matched

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
  std::string word_;
};

}  // namespace slm
