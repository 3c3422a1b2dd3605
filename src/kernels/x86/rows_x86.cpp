// Row kernels (kern::RowKernels): products of a few tokens straight from the file's row-major
// blocks, for decoding before a matrix is repacked into panels (see ops.cpp). They let the
// first token come without first copying the model into fresh memory, which costs more than
// the whole forward pass on a VM (docs/performance.md, start-up).
//
// AVX-512 only (the avx512 and avx512vnni tables); on AVX2 matrices are repacked at first use.
//
// 32-value blocks (Q4_0, Q8_0, Q5_0, IQ4_NL): two blocks per 512-bit vector. The weights go in as unsigned
// bytes u (Q4_0: the nibble; Q8_0: q + 128), so that VPDPBUSD multiplies them with the signed
// activation bytes; lanes 0-7 of the integer sums belong to the first block, 8-15 to the second.
// Each lane's sum of four products is made exact by subtracting offset * (its four activation
// bytes' sum), precomputed with the activations, before it is scaled by d_w * d_a: a float
// correction after the scaling cancelled badly for Q8_0's offset of 128 (relative L2 1e-3
// against llama.cpp's logits one token at a time, 1e-7 with the exact one).
//
// Q6_K: super-blocks of 256 values against Q8_K activations, as the reference: 6-bit values
// (0..63) times activation bytes, times the 16-value scales, minus 32 * sum(scale * bsum).
// (A Q4_K twin decoded at 15 tok/s against 34 on the panels, its scales and mins unpacked per
// super-block and token: left out, so Q4_K matrices are repacked at their first product.)
#include "kernels/x86/act.h"

namespace slm::kern::SLM_ISA_NS {

#if defined(__AVX512F__)

namespace {

constexpr int kMaxTok = 8;  // kern::kRowMaxTokens

// ---- activations for 32-value block types ------------------------------------------------------
// Per token: n_in int8 values, then per block pair 16 floats of d_a (8 per block) and 16 int32
// corrections, offset * (the sum of each lane's four activation bytes).
size_t act_bytes_b32(int64_t n_in) { return static_cast<size_t>(n_in) + static_cast<size_t>(n_in / 64) * 128; }

template <int kOffset>
void prepare_b32(const float* x, int64_t n_in, uint8_t* act) {
  auto* qs = reinterpret_cast<int8_t*>(act);
  uint8_t* aux = act + n_in;
  for (int64_t b = 0; b < n_in / 32; ++b) {
    uint16_t dh;
    int32_t sum;
    const float d = q8_0_block(x + 32 * b, qs + 32 * b, &dh, &sum);
    uint8_t* pair = aux + (b / 2) * 128;
    for (int i = 0; i < 8; ++i) {
      const int8_t* a4 = qs + 32 * b + 4 * i;
      wr_f32(pair + 4 * ((b % 2) * 8 + i), d);
      wr_i32(pair + 64 + 4 * ((b % 2) * 8 + i), kOffset * (a4[0] + a4[1] + a4[2] + a4[3]));
    }
  }
}

// The d_w of two blocks, one per half of the lanes.
inline VF two_scales(const uint8_t* b0, const uint8_t* b1) {
  const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(rd_u16(b0)))),
                                            _mm_set1_epi16(static_cast<short>(rd_u16(b1))), 1);
  return _mm512_cvtph_ps(h);
}

struct Q4_0Rows {
  static constexpr int kOffset = 8;
  static constexpr size_t kBlock = 18;
  // [b low nibbles | b high nibbles | b+1 low | b+1 high]: values 0..31 of each block in order.
  static VI weights(const uint8_t* b0, const uint8_t* b1) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + 2));
    const __m256i t0 = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q0, 1);
    const __m256i t1 = _mm256_inserti128_si256(_mm256_castsi128_si256(q1), q1, 1);
    const VI v = _mm512_inserti64x4(_mm512_castsi256_si512(t0), t1, 1);
    const VI shift = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);  // per 128 bits: 0, 4, 0, 4
    return _mm512_and_si512(_mm512_srlv_epi64(v, shift), _mm512_set1_epi8(0x0F));
  }
};

struct Q8_0Rows {
  static constexpr int kOffset = 128;
  static constexpr size_t kBlock = 34;
  static VI weights(const uint8_t* b0, const uint8_t* b1) {
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2));
    const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + 2));
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1), _mm512_set1_epi8(-128));
  }
};

// Q5_0: value = (nibble | fifth bit << 4) - 16, the fifth bits of a block's 32 values in qh
// (bit v for value v); fed as the unsigned five bits.
struct Q5_0Rows {
  static constexpr int kOffset = 16;
  static constexpr size_t kBlock = 22;  // d, qh[4], qs[16]
  static VI weights(const uint8_t* b0, const uint8_t* b1) {
    const VI lo = Q4_0Rows::weights(b0 + 4, b1 + 4);  // Q4_0's nibble order, its qs 4 bytes on
    uint32_t h0, h1;
    std::memcpy(&h0, b0 + 2, 4);
    std::memcpy(&h1, b1 + 2, 4);
    const __mmask64 fifth = static_cast<__mmask64>(h0) | (static_cast<__mmask64>(h1) << 32);
    return _mm512_or_si512(lo, _mm512_maskz_mov_epi8(fifth, _mm512_set1_epi8(0x10)));
  }
};

// IQ4_NL: Q4_0's nibbles as indices into the 16 levels, fed as level + 128.
struct IQ4_NLRows {
  static constexpr int kOffset = 128;
  static constexpr size_t kBlock = 18;
  static VI weights(const uint8_t* b0, const uint8_t* b1) {
    return lut16(table16(kIQ4LevelsU), Q4_0Rows::weights(b0, b1));
  }
};

template <class K, int T>
void gemv_b32_t(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in,
                const uint8_t* act, size_t act_stride, float* y, int64_t ldy) {
  const int64_t np = n_in / 64;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
    VF acc[T];
    for (int t = 0; t < T; ++t) acc[t] = fzero();
    for (int64_t p = 0; p < np; ++p) {
      const uint8_t* b0 = row + 2 * p * K::kBlock;
      prefetch_at(b0, 2048);
      const VI v = K::weights(b0, b0 + K::kBlock);
      const VF dw = two_scales(b0, b0 + K::kBlock);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const uint8_t* a = act + t * act_stride;
        const uint8_t* pair = a + n_in + p * 128;
        const VI dot = _mm512_sub_epi32(dot4w(vzero(), v, load(a + 64 * p)), load(pair + 64));
        acc[t] = fmadd(cvt(dot), mul(dw, loadf(reinterpret_cast<const float*>(pair))), acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) y[t * ldy + r] = hsum(acc[t]);
  }
}

// ---- Q6_K ----------------------------------------------------------------------------------------
constexpr size_t kQ6_KBytes = 210, kQ8_KBytes = 292;

size_t act_bytes_q8_K(int64_t n_in) { return static_cast<size_t>(n_in / 256) * kQ8_KBytes; }

void prepare_q8_K(const float* x, int64_t n_in, uint8_t* act) {
  for (int64_t b = 0; b < n_in / 256; ++b) {
    uint8_t* blk = act + b * kQ8_KBytes;
    int16_t bsums[16];
    const float d = q8_K_block(x + 256 * b, reinterpret_cast<int8_t*>(blk + 4), bsums);
    wr_f32(blk, d);
    std::memcpy(blk + 260, bsums, sizeof(bsums));
  }
}

inline VI mullo(VI a, VI b) { return _mm512_mullo_epi32(a, b); }

template <int T>
void gemv_q6_K_t(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in,
                 const uint8_t* act, size_t act_stride, float* y, int64_t ldy) {
  const int64_t nsb = n_in / 256;
  const VI m4 = set8(0x0F), m3 = set8(0x03);
  const VI sh12 = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0), sh34 = _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4);
  // Lane k of a 64-value vector covers values 4k..4k+3, whose scale is number k / 4 of four.
  const VI pick0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w + static_cast<size_t>(r) * row_bytes;
    float acc[T];  // as the reference: each super-block's exact integer sum, scaled, added in order
    for (int t = 0; t < T; ++t) acc[t] = 0.0f;
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* x = row + sb * kQ6_KBytes;
      prefetch_at(x, 2048);
      prefetch_at(x, 2048 + 64);
      prefetch_at(x, 2048 + 128);
      prefetch_at(x, 2048 + 192);
      VI q[4], sc[4];
      const VI sc32 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 192)));
      for (int n = 0; n < 2; ++n) {
        const VI l = load(x + 64 * n);
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 128 + 32 * n));
        const VI hh = _mm512_inserti64x4(_mm512_castsi256_si512(h), h, 1);
        const VI h12 = and_(_mm512_srlv_epi64(hh, sh12), m3), h34 = and_(_mm512_srlv_epi64(hh, sh34), m3);
        q[2 * n] = or_(and_(l, m4), sll16(h12, 4));
        q[2 * n + 1] = or_(and_(srl16(l, 4), m4), sll16(h34, 4));
        sc[2 * n] = _mm512_permutexvar_epi32(add32(pick0, _mm512_set1_epi32(8 * n)), sc32);
        sc[2 * n + 1] = _mm512_permutexvar_epi32(add32(pick0, _mm512_set1_epi32(8 * n + 4)), sc32);
      }
      const float dw = h2f(rd_u16(x + 208));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const uint8_t* a = act + t * act_stride + sb * kQ8_KBytes;
        const VI bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 260)));
        VI s = mullo(mullo(sc32, bs), _mm512_set1_epi32(-32));
        for (int j = 0; j < 4; ++j) s = add32(s, mullo(dot4w(vzero(), q[j], load(a + 4 + 64 * j)), sc[j]));
        acc[t] += dw * rd_f32(a) * static_cast<float>(_mm512_reduce_add_epi32(s));
      }
    }
    for (int t = 0; t < T; ++t) y[t * ldy + r] = acc[t];
  }
}

// One entry point per type, dispatching on the token count (accumulators stay in registers).
template <void (*F1)(const uint8_t*, size_t, int64_t, int64_t, int64_t, const uint8_t*, size_t, float*, int64_t),
          void (*F2)(const uint8_t*, size_t, int64_t, int64_t, int64_t, const uint8_t*, size_t, float*, int64_t),
          void (*F4)(const uint8_t*, size_t, int64_t, int64_t, int64_t, const uint8_t*, size_t, float*, int64_t),
          void (*F8)(const uint8_t*, size_t, int64_t, int64_t, int64_t, const uint8_t*, size_t, float*, int64_t)>
void gemv_any(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in,
              const uint8_t* act, size_t act_stride, int n_tok, float* y, int64_t ldy) {
  for (int t0 = 0; t0 < n_tok;) {
    const int left = n_tok - t0;
    const uint8_t* a = act + t0 * act_stride;
    float* yt = y + t0 * ldy;
    if (left >= 8) F8(w, row_bytes, r0, r1, n_in, a, act_stride, yt, ldy), t0 += 8;
    else if (left >= 4) F4(w, row_bytes, r0, r1, n_in, a, act_stride, yt, ldy), t0 += 4;
    else if (left >= 2) F2(w, row_bytes, r0, r1, n_in, a, act_stride, yt, ldy), t0 += 2;
    else F1(w, row_bytes, r0, r1, n_in, a, act_stride, yt, ldy), t0 += 1;
  }
}

template <class K>
RowKernels b32_rows() {
  RowKernels rk{};
  rk.block_vals = 64;
  rk.act_bytes = &act_bytes_b32;
  rk.prepare = &prepare_b32<K::kOffset>;
  rk.gemv = &gemv_any<&gemv_b32_t<K, 1>, &gemv_b32_t<K, 2>, &gemv_b32_t<K, 4>, &gemv_b32_t<K, 8>>;
  return rk;
}

}  // namespace

void register_rows(Kernels& k) {
  k.row[2] = b32_rows<Q4_0Rows>();  // Q4_0
  k.row[8] = b32_rows<Q8_0Rows>();  // Q8_0
  k.row[6] = b32_rows<Q5_0Rows>();  // Q5_0
  k.row[20] = b32_rows<IQ4_NLRows>();  // IQ4_NL
  RowKernels q6{};
  q6.block_vals = 256;
  q6.act_bytes = &act_bytes_q8_K;
  q6.prepare = &prepare_q8_K;
  q6.gemv = &gemv_any<&gemv_q6_K_t<1>, &gemv_q6_K_t<2>, &gemv_q6_K_t<4>, &gemv_q6_K_t<8>>;
  k.row[14] = q6;  // Q6_K
}

#else

void register_rows(Kernels&) {}  // AVX2: repack at first use

#endif

}  // namespace slm::kern::SLM_ISA_NS
