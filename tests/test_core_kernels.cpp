// The SIMD kernels (kernels/kernels.h) against their scalar twins in kernels/ref, for every
// instruction-set level this CPU supports: activation quantizers byte for byte, panel and float
// matrix products within a per-type error budget (the integer block sums are exact; only the
// order of float accumulation differs), and the ISA dispatcher's API.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "kernels/ref/attention.h"
#include "kernels/ref/quants.h"
#include "support/gaussian.h"
#include "support/rel_l2.h"

namespace slm {
namespace {

using kern::Isa;

std::vector<Isa> simd_levels() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx})
    if (kern::isa_supported(i)) v.push_back(i);
  return v;
}

using test::gaussian;

// Activation rows that exercise the quantizers' corners: gaussian, outliers, all-zero blocks,
// exact .5 ties after scaling, a repeated maximum of both signs, tiny values.
std::vector<float> tricky(int64_t n, uint32_t seed) {
  std::vector<float> x = gaussian(n, seed);
  std::mt19937 rng(seed + 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t blk = i / 256;
    switch (blk % 6) {
      case 1: if (rng() % 50 == 0) x[i] *= 40.0f; break;
      case 2: x[i] = 0.0f; break;
      case 3: x[i] = static_cast<float>(static_cast<int>(rng() % 255) - 127) * 0.5f; break;  // ties
      case 4:
        if (i % 256 == 7) x[i] = 9.0f;
        if (i % 256 == 100) x[i] = -9.0f;
        break;
      case 5: x[i] *= 1e-6f; break;
      default: break;
    }
  }
  return x;
}

// ---- dispatcher ------------------------------------------------------------------------------

TEST(KernelIsa, NamesRoundTrip) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx}) {
    Isa back;
    ASSERT_TRUE(kern::parse_isa(kern::isa_name(i), &back));
    EXPECT_EQ(back, i);
  }
  Isa out;
  EXPECT_FALSE(kern::parse_isa("avx1024", &out));
}

TEST(KernelIsa, DetectedLevelIsSupportedAndHasATable) {
  const Isa d = kern::detected_isa();
  EXPECT_TRUE(kern::isa_supported(Isa::Scalar));
  EXPECT_TRUE(kern::isa_supported(d));
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx}) {
    const kern::Kernels* k = kern::for_isa(i);
    EXPECT_EQ(k != nullptr, kern::isa_supported(i)) << kern::isa_name(i);
    if (k) {
      EXPECT_EQ(k->isa, i);
    }
  }
  std::printf("  detected: %s (bf16: %s), active: %s; amx: %s\n", kern::isa_name(d),
              kern::cpu_has_bf16() ? "yes" : "no", kern::isa_name(kern::active_isa()), kern::amx_status_text());
  // amx is the detected level exactly where the tile unit is usable.
  EXPECT_EQ(d == Isa::Amx, kern::amx_status() == kern::AmxStatus::Ready);
  EXPECT_EQ(kern::isa_supported(Isa::Amx), kern::amx_status() == kern::AmxStatus::Ready);
}

TEST(KernelIsa, AmxWhereTheCpuLacksItIsAClearError) {
  if (kern::isa_supported(Isa::Amx)) GTEST_SKIP() << "this CPU has AMX: " << kern::amx_status_text();
  try {
    kern::set_active_isa(Isa::Amx);
    FAIL() << "amx accepted on a CPU without it";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("amx is not available: AMX is "), std::string::npos) << e.what();
  }
  EXPECT_EQ(kern::amx_kernels(false), nullptr);
}

TEST(KernelIsa, SwitchingLevelsAndRefusingMissingOnes) {
  const Isa before = kern::active_isa();
  for (Isa i : simd_levels()) {
    kern::set_active_isa(i);
    EXPECT_EQ(kern::active_isa(), i);
    EXPECT_EQ(kern::active().isa, i);
  }
  kern::set_active_isa(Isa::Scalar);
  EXPECT_EQ(kern::active().panel[static_cast<int>(DType::Q4_0)].rows, 0);
  if (!kern::isa_supported(Isa::Avx512Vnni)) {
    EXPECT_THROW(kern::set_active_isa(Isa::Avx512Vnni), std::exception);
  }
  kern::set_active_isa(before);
}

// ---- activation quantizers: same bytes as the reference -----------------------------------

TEST(KernelQuantize, Q8_0MatchesReferenceBytes) {
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      const int64_t n = 256 * 12;
      const std::vector<float> x = tricky(n, seed);
      std::vector<uint8_t> ref(row_size(DType::Q8_0, n)), got(ref.size(), 0xAA);
      ref::from_float_q8_0_x86(x.data(), ref.data(), n);
      k.quantize_q8_0(x.data(), got.data(), n);
      ASSERT_EQ(ref, got) << kern::isa_name(isa) << " seed " << seed;
    }
  }
}

TEST(KernelQuantize, Q8_KMatchesReferenceBytes) {
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      const int64_t n = 256 * 12;
      const std::vector<float> x = tricky(n, seed);
      std::vector<uint8_t> ref(row_size(DType::Q8_K, n)), got(ref.size(), 0xAA);
      ref::from_float_q8_K(x.data(), ref.data(), n);
      k.quantize_q8_K(x.data(), got.data(), n);
      ASSERT_EQ(ref, got) << kern::isa_name(isa) << " seed " << seed;
    }
  }
}

// ---- panel products against the reference dot products --------------------------------------

struct Case {
  DType type;
  double budget;  // relative L2 of the outputs against the scalar vec_dot
};
// The integer sums are exact; what remains is float rounding of the block scales' products
// in another order, a few ulps of each block's term.
// F16 (avx512vnni only) quantizes both sides to int16 per 32 values: ~1e-4.
constexpr Case kPanelCases[] = {{DType::Q4_0, 2e-6}, {DType::Q8_0, 2e-6}, {DType::Q4_K, 2e-6},
                                {DType::Q5_K, 2e-6}, {DType::Q6_K, 2e-6}, {DType::IQ4_XS, 2e-6},
                                {DType::Q4_1, 2e-6}, {DType::Q5_0, 2e-6}, {DType::Q5_1, 2e-6},
                                {DType::IQ4_NL, 2e-6}, {DType::Q2_K, 2e-6}, {DType::Q3_K, 2e-6},
                                {DType::F16, 5e-4}};

using test::rel_l2;

// y[t][o] through the panel kernels of table k.
std::vector<float> panel_product(const kern::PanelKernels& pk, const std::vector<uint8_t>& w,
                                 size_t row_bytes, int64_t n_out, int64_t n_in,
                                 const std::vector<float>& x, int64_t n_tok) {
  const int64_t n_panels = (n_out + pk.rows - 1) / pk.rows;
  const size_t pb = pk.panel_bytes(n_in);
  std::vector<uint8_t> panels(pb * n_panels + 64);
  for (int64_t p = 0; p < n_panels; ++p) {
    const int rows = static_cast<int>(std::min<int64_t>(pk.rows, n_out - p * pk.rows));
    pk.pack(w.data() + p * pk.rows * row_bytes, row_bytes, rows, n_in, panels.data() + p * pb);
  }
  const int64_t tt = pk.tile_tokens, n_tiles = (n_tok + tt - 1) / tt;
  const size_t tb = pk.tile_bytes(n_in);
  std::vector<uint8_t> tiles(tb * n_tiles + 64);
  for (int64_t g = 0; g < n_tiles; ++g)
    pk.prepare(x.data() + g * tt * n_in, static_cast<int>(std::min(tt, n_tok - g * tt)), n_in,
               tiles.data() + g * tb);
  std::vector<float> y(static_cast<size_t>(n_out * n_tok), -1.0f);
  // Two calls over halves of the panels, as two threads would make them.
  pk.gemm(panels.data(), 0, n_panels / 2, n_out, n_in, tiles.data(), n_tok, y.data(), n_out);
  pk.gemm(panels.data(), n_panels / 2, n_panels, n_out, n_in, tiles.data(), n_tok, y.data(), n_out);
  return y;
}

std::vector<float> reference_product(DType type, const std::vector<uint8_t>& w, size_t row_bytes,
                                     int64_t n_out, int64_t n_in, const std::vector<float>& x,
                                     int64_t n_tok) {
  const TypeTraits& tt = type_traits(type);
  const TypeTraits& at = type_traits(tt.vec_dot_type);
  const size_t arow = row_size(tt.vec_dot_type, n_in);
  std::vector<uint8_t> a(arow * n_tok);
  for (int64_t t = 0; t < n_tok; ++t) at.from_float_act(x.data() + t * n_in, a.data() + t * arow, n_in);
  std::vector<float> y(static_cast<size_t>(n_out * n_tok));
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t o = 0; o < n_out; ++o)
      y[t * n_out + o] = tt.vec_dot(n_in, w.data() + o * row_bytes, a.data() + t * arow);
  return y;
}

TEST(KernelPanels, MatchReferenceDotProducts) {
  // 37 rows: a partial last panel at either width. 512 inputs: two K super-blocks, 16 blocks;
  // 2304: long enough for the kernels to cut every panel into k-slices (panel_driver.h).
  const int64_t n_out = 37;
  for (int64_t n_in : {256, 512, 768, 2304})
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    for (const Case& c : kPanelCases) {
      const kern::PanelKernels& pk = k.panel[static_cast<int>(c.type)];
      if (c.type == DType::F16 && pk.rows == 0) continue;  // only where VNNI makes it pay
      ASSERT_GT(pk.rows, 0) << kern::isa_name(isa) << " " << dtype_name(c.type);
      const TypeTraits& tt = type_traits(c.type);
      const size_t row_bytes = row_size(c.type, n_in);
      const std::vector<float> wf = gaussian(n_out * n_in, 11);
      std::vector<uint8_t> w(row_bytes * n_out);
      for (int64_t o = 0; o < n_out; ++o) tt.from_float(wf.data() + o * n_in, w.data() + o * row_bytes, n_in);
      for (int64_t n_tok : {1, 3, 8, 17}) {
        const std::vector<float> x = tricky(n_tok * n_in, 100 + static_cast<uint32_t>(n_tok));
        const auto ref = reference_product(c.type, w, row_bytes, n_out, n_in, x, n_tok);
        const auto got = panel_product(pk, w, row_bytes, n_out, n_in, x, n_tok);
        EXPECT_LE(rel_l2(ref, got), c.budget) << kern::isa_name(isa) << " " << dtype_name(c.type)
                                              << " n_in " << n_in << " tokens " << n_tok;
      }
    }
  }
}

// Extreme weights: every level of the types with signed or offset values at its limits.
TEST(KernelPanels, ExtremeQuantsStayExact) {
  const int64_t n_out = 16, n_in = 256;
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    for (DType type : {DType::Q8_0, DType::Q6_K, DType::IQ4_XS, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                       DType::Q5_1, DType::IQ4_NL, DType::Q2_K, DType::Q3_K}) {
      const TypeTraits& tt = type_traits(type);
      const size_t row_bytes = row_size(type, n_in);
      std::vector<uint8_t> w(row_bytes * n_out);
      std::mt19937 rng(5);
      for (auto& b : w) b = static_cast<uint8_t>(rng());
      // Keep the fp16 scales finite and moderate: rewrite them after the random fill.
      for (int64_t o = 0; o < n_out; ++o) {
        uint8_t* row = w.data() + o * row_bytes;
        const int64_t nb = n_in / tt.block_size;
        for (int64_t b = 0; b < nb; ++b) {
          uint8_t* blk = row + b * tt.type_size;
          const uint16_t h = fp32_to_fp16(0.01f * (1 + b % 3));
          const uint16_t m = fp32_to_fp16(-0.02f * (1 + b % 2));
          switch (type) {
            case DType::Q6_K: std::memcpy(blk + 208, &h, 2); break;
            case DType::Q3_K: std::memcpy(blk + 108, &h, 2); break;
            case DType::Q2_K: std::memcpy(blk + 80, &h, 2), std::memcpy(blk + 82, &m, 2); break;
            case DType::Q4_1: case DType::Q5_1: std::memcpy(blk, &h, 2), std::memcpy(blk + 2, &m, 2); break;
            default: std::memcpy(blk, &h, 2);
          }
        }
      }
      const std::vector<float> x = tricky(5 * n_in, 77);
      const auto ref = reference_product(type, w, row_bytes, n_out, n_in, x, 5);
      const auto got = panel_product(k.panel[static_cast<int>(type)], w, row_bytes, n_out, n_in, x, 5);
      EXPECT_LE(rel_l2(ref, got), 2e-6) << kern::isa_name(isa) << " " << dtype_name(type);
    }
  }
}

// ---- attention ---------------------------------------------------------------------------------

// Every level's attention against the scalar twin: group sizes 1-9 (more than one pass of
// query heads), key counts around the vector width (masked tails), head sizes of the supported
// models, with and without Gemma 2's softcap, and a row of scores far below the maximum (whose
// exp underflows to 0).
TEST(KernelAttention, MatchesScalarTwin) {
  struct Shape { int n_q; int64_t n; int d; float softcap; };
  const Shape shapes[] = {{1, 1, 64, 0}, {4, 7, 64, 0}, {4, 16, 64, 0}, {4, 17, 64, 0},
                          {7, 100, 64, 0}, {9, 33, 128, 0}, {2, 250, 256, 50.0f}, {3, 40, 96, 0},
                          {8, 513, 64, 0}};
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    ASSERT_NE(k.attend, nullptr) << kern::isa_name(isa);
    for (const Shape& sh : shapes) {
      const int64_t ldk = sh.n + 5, ldv = sh.d + 16;  // padded, as slices of larger buffers
      std::vector<float> q = gaussian(sh.n_q * sh.d, 1, 2.0f);
      const std::vector<float> kt = gaussian(sh.d * ldk, 2), v = gaussian(sh.n * ldv, 3);
      if (sh.n > 50) q[0] = 400.0f;  // query 0: one dominant score, the rest underflow
      const float scale = 1.0f / std::sqrt(static_cast<float>(sh.d));
      std::vector<float> scratch(static_cast<size_t>(sh.n_q) * (sh.n + 32));
      std::vector<float> ref(static_cast<size_t>(sh.n_q) * sh.d), got(ref.size(), -7.0f);
      ref::attend_group(q.data(), sh.n_q, sh.d, kt.data(), ldk, v.data(), ldv, sh.n, sh.d, sh.d,
                        scale, sh.softcap, scratch.data(), ref.data(), sh.d);
      k.attend(q.data(), sh.n_q, sh.d, kt.data(), ldk, v.data(), ldv, sh.n, sh.d, sh.d, scale,
               sh.softcap, scratch.data(), got.data(), sh.d);
      EXPECT_LE(rel_l2(ref, got), 2e-6) << kern::isa_name(isa) << " n_q " << sh.n_q << " n "
                                         << sh.n << " d " << sh.d;
    }
  }
}

// A cache attention test's case: n_q query rows (n_tok tokens), n keys visible from position
// `first`, head dimension d, a ring of `ring` slots (0: none), the first key moving on by
// `slide` per token.
struct AttnShape { int n_q; int64_t first; int64_t n; int d; float softcap; int64_t ring; int n_tok = 1; int slide = 0; };

// The cache kernel `simd` and its scalar twin against ref::attend_group over the keys (kt,
// transposed) and values (vf) gathered from the cache layout position by position: the twin
// exactly, the kernel within 1e-5 (float sums in another order: up to 3.3e-6 on these shapes; a
// key or value read from a wrong lane or block moves the output by 1e-2 or more).
template <class KV, class Fn>
void expect_cache_kernel_matches(Isa isa, const AttnShape& sh, const std::vector<float>& q, const std::vector<float>& kt,
                                 const std::vector<float>& vf, const KV& kv, Fn twin_fn, Fn simd_fn) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(sh.d));
  std::vector<float> scratch(static_cast<size_t>(sh.n_q) * (sh.n + 32));
  std::vector<float> gathered(static_cast<size_t>(sh.n_q) * sh.d), twin(gathered.size(), -5.0f), got(gathered.size(), -7.0f);
  const int heads = sh.n_q / sh.n_tok;
  for (int r = 0; r < sh.n_tok; ++r) {  // token r sees keys lo .. n - n_tok + r
    const int64_t lo = int64_t{r} * sh.slide;
    ref::attend_group(q.data() + r * heads * sh.d, heads, sh.d, kt.data() + lo, sh.n, vf.data() + lo * sh.d, sh.d,
                      sh.n - (sh.n_tok - 1 - r) - lo, sh.d, sh.d, scale, sh.softcap, scratch.data(),
                      gathered.data() + r * heads * sh.d, sh.d);
  }
  twin_fn(q.data(), sh.n_q, sh.n_tok, sh.slide, sh.d, kv, sh.d, sh.d, scale, sh.softcap, scratch.data(), twin.data(), sh.d);
  simd_fn(q.data(), sh.n_q, sh.n_tok, sh.slide, sh.d, kv, sh.d, sh.d, scale, sh.softcap, scratch.data(), got.data(), sh.d);
  const std::string what = std::string(kern::isa_name(isa)) + " n_q " + std::to_string(sh.n_q) + " first " +
                           std::to_string(sh.first) + " n " + std::to_string(sh.n) + " d " + std::to_string(sh.d) +
                           " ring " + std::to_string(sh.ring) + " tokens " + std::to_string(sh.n_tok) + " slide " +
                           std::to_string(sh.slide);
  EXPECT_EQ(rel_l2(gathered, twin), 0.0) << "scalar twin, " << what;
  EXPECT_LE(rel_l2(gathered, got), 1e-5) << what;
}

// The cache formats with their ggml types (kern::AttendCacheFn's keys and values).
struct CacheFormatType {
  kern::CacheFormat format;
  DType type;
};
constexpr CacheFormatType kCacheFormats[] = {
    {kern::CacheFormat::F16, DType::F16},   {kern::CacheFormat::F32, DType::F32},   {kern::CacheFormat::BF16, DType::BF16},
    {kern::CacheFormat::Q8_0, DType::Q8_0}, {kern::CacheFormat::Q4_0, DType::Q4_0}, {kern::CacheFormat::Q4_1, DType::Q4_1},
    {kern::CacheFormat::Q5_0, DType::Q5_0}, {kern::CacheFormat::Q5_1, DType::Q5_1}, {kern::CacheFormat::IQ4_NL, DType::IQ4_NL}};
static_assert(std::size(kCacheFormats) == kern::kCacheFormats);

// Key `lane` of a head's key block, from the key's d values encoded as a row of `type` (ggml's
// blocks), laid out as kernels.h describes each format: the float types dimension-major
// ([d][kKeyBlock]); the quantized ones per 32 dimensions a group of the kKeyBlock lanes'
// fp16 scales, then q8_0's int8 values per dimension, or the 4- and 5-bit types' minimums
// (q4_1, q5_1), per dimension two bytes of fifth bits (q5_0, q5_1: bit l is lane l's) and
// eight bytes of codes (lane l in the low nibble of byte l, lane l + 8 in the high one).
// Written from that description, not from the cache's own packing (runtime/kv_cache.cpp).
// The block starts zeroed (codes and bits are or-ed in).
void pack_key(DType type, const uint8_t* enc, int d, uint8_t* block, int lane) {
  constexpr int B = kern::kKeyBlock;
  if (type_traits(type).block_size == 1) {
    const size_t es = type_traits(type).type_size;
    for (int c = 0; c < d; ++c) std::memcpy(block + es * (c * B + lane), enc + es * c, es);
    return;
  }
  const size_t bb = type_traits(type).type_size;
  const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
  const bool five = type == DType::Q5_0 || type == DType::Q5_1;
  for (int g = 0; g < d / 32; ++g) {
    const uint8_t* src = enc + g * bb;
    uint8_t* grp = block + g * bb * B;
    std::memcpy(grp + 2 * lane, src, 2);
    if (type == DType::Q8_0) {
      for (int c = 0; c < 32; ++c) grp[2 * B + c * B + lane] = src[2 + c];
      continue;
    }
    uint8_t* minimums = grp + 2 * B;
    uint8_t* bits = minimums + (has_min ? 2 * B : 0);
    uint8_t* codes = bits + (five ? 64 : 0);
    const uint8_t* qh = src + (has_min ? 4 : 2);
    const uint8_t* qs = qh + (five ? 4 : 0);
    if (has_min) std::memcpy(minimums + 2 * lane, src + 2, 2);
    for (int c = 0; c < 32; ++c) {
      if (five && ((qh[c / 8] >> (c % 8)) & 1)) bits[2 * c + lane / 8] |= static_cast<uint8_t>(1 << (lane % 8));
      const int code = c < 16 ? qs[c] & 15 : qs[c - 16] >> 4;
      codes[8 * c + lane % 8] |= static_cast<uint8_t>(lane < 8 ? code : code << 4);
    }
  }
}

// The same over a cache as stored (kern::AttendCacheFn), for each pair of key and value
// formats (llama.cpp's nine cache types, as --cache-type-k / --cache-type-v may mix them):
// keys in 16-position blocks of two KV heads (the second one read, so the head offset inside a
// block counts), value rows of both heads with padding; gaussian keys and values encoded by
// the types' reference encoders, and decoded for the check by their reference decoders (the
// layouts of pack_key above). The first visible position sits at several lanes of its block;
// rings of `ring` slots (a sliding window's cache, position p in slot p % ring) have visible
// keys that wrap past the ring's end into two runs; rows of several consecutive tokens (n_tok)
// each see one key more than the token before, the first of them a single key, or (slide 1)
// as many keys as the one before, from one key further on. The kernel and its scalar twin are
// each checked against attend_group, token by token over the keys it sees, on keys and values
// decoded position by position, so that a misreading both shared would show.
TEST(KernelAttentionCache, MatchesScalarTwinForEachFormatPair) {
  using Shape = AttnShape;
  const Shape shapes[] = {{1, 0, 1, 64, 0, 0},      {4, 0, 7, 64, 0, 0},      {4, 5, 16, 64, 0, 0},
                          {4, 15, 17, 64, 0, 0},    {7, 33, 100, 64, 0, 0},   {9, 16, 33, 128, 0, 0},
                          {2, 7, 250, 256, 50.0f, 0}, {3, 1, 40, 96, 0, 0},   {8, 0, 513, 64, 0, 0},
                          {4, 200, 1, 64, 0, 0},    {4, 3, 200, 64, 0, 0},
                          // rings: wrapped mid-block, at a block start, by one key, not at all
                          {4, 37, 40, 64, 0, 48},   {4, 32, 48, 64, 0, 48},   {2, 47, 2, 64, 0, 48},
                          {3, 90, 120, 96, 0, 128}, {8, 10, 30, 64, 0, 48},   {4, 400, 160, 64, 30.0f, 176},
                          {4, 16, 32, 64, 0, 48}, {3, 90, 120, 96, 0, 0}, {3, 91, 120, 96, 0, 128},
                          // several tokens: Phi-3's groups of one head, Gemma's of two, Llama's of
                          // four; the first token alone with the first key; across a ring's wrap
                          {8, 0, 8, 96, 0, 0, 8},   {8, 0, 300, 96, 0, 0, 8}, {8, 5, 77, 256, 50.0f, 0, 4},
                          {8, 0, 130, 64, 0, 0, 2}, {6, 3, 21, 64, 0, 0, 3},  {8, 37, 40, 64, 0, 48, 8},
                          {8, 20, 40, 64, 0, 48, 4},
                          // past a sliding window: each token's first key one later
                          {8, 0, 8, 96, 0, 0, 8, 1}, {8, 3, 300, 96, 0, 0, 8, 1}, {8, 45, 40, 64, 20.0f, 48, 4, 1}};
  constexpr int B = kern::kKeyBlock;
  std::mt19937 rng(17);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    ASSERT_NE(k.attend_cache, nullptr) << kern::isa_name(isa);
    for (const CacheFormatType& kf : kCacheFormats)
      for (const CacheFormatType& vf_format : kCacheFormats)
        for (const Shape& sh : shapes) {
          const TypeTraits& k_traits = type_traits(kf.type);
          const TypeTraits& v_traits = type_traits(vf_format.type);
          const int64_t slots = sh.ring > 0 ? sh.ring : (sh.first + sh.n + B - 1) / B * B;
          // A block of both heads' keys, and head 1's offset in it; value rows of both heads.
          const int64_t key_row = static_cast<int64_t>(row_size(kf.type, sh.d));
          const int64_t head_key_bytes = key_row * B;
          const int64_t stride = 2 * head_key_bytes;
          const int64_t row = static_cast<int64_t>(row_size(vf_format.type, sh.d));
          const int64_t ldv = 2 * row + 36;  // padded
          const int64_t key_slots = slots / B * B + B;  // the kernel reads whole blocks
          std::vector<uint8_t> blocks(static_cast<size_t>(key_slots / B * stride));
          std::vector<uint8_t> vrows(static_cast<size_t>(slots * ldv));
          std::vector<uint8_t> head1_keys(static_cast<size_t>(key_slots * key_row));  // as encoded rows
          std::vector<float> x(static_cast<size_t>(sh.d));
          std::vector<uint8_t> enc(static_cast<size_t>(key_row));
          for (int64_t s = 0; s < key_slots; ++s)
            for (int h = 0; h < 2; ++h) {
              for (float& e : x) e = g(rng);
              k_traits.from_float(x.data(), enc.data(), sh.d);
              pack_key(kf.type, enc.data(), sh.d, blocks.data() + (s / B) * stride + h * head_key_bytes,
                       static_cast<int>(s % B));
              if (h == 1) std::memcpy(&head1_keys[s * key_row], enc.data(), enc.size());
              for (float& e : x) e = g(rng);
              if (s < slots) v_traits.from_float(x.data(), vrows.data() + s * ldv + h * row, sh.d);
            }
          auto slot_of = [&](int64_t pos) { return sh.ring > 0 ? pos % sh.ring : pos; };
          // Head 1's keys (transposed) and values, position by position, decoded.
          std::vector<float> kt(static_cast<size_t>(sh.d * sh.n)), vf(static_cast<size_t>(sh.n * sh.d));
          for (int64_t j = 0; j < sh.n; ++j) {
            const int64_t s = slot_of(sh.first + j);
            k_traits.to_float(&head1_keys[s * key_row], x.data(), sh.d);
            for (int c = 0; c < sh.d; ++c) kt[c * sh.n + j] = x[c];
            v_traits.to_float(vrows.data() + s * ldv + row, vf.data() + j * sh.d, sh.d);
          }
          std::vector<float> q = gaussian(sh.n_q * sh.d, 1, 2.0f);
          if (sh.n > 50) q[0] = 400.0f;
          const int64_t slot0 = slot_of(sh.first);
          kern::CacheKeysValues kv;
          kv.keys = kf.format;
          kv.values = vf_format.format;
          kv.kb = blocks.data() + (slot0 / B) * stride + head_key_bytes;  // head 1
          kv.kblock_stride = stride;
          kv.lane0 = static_cast<int>(slot0 % B);
          kv.v = vrows.data() + slot0 * ldv + row;
          kv.ldv = ldv;
          kv.n = sh.n;
          kv.n_first = std::min(sh.n, slots - slot0);
          if (kv.n_first < sh.n) {
            kv.kb_wrap = blocks.data() + head_key_bytes;
            kv.v_wrap = vrows.data() + row;
          }
          SCOPED_TRACE(std::string("keys ") + dtype_name(kf.type) + ", values " + dtype_name(vf_format.type));
          expect_cache_kernel_matches(isa, sh, q, kt, vf, kv, kern::AttendCacheFn{&ref::attend_group_cache},
                                      k.attend_cache);
        }
  }
}

// A cache's keys and values decoded to floats (kern::DecodeCacheKeysFn, DecodeCacheValuesFn:
// what a prompt's attention reads once per layer from a quantized cache), for each format and
// several head sizes: the scalar twin gives what the type's reference decoder gives for each
// encoded key and value row, and each ISA level what the twin gives (the same floats, up to
// the rounding of a fused multiply-add in the types with a minimum).
TEST(KernelDecodeCache, MatchesScalarTwinForEachFormat) {
  constexpr int B = kern::kKeyBlock;
  std::mt19937 rng(29);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (const CacheFormatType& f : kCacheFormats)
    for (const int d : {32, 64, 96, 256}) {
      const TypeTraits& traits = type_traits(f.type);
      const int64_t n_blocks = 3, n = n_blocks * B - 5;  // value rows: not a whole number of blocks
      const int64_t key_row = static_cast<int64_t>(row_size(f.type, d)), stride = key_row * B + 24;  // padded
      const int64_t ldv = key_row + 12;
      std::vector<uint8_t> blocks(static_cast<size_t>(n_blocks * stride)), rows(static_cast<size_t>(n * ldv));
      std::vector<float> keys(static_cast<size_t>(n_blocks * B * d)), values(static_cast<size_t>(n * d));
      std::vector<float> x(static_cast<size_t>(d));
      std::vector<uint8_t> enc(static_cast<size_t>(key_row));
      for (int64_t p = 0; p < n_blocks * B; ++p) {
        for (float& e : x) e = g(rng);
        traits.from_float(x.data(), enc.data(), d);
        pack_key(f.type, enc.data(), d, blocks.data() + (p / B) * stride, static_cast<int>(p % B));
        traits.to_float(enc.data(), x.data(), d);
        for (int c = 0; c < d; ++c) keys[static_cast<size_t>(((p / B) * d + c) * B + p % B)] = x[c];
        if (p >= n) continue;
        for (float& e : x) e = g(rng);
        traits.from_float(x.data(), rows.data() + p * ldv, d);
        traits.to_float(rows.data() + p * ldv, values.data() + p * d, d);
      }
      const std::string what = std::string(dtype_name(f.type)) + " d " + std::to_string(d);
      std::vector<float> twin_k(keys.size()), twin_v(values.size());
      ref::decode_cache_keys(f.format, blocks.data(), stride, n_blocks, d, twin_k.data());
      ref::decode_cache_values(f.format, rows.data(), ldv, n, d, twin_v.data());
      EXPECT_LE(rel_l2(twin_k, keys), 1e-7) << "scalar twin, keys, " << what;
      EXPECT_LE(rel_l2(twin_v, values), 1e-7) << "scalar twin, values, " << what;
      for (Isa isa : simd_levels()) {
        const kern::Kernels& k = *kern::for_isa(isa);
        ASSERT_NE(k.decode_cache_keys, nullptr) << kern::isa_name(isa);
        std::vector<float> got_k(keys.size(), NAN), got_v(values.size(), NAN);
        k.decode_cache_keys(f.format, blocks.data(), stride, n_blocks, d, got_k.data());
        k.decode_cache_values(f.format, rows.data(), ldv, n, d, got_v.data());
        EXPECT_LE(rel_l2(got_k, twin_k), 1e-7) << kern::isa_name(isa) << " keys, " << what;
        EXPECT_LE(rel_l2(got_v, twin_v), 1e-7) << kern::isa_name(isa) << " values, " << what;
      }
    }
}

// Gemma 2's soft-capping, cap * tanh(x / cap), against std::tanh element by element: near 0
// (the polynomial), around the switch at |x / cap| = 0.625, out to saturation, both signs, and
// lengths with masked tails.
TEST(KernelSoftcap, MatchesStdTanh) {
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    ASSERT_NE(k.softcap, nullptr) << kern::isa_name(isa);
    for (const float cap : {50.0f, 30.0f, 1.0f}) {
      for (int64_t n : {1, 15, 16, 17, 3001}) {
        std::vector<float> x = gaussian(n, 9, 2.0f * cap);
        for (int64_t i = 0; i < n; i += 7) x[i] *= 1e-3f;  // tiny: tanh(x) ~ x
        if (n > 100) {
          x[1] = 0.625f * cap, x[2] = -0.625f * cap, x[3] = std::nextafter(0.625f, 0.0f) * cap;
          x[4] = 0.0f, x[5] = 1e6f, x[6] = -1e6f, x[8] = 9.5f * cap;
        }
        std::vector<float> got = x;
        k.softcap(got.data(), n, cap);
        for (int64_t i = 0; i < n; ++i) {
          const double ref = cap * std::tanh(static_cast<double>(x[i] / cap));
          EXPECT_LE(std::fabs(got[i] - ref), 4e-7 * std::fabs(ref) + 1e-30)
              << kern::isa_name(isa) << " cap " << cap << " x " << x[i] << " got " << got[i] << " want " << ref;
        }
      }
    }
  }
}

TEST(KernelSwiGLU, MatchesScalarFormula) {
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    ASSERT_NE(k.swiglu, nullptr);
    for (int64_t n : {1, 15, 16, 17, 1000}) {
      std::vector<float> g = gaussian(n, 5, 4.0f), u = gaussian(n, 6);
      if (n == 1000) g[3] = 120.0f, g[4] = -120.0f, g[5] = 0.0f;  // exp over/underflow
      std::vector<float> ref(static_cast<size_t>(n)), got(ref.size(), -3.0f);
      for (int64_t i = 0; i < n; ++i)
        ref[i] = static_cast<float>(g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i]);
      k.swiglu(g.data(), u.data(), got.data(), n);
      EXPECT_LE(rel_l2(ref, got), 1e-6) << kern::isa_name(isa) << " n " << n;
      for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(got[i])) << i;
    }
  }
}

TEST(KernelFp16ToF32, ExactOnEveryHalf) {
  // All 65536 fp16 bit patterns (normals, subnormals, zeros, infinities, NaNs), then lengths
  // around the vector width for the tail.
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    ASSERT_NE(k.fp16_to_f32, nullptr);
    for (int64_t n : {int64_t{65536}, int64_t{1}, int64_t{7}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{33}}) {
      const uint16_t* x = all.data() + (n == 65536 ? 0 : 15360);  // 15360: 1.0
      std::vector<float> got(static_cast<size_t>(n) + 1, -7.0f);
      k.fp16_to_f32(x, got.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const float want = fp16_to_fp32(x[i]);
        if (std::isnan(want)) ASSERT_TRUE(std::isnan(got[i])) << kern::isa_name(isa) << " half 0x" << std::hex << x[i];
        else ASSERT_EQ(std::memcmp(&want, &got[i], 4), 0) << kern::isa_name(isa) << " half 0x" << std::hex << x[i];
      }
      EXPECT_EQ(got[n], -7.0f) << "wrote past the end, n " << n;
    }
  }
}

TEST(KernelF32ToFp16, RoundsLikeTheScalarConversion) {
  // Every fp16 value and the midpoints between neighbours (ties to even), random floats over
  // the whole fp16 range and beyond (overflow to infinity, underflow to subnormals and zero),
  // infinities and NaN; then lengths around the vector width for the tail.
  std::vector<float> x;
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    const float a = fp16_to_fp32(static_cast<uint16_t>(h)), b = fp16_to_fp32(static_cast<uint16_t>(h + 1));
    for (float v : {a, -a, (a + b) / 2, -(a + b) / 2}) x.push_back(v);
  }
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> e(-30.0f, 20.0f);
  for (int i = 0; i < 20000; ++i) x.push_back(std::ldexp(1.0f + (rng() % 1000000) * 1e-6f, static_cast<int>(e(rng))) * (i % 2 ? -1.0f : 1.0f));
  for (float v : {INFINITY, -INFINITY, NAN, 65504.0f, 65520.0f, 1e9f, -1e-9f}) x.push_back(v);
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    ASSERT_NE(k.f32_to_fp16, nullptr);
    for (size_t n : {x.size(), size_t{1}, size_t{7}, size_t{15}, size_t{16}, size_t{17}, size_t{33}}) {
      const float* src = x.data() + (n == x.size() ? 0 : 4000);
      std::vector<uint16_t> got(n + 1, 0xABCD);
      k.f32_to_fp16(src, got.data(), static_cast<int64_t>(n));
      for (size_t i = 0; i < n; ++i) {
        const uint16_t want = fp32_to_fp16(src[i]);
        if (std::isnan(src[i])) ASSERT_TRUE(std::isnan(fp16_to_fp32(got[i]))) << kern::isa_name(isa);
        else ASSERT_EQ(got[i], want) << kern::isa_name(isa) << " value " << src[i];
      }
      EXPECT_EQ(got[n], 0xABCD) << "wrote past the end, n " << n;
    }
  }
}

// ---- float types -------------------------------------------------------------------------------

TEST(KernelFloat, GemvAndGemmMatchReference) {
  const int64_t n_out = 13, n_in = 320;
  for (Isa isa : simd_levels()) {
    const kern::Kernels& k = *kern::for_isa(isa);
    for (DType type : {DType::F32, DType::F16, DType::BF16}) {
      const kern::FloatKernels& fk = k.flt[static_cast<int>(type)];
      ASSERT_NE(fk.gemv, nullptr);
      const TypeTraits& tt = type_traits(type);
      const size_t row_bytes = row_size(type, n_in);
      const std::vector<float> wf = gaussian(n_out * n_in, 3);
      std::vector<uint8_t> w(row_bytes * n_out);
      tt.from_float(wf.data(), w.data(), n_out * n_in);
      std::vector<float> wd(wf.size());
      tt.to_float(w.data(), wd.data(), n_out * n_in);
      for (int64_t n_tok : {1, 3, 8, 17}) {
        const std::vector<float> x = gaussian(n_tok * n_in, 9 + static_cast<uint32_t>(n_tok));
        const int act_kind = n_tok > 1 ? fk.gemm_act : fk.gemv_act;
        std::vector<float> xr = x;  // what the kernel multiplies with
        for (auto& v : xr) {
          if (act_kind == kern::kActBF16 || act_kind == kern::kActBF16R) v = bf16_to_fp32(fp32_to_bf16(v));
          if (act_kind == kern::kActF16R) v = fp16_to_fp32(fp32_to_fp16(v));
        }
        const std::vector<float>& wr = wd;
        std::vector<float> ref(static_cast<size_t>(n_out * n_tok));
        for (int64_t t = 0; t < n_tok; ++t)
          for (int64_t o = 0; o < n_out; ++o) {
            double s = 0;
            for (int64_t i = 0; i < n_in; ++i) s += static_cast<double>(wr[o * n_in + i]) * xr[t * n_in + i];
            ref[t * n_out + o] = static_cast<float>(s);
          }
        std::vector<float> got(ref.size(), -1.0f);
        std::vector<uint16_t> xb(x.size());
        std::vector<float> xf(x.size());
        const void* act = x.data();
        if (act_kind == kern::kActBF16) {
          fk.to_bf16(x.data(), xb.data(), n_tok * n_in);
          act = xb.data();
        } else if (act_kind == kern::kActF16R) {
          fk.to_f16r(x.data(), xf.data(), n_tok * n_in);
          act = xf.data();
        } else if (act_kind == kern::kActBF16R) {
          fk.to_bf16r(x.data(), xf.data(), n_tok * n_in);
          act = xf.data();
        }
        if (n_tok == 1) {
          const auto* xa = static_cast<const float*>(act);
          fk.gemv(w.data(), row_bytes, 0, 5, n_in, xa, got.data());
          fk.gemv(w.data(), row_bytes, 5, n_out, n_in, xa, got.data());
        } else {
          std::vector<uint8_t> scratch(fk.scratch_bytes(n_in));
          fk.gemm(w.data(), row_bytes, 0, 6, n_in, act, n_tok, got.data(), n_out, scratch.data());
          fk.gemm(w.data(), row_bytes, 6, n_out, n_in, act, n_tok, got.data(), n_out, scratch.data());
        }
        EXPECT_LE(rel_l2(ref, got), 1e-6)
            << kern::isa_name(isa) << " " << dtype_name(type) << " tokens " << n_tok;
      }
    }
  }
}

}  // namespace
}  // namespace slm
