// matmul() through each instruction-set level the CPU supports against the scalar reference path
// (SLM_FORCE_ISA=scalar's), for every weight type with SIMD kernels and several token counts:
// one (decode), a partial activation tile, whole tiles, and enough tokens for several; products
// of up to kern::kRowMaxTokens tokens once through the row kernels (on the unrepacked matrix)
// and once through the panels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/gguf.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "ops/ops.h"
#include "support/gaussian.h"
#include "support/rel_l2.h"

namespace slm {
namespace {

using kern::Isa;

struct Matrix {
  std::vector<uint8_t> bytes;
  Weight w;
};

using test::gaussian;

Matrix make_matrix(DType type, int64_t n_out, int64_t n_in, uint32_t seed) {
  const std::vector<float> f = gaussian(static_cast<size_t>(n_out * n_in), seed);
  Matrix m;
  const size_t row_bytes = row_size(type, n_in);
  m.bytes.resize(row_bytes * n_out);
  for (int64_t o = 0; o < n_out; ++o)
    type_traits(type).from_float(f.data() + o * n_in, m.bytes.data() + o * row_bytes, n_in);
  m.w.name = "test";
  m.w.type = type;
  m.w.n_in = n_in;
  m.w.n_out = n_out;
  m.w.data = m.bytes.data();
  m.w.row_bytes = row_bytes;
  return m;
}

std::vector<float> run(Isa isa, const Weight& w, const std::vector<float>& x, int64_t n_tok,
                       bool row_kernels = true) {
  kern::set_active_isa(isa);
  ComputeContext ctx(2);
  ctx.set_row_kernels(row_kernels);
  std::vector<float> y(static_cast<size_t>(w.n_out * n_tok), -7.0f);
  matmul(ctx, w, x.data(), n_tok, y.data());
  matmul(ctx, w, x.data(), n_tok, y.data());  // again: from the packed weights it kept
  return y;
}

using test::rel_l2;

class MatmulVsScalar : public testing::TestWithParam<DType> {};

TEST_P(MatmulVsScalar, EveryLevelAndTokenCount) {
  const DType type = GetParam();
  const Isa before = kern::active_isa();
  // 80 rows: five 16-row panels (ten 8-row ones) plus nothing left; 72: a partial panel.
  // 2304 inputs: panels long enough to be cut into k-slices.
  for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{80, 512}, {72, 512}, {40, 2304}}) {
    const Matrix m = make_matrix(type, n_out, n_in, 3);
    for (int64_t n_tok : {1, 3, 8, 17, 64}) {
      const std::vector<float> x = gaussian(static_cast<size_t>(n_tok * n_in), static_cast<uint32_t>(n_tok));
      const auto ref = run(Isa::Scalar, m.w, x, n_tok);
      for (auto [isa, rows] : {std::pair{Isa::Avx2, true}, {Isa::Avx512, true}, {Isa::Avx512Vnni, true},
                               {Isa::Amx, true}, {Isa::Avx512, false}, {Isa::Avx512Vnni, false},
                               {Isa::Amx, false}}) {
        if (!kern::isa_supported(isa) || (!rows && n_tok > kern::kRowMaxTokens)) continue;
        const auto got = run(isa, m.w, x, n_tok, rows);
        // Quantized types: same quantized activations, exact integer sums, float order only.
        // F16 elsewhere: the same fp16-rounded activations, f32 instead of f64 sums. BF16: the
        // scalar path rounds activations to bf16 too.
        // F16 on avx512vnni: int16 on both sides (see panels_f16_x86.cpp).
        const bool f16_i16 = type == DType::F16 && (isa == Isa::Avx512Vnni || isa == Isa::Amx);
        const double budget = f16_i16 ? 5e-4 : type == DType::F32 || type == DType::F16 ? 1e-6 : 3e-6;
        EXPECT_LE(rel_l2(ref, got), budget) << kern::isa_name(isa) << " " << dtype_name(type)
                                            << " " << n_out << "x" << n_in << " tokens " << n_tok
                                            << (rows ? "" : " (panels only)");
      }
    }
  }
  kern::set_active_isa(before);
}

// ---- the amx level's long-batch products (kernels/x86_amx/panels_amx.cpp) ----------------------

// What ops' matmul_panels does with a long batch, by hand: the panels packed as the VNNI kernels
// pack them, the activations in the long-batch tiles, the panels in two calls (p0 > 0 too).
std::vector<float> run_long(const kern::PanelKernels& pk, const Weight& w, const std::vector<float>& x,
                            int64_t n_tok) {
  const int64_t n_panels = (w.n_out + pk.rows - 1) / pk.rows;
  const size_t pb = pk.panel_bytes(w.n_in);
  std::vector<uint8_t> panels(pb * static_cast<size_t>(n_panels));
  for (int64_t p = 0; p < n_panels; ++p) {
    const int rows = static_cast<int>(std::min<int64_t>(pk.rows, w.n_out - p * pk.rows));
    pk.pack(w.data + static_cast<size_t>(p * pk.rows) * w.row_bytes, w.row_bytes, rows, w.n_in,
            panels.data() + static_cast<size_t>(p) * pb);
  }
  const int64_t tt = pk.long_tile_tokens;
  const int64_t n_tiles = (n_tok + tt - 1) / tt;
  const size_t tb = pk.long_tile_bytes(w.n_in);
  std::vector<uint8_t> tiles(tb * static_cast<size_t>(n_tiles), 0xAA);
  for (int64_t g = 0; g < n_tiles; ++g)
    pk.long_prepare(x.data() + g * tt * w.n_in, static_cast<int>(std::min(tt, n_tok - g * tt)), w.n_in,
                    tiles.data() + static_cast<size_t>(g) * tb);
  std::vector<float> y(static_cast<size_t>(w.n_out * n_tok), -7.0f);
  const int64_t half = n_panels / 2;
  pk.long_gemm(panels.data(), 0, half, w.n_out, w.n_in, tiles.data(), n_tok, y.data(), w.n_out);
  pk.long_gemm(panels.data(), half, n_panels, w.n_out, w.n_in, tiles.data(), n_tok, y.data(), w.n_out);
  return y;
}

// On every avx512vnni CPU: the tile code on the software model of the tile unit gives exactly
// the VNNI panel kernels' results (same integer sums, same float order), hence the scalar
// path's within the usual bound.
TEST(AmxTiles, ModelOfTheTileUnitGivesTheVnniResultsToTheBit) {
  if (!kern::isa_supported(Isa::Avx512Vnni)) GTEST_SKIP() << "the tile unit's model needs avx512vnni";
  const Isa before = kern::active_isa();
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    ASSERT_NE(kern::amx_kernels(true), nullptr);
    const kern::PanelKernels* pk = &kern::amx_kernels(true)->panel[static_cast<int>(type)];
    ASSERT_NE(pk->long_gemm, nullptr) << dtype_name(type);
    EXPECT_GE(pk->long_min_tokens, 8) << "decoding and server batches stay on the VNNI kernels";
    for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{80, 512}, {72, 512}, {40, 2304}}) {
      const Matrix m = make_matrix(type, n_out, n_in, 5);
      for (int64_t n_tok : {16, 17, 40, 64, 100}) {
        const std::vector<float> x = gaussian(static_cast<size_t>(n_tok * n_in), static_cast<uint32_t>(n_tok * 7));
        const auto got = run_long(*pk, m.w, x, n_tok);
        const auto vnni = run(Isa::Avx512Vnni, m.w, x, n_tok, false);
        const auto ref = run(Isa::Scalar, m.w, x, n_tok);
        const std::string what = std::string(dtype_name(type)) + " " + std::to_string(n_out) + "x" +
                                 std::to_string(n_in) + " tokens " + std::to_string(n_tok);
        ASSERT_EQ(got.size(), vnni.size());
        size_t differ = 0;
        for (size_t i = 0; i < got.size(); ++i) differ += std::memcmp(&got[i], &vnni[i], sizeof(float)) != 0;
        EXPECT_EQ(differ, 0u) << what << ": values that differ from the VNNI kernels'";
        EXPECT_LE(rel_l2(ref, got), 3e-6) << what;
      }
    }
  }
  kern::set_active_isa(before);
}

// BF16 weights: the tile product (on the model of TDPBF16PS) on the mapped rows against the
// VNNI path's VDPBF16PS product of the same bf16 activations (sums in another order), and the
// scalar path. Rows in two calls, the second starting mid-matrix with a partial 16-row group;
// 2304 inputs: slices of 512 and a partial one.
std::vector<float> run_float(const kern::FloatKernels& fk, bool long_batch, const Weight& w,
                             const std::vector<float>& x, int64_t n_tok) {
  std::vector<uint16_t> a(static_cast<size_t>(n_tok * w.n_in));
  fk.to_bf16(x.data(), a.data(), n_tok * w.n_in);
  std::vector<uint8_t> scratch(fk.scratch_bytes(w.n_in) + 64);
  std::vector<float> y(static_cast<size_t>(w.n_out * n_tok), -7.0f);
  const auto gemm = long_batch ? fk.long_gemm : fk.gemm;
  const int64_t mid = 48 < w.n_out ? 48 : 0;
  gemm(w.data, w.row_bytes, 0, mid, w.n_in, a.data(), n_tok, y.data(), w.n_out, scratch.data());
  gemm(w.data, w.row_bytes, mid, w.n_out, w.n_in, a.data(), n_tok, y.data(), w.n_out, scratch.data());
  return y;
}

TEST(AmxTiles, ModelOfTheBf16TileProductAgreesWithTheVnniPath) {
  if (!kern::isa_supported(Isa::Avx512Vnni) || !kern::cpu_has_bf16())
    GTEST_SKIP() << "the BF16 tile path replaces the avx512vnni level's VDPBF16PS path: this CPU has none";
  const Isa before = kern::active_isa();
  const kern::FloatKernels& amx = kern::amx_kernels(true)->flt[static_cast<int>(DType::BF16)];
  const kern::FloatKernels& vnni = kern::for_isa(Isa::Avx512Vnni)->flt[static_cast<int>(DType::BF16)];
  ASSERT_NE(amx.long_gemm, nullptr);
  ASSERT_EQ(vnni.gemm_act, kern::kActBF16);
  for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{80, 512}, {72, 512}, {40, 2304}}) {
    const Matrix m = make_matrix(DType::BF16, n_out, n_in, 11);
    for (int64_t n_tok : {16, 17, 40, 100}) {
      const std::vector<float> x = gaussian(static_cast<size_t>(n_tok * n_in), static_cast<uint32_t>(n_tok * 3));
      const auto got = run_float(amx, true, m.w, x, n_tok);
      const auto want = run_float(vnni, false, m.w, x, n_tok);
      const auto ref = run(Isa::Scalar, m.w, x, n_tok);
      EXPECT_LE(rel_l2(want, got), 1e-6) << n_out << "x" << n_in << " tokens " << n_tok;
      EXPECT_LE(rel_l2(ref, got), 3e-6) << n_out << "x" << n_in << " tokens " << n_tok;
    }
  }
  kern::set_active_isa(before);
}

// On an AMX CPU: the tile unit itself, against its model and through matmul at the amx level.
// Elsewhere it skips, saying why (a CPU without AMX is a property of the machine).
TEST(AmxTiles, TheTileUnitGivesItsModelsResults) {
  if (!kern::isa_supported(Isa::Amx)) GTEST_SKIP() << "SKIPPING: AMX is " << kern::amx_status_text();
  const Isa before = kern::active_isa();
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    ASSERT_NE(kern::amx_kernels(false), nullptr);
    ASSERT_NE(kern::amx_kernels(true), nullptr);
    const kern::PanelKernels* hw = &kern::amx_kernels(false)->panel[static_cast<int>(type)];
    const kern::PanelKernels* emu = &kern::amx_kernels(true)->panel[static_cast<int>(type)];
    for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{80, 512}, {72, 512}, {40, 2304}}) {
      const Matrix m = make_matrix(type, n_out, n_in, 9);
      for (int64_t n_tok : {16, 17, 64, 100}) {
        const std::vector<float> x = gaussian(static_cast<size_t>(n_tok * n_in), static_cast<uint32_t>(n_tok));
        EXPECT_EQ(run_long(*hw, m.w, x, n_tok), run_long(*emu, m.w, x, n_tok))
            << dtype_name(type) << " " << n_out << "x" << n_in << " tokens " << n_tok;
        const auto ref = run(Isa::Scalar, m.w, x, n_tok);
        EXPECT_LE(rel_l2(ref, run(Isa::Amx, m.w, x, n_tok)), 3e-6) << dtype_name(type) << " tokens " << n_tok;
      }
    }
  }
  // BF16: the unit's sums may be ordered differently from the model's (pairs added first).
  const Matrix m = make_matrix(DType::BF16, 72, 2304, 13);
  for (int64_t n_tok : {16, 17, 100}) {
    const std::vector<float> x = gaussian(static_cast<size_t>(n_tok * m.w.n_in), static_cast<uint32_t>(n_tok));
    const int bf = static_cast<int>(DType::BF16);
    EXPECT_LE(rel_l2(run_float(kern::amx_kernels(true)->flt[bf], true, m.w, x, n_tok),
                     run_float(kern::amx_kernels(false)->flt[bf], true, m.w, x, n_tok)), 1e-6) << "bf16 tokens " << n_tok;
    EXPECT_LE(rel_l2(run(Isa::Scalar, m.w, x, n_tok), run(Isa::Amx, m.w, x, n_tok)), 3e-6) << "bf16 tokens " << n_tok;
  }
  kern::set_active_isa(before);
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulVsScalar,
                         testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                                         DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                                         DType::IQ4_XS, DType::Q4_1, DType::Q3_K, DType::Q2_K,
                                         DType::Q5_0, DType::Q5_1, DType::IQ4_NL),
                         [](const testing::TestParamInfo<DType>& info) {
                           return dtype_name(info.param);
                         });

}  // namespace
}  // namespace slm
