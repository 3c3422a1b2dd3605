// llama.cpp's optional sampling stages: locally typical sampling, top-n-sigma, XTC and mirostat
// 1 and 2 (sampling/sampler.h), each on distributions small enough to work out by hand from the
// stage's definition, so that what a stage keeps is checked exactly, not only its spirit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "sampling/sampler.h"
#include "sampling/sampler_stages.h"

namespace {

using slm::Sampler;
using slm::SamplerParams;

// Every stage of the default chain off (top-k, top-p, min-p neutral), at temperature t.
SamplerParams only(float t, uint64_t seed = 7) {
  SamplerParams p;
  p.temperature = t;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

// The tokens drawn in `draws` samples (each accepted, as generation does).
std::vector<int> counts(Sampler& s, const std::vector<float>& l, int draws) {
  std::vector<int> c(l.size(), 0);
  for (int i = 0; i < draws; ++i) {
    const int32_t t = s.sample(l.data());
    ++c[static_cast<size_t>(t)];
    s.accept(t);
  }
  return c;
}

// p = (0.4, 0.3, 0.3): entropy H = 1.0889 nats; surprises -ln p = 0.916 (distance 0.173 from
// H) and 1.204 (0.115). The two 0.3 tokens are the typical ones: typical_p 0.5 keeps them
// (0.3 + 0.3 > 0.5), not the likeliest token; 0.6 needs all three (0.6 is not > 0.6).
TEST(SamplingStages, TypicalKeepsTheTokensNearestTheEntropy) {
  const auto l = logits_of({0.4, 0.3, 0.3});
  SamplerParams p = only(1.0f);
  p.typical_p = 0.5f;
  Sampler s(p, 3);
  const auto c = counts(s, l, 2000);
  EXPECT_EQ(c[0], 0);
  EXPECT_GT(c[1], 850);  // 1000 each expected
  EXPECT_GT(c[2], 850);
  // Greedy is the best of what typical kept (llama.cpp: temperature 0 after the stage).
  SamplerParams g = p;
  g.temperature = 0.0f;
  Sampler greedy(g, 3);
  EXPECT_EQ(greedy.sample(l.data()), 1);
  // 0.6: all three.
  p.typical_p = 0.6f;
  Sampler all(p, 3);
  EXPECT_GT(counts(all, l, 2000)[0], 650);  // 800 expected
  // A peaked distribution keeps its argmax alone: p = (0.7, 0.1, 0.1, 0.1), H = 0.9404,
  // distances 0.584 and 1.362; 0.7 > 0.5.
  p.typical_p = 0.5f;
  const auto peaked = logits_of({0.7, 0.1, 0.1, 0.1});
  Sampler one(p, 4);
  EXPECT_EQ(counts(one, peaked, 300)[0], 300);
}

// Logits (10, 9, 5, 0, 0, 0): mean 4, standard deviation sqrt(110 / 6) = 4.282. n = 1 keeps
// the logits >= 5.718 (tokens 0 and 1); n = 0.1 only the best (>= 9.572); n = 2 adds 5.
TEST(SamplingStages, TopNSigmaKeepsLogitsWithinNDeviationsOfTheBest) {
  const std::vector<float> l = {10, 9, 5, 0, 0, 0};
  auto kept = [&](float n) {
    SamplerParams p = only(5.0f);  // hot: every kept token gets drawn
    p.top_n_sigma = n;
    Sampler s(p, 6);
    const auto c = counts(s, l, 3000);
    std::set<int> k;
    for (int i = 0; i < 6; ++i)
      if (c[static_cast<size_t>(i)] > 0) k.insert(i);
    return k;
  };
  EXPECT_EQ(kept(1.0f), (std::set<int>{0, 1}));
  EXPECT_EQ(kept(0.1f), (std::set<int>{0}));
  EXPECT_EQ(kept(2.0f), (std::set<int>{0, 1, 2}));
  EXPECT_EQ(kept(0.0f), (std::set<int>{0, 1, 2, 3, 4, 5}));  // off
}

// p = (0.5, 0.3, 0.15, 0.05), threshold 0.1: three tokens reach it, so the two likeliest go and
// 0.15 stays with 0.05. With probability 1 every draw; 0.5: about half the draws.
TEST(SamplingStages, XtcDropsTheTopChoicesButTheLastAboveTheThreshold) {
  const auto l = logits_of({0.5, 0.3, 0.15, 0.05});
  SamplerParams p = only(1.0f);
  p.xtc_probability = 1.0f;
  p.xtc_threshold = 0.1f;
  Sampler always(p, 4);
  auto c = counts(always, l, 2000);
  EXPECT_EQ(c[0] + c[1], 0);
  EXPECT_GT(c[2], 1350);  // 1500 expected (0.15 / 0.2)
  EXPECT_GT(c[3], 350);
  // Greedy: the best of what is left.
  SamplerParams g = p;
  g.temperature = 0.0f;
  Sampler greedy(g, 4);
  EXPECT_EQ(greedy.sample(l.data()), 2);
  // One token above the threshold: nothing to drop (0.4: only 0.5 reaches it).
  p.xtc_threshold = 0.4f;
  Sampler single(p, 4);
  EXPECT_GT(counts(single, l, 2000)[0], 850);
  // Above 0.5: off, as in llama.cpp.
  p.xtc_threshold = 0.6f;
  Sampler off(p, 4);
  EXPECT_GT(counts(off, l, 2000)[0], 850);
  // Half the time: token 0 is drawn in about half of its usual share (0.25 of draws).
  p.xtc_threshold = 0.1f;
  p.xtc_probability = 0.5f;
  Sampler half(p, 4);
  c = counts(half, l, 4000);
  EXPECT_GT(c[0], 800);
  EXPECT_LT(c[0], 1200);
}

// Mirostat 2.0 keeps the tokens whose surprise -log2 p is at most mu (2 tau at the start), then
// moves mu by eta times the drawn token's surprise (among those kept) less tau. Over
// p = (0.6, 0.3, 0.1) with tau 0.5 and eta 1: mu 1 keeps p >= 0.5, token 0 alone, whose
// surprise 0 raises mu to 1.5 (p >= 0.354: token 0 again), then 2 (p >= 0.25: tokens 0 and 1).
// Token 2 needs mu >= log2 10 = 3.32, which the target of 0.5 bits keeps it well below.
TEST(SamplingStages, MirostatTwoTruncatesBySurpriseAndAdapts) {
  const auto l = logits_of({0.6, 0.3, 0.1});
  SamplerParams p = only(1.0f);
  p.mirostat = 2;
  p.mirostat_tau = 0.5f;
  p.mirostat_eta = 1.0f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    p.seed = seed;
    Sampler s(p, 3);
    EXPECT_EQ(s.sample(l.data()), 0) << seed;
    EXPECT_EQ(s.sample(l.data()), 0) << seed;
    const auto c = counts(s, l, 200);
    EXPECT_GT(c[1], 0) << seed;
    EXPECT_EQ(c[2], 0) << seed;
    s.reset();  // mu back to 2 tau
    EXPECT_EQ(s.sample(l.data()), 0) << seed;
  }
  // A high target lets every token through from the start (mu = 20 bits).
  p.mirostat_tau = 10.0f;
  Sampler wide(p, 3);
  EXPECT_GT(counts(wide, l, 1000)[2], 50);
}

// Mirostat 1 fits a Zipf exponent s to the likeliest tokens and samples from the top k that
// gives surprise mu: k = (eps 2^mu / (1 - N^-eps))^(1/s), eps = s - 1. On an exact Zipf
// distribution p_i ~ (i + 1)^-1.5 over N = 1000 tokens the fit is exact (s = 1.5), and tau 3
// (mu 6) gives k = (0.5 * 64 / (1 - 1000^-0.5))^(2/3) = 10.3: the first draw is among the ten
// likeliest, and token 9 (p = 1.6% of those ten) turns up across 500 seeds.
TEST(SamplingStages, MirostatOneSamplesTheTopKOfItsZipfEstimate) {
  std::vector<double> probs;
  for (int i = 0; i < 1000; ++i) probs.push_back(std::pow(i + 1.0, -1.5));
  const auto l = logits_of(probs);
  SamplerParams p = only(1.0f);
  p.mirostat = 1;
  p.mirostat_tau = 3.0f;
  p.mirostat_eta = 0.0f;  // mu stays 6
  int highest = 0;
  for (uint64_t seed = 0; seed < 500; ++seed) {
    p.seed = seed;
    Sampler s(p, 1000);
    const int32_t t = s.sample(l.data());
    ASSERT_LT(t, 10) << seed;
    highest = std::max(highest, static_cast<int>(t));
  }
  EXPECT_EQ(highest, 9);
  // Greedy stays greedy.
  p.temperature = 0.0f;
  Sampler g(p, 1000);
  EXPECT_EQ(g.sample(l.data()), 0);
}

// DRY on a history of 1 2 3 4 1 2 3 (every logit 0 but token 4's): the last three tokens
// occurred before, followed by 4, so 4 would extend a repeat of 3 tokens and loses
// multiplier * base^(3 - allowed) = 1 * 2^1 = 2: greedy with 4 at 1.99 picks another token, at
// 2.01 still 4. No other token would repeat anything. A breaker token (2) inside the repeat cuts
// it to 1 token (under the allowed 2): no penalty; allowed length 3: a penalty of 2^0 = 1; a
// window of the last 4 tokens sees no earlier occurrence.
TEST(SamplingStages, DryPenalisesTheTokenThatWouldExtendARepeat) {
  auto pick = [](float logit4, int allowed, std::vector<int32_t> breakers, int32_t last_n) {
    SamplerParams p = only(0.0f);
    p.dry_multiplier = 1.0f;
    p.dry_base = 2.0f;
    p.dry_allowed_length = allowed;
    p.dry_penalty_last_n = last_n;
    p.dry_sequence_breakers = {"x"};  // resolved below, as resolve_dry_breakers would
    p.dry_breaker_ids = std::move(breakers);
    p.dry_breakers_resolved = true;
    Sampler s(p, 10);
    for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) s.accept(t);
    std::vector<float> l(10, 0.0f);
    l[4] = logit4;
    return s.sample(l.data());
  };
  EXPECT_EQ(pick(1.99f, 2, {}, -1), 0);
  EXPECT_EQ(pick(2.01f, 2, {}, -1), 4);
  EXPECT_EQ(pick(0.5f, 2, {2}, -1), 4);  // a breaker inside the repeat
  EXPECT_EQ(pick(0.99f, 3, {}, -1), 0);
  EXPECT_EQ(pick(1.01f, 3, {}, -1), 4);
  EXPECT_EQ(pick(0.5f, 4, {}, -1), 4);   // a repeat of 3 is allowed
  EXPECT_EQ(pick(0.5f, 2, {}, 4), 4);    // the window holds 4 1 2 3 only
  EXPECT_EQ(pick(1.99f, 2, {}, 7), 0);   // it holds all seven
  // The breakers must have been resolved against a vocabulary.
  SamplerParams p = only(1.0f);
  p.dry_multiplier = 0.8f;
  EXPECT_THROW(Sampler(p, 10), slm::Error);
  // reset() forgets the history.
  p.dry_breakers_resolved = true;
  p.dry_base = 2.0f;
  p.temperature = 0.0f;
  p.dry_multiplier = 1.0f;
  Sampler s(p, 10);
  for (int32_t t : {1, 2, 3, 4, 1, 2, 3}) s.accept(t);
  std::vector<float> l(10, 0.0f);
  l[4] = 1.5f;
  EXPECT_EQ(s.sample(l.data()), 0);
  s.reset();
  EXPECT_EQ(s.sample(l.data()), 4);
}

// A breaker spelled over several tokens (dry_breaker_seqs, as resolve_dry_breakers finds them
// for a string no one token holds): on the history 5 6 1 2 3 4 5 6 1 2 3, token 4 would extend a
// repeat of 5 tokens (5 6 1 2 3: a penalty of 2^3 = 8); with the sequence 5 6 a breaker, the
// repeat starts after it (1 2 3: 2^1 = 2); a sequence whose head occurs without the rest of it
// (5 7) breaks nothing. And a breaker token is never penalised itself (llama.cpp's rule): on
// 1 2 3 1 2 with 3 a breaker, 3 would extend a repeat of 2 but keeps its logit.
TEST(SamplingStages, DryBreakerSequencesCutRepeatsWhereTheWholeSequenceOccurs) {
  // Greedy with DRY at multiplier 1, base 2, allowed length 2; breakers as resolved.
  const auto dry = [] {
    SamplerParams p = only(0.0f);
    p.dry_multiplier = 1.0f;
    p.dry_base = 2.0f;
    p.dry_allowed_length = 2;
    p.dry_sequence_breakers = {"x"};
    p.dry_breakers_resolved = true;
    return p;
  };
  auto pick = [&](float logit4, std::vector<std::vector<int32_t>> seqs) {
    SamplerParams p = dry();
    p.dry_breaker_seqs = std::move(seqs);
    Sampler s(p, 10);
    for (int32_t t : {5, 6, 1, 2, 3, 4, 5, 6, 1, 2, 3}) s.accept(t);
    std::vector<float> l(10, 0.0f);
    l[4] = logit4;
    return s.sample(l.data());
  };
  EXPECT_EQ(pick(7.99f, {}), 0);
  EXPECT_EQ(pick(8.01f, {}), 4);
  EXPECT_EQ(pick(1.99f, {{5, 6}}), 0);
  EXPECT_EQ(pick(2.01f, {{5, 6}}), 4);
  EXPECT_EQ(pick(7.99f, {{5, 7}}), 0);
  EXPECT_EQ(pick(8.01f, {{5, 7}}), 4);
  EXPECT_EQ(pick(2.01f, {{5, 7}, {5, 6}}), 4);  // the head's sequence that does occur counts
  // A sequence needs its head and at least one more token, all in the vocabulary.
  SamplerParams bad = dry();
  bad.dry_breaker_seqs = {{5}};
  EXPECT_THROW(Sampler(bad, 10), slm::Error);
  bad.dry_breaker_seqs = {{5, 12}};
  EXPECT_THROW(Sampler(bad, 10), slm::Error);

  auto pick3 = [&](std::vector<int32_t> breakers) {
    SamplerParams p = dry();
    p.dry_breaker_ids = std::move(breakers);
    Sampler s(p, 10);
    for (int32_t t : {1, 2, 3, 1, 2}) s.accept(t);
    std::vector<float> l(10, 0.0f);
    l[3] = 0.5f;
    return s.sample(l.data());
  };
  EXPECT_EQ(pick3({}), 0);   // 3 loses 2^0 = 1
  EXPECT_EQ(pick3({3}), 3);  // a breaker keeps its logit
}

// llama.cpp's --samplers / "samplers": names and aliases in the chain's order turn the stages
// left out off; letters the same; another order, a repeat or an unknown name is an error.
TEST(SamplingStages, SamplerListsTurnTheOtherStagesOff) {
  using slm::SamplerStage;
  EXPECT_EQ(slm::parse_sampler_stages(slm::split_sampler_names("top-k;typical;temp"), "--samplers"),
            (std::vector<SamplerStage>{SamplerStage::TopK, SamplerStage::Typical, SamplerStage::Temperature}));
  EXPECT_EQ(slm::parse_sampler_letters("edskypmxt", "--sampling-seq").size(), 9u);
  SamplerParams p;
  p.repeat_penalty = 1.3f;
  p.typical_p = 0.5f;
  p.temperature = 0.7f;
  p.dry_multiplier = 0.8f;
  slm::keep_only_stages(p, slm::parse_sampler_letters("kt", "x"));
  EXPECT_EQ(p.top_k, 40);
  EXPECT_EQ(p.temperature, 0.7f);
  EXPECT_EQ(p.repeat_penalty, 1.0f);
  EXPECT_EQ(p.typical_p, 1.0f);
  EXPECT_EQ(p.top_p, 1.0f);
  EXPECT_EQ(p.min_p, 0.0f);
  EXPECT_EQ(p.dry_multiplier, 0.0f);
  SamplerParams q;
  q.temperature = 0.2f;
  slm::keep_only_stages(q, slm::parse_sampler_stages({"top_k"}, "x"));
  EXPECT_EQ(q.temperature, 1.0f);  // no temperature stage: the draw is at 1
  EXPECT_THROW(slm::parse_sampler_stages({"temperature", "top_k"}, "x"), slm::Error);
  EXPECT_THROW(slm::parse_sampler_stages({"top_k", "top_k"}, "x"), slm::Error);
  EXPECT_THROW(slm::parse_sampler_stages({"mirostat"}, "x"), slm::Error);
  EXPECT_THROW(slm::parse_sampler_letters("kq", "x"), slm::Error);
}

// Out-of-range settings are refused with what is allowed.
TEST(SamplingStages, BadSettingsAreRefusedWithTheirRange) {
  auto error_of = [](const SamplerParams& p) -> std::string {
    try {
      Sampler s(p, 10);
    } catch (const slm::Error& e) {
      return e.what();
    }
    return "";
  };
  SamplerParams p;
  p.typical_p = 0.0f;
  EXPECT_NE(error_of(p).find("typical-p"), std::string::npos);
  p = {};
  p.xtc_probability = 1.5f;
  EXPECT_NE(error_of(p).find("XTC probability"), std::string::npos);
  p = {};
  p.mirostat = 3;
  EXPECT_NE(error_of(p).find("mirostat 3"), std::string::npos);
  p = {};
  p.mirostat = 2;
  p.mirostat_tau = 0.0f;
  EXPECT_NE(error_of(p).find("tau"), std::string::npos);
  p = {};
  p.dry_base = 0.5f;
  EXPECT_NE(error_of(p).find("DRY base"), std::string::npos);
  p = {};
  p.top_n_sigma = NAN;
  EXPECT_NE(error_of(p).find("top-n-sigma"), std::string::npos);
}

}  // namespace
