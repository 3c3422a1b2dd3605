// Prompt attention (blocks::attend) on its own: a prompt of P tokens sent in batches of 512 to
// one layer over the F16 cache, as `slm bench -p P` runs it in every layer: Llama 3.2 1B's
// shape (32 query heads, 8 KV heads, 64 dimensions), Gemma 2 2B's (8 query heads, 4 KV heads,
// 256 dimensions, scores soft-capped at 50) and Phi-3 mini's (32 heads, each its own KV head,
// 96 dimensions). Reported in GFLOP/s of the causal products (q.k and
// p.v: 4 * n_head * head_dim flops per visible key and query). Run by hand:
//   ./slm_benches --benchmark_filter=attention
// and compare with the FMA peak: 16 lanes x 2 flops x 1 zmm FMA per cycle on Zen 4 (2 on an
// Intel core with two FMA units).
// attention-decode/: one token over a cache of P positions (what decoding does in every layer
// at depth P), for each pair of key and value types the cache takes (-ctk, -ctv), in GB/s of
// cache read.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "models/blocks.h"
#include "ops/compute.h"
#include "runtime/kv_cache.h"

namespace {

using namespace slm;

struct Shape {
  int64_t heads, heads_kv, dim;
  float softcap;
};
constexpr Shape kLlama1B{32, 8, 64, 0.0f}, kGemma2B{8, 4, 256, 50.0f}, kPhi3Mini{32, 32, 96, 0.0f};

blocks::AttentionSpec spec_of(const Shape& shape_of) {
  blocks::AttentionSpec spec;
  spec.n_head = shape_of.heads;
  spec.n_head_kv = shape_of.heads_kv;
  spec.head_dim_k = spec.head_dim_v = shape_of.dim;
  spec.scale = 1.0f / std::sqrt(static_cast<float>(shape_of.dim));
  spec.softcap = shape_of.softcap;
  spec.rope.n_rot = shape_of.dim;
  spec.rope.freq_base = 500000.0f;
  return spec;
}

void bm_attention(benchmark::State& st, Shape shape_of, int64_t prompt, int threads, KVTypes types = KVTypes(DType::F16)) {
  const int64_t kHeads = shape_of.heads, kHeadsKV = shape_of.heads_kv, kDim = shape_of.dim;
  constexpr int64_t kBatch = 512;
  const blocks::AttentionSpec spec = spec_of(shape_of);
  const KVShape shape{1, kHeadsKV * kDim, kHeadsKV * kDim, static_cast<int>(kHeadsKV)};
  auto cache = make_full_kv_cache(shape, static_cast<int>(prompt), 1, types);
  ComputeContext ctx(threads);
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  auto gaussian = [&](int64_t n) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& e : x) e = g(rng);
    return x;
  };
  const std::vector<float> q0 = gaussian(kBatch * kHeads * kDim), k0 = gaussian(kBatch * kHeadsKV * kDim),
                           v0 = gaussian(kBatch * kHeadsKV * kDim);
  std::vector<float> q, k, out(static_cast<size_t>(kBatch * kHeads * kDim));
  for (auto _ : st) {
    cache->truncate(0, 0);
    for (int64_t p0 = 0; p0 < prompt; p0 += kBatch) {
      Batch b;
      const int64_t n = std::min(kBatch, prompt - p0);
      for (int64_t t = 0; t < n; ++t) b.add(0, static_cast<int32_t>(p0 + t), 0, false);
      q = q0;
      k = k0;
      blocks::attend(ctx, b, *cache, 0, spec, q.data(), k.data(), v0.data(), out.data());
    }
    benchmark::DoNotOptimize(out.data());
  }
  const double keys = static_cast<double>(prompt) * (prompt + 1) / 2;  // visible keys, all queries
  st.counters["GFLOP/s"] = benchmark::Counter(4.0 * kHeads * kDim * keys / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// One decoding step's attention in one layer: the token at position P - 1 over the P cached
// positions, stored before the timing (random keys and values, each stored once).
void bm_attention_decode(benchmark::State& st, Shape shape_of, int64_t positions, KVTypes types) {
  const int64_t kHeads = shape_of.heads, kHeadsKV = shape_of.heads_kv, kDim = shape_of.dim;
  const blocks::AttentionSpec spec = spec_of(shape_of);
  const KVShape shape{1, kHeadsKV * kDim, kHeadsKV * kDim, static_cast<int>(kHeadsKV)};
  auto cache = make_full_kv_cache(shape, static_cast<int>(positions), 1, types);
  ComputeContext ctx(1);
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> k(static_cast<size_t>(kHeadsKV * kDim)), v(k.size());
  for (int32_t p = 0; p < positions; ++p) {
    for (auto& e : k) e = g(rng);
    for (auto& e : v) e = g(rng);
    cache->store(0, 0, p, k.data(), v.data());
  }
  std::vector<float> q0(static_cast<size_t>(kHeads * kDim)), q, kk, out(q0.size());
  for (auto& e : q0) e = g(rng);
  Batch b;
  b.add(0, static_cast<int32_t>(positions - 1), 0, false);
  for (auto _ : st) {
    q = q0;
    kk = k;  // the last position again (attend stores the batch's keys and values)
    blocks::attend(ctx, b, *cache, 0, spec, q.data(), kk.data(), v.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(cache->bytes()) / 1e9,
                                          benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_f16, kLlama1B, 2048, KVTypes(DType::F16))
    ->Name("attention-decode/llama1b/p2048/f16");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_q8_0, kLlama1B, 2048, KVTypes(DType::Q8_0))
    ->Name("attention-decode/llama1b/p2048/q8_0");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_q8_0_f16, kLlama1B, 2048, KVTypes(DType::Q8_0, DType::F16))
    ->Name("attention-decode/llama1b/p2048/q8_0-keys-f16-values");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_f16_q8_0, kLlama1B, 2048, KVTypes(DType::F16, DType::Q8_0))
    ->Name("attention-decode/llama1b/p2048/f16-keys-q8_0-values");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_f32, kLlama1B, 2048, KVTypes(DType::F32))
    ->Name("attention-decode/llama1b/p2048/f32");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_bf16, kLlama1B, 2048, KVTypes(DType::BF16))
    ->Name("attention-decode/llama1b/p2048/bf16");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_q4_0, kLlama1B, 2048, KVTypes(DType::Q4_0))
    ->Name("attention-decode/llama1b/p2048/q4_0");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_q4_1, kLlama1B, 2048, KVTypes(DType::Q4_1))
    ->Name("attention-decode/llama1b/p2048/q4_1");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_q5_0, kLlama1B, 2048, KVTypes(DType::Q5_0))
    ->Name("attention-decode/llama1b/p2048/q5_0");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_q5_1, kLlama1B, 2048, KVTypes(DType::Q5_1))
    ->Name("attention-decode/llama1b/p2048/q5_1");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_iq4_nl, kLlama1B, 2048, KVTypes(DType::IQ4_NL))
    ->Name("attention-decode/llama1b/p2048/iq4_nl");
BENCHMARK_CAPTURE(bm_attention_decode, llama1b_p2048_q8_0_q4_0, kLlama1B, 2048, KVTypes(DType::Q8_0, DType::Q4_0))
    ->Name("attention-decode/llama1b/p2048/q8_0-keys-q4_0-values");

BENCHMARK_CAPTURE(bm_attention, llama1b_p512_t1, kLlama1B, 512, 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_attention, llama1b_p2048_t1, kLlama1B, 2048, 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_attention, llama1b_p2048_t2, kLlama1B, 2048, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(bm_attention, llama1b_p2048_t1_q8_0, kLlama1B, 2048, 1, KVTypes(DType::Q8_0))
    ->Name("attention/llama1b_p2048_t1/q8_0")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_attention, llama1b_p2048_t1_q4_0, kLlama1B, 2048, 1, KVTypes(DType::Q4_0))
    ->Name("attention/llama1b_p2048_t1/q4_0")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_attention, llama1b_p2048_t1_q5_1, kLlama1B, 2048, 1, KVTypes(DType::Q5_1))
    ->Name("attention/llama1b_p2048_t1/q5_1")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_attention, llama1b_p2048_t1_f32, kLlama1B, 2048, 1, KVTypes(DType::F32))
    ->Name("attention/llama1b_p2048_t1/f32")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_attention, gemma2b_p2048_t1, kGemma2B, 2048, 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_attention, phi3mini_p2048_t1, kPhi3Mini, 2048, 1)->Unit(benchmark::kMillisecond);

}  // namespace
