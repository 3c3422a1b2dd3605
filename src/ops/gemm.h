// F32 matrix products for training: the general product with both transposes (backward passes
// need op(A) * op(B) in layouts matmul's weight kernels never see) and the product through a
// frozen weight's transpose (the backward of matmul with respect to its input).
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "ops/compute.h"
#include "ops/tensor.h"

namespace slm {

// C = alpha * op(A) * op(B) + beta * C with row-major BLAS semantics: op(A) is M x K (A is
// stored K x M, lda apart, when trans_a), op(B) is K x N (B stored N x K when trans_b), C is
// M x N, ldc apart. beta == 0 ignores C's previous contents (NaN included); alpha == 0 or
// K == 0 only scales C. Threads over the pool, each writing its own rows (or columns) of C.
void sgemm(ThreadPool& pool, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
           float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
           float* C, int64_t ldc);

// dx[t][i] = sum_o dy[t][o] * W[o][i] (+= with accumulate) for t < n_tokens: dy is
// n_tokens x w.n_out, dx n_tokens x w.n_in. Any weight type with a row decoder: F32 is used
// as mapped; others are decoded 256 rows at a time into per-thread scratch (memory O(panel)).
void matmul_transposed(ComputeContext& ctx, const Weight& w, const float* dy, int64_t n_tokens,
                       float* dx, bool accumulate);

}  // namespace slm
