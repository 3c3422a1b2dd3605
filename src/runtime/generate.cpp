#include "runtime/generate.h"

#include <algorithm>

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

GenerateResult generate(Session& session, const Tokenizer& tok, Sampler& sampler,
                        std::span<const int32_t> prompt, int n_predict,
                        const std::function<bool(const std::string&)>& on_text) {
  check_prompt(prompt, session.n_ctx());
  // Reuse the part of the prompt the cache already holds; always evaluate at least the last
  // prompt token so there are logits to sample from.
  const auto& have = session.tokens();
  size_t common = 0;
  while (common < have.size() && common < prompt.size() && have[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
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
      r.context_full = true;
      break;
    }
    if (n_predict >= 0 && i + 1 == n_predict) break;  // the last token needs no evaluation
    logits = &session.eval(std::span<const int32_t>(&r.tokens.back(), 1));
  }
  finish_text(decoder, r, on_text);
  return r;
}

void resolve_dry_breakers(SamplerParams& p, const Tokenizer& tok) {
  p.dry_breaker_ids.clear();
  p.dry_breakers_resolved = true;
  if (!(p.dry_multiplier > 0.0f) || p.dry_penalty_last_n == 0) return;
  bool any = false;
  for (const std::string& b : p.dry_sequence_breakers) any = any || !b.empty();
  if (!any) return;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const std::string piece = tok.token_to_piece(id);
    for (const std::string& b : p.dry_sequence_breakers)
      if (!b.empty() && piece.find(b) != std::string::npos) {
        p.dry_breaker_ids.push_back(id);
        break;
      }
  }
}

}  // namespace slm
