// The scalar twin of kern::SgemmKernels (kernels/kernels.h): plain loops, the oracle the SIMD
// micro-kernels are tested against and what SLM_FORCE_ISA=scalar multiplies with.
#pragma once
#include "kernels/kernels.h"

namespace slm::ref {

// mr = 4, nr = 8 (small: the loops are not vectorized beyond what the compiler finds).
const kern::SgemmKernels& sgemm_kernels();

}  // namespace slm::ref
