// Activation quantizers: twins of ref::from_float_q8_0_x86 and ref::from_float_q8_K that give
// the same bytes (tests/test_core_kernels.cpp checks), and the tiles the panel kernels read.
#include "kernels/x86/act.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

// Standard block layouts (kernels/ref/quants.h; not included here, see simd.h).
constexpr size_t kQ8_0Bytes = 34;   // fp16 d, int8 qs[32]
constexpr size_t kQ8_KBytes = 292;  // f32 d, int8 qs[256], int16 bsums[16]

}  // namespace

#if defined(__AVX512F__)

float q8_0_block(const float* x, int8_t* qs, uint16_t* d_half, int32_t* sum, float* d_raw) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127.f;
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  *d_half = f2h(d);
  if (d_raw) *d_raw = d;
  // VCVTPS2DQ rounds to nearest even (the default MXCSR mode, as llama.cpp's
  // _mm256_round_ps(_MM_ROUND_NEAREST)); out-of-range values become INT32_MIN and then -128
  // through the saturating narrowing, as there.
  const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
  const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
  const __m128i b0 = _mm512_cvtsepi32_epi8(i0), b1 = _mm512_cvtsepi32_epi8(i1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), b0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), b1);
  *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_cvtepi8_epi32(b0), _mm512_cvtepi8_epi32(b1)));
  return h2f(*d_half);
}

float q8_K_block(const float* x, int8_t* qs, int16_t* bsums) {
  __m512 vmax = _mm512_setzero_ps();
  // MAXPS returns its second operand when the first is NaN: NaNs are skipped, like the
  // reference's `if (ax > amax)`.
  for (int i = 0; i < 16; ++i) vmax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)), vmax);
  const float amax = _mm512_reduce_max_ps(vmax);
  if (!(amax > 0.0f)) {
    std::memset(qs, 0, 256);
    std::memset(bsums, 0, 32);
    return 0.0f;
  }
  // The reference keeps the first value of largest magnitude (its sign matters).
  float max = 0.0f;
  for (int i = 0; i < 16; ++i) {
    const __m512 v = _mm512_loadu_ps(x + 16 * i);
    const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(amax), _CMP_EQ_OQ);
    if (m) {
      max = x[16 * i + __builtin_ctz(m)];
      break;
    }
  }
  const float iscale = -127.f / max;
  const __m512 vs = _mm512_set1_ps(iscale);
  for (int i = 0; i < 16; ++i) {
    // nearest_int() is round-to-nearest-even for these magnitudes, as VCVTPS2DQ.
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * i)));
    q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16 * i), _mm512_cvtsepi32_epi8(q));
    bsums[i] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
  }
  return 1 / iscale;
}

#else  // AVX2

namespace {
inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline int32_t hsum8i(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}
inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
// Four vectors of int32 -> 32 int8 with saturation, in order (PACKS works per 128-bit lane).
inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
inline __m256i clamp8(__m256i v) {
  return _mm256_max_epi32(_mm256_min_epi32(v, _mm256_set1_epi32(127)), _mm256_set1_epi32(-128));
}
}  // namespace

float q8_0_block(const float* x, int8_t* qs, uint16_t* d_half, int32_t* sum, float* d_raw) {
  __m256 v[4], m = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    m = _mm256_max_ps(m, abs8(v[i]));
  }
  const float amax = hmax8(m);
  const float d = amax / 127.f;
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  *d_half = f2h(d);
  if (d_raw) *d_raw = d;
  __m256i q[4];
  for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack32(q[0], q[1], q[2], q[3]));
  *sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(clamp8(q[0]), clamp8(q[1])),
                                 _mm256_add_epi32(clamp8(q[2]), clamp8(q[3]))));
  return h2f(*d_half);
}

float q8_K_block(const float* x, int8_t* qs, int16_t* bsums) {
  __m256 vmax = _mm256_setzero_ps();
  for (int i = 0; i < 32; ++i) vmax = _mm256_max_ps(abs8(_mm256_loadu_ps(x + 8 * i)), vmax);
  const float amax = hmax8(vmax);
  if (!(amax > 0.0f)) {
    std::memset(qs, 0, 256);
    std::memset(bsums, 0, 32);
    return 0.0f;
  }
  float max = 0.0f;
  for (int i = 0; i < 32; ++i) {
    const __m256 v = _mm256_loadu_ps(x + 8 * i);
    const int m = _mm256_movemask_ps(_mm256_cmp_ps(abs8(v), _mm256_set1_ps(amax), _CMP_EQ_OQ));
    if (m) {
      max = x[8 * i + __builtin_ctz(static_cast<unsigned>(m))];
      break;
    }
  }
  const float iscale = -127.f / max;
  const __m256 vs = _mm256_set1_ps(iscale);
  for (int i = 0; i < 8; ++i) {
    __m256i q[4];
    for (int j = 0; j < 4; ++j) {
      q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + 32 * i + 8 * j)));
      q[j] = _mm256_min_epi32(q[j], _mm256_set1_epi32(127));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + 32 * i), pack32(q[0], q[1], q[2], q[3]));
    bsums[2 * i] = static_cast<int16_t>(hsum8i(_mm256_add_epi32(q[0], q[1])));
    bsums[2 * i + 1] = static_cast<int16_t>(hsum8i(_mm256_add_epi32(q[2], q[3])));
  }
  return 1 / iscale;
}

#endif

void quantize_q8_0(const float* x, void* dst, int64_t n) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / 32; ++b, out += kQ8_0Bytes) {
    uint16_t dh;
    int32_t sum;
    q8_0_block(x + 32 * b, reinterpret_cast<int8_t*>(out + 2), &dh, &sum);
    wr_u16(out, dh);
  }
}

void quantize_q8_K(const float* x, void* dst, int64_t n) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / 256; ++b, out += kQ8_KBytes) {
    int16_t bsums[16];
    const float d = q8_K_block(x + 256 * b, reinterpret_cast<int8_t*>(out + 4), bsums);
    wr_f32(out, d);
    std::memcpy(out + 4 + 256, bsums, sizeof(bsums));
  }
}

void prepare_tile(Corr kind, const float* x, int n_tok, int64_t n_in, uint8_t* tile) {
  const bool k_type = !corr_b32(kind);
  const TileLayout l = k_type ? tile_q8_K(n_in) : tile_q8_0(n_in);
  std::memset(tile, 0, l.bytes);
  uint8_t* d = tile + l.d_off;
  uint8_t* c = tile + l.c_off;
  const int bs = k_type ? 256 : 32;
  for (int t = 0; t < n_tok; ++t) {
    const float* xt = x + static_cast<int64_t>(t) * n_in;
    for (int64_t b = 0; b < n_in / bs; ++b) {
      alignas(64) int8_t qs[256];
      float df;
      if (!k_type) {
        uint16_t dh;
        int32_t sum;
        float d_raw;
        df = q8_0_block(xt + 32 * b, qs, &dh, &sum, &d_raw);
        if (kind == Corr::Q8_1)  // as ref::from_float_q8_1_x86: the unrounded d times the sum
          wr_f32(c + (b * kTile + t) * 4, h2f(f2h(d_raw * static_cast<float>(sum))));
        else
          wr_i32(c + (b * kTile + t) * 4, (kind == Corr::Q4_0 ? -8 : kind == Corr::Q5_0 ? -16 : -128) * sum);
      } else {
        int16_t bsums[16];
        df = q8_K_block(xt + 256 * b, qs, bsums);
        uint8_t* cb = c + b * 16 * kTile * 4;
        for (int j = 0; j < 16; ++j) {
          int32_t v = 0;
          if (kind == Corr::Q4_K && j < 4) {
            const int32_t lo = bsums[4 * j] + bsums[4 * j + 1], hi = bsums[4 * j + 2] + bsums[4 * j + 3];
            v = static_cast<int32_t>((static_cast<uint32_t>(hi) << 16) | (static_cast<uint32_t>(lo) & 0xFFFF));
          } else if (kind == Corr::Q6_K) {
            v = -32 * bsums[j];
          } else if (kind == Corr::Q3_K) {
            v = -4 * bsums[j];
          } else if (kind == Corr::Q2_K && j < 8) {
            v = static_cast<int32_t>((static_cast<uint32_t>(static_cast<uint16_t>(bsums[2 * j + 1])) << 16) |
                                     static_cast<uint16_t>(bsums[2 * j]));
          } else if (kind == Corr::IQ4_XS && j < 8) {
            v = -128 * (bsums[2 * j] + bsums[2 * j + 1]);
          }
          wr_i32(cb + (j * kTile + t) * 4, v);
        }
      }
      wr_f32(d + (b * kTile + t) * 4, df);
      uint8_t* q = tile + (b * bs / 4 * kTile + t) * 4;
      for (int g = 0; g < bs / 4; ++g) std::memcpy(q + g * kTile * 4, qs + 4 * g, 4);
    }
  }
}

void prepare_tile_i16(const float* x, int n_tok, int64_t n_in, uint8_t* tile) {
  const TileLayout l = tile_i16(n_in);
  std::memset(tile, 0, l.bytes);
  for (int t = 0; t < n_tok; ++t) {
    const float* xt = x + static_cast<int64_t>(t) * n_in;
    for (int64_t b = 0; b < n_in / 32; ++b) {
      __m256 v[4], m = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(xt + 32 * b + 8 * i), _MM_FROUND_TO_NEAREST_INT));
        m = _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v[i]));
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
      const float id = amax > 0.0f ? kI16Max / amax : 0.0f;
      alignas(32) int16_t q[32];
      for (int i = 0; i < 4; i += 2) {
        const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(id)));
        const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(v[i + 1], _mm256_set1_ps(id)));
        const __m256i lim = _mm256_set1_epi32(kI16Max);
        const __m256i ac = _mm256_max_epi32(_mm256_min_epi32(a, lim), _mm256_sub_epi32(_mm256_setzero_si256(), lim));
        const __m256i cc = _mm256_max_epi32(_mm256_min_epi32(c, lim), _mm256_sub_epi32(_mm256_setzero_si256(), lim));
        // PACKSSDW interleaves 128-bit halves; restore the order of the 16 values.
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(ac, cc), 0xD8);
        _mm256_store_si256(reinterpret_cast<__m256i*>(q + 8 * i), p);
      }
      wr_f32(tile + l.d_off + (b * kTile + t) * 4, amax / kI16Max);
      uint8_t* g = tile + (b * 16 * kTile + t) * 4;
      for (int j = 0; j < 16; ++j) std::memcpy(g + j * kTile * 4, q + 2 * j, 4);
    }
  }
}

}  // namespace slm::kern::SLM_ISA_NS
