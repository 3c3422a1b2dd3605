// The state one forward pass computes with: the thread pool and scratch memory that is
// reused from call to call, so decoding a token allocates nothing once warmed up.
#pragma once
#include <cstdint>
#include <memory>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/thread_pool.h"

namespace slm {

struct LoraSet;  // models/lora.h

class ComputeContext {
 public:
  explicit ComputeContext(int n_threads) : pool_(std::make_unique<ThreadPool>(n_threads)) {}
  ThreadPool& pool() { return *pool_; }
  int n_threads() const { return pool_->size(); }

  // When set, a decoder's output head writes each flagged token's final-norm hidden state
  // (n_embd floats, in batch order) here instead of computing logits: what embeddings from a
  // decoder model are made of (the Embedder sets it around its forward pass).
  float* hidden_out = nullptr;

  // The LoRA adapters the decoders' projections apply (models/lora.h); null: none.
  const LoraSet* lora = nullptr;

  // Scratch for activations quantized to a weight's dot-product type; 64-byte aligned (the
  // SIMD kernels' activation tiles are read a cache line at a time).
  uint8_t* act_scratch(size_t bytes) {
    if (act_.size() < bytes + 64) act_.resize(bytes + 64);
    const auto addr = reinterpret_cast<uintptr_t>(act_.data());
    return act_.data() + ((64 - addr % 64) % 64);
  }

  // Weights repacked for the SIMD kernels (ops.cpp, kernels/kernels.h), built the first time a
  // matrix is used. A model's weights keep theirs in their PackedSlot (below); this per-context
  // cache serves Weights built by hand (tests, benchmarks), keyed by their data and kept for
  // the life of the context. `tag` identifies the kernel table (layouts differ between
  // instruction sets).
  struct Packed {
    std::shared_ptr<uint8_t> mem;  // owns the memory (the allocator's deleter frees it)
    uint8_t* data = nullptr;       // 64-byte aligned
    size_t bytes = 0;
    const void* tag = nullptr;
  };
  const Packed* find_packed(const void* key, const void* tag) const {
    auto it = packed_.find(key);
    return it != packed_.end() && it->second.tag == tag ? &it->second : nullptr;
  }
  // Takes ownership of `mem` (at least `bytes` bytes, 64-byte aligned) for `key`.
  Packed& new_packed(const void* key, const void* tag, std::shared_ptr<uint8_t> mem, size_t bytes) {
    Packed& p = packed_[key];
    packed_bytes_ -= p.bytes;
    p.data = mem.get();
    p.mem = std::move(mem);
    p.bytes = bytes;
    p.tag = tag;
    packed_bytes_ += bytes;
    return p;
  }
  // Whether products of a few tokens may use the row kernels on unrepacked weights (ops.cpp);
  // tests turn it off to reach the panel kernels with any token count.
  bool row_kernels() const { return row_kernels_; }
  void set_row_kernels(bool on) { row_kernels_ = on; }
  // Memory held by repacked weights (on top of the mapped model file).
  size_t packed_bytes() const { return packed_bytes_; }
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
  std::unordered_map<const void*, Packed> packed_;
  size_t packed_bytes_ = 0;
  bool row_kernels_ = true;
};

// A model weight's repacked copy (Weight::packed), built by the first matmul that needs it and
// shared by every session on the model; the mutex serialises that first build.
struct PackedSlot {
  std::mutex mu;
  ComputeContext::Packed packed;
  std::atomic<const void*> ready{nullptr};  // packed.tag once the copy is complete
};

}  // namespace slm
