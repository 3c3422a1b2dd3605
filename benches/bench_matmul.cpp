// Google Benchmark micro-benchmarks of the matrix products on the shapes of a 1B Llama
// (n_embd 2048, n_ff 8192): one token (decode, reported as weight GB/s) and many tokens
// (prefill, reported as GOP/s, 2 per multiply-add), for each weight type and each instruction
// set level this CPU supports, plus the activation quantizers. Not a test: run it by hand,
//   ./slm_benches --benchmark_filter='q4_0/8192x2048'   (SLM_BENCH_THREADS, default 2)
// and compare with the machine's limits (memory bandwidth for GB/s, int8 / fp32 peak for GOP/s).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "kernels/ref/quants.h"
#include "ops/ops.h"

namespace {

using namespace slm;
using kern::Isa;

int bench_threads() {
  const char* s = std::getenv("SLM_BENCH_THREADS");
  return s && *s ? std::atoi(s) : 2;
}

std::vector<float> gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = g(rng);
  return x;
}

// Random matrices, encoded once per (type, shape) and shared by every benchmark on them.
struct Matrix {
  std::vector<uint8_t> bytes;
  Weight w;
};
const Weight& matrix(DType type, int64_t n_out, int64_t n_in) {
  static std::map<std::tuple<DType, int64_t, int64_t>, std::unique_ptr<Matrix>> cache;
  auto& slot = cache[{type, n_out, n_in}];
  if (!slot) {
    slot = std::make_unique<Matrix>();
    const size_t row_bytes = row_size(type, n_in);
    slot->bytes.resize(row_bytes * n_out);
    const std::vector<float> f = gaussian(static_cast<size_t>(n_in) * 64, 1);
    // 64 distinct rows, repeated: encoding 16M values with the K-quant searches takes long.
    for (int64_t o = 0; o < n_out; ++o)
      type_traits(type).from_float(f.data() + (o % 64) * n_in, slot->bytes.data() + o * row_bytes, n_in);
    slot->w.name = "bench";
    slot->w.type = type;
    slot->w.n_in = n_in;
    slot->w.n_out = n_out;
    slot->w.data = slot->bytes.data();
    slot->w.row_bytes = row_bytes;
  }
  return slot->w;
}

// panels_only: every token count through the panel kernels, as a server's scheduler runs them
// (ComputeContext::set_row_kernels(false)).
void bm_matmul(benchmark::State& st, DType type, int64_t n_out, int64_t n_in, int64_t n_tok, Isa isa,
               bool panels_only) {
  if (!kern::isa_supported(isa)) {
    st.SkipWithError("instruction set not supported here");
    return;
  }
  kern::set_active_isa(isa);
  const Weight& w = matrix(type, n_out, n_in);
  ComputeContext ctx(bench_threads());
  ctx.set_row_kernels(!panels_only);
  const std::vector<float> x = gaussian(static_cast<size_t>(n_in * n_tok), 2);
  std::vector<float> y(static_cast<size_t>(n_out * n_tok));
  matmul(ctx, w, x.data(), n_tok, y.data());  // packs the weights, sizes the scratch
  for (auto _ : st) {
    matmul(ctx, w, x.data(), n_tok, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double bytes = static_cast<double>(w.row_bytes) * n_out;
  const double ops = 2.0 * n_out * n_in * n_tok;
  st.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GOP/s"] = benchmark::Counter(ops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["tok/s"] = benchmark::Counter(static_cast<double>(n_tok), benchmark::Counter::kIsIterationInvariantRate);
}

// Decoding as a model does it: one token through a stack of distinct matrices (256 MB in all,
// far beyond the caches), so the weights stream from memory. GB/s against memory bandwidth.
void bm_decode(benchmark::State& st, DType type, int64_t n_out, int64_t n_in, Isa isa) {
  if (!kern::isa_supported(isa)) {
    st.SkipWithError("instruction set not supported here");
    return;
  }
  kern::set_active_isa(isa);
  const Weight& w0 = matrix(type, n_out, n_in);
  const size_t bytes = w0.row_bytes * n_out;
  const int n_mats = static_cast<int>((size_t{256} << 20) / bytes) + 1;
  std::vector<std::vector<uint8_t>> copies(n_mats, std::vector<uint8_t>(w0.data, w0.data + bytes));
  std::vector<Weight> ws(n_mats, w0);
  for (int i = 0; i < n_mats; ++i) ws[i].data = copies[i].data();
  ComputeContext ctx(bench_threads());
  const std::vector<float> x = gaussian(static_cast<size_t>(n_in), 2);
  std::vector<float> y(static_cast<size_t>(n_out));
  for (const Weight& w : ws) matmul(ctx, w, x.data(), 1, y.data());  // pack
  for (auto _ : st) {
    for (const Weight& w : ws) matmul(ctx, w, x.data(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * n_mats / 1e9,
                                          benchmark::Counter::kIsIterationInvariantRate);
  st.counters["us/matmul"] = benchmark::Counter(1e6 / n_mats, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void bm_quantize(benchmark::State& st, DType act_type, Isa isa) {
  const kern::Kernels* k = kern::for_isa(isa);
  if (!k) {
    st.SkipWithError("instruction set not supported here");
    return;
  }
  const int64_t n = 8192;
  const std::vector<float> x = gaussian(n, 3);
  std::vector<uint8_t> out(row_size(act_type, n));
  kern::QuantizeFn fn = act_type == DType::Q8_0 ? k->quantize_q8_0 : k->quantize_q8_K;
  if (isa == Isa::Scalar) fn = act_type == DType::Q8_0 ? ref::from_float_q8_0_x86 : ref::from_float_q8_K;
  for (auto _ : st) {
    fn(x.data(), out.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["GB/s"] = benchmark::Counter(n * 4 / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  const DType types[] = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                         DType::IQ4_XS, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL,
                         DType::Q2_K, DType::Q3_K, DType::F16, DType::BF16, DType::F32};
  struct Shape { int64_t n_out, n_in; };
  const Shape shapes[] = {{2048, 2048}, {8192, 2048}, {2048, 8192}};
  // amx: skipped where the CPU has none (its tile products serve 16 tokens or more).
  const Isa simd[] = {Isa::Amx, Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2};
  for (DType t : types) {
    for (const Shape& s : shapes) {
      const std::string base = "matmul/" + dtype_name(t) + "/" + std::to_string(s.n_out) + "x" +
                               std::to_string(s.n_in) + "/t";
      for (int64_t n_tok : {1, 8, 64, 512}) {
        for (Isa isa : simd)
          benchmark::RegisterBenchmark((base + std::to_string(n_tok) + "/" + kern::isa_name(isa)).c_str(),
                                       bm_matmul, t, s.n_out, s.n_in, n_tok, isa, false)
              ->UseRealTime()->Unit(benchmark::kMillisecond);
        // The scalar path is slow: 64 tokens measure its rate well enough.
        if (n_tok < 512)
          benchmark::RegisterBenchmark((base + std::to_string(n_tok) + "/scalar").c_str(), bm_matmul,
                                       t, s.n_out, s.n_in, n_tok, Isa::Scalar, false)
              ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.2);
      }
    }
  }
  for (DType t : types)
    for (Isa isa : {Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2, Isa::Scalar})
      benchmark::RegisterBenchmark(("decode/" + dtype_name(t) + "/2048x2048/" + kern::isa_name(isa)).c_str(),
                                   bm_decode, t, 2048, 2048, isa)
          ->UseRealTime()->Unit(benchmark::kMillisecond);
  // A server's decoding step through Llama 3.2 1B's output head (128256 x 2048; 215 MB as
  // Q6_K, far past the caches), one row per generating sequence, through the panel kernels.
  for (DType t : {DType::Q6_K, DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q3_K, DType::Q2_K,
                  DType::Q5_0})
    for (int64_t n_tok : {1, 4, 8})
      benchmark::RegisterBenchmark(("head/" + dtype_name(t) + "/128256x2048/t" + std::to_string(n_tok)).c_str(),
                                   bm_matmul, t, 128256, 2048, n_tok, Isa::Avx512Vnni, true)
          ->UseRealTime()->Unit(benchmark::kMillisecond);
  // The same head, one token, through the row kernels (the types that have them): what decoding
  // reads before a prompt has made the matrix repacked.
  for (DType t : {DType::Q6_K, DType::Q4_0, DType::Q8_0, DType::Q5_0})
    benchmark::RegisterBenchmark(("head-rows/" + dtype_name(t) + "/128256x2048/t1").c_str(), bm_matmul, t,
                                 128256, 2048, 1, Isa::Avx512Vnni, false)
        ->UseRealTime()->Unit(benchmark::kMillisecond);
  for (DType a : {DType::Q8_0, DType::Q8_K})
    for (Isa isa : {Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2, Isa::Scalar})
      benchmark::RegisterBenchmark(("quantize/" + dtype_name(a) + "/" + kern::isa_name(isa)).c_str(),
                                   bm_quantize, a, isa);
}

}  // namespace

int main(int argc, char** argv) {  // registers these and the BENCHMARK()s of the other files
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
