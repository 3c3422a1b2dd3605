// Float weight types (F32, F16, BF16) on their row-major layout as mapped: no repacking.
//
// One token (decode) is bound by memory bandwidth: rows are widened to f32 in registers and
// multiplied with the f32 activations (more exact than llama.cpp, which rounds activations to
// the weight type). Several tokens (prefill) use a register tile of kR rows x kT tokens whose
// accumulators each hold one (row, token) dot product, so every weight vector loaded serves
// kT tokens and every activation vector kR rows; the lanes are summed once per tile.
// With AVX512_BF16, BF16 weights run on VDPBF16PS (two products per lane and instruction,
// twice the rate of f32 FMA) with activations rounded to bf16, as llama.cpp does. The kernel
// can also take F16 weights converted to bf16 per group of kR rows into per-thread scratch;
// that is not enabled (see register_float).
#include "kernels/x86/simd.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

enum WType { kF32, kF16, kBF16 };

#if defined(__AVX512F__)
constexpr int kR = 4, kT = 6;
#else
constexpr int kR = 2, kT = 4;
#endif

// kLanes weights from index k of a row, widened to f32.
template <int W>
inline VF wload(const uint8_t* row, int64_t k) {
  if constexpr (W == kF32) {
    return loadf(reinterpret_cast<const float*>(row) + k);  // loadu: any alignment
  } else if constexpr (W == kF16) {
    return load_h(row + 2 * k);
  } else {
#if defined(__AVX512F__)
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
#else
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
#endif
  }
}

// Sums of the lanes of v[0..n), into out[0..n).
template <int N>
inline void hsums(const VF* v, float* out) {
#if defined(__AVX512F__)
  if constexpr (N == 4) {
    // Transposing reduction: four vectors to one with each 128-bit quarter holding a vector's
    // partial sums, then two in-lane steps. Three operations per sum instead of eight.
    const __m512 x0 = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x44), _mm512_shuffle_f32x4(v[0], v[1], 0xEE));
    const __m512 x1 = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], 0x44), _mm512_shuffle_f32x4(v[2], v[3], 0xEE));
    __m512 y = _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, 0x88), _mm512_shuffle_f32x4(x0, x1, 0xDD));
    y = _mm512_add_ps(y, _mm512_permute_ps(y, 0x4E));
    y = _mm512_add_ps(y, _mm512_permute_ps(y, 0xB1));
    alignas(64) float tmp[16];
    _mm512_store_ps(tmp, y);
    for (int i = 0; i < 4; ++i) out[i] = tmp[4 * i];
    return;
  }
#endif
  for (int i = 0; i < N; ++i) out[i] = hsum(v[i]);
}

// ---- one token --------------------------------------------------------------------------------

template <int W>
void gemv(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in, const float* x,
          float* y) {
  constexpr int R = 4;
  int64_t r = r0;
  for (; r + R <= r1; r += R) {
    VF acc[R];
    for (int i = 0; i < R; ++i) acc[i] = fzero();
    const uint8_t* rows = w + r * row_bytes;
    constexpr int64_t kEb = W == kF32 ? 4 : 2;  // bytes per weight
    for (int64_t k = 0; k < n_in; k += kLanes) {
      // Prefetch each row's stream 4 KiB ahead, once per cache line (see panel_driver.h).
      if ((k * kEb) % 64 == 0)
        for (int i = 0; i < R; ++i)
          prefetch_at(rows, i * row_bytes + k * kEb + 4096);
      const VF xv = loadf(x + k);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) acc[i] = fmadd(wload<W>(rows + i * row_bytes, k), xv, acc[i]);
    }
    float s[R];
    hsums<R>(acc, s);
    for (int i = 0; i < R; ++i) y[r + i] = s[i];
  }
  for (; r < r1; ++r) {
    VF acc = fzero();
    for (int64_t k = 0; k < n_in; k += kLanes) acc = fmadd(wload<W>(w + r * row_bytes, k), loadf(x + k), acc);
    y[r] = hsum(acc);
  }
}

// ---- several tokens, f32 FMA ------------------------------------------------------------------

template <int W, int NR, int NT>
void tile_f32(const uint8_t* const* rows, const float* act, int64_t n_in, float* y, int64_t ldy) {
  VF acc[NR][NT];
  for (int i = 0; i < NR; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = fzero();
  for (int64_t k = 0; k < n_in; k += kLanes) {
    VF wv[NR];
#pragma GCC unroll 4
    for (int i = 0; i < NR; ++i) wv[i] = wload<W>(rows[i], k);
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const VF a = loadf(act + t * n_in + k);
#pragma GCC unroll 4
      for (int i = 0; i < NR; ++i) acc[i][t] = fmadd(wv[i], a, acc[i][t]);
    }
  }
  for (int t = 0; t < NT; ++t) {
    VF v[NR];
    for (int i = 0; i < NR; ++i) v[i] = acc[i][t];
    float s[NR];
    hsums<NR>(v, s);
    for (int i = 0; i < NR; ++i) y[t * ldy + i] = s[i];
  }
}

#if defined(__AVX512BF16__)
// ---- several tokens, VDPBF16PS (rows and activations already bf16) ---------------------------

template <int NR, int NT>
void tile_bf16(const uint8_t* const* rows, const uint16_t* act, int64_t n_in, float* y, int64_t ldy) {
  __m512 acc[NR][NT];
  for (int i = 0; i < NR; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < n_in; k += 32) {
    __m512bh wv[NR];
#pragma GCC unroll 4
    for (int i = 0; i < NR; ++i) wv[i] = (__m512bh)_mm512_loadu_si512(rows[i] + 2 * k);
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const __m512bh a = (__m512bh)_mm512_loadu_si512(act + t * n_in + k);
#pragma GCC unroll 4
      for (int i = 0; i < NR; ++i) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], wv[i], a);
    }
  }
  for (int t = 0; t < NT; ++t) {
    VF v[NR];
    for (int i = 0; i < NR; ++i) v[i] = acc[i][t];
    float s[NR];
    hsums<NR>(v, s);
    for (int i = 0; i < NR; ++i) y[t * ldy + i] = s[i];
  }
}

void to_bf16(const float* x, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(dst + i, (__m512i)v);
  }
  for (; i < n; ++i) {  // RNE like VCVTNE2PS2BF16 (NaN aside)
    uint32_t u;
    std::memcpy(&u, &x[i], 4);
    dst[i] = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
}

void f16_rows_to_bf16(const uint8_t* src, int64_t n_in, uint16_t* dst) {
  for (int64_t k = 0; k < n_in; k += 32) {
    const __m512 lo = load_h(src + 2 * k), hi = load_h(src + 2 * k + 32);
    _mm512_storeu_si512(dst + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
}
#endif

template <int NR, int NT, int W, bool kBf16>
inline void run_tile(const uint8_t* const* rows, const void* act, int64_t n_in, float* y, int64_t ldy) {
#if defined(__AVX512BF16__)
  if constexpr (kBf16) {
    tile_bf16<NR, NT>(rows, static_cast<const uint16_t*>(act), n_in, y, ldy);
    return;
  }
#endif
  if constexpr (!kBf16) tile_f32<W, NR, NT>(rows, static_cast<const float*>(act), n_in, y, ldy);
}

template <int NR, int W, bool kBf16>
void run_tiles(const uint8_t* const* rows, const uint8_t* act, size_t act_row, int64_t t0,
               int64_t t1, int64_t n_in, float* y, int64_t ldy) {
  int64_t t = t0;
  for (; t + kT <= t1; t += kT) run_tile<NR, kT, W, kBf16>(rows, act + t * act_row, n_in, y + t * ldy, ldy);
  const int left = static_cast<int>(t1 - t);
  const uint8_t* a = act + t * act_row;
  float* yt = y + t * ldy;
  switch (left) {
    case 0: break;
    case 1: run_tile<NR, 1, W, kBf16>(rows, a, n_in, yt, ldy); break;
    case 2: run_tile<NR, 2, W, kBf16>(rows, a, n_in, yt, ldy); break;
    case 3: run_tile<NR, 3, W, kBf16>(rows, a, n_in, yt, ldy); break;
    case 4: if constexpr (kT > 4) run_tile<NR, 4, W, kBf16>(rows, a, n_in, yt, ldy); break;
    default: if constexpr (kT > 5) run_tile<NR, 5, W, kBf16>(rows, a, n_in, yt, ldy); break;
  }
}

// Activation bytes kept in L2 while a thread sweeps its rows.
constexpr size_t kActChunkBytes = 512 * 1024;

template <int W, bool kBf16>
void gemm(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in, const void* act,
          int64_t n_tok, float* y, int64_t ldy, void* scratch) {
  const size_t act_row = static_cast<size_t>(n_in) * (kBf16 ? 2 : 4);
  int64_t chunk = static_cast<int64_t>(kActChunkBytes / act_row) / kT * kT;
  if (chunk < kT) chunk = kT;
  const auto* a = static_cast<const uint8_t*>(act);
  for (int64_t c0 = 0; c0 < n_tok; c0 += chunk) {
    const int64_t c1 = c0 + chunk < n_tok ? c0 + chunk : n_tok;
    for (int64_t r = r0; r < r1;) {
      const int nr = r1 - r >= kR ? kR : 1;
      const uint8_t* rows[kR];
      for (int i = 0; i < nr; ++i) rows[i] = w + (r + i) * row_bytes;
#if defined(__AVX512BF16__)
      if constexpr (kBf16 && W == kF16) {
        auto* s = static_cast<uint16_t*>(scratch);
        for (int i = 0; i < nr; ++i) {
          f16_rows_to_bf16(rows[i], n_in, s + i * n_in);
          rows[i] = reinterpret_cast<const uint8_t*>(s + i * n_in);
        }
      }
#endif
      if (nr == kR) run_tiles<kR, W, kBf16>(rows, a, act_row, c0, c1, n_in, y + r, ldy);
      else run_tiles<1, W, kBf16>(rows, a, act_row, c0, c1, n_in, y + r, ldy);
      r += nr;
    }
  }
}

size_t scratch_bytes(int64_t n_in) { return static_cast<size_t>(kR) * n_in * 2; }

// Activations rounded through fp16 (F16C, round to nearest even), kept as f32.
void to_f16r(const float* x, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
  for (; i < n; ++i) dst[i] = h2f(f2h(x[i]));
}

// Activations rounded through bf16 (to nearest even, as fp32_to_bf16), kept as f32.
void to_bf16r(const float* x, float* dst, int64_t n) {
  int64_t i = 0;
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7FFF),
                hi = _mm256_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_and_si256(r, hi)));
  }
  for (; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &x[i], 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    std::memcpy(&dst[i], &u, 4);
  }
}

template <int W, bool kBf16>
FloatKernels float_kernels() {
  FloatKernels f{};
  // F16 weights meet activations rounded to fp16, as in llama.cpp (vec_dot_type F16).
  // BF16 weights meet activations rounded to bf16 (vec_dot_type BF16).
  f.gemv_act = W == kF16 ? kActF16R : W == kBF16 ? kActBF16R : kActF32;
  f.gemm_act = kBf16 ? kActBF16 : f.gemv_act;
  f.to_f16r = &to_f16r;
  f.to_bf16r = &to_bf16r;
#if defined(__AVX512BF16__)
  f.to_bf16 = &to_bf16;
#endif
  f.scratch_bytes = &scratch_bytes;
  f.gemm = &gemm<W, kBf16>;
  f.gemv = &gemv<W>;
  return f;
}

}  // namespace

void register_float(Kernels& k, bool bf16) {
  k.flt[0] = float_kernels<kF32, false>();    // F32
  k.flt[1] = float_kernels<kF16, false>();    // F16
  k.flt[30] = float_kernels<kBF16, false>();  // BF16
#if defined(__AVX512BF16__)
  // BF16 weights: llama.cpp rounds activations to bf16 too, so VDPBF16PS costs no accuracy.
  // F16 weights stay on f32 FMA: rounding them and the activations to bf16 doubles the error
  // against llama.cpp on the F16 fixture (1e-2, over its 5e-3 budget).
  if (bf16) k.flt[30] = float_kernels<kBF16, true>();
#else
  (void)bf16;
#endif
}

}  // namespace slm::kern::SLM_ISA_NS
