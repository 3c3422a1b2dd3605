// Text generation on a Session: evaluate a prompt (reusing the cached prefix), then sample
// until an end-of-generation token, the token limit, or the end of the context.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/session.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"

namespace slm {

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (the end-of-generation token excluded)
  std::string text;
  bool stopped_at_eog = false;
  bool context_full = false;
  int context_shifts = 0;  // times ContextShift made room
};

// llama.cpp's --context-shift: when the text fills the context, the first n_keep tokens stay,
// half of those after them are dropped, and generation goes on (llama-cli's n_keep and n_discard
// arithmetic). As llama.cpp does, the cached keys of the tokens after the dropped ones are
// rotated to their new positions and their values kept (KVCache::shift): what they computed
// while the dropped tokens were in view stays, and the shift costs ~1 ms per thousand tokens
// and layer. Where the cache cannot move them (a sliding-window ring that has wrapped and whose
// window after the shift would reach back into the kept tokens, which it no longer holds), or with
// `reevaluate`, what stays is evaluated again instead: a batch at prompt speed (seconds at a 2k
// context on two cores), with exactly the logits a fresh run on those tokens gives.
struct ContextShift {
  bool enabled = false;
  int n_keep = 0;  // tokens from the start of the sequence that always stay (BOS included)
  bool reevaluate = false;
};

// What every generation loop checks first: a prompt that is empty or does not leave room for
// one token (slm::Error saying what to do).
void check_prompt(std::span<const int32_t> prompt, int64_t n_ctx);
// What every generation loop does last: the decoder's held-back bytes to r.text and on_text.
void finish_text(StreamDecoder& decoder, GenerateResult& r, const std::function<bool(const std::string&)>& on_text);

// DRY's sequence breakers as tokens, as llama.cpp resolves them: the tokens whose text contains
// one of p.dry_sequence_breakers (SamplerParams::dry_breaker_ids), and for a token whose text
// ends with the start of one, that token followed by the tokens of the breaker's rest
// (dry_breaker_seqs: a breaker spelled over several tokens). Breakers are cut to 40 bytes and
// the rest to 20 tokens (llama.cpp's bounds). The default breakers (newline, colon, quote,
// asterisk) are single characters, which only the first kind can hold. Costs a pass over the
// vocabulary: only where DRY is on.
void resolve_dry_breakers(SamplerParams& p, const Tokenizer& tok);

// on_text receives complete UTF-8 pieces as they are produced; returning false stops.
GenerateResult generate(Session& session, const Tokenizer& tok, Sampler& sampler,
                        std::span<const int32_t> prompt, int n_predict,
                        const std::function<bool(const std::string&)>& on_text, ContextShift shift = {});

// llama-cli's --keep (llama-server's n_keep) as a count of the sequence's first tokens: n_keep
// prompt tokens after the BOS token, or (n_keep -1 or past the prompt) the whole prompt.
int resolve_n_keep(std::span<const int32_t> prompt, const Tokenizer& tok, int n_keep);

// How many tokens a context shift drops after the first n_keep of n_past (llama-cli's
// n_discard: half of those after the kept ones; 0 where none can go, which ends generation).
int32_t context_shift_discard(int32_t n_past, int32_t n_keep);

// What a context shift leaves of the held sequence `tokens`, then `next` (the token sampled with
// no room left to evaluate it): the first n_keep tokens (clamped to the sequence), those after
// the context_shift_discard() that follow them, and next. `tokens` empty where nothing can be
// dropped. Both generate() and the server's scheduler shift by it: move the cache's rows
// (KVCache::shift: n_discard positions from n_keep on) and evaluate `next`, or where that
// cannot be done, truncate the cache to n_keep and evaluate `tokens` from what it kept (a
// sliding-window ring may keep less).
struct ContextShiftPlan {
  int32_t n_keep = 0;
  int32_t n_discard = 0;
  std::vector<int32_t> tokens;
};
ContextShiftPlan plan_context_shift(std::span<const int32_t> tokens, int32_t n_keep, int32_t next);

}  // namespace slm
