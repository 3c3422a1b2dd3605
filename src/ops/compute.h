// The state one forward pass computes with: the thread pool and scratch memory that is
// reused from call to call, so decoding a token allocates nothing once warmed up.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/thread_pool.h"

namespace slm {

class ComputeContext {
 public:
  explicit ComputeContext(int n_threads) : pool_(std::make_unique<ThreadPool>(n_threads)) {}
  ThreadPool& pool() { return *pool_; }
  int n_threads() const { return pool_->size(); }

  // Scratch for activations quantized to a weight's dot-product type.
  uint8_t* act_scratch(size_t bytes) {
    if (act_.size() < bytes) act_.resize(bytes);
    return act_.data();
  }
  // Named float buffers a forward pass reuses across calls (grown, never shrunk).
  float* buffer(int slot, size_t n) {
    if (buffers_.size() <= static_cast<size_t>(slot)) buffers_.resize(slot + 1);
    auto& v = buffers_[slot];
    if (v.size() < n) v.resize(n);
    return v.data();
  }
  // Named int buffers, like buffer().
  std::vector<int32_t>& int_scratch(int slot) {
    if (ints_.size() <= static_cast<size_t>(slot)) ints_.resize(slot + 1);
    return ints_[slot];
  }
  // Per-thread float scratch of at least n floats.
  float* thread_scratch(int thread, size_t n) {
    if (thread_.size() < static_cast<size_t>(n_threads())) thread_.resize(n_threads());
    auto& v = thread_[thread];
    if (v.size() < n) v.resize(n);
    return v.data();
  }
  // Make sure each thread's scratch holds n floats before a parallel region touches it
  // (resizing inside the region would race with nothing, but keeps allocation out of it).
  void reserve_thread_scratch(size_t n) {
    for (int t = 0; t < n_threads(); ++t) thread_scratch(t, n);
  }

 private:
  std::unique_ptr<ThreadPool> pool_;
  std::vector<uint8_t> act_;
  std::vector<std::vector<float>> thread_;
  std::vector<std::vector<float>> buffers_;
  std::vector<std::vector<int32_t>> ints_;
};

}  // namespace slm
