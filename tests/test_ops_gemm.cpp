// sgemm and matmul_transposed (ops/gemm.h) against double-precision loops, under every
// instruction-set level this CPU supports (the scalar one included: its micro-kernel is the
// oracle), and each level's packing and micro-kernel (kern::SgemmKernels) against the layout
// and arithmetic kernels.h specifies.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "core/mmap_file.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "kernels/ref/sgemm.h"
#include "ops/gemm.h"
#include "support/forced_isa.h"
#include "support/gaussian.h"
#include "support/rel_l2.h"

namespace slm {
namespace {

using kern::Isa;
using test::rel_l2;

std::vector<Isa> levels() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx})
    if (kern::isa_supported(i)) v.push_back(i);
  return v;
}

using test::gaussian;

// Restores the active level when a test ends, however it ends.
struct IsaGuard {
  Isa before = kern::active_isa();
  ~IsaGuard() { kern::set_active_isa(before); }
};

// ---- each table's packing and micro-kernel ----------------------------------------------------

struct Table {
  Isa isa;
  kern::SgemmKernels sk;
};
std::vector<Table> tables() {
  std::vector<Table> v{{Isa::Scalar, ref::sgemm_kernels()}};
  for (Isa i : {Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx})
    if (const kern::Kernels* k = kern::for_isa(i)) v.push_back({i, k->sgemm});
  return v;
}

TEST(SgemmKernels, EveryLevelHasOne) {
  for (const Table& t : tables()) {
    EXPECT_GT(t.sk.mr, 0) << kern::isa_name(t.isa);
    EXPECT_GT(t.sk.nr, 0) << kern::isa_name(t.isa);
    EXPECT_NE(t.sk.kernel, nullptr) << kern::isa_name(t.isa);
  }
}

// Packing is a pure copy: exact, both source layouts (the transposed one through the SIMD
// transposes), partial panels zero-padded, odd k.
TEST(SgemmKernels, PackLayoutIsExact) {
  const int64_t ld = 300;
  const std::vector<float> src = gaussian(ld * ld, 1);
  for (const Table& t : tables()) {
    for (auto [fn, w] : {std::pair{t.sk.pack_a, t.sk.mr}, std::pair{t.sk.pack_b, t.sk.nr}}) {
      for (int64_t nx : {int64_t{1}, int64_t{w}, int64_t{w} * 3 + 5}) {
        for (int64_t k : {1, 8, 19, 256}) {
          for (auto [sx, sk] : {std::pair<int64_t, int64_t>{1, ld}, {ld, 1}, {ld + 1, 2}}) {
            const int64_t panels = (nx + w - 1) / w;
            std::vector<float> got(static_cast<size_t>(panels * w * k) + 7, -1.0f);
            fn(src.data(), sx, sk, nx, k, got.data());
            for (int64_t x = 0; x < panels * w; ++x)
              for (int64_t p = 0; p < k; ++p) {
                const float want = x < nx ? src[x * sx + p * sk] : 0.0f;
                ASSERT_EQ(got[(x / w) * w * k + p * w + x % w], want)
                    << kern::isa_name(t.isa) << " width " << w << " nx " << nx << " k " << k << " sx " << sx;
              }
            EXPECT_EQ(got.back(), -1.0f) << "wrote past the panels";
          }
        }
      }
    }
  }
}

// One tile from packed panels, every partial shape: C's other elements untouched, beta = 0
// ignoring NaN, the sums within float rounding of double ones.
TEST(SgemmKernels, TileMatchesDouble) {
  for (const Table& t : tables()) {
    const int mr = t.sk.mr, nr = t.sk.nr;
    for (int64_t k : {1, 13, 256}) {
      const std::vector<float> a = gaussian(mr * k, 2), b = gaussian(nr * k, 3);
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 1.0f}, {-2.0f, 0.25f}}) {
        for (int m : {1, mr / 2 + 1, mr})
          for (int n : {1, nr / 2 + 3 < nr ? nr / 2 + 3 : nr, nr - 1, nr}) {
            const int64_t ldc = nr + 5;
            std::vector<float> c = gaussian((mr + 1) * ldc, 4);
            if (beta == 0.0f) c[0] = std::numeric_limits<float>::quiet_NaN();
            const std::vector<float> c0 = c;
            t.sk.kernel(k, a.data(), b.data(), c.data(), ldc, m, n, alpha, beta);
            std::vector<float> want = c0, got = c;
            for (int i = 0; i < m; ++i)
              for (int j = 0; j < n; ++j) {
                double s = 0;
                for (int64_t p = 0; p < k; ++p) s += static_cast<double>(a[p * mr + i]) * b[p * nr + j];
                const double prev = beta == 0.0f ? 0.0 : beta * static_cast<double>(c0[i * ldc + j]);
                want[i * ldc + j] = static_cast<float>(alpha * s + prev);
              }
            for (size_t e = 0; e < c.size(); ++e) {
              if (static_cast<int64_t>(e / ldc) < m && static_cast<int64_t>(e % ldc) < n) continue;
              ASSERT_TRUE(std::memcmp(&c[e], &c0[e], 4) == 0)
                  << kern::isa_name(t.isa) << ": wrote outside the " << m << "x" << n << " tile";
            }
            EXPECT_LE(rel_l2(want, got), 1e-6) << kern::isa_name(t.isa) << " k " << k << " m " << m << " n " << n;
          }
      }
    }
  }
}

// ---- sgemm ----------------------------------------------------------------------------------

struct Case {
  int64_t M, N, K;
};

// C = alpha * op(A) op(B) + beta * C in double; A and B as stored.
std::vector<float> naive(bool ta, bool tb, const Case& s, float alpha, const std::vector<float>& A, int64_t lda,
                         const std::vector<float>& B, int64_t ldb, float beta, std::vector<float> C, int64_t ldc) {
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t j = 0; j < s.N; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < s.K; ++p)
        sum += static_cast<double>(ta ? A[p * lda + i] : A[i * lda + p]) * (tb ? B[j * ldb + p] : B[p * ldb + j]);
      const double prev = beta == 0.0f ? 0.0 : beta * static_cast<double>(C[i * ldc + j]);
      C[i * ldc + j] = static_cast<float>(alpha * sum + prev);
    }
  return C;
}

// Every level, 1 and 2 threads, the four layouts, padded leading dimensions, and shapes that
// reach each blocking edge: tiles cut by M and N, K in several slices, N past one B block
// (2048 columns), M past one A block (128 rows), and few rows (the threads split columns).
TEST(Sgemm, MatchesDoubleEverywhere) {
  SLM_REQUIRE_FORCED_ISA();
  IsaGuard guard;
  const Case cases[] = {{1, 1, 1},    {1, 7, 33},    {7, 1, 130},  {33, 130, 7}, {130, 33, 257},
                        {257, 130, 33}, {64, 96, 520}, {9, 2100, 20}, {300, 70, 40}, {2, 400, 3}};
  for (Isa isa : levels()) {
    kern::set_active_isa(isa);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      uint32_t seed = 10;
      for (const Case& s : cases)
        for (bool ta : {false, true})
          for (bool tb : {false, true}) {
            const int64_t lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 5, ldc = s.N + 2;
            const std::vector<float> A = gaussian((ta ? s.K : s.M) * lda, seed++);
            const std::vector<float> B = gaussian((tb ? s.N : s.K) * ldb, seed++);
            for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {0.5f, 1.0f}, {-1.5f, -0.5f}}) {
              std::vector<float> C = gaussian(s.M * ldc, seed++);
              if (beta == 0.0f)  // NaN where C is written; the padding keeps finite values
                for (int64_t i = 0; i < s.M; ++i)
                  for (int64_t j = 0; j < s.N; ++j) C[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
              const std::vector<float> want = naive(ta, tb, s, alpha, A, lda, B, ldb, beta, C, ldc);
              sgemm(pool, ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
              // The padding columns of C are compared too: they must be untouched.
              EXPECT_LE(rel_l2(want, C), 1e-5)
                  << kern::isa_name(isa) << " threads " << threads << " " << (ta ? "T" : "N") << (tb ? "T" : "N")
                  << " " << s.M << "x" << s.N << "x" << s.K << " alpha " << alpha << " beta " << beta;
            }
          }
    }
  }
}

TEST(Sgemm, EmptyProductsOnlyScale) {
  SLM_REQUIRE_FORCED_ISA();
  ThreadPool pool(2);
  std::vector<float> C = {1, 2, 3, 4, 5, 6};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> A(6, nan), B(6, nan);
  sgemm(pool, false, false, 2, 3, 0, 1.0f, A.data(), 1, B.data(), 3, 2.0f, C.data(), 3);  // K = 0
  EXPECT_EQ(C, (std::vector<float>{2, 4, 6, 8, 10, 12}));
  sgemm(pool, false, false, 2, 3, 2, 0.0f, A.data(), 2, B.data(), 3, 0.5f, C.data(), 3);  // alpha = 0
  EXPECT_EQ(C, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  std::vector<float> D(6, nan);
  sgemm(pool, true, true, 2, 3, 0, 1.0f, A.data(), 2, B.data(), 1, 0.0f, D.data(), 3);
  EXPECT_EQ(D, std::vector<float>(6, 0.0f));
  sgemm(pool, false, false, 0, 3, 5, 1.0f, A.data(), 5, B.data(), 3, 0.0f, D.data(), 3);  // M = 0
  EXPECT_EQ(D, std::vector<float>(6, 0.0f));
}

// ---- matmul_transposed ---------------------------------------------------------------------

struct Matrix {
  std::vector<uint8_t> bytes;
  std::vector<float> decoded;  // the rows as the type decodes them: the reference's W
  Weight w;
};

Matrix make_matrix(DType type, int64_t n_out, int64_t n_in, uint32_t seed) {
  const TypeTraits& tt = type_traits(type);
  const std::vector<float> f = gaussian(static_cast<size_t>(n_out * n_in), seed);
  Matrix m;
  const size_t row_bytes = row_size(type, n_in);
  m.bytes.resize(row_bytes * n_out);
  m.decoded.resize(f.size());
  for (int64_t o = 0; o < n_out; ++o) {
    tt.from_float(f.data() + o * n_in, m.bytes.data() + o * row_bytes, n_in);
    tt.to_float(m.bytes.data() + o * row_bytes, m.decoded.data() + o * n_in, n_in);
  }
  m.w.name = "test";
  m.w.type = type;
  m.w.n_in = n_in;
  m.w.n_out = n_out;
  m.w.data = m.bytes.data();
  m.w.row_bytes = row_bytes;
  return m;
}

std::vector<float> naive_backward(const Matrix& m, const std::vector<float>& dy, int64_t n_tok,
                                  std::vector<float> dx, bool accumulate) {
  const int64_t n_in = m.w.n_in, n_out = m.w.n_out;
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t i = 0; i < n_in; ++i) {
      double s = accumulate ? dx[t * n_in + i] : 0.0;
      for (int64_t o = 0; o < n_out; ++o) s += static_cast<double>(dy[t * n_out + o]) * m.decoded[o * n_in + i];
      dx[t * n_in + i] = static_cast<float>(s);
    }
  return dx;
}

class MatmulTransposed : public testing::TestWithParam<DType> {};

// Shapes: W taller than one 256-row panel, wider than one 2048-column chunk, and narrower than
// a column block per thread (the threads then split the tokens).
TEST_P(MatmulTransposed, MatchesDecodedRows) {
  SLM_REQUIRE_FORCED_ISA();
  IsaGuard guard;
  const DType type = GetParam();
  const int64_t bs = type_traits(type).block_size;
  std::vector<std::pair<int64_t, int64_t>> shapes = {{300, 512}, {40, 2304}, {3, 256}};
  if (bs <= 64) shapes.push_back({70, 64});
  for (auto [n_out, n_in] : shapes) {
    const Matrix m = make_matrix(type, n_out, n_in, 5);
    for (int64_t n_tok : {1, 5, 37}) {
      const std::vector<float> dy = gaussian(n_tok * n_out, 6);
      const std::vector<float> dx0 = gaussian(n_tok * n_in, 7);
      for (bool acc : {false, true}) {
        const std::vector<float> want = naive_backward(m, dy, n_tok, dx0, acc);
        for (Isa isa : levels()) {
          kern::set_active_isa(isa);
          for (int threads : {1, 2}) {
            ComputeContext ctx(threads);
            std::vector<float> dx = dx0;
            if (!acc) dx.assign(dx.size(), std::numeric_limits<float>::quiet_NaN());
            matmul_transposed(ctx, m.w, dy.data(), n_tok, dx.data(), acc);
            EXPECT_LE(rel_l2(want, dx), 1e-5) << dtype_name(type) << " " << n_out << "x" << n_in << " tokens "
                                             << n_tok << " accumulate " << acc << " " << kern::isa_name(isa)
                                             << " threads " << threads;
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulTransposed,
                         testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0,
                                         DType::Q4_K, DType::Q6_K),
                         [](const testing::TestParamInfo<DType>& info) { return dtype_name(info.param); });

// A model's weight is read from its file (pread at file_offset), not through the mapping.
TEST(MatmulTransposedFile, ReadsRowsAtTheFileOffset) {
  SLM_REQUIRE_FORCED_ISA();
  const Matrix m = make_matrix(DType::Q4_0, 300, 256, 8);
  const auto path = std::filesystem::temp_directory_path() / ("slm_gemm_" + std::to_string(::getpid()) + ".bin");
  const size_t offset = 96;
  {
    std::ofstream f(path, std::ios::binary);
    const std::string pad(offset, 'x');
    f.write(pad.data(), static_cast<std::streamsize>(pad.size()));
    f.write(reinterpret_cast<const char*>(m.bytes.data()), static_cast<std::streamsize>(m.bytes.size()));
  }
  {
    MappedFile file(path.string());
    Weight w = m.w;
    w.data = file.data() + offset;
    w.file = &file;
    w.file_offset = offset;
    const int64_t n_tok = 9;
    const std::vector<float> dy = gaussian(n_tok * w.n_out, 9);
    std::vector<float> dx(n_tok * w.n_in, 1.0f);
    ComputeContext ctx(2);
    matmul_transposed(ctx, w, dy.data(), n_tok, dx.data(), true);
    EXPECT_LE(rel_l2(naive_backward(m, dy, n_tok, std::vector<float>(dx.size(), 1.0f), true), dx), 1e-5);
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace slm
