// Tensor element types: the traits table, hand-built blocks decoded to exact values, encoder
// round trips within per-type error budgets, dot products consistent with the decoders, the
// activation quantizers' exact rounding rules, and byte-for-byte agreement with files that
// llama-quantize wrote (shared fixtures).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "kernels/ref/quants.h"
#include "support/fixtures.h"
#include "support/rel_l2.h"

namespace slm {
namespace {

// ------------------------------------------------------------------------------------------
// helpers

std::vector<uint8_t> encode(DType t, const std::vector<float>& x) {
  const TypeTraits& tr = type_traits(t);
  std::vector<uint8_t> out(row_size(t, static_cast<int64_t>(x.size())));
  tr.from_float(x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

std::vector<float> decode(DType t, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  type_traits(t).to_float(q.data(), out.data(), n);
  return out;
}

void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) { std::memcpy(&b[off], &v, 2); }
void put_f16(std::vector<uint8_t>& b, size_t off, float v) { put16(b, off, fp32_to_fp16(v)); }

enum class Dist { Gaussian, Uniform, Outliers, ZeroBlocks, Small, Tiny, Positive, Constant };
const char* dist_name(Dist d) {
  switch (d) {
    case Dist::Gaussian: return "gaussian";
    case Dist::Uniform: return "uniform";
    case Dist::Outliers: return "outliers";
    case Dist::ZeroBlocks: return "zero-blocks";
    case Dist::Small: return "small";
    case Dist::Tiny: return "tiny";
    case Dist::Positive: return "positive";
    case Dist::Constant: return "constant";
  }
  return "?";
}
constexpr Dist kAllDists[] = {Dist::Gaussian, Dist::Uniform, Dist::Outliers, Dist::ZeroBlocks,
                              Dist::Small,    Dist::Tiny,    Dist::Positive, Dist::Constant};

// n values; ZeroBlocks zeroes every other 256-value span (so every block size sees whole zero
// blocks), Outliers puts a value ~30 sigma into about one in 64 values, Tiny is so small that
// fp16 block scales underflow (ggml then stores zeros too; we only check it stays finite).
std::vector<float> make_data(Dist dist, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float v = 0;
    switch (dist) {
      case Dist::Gaussian: v = g(rng); break;
      case Dist::Uniform: v = u(rng); break;
      case Dist::Outliers: v = g(rng); if (rng() % 64 == 0) v *= 30.0f; break;
      case Dist::ZeroBlocks: v = ((i / 256) % 2 == 0) ? 0.0f : g(rng); break;
      case Dist::Small: v = g(rng) * 1e-2f; break;
      case Dist::Tiny: v = g(rng) * 1e-6f; break;
      case Dist::Positive: v = std::fabs(g(rng)) + 0.5f; break;
      case Dist::Constant: v = 0.75f; break;
    }
    x[static_cast<size_t>(i)] = v;
  }
  return x;
}

using test::rel_l2;

// Every type we encode and decode.
constexpr DType kCodecTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                                 DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                                 DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K,
                                 DType::IQ4_NL, DType::IQ4_XS};

// Relative L2 round-trip error budgets, about 10-15% above what the encoders measure on 4096
// values (see RoundTrip.Report / SLM_QUANT_REPORT=1). `typical` covers gaussian, uniform,
// small-scale, positive, constant and zero-block data; `outliers` data with ~30-sigma spikes,
// which cost a lot more in the types whose scale follows the block maximum.
struct Budget { double typical; double outliers; };
Budget budget(DType t) {
  switch (t) {
    case DType::F32: return {0.0, 0.0};
    case DType::F16: return {2.5e-4, 2.5e-4};
    case DType::BF16: return {2e-3, 2e-3};
    case DType::Q8_0: return {6.2e-3, 1.3e-2};
    case DType::Q8_1: return {6.2e-3, 1.3e-2};
    case DType::Q8_K: return {8e-3, 3.2e-2};
    case DType::Q6_K: return {2e-2, 4e-2};
    case DType::Q5_0: return {4.8e-2, 9.2e-2};
    case DType::Q5_1: return {4.3e-2, 6.3e-2};
    case DType::Q5_K: return {4e-2, 6e-2};
    case DType::Q4_0: return {9.7e-2, 0.13};
    case DType::Q4_1: return {8.8e-2, 0.14};
    case DType::Q4_K: return {8e-2, 0.108};
    case DType::IQ4_NL: return {8.8e-2, 0.12};
    case DType::IQ4_XS: return {8.6e-2, 0.12};
    case DType::Q3_K: return {0.17, 0.17};
    case DType::Q2_K: return {0.33, 0.33};
    default: return {0.0, 0.0};
  }
}

// ------------------------------------------------------------------------------------------
// traits

TEST(DTypeTraits, BlockAndTypeSizesMatchGgml) {
  struct Row { uint32_t id; const char* name; int64_t blck; size_t size; };
  // ggml's type_traits table (ggml.c): name, blck_size, type_size.
  const Row rows[] = {
      {0, "f32", 1, 4},          {1, "f16", 1, 2},          {2, "q4_0", 32, 18},
      {3, "q4_1", 32, 20},       {6, "q5_0", 32, 22},       {7, "q5_1", 32, 24},
      {8, "q8_0", 32, 34},       {9, "q8_1", 32, 36},       {10, "q2_K", 256, 84},
      {11, "q3_K", 256, 110},    {12, "q4_K", 256, 144},    {13, "q5_K", 256, 176},
      {14, "q6_K", 256, 210},    {15, "q8_K", 256, 292},    {16, "iq2_xxs", 256, 66},
      {17, "iq2_xs", 256, 74},   {18, "iq3_xxs", 256, 98},  {19, "iq1_s", 256, 50},
      {20, "iq4_nl", 32, 18},    {21, "iq3_s", 256, 110},   {22, "iq2_s", 256, 82},
      {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},          {25, "i16", 1, 2},
      {26, "i32", 1, 4},         {27, "i64", 1, 8},         {28, "f64", 1, 8},
      {29, "iq1_m", 256, 56},    {30, "bf16", 1, 2},        {34, "tq1_0", 256, 54},
      {35, "tq2_0", 256, 66},    {39, "mxfp4", 32, 17},
  };
  std::map<uint32_t, bool> listed;
  for (const Row& r : rows) {
    const TypeTraits& t = type_traits(r.id);
    SCOPED_TRACE(r.name);
    EXPECT_TRUE(t.known);
    ASSERT_NE(t.name, nullptr);
    EXPECT_STREQ(t.name, r.name);
    EXPECT_EQ(t.block_size, r.blck);
    EXPECT_EQ(t.type_size, r.size);
    EXPECT_EQ(dtype_name(static_cast<DType>(r.id)), r.name);
    EXPECT_EQ(row_size(static_cast<DType>(r.id), r.blck * 7), r.size * 7);
    listed[r.id] = true;
  }
  for (uint32_t id = 0; id < 300; ++id) {
    if (listed.count(id)) continue;
    EXPECT_FALSE(type_traits(id).known) << "id " << id;
  }
  EXPECT_FALSE(type_traits(4u).known);
  EXPECT_FALSE(type_traits(5u).known);
  EXPECT_FALSE(type_traits(31u).known);
  EXPECT_FALSE(type_traits(33u).known);
  EXPECT_FALSE(type_traits(40u).known);
  EXPECT_FALSE(type_traits(0xFFFFFFFFu).known);
  EXPECT_EQ(row_size(DType::Q4_K, 4096), 16u * 144u);
  EXPECT_EQ(row_size(DType::F16, 3), 6u);
}

TEST(DTypeTraits, KernelsAndVecDotPairing) {
  struct Pair { DType w; DType act; };
  // ggml-cpu's vec_dot_type for each weight type.
  const Pair pairs[] = {
      {DType::F32, DType::F32},    {DType::F16, DType::F16},   {DType::BF16, DType::BF16},
      {DType::Q4_0, DType::Q8_0},  {DType::Q4_1, DType::Q8_1}, {DType::Q5_0, DType::Q8_0},
      {DType::Q5_1, DType::Q8_1},  {DType::Q8_0, DType::Q8_0}, {DType::Q2_K, DType::Q8_K},
      {DType::Q3_K, DType::Q8_K},  {DType::Q4_K, DType::Q8_K}, {DType::Q5_K, DType::Q8_K},
      {DType::Q6_K, DType::Q8_K},  {DType::IQ4_NL, DType::Q8_0}, {DType::IQ4_XS, DType::Q8_K},
  };
  for (const Pair& p : pairs) {
    const TypeTraits& t = type_traits(p.w);
    SCOPED_TRACE(t.name);
    EXPECT_NE(t.to_float, nullptr);
    EXPECT_NE(t.from_float, nullptr);
    EXPECT_NE(t.vec_dot, nullptr);
    EXPECT_EQ(t.vec_dot_type, p.act);
    EXPECT_NE(type_traits(p.act).from_float, nullptr);
  }
  for (DType t : kCodecTypes) {
    EXPECT_NE(type_traits(t).to_float, nullptr) << dtype_name(t);
    EXPECT_NE(type_traits(t).from_float, nullptr) << dtype_name(t);
  }
  // Types we know the size of but cannot decode.
  for (DType t : {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ3_XXS, DType::IQ1_S, DType::IQ3_S,
                  DType::IQ2_S, DType::IQ1_M, DType::I8, DType::TQ1_0, DType::TQ2_0}) {
    EXPECT_TRUE(type_traits(t).known);
    EXPECT_EQ(type_traits(t).to_float, nullptr) << dtype_name(t);
  }
}

// ------------------------------------------------------------------------------------------
// hand-built blocks: bytes written from the layout description, values checked exactly

TEST(HandBlocks, Q4_0) {
  std::vector<uint8_t> b(18);
  put16(b, 0, 0x3800);  // d = 0.5
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = decode(DType::Q4_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;              // low nibbles: elements 0..15
    EXPECT_EQ(y[16 + j], (7 - j) * 0.5f) << 16 + j;    // high nibbles: elements 16..31
  }
}

TEST(HandBlocks, Q8_0) {
  std::vector<uint8_t> b(34 * 2);
  put16(b, 0, 0x3400);   // d = 0.25
  put16(b, 34, 0xC000);  // d = -2
  for (int j = 0; j < 32; ++j) {
    b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
    b[36 + j] = static_cast<uint8_t>(static_cast<int8_t>(j == 0 ? -128 : 127 - j));
  }
  const std::vector<float> y = decode(DType::Q8_0, b, 64);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(y[j], (j - 16) * 0.25f);
    EXPECT_EQ(y[32 + j], (j == 0 ? -128 : 127 - j) * -2.0f);
  }
}

TEST(HandBlocks, Q4_1_Q5_0_Q5_1_IQ4_NL) {
  // Q4_1: value = q*d + m.
  std::vector<uint8_t> b(20);
  put_f16(b, 0, 0.25f);
  put_f16(b, 2, -1.5f);
  for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | ((j ^ 5) << 4));
  std::vector<float> y = decode(DType::Q4_1, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j * 0.25f + -1.5f);
    EXPECT_EQ(y[16 + j], (j ^ 5) * 0.25f + -1.5f);
  }
  // Q5_0: 5th bit of element j in bit j of qh; value = (q - 16) * d.
  b.assign(22, 0);
  put_f16(b, 0, 2.0f);
  uint32_t qh = 0xA5C3F00Fu;
  std::memcpy(&b[2], &qh, 4);
  for (int j = 0; j < 16; ++j) b[6 + j] = static_cast<uint8_t>((15 - j) | (j << 4));
  y = decode(DType::Q5_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    const int q0 = (15 - j) | (((qh >> j) & 1) << 4);
    const int q1 = j | (((qh >> (j + 16)) & 1) << 4);
    EXPECT_EQ(y[j], (q0 - 16) * 2.0f) << j;
    EXPECT_EQ(y[16 + j], (q1 - 16) * 2.0f) << j;
  }
  // Q5_1: q*d + m with the same bit layout.
  b.assign(24, 0);
  put_f16(b, 0, 0.5f);
  put_f16(b, 2, 3.0f);
  std::memcpy(&b[4], &qh, 4);
  for (int j = 0; j < 16; ++j) b[8 + j] = static_cast<uint8_t>((15 - j) | (j << 4));
  y = decode(DType::Q5_1, b, 32);
  for (int j = 0; j < 16; ++j) {
    const int q0 = (15 - j) | (((qh >> j) & 1) << 4);
    const int q1 = j | (((qh >> (j + 16)) & 1) << 4);
    EXPECT_EQ(y[j], q0 * 0.5f + 3.0f);
    EXPECT_EQ(y[16 + j], q1 * 0.5f + 3.0f);
  }
  // IQ4_NL: value = d * table[nibble].
  const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  b.assign(18, 0);
  put_f16(b, 0, 0.125f);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  y = decode(DType::IQ4_NL, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], kv[j] * 0.125f);
    EXPECT_EQ(y[16 + j], kv[15 - j] * 0.125f);
  }
}

TEST(HandBlocks, Q4_K) {
  // Layout: d, dmin (fp16), 12 bytes of scales/mins, 128 bytes of nibbles. Sub-block s (32
  // values) has 6-bit scale sc[s] and min mn[s]: for s < 4 they are the low 6 bits of bytes s
  // and 4+s; for s >= 4 the low nibbles sit in byte 4+s (scale low, min high) and the top two
  // bits in bits 6..7 of bytes s-4 (scale) and s (min). Nibble byte 32*c + l: low nibble is
  // element 64c + l (sub-block 2c), high nibble element 64c + 32 + l (sub-block 2c+1).
  const int sc[8] = {1, 2, 3, 17, 33, 47, 60, 63};
  const int mn[8] = {0, 5, 63, 9, 16, 31, 48, 62};
  std::vector<uint8_t> b(144, 0);
  put_f16(b, 0, 0.5f);
  put_f16(b, 2, 0.25f);
  uint8_t* s = &b[4];
  for (int k = 0; k < 4; ++k) {
    s[k] = static_cast<uint8_t>(sc[k] | ((sc[k + 4] >> 4) << 6));
    s[k + 4] = static_cast<uint8_t>(mn[k] | ((mn[k + 4] >> 4) << 6));
    s[k + 8] = static_cast<uint8_t>((sc[k + 4] & 0xF) | ((mn[k + 4] & 0xF) << 4));
  }
  int q[256];
  for (int e = 0; e < 256; ++e) q[e] = (e * 7 + e / 16) % 16;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      b[16 + 32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
  }
  const std::vector<float> y = decode(DType::Q4_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    const int sb = e / 32;
    EXPECT_EQ(y[e], 0.5f * sc[sb] * q[e] - 0.25f * mn[sb]) << e;
  }
}

TEST(HandBlocks, Q6_K) {
  // Layout: ql[128], qh[64], int8 scales[16], d (fp16). Element e: half h = e/128, r = e%128,
  // quarter g = r/32, l = r%32. Low 4 bits: ql[64h + l + 32*(g&1)], low nibble for g < 2, high
  // nibble otherwise. High 2 bits: qh[32h + l] bits 2g..2g+1. q = bits - 32; scale index
  // 8h + 2g + l/16; value = d * scale * q.
  std::vector<uint8_t> b(210, 0);
  int q[256];
  for (int e = 0; e < 256; ++e) q[e] = (e * 37 + 11) % 64;
  int8_t scales[16];
  for (int i = 0; i < 16; ++i) scales[i] = static_cast<int8_t>(i * 17 - 128);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
    uint8_t& lo = b[64 * h + l + 32 * (g & 1)];
    lo = static_cast<uint8_t>(lo | ((q[e] & 0xF) << (g < 2 ? 0 : 4)));
    uint8_t& hi = b[128 + 32 * h + l];
    hi = static_cast<uint8_t>(hi | ((q[e] >> 4) << (2 * g)));
  }
  std::memcpy(&b[192], scales, 16);
  put_f16(b, 208, 0.125f);
  const std::vector<float> y = decode(DType::Q6_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
    const int si = 8 * h + 2 * g + l / 16;
    EXPECT_EQ(y[e], 0.125f * scales[si] * (q[e] - 32)) << e;
  }
}

TEST(HandBlocks, Q2_K_Q3_K_Q5_K_Q8_K_IQ4_XS) {
  // Q2_K: scales[16] (low nibble scale, high nibble min, per 16 values), qs[64], d, dmin.
  // Element e: half h = e/128, r = e%128, g = r/32, l = r%32; 2 bits at qs[32h + l] >> 2g;
  // sub-block e/16.
  {
    std::vector<uint8_t> b(84, 0);
    int q[256];
    for (int e = 0; e < 256; ++e) q[e] = (e * 5 + e / 7) % 4;
    for (int i = 0; i < 16; ++i) b[i] = static_cast<uint8_t>((i % 16) | (((15 - i) % 16) << 4));
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
      b[16 + 32 * h + l] = static_cast<uint8_t>(b[16 + 32 * h + l] | (q[e] << (2 * g)));
    }
    put_f16(b, 80, 0.5f);
    put_f16(b, 82, 0.25f);
    const std::vector<float> y = decode(DType::Q2_K, b, 256);
    for (int e = 0; e < 256; ++e) {
      const int sb = e / 16;
      EXPECT_EQ(y[e], 0.5f * (sb % 16) * q[e] - 0.25f * ((15 - sb) % 16)) << e;
    }
  }
  // Q3_K: hmask[32], qs[64], scales[12], d. Element e: low 2 bits as in Q2_K; high bit at
  // hmask[e % 32] bit e / 32, and a clear bit means subtract 4. 6-bit scale s (0..15): low
  // nibble from byte s (s < 8, low) or s-8 (high nibble), top 2 bits from byte 8 + s%4 at
  // bits 2*(s/4); the scale is that value minus 32.
  {
    std::vector<uint8_t> b(110, 0);
    int q[256];
    for (int e = 0; e < 256; ++e) q[e] = (e * 3 + e / 5) % 8;  // 0..7, value q - 4
    int sc6[16];
    for (int s = 0; s < 16; ++s) sc6[s] = (s * 13 + 7) % 64;
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
      b[32 + 32 * h + l] = static_cast<uint8_t>(b[32 + 32 * h + l] | ((q[e] & 3) << (2 * g)));
      if (q[e] & 4) b[e % 32] = static_cast<uint8_t>(b[e % 32] | (1 << (e / 32)));
    }
    for (int s = 0; s < 16; ++s) {
      if (s < 8) b[96 + s] = static_cast<uint8_t>(b[96 + s] | (sc6[s] & 0xF));
      else b[96 + s - 8] = static_cast<uint8_t>(b[96 + s - 8] | ((sc6[s] & 0xF) << 4));
      b[96 + 8 + s % 4] = static_cast<uint8_t>(b[96 + 8 + s % 4] | ((sc6[s] >> 4) << (2 * (s / 4))));
    }
    put_f16(b, 108, 0.75f);
    const std::vector<float> y = decode(DType::Q3_K, b, 256);
    for (int e = 0; e < 256; ++e) {
      EXPECT_EQ(y[e], 0.75f * (sc6[e / 16] - 32) * (q[e] - 4)) << e;
    }
  }
  // Q5_K: like Q4_K with qh[32] between scales and qs: element 64c + l (+32) takes its 5th
  // bit from qh[l] bit 2c (2c+1).
  {
    std::vector<uint8_t> b(176, 0);
    put_f16(b, 0, 0.25f);
    put_f16(b, 2, 1.0f);
    for (int k = 0; k < 4; ++k) {  // scales = 2k+1 (<16, no top bits), mins = k
      b[4 + k] = static_cast<uint8_t>(2 * k + 1);
      b[8 + k] = static_cast<uint8_t>(k);
      b[12 + k] = static_cast<uint8_t>((2 * (k + 4) + 1) | ((k + 4) << 4));
    }
    int q[256];
    for (int e = 0; e < 256; ++e) q[e] = (e * 11 + 3) % 32;
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int a = q[64 * c + l], z = q[64 * c + 32 + l];
        b[48 + 32 * c + l] = static_cast<uint8_t>((a & 0xF) | ((z & 0xF) << 4));
        b[16 + l] = static_cast<uint8_t>(b[16 + l] | ((a >> 4) << (2 * c)) | ((z >> 4) << (2 * c + 1)));
      }
    }
    const std::vector<float> y = decode(DType::Q5_K, b, 256);
    for (int e = 0; e < 256; ++e) {
      const int sb = e / 32;
      EXPECT_EQ(y[e], 0.25f * (2 * sb + 1) * q[e] - 1.0f * sb) << e;
    }
  }
  // Q8_K: float d, int8 qs[256], int16 bsums[16].
  {
    std::vector<uint8_t> b(292, 0);
    const float d = -0.0625f;
    std::memcpy(&b[0], &d, 4);
    for (int e = 0; e < 256; ++e) b[4 + e] = static_cast<uint8_t>(static_cast<int8_t>(e - 128));
    const std::vector<float> y = decode(DType::Q8_K, b, 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], d * (e - 128));
  }
  // IQ4_XS: d, uint16 scales_h (2 bits per block), scales_l[4] (nibble per block), qs[128]
  // (16 bytes per 32-value block, low nibbles first 16 values).
  {
    const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    std::vector<uint8_t> b(136, 0);
    put_f16(b, 0, 0.5f);
    int ls[8] = {0, 1, 31, 32, 33, 45, 62, 63};
    uint16_t sh = 0;
    for (int ib = 0; ib < 8; ++ib) {
      b[4 + ib / 2] = static_cast<uint8_t>(b[4 + ib / 2] | ((ls[ib] & 0xF) << (4 * (ib % 2))));
      sh = static_cast<uint16_t>(sh | ((ls[ib] >> 4) << (2 * ib)));
    }
    put16(b, 2, sh);
    for (int i = 0; i < 128; ++i) b[8 + i] = static_cast<uint8_t>((i * 7) & 0xFF);
    const std::vector<float> y = decode(DType::IQ4_XS, b, 256);
    for (int e = 0; e < 256; ++e) {
      const int ib = e / 32, r = e % 32;
      const uint8_t byte = b[8 + 16 * ib + (r % 16)];
      const int nib = r < 16 ? (byte & 0xF) : (byte >> 4);
      EXPECT_EQ(y[e], 0.5f * (ls[ib] - 32) * kv[nib]) << e;
    }
  }
}

// ------------------------------------------------------------------------------------------
// activation quantizers: exact rounding rules

TEST(ActivationQuant, Q8_0RoundsHalfAwayFromZero) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // amax 127 -> d = 1, id = 1
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.5f;
  x[4] = -126.5f;
  x[5] = 1.4999999f;
  const std::vector<uint8_t> q = encode(DType::Q8_0, x);
  uint16_t d;
  std::memcpy(&d, &q[0], 2);
  EXPECT_EQ(d, 0x3C00);
  const int8_t* qs = reinterpret_cast<const int8_t*>(&q[2]);
  EXPECT_EQ(qs[0], 127);
  EXPECT_EQ(qs[1], 3);
  EXPECT_EQ(qs[2], -3);
  EXPECT_EQ(qs[3], 1);
  EXPECT_EQ(qs[4], -127);
  EXPECT_EQ(qs[5], 1);
  for (int j = 6; j < 32; ++j) EXPECT_EQ(qs[j], 0);

  // id is 1/d with d in float before the fp16 rounding of the stored scale.
  std::vector<float> z(32);
  for (int j = 0; j < 32; ++j) z[j] = 0.1f * (j - 16) + 0.013f;
  const std::vector<uint8_t> qz = encode(DType::Q8_0, z);
  float amax = 0;
  for (float v : z) amax = std::max(amax, std::fabs(v));
  const float dd = amax / 127;
  const float id = 1.0f / dd;
  std::memcpy(&d, &qz[0], 2);
  EXPECT_EQ(d, fp32_to_fp16(dd));
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(static_cast<int8_t>(qz[2 + j]), static_cast<int>(std::round(z[j] * id))) << j;
  }

  // All-zero block: d = 0 and q = 0.
  const std::vector<uint8_t> q0 = encode(DType::Q8_0, std::vector<float>(32, 0.0f));
  for (uint8_t v : q0) EXPECT_EQ(v, 0);
}

TEST(ActivationQuant, X86VariantsTieToEvenWithSameScales) {
  std::vector<float> x(64, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.5f;
  x[4] = 1.5f;
  std::vector<uint8_t> q(34 * 2);
  ref::from_float_q8_0_x86(x.data(), q.data(), 64);
  const int8_t* qs = reinterpret_cast<const int8_t*>(&q[2]);
  EXPECT_EQ(qs[0], 127);
  EXPECT_EQ(qs[1], 2);
  EXPECT_EQ(qs[2], -2);
  EXPECT_EQ(qs[3], 0);
  EXPECT_EQ(qs[4], 2);
  for (size_t i = 34; i < q.size(); ++i) EXPECT_EQ(q[i], 0);  // all-zero block

  // On ordinary data the x86 and reference encoders share every scale byte and differ by at
  // most one in a few quants.
  const int64_t n = 8192;
  const std::vector<float> y = make_data(Dist::Gaussian, n, 77);
  for (DType t : {DType::Q8_0, DType::Q8_1}) {
    const size_t bs = type_traits(t).type_size;
    const size_t hdr = t == DType::Q8_0 ? 2 : 4;
    const std::vector<uint8_t> a = encode(t, y);
    std::vector<uint8_t> b(a.size());
    if (t == DType::Q8_0) ref::from_float_q8_0_x86(y.data(), b.data(), n);
    else ref::from_float_q8_1_x86(y.data(), b.data(), n);
    int diffs = 0;
    for (size_t blk = 0; blk < a.size() / bs; ++blk) {
      const size_t o = blk * bs;
      EXPECT_EQ(a[o], b[o]);
      EXPECT_EQ(a[o + 1], b[o + 1]);
      int sa = 0, sb = 0;
      for (size_t j = hdr; j < bs; ++j) {
        const int va = static_cast<int8_t>(a[o + j]), vb = static_cast<int8_t>(b[o + j]);
        EXPECT_LE(std::abs(va - vb), 1);
        diffs += va != vb;
        sa += va;
        sb += vb;
      }
      if (t == DType::Q8_1 && sa == sb) {
        EXPECT_EQ(a[o + 2], b[o + 2]);
        EXPECT_EQ(a[o + 3], b[o + 3]);
      }
    }
    EXPECT_LT(diffs, n / 100) << dtype_name(t);
  }
}

TEST(ActivationQuant, Q8_1StoresScaledSum) {
  const std::vector<float> x = make_data(Dist::Gaussian, 64, 5);
  const std::vector<uint8_t> q = encode(DType::Q8_1, x);
  for (int b = 0; b < 2; ++b) {
    const uint8_t* blk = &q[36 * b];
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = amax / 127;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int8_t v = static_cast<int8_t>(blk[4 + j]);
      EXPECT_EQ(v, static_cast<int>(std::round(x[32 * b + j] * (1.0f / d))));
      sum += v;
    }
    uint16_t dh, sh;
    std::memcpy(&dh, blk, 2);
    std::memcpy(&sh, blk + 2, 2);
    EXPECT_EQ(dh, fp32_to_fp16(d));
    EXPECT_EQ(sh, fp32_to_fp16(static_cast<float>(sum) * d));
  }
}

TEST(ActivationQuant, Q8_KNegativeScaleAndTiesToEven) {
  std::vector<float> x(256, 0.0f);
  x[7] = 2.0f;  // max |x| is positive -> iscale = -63.5, d = 1/iscale < 0
  x[8] = 1.0f / 127.0f;  // iscale * x = -0.5 exactly in float? check via the formula below
  x[9] = -1.0f;
  x[20] = 3.0f / 127.0f;
  const std::vector<uint8_t> q = encode(DType::Q8_K, x);
  float d;
  std::memcpy(&d, &q[0], 4);
  const float iscale = -127.f / 2.0f;
  EXPECT_EQ(d, 1 / iscale);
  EXPECT_LT(d, 0.0f);
  const int8_t* qs = reinterpret_cast<const int8_t*>(&q[4]);
  auto nearest_even = [](float v) { return static_cast<int>(std::nearbyint(v)); };
  EXPECT_EQ(qs[7], -127);
  EXPECT_EQ(qs[9], 64);  // -1 * -63.5 = 63.5 -> ties to even: 64
  for (int j = 0; j < 256; ++j) EXPECT_EQ(qs[j], nearest_even(iscale * x[j])) << j;
  // bsums are the int16 sums of each group of 16.
  for (int g = 0; g < 16; ++g) {
    int s = 0;
    for (int k = 0; k < 16; ++k) s += qs[16 * g + k];
    int16_t bs;
    std::memcpy(&bs, &q[4 + 256 + 2 * g], 2);
    EXPECT_EQ(bs, s) << g;
  }
  // Negative max keeps a positive d; -max maps to 127.
  std::vector<float> y(256, 0.25f);
  y[100] = -4.0f;
  const std::vector<uint8_t> qy = encode(DType::Q8_K, y);
  std::memcpy(&d, &qy[0], 4);
  EXPECT_EQ(d, 1 / (-127.f / -4.0f));
  EXPECT_EQ(static_cast<int8_t>(qy[4 + 100]), -127);
  EXPECT_EQ(static_cast<int8_t>(qy[4 + 0]), 8);  // 0.25 * 31.75 = 7.9375 -> 8

  // All-zero block: everything zero.
  const std::vector<uint8_t> qz = encode(DType::Q8_K, std::vector<float>(256, 0.0f));
  for (uint8_t v : qz) EXPECT_EQ(v, 0);
}

TEST(ActivationQuant, Q4_0ScaleFromSignedMax) {
  // d = max / -8 with max the signed value of largest magnitude: that value is exactly -8*d
  // (nibble 0), the opposite extreme clamps to 15.
  std::vector<float> x(32, 0.0f);
  x[0] = 4.0f;
  x[1] = -4.0f;
  x[2] = 1.25f;  // 1.25 * (-2) = -2.5 -> +8.5 = 6.0 -> 6
  const std::vector<uint8_t> q = encode(DType::Q4_0, x);
  uint16_t d;
  std::memcpy(&d, &q[0], 2);
  EXPECT_EQ(fp16_to_fp32(d), -0.5f);
  EXPECT_EQ(q[2 + 0] & 0xF, 0);
  EXPECT_EQ(q[2 + 1] & 0xF, 15);
  EXPECT_EQ(q[2 + 2] & 0xF, 6);
  EXPECT_EQ(q[2 + 3] & 0xF, 8);
}

// ------------------------------------------------------------------------------------------
// round trips

TEST(RoundTrip, WithinBudgetOnAllDistributions) {
  const int64_t n = 4096;
  for (DType t : kCodecTypes) {
    for (Dist dist : kAllDists) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + dist_name(dist));
      const std::vector<float> x = make_data(dist, n, 1234u + static_cast<uint32_t>(dist));
      const std::vector<uint8_t> q = encode(t, x);
      ASSERT_EQ(q.size(), row_size(t, n));
      const std::vector<float> y = decode(t, q, n);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_TRUE(std::isfinite(y[i])) << i;
      const double err = rel_l2(x, y);
      if (std::getenv("SLM_QUANT_REPORT")) {
        std::printf("  %-7s %-12s %.5f\n", dtype_name(t).c_str(), dist_name(dist), err);
      }
      if (dist == Dist::Tiny) {
        // Block scales underflow fp16 here, as in ggml (Q4_K/Q5_K then decode to about 3x the
        // input: d rounds to 0 while dmin rounds up to the smallest subnormal). Only finiteness
        // and determinism are checked.
        EXPECT_EQ(encode(t, x), q);
        continue;
      }
      EXPECT_LE(err, dist == Dist::Outliers ? budget(t).outliers : budget(t).typical);
      if (dist == Dist::ZeroBlocks) {
        for (int64_t i = 0; i < n; ++i) {
          if ((i / 256) % 2 == 0) {
            ASSERT_EQ(y[static_cast<size_t>(i)], 0.0f) << i;
          }
        }
      }
      if (dist == Dist::Constant) {
        // A constant block is reproduced up to the precision of its scale.
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_NEAR(y[static_cast<size_t>(i)], 0.75f, 0.75f * 0.03) << i;
        }
      }
      // Encoding is deterministic.
      EXPECT_EQ(encode(t, x), q);
    }
  }
}

// Prints the measured errors (gaussian data, 64K values) so budgets can be revisited.
TEST(RoundTrip, Report) {
  const int64_t n = 65536;
  const std::vector<float> x = make_data(Dist::Gaussian, n, 99);
  for (DType t : kCodecTypes) {
    const double err = rel_l2(x, decode(t, encode(t, x), n));
    std::printf("  round-trip %-7s rel L2 %.5f  (budget %.4f)\n", dtype_name(t).c_str(), err,
                budget(t).typical);
    EXPECT_LE(err, budget(t).typical) << dtype_name(t);
  }
}

// ------------------------------------------------------------------------------------------
// dot products agree with the decoders

TEST(VecDot, MatchesDotOfDecodedValues) {
  const int64_t n = 4096;
  const DType weights[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                           DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                           DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS};
  for (DType wt : weights) {
    const TypeTraits& tw = type_traits(wt);
    const DType at = tw.vec_dot_type;
    for (Dist dist : {Dist::Gaussian, Dist::Outliers, Dist::ZeroBlocks, Dist::Positive}) {
      SCOPED_TRACE(std::string(tw.name) + " " + dist_name(dist));
      const std::vector<float> x = make_data(dist, n, 7u + static_cast<uint32_t>(dist));
      const std::vector<float> yv = make_data(Dist::Gaussian, n, 1000u + static_cast<uint32_t>(dist));
      const std::vector<uint8_t> xq = encode(wt, x);
      const std::vector<uint8_t> yq = encode(at, yv);
      const std::vector<float> xd = decode(wt, xq, n);
      const std::vector<float> yd = decode(at, yq, n);
      const float got = tw.vec_dot(n, xq.data(), yq.data());
      double ref = 0, mag = 0, xmax = 0;
      for (int64_t i = 0; i < n; ++i) xmax = std::max(xmax, std::fabs(static_cast<double>(xd[i])));
      for (int64_t i = 0; i < n; ++i) {
        ref += static_cast<double>(xd[i]) * yd[i];
        // Scale of the terms the kernel adds in float: |x|·|y| plus, for the offset types,
        // the min·sum(y) terms, bounded by max|x|·|y|.
        mag += (std::fabs(static_cast<double>(xd[i])) + xmax) * std::fabs(static_cast<double>(yd[i]));
      }
      double tol = 2e-6 * mag;
      if (wt == DType::Q4_1 || wt == DType::Q5_1) {
        // The min term uses s = fp16(d * sum(q)) rather than the decoded activations.
        tol = 2e-3 * mag;
      }
      EXPECT_NEAR(got, ref, tol) << "mag " << mag;
    }
  }
}

TEST(VecDot, IntegerSumsAreExactOnSmallValues) {
  // With scales that are powers of two and few blocks, every float operation is exact, so the
  // kernel must return the exact dot product of the decoded values.
  for (DType wt : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::IQ4_NL, DType::Q4_K, DType::Q6_K,
                   DType::Q5_K, DType::Q3_K, DType::Q2_K, DType::IQ4_XS}) {
    const TypeTraits& tw = type_traits(wt);
    const int64_t n = 256;
    std::vector<uint8_t> xq(row_size(wt, n));
    std::mt19937 rng(static_cast<uint32_t>(wt) + 3);
    for (auto& v : xq) v = static_cast<uint8_t>(rng());
    // Overwrite the scales with exact small powers of two.
    auto set_half = [&](size_t off, float v) { const uint16_t h = fp32_to_fp16(v); std::memcpy(&xq[off], &h, 2); };
    const size_t bs = tw.type_size;
    for (size_t b = 0; b < xq.size() / bs; ++b) {
      const size_t o = b * bs;
      switch (wt) {
        case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: case DType::IQ4_NL: set_half(o, 0.5f); break;
        case DType::Q4_K: case DType::Q5_K: set_half(o, 0.25f); set_half(o + 2, 0.125f); break;
        case DType::Q6_K: set_half(o + 208, 0.0625f); break;
        case DType::Q3_K: set_half(o + 108, 0.5f); break;
        case DType::Q2_K: set_half(o + 80, 0.5f); set_half(o + 82, 0.25f); break;
        case DType::IQ4_XS: set_half(o, 0.25f); break;
        default: break;
      }
    }
    const DType at = tw.vec_dot_type;
    std::vector<float> y(n);
    for (auto& v : y) v = static_cast<float>(static_cast<int>(rng() % 255) - 127);
    // amax 127 in every 32-block: Q8_0 d = 1 exactly; Q8_K d = 1/(-127/127) = -1.
    for (int64_t i = 3; i < n; i += 32) y[static_cast<size_t>(i)] = 127.0f;
    const std::vector<uint8_t> yq = encode(at, y);
    const std::vector<float> xd = decode(wt, xq, n);
    const std::vector<float> yd = decode(at, yq, n);
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += static_cast<double>(xd[i]) * yd[i];
    EXPECT_EQ(static_cast<double>(tw.vec_dot(n, xq.data(), yq.data())), ref) << tw.name;
  }
}

// ------------------------------------------------------------------------------------------
// byte-for-byte agreement with llama-quantize (shared fixtures)

// Just enough GGUF to find tensor data: header, metadata (skipped except general.alignment),
// tensor infos. Kept here so this test depends only on the kernels, not on the GGUF reader.
struct MiniTensor { std::string name; uint32_t type; std::vector<uint64_t> ne; const uint8_t* data; };

struct MiniGGUF {
  std::vector<uint8_t> bytes;
  std::vector<MiniTensor> tensors;
  size_t pos = 0;

  template <class T> T rd() {
    if (pos + sizeof(T) > bytes.size()) throw std::runtime_error("truncated");
    T v;
    std::memcpy(&v, &bytes[pos], sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string rd_str() {
    const uint64_t n = rd<uint64_t>();
    if (pos + n > bytes.size()) throw std::runtime_error("truncated");
    std::string s(reinterpret_cast<const char*>(&bytes[pos]), n);
    pos += n;
    return s;
  }
  void skip_value(uint32_t t) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8) { rd_str(); return; }
    if (t == 9) {
      const uint32_t et = rd<uint32_t>();
      const uint64_t n = rd<uint64_t>();
      for (uint64_t i = 0; i < n; ++i) skip_value(et);
      return;
    }
    if (t > 12) throw std::runtime_error("bad type");
    pos += sz[t];
  }
  explicit MiniGGUF(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    if (rd<uint32_t>() != 0x46554747u) throw std::runtime_error("not gguf");
    rd<uint32_t>();
    const uint64_t n_tensors = rd<uint64_t>();
    const uint64_t n_kv = rd<uint64_t>();
    uint64_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; ++i) {
      const std::string key = rd_str();
      const uint32_t t = rd<uint32_t>();
      if (key == "general.alignment" && t == 4) alignment = rd<uint32_t>();
      else skip_value(t);
    }
    std::vector<uint64_t> offsets;
    for (uint64_t i = 0; i < n_tensors; ++i) {
      MiniTensor mt;
      mt.name = rd_str();
      const uint32_t nd = rd<uint32_t>();
      for (uint32_t d = 0; d < nd; ++d) mt.ne.push_back(rd<uint64_t>());
      mt.type = rd<uint32_t>();
      offsets.push_back(rd<uint64_t>());
      tensors.push_back(mt);
    }
    const size_t data_start = (pos + alignment - 1) / alignment * alignment;
    for (size_t i = 0; i < tensors.size(); ++i) tensors[i].data = &bytes[data_start + offsets[i]];
  }
  const MiniTensor* find(const std::string& name) const {
    for (const auto& t : tensors) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }
};

// Re-quantizes every tensor of `src` that `dst` stores in another type and compares bytes.
// Returns how many tensors were compared per type name.
std::map<std::string, int> compare_requantized(const std::string& src_path, const std::string& dst_path) {
  const MiniGGUF src(src_path), dst(dst_path);
  std::map<std::string, int> compared;
  for (const MiniTensor& dt : dst.tensors) {
    const MiniTensor* st = src.find(dt.name);
    EXPECT_NE(st, nullptr) << dt.name;
    if (!st || st->type == dt.type) continue;
    int64_t n = 1;
    for (uint64_t e : dt.ne) n *= static_cast<int64_t>(e);
    const TypeTraits& ts = type_traits(st->type);
    const TypeTraits& td = type_traits(dt.type);
    EXPECT_TRUE(td.from_float != nullptr) << dt.name << " " << td.name;
    if (!td.from_float || !ts.to_float) continue;
    std::vector<float> f(static_cast<size_t>(n));
    ts.to_float(st->data, f.data(), n);
    const size_t nbytes = row_size(static_cast<DType>(dt.type), n);
    std::vector<uint8_t> ours(nbytes);
    td.from_float(f.data(), ours.data(), n);
    size_t first_diff = nbytes;
    for (size_t i = 0; i < nbytes; ++i) {
      if (ours[i] != dt.data[i]) { first_diff = i; break; }
    }
    EXPECT_EQ(first_diff, nbytes) << dt.name << " (" << td.name << "): first differing byte "
                                  << first_diff << " of " << nbytes << ", block "
                                  << first_diff / td.type_size;
    ++compared[td.name];
  }
  return compared;
}

TEST(LlamaQuantize, Q4_0AndQ8_0FromF32AreByteExact) {
  SLM_REQUIRE_FIXTURE(dir, "fixtures/logits");
  for (const char* model : {"llama-L2-E64", "qwen2-L2-E64", "gemma2-L4-E64", "phi3-L3-E64"}) {
    for (const char* q : {"Q4_0", "Q8_0"}) {
      SCOPED_TRACE(std::string(model) + " " + q);
      const auto c = compare_requantized((dir / (std::string(model) + "-F32.gguf")).string(),
                                         (dir / (std::string(model) + "-" + q + ".gguf")).string());
      int total = 0;
      for (const auto& [k, v] : c) total += v;
      EXPECT_GT(total, 5);
    }
  }
}

TEST(LlamaQuantize, KQuantMixesFromF16AreByteExact) {
  SLM_REQUIRE_FIXTURE(dir, "fixtures/kquants");
  std::map<std::string, int> all;
  for (const char* q : {"Q4_K_M", "Q6_K", "Q8_0"}) {
    SCOPED_TRACE(q);
    const auto c = compare_requantized((dir / "kq-llama-L2-E256-F16.gguf").string(),
                                       (dir / (std::string("kq-llama-L2-E256-") + q + ".gguf")).string());
    for (const auto& [k, v] : c) all[k] += v;
  }
  for (const auto& [k, v] : all) std::printf("  compared %d tensors of type %s\n", v, k.c_str());
  EXPECT_GT(all["q4_K"], 0);
  EXPECT_GT(all["q6_K"], 0);
  EXPECT_GT(all["q8_0"], 0);
}

}  // namespace
}  // namespace slm
