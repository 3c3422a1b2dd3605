#include "runtime/speculative.h"

#include <algorithm>
#include <functional>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace slm {

void check_draft_vocab(const Tokenizer& target, const Tokenizer& draft) {
  if (target.n_vocab() != draft.n_vocab())
    fail("the draft model's vocabulary has {} tokens but the target's has {}: the draft must share the target's "
         "tokenizer (e.g. Llama 3.2 1B for Llama 3.x, Qwen2.5 0.5B for Qwen2.5)", draft.n_vocab(), target.n_vocab());
  for (int32_t id = 0; id < target.n_vocab(); ++id)
    if (target.token_text(id) != draft.token_text(id))
      fail("the draft model's token {} is {:?} but the target's is {:?}: the draft must share the target's tokenizer",
           id, draft.token_text(id), target.token_text(id));
}

namespace {

// Makes `s` hold exactly `seq` (keeping the common prefix) and returns the tokens of `seq` it
// still has to evaluate. A cache that cannot go back that far (a sliding window that moved
// on) keeps less, and the rest is evaluated again.
std::vector<int32_t> sync_to(Session& s, const std::vector<int32_t>& seq) {
  const auto& have = s.tokens();
  size_t common = 0;
  while (common < have.size() && common < seq.size() && have[common] == seq[common]) ++common;
  s.truncate(static_cast<int32_t>(common));
  return std::vector<int32_t>(seq.begin() + s.n_past(), seq.end());
}

}  // namespace

std::pair<int32_t, float> draft_pick(const float* logits, int64_t n_vocab) {
  int32_t best = 0;
  for (int64_t i = 1; i < n_vocab; ++i)
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - logits[best]));
  return {best, static_cast<float>(1.0 / sum)};
}

std::vector<int32_t> lookup_proposal(std::span<const int32_t> text, int ngram_min, int ngram_max, int n_max) {
  const auto len = static_cast<int64_t>(text.size());
  for (int n = ngram_max; n >= ngram_min; --n) {
    if (n <= 0 || len <= n) continue;
    const int32_t* key = text.data() + len - n;
    // The latest earlier occurrence: what followed it is the likeliest continuation.
    for (int64_t i = len - n - 1; i >= 0; --i) {
      if (!std::equal(key, key + n, text.data() + i)) continue;
      const int64_t from = i + n, to = std::min<int64_t>(from + n_max, len);
      return std::vector<int32_t>(text.begin() + from, text.begin() + to);
    }
  }
  return {};
}

namespace {

// The rounds of speculative decoding, whatever proposes: propose(seq, next, n_max) returns up
// to n_max tokens to follow seq + next (seq: the prompt and the tokens taken so far, all but
// the newest pick `next`).
using ProposeFn = std::function<std::vector<int32_t>(const std::vector<int32_t>& seq, int32_t next, int n_max)>;

GenerateResult speculate(Session& target, const Tokenizer& tok, Sampler& sampler, std::span<const int32_t> prompt,
                         int n_predict, int n_draft_max, const ProposeFn& propose,
                         const std::function<bool(const std::string&)>& on_text, SpeculativeStats& st) {
  check_prompt(prompt, target.n_ctx());
  if (n_draft_max < 1) fail("--draft-max {} must be at least 1", n_draft_max);
  const int64_t n_vocab = target.model().hparams().n_vocab;

  sampler.reset();
  for (int32_t t : prompt) sampler.accept(t);
  // seq: the prompt and the tokens generated and accepted so far (the target, and a draft,
  // catch up to it each round); the newest pick, not yet evaluated by anyone, is `next`.
  std::vector<int32_t> seq(prompt.begin(), prompt.end() - 1);
  std::vector<int32_t> todo = sync_to(target, seq);
  todo.push_back(prompt.back());
  const std::vector<float>& first = target.eval(todo);
  int32_t next = sampler.sample(first.data());
  seq.push_back(prompt.back());

  GenerateResult r;
  StreamDecoder decoder(tok);
  bool stop = false;
  // Takes the token the target picked: stops at end of generation, the limit or the context.
  auto take = [&](int32_t id) {
    if (tok.is_eog(id)) {
      r.stopped_at_eog = true;
      stop = true;
      return;
    }
    sampler.accept_sampled(id);
    r.tokens.push_back(id);
    const std::string piece = decoder.push(id);
    r.text += piece;
    if (!piece.empty() && !on_text(piece)) stop = true;
    if (n_predict >= 0 && static_cast<int64_t>(r.tokens.size()) >= n_predict) stop = true;
    // As generate(): the context is full once everything before this token fills it.
    if (static_cast<int64_t>(seq.size()) >= target.n_ctx()) {
      r.context_full = !stop;
      stop = true;
    }
  };
  take(next);
  while (!stop) {
    // Room in the context for next and the proposal, and within -n.
    int n_room = static_cast<int>(target.n_ctx() - static_cast<int64_t>(seq.size()) - 1);
    if (n_predict >= 0) n_room = std::min<int>(n_room, n_predict - static_cast<int>(r.tokens.size()) - 1);
    const int n_draft = std::clamp(n_draft_max, 0, std::max(n_room, 0));
    const std::vector<int32_t> proposal = n_draft > 0 ? propose(seq, next, n_draft) : std::vector<int32_t>{};
    // The target evaluates next and the proposal in one pass, logits for each.
    std::vector<int32_t> ttodo = sync_to(target, seq);
    const size_t row0 = ttodo.size();
    ttodo.push_back(next);
    ttodo.insert(ttodo.end(), proposal.begin(), proposal.end());
    const std::vector<float>& logits = target.eval(ttodo, /*all_logits=*/true);
    seq.push_back(next);
    ++st.rounds;
    st.drafted += static_cast<int64_t>(proposal.size());
    for (size_t j = 0; j <= proposal.size() && !stop; ++j) {
      next = sampler.sample(logits.data() + (row0 + j) * static_cast<size_t>(n_vocab));
      if (j < proposal.size() && next == proposal[j]) {
        ++st.accepted;
        take(next);
        seq.push_back(next);
        continue;
      }
      take(next);  // the target's own pick where the proposal went wrong, or after the last one
      break;
    }
  }
  // Leave the target holding what was generated (as generate() does).
  sync_to(target, seq);
  finish_text(decoder, r, on_text);
  return r;
}

}  // namespace

GenerateResult generate_speculative(Session& target, Session& draft, const Tokenizer& tok, Sampler& sampler,
                                    std::span<const int32_t> prompt, int n_predict, const SpeculativeParams& params,
                                    const std::function<bool(const std::string&)>& on_text, SpeculativeStats* stats) {
  if (!(params.p_min >= 0.0f && params.p_min <= 1.0f)) fail("--draft-p-min {} must be in [0, 1]", params.p_min);
  const int64_t n_vocab = target.model().hparams().n_vocab;
  if (draft.model().hparams().n_vocab != n_vocab)
    fail("the draft model has {} logits per token but the target {}", draft.model().hparams().n_vocab, n_vocab);
  SpeculativeStats local;
  // The draft catches up with seq + next and proposes one token at a time, while it is sure.
  auto propose = [&](const std::vector<int32_t>& seq, int32_t next, int n_max) {
    std::vector<int32_t> proposal;
    const int n = std::min<int>(n_max, static_cast<int>(draft.n_ctx() - static_cast<int64_t>(seq.size()) - 1));
    if (n <= 0) return proposal;
    std::vector<int32_t> dtodo = sync_to(draft, seq);
    dtodo.push_back(next);
    const float* dl = draft.eval(dtodo).data();
    while (static_cast<int>(proposal.size()) < n) {
      const auto [t, p] = draft_pick(dl, n_vocab);
      if (p < params.p_min || tok.is_eog(t)) break;
      proposal.push_back(t);
      if (static_cast<int>(proposal.size()) < n) dl = draft.eval(std::span<const int32_t>(&t, 1)).data();
    }
    return proposal;
  };
  return speculate(target, tok, sampler, prompt, n_predict, params.n_draft, propose, on_text, stats ? *stats : local);
}

GenerateResult generate_lookup(Session& target, const Tokenizer& tok, Sampler& sampler, std::span<const int32_t> prompt,
                               int n_predict, const LookupParams& params,
                               const std::function<bool(const std::string&)>& on_text, SpeculativeStats* stats) {
  if (params.ngram_min < 1 || params.ngram_max < params.ngram_min)
    fail("--lookup-ngram {}: the n-gram size must be at least {}", params.ngram_max, params.ngram_min);
  SpeculativeStats local;
  std::vector<int32_t> text;
  auto propose = [&](const std::vector<int32_t>& seq, int32_t next, int n_max) {
    text.assign(seq.begin(), seq.end());
    text.push_back(next);
    return lookup_proposal(text, params.ngram_min, params.ngram_max, n_max);
  };
  return speculate(target, tok, sampler, prompt, n_predict, params.n_draft, propose, on_text, stats ? *stats : local);
}

}  // namespace slm
