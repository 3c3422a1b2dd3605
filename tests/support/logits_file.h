// Reading the fixture logits format and comparing logits rows.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace slm::test {

struct LogitsFile {
  int32_t n_tokens = 0, n_vocab = 0;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [n_tokens][n_vocab]
  const float* row(int i) const { return logits.data() + static_cast<size_t>(i) * n_vocab; }
};

inline LogitsFile read_logits_file(const std::filesystem::path& p) {
  LogitsFile lf;
  std::FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + p.string());
  bool ok = std::fread(&lf.n_tokens, 4, 1, f) == 1 && std::fread(&lf.n_vocab, 4, 1, f) == 1 &&
            lf.n_tokens > 0 && lf.n_vocab > 0 && lf.n_tokens < (1 << 20) && lf.n_vocab < (1 << 24);
  if (ok) {
    lf.tokens.resize(lf.n_tokens);
    lf.logits.resize(static_cast<size_t>(lf.n_tokens) * lf.n_vocab);
    ok = std::fread(lf.tokens.data(), 4, lf.n_tokens, f) == static_cast<size_t>(lf.n_tokens) &&
         std::fread(lf.logits.data(), 4, lf.logits.size(), f) == lf.logits.size();
  }
  std::fclose(f);
  if (!ok) throw std::runtime_error("malformed logits file " + p.string());
  return lf;
}

// ||a - b|| / ||b|| over n values.
inline double relative_l2(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1e-30));
}

inline int64_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

}  // namespace slm::test
