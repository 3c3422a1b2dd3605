// Logits of every position of a token sequence under a given KV cache type, evaluated in
// batches of n_batch (the prompt path) or one at a time (n_batch 1): what the KV cache tests
// compare across cache types.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "models/model.h"
#include "runtime/kv_cache.h"
#include "runtime/session.h"

namespace slm::test {

inline std::vector<float> logits_with(const Model& model, const std::vector<int32_t>& tokens, KVTypes types,
                                      int n_batch, size_t* kv_bytes = nullptr) {
  const int n_vocab = static_cast<int>(model.hparams().n_vocab);
  SessionOptions so;
  so.n_ctx = static_cast<int>(tokens.size());
  so.n_threads = 2;
  so.kv_types = types;
  so.n_batch = n_batch;
  Session session(model, so);
  if (kv_bytes) *kv_bytes = session.kv_bytes();
  std::vector<float> all;
  for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(n_batch)) {
    const size_t n = std::min(tokens.size() - i, static_cast<size_t>(n_batch));
    const auto& l = session.eval(std::span<const int32_t>(tokens.data() + i, n), true);
    all.insert(all.end(), l.begin(), l.begin() + static_cast<size_t>(n) * n_vocab);
  }
  return all;
}

}  // namespace slm::test
