// What one parallel_for costs the matrix products: decoding a 1B Llama makes about 115 of them
// per token (7 matmuls per layer), so tens of microseconds each add up to milliseconds.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "core/thread_pool.h"

namespace {

void bm_parallel_for_empty(benchmark::State& st) {
  slm::ThreadPool pool(static_cast<int>(st.range(0)));
  for (auto _ : st) {
    pool.parallel_for(64, [](int64_t b, int64_t e, int) { benchmark::DoNotOptimize(b + e); });
  }
}
BENCHMARK(bm_parallel_for_empty)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace
