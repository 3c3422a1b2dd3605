#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace slm {

namespace {

// The ring for a windowed penalty is allocated up front; past this size -1 (whole history,
// which needs no ring) is the sensible choice, and a typo such as 1e9 should not allocate 4 GB.
constexpr int32_t kMaxRepeatLastN = 1 << 24;

// Before the top-p cut the candidates are sorted only as far as needed: most distributions
// reach the mass within a few hundred tokens, so a full sort of a 128k vocabulary is rare.
constexpr size_t kTopPFirstChunk = 256;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Past this many candidates left to sort, top-p sorts all of them by radix (linear time) rather
// than in more growing chunks: a flat distribution (high temperature, no top-k) needs most of a
// 128k vocabulary for its mass, which comparison sorting took ~8 ms per token to order.
constexpr size_t kTopPRadixFrom = 16384;

// Over that many candidates, top-p first counts them in buckets of 1/kTopPBucketsPerNat below
// the max logit (the last bucket takes the rest, each below e^-32 of the max), to find how many
// it keeps before sorting any (Sampler::top_p).
constexpr int kTopPBucketsPerNat = 64;
constexpr int kTopPBuckets = 32 * kTopPBucketsPerNat + 1;

// The Better order as one unsigned key per candidate, ascending: the logit's bits made to
// compare as unsigned integers, descending (-0 taken as +0, which compare equal as floats),
// then the id ascending. Logits are never NaN.
inline uint64_t order_key(float logit, int32_t id) {
  if (logit == 0.0f) logit = 0.0f;
  uint32_t b;
  std::memcpy(&b, &logit, sizeof b);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // ascending as unsigned
  return (static_cast<uint64_t>(~b) << 32) | static_cast<uint32_t>(id);
}

}  // namespace

// Descending logit, ties by ascending id: a strict total order over the candidates (which are
// never NaN), so sorts are deterministic whatever the algorithm, and the best m candidates
// are one well-defined set.
struct Sampler::Better {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

// Sorts [first, last) in the Better order: a least-significant-digit radix sort of the
// candidates' order keys, 16 bits at a time, skipping the digits every key shares (a vocabulary
// below 65,536 ids and logits of one sign need fewer passes). radix_keys_, radix_tmp_ and
// radix_count_ are its scratch, sized by the constructor where top-p can need them.
void Sampler::radix_sort(Candidate* first, Candidate* last) {
  const size_t n = static_cast<size_t>(last - first);
  radix_keys_.resize(2 * n);
  radix_tmp_.resize(n);
  uint64_t* key = radix_keys_.data();
  uint64_t* key2 = key + n;
  Candidate* tmp = radix_tmp_.data();
  uint64_t all_or = 0, all_and = ~uint64_t{0};
  for (size_t i = 0; i < n; ++i) {
    key[i] = order_key(first[i].logit, first[i].id);
    all_or |= key[i];
    all_and &= key[i];
  }
  radix_count_.resize(size_t{1} << 16);
  Candidate* src = first;
  Candidate* dst = tmp;
  for (int shift = 0; shift < 64; shift += 16) {
    if ((((all_or ^ all_and) >> shift) & 0xFFFF) == 0) continue;  // every key has this digit
    std::fill(radix_count_.begin(), radix_count_.end(), 0u);
    for (size_t i = 0; i < n; ++i) ++radix_count_[(key[i] >> shift) & 0xFFFF];
    uint32_t at = 0;
    for (uint32_t& c : radix_count_) {
      const uint32_t here = c;
      c = at;
      at += here;
    }
    for (size_t i = 0; i < n; ++i) {
      const uint32_t to = radix_count_[(key[i] >> shift) & 0xFFFF]++;
      dst[to] = src[i];
      key2[to] = key[i];
    }
    std::swap(src, dst);
    std::swap(key, key2);
  }
  if (src != first) std::copy(src, src + n, first);
}

// Moves the (mid - first) best of [first, last) to the front, sorted. A heap-based
// partial_sort is fastest for a short prefix (most elements are rejected by one compare with
// the heap top); for a long one, selection then sorting the prefix is O(n + m log m) instead
// of O(n log m) with heap operations. Neither allocates (std::stable_sort would).
void Sampler::sort_prefix(Candidate* first, Candidate* mid, Candidate* last) {
  if (mid == first) return;
  if (mid - first <= 128) {
    std::partial_sort(first, mid, last, Better{});
  } else {
    if (mid != last) std::nth_element(first, mid, last, Better{});
    std::sort(first, mid, Better{});
  }
}

Sampler::Sampler(const SamplerParams& p, int32_t n_vocab) : params_(p), n_vocab_(n_vocab) {
  // The checks are written as !(x in range) so that NaN fails them too.
  if (n_vocab <= 0) fail("sampler: vocabulary size {} must be positive", n_vocab);
  if (!(p.temperature >= 0.0f) || std::isinf(p.temperature))
    fail("sampler: temperature {} must be finite and >= 0 (0 = greedy)", p.temperature);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    fail("sampler: top-p {} must be in (0, 1] (1 = off)", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    fail("sampler: min-p {} must be in [0, 1] (0 = off)", p.min_p);
  if (!(p.repeat_penalty > 0.0f) || std::isinf(p.repeat_penalty))
    fail("sampler: repeat penalty {} must be finite and > 0 (1 = off)", p.repeat_penalty);
  if (p.repeat_last_n < -1 || p.repeat_last_n > kMaxRepeatLastN)
    fail("sampler: repeat-last-n {} must be -1 (whole history), 0 (off) or in [1, {}]",
         p.repeat_last_n, kMaxRepeatLastN);
  if (!std::isfinite(p.presence_penalty))
    fail("sampler: presence penalty {} must be finite", p.presence_penalty);
  if (!std::isfinite(p.frequency_penalty))
    fail("sampler: frequency penalty {} must be finite", p.frequency_penalty);
  if (!(p.dry_multiplier >= 0.0f) || std::isinf(p.dry_multiplier))
    fail("sampler: DRY multiplier {} must be finite and >= 0 (0 = off)", p.dry_multiplier);
  if (!(p.dry_base >= 1.0f) || std::isinf(p.dry_base)) fail("sampler: DRY base {} must be finite and >= 1", p.dry_base);
  if (p.dry_allowed_length < 0) fail("sampler: DRY allowed length {} must not be negative", p.dry_allowed_length);
  if (p.dry_penalty_last_n < -1 || p.dry_penalty_last_n > kMaxRepeatLastN)
    fail("sampler: DRY penalty-last-n {} must be -1 (whole history), 0 (off) or in [1, {}]", p.dry_penalty_last_n,
         kMaxRepeatLastN);
  if (!(p.typical_p > 0.0f && p.typical_p <= 1.0f))
    fail("sampler: typical-p {} must be in (0, 1] (1 = off)", p.typical_p);
  if (std::isnan(p.top_n_sigma) || std::isinf(p.top_n_sigma))
    fail("sampler: top-n-sigma {} must be a finite number (<= 0 = off)", p.top_n_sigma);
  if (!(p.xtc_probability >= 0.0f && p.xtc_probability <= 1.0f))
    fail("sampler: XTC probability {} must be in [0, 1] (0 = off)", p.xtc_probability);
  if (!(p.xtc_threshold >= 0.0f && p.xtc_threshold <= 1.0f))
    fail("sampler: XTC threshold {} must be in [0, 1] (above 0.5 = off)", p.xtc_threshold);
  if (p.mirostat < 0 || p.mirostat > 2) fail("sampler: mirostat {} must be 0 (off), 1 or 2", p.mirostat);
  if (!(p.mirostat_tau > 0.0f) || std::isinf(p.mirostat_tau))
    fail("sampler: mirostat tau (target entropy) {} must be finite and > 0", p.mirostat_tau);
  if (!(p.mirostat_eta >= 0.0f) || std::isinf(p.mirostat_eta))
    fail("sampler: mirostat eta (learning rate) {} must be finite and >= 0", p.mirostat_eta);
  if (!p.logit_bias.empty()) {
    bias_.assign(static_cast<size_t>(n_vocab), 0.0f);
    for (const auto& [id, b] : p.logit_bias) {
      if (id < 0 || id >= n_vocab) fail("sampler: logit bias for token {}, outside the vocabulary (0..{})", id, n_vocab - 1);
      if (std::isnan(b) || b == std::numeric_limits<float>::infinity())
        fail("sampler: logit bias {} for token {} must be a number or -inf", b, id);
      bias_[static_cast<size_t>(id)] += b;
    }
  }

  // Same condition as llama.cpp's penalties sampler for being a no-op; then no history is kept.
  penalties_on_ = p.repeat_last_n != 0 &&
                  (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f ||
                   p.frequency_penalty != 0.0f);

  const auto nv = static_cast<size_t>(n_vocab);
  cand_.resize(nv);
  prob_.resize(nv);
  if (p.top_p < 1.0f && nv >= kTopPRadixFrom) {  // top-p's radix sort and histogram: sized once, not per token
    radix_keys_.resize(2 * nv);
    radix_tmp_.resize(nv);
    radix_count_.resize(size_t{1} << 16);
    top_p_count_.resize(kTopPBuckets);
  }
  dry_on_ = p.dry_multiplier > 0.0f && p.dry_penalty_last_n != 0;
  if (dry_on_) {
    if (!p.dry_sequence_breakers.empty() && !p.dry_breakers_resolved)
      fail("sampler: DRY's sequence breakers must be resolved against the vocabulary (resolve_dry_breakers) first");
    dry_breaker_.assign(nv, 0);
    for (const int32_t id : p.dry_breaker_ids) {
      if (id < 0 || id >= n_vocab) fail("sampler: DRY breaker token {} is outside the vocabulary (0..{})", id, n_vocab - 1);
      dry_breaker_[static_cast<size_t>(id)] = 1;
    }
    dry_heads_.clear();
    for (const std::vector<int32_t>& seq : p.dry_breaker_seqs) {
      if (seq.size() < 2) fail("sampler: a DRY breaker sequence needs a head token and at least one more");
      for (const int32_t id : seq)
        if (id < 0 || id >= n_vocab) fail("sampler: DRY breaker token {} is outside the vocabulary (0..{})", id, n_vocab - 1);
      dry_breaker_[static_cast<size_t>(seq[0])] |= 2;
      dry_heads_.push_back(seq);
    }
    std::sort(dry_heads_.begin(), dry_heads_.end());
    if (p.dry_penalty_last_n > 0) dry_hist_.resize(static_cast<size_t>(p.dry_penalty_last_n));
    else dry_hist_.reserve(4096);
    dry_len_.assign(nv, 0);
    dry_pen_.assign(nv, 0.0f);
  }
  if (p.typical_p < 1.0f) {
    typ_prob_.resize(nv);
    scratch_.resize(nv);
    order_.resize(nv);
    kept_.resize(nv);
  }
  if (penalties_on_) {
    count_.assign(nv, 0);
    if (p.repeat_last_n > 0) ring_.resize(static_cast<size_t>(p.repeat_last_n));
  }
  // A 32-bit seed seeds mt19937 directly, as llama.cpp's dist sampler does; a wider one goes
  // through seed_seq (also fully specified) so its high bits are not silently dropped. The
  // seeded state is kept so reset() is a copy (seed_seq allocates).
  if (p.seed <= 0xFFFFFFFFull) {
    seeded_.seed(static_cast<std::mt19937::result_type>(p.seed));
  } else {
    std::seed_seq seq{static_cast<uint32_t>(p.seed), static_cast<uint32_t>(p.seed >> 32)};
    seeded_.seed(seq);
  }
  reset();
}

void Sampler::reset() {
  std::fill(count_.begin(), count_.end(), 0);
  ring_head_ = 0;
  ring_size_ = 0;
  rng_ = seeded_;
  mu_ = 2.0f * params_.mirostat_tau;
  dry_head_ = dry_size_ = 0;
  if (params_.dry_penalty_last_n < 0) dry_hist_.clear();
  if (grammar_.grammar) grammar_state_.emplace(grammar_.grammar);
}

void Sampler::set_grammar(GrammarConstraint c) {
  if (!c.grammar) {
    grammar_ = {};
    grammar_state_.reset();
    mask_cache_.clear();
    return;
  }
  if (!c.vocab || c.vocab->n_vocab() != n_vocab_)
    fail("sampler: the grammar's vocabulary has {} tokens but the model has {}", c.vocab ? c.vocab->n_vocab() : 0,
         n_vocab_);
  grammar_ = std::move(c);
  grammar_state_.emplace(grammar_.grammar);
  mask_cache_.clear();  // keys hold the old grammar's element addresses
}

void Sampler::accept_sampled(int32_t token) {
  accept(token);
  if (!grammar_state_ || grammar_.vocab->is_eog(token)) return;
  if (!grammar_state_->advance(grammar_.vocab->piece(token)))
    fail("sampler: token {} ({:?}) does not follow the grammar here", token, grammar_.vocab->piece(token));
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= n_vocab_)
    fail("sampler: accepted token {} is outside the vocabulary [0, {})", token, n_vocab_);
  if (dry_on_) {
    if (params_.dry_penalty_last_n > 0) {  // a ring of the last n
      dry_hist_[dry_head_] = token;
      dry_head_ = (dry_head_ + 1) % dry_hist_.size();
      dry_size_ = std::min(dry_size_ + 1, dry_hist_.size());
    } else {
      dry_hist_.push_back(token);
      dry_size_ = dry_hist_.size();
    }
  }
  if (!penalties_on_) return;
  const auto t = static_cast<size_t>(token);
  if (ring_.empty()) {
    // Whole history: counts only. Saturate rather than overflow (2^31 tokens is not a
    // realistic history, but signed overflow would be UB).
    if (count_[t] < std::numeric_limits<int32_t>::max()) ++count_[t];
    return;
  }
  if (ring_size_ == ring_.size()) {
    --count_[static_cast<size_t>(ring_[ring_head_])];  // the oldest token leaves the window
  } else {
    ++ring_size_;
  }
  ring_[ring_head_] = token;
  ++count_[t];
  ring_head_ = (ring_head_ + 1) % ring_.size();
}

double Sampler::uniform() {
  // genrand_res53 from the reference Mersenne Twister: 27 + 26 bits -> a double in [0, 1).
  // Unlike std::uniform_real_distribution, this is the same with every standard library.
  const uint64_t a = static_cast<uint64_t>(rng_()) >> 5;
  const uint64_t b = static_cast<uint64_t>(rng_()) >> 6;
  return (static_cast<double>(a) * 67108864.0 + static_cast<double>(b)) *
         (1.0 / 9007199254740992.0);
}

void Sampler::dry_penalties() {
  for (const int32_t id : dry_touched_) dry_pen_[static_cast<size_t>(id)] = 0.0f;  // a call that threw
  dry_touched_.clear();
  const size_t m = dry_size_;
  if (m < 2) return;
  // The history newest first: seq[k] is the token k places before the last.
  dry_seq_.resize(m);
  dry_z_.resize(m);
  int32_t* seq = dry_seq_.data();
  if (params_.dry_penalty_last_n > 0) {
    const size_t cap = dry_hist_.size();
    for (size_t k = 0; k < m; ++k) seq[k] = dry_hist_[(dry_head_ + cap - 1 - k) % cap];
  } else {
    for (size_t k = 0; k < m; ++k) seq[k] = dry_hist_[m - 1 - k];
  }
  // A repeat reaches back at most to the newest sequence breaker (exclusive): a breaker token,
  // or the head of a breaker sequence whose other tokens follow it, the longest of those that
  // fit (llama.cpp's restart sequences); the repeat then starts after the sequence's end.
  size_t limit = m;
  for (size_t k = 0; k < m; ++k) {
    const uint8_t kind = dry_breaker_[static_cast<size_t>(seq[k])];
    if (kind == 0) continue;
    size_t longest = 0;
    const auto first = std::lower_bound(dry_heads_.begin(), dry_heads_.end(), seq[k],
                                        [](const std::vector<int32_t>& a, int32_t head) { return a[0] < head; });
    for (auto it = first; it != dry_heads_.end() && (*it)[0] == seq[k]; ++it) {
      const size_t tail = it->size() - 1;
      if (tail <= longest || tail > k) continue;
      bool follows = true;
      for (size_t o = 0; o < tail && follows; ++o) follows = (*it)[1 + o] == seq[k - 1 - o];
      if (follows) longest = tail;
    }
    if (longest > 0 || (kind & 1)) {
      limit = k - longest;
      break;
    }
  }
  const auto allowed = static_cast<size_t>(params_.dry_allowed_length);
  if (limit < allowed || limit == 0) return;
  // z[k]: how many tokens the history ending k tokens ago shares with the whole history's end
  // (the Z-array of seq, linear time). The token that followed that earlier end, seq[k - 1],
  // would repeat a sequence of min(z[k], limit) tokens.
  int32_t* z = dry_z_.data();
  size_t zl = 0, zr = 0;
  for (size_t k = 1; k < m; ++k) {
    size_t zk = k < zr ? std::min(zr - k, static_cast<size_t>(z[k - zl])) : 0;
    while (k + zk < m && seq[zk] == seq[k + zk]) ++zk;
    z[k] = static_cast<int32_t>(zk);
    if (k + zk > zr) {
      zl = k;
      zr = k + zk;
    }
  }
  for (size_t k = 1; k < m; ++k) {
    const size_t len = std::min(static_cast<size_t>(z[k]), limit);
    if (len < allowed || len == 0) continue;
    const auto t = static_cast<size_t>(seq[k - 1]);
    if (dry_len_[t] == 0) dry_touched_.push_back(seq[k - 1]);
    dry_len_[t] = std::max(dry_len_[t], static_cast<int32_t>(len));
  }
  // multiplier * base^(len - allowed), the exponent capped where the penalty would overflow.
  const double base = params_.dry_base;
  const double max_exp = base > 1.0 ? 88.0 / std::log(base) : 0.0;
  for (const int32_t id : dry_touched_) {
    const auto t = static_cast<size_t>(id);
    if (dry_breaker_[t] & 1) {  // a breaker ends any repeat; llama.cpp leaves it alone
      dry_len_[t] = 0;
      continue;
    }
    const double e = std::min(static_cast<double>(dry_len_[t] - static_cast<int32_t>(allowed)), max_exp);
    dry_pen_[t] = static_cast<float>(params_.dry_multiplier * std::pow(base, e));
    dry_len_[t] = 0;
  }
}

size_t Sampler::collect(const float* logits) {
  if (dry_on_) dry_penalties();
  const float rp = params_.repeat_penalty;
  const float fp = params_.frequency_penalty;
  const float pp = params_.presence_penalty;
  float mx = kNegInf;
  int32_t best = -1;
  size_t n = 0;
  Candidate* out = cand_.data();
  for (int32_t i = 0; i < n_vocab_; ++i) {
    float l = logits[i];
    // -inf is a mask and is fine; NaN or +inf mean the forward pass went wrong, and would
    // poison the softmax, so say so instead of returning an arbitrary token.
    if (std::isnan(l) || l == std::numeric_limits<float>::infinity())
      fail("sampler: logit of token {} is {}", i, l);
    if (!bias_.empty()) {
      l += bias_[static_cast<size_t>(i)];  // a -inf bias masks the token
      if (l == std::numeric_limits<float>::infinity()) l = std::numeric_limits<float>::max();
    }
    if (penalties_on_) {
      const int32_t c = count_[static_cast<size_t>(i)];
      // A masked (-inf) token stays masked; skipping it also avoids -inf - -inf = NaN.
      if (c > 0 && l > kNegInf) {
        // llama.cpp's formulas, in float and in the same order so results match bit for bit.
        // Multiplying negatives (instead of dividing) keeps the penalty a penalty.
        l = l <= 0.0f ? l * rp : l / rp;
        l -= static_cast<float>(c) * fp + 1.0f * pp;
        // A penalty below 1 or a negative frequency/presence penalty can overflow to +inf,
        // which the softmax cannot take; the largest float keeps the token the favourite.
        if (l == std::numeric_limits<float>::infinity()) l = std::numeric_limits<float>::max();
      }
    }
    if (dry_on_ && l > kNegInf) l -= dry_pen_[static_cast<size_t>(i)];
    // Masked tokens never become candidates, so no stage has to think about them.
    if (l > kNegInf) {
      out[n++] = Candidate{l, i};
      // Strict > keeps the lowest id among equal maxima.
      if (l > mx) {
        mx = l;
        best = i;
      }
    }
  }
  for (const int32_t id : dry_touched_) dry_pen_[static_cast<size_t>(id)] = 0.0f;
  dry_touched_.clear();
  if (n == 0) fail("sampler: every logit is -inf, no token can be sampled");
  max_logit_ = mx;
  argmax_ = best;
  return n;
}

size_t Sampler::top_k(size_t n) {
  const int32_t k = params_.top_k;
  if (k <= 0 || static_cast<size_t>(k) >= n) return n;
  const auto kk = static_cast<size_t>(k);
  // The k best end up sorted at the front, which top_p then reuses.
  Candidate* c = cand_.data();
  sort_prefix(c, c + kk, c + n);
  return kk;
}

size_t Sampler::top_p(size_t n, bool sorted) {
  const float p = params_.top_p;
  if (p >= 1.0f) return n;
  // Probabilities at temperature 1 over the current candidates (temperature comes later in
  // llama.cpp's chain, so top-p sees the untempered distribution). Double for the sums so
  // the cut does not drift on a 128k vocabulary.
  Candidate* c = cand_.data();
  const double mx = max_logit_;
  double sum = 0.0;
  // Over a large vocabulary, count the candidates by distance from the max while summing.
  const bool counting = !sorted && n >= kTopPRadixFrom;
  const float fmx = max_logit_;
  const auto bucket = [fmx](float logit) {
    const float d = (fmx - logit) * static_cast<float>(kTopPBucketsPerNat);
    return static_cast<size_t>(std::min(d, static_cast<float>(kTopPBuckets - 1)));
  };
  if (!counting) {
    for (size_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(c[j].logit) - mx);
  } else {
    std::fill(top_p_count_.begin(), top_p_count_.end(), 0u);
    for (size_t j = 0; j < n; ++j) {
      sum += std::exp(static_cast<double>(c[j].logit) - mx);
      ++top_p_count_[bucket(c[j].logit)];
    }
  }
  const double target = static_cast<double>(p) * sum;

  // Keep the smallest prefix (in descending order) whose mass reaches p. The prefix is
  // sorted in growing chunks: each chunk is the best of what is left, so the running sum
  // carries over, and a peaked distribution never pays for sorting the whole vocabulary.
  double cum = 0.0;
  size_t done = 0;
  size_t chunk = sorted ? n : std::min(n, kTopPFirstChunk);
  size_t ready = 0;  // the front candidates already in their final order
  if (counting) {
    // The buckets whose mass reaches p say how many candidates the cut needs, and those are
    // exactly the ones in these buckets (a lower bucket means a strictly higher logit). Each
    // bucket's mass is taken at its top (an overestimate by at most 1/kTopPBucketsPerNat nat): the
    // count may fall short of the cut by a bucket, and then the chunks go on from there.
    double mass = 0.0;
    size_t last = 0, need = 0;
    for (; last < static_cast<size_t>(kTopPBuckets); ++last) {
      mass += top_p_count_[last] * std::exp(-static_cast<double>(last) / kTopPBucketsPerNat);
      need += top_p_count_[last];
      if (mass >= target) break;
    }
    if (need > n / 16) {
      // A flat distribution: the radix sort below takes all of it (a pass picking out a large
      // share mispredicts every other branch and costs more than it saves).
      chunk = n;
    } else {
      // One pass moves them to the front, where they are sorted: no selection over the whole
      // vocabulary.
      std::partition(c, c + n, [&](const Candidate& x) { return bucket(x.logit) <= last; });
      std::sort(c, c + need, Better{});
      chunk = ready = need;
    }
  }
  for (;;) {
    if (!sorted && n - done >= kTopPRadixFrom && chunk - done > (n - done) / 16) {
      radix_sort(c + done, c + n);  // most of what is left: sort all of it, in linear time
      sorted = true;
      chunk = n;
    }
    if (!sorted && chunk > ready) sort_prefix(c + done, c + chunk, c + n);
    for (; done < chunk; ++done) {
      cum += std::exp(static_cast<double>(c[done].logit) - mx);
      if (cum >= target) return done + 1;
    }
    if (chunk == n) return n;  // rounding kept us just short of p: keep everything
    chunk = std::min(n, chunk * 4);
  }
}

size_t Sampler::min_p(size_t n) {
  const float mp = params_.min_p;
  if (mp <= 0.0f) return n;
  // max_logit_ is the max of these candidates: every stage before either keeps the argmax or
  // (typical) sets it anew.
  // prob_i >= min_p * prob_max  <=>  logit_i >= logit_max + log(min_p) (llama.cpp's form,
  // which needs no softmax). The max is always kept. Compaction is stable, so a sorted
  // prefix stays sorted.
  return keep_from(n, max_logit_ + std::log(mp));
}

size_t Sampler::keep_from(size_t n, double cut) {
  Candidate* c = cand_.data();
  size_t m = 0;
  for (size_t j = 0; j < n; ++j)
    if (c[j].logit >= cut) c[m++] = c[j];
  return m;
}

size_t Sampler::top_n_sigma(size_t n) {
  const float ns = params_.top_n_sigma;
  if (!(ns > 0.0f) || n <= 1) return n;
  // The mean and standard deviation of the candidates' logits (llama.cpp's: every token that is
  // not masked), then those below max - n sigma dropped. The max always stays.
  Candidate* c = cand_.data();
  double sum = 0.0;
  for (size_t j = 0; j < n; ++j) sum += c[j].logit;
  const double mean = sum / static_cast<double>(n);
  double acc = 0.0;
  for (size_t j = 0; j < n; ++j) acc += (c[j].logit - mean) * (c[j].logit - mean);
  return keep_from(n, static_cast<double>(max_logit_) - ns * std::sqrt(acc / static_cast<double>(n)));
}

size_t Sampler::typical(size_t n) {
  const float tp = params_.typical_p;
  if (tp >= 1.0f || n <= 1) return n;
  // Probabilities at temperature 1, the distribution's entropy H, and each token's distance
  // from it, |-log p - H|: the typical set is the tokens nearest the entropy (the most likely
  // token is not among them when it is much likelier than the rest), taken nearest first until
  // their probability exceeds typical_p.
  Candidate* c = cand_.data();
  const double mx = max_logit_;  // the argmax is still here (the stages before keep it)
  double* prob = typ_prob_.data();
  double sum = 0.0;
  for (size_t j = 0; j < n; ++j) sum += prob[j] = std::exp(static_cast<double>(c[j].logit) - mx);
  double entropy = 0.0;
  for (size_t j = 0; j < n; ++j) {
    prob[j] /= sum;
    if (prob[j] > 0.0) entropy -= prob[j] * std::log(prob[j]);
  }
  double* dist = scratch_.data();
  for (size_t j = 0; j < n; ++j)
    dist[j] = prob[j] > 0.0 ? std::abs(-std::log(prob[j]) - entropy) : std::numeric_limits<double>::infinity();
  // Order the candidates by distance (ties: higher logit, then lower id).
  uint32_t* order = order_.data();
  for (size_t j = 0; j < n; ++j) order[j] = static_cast<uint32_t>(j);
  std::sort(order, order + n, [&](uint32_t a, uint32_t b) {
    if (dist[a] != dist[b]) return dist[a] < dist[b];
    return Better{}(c[a], c[b]);
  });
  size_t keep = n;
  double cum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cum += prob[order[i]];
    if (cum > tp) {
      keep = i + 1;
      break;
    }
  }
  // The kept ones to the front, in that order.
  Candidate* kept = kept_.data();
  for (size_t i = 0; i < keep; ++i) kept[i] = c[order[i]];
  std::copy(kept, kept + keep, c);
  update_max(keep);
  return keep;
}

size_t Sampler::xtc(size_t n) {
  const float prob = params_.xtc_probability, threshold = params_.xtc_threshold;
  if (prob <= 0.0f || threshold > 0.5f || n < 2) return n;
  // One draw decides whether XTC acts on this token (llama.cpp: skip when the draw exceeds the
  // probability).
  if (uniform() > prob) return n;
  // The tokens at or above the threshold (probability at temperature 1) are the best ones; all
  // but the least likely of them go, when there are two or more.
  Candidate* c = cand_.data();
  const double mx = max_logit_;
  double sum = 0.0;
  for (size_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(c[j].logit) - mx);
  size_t above = 0;
  const Candidate* last = nullptr;  // the least likely of those above (the worst by Better)
  for (size_t j = 0; j < n; ++j)
    if (std::exp(static_cast<double>(c[j].logit) - mx) / sum >= threshold) {
      ++above;
      if (!last || Better{}(*last, c[j])) last = &c[j];
    }
  if (above < 2) return n;
  // Probability grows with the logit, so the ones above are exactly those Better than `last`
  // (and it): keep it and everything worse.
  const Candidate keep = *last;
  size_t m = 0;
  for (size_t j = 0; j < n; ++j)
    if (!Better{}(c[j], keep)) c[m++] = c[j];
  update_max(m);
  return m;
}

void Sampler::update_max(size_t n) {
  const Candidate* c = cand_.data();
  size_t best = 0;
  for (size_t j = 1; j < n; ++j)
    if (Better{}(c[j], c[best])) best = j;
  max_logit_ = c[best].logit;
  argmax_ = c[best].id;
}

int32_t Sampler::mirostat(size_t n) {
  const double t = params_.temperature, tau = params_.mirostat_tau, eta = params_.mirostat_eta;
  Candidate* c = cand_.data();
  const double mx = max_logit_;
  // Probabilities after the temperature (llama.cpp's chain puts it before mirostat).
  double sum = 0.0;
  for (size_t j = 0; j < n; ++j) sum += std::exp((static_cast<double>(c[j].logit) - mx) / t);
  size_t k = n;
  if (params_.mirostat == 2) {
    // Keep the tokens whose surprise -log2 p is at most mu (p >= 2^-mu); the most likely token
    // always (it has the least surprise).
    const double log_floor = -static_cast<double>(mu_) * std::log(2.0) + std::log(sum);
    k = 0;
    for (size_t j = 0; j < n; ++j)
      if ((static_cast<double>(c[j].logit) - mx) / t >= log_floor || c[j].id == argmax_) c[k++] = c[j];
    sort_prefix(c, c + k, c + k);
  } else {
    // Mirostat 1: estimate the Zipf exponent s of the distribution from its m = 100 likeliest
    // tokens (least squares of log(p_i / p_i+1) on log((i + 2) / (i + 1))), then the top-k
    // that gives the target surprise mu for that exponent over the vocabulary.
    constexpr size_t kM = 100;
    const size_t m = std::min(kM, n);
    sort_prefix(c, c + m, c + n);
    if (n > 1) {
      double ti_bi = 0.0, ti_sq = 0.0;
      for (size_t i = 0; i + 1 < m; ++i) {
        const double ti = std::log(static_cast<double>(i + 2) / static_cast<double>(i + 1));
        const double bi = (static_cast<double>(c[i].logit) - c[i + 1].logit) / t;  // log(p_i / p_i+1)
        ti_bi += ti * bi;
        ti_sq += ti * ti;
      }
      const double s_hat = ti_bi / ti_sq, eps = s_hat - 1.0;
      const double kf = std::pow(eps * std::pow(2.0, static_cast<double>(mu_)) /
                                     (1.0 - std::pow(static_cast<double>(n_vocab_), -eps)),
                                 1.0 / s_hat);
      // A flat or degenerate estimate (NaN, infinite, below 1) keeps one token or them all.
      k = std::isnan(kf) || kf < 1.0 ? 1 : kf >= static_cast<double>(n) ? n : static_cast<size_t>(kf);
      if (k > m) sort_prefix(c + m, c + k, c + n);
    }
  }
  double p = 1.0;
  const int32_t id = draw(k, &p);
  // Adapt: the drawn token's surprise (among the kept ones) against the target.
  mu_ = static_cast<float>(mu_ - eta * (-std::log2(p) - tau));
  return id;
}

int32_t Sampler::draw(size_t n, double* p_drawn) {
  // Softmax at the temperature, unnormalised: weights exp((l - max) / T) lie in [0, 1] and
  // the max has weight 1, so the sum is >= 1 and never overflows. Divide rather than multiply
  // by 1/T: for a denormal T, 1/T is +inf and 0 * inf = NaN.
  const float t = params_.temperature;
  const float mx = max_logit_;
  const Candidate* c = cand_.data();
  float* w = prob_.data();
  double sum = 0.0;
  for (size_t j = 0; j < n; ++j) {
    w[j] = std::exp((c[j].logit - mx) / t);
    sum += w[j];
  }
  // Inverse CDF. One draw per call, even when one candidate is left, so the generator's
  // position depends only on how many tokens were sampled (and XTC's own draws).
  const double target = uniform() * sum;
  double cum = 0.0;
  size_t last_nonzero = 0, pick = n;
  for (size_t j = 0; j < n; ++j) {
    if (w[j] > 0.0f) last_nonzero = j;
    cum += w[j];
    if (target < cum) {
      pick = j;
      break;
    }
  }
  // u * sum rounded up to sum: the draw belongs to the last token with any weight.
  if (pick == n) pick = last_nonzero;
  if (p_drawn) *p_drawn = w[pick] / sum;
  return c[pick].id;
}

int32_t Sampler::sample(const float* logits) {
  if (!grammar_state_) return sample_unconstrained(logits);
  const int32_t first = sample_unconstrained(logits);
  if (grammar_.vocab->allows(*grammar_state_, first)) return first;
  ++grammar_redraws_;
  const std::vector<uint64_t>& bits = grammar_mask();
  masked_.resize(static_cast<size_t>(n_vocab_));
  bool any = false;
  for (int32_t i = 0; i < n_vocab_; ++i) {
    const bool ok = (bits[static_cast<size_t>(i) >> 6] >> (i & 63)) & 1u;
    masked_[static_cast<size_t>(i)] = ok ? logits[i] : kNegInf;
    any = any || (ok && logits[i] > kNegInf);
  }
  if (!any)
    fail("sampler: the grammar allows no token of this vocabulary after the text so far (does the model have "
         "an end-of-generation token, and can the grammar's characters be written with its tokens?)");
  return sample_unconstrained(masked_.data());
}

const std::vector<uint64_t>& Sampler::grammar_mask() {
  grammar_state_->cursor().key(mask_key_);
  if (auto it = mask_cache_.find(mask_key_); it != mask_cache_.end()) {
    ++mask_cache_hits_;
    return it->second;
  }
  grammar_.vocab->allowed(*grammar_state_, allowed_);
  std::vector<uint64_t> bits((static_cast<size_t>(n_vocab_) + 63) / 64, 0);
  for (size_t i = 0; i < allowed_.size(); ++i)
    if (allowed_[i]) bits[i >> 6] |= uint64_t{1} << (i & 63);
  if (mask_cache_.size() >= kMaskCacheEntries) mask_cache_.clear();
  return mask_cache_.emplace(mask_key_, std::move(bits)).first->second;
}

int32_t Sampler::sample_unconstrained(const float* logits) {
  const size_t all = collect(logits);
  const bool greedy = params_.temperature <= 0.0f;
  // Greedy is the argmax of the penalised logits where no stage can drop it: top-n-sigma,
  // top-k, top-p, min-p and mirostat keep the argmax, and llama.cpp's temperature <= 0 keeps
  // only the max of what is left. Typical sampling and XTC may drop it.
  const bool xtc_on = params_.xtc_probability > 0.0f && params_.xtc_threshold <= 0.5f;
  if (greedy && (params_.mirostat != 0 || (params_.typical_p >= 1.0f && !xtc_on))) return argmax_;
  if (params_.mirostat != 0) return mirostat(all);
  size_t n = top_n_sigma(all);
  const size_t before_k = n;
  n = top_k(n);
  bool sorted = n < before_k;  // top-k sorted what it kept
  if (params_.typical_p < 1.0f) {
    n = typical(n);
    sorted = false;
  }
  n = top_p(n, sorted);
  n = min_p(n);
  n = xtc(n);
  if (greedy) return argmax_;  // of what is left (typical and XTC update it)
  return draw(n);
}

}  // namespace slm
