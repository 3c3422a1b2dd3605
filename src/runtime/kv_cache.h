// The key/value cache, behind an interface: a forward pass stores each token's K and V
// rows and reads back the rows a query may see. Many sequences live in one cache (a server
// batches users together); each sequence has its own positions 0..n_ctx-1.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/zeroed_buffer.h"
#include "kernels/kernels.h"

namespace slm {

struct KVShape {
  int n_layer = 0;
  int64_t k_dim = 0;  // n_head_kv * head_dim_k
  int64_t v_dim = 0;  // n_head_kv * head_dim_v
  int n_head_kv = 1;  // F16 caches keep values head by head (KVCache::value_head)
};

// The storage types of the keys and of the values (llama.cpp's -ctk and -ctv): F32, F16, BF16,
// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 or IQ4_NL each, as llama.cpp takes them. One DType converts to
// the same type for both.
struct KVTypes {
  DType k = DType::F16, v = DType::F16;
  KVTypes() = default;
  KVTypes(DType both) : k(both), v(both) {}  // NOLINT(google-explicit-constructor): one type for both
  KVTypes(DType k_type, DType v_type) : k(k_type), v(v_type) {}
  bool operator==(const KVTypes&) const = default;
};
// The types a cache stores keys or values in (llama.cpp's -ctk / -ctv types, which it names as
// ggml does: dtype_name), each with the layout the attention kernel reads it in (kernels.h).
// The one list every other place (the command line, the attention, the checks) asks.
struct KvCacheType {
  DType type;
  kern::CacheFormat format;
};
std::span<const KvCacheType> kv_cache_types();
// The entry of `type`; null where a cache cannot store it.
const KvCacheType* find_kv_cache_type(DType type);
// Whether a cache can store keys or values of `type`, and the names of those it can
// ("f16, f32, ... or iq4_nl").
bool kv_cache_type_supported(DType type);
const std::string& kv_cache_type_names();
// "f16", or "q8_0 (keys) f16 (values)" where they differ.
std::string kv_types_name(KVTypes t);

class KVCache {
 public:
  virtual ~KVCache() = default;
  virtual int n_ctx() const = 0;
  virtual int n_seq() const = 0;
  virtual KVTypes types() const = 0;
  // Store token `pos` of sequence `seq` for `layer`, k of k_dim and v of v_dim floats.
  virtual void store(int layer, int seq, int32_t pos, const float* k, const float* v) = 0;
  // First position a query at `pos` may attend to in `layer` (sliding windows move it).
  virtual int32_t first_visible(int layer, int32_t pos) const = 0;
  // Stored rows (types().k, types().v), valid for first_visible(layer, p) <= pos <= p after
  // store(..p..), where the cache keeps rows (key_blocks() null).
  virtual const void* k_row(int layer, int seq, int32_t pos) const = 0;
  virtual const void* v_row(int layer, int seq, int32_t pos) const = 0;
  // A cache that keeps keys in blocks of kern::kKeyBlock positions (in the layouts of
  // kern::AttendCacheFn for its types().k, kernels/kernels.h), one KV head at a time, returns the
  // first block of KV head `head` of (layer, seq), that head's blocks key_block_stride() bytes
  // apart (its own positions one after the other, so that a decoding job reads one contiguous
  // run); k_row is then unavailable. Null: keys are rows.
  virtual const uint8_t* key_blocks(int /*layer*/, int /*seq*/, int /*head*/) const { return nullptr; }
  virtual int64_t key_block_stride() const { return 0; }
  // Positions of (layer, seq) the cache holds before a position takes the key slot and value
  // row of the one `capacity` before it (a sliding window's ring): position pos sits in slot
  // pos % capacity. n_ctx() where nothing wraps. With key blocks, a capacity below n_ctx() is a
  // whole number of blocks.
  virtual int32_t ring_capacity(int /*layer*/) const { return n_ctx(); }
  // A cache with key blocks keeps values head by head, each head's positions one after the
  // other (decoding then reads one contiguous run per KV head, not a slice of every row): head
  // h's value at position pos is the row value_head(layer, seq, h) + (pos % ring_capacity(layer))
  // * value_row_bytes(), in types().v (hd_v fp16, floats or bf16, or hd_v / 32 blocks of a quantized type), and
  // v_row is unavailable. Null: values are rows.
  virtual const uint8_t* value_head(int /*layer*/, int /*seq*/, int /*head*/) const { return nullptr; }
  virtual int64_t value_row_bytes() const { return 0; }
  // Forget sequence `seq` from position `from` on (0 = the whole sequence). Returns the
  // length actually kept, which is less than `from` when a cache cannot keep that prefix
  // valid (a ring that has overwritten rows the next query would need).
  virtual int32_t truncate(int seq, int32_t from) = 0;
  // llama.cpp's K-shift (what its --context-shift does to the cache): positions from + delta
  // .. seq_length - 1 of seq move to from .., their keys through `rotate` (RoPE by -delta:
  // what they would be had they been computed delta positions earlier), their values as they
  // are; positions from .. from + delta - 1 are forgotten and the sequence is delta shorter.
  // A sliding-window ring that has wrapped moves too when its window after the move lies past
  // the dropped run; returns false, changing nothing, where that window would reach back into
  // positions `from` keeps but the ring no longer holds. Keys of a quantized type are decoded,
  // rotated and encoded again, as llama.cpp does. `rotate` is told the layer: Gemma 3's
  // sliding-window layers have a RoPE base of their own.
  using KeyRotation = std::function<void(int layer, float* keys, int64_t n_rows, int32_t delta)>;
  virtual bool shift(int seq, int32_t from, int32_t delta, const KeyRotation& rotate) = 0;
  // Number of positions currently held for seq (next position to fill).
  virtual int32_t seq_length(int seq) const = 0;
  virtual size_t bytes() const = 0;
  // Sequence seq's stored keys and values as bytes (its types and layout named first), and
  // back: what a prompt cache file holds (slm run --prompt-cache). restore_seq throws
  // slm::Error, changing nothing, where the bytes are not such a record or this cache cannot
  // hold them (other types or layout, a shorter context, a ring that wrapped at another
  // capacity).
  virtual std::string save_seq(int seq) const = 0;
  virtual void restore_seq(int seq, std::string_view bytes) = 0;
};

// The cache of every model: per layer and sequence a ring of positions, as long as the context
// where the layer has no sliding window (every position kept) and window + n_batch - 1 rows
// (rounded up to whole key blocks) where it has one (Gemma 2, some Phi-3), enough for every
// query of a batch to see its last `window` keys.
//
// Keys are kept in blocks and values head by head (key_blocks, value_head), each in its type
// (KVTypes), so that the attention kernel reads the cache as stored, a wrapped ring in two runs:
// a float copy of every visible key and value, remade for every token, cost ~15% of decoding
// time at 1800 positions (most of Phi-3's at 2000; the F32 cache, read that way, decoded a 1B
// model at 34 t/s at 2048 positions against F16's 52), and reading a head's slice of whole-row
// blocks and rows made decoding at 2048 positions ~9% slower on Zen 4. Only where quantized
// heads are narrower than a block (toy models) are keys and values rows, decoded to floats per
// layer.
class RingKVCache : public KVCache {
 public:
  // layer_windows: one per layer, 0 where the layer sees every position.
  RingKVCache(const KVShape& shape, std::vector<int32_t> layer_windows, int n_ctx, int n_seq, int n_batch,
              KVTypes types);
  int n_ctx() const override { return n_ctx_; }
  int n_seq() const override { return n_seq_; }
  KVTypes types() const override { return types_; }
  void store(int layer, int seq, int32_t pos, const float* k, const float* v) override;
  int32_t first_visible(int layer, int32_t pos) const override;
  const void* k_row(int layer, int seq, int32_t pos) const override;
  const void* v_row(int layer, int seq, int32_t pos) const override;
  const uint8_t* key_blocks(int layer, int seq, int head) const override;
  int64_t key_block_stride() const override {
    return blocks_ ? static_cast<int64_t>(k_row_bytes_ / shape_.n_head_kv) * kBlock : 0;
  }
  int32_t ring_capacity(int layer) const override;
  const uint8_t* value_head(int layer, int seq, int head) const override;
  int64_t value_row_bytes() const override { return blocks_ ? static_cast<int64_t>(v_row_bytes_ / shape_.n_head_kv) : 0; }
  int32_t truncate(int seq, int32_t from) override;
  bool shift(int seq, int32_t from, int32_t delta, const KeyRotation& rotate) override;
  int32_t seq_length(int seq) const override { return lengths_[seq]; }
  // The key (k_dim floats) and value (v_dim floats) stored for position pos of (layer, seq),
  // decoded from whatever layout and types the cache keeps them in.
  void read_key(int layer, int seq, int32_t pos, float* k) const;
  void read_value(int layer, int seq, int32_t pos, float* v) const;
  size_t bytes() const override { return k_.size() + v_.size(); }
  std::string save_seq(int seq) const override;
  void restore_seq(int seq, std::string_view bytes) override;

 private:
  static constexpr int kBlock = 16;  // kern::kKeyBlock (checked in kv_cache.cpp)
  size_t row_index(int layer, int seq, int32_t pos) const;
  // store()'s two halves: the key of (layer, seq) at ring slot `slot` (blocks) or row idx.
  void store_key(int layer, int seq, int32_t slot, size_t idx, const float* k);
  void check_head(int layer, int seq, int head) const;
  // shift()'s move of a ring that has wrapped: the `capacity` positions of its new window
  // (ending at new_length) from delta positions later.
  void shift_wrapped(int layer, int seq, int32_t delta, int32_t new_length, const KeyRotation& rotate);
  // Positions (layer, seq) has room for: its ring, rounded up to whole key blocks.
  int64_t held(int layer) const {
    const int32_t cap = capacity_[layer];
    return blocks_ ? (cap + kBlock - 1) / kBlock * kBlock : cap;
  }
  // Byte offset of (layer, seq)'s head `head` in k_ (row_bytes: k_row_bytes_) or v_
  // (v_row_bytes_), where keys and values are kept head by head.
  size_t head_base(int layer, int seq, int head, size_t row_bytes) const {
    return row_index(layer, seq, 0) * row_bytes + static_cast<size_t>(head) * held(layer) * (row_bytes / shape_.n_head_kv);
  }
  // What save_seq writes and restore_seq reads per layer: `rows` positions of each of `heads`
  // parts (the KV heads where the cache keeps heads apart, else one part of whole rows), and
  // where part `head` of (layer, seq) starts in k_ (row_bytes: k_row_bytes_) or v_.
  struct SeqPart {
    int heads;
    size_t k_head, v_head;  // bytes per part
  };
  SeqPart seq_part(int64_t rows) const;
  size_t seq_part_base(int layer, int seq, int head, size_t row_bytes) const;
  KVShape shape_;
  std::vector<int32_t> windows_, capacity_;
  std::vector<size_t> layer_base_;  // first row of each layer
  int n_ctx_, n_seq_;
  KVTypes types_;
  size_t k_row_bytes_, v_row_bytes_;  // a key / value row across all heads
  bool blocks_;                        // keys in blocks, values head by head
  std::vector<uint8_t> key_row_;       // one key row encoded before it is spread over its block
  ZeroedBuffer k_, v_;  // pages appear as rows are written
  std::vector<int32_t> lengths_;
};

// A cache without sliding windows: every position of every sequence kept.
std::unique_ptr<KVCache> make_full_kv_cache(const KVShape& shape, int n_ctx, int n_seq, KVTypes types);

// Convert a stored row back to floats (F32 rows are copied).
void kv_row_to_floats(DType type, const void* row, float* out, int64_t n);

}  // namespace slm
