// What a context shift costs the cache (KVCache::shift, `--context-shift`): the 1B Llama shape
// (16 layers, 8 KV heads of 64), a full context of n_ctx positions, the first one kept and half
// of the rest dropped, the keys of the other half rotated by RoPE and moved, their values moved.
// Against this, evaluating those tokens again (--context-shift-reeval) costs a prompt batch of
// ~n_ctx / 2 tokens: seconds at 2048 on two cores (docs/performance.md).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "models/model.h"
#include "ops/ops.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace {

void bm_kv_shift(benchmark::State& state) {
  const int n_ctx = static_cast<int>(state.range(0));
  const auto type = static_cast<slm::DType>(state.range(1));
  const slm::KVShape shape{16, 512, 512, 8};
  slm::RingKVCache cache(shape, std::vector<int32_t>(16, 0), n_ctx, 1, 1, type);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> k(512), v(512);
  for (int p = 0; p < n_ctx; ++p) {
    for (float& x : k) x = normal(rng);
    for (float& x : v) x = normal(rng);
    for (int l = 0; l < 16; ++l) cache.store(l, 0, p, k.data(), v.data());
  }
  const std::string full = cache.save_seq(0);
  slm::RopeParams rope;
  rope.mode = slm::RopeMode::Normal;
  rope.n_rot = 64;
  rope.freq_base = 500000.0f;
  const slm::KVCache::KeyRotation rotate = [&](int, float* keys, int64_t rows, int32_t delta) {
    slm::rope(keys, rows * 8, 64, -delta, rope);
  };
  const int32_t n_discard = (n_ctx - 1) / 2;
  for (auto _ : state) {
    state.PauseTiming();
    cache.restore_seq(0, full);
    state.ResumeTiming();
    if (!cache.shift(0, 1, n_discard, rotate)) state.SkipWithError("the cache refused the shift");
  }
  state.SetLabel(slm::dtype_name(type) + " cache, " + std::to_string(n_ctx - 1 - n_discard) + " positions moved");
}

BENCHMARK(bm_kv_shift)
    ->Name("kv_cache/shift")
    ->ArgsProduct({{2048, 8192}, {static_cast<int64_t>(slm::DType::F16), static_cast<int64_t>(slm::DType::Q8_0),
                                  static_cast<int64_t>(slm::DType::Q4_0)}})
    ->Unit(benchmark::kMillisecond);


// What a context shift costs in quality: a real model reads a long text token by token, as it
// would generate it, in a context of range(0) positions that shifts when full (the BOS token
// kept, half of the rest dropped), and the text's perplexity is reported (counter "ppl"):
// range(1) 0 with the keys rotated (the default), 1 with what stays evaluated again
// (--context-shift-reeval). Keep range(0) within the model's training context (512 for
// slm-docs-19m: past it, positions alone make the text much less likely). Needs
//   SLM_BENCH_MODEL=slm-docs-19m.gguf SLM_BENCH_TEXT=eval-docs.txt [SLM_BENCH_TOKENS=4096]
//   [SLM_BENCH_KV_TYPE=f16|q8_0|q4_0|...: the cache's type for keys and values]
void bm_kv_shift_quality(benchmark::State& state) {
  const char* model_path = std::getenv("SLM_BENCH_MODEL");
  const char* text_path = std::getenv("SLM_BENCH_TEXT");
  if (!model_path || !*model_path || !text_path || !*text_path) {
    state.SkipWithError("set SLM_BENCH_MODEL to a GGUF model and SLM_BENCH_TEXT to a text file");
    return;
  }
  const char* n_env = std::getenv("SLM_BENCH_TOKENS");
  const size_t n_tokens = n_env && *n_env ? std::stoul(n_env) : 4096;
  auto model = slm::Model::load(model_path);
  auto tok = slm::Tokenizer::from_gguf(model->gguf());
  std::ifstream in(text_path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int32_t> ids = tok->encode(text, true, false);
  if (ids.size() > n_tokens) ids.resize(n_tokens);
  const int mode = static_cast<int>(state.range(1));
  const int n_ctx = static_cast<int>(state.range(0));
  slm::KVTypes kv_types = slm::DType::F16;
  if (const char* t = std::getenv("SLM_BENCH_KV_TYPE"); t && *t) {
    const slm::KvCacheType* found = nullptr;
    for (const slm::KvCacheType& c : slm::kv_cache_types())
      if (slm::dtype_name(c.type) == t) found = &c;
    if (!found) {
      state.SkipWithError(("SLM_BENCH_KV_TYPE must be one of " + slm::kv_cache_type_names()).c_str());
      return;
    }
    kv_types = found->type;
  }
  const int64_t n_vocab = model->hparams().n_vocab;
  double nll = 0;
  int shifts = 0;
  for (auto _ : state) {
    slm::SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_threads = 2;
    so.n_batch = 512;
    so.kv_types = kv_types;
    slm::Session s(*model, so);
    nll = 0;
    shifts = 0;
    const std::vector<float>* logits = &s.eval(std::span<const int32_t>(ids.data(), 1));
    for (size_t i = 1; i < ids.size(); ++i) {
      const float* l = logits->data();
      const float mx = *std::max_element(l, l + n_vocab);
      double sum = 0;
      for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(l[v]) - mx);
      nll += std::log(sum) + mx - l[ids[i]];
      if (s.n_past() >= n_ctx) {
        const slm::ContextShiftPlan plan = slm::plan_context_shift(s.tokens(), 1, ids[i]);
        ++shifts;
        if (mode == 0 && s.shift(plan.n_keep, plan.n_discard)) {
          logits = &s.eval(std::span<const int32_t>(&ids[i], 1));
          continue;
        }
        s.truncate(plan.n_keep);
        logits = &s.eval(std::span<const int32_t>(plan.tokens).subspan(static_cast<size_t>(s.n_past())));
        continue;
      }
      logits = &s.eval(std::span<const int32_t>(&ids[i], 1));
    }
  }
  state.counters["ppl"] = std::exp(nll / static_cast<double>(ids.size() - 1));
  state.counters["shifts"] = shifts;
  state.counters["tokens"] = static_cast<double>(ids.size());
  state.SetLabel(std::string(mode == 0 ? "keys rotated" : "evaluated again") + ", " + slm::kv_types_name(kv_types) +
                 " cache");
}

BENCHMARK(bm_kv_shift_quality)
    ->Name("kv_cache/shift_quality")
    ->ArgsProduct({{128, 256, 512}, {0, 1}})
    ->Iterations(1)
    ->Unit(benchmark::kSecond);

}  // namespace
