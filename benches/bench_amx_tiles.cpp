// What single tile-unit instructions cost on this CPU, and which of them overlap vector work:
// the figures behind the amx kernels' design (kernels/x86_amx/panels_amx.cpp, and the AMX
// section of docs/performance.md). One thread; `ns_per_op` is per instruction (or per group
// of 16 vector rows). Skips where the CPU has no usable AMX.
//   ./slm_benches --benchmark_filter=amx_tiles
//
// Inline assembly rather than the AMX intrinsics, so that this file needs no -mamx flags (the
// assembler knows the instructions whatever the compiler was told); the vector part is
// compiled for AVX-512 by a target attribute and runs only where AMX (hence AVX-512) is.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>

#include "kernels/isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

namespace {

using slm::kern::Isa;

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Eight 16 x 64-byte tiles: A in 0 and 1, B in 2 and 3, C in 4 to 7 (K = 64).
void configure() {
  TileConfig cfg;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = 64;
  }
  asm volatile("ldtilecfg %0" ::"m"(cfg));
}
void release() { asm volatile("tilerelease" ::: "memory"); }

alignas(64) uint8_t g_a[64 * 1024];
alignas(64) int32_t g_c[8 * 256];
alignas(64) float g_rows[16 * 16];

constexpr int kOps = 64;  // instructions per benchmark iteration

bool ready(benchmark::State& st) {
  if (!slm::kern::isa_supported(Isa::Amx)) {
    st.SkipWithError("no usable AMX on this CPU");
    return false;
  }
  configure();
  return true;
}

void per_op(benchmark::State& st, int ops) {
  st.counters["ns_per_op"] =
      benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// TDPBSSD into four C tiles in turn (16 x 16 x 64 int8 products).
void bm_product(benchmark::State& st) {
  if (!ready(st)) return;
  for (auto _ : st)
    for (int i = 0; i < kOps / 4; ++i)
      asm volatile(
          "tdpbssd %%tmm2, %%tmm0, %%tmm4\n\t"
          "tdpbssd %%tmm3, %%tmm1, %%tmm5\n\t"
          "tdpbssd %%tmm2, %%tmm0, %%tmm6\n\t"
          "tdpbssd %%tmm3, %%tmm1, %%tmm7" ::);
  release();
  per_op(st, kOps);
}

// TILESTORED of a 16 x 64-byte C tile.
void bm_store(benchmark::State& st) {
  if (!ready(st)) return;
  for (auto _ : st)
    for (int i = 0; i < kOps; ++i) asm volatile("tilestored %%tmm4, (%0,%1,1)" ::"r"(g_c), "r"(size_t{64}) : "memory");
  release();
  per_op(st, kOps);
}

// TILELOADD of 16 rows of 64 bytes, from L1.
void bm_load(benchmark::State& st) {
  if (!ready(st)) return;
  for (auto _ : st)
    for (int i = 0; i < kOps; ++i)
      asm volatile("tileloadd (%0,%1,1), %%tmm0" ::"r"(g_a + (i & 15) * 1024), "r"(size_t{64}) : "memory");
  release();
  per_op(st, kOps);
}

void bm_zero(benchmark::State& st) {
  if (!ready(st)) return;
  for (auto _ : st)
    for (int i = 0; i < kOps; ++i) asm volatile("tilezero %%tmm5" ::);
  release();
  per_op(st, kOps);
}

// 16 rows of the kernels' epilogue: load a row of int32 sums, convert, scale, accumulate.
// (The pointers go through an empty asm so that nothing is hoisted out of the benchmark loop;
// the masked conversion avoids GCC 12's false "uninitialized" warning about the plain one.)
__attribute__((target("avx512f"))) inline void epilogue_rows(const int32_t* c, const float* scales, __m512* acc) {
  asm volatile("" : "+r"(c), "+r"(scales));
  const __m512 s = _mm512_set1_ps(0.5f);
#pragma GCC unroll 16
  for (int t = 0; t < 16; ++t)
    acc[t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_load_si512(c + t * 16)),
                             _mm512_mul_ps(s, _mm512_set1_ps(scales[t])), acc[t]);
}

// The epilogue alone, and after a tile store of another buffer: a store does not overlap the
// vector loads that follow it (the second takes about the sum of the first and bm_store).
template <bool kStore>
__attribute__((target("avx512f"))) void bm_epilogue(benchmark::State& st) {
  if (!ready(st)) return;
  __m512 acc[16];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (auto _ : st) {
    for (int i = 0; i < kOps; ++i) {
      if constexpr (kStore) asm volatile("tilestored %%tmm4, (%0,%1,1)" ::"r"(g_c), "r"(size_t{64}) : "memory");
      epilogue_rows(g_c + 1024, g_rows, acc);
    }
  }
  float sink[16];
  _mm512_storeu_ps(sink, acc[0]);
  benchmark::DoNotOptimize(sink);
  release();
  per_op(st, kOps);
}

BENCHMARK(bm_product)->Name("amx_tiles/tdpbssd");
BENCHMARK(bm_store)->Name("amx_tiles/tilestored");
BENCHMARK(bm_load)->Name("amx_tiles/tileloadd");
BENCHMARK(bm_zero)->Name("amx_tiles/tilezero");
BENCHMARK(bm_epilogue<false>)->Name("amx_tiles/epilogue_16_rows");
BENCHMARK(bm_epilogue<true>)->Name("amx_tiles/tilestored_then_epilogue_16_rows");

}  // namespace

#endif
