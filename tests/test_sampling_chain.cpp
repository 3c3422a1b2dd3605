// Sampler chain: greedy, reproducibility, each truncation stage, temperature, penalties,
// parameter validation and the no-allocation / no-mutation guarantees.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "sampling/sampler.h"
#include "support/gaussian.h"

// Counting global operator new: lets NoAllocationPerCall see whether sample()/accept()
// allocate. Only counts while g_count_allocs is set, so gtest's own allocations are ignored.
// GCC cannot see that this operator new pairs with this operator delete (both malloc/free).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<bool> g_count_allocs{false};
static std::atomic<long> g_allocs{0};

void* operator new(std::size_t n) {
  if (g_count_allocs.load(std::memory_order_relaxed)) g_allocs.fetch_add(1);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using slm::Sampler;
using slm::SamplerParams;

constexpr float kInf = std::numeric_limits<float>::infinity();

// Plain sampling with every truncation stage off and no penalties.
SamplerParams plain(float temperature = 1.0f, uint64_t seed = 1234) {
  SamplerParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

SamplerParams greedy_params() {
  SamplerParams p = plain(0.0f);
  return p;
}

std::vector<float> random_logits(int n, uint32_t seed, float scale = 3.0f) {
  return slm::test::gaussian(static_cast<size_t>(n), seed, scale);
}

int argmax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Frequencies of each token over `draws` samples.
std::vector<double> frequencies(Sampler& s, const std::vector<float>& logits, int draws) {
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i) f[static_cast<size_t>(s.sample(logits.data()))] += 1.0;
  for (auto& x : f) x /= draws;
  return f;
}

std::vector<double> softmax(const std::vector<float>& l, double t = 1.0) {
  const double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += p[i] = std::exp((l[i] - mx) / t);
  for (auto& x : p) x /= sum;
  return p;
}

// Logits whose softmax is exactly the given distribution (up to rounding).
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::string error_of(const SamplerParams& p, int32_t n_vocab = 10) {
  try {
    Sampler s(p, n_vocab);
  } catch (const slm::Error& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------
// Greedy

TEST(SamplingChain, GreedyPicksArgmax) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    auto l = random_logits(1000, seed);
    Sampler s(greedy_params(), 1000);
    EXPECT_EQ(s.sample(l.data()), argmax(l));
  }
}

TEST(SamplingChain, GreedyTiesGoToLowestIdAndMaskIsRespected) {
  std::vector<float> l = {1.0f, 5.0f, 2.0f, 5.0f, 5.0f};
  Sampler s(greedy_params(), 5);
  EXPECT_EQ(s.sample(l.data()), 1);
  l[1] = -kInf;
  EXPECT_EQ(s.sample(l.data()), 3);
  // All masked but one very negative token: that token, not a masked one.
  std::vector<float> m = {-kInf, -kInf, -1e30f, -kInf};
  Sampler s2(greedy_params(), 4);
  EXPECT_EQ(s2.sample(m.data()), 2);
}

TEST(SamplingChain, GreedyIgnoresTruncationStagesAndSeed) {
  auto l = random_logits(500, 7);
  SamplerParams p = greedy_params();
  p.top_k = 3;
  p.top_p = 0.1f;
  p.min_p = 0.9f;
  for (uint64_t seed : {0ull, 1ull, 99ull}) {
    p.seed = seed;
    Sampler s(p, 500);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l.data()), argmax(l));
  }
}

// ---------------------------------------------------------------------------------------
// Reproducibility

TEST(SamplingChain, SameSeedSameSequenceDifferentSeedDifferent) {
  auto l = random_logits(100, 3, 0.5f);  // fairly flat: many tokens plausible
  Sampler a(plain(1.0f, 42), 100), b(plain(1.0f, 42), 100), c(plain(1.0f, 43), 100);
  std::vector<int32_t> sa, sb, sc;
  for (int i = 0; i < 2000; ++i) {
    sa.push_back(a.sample(l.data()));
    sb.push_back(b.sample(l.data()));
    sc.push_back(c.sample(l.data()));
  }
  EXPECT_EQ(sa, sb);
  int same = 0;
  for (size_t i = 0; i < sa.size(); ++i) same += sa[i] == sc[i];
  // Independent draws over ~100 plausible tokens agree a few percent of the time.
  EXPECT_LT(same, 200);

  // reset() rewinds to the start of the same sequence.
  a.reset();
  for (size_t i = 0; i < 100; ++i) EXPECT_EQ(a.sample(l.data()), sa[i]);
}

TEST(SamplingChain, SeedHighBitsMatter) {
  auto l = random_logits(100, 3, 0.5f);
  Sampler lo(plain(1.0f, 5), 100), hi(plain(1.0f, (1ull << 32) | 5ull), 100);
  int same = 0;
  for (int i = 0; i < 1000; ++i) same += lo.sample(l.data()) == hi.sample(l.data());
  EXPECT_LT(same, 200);
}

// The draw is defined in terms of std::mt19937 alone (fully specified by the standard), so it
// can be recomputed here: over 1024 equal logits the token is floor(u * 1024), and u's top
// bits are the first 32-bit output of each pair >> 5, so the token is that output >> 22.
TEST(SamplingChain, DrawIsExactlyDefinedByMt19937) {
  for (uint64_t seed : {0ull, 1ull, 0xFFFFFFFFull, 123456789ull}) {
    std::vector<float> l(1024, 0.25f);
    Sampler s(plain(0.7f, seed), 1024);
    std::mt19937 ref(static_cast<uint32_t>(seed));
    for (int i = 0; i < 200; ++i) {
      const uint32_t a = static_cast<uint32_t>(ref());
      ref();  // the second (low-bits) output of the pair
      ASSERT_EQ(s.sample(l.data()), static_cast<int32_t>(a >> 22)) << "seed " << seed << " draw " << i;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Truncation stages

TEST(SamplingChain, TopK1EqualsGreedy) {
  auto l = random_logits(2000, 11, 1.0f);
  SamplerParams p = plain(2.0f, 9);
  p.top_k = 1;
  Sampler s(p, 2000);
  for (int i = 0; i < 500; ++i) ASSERT_EQ(s.sample(l.data()), argmax(l));
}

TEST(SamplingChain, TopKRestrictsSupport) {
  const int n = 50, k = 5;
  auto l = random_logits(n, 12, 0.3f);  // flat, so tokens past the k best would show up
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  std::set<int> best(order.begin(), order.begin() + k);

  SamplerParams p = plain(1.0f, 5);
  p.top_k = k;
  Sampler s(p, n);
  std::set<int> seen;
  for (int i = 0; i < 20000; ++i) seen.insert(s.sample(l.data()));
  EXPECT_EQ(seen, best);
}

TEST(SamplingChain, TopPKeepsSmallestPrefixReachingP) {
  // Probabilities 0.5, 0.3, 0.15, 0.05, stored out of order.
  const std::vector<double> probs = {0.15, 0.5, 0.05, 0.3};
  const auto l = logits_of(probs);
  struct Case { float p; std::set<int> support; };
  const Case cases[] = {
      {0.49f, {1}},           // 0.5 already reaches 0.49
      {0.79f, {1, 3}},        // 0.5 + 0.3 = 0.8
      {0.81f, {1, 3, 0}},     // needs 0.95
      {0.96f, {1, 3, 0, 2}},  // needs everything
  };
  for (const auto& c : cases) {
    SamplerParams p = plain(1.0f, 77);
    p.top_p = c.p;
    Sampler s(p, 4);
    auto f = frequencies(s, l, 20000);
    std::set<int> seen;
    for (int i = 0; i < 4; ++i)
      if (f[static_cast<size_t>(i)] > 0) seen.insert(i);
    EXPECT_EQ(seen, c.support) << "top-p " << c.p;
    // The kept tokens are renormalised.
    double kept = 0;
    for (int i : c.support) kept += probs[static_cast<size_t>(i)];
    for (int i : c.support)
      EXPECT_NEAR(f[static_cast<size_t>(i)], probs[static_cast<size_t>(i)] / kept, 0.015)
          << "top-p " << c.p << " token " << i;
  }
}

// A cut far past the first partially sorted chunk, on a shuffled vocabulary, exercises the
// growing partial sort. The expected cut is recomputed here in double.
TEST(SamplingChain, TopPOnLargeShuffledVocabulary) {
  const int n = 4000;
  std::vector<int> rank_to_id(n);
  std::iota(rank_to_id.begin(), rank_to_id.end(), 0);
  std::shuffle(rank_to_id.begin(), rank_to_id.end(), std::mt19937(5));
  std::vector<float> l(n);
  std::vector<int> id_to_rank(n);
  for (int r = 0; r < n; ++r) {
    l[static_cast<size_t>(rank_to_id[r])] = -0.002f * static_cast<float>(r);
    id_to_rank[static_cast<size_t>(rank_to_id[r])] = r;
  }
  const float top_p = 0.8f;
  std::vector<double> w(n);
  double sum = 0;
  for (int r = 0; r < n; ++r) sum += w[r] = std::exp(static_cast<double>(-0.002f * static_cast<float>(r)));
  int keep = 0;
  for (double cum = 0; keep < n;) {
    cum += w[keep++];
    if (cum >= top_p * sum) break;
  }
  ASSERT_GT(keep, 600);  // well past the first chunk
  ASSERT_LT(keep, n);

  SamplerParams p = plain(1.0f, 3);
  p.top_p = top_p;
  Sampler s(p, n);
  int max_rank = 0;
  for (int i = 0; i < 20000; ++i) max_rank = std::max(max_rank, id_to_rank[static_cast<size_t>(s.sample(l.data()))]);
  EXPECT_LT(max_rank, keep);
  EXPECT_GE(max_rank, keep - 30);  // the tail of the kept prefix is still reachable
}

// A flat distribution over a large vocabulary: top-p needs most of it and sorts what is left by
// radix once the growing chunks reach a good part of it. Its order must be the comparison
// sort's exactly (logit descending, ties by id, -0 equal to +0): draws with the same seed then
// equal those of a chain where top-k (k = n - 1, dropping only a token at -40) sorted everything
// by comparison first. Logits from a few hundred values, so that most tokens tie with others.
TEST(SamplingChain, TopPRadixOrderEqualsTheComparisonSort) {
  const int n = 50000;
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> level(-300, 300);
  std::vector<float> l(n);
  for (auto& x : l) x = 0.002f * static_cast<float>(level(rng));
  for (int i = 0; i < n; i += 97) l[static_cast<size_t>(i)] = (i / 97) % 2 ? -0.0f : 0.0f;
  l[123] = -40.0f;
  SamplerParams p = plain(1.0f, 7);
  p.top_p = 0.95f;
  SamplerParams q = p;
  q.top_k = n - 1;
  Sampler radix(p, n), comparison(q, n);
  int differ = 0;
  for (int i = 0; i < 300; ++i) differ += radix.sample(l.data()) != comparison.sample(l.data());
  EXPECT_EQ(differ, 0);
}

// Over 16,384 candidates top-p first counts them by distance from the max (Sampler::top_p) and
// sorts only those the cut needs: the same tokens as sorting by comparison, for distributions
// that keep one token, some hundreds, or most of them, ties and all, at several top-p values.
TEST(SamplingChain, TopPHistogramCutEqualsTheComparisonSort) {
  const int n = 40000;
  for (const float scale : {0.3f, 2.0f, 6.0f, 25.0f}) {
    std::mt19937 rng(5);
    std::normal_distribution<float> g(0.0f, scale);
    std::vector<float> l(n);
    for (auto& x : l) x = std::round(g(rng) * 64.0f) / 64.0f;  // many ties, many on bucket edges
    for (const float top_p : {0.5f, 0.9f, 0.99f}) {
      SamplerParams p = plain(1.0f, 3);
      p.top_p = top_p;
      SamplerParams q = p;
      q.top_k = n - 1;  // sorted by comparison first: top-p only scans
      Sampler histogram(p, n), comparison(q, n);
      int differ = 0;
      for (int i = 0; i < 60; ++i) differ += histogram.sample(l.data()) != comparison.sample(l.data());
      EXPECT_EQ(differ, 0) << "scale " << scale << ", top-p " << top_p;
    }
  }
}

TEST(SamplingChain, MinPRemovesTokensBelowFractionOfMax) {
  const std::vector<double> probs = {0.1, 0.4, 0.05, 0.3, 0.15};
  const auto l = logits_of(probs);
  SamplerParams p = plain(1.0f, 8);
  p.min_p = 0.3f;  // threshold 0.12: keeps 0.4, 0.3, 0.15
  Sampler s(p, 5);
  auto f = frequencies(s, l, 20000);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[1], 0.4 / 0.85, 0.015);
  EXPECT_NEAR(f[3], 0.3 / 0.85, 0.015);
  EXPECT_NEAR(f[4], 0.15 / 0.85, 0.015);

  p.min_p = 1.0f;  // only the max survives
  Sampler s1(p, 5);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s1.sample(l.data()), 1);
}

TEST(SamplingChain, StagesComposeInLlamaCppOrder) {
  // top-k 3 keeps {0.4, 0.3, 0.15}; top-p 0.8 over those (renormalised 0.47, 0.35, 0.18)
  // then keeps the first two. Had top-p run on the full distribution first, 0.4 + 0.3 = 0.7
  // < 0.8 would have kept three.
  const std::vector<double> probs = {0.1, 0.4, 0.05, 0.3, 0.15};
  const auto l = logits_of(probs);
  SamplerParams p = plain(1.0f, 8);
  p.top_k = 3;
  p.top_p = 0.8f;
  Sampler s(p, 5);
  auto f = frequencies(s, l, 20000);
  EXPECT_EQ(f[0] + f[2] + f[4], 0.0);
  EXPECT_NEAR(f[1], 0.4 / 0.7, 0.015);
}

// ---------------------------------------------------------------------------------------
// Temperature

TEST(SamplingChain, TemperatureMatchesSoftmaxAndSharpensOrFlattens) {
  const std::vector<float> l = {1.0f, 2.0f, 3.0f, 0.5f, -1.0f};
  double prev_top = 2.0;
  for (float t : {0.5f, 1.0f, 2.0f}) {
    Sampler s(plain(t, 2024), 5);
    auto f = frequencies(s, l, 20000);
    auto q = softmax(l, t);
    // Binomial standard deviation is at most 0.0036 at 20k draws; 0.015 is > 4 sigma.
    for (size_t i = 0; i < l.size(); ++i) EXPECT_NEAR(f[i], q[i], 0.015) << "T " << t << " token " << i;
    EXPECT_LT(f[2], prev_top) << "higher temperature must flatten";
    prev_top = f[2];
  }
}

TEST(SamplingChain, TinyTemperatureIsGreedyAndFinite) {
  auto l = random_logits(300, 21);
  Sampler s(plain(1e-40f, 1), 300);  // denormal: 1/T would overflow
  for (int i = 0; i < 50; ++i) ASSERT_EQ(s.sample(l.data()), argmax(l));
}

// ---------------------------------------------------------------------------------------
// Penalties: exact values are checked by ties (lowest id wins) against a second token.

SamplerParams penalty_params() {
  SamplerParams p = greedy_params();
  p.repeat_last_n = 64;
  return p;
}

TEST(SamplingChain, RepeatPenaltyDividesPositiveLogits) {
  SamplerParams p = penalty_params();
  p.repeat_penalty = 1.25f;
  // 2.0 / 1.25 = 1.6 (rounded like 1.6f): a tie with token 1 goes to token 0.
  std::vector<float> l = {2.0f, 1.6f, -5.0f};
  Sampler s(p, 3);
  EXPECT_EQ(s.sample(l.data()), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(l.data()), 0);  // tie
  l[1] = std::nextafter(1.6f, 10.0f);
  EXPECT_EQ(s.sample(l.data()), 1);  // one ulp above the penalised value
}

SamplerParams penalty_params();

// Logit bias: added first (before the penalties, as llama.cpp's chain has it), -inf bans, a
// repeated id adds up, and ids outside the vocabulary or NaN biases are errors.
TEST(SamplingChain, LogitBiasShiftsBansAndComesBeforePenalties) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f, 0.5f};
  SamplerParams p = greedy_params();
  p.logit_bias = {{1, -kInf}};
  EXPECT_EQ(Sampler(p, 4).sample(l.data()), 2);
  p.logit_bias = {{3, 1.5f}, {3, 1.0f}};  // 0.5 + 2.5 = 3.0: ties token 1, the lower id wins
  EXPECT_EQ(Sampler(p, 4).sample(l.data()), 1);
  p.logit_bias = {{3, 1.5f}, {3, 1.01f}};
  EXPECT_EQ(Sampler(p, 4).sample(l.data()), 3);
  // Bias, then the repeat penalty: (2 + 2) / 2 = 2 < 3 for token 2, which was seen.
  SamplerParams q = penalty_params();
  q.repeat_penalty = 2.0f;
  q.logit_bias = {{2, 2.0f}};
  Sampler s(q, 4);
  EXPECT_EQ(s.sample(l.data()), 2);  // 4 > 3 before it is seen
  s.accept(2);
  EXPECT_EQ(s.sample(l.data()), 1);
  // Sampled draws never pick a banned token.
  SamplerParams r;
  r.temperature = 1.5f;
  r.top_k = 0;
  r.min_p = 0;
  r.logit_bias = {{1, -kInf}, {2, -kInf}};
  Sampler d(r, 4);
  for (int i = 0; i < 200; ++i) {
    const int32_t t = d.sample(l.data());
    EXPECT_TRUE(t == 0 || t == 3) << t;
  }
  for (auto bad : {std::pair<int32_t, float>{4, 1.0f}, {-1, 1.0f}, {0, std::nanf("")}, {0, kInf}}) {
    SamplerParams b = greedy_params();
    b.logit_bias = {bad};
    EXPECT_NE(error_of(b, 4).find("logit bias"), std::string::npos) << bad.first << " " << bad.second;
  }
}

TEST(SamplingChain, RepeatPenaltyMultipliesNegativeLogits) {
  SamplerParams p = penalty_params();
  p.repeat_penalty = 1.25f;
  // -1.0 * 1.25 = -1.25 (dividing would have raised it to -0.8).
  std::vector<float> l = {-1.0f, -1.25f, -5.0f};
  Sampler s(p, 3);
  s.accept(0);
  EXPECT_EQ(s.sample(l.data()), 0);  // tie
  l[1] = std::nextafter(-1.25f, 0.0f);
  EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(SamplingChain, FrequencyAndPresencePenalties) {
  SamplerParams p = penalty_params();
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  // Token 0 seen 3 times: 3.0 - (3 * 0.5 + 0.25) = 1.25.
  std::vector<float> l = {3.0f, 1.25f, 0.0f};
  Sampler s(p, 3);
  for (int i = 0; i < 3; ++i) s.accept(0);
  EXPECT_EQ(s.sample(l.data()), 0);  // tie
  l[1] = std::nextafter(1.25f, 10.0f);
  EXPECT_EQ(s.sample(l.data()), 1);

  // Presence alone: subtracted once however often the token appears.
  SamplerParams q = penalty_params();
  q.presence_penalty = 0.25f;
  std::vector<float> m = {1.25f, 1.0f, 0.0f};
  Sampler s2(q, 3);
  for (int i = 0; i < 5; ++i) s2.accept(0);
  EXPECT_EQ(s2.sample(m.data()), 0);  // 1.0 tie
  m[1] = std::nextafter(1.0f, 10.0f);
  EXPECT_EQ(s2.sample(m.data()), 1);
}

TEST(SamplingChain, AllPenaltiesCombineInLlamaCppOrder) {
  // Repeat first, then frequency and presence: 4.0 / 2 - (2 * 0.25 + 0.5) = 1.0.
  SamplerParams p = penalty_params();
  p.repeat_penalty = 2.0f;
  p.frequency_penalty = 0.25f;
  p.presence_penalty = 0.5f;
  std::vector<float> l = {4.0f, 1.0f};
  Sampler s(p, 2);
  s.accept(0);
  s.accept(0);
  EXPECT_EQ(s.sample(l.data()), 0);
  l[1] = std::nextafter(1.0f, 10.0f);
  EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(SamplingChain, PenaltiesTouchOnlyTokensInTheWindow) {
  SamplerParams p = penalty_params();
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  // Tokens 0..3 at 2.0 and 4 at 1.5: penalised tokens drop to 1.0, below token 4.
  std::vector<float> l = {2.0f, 2.0f, 2.0f, 2.0f, 1.5f};
  Sampler s(p, 5);
  s.accept(0);
  EXPECT_EQ(s.sample(l.data()), 1);  // only 0 penalised
  s.accept(1);
  EXPECT_EQ(s.sample(l.data()), 2);  // 0 and 1 penalised
  s.accept(2);
  EXPECT_EQ(s.sample(l.data()), 0);  // 0 left the 2-token window; 1 and 2 penalised
  s.accept(0);
  s.accept(3);
  EXPECT_EQ(s.sample(l.data()), 1);  // window {0, 3}

  // A token repeated inside the window keeps its count until every copy has left.
  SamplerParams f = penalty_params();
  f.frequency_penalty = 1.0f;
  f.repeat_last_n = 3;
  std::vector<float> m = {3.0f, 1.5f, -9.0f};
  Sampler sf(f, 3);
  sf.accept(0);
  sf.accept(0);
  EXPECT_EQ(sf.sample(m.data()), 1);  // 3 - 2 = 1 < 1.5
  sf.accept(2);
  sf.accept(2);                       // window {0, 2, 2}: 3 - 1 = 2 > 1.5
  EXPECT_EQ(sf.sample(m.data()), 0);
  sf.accept(2);                       // window {2, 2, 2}
  EXPECT_EQ(sf.sample(m.data()), 0);
}

TEST(SamplingChain, PenaltyWindowWholeHistory) {
  // Token 0 (2.0 -> 1.0 when penalised) against an unpenalised token 2 at 1.5, after token 0
  // has been pushed 1000 tokens back by token 1.
  std::vector<float> l = {2.0f, -9.0f, 1.5f};
  SamplerParams p = penalty_params();
  p.repeat_penalty = 2.0f;
  for (int32_t last_n : {-1, 64}) {
    p.repeat_last_n = last_n;
    Sampler s(p, 3);
    s.accept(0);
    for (int i = 0; i < 1000; ++i) s.accept(1);
    EXPECT_EQ(s.sample(l.data()), last_n == -1 ? 2 : 0) << "repeat-last-n " << last_n;
  }
}

TEST(SamplingChain, PenaltyOffAndReset) {
  std::vector<float> l = {2.0f, 1.5f};
  SamplerParams p = penalty_params();
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 0;
  Sampler off(p, 2);
  off.accept(0);
  EXPECT_EQ(off.sample(l.data()), 0);

  p.repeat_last_n = 64;
  Sampler s(p, 2);
  s.accept(0);
  EXPECT_EQ(s.sample(l.data()), 1);
  s.reset();
  EXPECT_EQ(s.sample(l.data()), 0);
}

TEST(SamplingChain, PenaltiesApplyBeforeSampling) {
  // With sampling on, a heavily penalised favourite disappears from the draws.
  std::vector<float> l = {5.0f, 0.0f, 0.0f};
  SamplerParams p = plain(1.0f, 4);
  p.presence_penalty = 100.0f;
  Sampler s(p, 3);
  s.accept(0);
  auto f = frequencies(s, l, 2000);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_NEAR(f[1], 0.5, 0.05);
}

// ---------------------------------------------------------------------------------------
// Validation, robustness, guarantees

TEST(SamplingChain, InvalidParamsThrowWithMessage) {
  auto expect_error = [](SamplerParams p, const char* what, int32_t n_vocab = 10) {
    const std::string e = error_of(p, n_vocab);
    EXPECT_NE(e.find(what), std::string::npos) << "expected '" << what << "', got '" << e << "'";
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  SamplerParams p;
  expect_error(p, "vocabulary size 0", 0);
  p = {}; p.temperature = -0.5f;    expect_error(p, "temperature -0.5");
  p = {}; p.temperature = nan;      expect_error(p, "temperature nan");
  p = {}; p.temperature = kInf;     expect_error(p, "temperature inf");
  p = {}; p.top_p = 1.5f;           expect_error(p, "top-p 1.5 must be in (0, 1]");
  p = {}; p.top_p = 0.0f;           expect_error(p, "top-p 0 must be in (0, 1]");
  p = {}; p.top_p = nan;            expect_error(p, "top-p nan");
  p = {}; p.min_p = -0.1f;          expect_error(p, "min-p -0.1 must be in [0, 1]");
  p = {}; p.min_p = 1.1f;           expect_error(p, "min-p 1.1");
  p = {}; p.repeat_penalty = 0.0f;  expect_error(p, "repeat penalty 0 must be finite and > 0");
  p = {}; p.repeat_penalty = -1.1f; expect_error(p, "repeat penalty -1.1");
  p = {}; p.repeat_last_n = -2;     expect_error(p, "repeat-last-n -2");
  p = {}; p.repeat_last_n = 1 << 30; expect_error(p, "repeat-last-n 1073741824");
  p = {}; p.presence_penalty = nan; expect_error(p, "presence penalty nan");
  p = {}; p.frequency_penalty = -kInf; expect_error(p, "frequency penalty -inf");

  // Boundaries that are valid.
  for (auto tweak : {+[](SamplerParams& q) { q.temperature = 0.0f; },
                     +[](SamplerParams& q) { q.top_p = 1.0f; },
                     +[](SamplerParams& q) { q.min_p = 0.0f; },
                     +[](SamplerParams& q) { q.min_p = 1.0f; },
                     +[](SamplerParams& q) { q.top_k = -1; },
                     +[](SamplerParams& q) { q.repeat_last_n = -1; },
                     +[](SamplerParams& q) { q.presence_penalty = -2.0f; }}) {
    SamplerParams q;
    tweak(q);
    EXPECT_EQ(error_of(q), "");
  }

  Sampler s(SamplerParams{}, 10);
  EXPECT_THROW(s.accept(-1), slm::Error);
  EXPECT_THROW(s.accept(10), slm::Error);
  EXPECT_NO_THROW(s.accept(9));
}

TEST(SamplingChain, BadLogitsThrowAndMaskedTokensAreNeverDrawn) {
  Sampler s(plain(1.0f, 1), 4);
  std::vector<float> nan_l = {0.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f, 0.0f};
  EXPECT_THROW(s.sample(nan_l.data()), slm::Error);
  std::vector<float> inf_l = {0.0f, kInf, 0.0f, 0.0f};
  EXPECT_THROW(s.sample(inf_l.data()), slm::Error);
  std::vector<float> masked = {-kInf, -kInf, -kInf, -kInf};
  EXPECT_THROW(s.sample(masked.data()), slm::Error);
  Sampler g(greedy_params(), 4);
  EXPECT_THROW(g.sample(masked.data()), slm::Error);

  std::vector<float> half = {-kInf, 0.0f, -kInf, 0.0f};
  auto f = frequencies(s, half, 4000);
  EXPECT_EQ(f[0] + f[2], 0.0);
  EXPECT_NEAR(f[1], 0.5, 0.05);
}

TEST(SamplingChain, CallerLogitsUnchanged) {
  auto l = random_logits(5000, 31);
  l[17] = -kInf;
  const auto copy = l;
  SamplerParams p;  // every stage on
  p.repeat_penalty = 1.3f;
  p.presence_penalty = 0.4f;
  p.frequency_penalty = 0.2f;
  p.temperature = 0.9f;
  Sampler s(p, 5000);
  for (int i = 0; i < 50; ++i) s.accept(argmax(l) + (i % 3));
  for (int i = 0; i < 20; ++i) s.accept(s.sample(l.data()));
  ASSERT_EQ(std::memcmp(l.data(), copy.data(), l.size() * sizeof(float)), 0);
  SamplerParams g = p;
  g.temperature = 0.0f;
  Sampler sg(g, 5000);
  sg.accept(argmax(l));
  sg.sample(l.data());
  ASSERT_EQ(std::memcmp(l.data(), copy.data(), l.size() * sizeof(float)), 0);
}

TEST(SamplingChain, NoAllocationPerCall) {
  const int n = 32000;
  auto l = random_logits(n, 41, 1.0f);
  SamplerParams configs[6];
  configs[0].repeat_penalty = 1.1f;                      // defaults + windowed penalties
  configs[1] = plain(1.0f, 3);                           // no truncation, whole vocabulary
  configs[1].top_p = 0.9f;                               // top-p by growing partial sort
  configs[1].frequency_penalty = 0.1f;
  configs[1].repeat_last_n = -1;
  configs[2] = greedy_params();
  configs[2].seed = (1ull << 40) + 7;                    // 64-bit seed: reset() must not reseed
  configs[3].typical_p = 0.9f;                           // llama.cpp's optional stages
  configs[3].top_n_sigma = 2.0f;
  configs[3].xtc_probability = 0.5f;
  configs[3].top_k = 0;
  configs[4].mirostat = 1;
  configs[5].mirostat = 2;
  for (const auto& p : configs) {
    Sampler s(p, n);
    g_allocs = 0;
    g_count_allocs = true;
    for (int i = 0; i < 30; ++i) s.accept(s.sample(l.data()));
    s.reset();
    g_count_allocs = false;
    EXPECT_EQ(g_allocs.load(), 0);
  }
}

TEST(SamplingChain, LargeVocabularyIsFast) {
  // A 128k vocabulary with llama.cpp's defaults (top-k 40) and with top-p alone over the
  // whole vocabulary. Reports the time; the bound is loose so sanitizer builds pass.
  const int n = 128 * 1024;
  auto l = random_logits(n, 51, 2.0f);
  SamplerParams only_p = plain(0.8f, 1);
  only_p.top_p = 0.95f;
  // llama.cpp's optional stages over the whole vocabulary: typical with XTC and top-n-sigma,
  // mirostat 1 and 2, and DRY over a history of 4,000 tokens.
  SamplerParams stages = plain(0.8f, 1);
  stages.typical_p = 0.9f;
  stages.xtc_probability = 0.5f;
  stages.top_n_sigma = 3.0f;
  SamplerParams miro1 = plain(0.8f, 1), miro2 = plain(0.8f, 1), dry{};
  miro1.mirostat = 1;
  miro2.mirostat = 2;
  dry.dry_multiplier = 0.8f;
  dry.dry_breakers_resolved = true;
  const std::pair<const char*, SamplerParams> configs[] = {{"defaults (top-k 40)", SamplerParams{}},
                                                           {"top-p 0.95 alone", only_p},
                                                           {"typical 0.9 + XTC 0.5 + top-n-sigma 3", stages},
                                                           {"mirostat 1", miro1},
                                                           {"mirostat 2", miro2},
                                                           {"defaults + DRY, 4000 tokens of history", dry}};
  for (const auto& [name, p] : configs) {
    Sampler s(p, n);
    if (p.dry_multiplier > 0)
      for (int i = 0; i < 4000; ++i) s.accept((i * 7919) % 5000);
    const int calls = 50;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) s.accept(s.sample(l.data()));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / calls;
    std::printf("  128k vocab, %s: %.3f ms/sample\n", name, ms);
    EXPECT_LT(ms, 200.0);
  }
}

}  // namespace
