// Relative L2 error of `got` against `ref` (the absolute one where ref is all zero), in double:
// the budget the kernel tests compare SIMD results with their scalar twins by.
#pragma once
#include <cmath>
#include <vector>

namespace slm::test {

inline double rel_l2(const std::vector<float>& ref, const std::vector<float>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(ref[i]) - got[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace slm::test
