// The F32 products of training (ops/gemm.h) on the shapes a small model's backward pass needs:
// 1024 tokens through matrices of 384 / 1024 / 16384 columns, in each layout the passes use
// (NN: dx = dy W, NT: y = x W^T, TN: dW = dy^T x), on 1 and 2 threads, reported in GFLOP/s;
// and the product through a frozen Q4_0 weight's transpose. Run by hand:
//   ./slm_benches --benchmark_filter='sgemm|matmul_transposed'
// and compare with the FMA peak: 2 x 16 lanes x 2 flops per cycle per core on AVX-512.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "ops/compute.h"
#include "ops/gemm.h"

namespace {

using namespace slm;

std::vector<float> gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = g(rng);
  return x;
}

void bm_sgemm(benchmark::State& st, bool ta, bool tb, int64_t M, int64_t N, int64_t K, int threads) {
  ThreadPool pool(threads);
  const std::vector<float> A = gaussian(static_cast<size_t>(M * K), 1), B = gaussian(static_cast<size_t>(K * N), 2);
  std::vector<float> C(static_cast<size_t>(M * N));
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  sgemm(pool, ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), N);  // warm the scratch
  for (auto _ : st) {
    sgemm(pool, ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_matmul_transposed(benchmark::State& st, DType type, int64_t n_out, int64_t n_in, int64_t n_tok,
                          int threads) {
  const TypeTraits& tt = type_traits(type);
  const size_t row_bytes = row_size(type, n_in);
  std::vector<uint8_t> bytes(row_bytes * n_out);
  const std::vector<float> f = gaussian(static_cast<size_t>(n_in) * 64, 3);
  for (int64_t o = 0; o < n_out; ++o) tt.from_float(f.data() + (o % 64) * n_in, bytes.data() + o * row_bytes, n_in);
  Weight w;
  w.name = "bench";
  w.type = type;
  w.n_in = n_in;
  w.n_out = n_out;
  w.data = bytes.data();
  w.row_bytes = row_bytes;
  ComputeContext ctx(threads);
  const std::vector<float> dy = gaussian(static_cast<size_t>(n_tok * n_out), 4);
  std::vector<float> dx(static_cast<size_t>(n_tok * n_in));
  matmul_transposed(ctx, w, dy.data(), n_tok, dx.data(), false);
  for (auto _ : st) {
    matmul_transposed(ctx, w, dy.data(), n_tok, dx.data(), false);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n_out * n_in * n_tok / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

[[maybe_unused]] const bool registered = [] {
  struct Shape { int64_t n, k; };
  for (const Shape s : {Shape{384, 384}, Shape{1024, 384}, Shape{384, 1024}, Shape{16384, 384}})
    for (const char* layout : {"NN", "NT", "TN"})
      for (int threads : {1, 2}) {
        const std::string name = std::string("sgemm/") + layout + "/1024x" + std::to_string(s.n) + "x" +
                                 std::to_string(s.k) + "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), bm_sgemm, layout[0] == 'T', layout[1] == 'T', int64_t{1024},
                                     s.n, s.k, threads)
            ->UseRealTime()->Unit(benchmark::kMillisecond);
      }
  for (int threads : {1, 2})
    benchmark::RegisterBenchmark(("matmul_transposed/q4_0/2048x8192/t1024/threads:" + std::to_string(threads)).c_str(),
                                 bm_matmul_transposed, DType::Q4_0, int64_t{2048}, int64_t{8192}, int64_t{1024},
                                 threads)
        ->UseRealTime()->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
