#include "runtime/generate.h"

#include <algorithm>
#include <string_view>

#include "core/error.h"

namespace slm {

void check_prompt(std::span<const int32_t> prompt, int64_t n_ctx) {
  if (prompt.empty()) fail("the prompt is empty: nothing to continue from");
  if (static_cast<int64_t>(prompt.size()) >= n_ctx)
    fail("the prompt has {} tokens but the context holds {}: shorten the prompt or raise the "
         "context size (-c)", prompt.size(), n_ctx);
}

void finish_text(StreamDecoder& decoder, GenerateResult& r, const std::function<bool(const std::string&)>& on_text) {
  const std::string rest = decoder.flush();
  if (!rest.empty()) {
    r.text += rest;
    on_text(rest);
  }
}

int resolve_n_keep(std::span<const int32_t> prompt, const Tokenizer& tok, int n_keep) {
  const int n_prompt = static_cast<int>(prompt.size());
  if (n_keep < 0 || n_keep > n_prompt) return n_prompt;
  const bool bos = !prompt.empty() && tok.add_bos() && prompt[0] == tok.bos();
  return std::min(n_prompt, n_keep + (bos ? 1 : 0));
}

int32_t context_shift_discard(int32_t n_past, int32_t n_keep) {
  n_keep = std::clamp<int32_t>(n_keep, 0, n_past);
  return (n_past - n_keep) / 2;
}

ContextShiftPlan plan_context_shift(std::span<const int32_t> tokens, int32_t n_keep, int32_t next) {
  const auto n_past = static_cast<int32_t>(tokens.size());
  ContextShiftPlan plan;
  plan.n_keep = std::clamp<int32_t>(n_keep, 0, n_past);
  const int32_t n_discard = context_shift_discard(n_past, plan.n_keep);
  if (n_discard == 0) return plan;
  plan.n_discard = n_discard;
  plan.tokens.assign(tokens.begin(), tokens.begin() + plan.n_keep);
  plan.tokens.insert(plan.tokens.end(), tokens.begin() + plan.n_keep + n_discard, tokens.end());
  plan.tokens.push_back(next);
  return plan;
}

GenerateResult generate(Session& session, const Tokenizer& tok, Sampler& sampler,
                        std::span<const int32_t> prompt, int n_predict,
                        const std::function<bool(const std::string&)>& on_text, ContextShift shift) {
  check_prompt(prompt, session.n_ctx());
  // Reuse the part of the prompt the cache already holds; always evaluate at least the last
  // prompt token so there are logits to sample from.
  const auto& have = session.tokens();
  size_t common = 0;
  while (common < have.size() && common < prompt.size() && have[common] == prompt[common]) ++common;
  common = std::min({common, prompt.size() - 1, static_cast<size_t>(session.n_exact())});
  session.truncate(static_cast<int32_t>(common));
  sampler.reset();
  for (int32_t t : prompt) sampler.accept(t);

  GenerateResult r;
  StreamDecoder decoder(tok);
  const std::vector<float>* logits = &session.eval(prompt.subspan(common));
  for (int i = 0; n_predict < 0 || i < n_predict; ++i) {
    const int32_t next = sampler.sample(logits->data());
    if (tok.is_eog(next)) {
      r.stopped_at_eog = true;
      break;
    }
    sampler.accept_sampled(next);
    r.tokens.push_back(next);
    const std::string piece = decoder.push(next);
    r.text += piece;
    if (!piece.empty() && !on_text(piece)) break;
    if (session.n_past() >= session.n_ctx()) {
      const ContextShiftPlan plan = shift.enabled ? plan_context_shift(session.tokens(), shift.n_keep, next)
                                                  : ContextShiftPlan{};
      if (plan.tokens.empty()) {
        r.context_full = true;
        break;
      }
      if (n_predict >= 0 && i + 1 == n_predict) break;
      ++r.context_shifts;
      if (shift.reevaluate || !session.shift(plan.n_keep, plan.n_discard)) {
        session.truncate(plan.n_keep);  // a sliding-window ring may keep less: evaluated from there
        logits = &session.eval(std::span<const int32_t>(plan.tokens).subspan(static_cast<size_t>(session.n_past())));
        continue;
      }
      // The rows moved: the new token is evaluated below, as any other.
    }
    if (n_predict >= 0 && i + 1 == n_predict) break;  // the last token needs no evaluation
    logits = &session.eval(std::span<const int32_t>(&r.tokens.back(), 1));
  }
  finish_text(decoder, r, on_text);
  return r;
}

void resolve_dry_breakers(SamplerParams& p, const Tokenizer& tok) {
  p.dry_breaker_ids.clear();
  p.dry_breaker_seqs.clear();
  p.dry_breakers_resolved = true;
  if (!(p.dry_multiplier > 0.0f) || p.dry_penalty_last_n == 0) return;
  // llama.cpp's bounds: breakers of at most 40 bytes, the rest after a head at most 20 tokens.
  constexpr size_t kMaxBreakerBytes = 40, kMaxTail = 20;
  std::vector<std::string> breakers;
  for (const std::string& b : p.dry_sequence_breakers)
    if (!b.empty()) breakers.push_back(b.substr(0, kMaxBreakerBytes));
  if (breakers.empty()) return;
  // The rest of breaker b after its first i bytes, tokenized (at most one per i and breaker).
  std::vector<std::vector<std::vector<int32_t>>> rests(breakers.size());
  for (size_t b = 0; b < breakers.size(); ++b) rests[b].resize(breakers[b].size());
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const std::string piece = tok.token_to_piece(id, /*render_special=*/true);
    bool alone = false;
    const size_t seqs_before = p.dry_breaker_seqs.size();
    for (size_t b = 0; b < breakers.size(); ++b) {
      const std::string& br = breakers[b];
      if (piece.find(br) != std::string::npos) {
        alone = true;
        continue;
      }
      // Where the piece ends with the breaker's first i bytes (i < its length), the breaker
      // goes on over the tokens of its rest: the head, then those.
      for (size_t at = piece.find(br[0]); at != std::string::npos; at = piece.find(br[0], at + 1)) {
        const size_t i = piece.size() - at;
        if (i >= br.size() || piece.compare(at, i, br, 0, i) != 0) continue;
        std::vector<int32_t>& rest = rests[b][i];
        if (rest.empty()) {
          rest = tok.encode(std::string_view(br).substr(i), false, false);
          if (rest.size() > kMaxTail) rest.resize(kMaxTail);
        }
        if (rest.empty()) continue;
        std::vector<int32_t> seq{id};
        seq.insert(seq.end(), rest.begin(), rest.end());
        if (std::find(p.dry_breaker_seqs.begin() + static_cast<std::ptrdiff_t>(seqs_before), p.dry_breaker_seqs.end(),
                      seq) == p.dry_breaker_seqs.end())
          p.dry_breaker_seqs.push_back(std::move(seq));
      }
    }
    if (alone) p.dry_breaker_ids.push_back(id);
  }
}

}  // namespace slm
