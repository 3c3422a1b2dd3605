// n normal values (mean 0, standard deviation scale) from std::mt19937(seed): the random inputs
// the kernel and sampling tests compare implementations on, the same values on every run.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace slm::test {

inline std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = g(rng);
  return v;
}

}  // namespace slm::test
