#include "runtime/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "models/model.h"
#include "ops/compute.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"
#include "tokenizer/tokenizer.h"

namespace slm {

namespace {

constexpr char kMagic[8] = {'S', 'L', 'M', 'K', 'L', 'D', '0', '1'};
// Log-probabilities more than this far below the top one are stored as that floor, and such
// base probabilities (< e^-16, about 1e-7) are left out of the KL sum, as llama.cpp does.
constexpr float kLogProbRange = 16.0f;

// max logit (float) and log(sum exp(l - max)) with the sum in double and the terms in float,
// as llama.cpp's log_softmax().
struct Softmax {
  float max_logit;
  double log_sum_exp;
  int32_t argmax;
};
Softmax softmax_of(const float* logits, int64_t n_vocab) {
  Softmax s{logits[0], 0.0, 0};
  for (int64_t i = 1; i < n_vocab; ++i)
    if (logits[i] > s.max_logit) {
      s.max_logit = logits[i];
      s.argmax = static_cast<int32_t>(i);
    }
  double sum_exp = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - s.max_logit);
  s.log_sum_exp = std::log(sum_exp);
  return s;
}

// Stdio with errors as slm::Error naming the file; closes (and for a write, removes the
// unfinished file) on the way out.
class File {
 public:
  File(const std::string& path, bool write) : path_(path), write_(write) {
    f_ = std::fopen(path.c_str(), write ? "wb" : "rb");
    if (!f_) fail("{}: cannot open for {}", path, write ? "writing" : "reading");
  }
  ~File() {
    if (!f_) return;
    std::fclose(f_);
    if (write_ && !committed_) std::remove(path_.c_str());
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  void put(const void* p, size_t n) {
    if (std::fwrite(p, 1, n, f_) != n) fail("{}: write failed", path_);
  }
  void get(void* p, size_t n) {
    if (std::fread(p, 1, n, f_) != n) fail("{}: ends early: not a KL-divergence base file of this run", path_);
  }
  void commit() {
    committed_ = true;
    std::FILE* f = f_;
    f_ = nullptr;
    if (std::fclose(f) != 0) {
      std::remove(path_.c_str());
      fail("{}: write failed when closing", path_);
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool write_;
  bool committed_ = false;
  std::FILE* f_ = nullptr;
};

}  // namespace

PerplexityResult perplexity(const Model& model, const Tokenizer& tok, std::string_view text,
                            const PerplexityOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.n_ctx < 4) fail("perplexity: context size {} is too small", o.n_ctx);
  if (o.n_batch <= 0) fail("perplexity: batch size {} must be positive", o.n_batch);
  if (!o.kl_base_out.empty() && !o.kl_base_in.empty())
    fail("perplexity: a run either saves KL-divergence base values or compares with them, not both");
  const int n_ctx = o.n_ctx, n_batch = std::min(o.n_batch, n_ctx);
  const std::vector<int32_t> tokens = tok.encode(text, /*add_special=*/true, /*parse_special=*/false);
  PerplexityResult r;
  r.n_tokens = static_cast<int64_t>(tokens.size());
  if (r.n_tokens < 2 * static_cast<int64_t>(n_ctx))
    fail("perplexity: the text has {} tokens; {} (2 x the context {}) are needed", r.n_tokens, 2 * n_ctx, n_ctx);
  const int n_chunk_max = static_cast<int>(r.n_tokens / n_ctx);
  r.n_chunks = o.n_chunks > 0 ? std::min(o.n_chunks, n_chunk_max) : n_chunk_max;
  const bool add_bos = tok.add_bos() && tok.bos() >= 0;
  const int64_t n_vocab = model.hparams().n_vocab;
  const int first = n_ctx / 2;

  // The KL base file: its header must describe this very run (same text and tokenizer, same
  // context, same vocabulary), else the comparison would be of unrelated positions.
  std::unique_ptr<File> kl;
  const int32_t header[4] = {n_ctx, static_cast<int32_t>(n_vocab), r.n_chunks, static_cast<int32_t>(r.n_tokens)};
  if (!o.kl_base_out.empty()) {
    kl = std::make_unique<File>(o.kl_base_out, true);
    kl->put(kMagic, sizeof kMagic);
    kl->put(header, sizeof header);
    kl->put(tokens.data(), tokens.size() * sizeof(int32_t));
  } else if (!o.kl_base_in.empty()) {
    kl = std::make_unique<File>(o.kl_base_in, false);
    char magic[8];
    int32_t h[4];
    kl->get(magic, sizeof magic);
    if (std::memcmp(magic, kMagic, sizeof magic) != 0) fail("{}: not a KL-divergence base file", o.kl_base_in);
    kl->get(h, sizeof h);
    if (h[0] != n_ctx || h[1] != n_vocab || h[3] != r.n_tokens)
      fail("{}: saved with context {}, {} tokens of vocabulary, {} text tokens; this run has {}, {}, {}",
           o.kl_base_in, h[0], h[1], h[3], n_ctx, n_vocab, r.n_tokens);
    std::vector<int32_t> saved(tokens.size());
    kl->get(saved.data(), saved.size() * sizeof(int32_t));
    if (saved != tokens) fail("{}: saved from another text or tokenizer (the token ids differ)", o.kl_base_in);
    if (h[2] < r.n_chunks) r.n_chunks = h[2];
  }
  const size_t row_bytes = 3 * sizeof(float) + static_cast<size_t>(n_vocab) * sizeof(uint16_t);
  std::vector<uint8_t> row(kl ? row_bytes : 0);
  std::vector<double> klds;
  double nll_base = 0;
  int64_t same_top = 0;

  auto cache = model.make_cache(n_ctx, 1, n_batch, o.kv_types);
  ComputeContext ctx(std::max(1, o.n_threads));
  ctx.lora = o.lora.get();
  Batch batch;
  // Logits of the scored positions only: the output head is a large part of the work for small
  // models (a third of it for slm-docs-19m), and the first half of each chunk is never scored.
  std::vector<float> logits;
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  for (int c = 0; c < r.n_chunks; ++c) {
    const int64_t start = static_cast<int64_t>(c) * n_ctx;
    cache->truncate(0, 0);
    logits.assign(static_cast<size_t>(n_ctx - 1 - first) * n_vocab, 0.0f);
    size_t out_row = 0;
    for (int b0 = 0; b0 < n_ctx; b0 += n_batch) {
      const int b1 = std::min(n_ctx, b0 + n_batch);
      batch.clear();
      for (int j = b0; j < b1; ++j) {
        const int32_t t = (j == 0 && add_bos) ? tok.bos() : tokens[static_cast<size_t>(start + j)];
        batch.add(t, j, 0, j >= first && j < n_ctx - 1);
      }
      model.forward(ctx, batch, *cache, logits.data() + out_row * n_vocab);
      out_row += static_cast<size_t>(batch.n_outputs());
    }
    for (int j = first; j < n_ctx - 1; ++j) {
      const float* l = logits.data() + static_cast<size_t>(j - first) * n_vocab;
      const int32_t target = tokens[static_cast<size_t>(start + j + 1)];
      const Softmax s = softmax_of(l, n_vocab);
      const double v = -(static_cast<double>(l[target] - s.max_logit) - s.log_sum_exp);
      nll += v;
      nll2 += v * v;
      ++count;
      if (!o.kl_base_out.empty()) {
        // log p = l - max - lse, stored as min + step * q over [max - 16, max].
        float lo = l[0];
        for (int64_t i = 1; i < n_vocab; ++i) lo = std::min(lo, l[i]);
        lo = std::max(lo, s.max_logit - kLogProbRange);
        const float step = (s.max_logit - lo) / 65535.0f;
        const float min_lp = static_cast<float>(lo - s.max_logit - s.log_sum_exp);
        const float target_nll = static_cast<float>(v);
        std::memcpy(row.data(), &min_lp, sizeof(float));
        std::memcpy(row.data() + sizeof(float), &step, sizeof(float));
        std::memcpy(row.data() + 2 * sizeof(float), &target_nll, sizeof(float));
        uint16_t* q = reinterpret_cast<uint16_t*>(row.data() + 3 * sizeof(float));
        for (int64_t i = 0; i < n_vocab; ++i) {
          const float x = step > 0 ? (l[i] - lo) / step : 0.0f;
          q[i] = static_cast<uint16_t>(std::clamp(std::lround(x), 0L, 65535L));
        }
        kl->put(row.data(), row.size());
      } else if (!o.kl_base_in.empty()) {
        kl->get(row.data(), row.size());
        float min_lp, step, target_nll;
        std::memcpy(&min_lp, row.data(), sizeof(float));
        std::memcpy(&step, row.data() + sizeof(float), sizeof(float));
        std::memcpy(&target_nll, row.data() + 2 * sizeof(float), sizeof(float));
        const uint16_t* q = reinterpret_cast<const uint16_t*>(row.data() + 3 * sizeof(float));
        nll_base += target_nll;
        // KL(base || model) = sum_i p_base(i) (log p_base(i) - log p_model(i)).
        const double lse = static_cast<double>(s.max_logit) + s.log_sum_exp;
        double sum = 0;
        int32_t top_base = 0;
        float top_lp = 0;
        for (int64_t i = 0; i < n_vocab; ++i) {
          const float lp_base = step * q[i] + min_lp;
          if (i == 0 || lp_base > top_lp) {
            top_lp = lp_base;
            top_base = static_cast<int32_t>(i);
          }
          if (lp_base > -kLogProbRange) sum += std::exp(lp_base) * (lp_base - (l[i] - lse));
        }
        klds.push_back(sum);
        same_top += top_base == s.argmax;
      }
    }
    if (o.on_chunk) o.on_chunk(c, r.n_chunks, std::exp(nll / static_cast<double>(count)));
  }
  if (kl && !o.kl_base_out.empty()) kl->commit();
  r.n_scored = count;
  r.mean_nll = nll / static_cast<double>(count);
  r.ppl = std::exp(r.mean_nll);
  const double var = nll2 / static_cast<double>(count) - r.mean_nll * r.mean_nll;
  r.ppl_error = var > 0 && count > 1 ? std::sqrt(var / static_cast<double>(count - 1)) * r.ppl : 0.0;
  if (!klds.empty()) {
    r.has_kl = true;
    KlStats& k = r.kl;
    const double n = static_cast<double>(klds.size());
    k.base_ppl = std::exp(nll_base / n);
    k.ppl_ratio = r.ppl / k.base_ppl;
    double s = 0, s2 = 0;
    for (double x : klds) s += x, s2 += x * x;
    k.kld_mean = s / n;
    const double kvar = s2 / n - k.kld_mean * k.kld_mean;
    k.kld_error = kvar > 0 && n > 1 ? std::sqrt(kvar / (n - 1)) : 0.0;
    std::sort(klds.begin(), klds.end());
    auto pct = [&](double p) { return klds[static_cast<size_t>(p * (n - 1) + 0.5)]; };
    k.kld_max = klds.back();
    k.kld_p999 = pct(0.999);
    k.kld_p99 = pct(0.99);
    k.kld_median = pct(0.5);
    k.same_top = static_cast<double>(same_top) / n;
    k.same_top_error = n > 1 ? std::sqrt(k.same_top * (1 - k.same_top) / (n - 1)) : 0.0;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace slm
