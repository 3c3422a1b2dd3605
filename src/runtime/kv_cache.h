// The key/value cache, behind an interface: a forward pass stores each token's K and V
// rows and reads back the rows a query may see. Many sequences live in one cache (a server
// batches users together); each sequence has its own positions 0..n_ctx-1.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/zeroed_buffer.h"

#include "core/dtype.h"

namespace slm {

struct KVShape {
  int n_layer = 0;
  int64_t k_dim = 0;  // n_head_kv * head_dim_k
  int64_t v_dim = 0;  // n_head_kv * head_dim_v
  int n_head_kv = 1;  // F16 caches keep values head by head (KVCache::value_head)
};

class KVCache {
 public:
  virtual ~KVCache() = default;
  virtual int n_ctx() const = 0;
  virtual int n_seq() const = 0;
  virtual DType type() const = 0;  // F32, F16 or Q8_0 storage (Q8_0 and F32: rows)
  // Store token `pos` of sequence `seq` for `layer`, k of k_dim and v of v_dim floats.
  virtual void store(int layer, int seq, int32_t pos, const float* k, const float* v) = 0;
  // First position a query at `pos` may attend to in `layer` (sliding windows move it).
  virtual int32_t first_visible(int layer, int32_t pos) const = 0;
  // Stored rows in type(), valid for first_visible(layer, p) <= pos <= p after store(..p..).
  virtual const void* k_row(int layer, int seq, int32_t pos) const = 0;
  virtual const void* v_row(int layer, int seq, int32_t pos) const = 0;
  // A cache that keeps F16 keys in blocks of kern::kKeyBlock positions, dimension-major within
  // a block (the layout kern::AttendF16Fn reads, kernels/kernels.h), one KV head at a time,
  // returns the first block of KV head `head` of (layer, seq), that head's blocks
  // key_block_stride() elements apart (its own positions one after the other, so that a
  // decoding job reads one contiguous run); k_row is then unavailable. Null: keys are rows.
  virtual const uint16_t* key_blocks(int /*layer*/, int /*seq*/, int /*head*/) const { return nullptr; }
  // In the blocks' elements: fp16 values for key_blocks, bytes for q8_key_blocks.
  virtual int64_t key_block_stride() const { return 0; }
  // Positions of (layer, seq) the cache holds before a position takes the key slot and value
  // row of the one `capacity` before it (a sliding window's ring): position pos sits in slot
  // pos % capacity. n_ctx() where nothing wraps. With key blocks, a capacity below n_ctx() is a
  // whole number of blocks.
  virtual int32_t ring_capacity(int /*layer*/) const { return n_ctx(); }
  // A cache with key blocks keeps values head by head, each head's positions one after the
  // other (decoding then reads one contiguous run per KV head, not 128 bytes of every row):
  // head h's value at position pos is value_head(layer, seq, h) + (pos % ring_capacity(layer))
  // * (v_dim / n_head_kv) fp16, and v_row is unavailable. Null: values are rows.
  virtual const uint16_t* value_head(int /*layer*/, int /*seq*/, int /*head*/) const { return nullptr; }
  // A q8_0 cache whose head dimensions are whole blocks of 32 keeps keys in blocks of
  // kern::kKeyBlock positions as F16 does, in the layout kern::AttendQ8Fn reads (int8 values
  // and each position's block scales, kernels/kernels.h), key_block_stride() bytes apart, and
  // values head by head as q8_0 rows (hd_v / 32 * 34 bytes each); k_row and v_row are then
  // unavailable. Null: rows (q8_0 rows across all heads where head dimensions are not whole
  // blocks).
  virtual const uint8_t* q8_key_blocks(int /*layer*/, int /*seq*/, int /*head*/) const { return nullptr; }
  virtual const uint8_t* q8_value_head(int /*layer*/, int /*seq*/, int /*head*/) const { return nullptr; }
  // Forget sequence `seq` from position `from` on (0 = the whole sequence). Returns the
  // length actually kept, which is less than `from` when a cache cannot keep that prefix
  // valid (a ring that has overwritten rows the next query would need).
  virtual int32_t truncate(int seq, int32_t from) = 0;
  // Number of positions currently held for seq (next position to fill).
  virtual int32_t seq_length(int seq) const = 0;
  virtual size_t bytes() const = 0;
};

// Every position of every sequence kept: n_seq * n_ctx rows per layer. F16 keys are kept in
// blocks (key_blocks) and values head by head (value_head): decoding then reads the cache as it
// is, where a float copy of every visible key and value, remade for every token, cost ~15% of
// decoding time at 1800 positions, and each KV head's keys and values are one contiguous run
// (reading a head's slice of whole-row blocks and rows made decoding at 2048 positions ~9%
// slower on Zen 4).
class FullKVCache : public KVCache {
 public:
  FullKVCache(const KVShape& shape, int n_ctx, int n_seq, DType type);
  int n_ctx() const override { return n_ctx_; }
  int n_seq() const override { return n_seq_; }
  DType type() const override { return type_; }
  void store(int layer, int seq, int32_t pos, const float* k, const float* v) override;
  int32_t first_visible(int, int32_t) const override { return 0; }
  const void* k_row(int layer, int seq, int32_t pos) const override;
  const void* v_row(int layer, int seq, int32_t pos) const override;
  const uint16_t* key_blocks(int layer, int seq, int head) const override;
  int64_t key_block_stride() const override {
    return key_blocks_ ? shape_.k_dim / shape_.n_head_kv * kBlock
                       : q8_blocks_ ? static_cast<int64_t>(k_row_bytes_ / shape_.n_head_kv) * kBlock : 0;
  }
  const uint16_t* value_head(int layer, int seq, int head) const override;
  const uint8_t* q8_key_blocks(int layer, int seq, int head) const override;
  const uint8_t* q8_value_head(int layer, int seq, int head) const override;
  int32_t truncate(int seq, int32_t from) override;
  int32_t seq_length(int seq) const override { return lengths_[seq]; }
  size_t bytes() const override { return k_.size() + v_.size(); }

 private:
  static constexpr int kBlock = 16;  // kern::kKeyBlock (checked in kv_cache.cpp)
  size_t index(int layer, int seq, int32_t pos) const {
    return (static_cast<size_t>(layer) * n_seq_ + seq) * n_ctx_ + pos;
  }
  // Byte offset of (layer, seq)'s first key block: n_ctx rounded up to whole blocks for each
  // KV head (F16 and q8_0 blocks alike).
  size_t key_base(int layer, int seq) const {
    return (static_cast<size_t>(layer) * n_seq_ + seq) * static_cast<size_t>(k_positions_) * k_row_bytes_;
  }
  // Byte offsets of KV head `head`'s key blocks and value rows of (layer, seq), where keys and
  // values are kept head by head (F16 and q8_0 alike).
  size_t key_head_base(int layer, int seq, int head) const {
    return key_base(layer, seq) + static_cast<size_t>(head) * k_positions_ * (k_row_bytes_ / shape_.n_head_kv);
  }
  size_t value_head_base(int layer, int seq, int head) const {
    return index(layer, seq, 0) * v_row_bytes_ + static_cast<size_t>(head) * n_ctx_ * (v_row_bytes_ / shape_.n_head_kv);
  }
  void check(int layer, int seq, int32_t pos) const;
  KVShape shape_;
  int n_ctx_, n_seq_;
  DType type_;
  size_t k_row_bytes_, v_row_bytes_;  // a key / value row in type_ (Q8_0: 34 bytes per 32 values)
  bool key_blocks_;        // F16: keys in blocks
  bool q8_blocks_;         // Q8_0 with whole-block head dimensions: keys in blocks
  int32_t k_positions_;    // positions allocated per (layer, seq) for keys
  std::vector<uint16_t> key_fp16_;  // one key row in fp16 before it is spread over its block
  std::vector<uint8_t> key_q8_;     // one key row in q8_0 before it is spread over its block
  ZeroedBuffer k_, v_;  // pages appear as rows are written
  std::vector<int32_t> lengths_;
};

std::unique_ptr<KVCache> make_full_kv_cache(const KVShape& shape, int n_ctx, int n_seq, DType type);

// Convert a stored row back to floats (F32 rows are copied).
void kv_row_to_floats(DType type, const void* row, float* out, int64_t n);

}  // namespace slm

namespace slm {

// Sliding-window attention (Gemma 2, some Phi-3): layers with a window keep only a ring of
// window + n_batch - 1 rows per sequence (rounded up to whole key blocks), enough for every
// query of a batch to see its last `window` keys; layers without one (window 0) keep every
// position. F16 keys are kept in blocks as in FullKVCache, so that the attention kernel reads
// the ring as stored, in two runs once it has wrapped: a float copy of every visible key and
// value, remade for every token in every layer, took most of Phi-3's decoding time at 2000
// positions.
class SlidingWindowKVCache : public KVCache {
 public:
  SlidingWindowKVCache(const KVShape& shape, std::vector<int32_t> layer_windows, int n_ctx,
                       int n_seq, int n_batch, DType type);
  int n_ctx() const override { return n_ctx_; }
  int n_seq() const override { return n_seq_; }
  DType type() const override { return type_; }
  void store(int layer, int seq, int32_t pos, const float* k, const float* v) override;
  int32_t first_visible(int layer, int32_t pos) const override;
  const void* k_row(int layer, int seq, int32_t pos) const override;
  const void* v_row(int layer, int seq, int32_t pos) const override;
  const uint16_t* key_blocks(int layer, int seq, int head) const override;
  int64_t key_block_stride() const override {
    return key_blocks_ ? shape_.k_dim / shape_.n_head_kv * kBlock
                       : q8_blocks_ ? static_cast<int64_t>(k_row_bytes_ / shape_.n_head_kv) * kBlock : 0;
  }
  int32_t ring_capacity(int layer) const override;
  const uint16_t* value_head(int layer, int seq, int head) const override;
  const uint8_t* q8_key_blocks(int layer, int seq, int head) const override;
  const uint8_t* q8_value_head(int layer, int seq, int head) const override;
  int32_t truncate(int seq, int32_t from) override;
  int32_t seq_length(int seq) const override { return lengths_[seq]; }
  size_t bytes() const override { return k_.size() + v_.size(); }

 private:
  static constexpr int kBlock = 16;  // kern::kKeyBlock (checked in kv_cache.cpp)
  size_t row_index(int layer, int seq, int32_t pos) const;
  // Positions (layer, seq) has room for: its ring, rounded up to whole key blocks with F16
  // and q8_0 blocks.
  int64_t held(int layer) const {
    const int32_t cap = capacity_[layer];
    return key_blocks_ || q8_blocks_ ? (cap + kBlock - 1) / kBlock * kBlock : cap;
  }
  // Byte offset of (layer, seq)'s head `head` in k_ (row_bytes: k_row_bytes_) or v_
  // (v_row_bytes_), where keys and values are kept head by head.
  size_t head_base(int layer, int seq, int head, size_t row_bytes) const {
    return row_index(layer, seq, 0) * row_bytes + static_cast<size_t>(head) * held(layer) * (row_bytes / shape_.n_head_kv);
  }
  KVShape shape_;
  std::vector<int32_t> windows_, capacity_;
  std::vector<size_t> layer_base_;  // first row of each layer
  int n_ctx_, n_seq_;
  DType type_;
  size_t k_row_bytes_, v_row_bytes_;  // a key / value row in type_
  bool key_blocks_;  // F16: keys in blocks
  bool q8_blocks_;   // Q8_0 with whole-block head dimensions: keys in blocks
  std::vector<uint16_t> key_fp16_;  // one key row in fp16 before it is spread over its block
  std::vector<uint8_t> key_q8_;     // one key row in q8_0 before it is spread over its block
  ZeroedBuffer k_, v_;  // pages appear as rows are written
  std::vector<int32_t> lengths_;
};

}  // namespace slm
