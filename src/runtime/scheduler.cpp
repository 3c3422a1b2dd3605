#include "runtime/scheduler.h"

#include <algorithm>
#include <limits>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "runtime/generate.h"
#include "runtime/prompt_state.h"
#include "runtime/speculative.h"
#include "runtime/grammar_vocab.h"

namespace slm {

// ---------------------------------------------------------------------------------------------
// RequestHandle

RequestEvents RequestHandle::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] {
    return !pending_.text.empty() || !pending_.logprobs.empty() || (finished_ && !finish_read_);
  });
  RequestEvents out = std::exchange(pending_, RequestEvents{});
  pending_.completion_tokens = out.completion_tokens;
  if (finished_ && !finish_read_) {
    // The finish's fields, with the text and log-probabilities that came before it.
    finish_read_ = true;
    RequestEvents last = final_;
    last.text = std::move(out.text);
    last.logprobs = std::move(out.logprobs);
    last.finished = true;
    out = std::move(last);
  }
  return out;
}

void RequestHandle::push(const std::string& text, std::vector<TokenLogprob>&& lp, int generated) {
  {
    std::lock_guard lock(mu_);
    pending_.completion_tokens = generated;
    pending_.text += text;
    for (auto& l : lp) pending_.logprobs.push_back(std::move(l));
  }
  cv_.notify_all();
}

void RequestHandle::finish(const std::string& reason, const std::string& error, int prompt, int cached,
                           int completion, const std::string& stop_word, double prompt_ms, double generation_ms) {
  {
    std::lock_guard lock(mu_);
    finished_ = true;
    final_.prompt_ms = prompt_ms;
    final_.generation_ms = generation_ms;
    final_.finish_reason = reason;
    final_.error = error;
    final_.stop_word = stop_word;
    final_.prompt_tokens = prompt;
    final_.cached_tokens = cached;
    final_.completion_tokens = completion;
  }
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// StopMatcher

std::string StopMatcher::push(const std::string& text) {
  if (matched_) return {};
  held_ += text;
  // The earliest complete match wins.
  size_t first = std::string::npos;
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    if (const size_t at = held_.find(s); at < first) {
      first = at;
      word_ = s;
    }
  }
  if (first != std::string::npos) {
    matched_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that could still grow into a stop string.
  size_t keep = 0;
  for (const auto& s : stops_)
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n)
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
  // Never release half of a UTF-8 character: the held part starts on a character boundary
  // when the stop strings do, since the tail compared equal to a prefix of one.
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

// ---------------------------------------------------------------------------------------------
// IndentLimit

std::string IndentLimit::push(const std::string& text) {
  if (reached_ || min_ <= 0) return reached_ ? std::string() : text;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (at_line_start_) {
      if (c == ' ' || c == '\t') {
        ++indent_;
        continue;
      }
      if (indent_ < min_) {
        reached_ = true;
        return text.substr(0, i);
      }
      at_line_start_ = false;
    }
    if (c == '\n') {
      at_line_start_ = true;
      indent_ = 0;
    }
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// BatchScheduler

struct BatchScheduler::Slot {
  // Shift: after a context shift, evaluating what stays (reeval) before generating again.
  enum class State { Free, Prefill, Generate, Shift };
  int seq = 0;
  State state = State::Free;
  std::vector<int32_t> tokens;  // evaluated and held in the cache for `seq`
  uint64_t last_used = 0;       // admission counter: least recently used free slot goes first
  uint64_t admitted = 0;        // prompt chunks are served in admission order

  GenerationRequest req;
  std::shared_ptr<RequestHandle> handle;
  std::chrono::steady_clock::time_point submitted, last_token_at;
  size_t next_prompt = 0;  // index in req.prompt of the next token to evaluate
  int n_keep = 0;          // tokens a context shift keeps (req.n_keep resolved)
  // Positions from here on hold rows a fresh pass would not give (a shift rotated their keys:
  // they saw the tokens it dropped); cut off when the request ends, so that no later prompt
  // reuses them.
  int32_t exact = std::numeric_limits<int32_t>::max();
  std::vector<int32_t> reeval;  // State::Shift: tokens to evaluate again, from next_reeval on
  size_t next_reeval = 0;
  int cached = 0;
  int generated = 0;
  int32_t pending_token = -1;  // sampled, evaluated in the next step
  // The LoRA scales the request runs with (one per adapter), and those the cached tokens of
  // this slot were computed with: a prefix is reused only under the same adapters.
  std::vector<float> lora_scales, cached_lora_scales;
  std::optional<Sampler> sampler;
  std::optional<StreamDecoder> decoder;
  std::optional<StopMatcher> stop;
  std::optional<IndentLimit> indent;
  std::chrono::steady_clock::time_point first_token_at;
  // Speculative decoding: what the draft's cache holds for `seq`, the tokens it proposes this
  // step (evaluated after pending_token), and its progress through them.
  std::vector<int32_t> draft_tokens, proposal, dtodo;
  size_t dnext = 0;
  int draft_room = 0;
  bool proposing = false;
  size_t step_base = 0;  // tokens.size() when this step's batch was built
};

BatchScheduler::BatchScheduler(const Model& model, const Tokenizer& tok, const SchedulerOptions& opts,
                               SchedulerObserver* observer)
    : model_(model), tok_(tok), opts_(opts), observer_(observer) {
  if (opts_.n_parallel < 1) fail("--parallel {} must be at least 1", opts_.n_parallel);
  if (opts_.n_ctx < 2) fail("context size {} is too small", opts_.n_ctx);
  if (opts_.max_queue < 0) fail("--max-queue {} must not be negative", opts_.max_queue);
  // Every generating sequence needs a place in each step (with a draft, for its proposals too),
  // with room left for prompt chunks.
  if (opts_.draft && opts_.lookup) fail("a draft model and prompt lookup exclude each other: give one");
  if (opts_.lookup && (opts_.n_draft < 1 || opts_.lookup_ngram_min < 1 || opts_.lookup_ngram_max < opts_.lookup_ngram_min))
    fail("prompt lookup needs --draft-max >= 1 and n-grams of at least 1 token");
  const int per_seq = opts_.draft || opts_.lookup ? 1 + std::max(opts_.n_draft, 0) : 1;
  opts_.n_batch = std::max(opts_.n_batch, opts_.n_parallel * per_seq + 16);
  cache_ = model_.make_cache(opts_.n_ctx, opts_.n_parallel, opts_.n_batch, opts_.kv_types);
  if (opts_.context_shift) rotate_keys_ = model_.key_rotation(opts_.n_ctx);
  if (opts_.draft) {
    if (opts_.n_draft < 1) fail("--draft-max {} must be at least 1", opts_.n_draft);
    if (!(opts_.draft_p_min >= 0.0f && opts_.draft_p_min <= 1.0f)) fail("--draft-p-min {} must be in [0, 1]", opts_.draft_p_min);
    if (opts_.draft->hparams().n_vocab != model_.hparams().n_vocab)
      fail("the draft model has {} logits per token but the model {}: the draft must share the model's tokenizer",
           opts_.draft->hparams().n_vocab, model_.hparams().n_vocab);
    // Rejected proposals are taken back out of both caches: a sliding-window ring keeps
    // n_batch - 1 rows beyond its window, more than a step's proposals, so it can.
    dcache_ = opts_.draft->make_cache(opts_.n_ctx, opts_.n_parallel, opts_.n_batch, opts_.kv_types);
    dctx_ = std::make_unique<ComputeContext>(std::max(opts_.n_threads, 1));
    dctx_->set_row_kernels(false);
    dlogits_.resize(static_cast<size_t>(opts_.n_parallel) * opts_.draft->hparams().n_vocab);
  }
  ctx_ = std::make_unique<ComputeContext>(std::max(opts_.n_threads, 1));
  // A server's steps hold several sequences' tokens, and the output head sees one row per
  // generating sequence: the row kernels (made for a lone process's first few tokens, before
  // any repacking) are 2-3x slower than the panels there. Q4_0 1B, 8 streams: the Q6_K output
  // head through the row kernel took 27% of decoding time.
  ctx_->set_row_kernels(false);
  if (opts_.lora && !opts_.lora->empty()) {
    lora_.adapters = opts_.lora->adapters;
    lora_.scales.assign(lora_.adapters.size(), 1.0f);
    ctx_->lora = &lora_;
  }
  for (int i = 0; i < opts_.n_parallel; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->seq = i;
  }
  logits_.resize(static_cast<size_t>(opts_.n_parallel) * per_seq * model_.hparams().n_vocab);
  thread_ = std::thread([this] { run(); });
}

BatchScheduler::~BatchScheduler() { shutdown(); }

Scheduler::Submit BatchScheduler::submit(GenerationRequest req, std::shared_ptr<RequestHandle> handle) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Submit::ShuttingDown;
    const int free_slots = opts_.n_parallel - busy_.load();
    if (static_cast<int>(queue_.size()) >= opts_.max_queue + std::max(free_slots, 0)) return Submit::QueueFull;
    queue_.push_back({std::move(req), std::move(handle), std::chrono::steady_clock::now()});
  }
  cv_.notify_all();
  return Submit::Accepted;
}

SchedulerStats BatchScheduler::stats() const {
  SchedulerStats s;
  s.slots_total = opts_.n_parallel;
  s.slots_busy = busy_.load();
  {
    std::lock_guard lock(mu_);
    s.queue_depth = static_cast<int>(queue_.size());
  }
  s.prompt_tokens = n_prompt_.load();
  s.cached_tokens = n_cached_.load();
  s.generated_tokens = n_generated_.load();
  s.steps = n_steps_.load();
  s.drafted_tokens = n_drafted_.load();
  s.accepted_tokens = n_accepted_.load();
  s.context_shifts = n_shifts_.load();
  return s;
}

std::vector<SlotInfo> BatchScheduler::slots() const {
  std::lock_guard lock(slot_info_mu_);
  if (slot_info_.empty()) {  // before the first step: every slot free
    std::vector<SlotInfo> idle(static_cast<size_t>(opts_.n_parallel));
    for (size_t i = 0; i < idle.size(); ++i) idle[i].id = static_cast<int>(i);
    return idle;
  }
  return slot_info_;
}

void BatchScheduler::publish_slots() {
  std::vector<SlotInfo> info;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = *slots_[i];
    SlotInfo si;
    si.id = static_cast<int>(i);
    si.processing = s.state != Slot::State::Free;
    si.n_past = static_cast<int>(s.tokens.size());
    if (si.processing) {
      si.n_prompt = static_cast<int>(s.req.prompt.size());
      si.n_decoded = s.generated;
      si.n_remain = s.req.max_tokens > 0 ? s.req.max_tokens - s.generated : -1;
    }
    info.push_back(si);
  }
  std::lock_guard lock(slot_info_mu_);
  slot_info_ = std::move(info);
}

void BatchScheduler::shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

namespace {
SlotActionResult slot_error(int status, std::string error, std::string param = {}) {
  SlotActionResult r;
  r.status = status;
  r.error = std::move(error);
  r.param = std::move(param);
  return r;
}
}  // namespace

SlotActionResult BatchScheduler::slot_action(const SlotAction& action) {
  std::future<SlotActionResult> result;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return slot_error(503, "the server is shutting down");
    actions_.push_back(PendingAction{action, {}});
    result = actions_.back().done.get_future();
  }
  cv_.notify_all();
  return result.get();
}

SlotActionResult BatchScheduler::do_slot_action(const SlotAction& a) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  SlotActionResult r;
  if (a.slot < 0 || a.slot >= static_cast<int>(slots_.size()))
    return slot_error(400, fmt::format("no slot {}: the slots are 0 to {}", a.slot, slots_.size() - 1), "id_slot");
  Slot& s = *slots_[static_cast<size_t>(a.slot)];
  if (s.state != Slot::State::Free)
    return slot_error(409, fmt::format("slot {} is serving a request; try again when it is idle", a.slot), "id_slot");
  const auto identity = [&] {
    return prompt_state_identity(model_, opts_.lora.get(), s.cached_lora_scales, cache_->types());
  };
  try {
    switch (a.kind) {
      case SlotAction::Kind::Save:
        r.n_bytes = write_prompt_state(a.path, PromptState{identity(), s.tokens, cache_->save_seq(s.seq)});
        r.n_tokens = static_cast<int>(s.tokens.size());
        break;
      case SlotAction::Kind::Restore: {
        // Adapters at the server's default scales: what a request that names none runs with.
        std::vector<float> scales;
        if (opts_.lora) scales = opts_.lora->scales;
        PromptState st = read_prompt_state(
            a.path, prompt_state_identity(model_, opts_.lora.get(), scales, cache_->types()),
            model_.hparams().n_vocab);
        if (st.tokens.size() >= static_cast<size_t>(opts_.n_ctx))
          return slot_error(400,
                            fmt::format("{} holds {} tokens; a slot's context holds {}", a.path, st.tokens.size(),
                                        opts_.n_ctx),
                            "filename");
        try {
          s.tokens = restore_prompt_state(*cache_, s.seq, std::move(st), a.path);
        } catch (const Error&) {
          s.tokens.resize(static_cast<size_t>(cache_->seq_length(s.seq)));  // as it was, or emptied with the rows
          throw;
        }
        s.cached_lora_scales = std::move(scales);
        s.last_used = ++admissions_;
        r.n_tokens = static_cast<int>(s.tokens.size());
        r.n_bytes = std::filesystem::file_size(a.path);
        break;
      }
      case SlotAction::Kind::Erase:
        r.n_tokens = static_cast<int>(s.tokens.size());
        cache_->truncate(s.seq, 0);
        s.tokens.clear();
        break;
    }
  } catch (const Error& e) {
    // Saving failed on the server's side (500); restoring names a file that is missing, or is
    // not a slot's for this model and settings: the request's (400).
    if (a.kind == SlotAction::Kind::Save) return slot_error(500, e.what());
    return slot_error(400, e.what(), "filename");
  } catch (const std::exception& e) {
    return slot_error(500, e.what());
  }
  r.ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  return r;
}

void BatchScheduler::run() {
  std::deque<Pending> incoming;
  for (;;) {
    std::deque<PendingAction> actions;
    {
      std::unique_lock lock(mu_);
      if (busy_.load() == 0)
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !actions_.empty(); });
      actions.swap(actions_);
      if (stopping_) {
        incoming.insert(incoming.end(), std::make_move_iterator(queue_.begin()),
                        std::make_move_iterator(queue_.end()));
        queue_.clear();
        for (PendingAction& pa : actions) pa.done.set_value(slot_error(503, "the server is shutting down"));
        break;
      }
      // Take as many as there are free slots; the rest stay queued (and counted there).
      const int free_slots = opts_.n_parallel - busy_.load();
      while (!queue_.empty() && static_cast<int>(incoming.size()) < free_slots) {
        incoming.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!actions.empty()) {
      for (PendingAction& pa : actions) pa.done.set_value(do_slot_action(pa.action));
      publish_slots();
    }
    admit(incoming);
    step();
    publish_slots();
  }
  // Shutting down: end what is running and what waits, cleanly.
  for (auto& s : slots_)
    if (s->state != Slot::State::Free) finish(*s, "stop");
  for (auto& p : incoming) p.handle->finish("stop", {}, static_cast<int>(p.req.prompt.size()), 0, 0);
}

void BatchScheduler::admit(std::deque<Pending>& incoming) {
  while (!incoming.empty()) {
    Pending p = std::move(incoming.front());
    incoming.pop_front();
    if (p.handle->cancelled()) {
      p.handle->finish("cancelled", {}, static_cast<int>(p.req.prompt.size()), 0, 0);
      continue;
    }
    if (p.req.prompt.empty() || static_cast<int64_t>(p.req.prompt.size()) >= opts_.n_ctx) {
      p.handle->finish("error", fmt::format("the prompt has {} tokens; the context holds {}", p.req.prompt.size(),
                                            opts_.n_ctx),
                       static_cast<int>(p.req.prompt.size()), 0, 0);
      continue;
    }
    // The free slot that already holds the longest prefix of this prompt; among equals, the
    // one used longest ago (its cached conversation is the least likely to come back).
    std::vector<float> scales;
    if (opts_.lora) {
      scales = opts_.lora->scales;
      for (const auto& [id, sc] : p.req.lora)
        if (id >= 0 && static_cast<size_t>(id) < scales.size()) scales[id] = sc;
    }
    Slot* best = nullptr;
    size_t best_common = 0;
    for (auto& s : slots_) {
      if (s->state != Slot::State::Free) continue;
      const size_t n = s->cached_lora_scales == scales ? std::min(s->tokens.size(), p.req.prompt.size()) : 0;
      const size_t common =
          static_cast<size_t>(std::mismatch(s->tokens.begin(), s->tokens.begin() + n, p.req.prompt.begin()).first -
                              s->tokens.begin());
      if (!best || common > best_common || (common == best_common && s->last_used < best->last_used)) {
        best = s.get();
        best_common = common;
      }
    }
    if (!best) fail("scheduler: no free slot for an admitted request");  // admission counted them
    Slot& s = *best;
    // At least the last prompt token is evaluated again, for the logits to sample from.
    const int32_t keep = static_cast<int32_t>(std::min(best_common, p.req.prompt.size() - 1));
    const int32_t kept = cache_->truncate(s.seq, keep);
    s.tokens.resize(kept);
    s.lora_scales = scales;
    s.cached_lora_scales = std::move(scales);
    s.req = std::move(p.req);
    s.handle = std::move(p.handle);
    s.submitted = p.submitted;
    s.next_prompt = kept;
    s.n_keep = resolve_n_keep(s.req.prompt, tok_, s.req.n_keep);
    s.cached = kept;
    s.generated = 0;
    s.pending_token = -1;
    s.last_used = s.admitted = ++admissions_;
    try {
      // A DRY window longer than the context is the whole history (and would allocate its ring
      // for nothing: a request may ask for 2^24 tokens).
      if (s.req.sampling.dry_penalty_last_n > n_ctx()) s.req.sampling.dry_penalty_last_n = -1;
      if (s.req.sampling.dry_multiplier > 0.0f && !s.req.sampling.dry_breakers_resolved) {
        // A pass over the vocabulary: kept for the next request with the same breakers.
        if (dry_breakers_for_ != s.req.sampling.dry_sequence_breakers || !dry_resolved_) {
          SamplerParams probe = s.req.sampling;
          resolve_dry_breakers(probe, tok_);
          dry_breaker_ids_ = std::move(probe.dry_breaker_ids);
          dry_breaker_seqs_ = std::move(probe.dry_breaker_seqs);
          dry_breakers_for_ = s.req.sampling.dry_sequence_breakers;
          dry_resolved_ = true;
        }
        s.req.sampling.dry_breaker_ids = dry_breaker_ids_;
        s.req.sampling.dry_breaker_seqs = dry_breaker_seqs_;
        s.req.sampling.dry_breakers_resolved = true;
      }
      s.sampler.emplace(s.req.sampling, static_cast<int32_t>(model_.hparams().n_vocab));
      for (int32_t t : s.req.prompt) s.sampler->accept(t);
      if (s.req.grammar) {
        if (!grammar_vocab_) grammar_vocab_ = make_grammar_vocab(tok_);
        s.sampler->set_grammar({s.req.grammar, grammar_vocab_});
      }
    } catch (const Error& e) {
      s.handle->finish("error", e.what(), static_cast<int>(s.req.prompt.size()), 0, 0);
      s.handle.reset();
      continue;
    }
    s.decoder.emplace(tok_);
    s.stop.emplace(s.req.stop);
    s.indent.emplace(s.req.n_indent);
    s.state = Slot::State::Prefill;
    busy_.fetch_add(1);
    n_prompt_.fetch_add(s.req.prompt.size());
    n_cached_.fetch_add(kept);
  }
}

void BatchScheduler::finish(Slot& s, const std::string& reason, const std::string& error) {
  if (reason != "cancelled" && reason != "error") {
    std::string rest = s.decoder ? s.stop->push(s.decoder->flush()) : std::string();
    if (!s.stop->matched()) rest += s.stop->flush();
    if (s.indent) rest = s.indent->push(rest);
    if (!rest.empty()) s.handle->push(rest, {}, s.generated);
  }
  using ms = std::chrono::duration<double, std::milli>;
  const auto now = std::chrono::steady_clock::now();
  const auto first = s.generated > 0 ? s.first_token_at : now;
  s.handle->finish(reason, error, static_cast<int>(s.req.prompt.size()), s.cached, s.generated,
                   s.stop && s.stop->matched() ? s.stop->matched_word() : std::string(),
                   ms(first - s.submitted).count(), ms(now - first).count());
  s.handle.reset();
  s.sampler.reset();
  if (static_cast<int64_t>(s.tokens.size()) > s.exact) s.tokens.resize(cache_->truncate(s.seq, s.exact));
  s.exact = std::numeric_limits<int32_t>::max();
  s.state = Slot::State::Free;
  busy_.fetch_sub(1);
}

bool BatchScheduler::emit(Slot& s, int32_t token, const float* logits) {
  const auto now = std::chrono::steady_clock::now();
  if (observer_) {
    if (s.generated == 0) observer_->on_first_token(std::chrono::duration<double>(now - s.submitted).count());
    else observer_->on_inter_token(std::chrono::duration<double>(now - s.last_token_at).count());
  }
  s.last_token_at = now;
  if (s.generated == 0) s.first_token_at = now;
  if (tok_.is_eog(token) && !s.req.ignore_eos) {
    finish(s, "stop");
    return false;
  }
  std::vector<TokenLogprob> lp;
  if (s.req.top_logprobs >= 0) {
    // Log-probabilities of the model's distribution (the raw logits, before sampling's
    // penalties and truncation), as the OpenAI API reports them.
    const int64_t n = model_.hparams().n_vocab;
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, logits[i]);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    TokenLogprob t;
    t.id = token;
    t.piece = tok_.token_to_piece(token);
    t.logprob = logits[token] - lse;
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min<size_t>(static_cast<size_t>(s.req.top_logprobs), order.size());
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (size_t i = 0; i < k; ++i) t.top.emplace_back(tok_.token_to_piece(order[i]), logits[order[i]] - lse);
    lp.push_back(std::move(t));
  }
  try {
    s.sampler->accept_sampled(token);
  } catch (const Error& e) {
    finish(s, "error", e.what());
    return false;
  }
  ++s.generated;
  n_generated_.fetch_add(1);
  const std::string text = s.indent->push(s.stop->push(s.decoder->push(token)));
  if (!text.empty() || !lp.empty()) s.handle->push(text, std::move(lp), s.generated);
  if (s.stop->matched()) {
    finish(s, "stop");
    return false;
  }
  if (s.indent->reached()) {
    finish(s, "length");
    return false;
  }
  if (s.req.t_max_predict_ms > 0 && text.find('\n') != std::string::npos &&
      std::chrono::duration<double, std::milli>(now - s.first_token_at).count() > s.req.t_max_predict_ms) {
    finish(s, "length");
    return false;
  }
  if (s.req.max_tokens >= 0 && s.generated >= s.req.max_tokens) {
    finish(s, "length");
    return false;
  }
  // The new token is evaluated at position tokens.size(); it must exist in the context.
  if (static_cast<int64_t>(s.tokens.size()) >= opts_.n_ctx) {
    const ContextShiftPlan plan = opts_.context_shift && !speculative() ? plan_context_shift(s.tokens, s.n_keep, token)
                                                                        : ContextShiftPlan{};
    if (plan.tokens.empty()) {
      finish(s, "length");
      return false;
    }
    n_shifts_.fetch_add(1);
    // As generate(): the cache's rows move and the token is evaluated in the next step; where
    // they cannot (a wrapped sliding-window ring whose window would need kept positions it lost),
    // what stays past what the cache kept is evaluated again in the next steps, like a prompt chunk.
    if (!cache_->shift(s.seq, plan.n_keep, plan.n_discard, rotate_keys_)) {
      const int32_t kept = cache_->truncate(s.seq, plan.n_keep);
      s.tokens.resize(kept);
      s.reeval.assign(plan.tokens.begin() + kept, plan.tokens.end());
      s.next_reeval = 0;
      s.state = Slot::State::Shift;
      return true;
    }
    s.tokens.erase(s.tokens.begin() + plan.n_keep, s.tokens.begin() + plan.n_keep + plan.n_discard);
    s.exact = std::min(s.exact, plan.n_keep);
  }
  s.pending_token = token;
  s.state = Slot::State::Generate;
  return true;
}

bool BatchScheduler::step() {
  for (auto& s : slots_)
    if (s->state != Slot::State::Free && s->handle->cancelled()) finish(*s, "cancelled");

  if (dcache_) propose();
  else if (opts_.lookup) propose_lookup();
  batch_.clear();
  std::vector<Slot*>& owners = owners_;
  owners.clear();
  for (auto& s : slots_) {
    if (s->state != Slot::State::Generate) continue;
    // The sampled token, then the draft's proposals after it: logits at each, so that the
    // sampler can check every proposal in order.
    s->step_base = s->tokens.size();
    batch_.add(s->pending_token, static_cast<int32_t>(s->tokens.size()), s->seq, true);
    owners.push_back(s.get());
    for (size_t j = 0; j < s->proposal.size(); ++j) {
      batch_.add(s->proposal[j], static_cast<int32_t>(s->tokens.size() + 1 + j), s->seq, true);
      owners.push_back(s.get());
    }
  }
  // Prompt chunks fill the rest of the batch, oldest request first.
  std::vector<Slot*>& prefill = prefill_;
  prefill.clear();
  for (auto& s : slots_)
    if (s->state == Slot::State::Prefill || s->state == Slot::State::Shift) prefill.push_back(s.get());
  std::sort(prefill.begin(), prefill.end(), [](Slot* a, Slot* b) { return a->admitted < b->admitted; });
  for (Slot* s : prefill) {
    const size_t room = static_cast<size_t>(opts_.n_batch) - static_cast<size_t>(batch_.size());
    if (room == 0) break;
    // A prompt, or what stays after a context shift: each at the positions after the cache's.
    const bool shift = s->state == Slot::State::Shift;
    const std::vector<int32_t>& src = shift ? s->reeval : s->req.prompt;
    const size_t from = shift ? s->next_reeval : s->next_prompt;
    const size_t n = std::min(room, src.size() - from);
    for (size_t i = 0; i < n; ++i)
      batch_.add(src[from + i], static_cast<int32_t>(s->tokens.size() + i), s->seq, from + i + 1 == src.size());
    owners.insert(owners.end(), n, s);
  }
  if (batch_.size() == 0) return false;
  if (ctx_->lora) {
    const size_t n_ad = lora_.adapters.size();
    lora_token_scales_.resize(static_cast<size_t>(batch_.size()) * n_ad);
    for (size_t i = 0; i < owners.size(); ++i)
      std::copy(owners[i]->lora_scales.begin(), owners[i]->lora_scales.end(), lora_token_scales_.begin() + i * n_ad);
    lora_.token_scales = lora_token_scales_.data();
  }

  try {
    model_.forward(*ctx_, batch_, *cache_, logits_.data());
  } catch (const std::exception& e) {
    // The cache rows of this batch are undefined now: drop every request in it.
    for (Slot* s : owners) {
      if (s->state == Slot::State::Free) continue;
      s->tokens.clear();
      cache_->truncate(s->seq, 0);
      finish(*s, "error", e.what());
    }
    return true;
  }
  n_steps_.fetch_add(1);
  // Record what the cache now holds (of a generating slot, the sampled token: its proposals
  // count once accepted), then sample for every entry that asked for logits.
  for (int64_t i = 0; i < batch_.size(); ++i) {
    Slot* s = owners[i];
    if (s->state == Slot::State::Generate && static_cast<size_t>(batch_.pos[i]) != s->step_base) continue;
    s->tokens.push_back(batch_.tokens[i]);
    if (s->state == Slot::State::Prefill) ++s->next_prompt;
    if (s->state == Slot::State::Shift) ++s->next_reeval;
  }
  const int64_t n_vocab = model_.hparams().n_vocab;
  int64_t row = 0;
  for (int64_t i = 0; i < batch_.size(); ++i) {
    if (!batch_.logits[i]) continue;
    Slot* s = owners[i];
    const float* logits = logits_.data() + row++ * n_vocab;
    if (s->state == Slot::State::Free) continue;  // finished at an earlier row of this step
    // A proposal after one the sampler did not pick (or after the end) is not looked at.
    const size_t j = s->state == Slot::State::Generate ? static_cast<size_t>(batch_.pos[i]) - s->step_base : 0;
    if (s->state == Slot::State::Generate && s->tokens.size() != s->step_base + 1 + j) continue;
    if (s->handle->cancelled()) {
      finish(*s, "cancelled");
      continue;
    }
    int32_t token;
    try {
      token = s->sampler->sample(logits);
    } catch (const Error& e) {
      finish(*s, "error", e.what());
      continue;
    }
    if (!emit(*s, token, logits)) continue;
    // The model picked the draft's proposal: it is in the cache already, and the next row
    // holds the logits after it.
    if (j < s->proposal.size() && token == s->proposal[j]) {
      s->tokens.push_back(token);
      n_accepted_.fetch_add(1);
    }
  }
  // Proposals that were not accepted (and those after a request ended) leave the cache.
  if (speculative())
    for (auto& s : slots_) {
      if (s->proposal.empty()) continue;
      s->proposal.clear();
      const auto want = static_cast<int32_t>(s->tokens.size());
      if (cache_->seq_length(s->seq) > want && cache_->truncate(s->seq, want) != want) {
        // Not reached (see the constructor); if it were, the slot's tokens would not match
        // its cache any more.
        s->tokens.clear();
        cache_->truncate(s->seq, 0);
        if (s->state != Slot::State::Free) finish(*s, "error", "the KV cache could not take back rejected proposals");
      }
    }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Speculative decoding: the draft's side

bool BatchScheduler::draft_forward() {
  try {
    opts_.draft->forward(*dctx_, dbatch_, *dcache_, dlogits_.data());
    return true;
  } catch (const std::exception& e) {
    // The draft's rows of this batch are undefined: forget what it held; the model goes on
    // without proposals (they are only a guess).
    fmt::print(stderr, "slm: warning: the draft model failed ({}); this step goes without proposals\n", e.what());
    for (auto& s : slots_) {
      s->draft_tokens.clear();
      dcache_->truncate(s->seq, 0);
      s->proposal.clear();
      s->proposing = false;
    }
    return false;
  }
}

int BatchScheduler::proposal_room(const Slot& s) const {
  // The proposals sit at positions after the sampled token, inside the context, and at most
  // max_tokens - 1 more tokens follow it (the step's own pick comes after the accepted ones).
  int room = std::min<int>(opts_.n_draft, opts_.n_ctx - static_cast<int>(s.tokens.size()) - 1);
  if (s.req.max_tokens >= 0) room = std::min(room, s.req.max_tokens - s.generated - 1);
  return room;
}

void BatchScheduler::propose_lookup() {
  for (auto& sp : slots_) {
    Slot& s = *sp;
    s.proposal.clear();
    if (s.state != Slot::State::Generate) continue;
    const int room = proposal_room(s);
    if (room <= 0) continue;
    s.dtodo.assign(s.tokens.begin(), s.tokens.end());  // the text so far, the sampled token last
    s.dtodo.push_back(s.pending_token);
    s.proposal = lookup_proposal(s.dtodo, opts_.lookup_ngram_min, opts_.lookup_ngram_max, room);
    n_drafted_.fetch_add(s.proposal.size());
  }
}

void BatchScheduler::propose() {
  const int64_t n_vocab = model_.hparams().n_vocab;
  std::vector<Slot*> gen;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    s.proposal.clear();
    s.proposing = false;
    if (s.state != Slot::State::Generate) continue;
    s.draft_room = proposal_room(s);
    if (s.draft_room <= 0) continue;
    // The draft catches up with what the model holds, plus the sampled token.
    const size_t n = std::min(s.draft_tokens.size(), s.tokens.size());
    const size_t common = static_cast<size_t>(
        std::mismatch(s.draft_tokens.begin(), s.draft_tokens.begin() + n, s.tokens.begin()).first - s.draft_tokens.begin());
    s.draft_tokens.resize(static_cast<size_t>(dcache_->truncate(s.seq, static_cast<int32_t>(common))));
    s.dtodo.assign(s.tokens.begin() + static_cast<std::ptrdiff_t>(s.draft_tokens.size()), s.tokens.end());
    s.dtodo.push_back(s.pending_token);
    s.dnext = 0;
    s.proposing = true;
    gen.push_back(&s);
  }
  if (gen.empty()) return;
  // The draft's greedy pick after each slot's last evaluated token, while it is sure enough.
  auto pick_from_rows = [&] {
    int64_t row = 0;
    for (int64_t i = 0; i < dbatch_.size(); ++i) {
      if (!dbatch_.logits[i]) continue;
      Slot& s = *downers_[i];
      const auto [t, p] = draft_pick(dlogits_.data() + row++ * n_vocab, n_vocab);
      if (p < opts_.draft_p_min || tok_.is_eog(t)) {
        s.proposing = false;
        continue;
      }
      s.proposal.push_back(t);
      if (static_cast<int>(s.proposal.size()) >= s.draft_room) s.proposing = false;
    }
  };
  auto add = [&](Slot& s, int32_t t, bool logits) {
    dbatch_.add(t, static_cast<int32_t>(s.draft_tokens.size()), s.seq, logits);
    downers_.push_back(&s);
    s.draft_tokens.push_back(t);
  };
  // Catching up: one pass of at most n_batch tokens per step, logits at each slot's last
  // token. A new request's long prompt takes several steps (its slot decodes without proposals
  // meanwhile), so that the draft never holds up the other streams for more than one pass.
  dbatch_.clear();
  downers_.clear();
  for (Slot* s : gen) {
    while (s->dnext < s->dtodo.size() && dbatch_.size() < opts_.n_batch) {
      add(*s, s->dtodo[s->dnext], s->dnext + 1 == s->dtodo.size());
      ++s->dnext;
    }
    if (s->dnext < s->dtodo.size()) s->proposing = false;  // the rest next step
  }
  if (dbatch_.size() > 0) {
    if (!draft_forward()) return;
    pick_from_rows();
  }
  // Then one token per proposing slot and pass, each pass proposing the next.
  for (;;) {
    dbatch_.clear();
    downers_.clear();
    for (Slot* s : gen)
      if (s->proposing) add(*s, s->proposal.back(), true);
    if (dbatch_.size() == 0) break;
    if (!draft_forward()) return;
    pick_from_rows();
  }
  for (Slot* s : gen) n_drafted_.fetch_add(s->proposal.size());
}

}  // namespace slm
