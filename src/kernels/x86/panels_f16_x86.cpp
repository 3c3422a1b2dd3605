// F16 weights for prompt processing on VPDPWSSD (AVX512_VNNI): 32 int16 products per instruction
// and cycle, twice what f32 FMA does, so prefill is not capped by the FMA units.
//
// Both sides become int16 with a float scale per 32 values: weights once, when packed, and
// activations (first rounded through fp16, as llama.cpp feeds F16 weights) per call; the largest
// magnitude of a block maps to +-8191, so a block's 32 products always fit an int32 exactly.
// That keeps 13 bits of each block's largest values (F16 has 11) and an absolute error of at
// most 1/16382 of the block maximum on the small ones; the F16 fixture stays near 5e-4 of
// llama.cpp (budget 5e-3), where converting to bf16 (8 bits) measured 1e-2.
// Decoding uses the panels too, although they are 6% larger than the F16 rows (a float scale
// per 32 values): one sequential stream on huge pages beats four row streams on 4 KiB pages
// (1B Llama tg128: 16.0 tok/s against 11.7 for f32 FMA over the mapped rows), and the mapped
// rows can then be released (the copy replaces them; see ops.cpp).
//
// Panel: per 32-value block, 16 groups of kLanes dwords (lane r: row r's int16 pair 2j, 2j+1),
// then the block's kLanes float scales.
#include "kernels/x86/panel_driver.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

struct F16I16 {
  static constexpr Corr kCorr = Corr::I16;
  static constexpr int kMaxT = kTile;
  static constexpr int kBlockVals = 32, kCorrPerBlock = 0, kActBytes = 2;
  static constexpr size_t kBlockBytes = 68 * kLanes;
  static size_t panel_bytes(int64_t n_in) { return static_cast<size_t>(n_in / 32) * kBlockBytes; }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    if (n_rows < kLanes) std::memset(p, 0, panel_bytes(n_in));
    for (int r = 0; r < n_rows; ++r) {
      const uint8_t* row = w + r * row_bytes;
      for (int64_t b = 0; b < n_in / 32; ++b) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; ++i) {
          v[i] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 64 * b + 16 * i)));
          m = _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v[i]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        // Non-finite weights would poison the block either way; keep the arithmetic defined.
        const float id = amax > 0.0f && amax < 65536.0f ? kI16Max / amax : 0.0f;
        alignas(32) int16_t q[32];
        const __m256i lim = _mm256_set1_epi32(kI16Max), nlim = _mm256_set1_epi32(-kI16Max);
        for (int i = 0; i < 4; i += 2) {
          const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
          const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(v[i + 1], _mm256_set1_ps(id)));
          const __m256i ac = _mm256_max_epi32(_mm256_min_epi32(a, lim), nlim);
          const __m256i cc = _mm256_max_epi32(_mm256_min_epi32(c, lim), nlim);
          _mm256_store_si256(reinterpret_cast<__m256i*>(q + 8 * i),
                             _mm256_permute4x64_epi64(_mm256_packs_epi32(ac, cc), 0xD8));
        }
        uint8_t* o = p + b * kBlockBytes;
        wr_f32(o + (64 * kLanes) + r * 4, id > 0.0f ? amax / kI16Max : 0.0f);
        for (int j = 0; j < 16; ++j) std::memcpy(o + (j * kLanes + r) * 4, q + 2 * j, 4);
      }
    }
  }
  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    const int64_t nb = n_in / 32;
    for (int64_t b = 0; b < nb; ++b) {
      constexpr bool kSplit = T <= 2;  // two chains of VPDPWSSD for few tokens, as in Q4_0
      VI s[T], s2[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) s[t] = s2[t] = vzero();
      const uint8_t* q = p + b * kBlockBytes;
      const uint8_t* a = act + b * 16 * kTile * 4;
      prefetch_ahead<T>(q, kBlockBytes, l);
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) {
        const VI wv = load(q + j * 4 * kLanes);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          if (kSplit && j % 2) s2[t] = dot2w16(s2[t], wv, bcast32(a + (j * kTile + t) * 4));
          else s[t] = dot2w16(s[t], wv, bcast32(a + (j * kTile + t) * 4));
        }
      }
      if constexpr (kSplit)
        for (int t = 0; t < T; ++t) s[t] = add32(s[t], s2[t]);
      VF dw;
      std::memcpy(&dw, q + 64 * kLanes, sizeof(dw));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = fmadd(cvt(s[t]), mul(dw, bcastf_at(act + l.d_off + (b * kTile + t) * 4)), acc[t]);
    }
  }
};

}  // namespace

void register_panels_f16(Kernels& k) {
  // Without VNNI, VPMADDWD + VPADDD take two instructions for what one FMA does: no gain.
  if constexpr (kVnni) {
    k.panel[1] = panel_kernels<F16I16>();  // F16
  }
}

}  // namespace slm::kern::SLM_ISA_NS
