// Token sampler: llama.cpp's default chain,
//
//   penalties -> DRY -> top-n-sigma -> top-k -> typical -> top-p -> min-p -> XTC -> temperature -> draw
//
// which is the order of llama.cpp's common_params_sampling::samplers default, each stage off at
// its neutral value as there. With mirostat 1 or 2 the chain is llama.cpp's instead:
// penalties -> temperature -> mirostat (which truncates by surprise and adapts its target as it
// goes). Greedy (temperature <= 0) is the argmax of what the truncation stages leave; top-n-sigma,
// top-k, top-p and min-p never drop the argmax, so without typical and XTC (which may) it is the
// argmax of the penalised logits and they are skipped.
//
// A Sampler owns every buffer it needs (sized n_vocab at construction), so sample() and
// accept() do not allocate. The random draw uses std::mt19937 (fully specified by the
// standard) and converts its output to a uniform double ourselves, so a fixed seed gives the
// same tokens with any standard library. Not thread-safe: one Sampler per sequence.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <unordered_map>
#include <utility>
#include <string>
#include <vector>

#include "sampling/grammar.h"

namespace slm {

struct SamplerParams {
  float temperature = 0.8f;       // 0: greedy (argmax; ties -> lowest id). Must be >= 0.
  int32_t top_k = 40;             // <= 0: off
  float top_p = 0.95f;            // in (0, 1]; 1: off
  float min_p = 0.05f;            // in [0, 1]; 0: off
  float repeat_penalty = 1.0f;    // > 0; 1: off. logit > 0 ? logit / p : logit * p
  int32_t repeat_last_n = 64;     // window the penalties look at (0 = off, -1 = whole history)
  float presence_penalty = 0.0f;  // subtracted once from every token present in the window
  float frequency_penalty = 0.0f; // subtracted count times from every token in the window
  // DRY, "don't repeat yourself" (--dry-multiplier, --dry-base, --dry-allowed-length,
  // --dry-penalty-last-n, --dry-sequence-breaker): a token that would extend a sequence of the
  // recent history that already occurred (followed by that token) loses multiplier *
  // base^(length - allowed_length) from its logit, length being the longest such repeat of at
  // least allowed_length tokens. A repeat does not reach back past a sequence breaker: a token
  // whose text contains one of the breaker strings (dry_breaker_ids; never penalised itself),
  // or a breaker spelled over several tokens (dry_breaker_seqs: a token whose text ends with the
  // start of a breaker, then the tokens of the rest of it), which the caller fills from the
  // vocabulary with resolve_dry_breakers in runtime/generate.h, as llama.cpp does. multiplier
  // 0: off; base >= 1; penalty_last_n: the history looked at (-1: all of it, 0: off).
  float dry_multiplier = 0.0f;
  float dry_base = 1.75f;
  int32_t dry_allowed_length = 2;
  int32_t dry_penalty_last_n = -1;
  std::vector<std::string> dry_sequence_breakers = {"\n", ":", "\"", "*"};
  std::vector<int32_t> dry_breaker_ids;  // sorted; the tokens the breakers resolve to
  std::vector<std::vector<int32_t>> dry_breaker_seqs;  // head token, then the rest (at least one)
  bool dry_breakers_resolved = false;    // set by resolve_dry_breakers
  // Locally typical sampling (llama.cpp's --typical): keeps the tokens whose surprise is
  // closest to the distribution's entropy, up to this much probability. In (0, 1]; 1: off.
  float typical_p = 1.0f;
  // Top-n-sigma (--top-nsigma): keeps the tokens whose logit is within n standard deviations
  // (of all the logits) of the largest. <= 0: off.
  float top_n_sigma = -1.0f;
  // XTC, "exclude top choices" (--xtc-probability, --xtc-threshold): with this probability,
  // drops every token at or above the threshold probability but the least likely of them.
  // Probability in [0, 1] (0: off); threshold in [0, 1] (above 0.5: off, as in llama.cpp).
  float xtc_probability = 0.0f;
  float xtc_threshold = 0.1f;
  // Mirostat (--mirostat 1|2, --mirostat-ent TAU, --mirostat-lr ETA): 0 off, 1 the original
  // (top-k from an estimated Zipf exponent), 2 version 2 (truncation by surprise). tau: the
  // target surprise in bits (> 0), eta: the learning rate (> 0). Replaces top-n-sigma, top-k,
  // typical, top-p, min-p and XTC, as in llama.cpp.
  int32_t mirostat = 0;
  float mirostat_tau = 5.0f;
  float mirostat_eta = 0.1f;
  uint64_t seed = 0xFFFFFFFF;     // always used as the seed (unlike llama.cpp, where this value
                                  // means "random"): the same seed gives the same tokens
  // Added to a token's logit before anything else (llama.cpp's logit-bias stage, the OpenAI
  // API's logit_bias); -inf bans the token. Ids must be in the vocabulary; a repeated id adds.
  std::vector<std::pair<int32_t, float>> logit_bias;
};

class Sampler {
 public:
  // Throws slm::Error when a parameter is out of range or n_vocab <= 0.
  Sampler(const SamplerParams& p, int32_t n_vocab);

  // Picks the next token from n_vocab logits. The logits are read, never written. Tokens
  // whose logit is -inf are never picked (a mask); NaN or +inf logits, or a vocabulary with
  // no finite logit, throw slm::Error. Does not record the token: call accept() for that.
  int32_t sample(const float* logits);

  // Records a token in the penalty window (prompt tokens too, as llama.cpp does). Throws
  // slm::Error when the id is outside [0, n_vocab).
  void accept(int32_t token);
  // Records a token this sampler picked: the penalty window, and the grammar's progress when
  // there is one (a generated end-of-generation token needs no call). Throws slm::Error when
  // the grammar refuses it.
  void accept_sampled(int32_t token);

  // Constrains the output to a grammar (sampling/grammar.h): sample() then only returns tokens
  // whose text the grammar allows after what was accepted so far, and an end-of-generation
  // token only where the text may end. As llama.cpp's common sampler does, the unconstrained
  // choice is tried first and kept when the grammar allows it (one token checked, not the
  // vocabulary); only when it does not are all tokens checked and the choice made again among
  // those allowed. Greedy output is the same either way. The vocabulary must have n_vocab
  // tokens. Throws slm::Error otherwise.
  void set_grammar(GrammarConstraint c);
  bool has_grammar() const { return grammar_state_.has_value(); }
  // Where the constrained text stands (null without a grammar): can_end() says whether it is
  // complete.
  const GrammarState* grammar_state() const { return grammar_state_ ? &*grammar_state_ : nullptr; }
  // How many sample() calls the grammar refused the first choice of (each checked the whole
  // vocabulary and drew again): what constrained output cost beyond one check per token.
  int64_t grammar_redraws() const { return grammar_redraws_; }
  // Of those, how many found the state's mask computed before (no vocabulary walk).
  int64_t grammar_mask_reuses() const { return mask_cache_hits_; }

  // Forgets the history and reseeds the generator, as if freshly constructed (a grammar goes
  // back to its start).
  void reset();

  const SamplerParams& params() const { return params_; }
  int32_t n_vocab() const { return n_vocab_; }

 private:
  struct Candidate {
    float logit;  // after penalties
    int32_t id;
  };
  struct Better;  // sort order: logit descending, then id ascending
  static void sort_prefix(Candidate* first, Candidate* mid, Candidate* last);
  void radix_sort(Candidate* first, Candidate* last);  // the whole range, in the Better order

  int32_t sample_unconstrained(const float* logits);
  double uniform();                       // [0, 1) with 53 random bits
  size_t collect(const float* logits);    // penalties + finite logits -> cand_, sets max/argmax
  size_t top_k(size_t n);                 // sorts the kept prefix
  size_t top_p(size_t n, bool sorted);    // sorts (at least) the kept prefix
  size_t min_p(size_t n);                 // keeps the relative order
  void dry_penalties();                   // fills dry_pen_ for the tokens that would repeat
  size_t top_n_sigma(size_t n);           // keeps the relative order
  size_t keep_from(size_t n, double cut); // the first n with logit >= cut, in order
  size_t typical(size_t n);               // reorders (by distance to the entropy)
  size_t xtc(size_t n);                   // may move the survivors to the front
  int32_t mirostat(size_t n);             // truncates, draws and adapts mu_
  // Draws among the first n candidates at the temperature; *p_drawn (if not null) receives
  // the drawn token's probability among them.
  int32_t draw(size_t n, double* p_drawn = nullptr);
  void update_max(size_t n);              // max_logit_ and argmax_ of the first n (lowest id on ties)

  SamplerParams params_;
  int32_t n_vocab_;
  bool penalties_on_;  // some penalty is not neutral and the window is not empty
  std::vector<float> bias_;  // per token, when logit_bias is not empty (else empty)
  std::mt19937 seeded_;  // the generator right after seeding, for reset()
  std::mt19937 rng_;

  // Candidates (logit and id together, so sorting touches contiguous memory) and their
  // unnormalised weights by position. Both sized n_vocab once.
  std::vector<Candidate> cand_;
  // radix_sort's scratch: keys (two halves), candidates, digit counts.
  std::vector<uint64_t> radix_keys_;
  std::vector<Candidate> radix_tmp_;
  std::vector<uint32_t> radix_count_;
  // top_p's histogram of the candidates by distance from the max logit (kTopPBuckets).
  std::vector<uint32_t> top_p_count_;
  std::vector<float> prob_;
  float max_logit_ = 0;   // largest penalised finite logit, set by collect()
  int32_t argmax_ = -1;   // its lowest id, set by collect()
  float mu_ = 0;          // mirostat's running surprise limit (2 tau at the start)
  // DRY: whether it is on, breakers by id, the history it looks at (a ring when the window is
  // bounded), the Z-array of the reversed history, each token's longest repeat and penalty
  // (dense, n_vocab, zero but for the ids in dry_touched_).
  bool dry_on_ = false;
  std::vector<uint8_t> dry_breaker_;  // bit 0: a breaker alone, bit 1: the head of some of dry_heads_
  std::vector<std::vector<int32_t>> dry_heads_;  // dry_breaker_seqs sorted by head
  std::vector<int32_t> dry_hist_;
  size_t dry_head_ = 0, dry_size_ = 0;
  std::vector<int32_t> dry_z_, dry_seq_, dry_len_;
  std::vector<float> dry_pen_;
  std::vector<int32_t> dry_touched_;
  // Typical sampling's probabilities, distances, order and kept candidates (sized n_vocab when
  // it is on).
  std::vector<double> typ_prob_, scratch_;
  std::vector<uint32_t> order_;
  std::vector<Candidate> kept_;

  // Penalty window: count of each token among the last repeat_last_n accepted tokens (or all
  // of them with -1), plus a ring of the window's tokens so the oldest can be retired.
  std::vector<int32_t> count_;
  std::vector<int32_t> ring_;
  size_t ring_head_ = 0;  // next slot to write
  size_t ring_size_ = 0;  // tokens currently in the ring

  // The grammar, if any: its vocabulary, the state after the accepted tokens, and buffers for
  // the masked pass (sized on first use).
  GrammarConstraint grammar_;
  std::optional<GrammarState> grammar_state_;
  std::vector<uint8_t> allowed_;
  std::vector<float> masked_;
  int64_t grammar_redraws_ = 0;
  // Masks already computed, by the state's key (GrammarCursor::key), as bitsets: states come
  // back again and again (inside a JSON string, after a comma), and walking a 128k vocabulary
  // costs tens of milliseconds. At most kMaskCacheEntries, dropped when the grammar changes.
  static constexpr size_t kMaskCacheEntries = 64;
  std::unordered_map<std::string, std::vector<uint64_t>> mask_cache_;
  std::string mask_key_;
  int64_t mask_cache_hits_ = 0;
  const std::vector<uint64_t>& grammar_mask();
};

}  // namespace slm
