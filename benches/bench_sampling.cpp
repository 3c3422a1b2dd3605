// What choosing a token costs, per sampling configuration, over Llama 3's 128,256-token
// vocabulary (gaussian logits, scale 2): llama.cpp's defaults (top-k 40, top-p 0.95, min-p
// 0.05), top-p alone over the whole vocabulary, the optional stages (typical, XTC,
// top-n-sigma), mirostat 1 and 2, and DRY over 4,000 tokens of history.
//   ./slm_benches --benchmark_filter=sampling
#include <benchmark/benchmark.h>

#include <random>
#include <utility>
#include <vector>

#include "sampling/sampler.h"

namespace {

constexpr int kVocab = 128256;

std::vector<float> logits() {
  std::mt19937 rng(51);
  std::normal_distribution<float> g(0.0f, 2.0f);
  std::vector<float> l(kVocab);
  for (float& x : l) x = g(rng);
  return l;
}

// The same logits, five times as far apart: the mass in a few hundred tokens, as after a
// confident model's step.
std::vector<float> peaked_logits() {
  std::vector<float> l = logits();
  for (float& x : l) x *= 5.0f;
  return l;
}

void bm_sample_from(benchmark::State& st, slm::SamplerParams p, const std::vector<float>& l) {
  p.seed = 1;
  slm::Sampler s(p, kVocab);
  if (p.dry_multiplier > 0)
    for (int i = 0; i < 4000; ++i) s.accept((i * 7919) % 5000);
  for (auto _ : st) {
    const int32_t t = s.sample(l.data());
    s.accept(t);
    benchmark::DoNotOptimize(t);
  }
}

void bm_sample(benchmark::State& st, slm::SamplerParams p) {
  static const std::vector<float> l = logits();
  bm_sample_from(st, std::move(p), l);
}

void bm_sample_peaked(benchmark::State& st, slm::SamplerParams p) {
  static const std::vector<float> l = peaked_logits();
  bm_sample_from(st, std::move(p), l);
}

slm::SamplerParams whole_vocabulary() {
  slm::SamplerParams p;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

slm::SamplerParams defaults() { return {}; }
slm::SamplerParams top_p_alone() {
  slm::SamplerParams p = whole_vocabulary();
  p.top_p = 0.95f;
  return p;
}
slm::SamplerParams optional_stages() {
  slm::SamplerParams p = whole_vocabulary();
  p.typical_p = 0.9f;
  p.xtc_probability = 0.5f;
  p.top_n_sigma = 3.0f;
  return p;
}
slm::SamplerParams mirostat(int v) {
  slm::SamplerParams p;
  p.mirostat = v;
  return p;
}
slm::SamplerParams dry() {
  slm::SamplerParams p;
  p.dry_multiplier = 0.8f;
  p.dry_breakers_resolved = true;
  return p;
}

BENCHMARK_CAPTURE(bm_sample, defaults, defaults())->Name("sampling/128k/defaults");
BENCHMARK_CAPTURE(bm_sample, top_p, top_p_alone())->Name("sampling/128k/top-p-0.95-alone");
BENCHMARK_CAPTURE(bm_sample_peaked, top_p_peaked, top_p_alone())->Name("sampling/128k/top-p-0.95-alone-peaked");
BENCHMARK_CAPTURE(bm_sample, stages, optional_stages())->Name("sampling/128k/typical-xtc-top-n-sigma");
BENCHMARK_CAPTURE(bm_sample, mirostat1, mirostat(1))->Name("sampling/128k/mirostat-1");
BENCHMARK_CAPTURE(bm_sample, mirostat2, mirostat(2))->Name("sampling/128k/mirostat-2");
BENCHMARK_CAPTURE(bm_sample, dry, dry())->Name("sampling/128k/defaults-dry-4000");

}  // namespace
