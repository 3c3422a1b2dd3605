// Speculative decoding: a small draft model (Llama 3.2 1B for a 3B or 8B, Qwen2.5 0.5B for a
// 7B) proposes the next few tokens one at a time, cheaply; the target model then evaluates all
// of them in one batched pass, which costs about as much as one token where decoding is
// bound by reading the weights. The target's sampler picks each position's token from the
// target's own logits, in order, and the proposal is kept up to the first position where the
// pick differs from the draft; that pick replaces it. Every token is therefore drawn from the
// target's distribution with the same sampler calls (and random draws) as plain decoding:
// the text is the one `generate` gives, greedy or sampled, grammar included (up to the
// rounding differences between a batched and a one-token pass).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/generate.h"
#include "runtime/session.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"

namespace slm {

struct SpeculativeParams {
  // Most tokens proposed per round. 7: the target's pass of next + 7 proposals is 8 tokens,
  // which costs 1.05-1.33x one token on the 1B file's panels (docs/performance.md).
  int n_draft = 7;
  float p_min = 0.75f;  // the draft stops proposing when its own top probability falls below this
};

struct SpeculativeStats {
  int64_t rounds = 0;    // target passes after the prompt
  int64_t drafted = 0;   // tokens the draft proposed
  int64_t accepted = 0;  // of which the target kept
};

// Checks that the draft's tokens mean what the target's do (same vocabulary size, same token
// texts), so that draft token ids can be fed to the target. Throws slm::Error naming the first
// difference.
void check_draft_vocab(const Tokenizer& target, const Tokenizer& draft);

// The draft's greedy pick from its logits, and the probability it gives it.
std::pair<int32_t, float> draft_pick(const float* logits, int64_t n_vocab);

// Prompt lookup decoding (no draft model): the proposal is what followed the latest earlier
// occurrence of the text's last n tokens in the prompt and the text generated so far, n from
// ngram_max down to ngram_min. It pays where the output repeats its input: answers quoting a
// document (RAG), code edits, summaries, extraction.
struct LookupParams {
  int n_draft = 7;    // most tokens proposed per round
  int ngram_min = 2;  // a single repeated token proposes too often for its hit rate
  int ngram_max = 3;
};

// The lookup's proposal for `text` (everything so far, its newest token last): at most n_max
// tokens, empty when no n-gram of its end occurred before.
std::vector<int32_t> lookup_proposal(std::span<const int32_t> text, int ngram_min, int ngram_max, int n_max);

// generate() with a draft model. Both sessions are used (and left holding the text); they must
// have the same context size or larger for the draft.
GenerateResult generate_speculative(Session& target, Session& draft, const Tokenizer& tok, Sampler& sampler,
                                    std::span<const int32_t> prompt, int n_predict, const SpeculativeParams& params,
                                    const std::function<bool(const std::string&)>& on_text,
                                    SpeculativeStats* stats = nullptr);
// generate() with prompt lookup decoding.
GenerateResult generate_lookup(Session& target, const Tokenizer& tok, Sampler& sampler, std::span<const int32_t> prompt,
                               int n_predict, const LookupParams& params,
                               const std::function<bool(const std::string&)>& on_text,
                               SpeculativeStats* stats = nullptr);

}  // namespace slm
