// The classic blocked product (Goto / BLIS): op(B) is packed kc x nc at a time into panels of
// nr columns, op(A) mc x kc at a time into panels of mr rows, and the micro-kernel of the
// kernel table (kern::SgemmKernels) computes one mr x nr tile of C from one panel of each.
// Packing is where the transposes happen (only the strides differ), so one micro-kernel serves
// NN, NT, TN and TT. The loop order keeps a B panel in L1 while the A panels of an mc-row block
// stream past it from L2; C is read and written once per kc slice of K.
#include "ops/gemm.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/ref/sgemm.h"

namespace slm {
namespace {

constexpr int64_t kKc = 256;   // B panel: 256 x 32 floats = 32 KiB of the 48 KiB L1
constexpr int64_t kMc = 128;   // A block: 128 x 256 floats = 128 KiB of L2
constexpr int64_t kNc = 2048;  // B block: 2 MiB, from L2/L3; A is repacked once per nc columns

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per-thread packing buffers, 64-byte aligned, grown on demand and kept: a warmed-up thread
// (the pool's threads live as long as the pool) packs without allocating.
float* pack_buffer(int which, size_t n) {
  thread_local std::vector<float> bufs[2];
  std::vector<float>& v = bufs[which];
  if (v.size() < n + 16) v.resize(n + 16);
  const auto addr = reinterpret_cast<uintptr_t>(v.data());
  return v.data() + (64 - addr % 64) % 64 / sizeof(float);
}

// op(A)[i][p] = a[i * ars + p * acs], op(B)[p][j] = b[p * brs + j * bcs].
struct Operands {
  const float* a;
  int64_t ars, acs;
  const float* b;
  int64_t brs, bcs;
};

// One thread's product, on the caller's thread.
void gemm_serial(const kern::SgemmKernels& sk, int64_t M, int64_t N, int64_t K, float alpha,
                 const Operands& op, float beta, float* C, int64_t ldc) {
  const int64_t mr = sk.mr, nr = sk.nr;
  const int64_t mc_max = std::max<int64_t>(mr, kMc / mr * mr);
  const int64_t nc_max = std::max<int64_t>(nr, kNc / nr * nr);
  // K in equal slices (384 = 2 x 192, not 256 + 128): each slice pays one pass over C.
  const int64_t kc_max = cdiv(K, cdiv(K, kKc));
  float* ap = pack_buffer(0, static_cast<size_t>(mc_max * kc_max));
  float* bp = pack_buffer(1, static_cast<size_t>(cdiv(std::min(N, nc_max), nr) * nr * kc_max));
  for (int64_t jc = 0; jc < N; jc += nc_max) {
    const int64_t nc = std::min(nc_max, N - jc);
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = std::min(kc_max, K - pc);
      const float b_eff = pc == 0 ? beta : 1.0f;  // later slices add to the first's result
      sk.pack_b(op.b + pc * op.brs + jc * op.bcs, op.bcs, op.brs, nc, kc, bp);
      for (int64_t ic = 0; ic < M; ic += mc_max) {
        const int64_t mc = std::min(mc_max, M - ic);
        sk.pack_a(op.a + ic * op.ars + pc * op.acs, op.ars, op.acs, mc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int n = static_cast<int>(std::min(nr, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int m = static_cast<int>(std::min(mr, mc - ir));
            sk.kernel(kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, m, n,
                      alpha, b_eff);
          }
        }
      }
    }
  }
}

const kern::SgemmKernels& sgemm_kernels() {
  const kern::Kernels& k = kern::active();
  return k.sgemm.mr > 0 ? k.sgemm : ref::sgemm_kernels();
}

}  // namespace

void sgemm(ThreadPool& pool, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
           float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
           float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (lda < (trans_a ? M : K) || ldb < (trans_b ? K : N) || ldc < N)
    fail("sgemm: a leading dimension is shorter than its rows");
  if (K <= 0 || alpha == 0.0f) {  // no product: C = beta * C, A and B unread
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  const kern::SgemmKernels& sk = sgemm_kernels();
  const Operands op{A, trans_a ? 1 : lda, trans_a ? lda : 1, B, trans_b ? 1 : ldb, trans_b ? ldb : 1};
  const int64_t units_m = cdiv(M, sk.mr), units_n = cdiv(N, sk.nr);
  // Below ~1 MFLOP a hand-off to the workers costs more than it saves.
  if (pool.size() == 1 || 2.0 * M * N * K < 1e6) {
    gemm_serial(sk, M, N, K, alpha, op, beta, C, ldc);
    return;
  }
  // Each thread takes whole tiles of rows of C (or of columns when there are too few rows to
  // share out) and packs its own panels: the other operand is packed once per thread, a small
  // cost next to the thread's share of the arithmetic.
  const bool split_m = units_m >= units_n || units_m >= 8 * pool.size();
  pool.parallel_for(split_m ? units_m : units_n, [&](int64_t b, int64_t e, int) {
    Operands part = op;
    if (split_m) {
      const int64_t i0 = b * sk.mr, i1 = std::min(M, e * sk.mr);
      part.a += i0 * op.ars;
      gemm_serial(sk, i1 - i0, N, K, alpha, part, beta, C + i0 * ldc, ldc);
    } else {
      const int64_t j0 = b * sk.nr, j1 = std::min(N, e * sk.nr);
      part.b += j0 * op.bcs;
      gemm_serial(sk, M, j1 - j0, K, alpha, part, beta, C + j0, ldc);
    }
  });
}

void matmul_transposed(ComputeContext& ctx, const Weight& w, const float* dy, int64_t n_tokens,
                       float* dx, bool accumulate) {
  if (n_tokens <= 0 || w.n_in <= 0) return;
  const int64_t n_in = w.n_in, n_out = w.n_out;
  const float beta0 = accumulate ? 1.0f : 0.0f;
  if (w.type == DType::F32) {  // dx = dy * W on the matrix as mapped
    sgemm(ctx.pool(), false, false, n_tokens, n_in, n_out, 1.0f, dy, n_out,
          reinterpret_cast<const float*>(w.data), static_cast<int64_t>(w.row_bytes / sizeof(float)),
          beta0, dx, n_in);
    return;
  }
  const TypeTraits& tt = type_traits(w.type);
  if (!tt.to_float) fail("backward through {}: cannot decode type {}", w.name, tt.name);
  if (n_out <= 0) {
    sgemm(ctx.pool(), false, false, n_tokens, n_in, 0, 1.0f, dy, 1, nullptr, n_in, beta0, dx, n_in);
    return;
  }
  // Panels of kRows rows of W are decoded, kCols columns at a time, into per-thread scratch
  // and multiplied there. The threads share out whole blocks of columns (each decodes only its
  // columns and writes only its columns of dx), or the tokens when there are too few columns.
  constexpr int64_t kRows = 256, kCols = 2048;
  const int64_t bs = tt.block_size;
  const int64_t unit = cdiv(64, bs) * bs;
  const int64_t n_units = cdiv(n_in, unit);
  const int64_t chunk = std::max<int64_t>(1, kCols / unit) * unit;
  const int n_threads = ctx.n_threads();
  const bool split_cols = n_units >= n_threads;
  const int64_t panel_rows = std::min(kRows, n_out);
  const size_t dec_floats = static_cast<size_t>(panel_rows * std::min(chunk, n_in));
  // Rows of a file's matrix are read with pread, as get_rows does (ops.cpp): once repacked for
  // the forward kernels, its mapped pages have been released and should stay out of memory.
  const size_t raw_bytes = w.file ? static_cast<size_t>(panel_rows) * w.row_bytes : 0;
  const size_t scratch_floats = dec_floats + (raw_bytes + 63) / sizeof(float) + 16;
  ctx.reserve_thread_scratch(scratch_floats);
  const kern::SgemmKernels& sk = sgemm_kernels();
  ctx.pool().parallel_for(split_cols ? n_units : n_tokens, [&](int64_t b, int64_t e, int thread) {
    const int64_t c0 = split_cols ? b * unit : 0, c1 = split_cols ? std::min(n_in, e * unit) : n_in;
    const int64_t t0 = split_cols ? 0 : b, t1 = split_cols ? n_tokens : e;
    float* dec = ctx.thread_scratch(thread, scratch_floats);
    uint8_t* raw = reinterpret_cast<uint8_t*>(dec + dec_floats);
    raw += (64 - reinterpret_cast<uintptr_t>(raw) % 64) % 64;
    for (int64_t o0 = 0; o0 < n_out; o0 += kRows) {
      const int64_t rows = std::min(kRows, n_out - o0);
      const uint8_t* src = w.row(o0);
      if (w.file) {
        w.file->read_at(w.file_offset + static_cast<uint64_t>(o0) * w.row_bytes, raw,
                        static_cast<size_t>(rows) * w.row_bytes);
        src = raw;
      }
      for (int64_t cc = c0; cc < c1; cc += chunk) {
        const int64_t cw = std::min(chunk, c1 - cc);
        const size_t byte0 = static_cast<size_t>(cc / bs) * tt.type_size;
        for (int64_t r = 0; r < rows; ++r) tt.to_float(src + r * w.row_bytes + byte0, dec + r * cw, cw);
        const Operands op{dy + t0 * n_out + o0, n_out, 1, dec, cw, 1};
        gemm_serial(sk, t1 - t0, cw, rows, 1.0f, op, o0 == 0 ? beta0 : 1.0f, dx + t0 * n_in + cc, n_in);
      }
    }
  });
}

}  // namespace slm
