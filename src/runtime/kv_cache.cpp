#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string_view>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/kernels.h"

namespace slm {

static_assert(kern::kKeyBlock == 16, "RingKVCache::kBlock must match kern::kKeyBlock");

namespace {
bool quantized(DType type) { return type_traits(type).block_size == 32; }

// Types a cache can store, and the row widths the quantized ones need (whole 32-value blocks).
void check_type(DType type, int64_t dim, const char* what) {
  if (!kv_cache_type_supported(type))
    fail("KV cache type {} for the {} is not supported (use {})", dtype_name(type), what, kv_cache_type_names());
  if (quantized(type) && dim % 32 != 0)
    fail("a {} KV cache needs {} rows in whole blocks of 32; this model's are {} wide (use f16 for the {}: "
         "--kv-type f16, or {} f16)",
         dtype_name(type), what, what, dim, what, std::string_view(what) == "keys" ? "--cache-type-k" : "--cache-type-v");
}

// Whether rows of `dim` values in `type` can be kept head by head in the layouts the attention
// kernel reads as stored: the float types, or quantized ones whose heads are whole blocks.
bool by_head(DType type, int64_t dim, int n_head) {
  if (n_head <= 0 || dim % n_head != 0) return false;
  return !quantized(type) || (dim / n_head) % 32 == 0;
}

}  // namespace

std::span<const KvCacheType> kv_cache_types() {
  using F = kern::CacheFormat;
  static constexpr KvCacheType kTypes[] = {
      {DType::F16, F::F16},   {DType::F32, F::F32},   {DType::BF16, F::BF16},
      {DType::Q8_0, F::Q8_0}, {DType::Q4_0, F::Q4_0}, {DType::Q4_1, F::Q4_1},
      {DType::Q5_0, F::Q5_0}, {DType::Q5_1, F::Q5_1}, {DType::IQ4_NL, F::IQ4_NL}};
  static_assert(std::size(kTypes) == kern::kCacheFormats, "one cache type per format the kernel reads");
  return kTypes;
}

const KvCacheType* find_kv_cache_type(DType type) {
  for (const KvCacheType& t : kv_cache_types())
    if (t.type == type) return &t;
  return nullptr;
}

bool kv_cache_type_supported(DType type) { return find_kv_cache_type(type) != nullptr; }

const std::string& kv_cache_type_names() {
  static const std::string names = [] {
    const auto types = kv_cache_types();
    std::string s;
    for (size_t i = 0; i < types.size(); ++i)
      s += (i == 0 ? "" : i + 1 == types.size() ? " or " : ", ") + dtype_name(types[i].type);
    return s;
  }();
  return names;
}

std::string kv_types_name(KVTypes t) {
  if (t.k == t.v) return dtype_name(t.k);
  return dtype_name(t.k) + " (keys) " + dtype_name(t.v) + " (values)";
}

namespace {
void encode_row(DType type, const float* src, uint8_t* dst, int64_t n) {
  if (type == DType::F32) {
    std::memcpy(dst, src, n * sizeof(float));
  } else if (type == DType::Q8_0) {
    // Blocks of 32 with one fp16 scale, as llama.cpp's q8_0 cache: half the bytes of F16.
    // Rounded as llama.cpp's x86 quantize_row_q8_0 rounds (from_float_act), on every level.
    if (const auto quantize = kern::active().quantize_q8_0) quantize(src, dst, n);
    else type_traits(DType::Q8_0).from_float_act(src, dst, n);
  } else if (type != DType::F16) {
    // bf16 and the 4- and 5-bit types: the reference encoders, as llama.cpp's CPU backend
    // writes its cache (quantize_row_*_ref).
    type_traits(type).from_float(src, dst, n);
  } else if (const auto convert = kern::active().f32_to_fp16) {
    convert(src, reinterpret_cast<uint16_t*>(dst), n);
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = fp32_to_fp16(src[i]);
      std::memcpy(dst + 2 * i, &h, 2);
    }
  }
}

// Value row v (v_dim floats, n_head heads) in `type` into slot `slot` of each head's run of
// `slots` positions from `heads` on (the head-major layout of KVCache::value_head).
void store_value_by_head(DType type, const float* v, int64_t v_dim, int n_head, uint8_t* heads, int64_t slots,
                         int32_t slot) {
  const int64_t hd = v_dim / n_head;
  const size_t row = row_size(type, hd);
  for (int h = 0; h < n_head; ++h) encode_row(type, v + h * hd, heads + (h * slots + slot) * row, hd);
}

// Key row k (k_dim floats, n_head heads) into slot `slot` of each head's run of `slots`
// positions (a whole number of blocks) from `blocks` on: lane slot % kKeyBlock of the head's
// block slot / kKeyBlock, one element per dimension, kKeyBlock apart. T: uint16_t for F16 and
// BF16 keys, float for F32. row: k_dim elements of scratch.
template <class T>
void store_key_in_block(DType type, const float* k, int64_t k_dim, int n_head, T* blocks, int64_t slots, int32_t slot,
                        T* row) {
  constexpr int B = kern::kKeyBlock;
  const int64_t hd = k_dim / n_head;
  encode_row(type, k, reinterpret_cast<uint8_t*>(row), k_dim);
  for (int h = 0; h < n_head; ++h) {
    T* lane = blocks + h * slots * hd + static_cast<size_t>(slot / B) * B * hd + slot % B;
    for (int64_t c = 0; c < hd; ++c) lane[c * B] = row[h * hd + c];
  }
}
// The quantized twin of the above: each head's 32-dimension groups of key row k encoded as
// blocks of `type` (as a row would be), then each block's fields spread over lane
// slot % kKeyBlock of the head's key block slot / kKeyBlock (kern::AttendCacheFn's layouts):
// q8_0's scale and 32 int8 values; the 4- and 5-bit types' scale, [minimum], [fifth bits] and
// 4-bit codes (two lanes share each byte of codes, so only this lane's nibble is written).
// row: k_dim values of `type` as scratch.
void store_key_blocks_in_block(DType type, const float* k, int64_t k_dim, int n_head, uint8_t* blocks, int64_t slots,
                               int32_t slot, uint8_t* row) {
  constexpr int B = kern::kKeyBlock;
  const size_t bb = row_size(type, 32);                 // bytes of one block of 32
  const int64_t groups = k_dim / n_head / 32;           // blocks per head
  const size_t group_bytes = bb * B;                    // kern::cache_key_group_bytes
  const size_t block_bytes = static_cast<size_t>(groups) * group_bytes;
  const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
  const bool five = type == DType::Q5_0 || type == DType::Q5_1;
  const int lane = slot % B;
  encode_row(type, k, row, k_dim);
  for (int h = 0; h < n_head; ++h)
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* src = row + (h * groups + g) * bb;
      uint8_t* dst = blocks + static_cast<size_t>(h) * (slots / B) * block_bytes + static_cast<size_t>(slot / B) * block_bytes +
                     g * group_bytes;
      std::memcpy(dst + 2 * lane, src, 2);  // the scale
      if (type == DType::Q8_0) {
        for (int d = 0; d < 32; ++d) dst[2 * B + d * B + lane] = src[2 + d];
        continue;
      }
      size_t at = 2 * B, from = 2;
      if (has_min) {
        std::memcpy(dst + at + 2 * lane, src + from, 2);
        at += 2 * B;
        from += 2;
      }
      if (five) {
        uint32_t qh;
        std::memcpy(&qh, src + from, 4);
        from += 4;
        for (int d = 0; d < 32; ++d) {
          uint16_t bits;
          std::memcpy(&bits, dst + at + 2 * d, 2);
          bits = static_cast<uint16_t>((bits & ~(1u << lane)) | (((qh >> d) & 1u) << lane));
          std::memcpy(dst + at + 2 * d, &bits, 2);
        }
        at += 2 * 32;
      }
      const uint8_t* qs = src + from;  // element d < 16: low nibble of qs[d]; d >= 16: high of qs[d - 16]
      for (int d = 0; d < 32; ++d) {
        const uint8_t code = d < 16 ? qs[d] & 0x0F : qs[d - 16] >> 4;
        uint8_t& byte = dst[at + 8 * d + lane % 8];
        byte = lane < 8 ? static_cast<uint8_t>((byte & 0xF0) | code) : static_cast<uint8_t>((byte & 0x0F) | (code << 4));
      }
    }
}

// The inverses of the two above: head h's key at `slot` gathered back into row form (one
// element per dimension for the float types; blocks of `type` as a row holds them for the
// quantized ones), every head of the row. row: k_dim elements / bytes of a `type` row.
template <class T>
void load_key_from_block(const T* blocks, int64_t k_dim, int n_head, int64_t slots, int32_t slot, T* row) {
  constexpr int B = kern::kKeyBlock;
  const int64_t hd = k_dim / n_head;
  for (int h = 0; h < n_head; ++h) {
    const T* lane = blocks + h * slots * hd + static_cast<size_t>(slot / B) * B * hd + slot % B;
    for (int64_t c = 0; c < hd; ++c) row[h * hd + c] = lane[c * B];
  }
}
void load_key_blocks_from_block(DType type, const uint8_t* blocks, int64_t k_dim, int n_head, int64_t slots,
                                int32_t slot, uint8_t* row) {
  constexpr int B = kern::kKeyBlock;
  const size_t bb = row_size(type, 32);
  const int64_t groups = k_dim / n_head / 32;
  const size_t group_bytes = bb * B;
  const size_t block_bytes = static_cast<size_t>(groups) * group_bytes;
  const bool has_min = type == DType::Q4_1 || type == DType::Q5_1;
  const bool five = type == DType::Q5_0 || type == DType::Q5_1;
  const int lane = slot % B;
  for (int h = 0; h < n_head; ++h)
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t* dst = row + (h * groups + g) * bb;
      const uint8_t* src = blocks + static_cast<size_t>(h) * (slots / B) * block_bytes +
                           static_cast<size_t>(slot / B) * block_bytes + g * group_bytes;
      std::memcpy(dst, src + 2 * lane, 2);
      if (type == DType::Q8_0) {
        for (int d = 0; d < 32; ++d) dst[2 + d] = src[2 * B + d * B + lane];
        continue;
      }
      size_t at = 2 * B, to = 2;
      if (has_min) {
        std::memcpy(dst + to, src + at + 2 * lane, 2);
        at += 2 * B;
        to += 2;
      }
      if (five) {
        uint32_t qh = 0;
        for (int d = 0; d < 32; ++d) {
          uint16_t bits;
          std::memcpy(&bits, src + at + 2 * d, 2);
          qh |= static_cast<uint32_t>((bits >> lane) & 1u) << d;
        }
        std::memcpy(dst + to, &qh, 4);
        to += 4;
        at += 2 * 32;
      }
      uint8_t* qs = dst + to;
      std::memset(qs, 0, 16);
      for (int d = 0; d < 32; ++d) {
        const uint8_t byte = src[at + 8 * d + lane % 8];
        const uint8_t code = lane < 8 ? byte & 0x0F : byte >> 4;
        if (d < 16) qs[d] |= code;
        else qs[d - 16] |= static_cast<uint8_t>(code << 4);
      }
    }
}

}  // namespace

void kv_row_to_floats(DType type, const void* row, float* out, int64_t n) {
  if (type == DType::F32) {
    std::memcpy(out, row, n * sizeof(float));
    return;
  }
  if (type != DType::F16) {
    type_traits(type).to_float(row, out, n);
    return;
  }
  if (const auto convert = kern::active().fp16_to_f32) {
    convert(static_cast<const uint16_t*>(row), out, n);
    return;
  }
  const auto* p = static_cast<const uint8_t*>(row);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    out[i] = fp16_to_fp32(h);
  }
}

RingKVCache::RingKVCache(const KVShape& shape, std::vector<int32_t> layer_windows, int n_ctx, int n_seq,
                         int n_batch, KVTypes types)
    : shape_(shape), windows_(std::move(layer_windows)), n_ctx_(n_ctx), n_seq_(n_seq), types_(types) {
  check_type(types.k, shape.k_dim, "keys");
  check_type(types.v, shape.v_dim, "values");
  if (n_ctx <= 0 || n_seq <= 0 || n_batch <= 0)
    fail("KV cache needs positive context, sequences and batch (got {}, {}, {})", n_ctx, n_seq, n_batch);
  if (static_cast<int>(windows_.size()) != shape.n_layer)
    fail("KV cache: {} sliding windows for {} layers", windows_.size(), shape.n_layer);
  k_row_bytes_ = row_size(types.k, shape.k_dim);
  v_row_bytes_ = row_size(types.v, shape.v_dim);
  blocks_ = by_head(types.k, shape.k_dim, shape.n_head_kv) && by_head(types.v, shape.v_dim, shape.n_head_kv);
  // Rows per (layer, seq): a ring that wraps holds whole key blocks, so that a run of visible
  // keys ends at a block's end; the keys of one that never wraps are rounded up to whole
  // blocks past its rows (the kernel reads the last block whole).
  size_t rows = 0;
  for (int32_t w : windows_) {
    if (w < 0) fail("sliding window {} must not be negative", w);
    int64_t cap = w == 0 ? n_ctx : std::min<int64_t>(n_ctx, int64_t{w} + n_batch - 1);
    cap = std::min<int64_t>(n_ctx, (cap + kBlock - 1) / kBlock * kBlock);
    capacity_.push_back(static_cast<int32_t>(cap));
    layer_base_.push_back(rows);
    rows += static_cast<size_t>(held(static_cast<int>(capacity_.size()) - 1)) * n_seq;
  }
  k_ = ZeroedBuffer(rows * k_row_bytes_);
  v_ = ZeroedBuffer(rows * v_row_bytes_);
  lengths_.assign(n_seq, 0);
  if (blocks_) key_row_.resize(k_row_bytes_);
}

size_t RingKVCache::row_index(int layer, int seq, int32_t pos) const {
  if (layer < 0 || layer >= shape_.n_layer || seq < 0 || seq >= n_seq_ || pos < 0 || pos >= n_ctx_)
    fail("KV cache access out of range: layer {} seq {} pos {} (layers {}, sequences {}, context {})",
         layer, seq, pos, shape_.n_layer, n_seq_, n_ctx_);
  return layer_base_[layer] + static_cast<size_t>(seq) * held(layer) + pos % capacity_[layer];
}

void RingKVCache::check_head(int layer, int seq, int head) const {
  if (head < 0 || head >= shape_.n_head_kv)
    fail("KV cache access out of range: head {} (KV heads {})", head, shape_.n_head_kv);
  row_index(layer, seq, 0);
}

void RingKVCache::store_key(int layer, int seq, int32_t slot, size_t idx, const float* k) {
  if (!blocks_) {
    encode_row(types_.k, k, k_.data() + idx * k_row_bytes_, shape_.k_dim);
    return;
  }
  uint8_t* kh = k_.data() + head_base(layer, seq, 0, k_row_bytes_);
  if (types_.k == DType::F16 || types_.k == DType::BF16)
    store_key_in_block(types_.k, k, shape_.k_dim, shape_.n_head_kv, reinterpret_cast<uint16_t*>(kh), held(layer),
                       slot, reinterpret_cast<uint16_t*>(key_row_.data()));
  else if (types_.k == DType::F32)
    store_key_in_block(types_.k, k, shape_.k_dim, shape_.n_head_kv, reinterpret_cast<float*>(kh), held(layer), slot,
                       reinterpret_cast<float*>(key_row_.data()));
  else
    store_key_blocks_in_block(types_.k, k, shape_.k_dim, shape_.n_head_kv, kh, held(layer), slot, key_row_.data());
}

void RingKVCache::store(int layer, int seq, int32_t pos, const float* k, const float* v) {
  const size_t idx = row_index(layer, seq, pos);
  const int32_t slot = pos % capacity_[layer];
  store_key(layer, seq, slot, idx, k);
  if (blocks_)
    store_value_by_head(types_.v, v, shape_.v_dim, shape_.n_head_kv, v_.data() + head_base(layer, seq, 0, v_row_bytes_),
                        held(layer), slot);
  else
    encode_row(types_.v, v, v_.data() + idx * v_row_bytes_, shape_.v_dim);
  if (layer == 0) lengths_[seq] = std::max(lengths_[seq], pos + 1);
}

void RingKVCache::read_key(int layer, int seq, int32_t pos, float* k) const {
  const size_t idx = row_index(layer, seq, pos);
  if (!blocks_) {
    kv_row_to_floats(types_.k, k_.data() + idx * k_row_bytes_, k, shape_.k_dim);
    return;
  }
  const int32_t slot = pos % capacity_[layer];
  const uint8_t* kh = k_.data() + head_base(layer, seq, 0, k_row_bytes_);
  std::vector<uint8_t> row(k_row_bytes_);
  if (types_.k == DType::F16 || types_.k == DType::BF16)
    load_key_from_block(reinterpret_cast<const uint16_t*>(kh), shape_.k_dim, shape_.n_head_kv, held(layer), slot,
                        reinterpret_cast<uint16_t*>(row.data()));
  else if (types_.k == DType::F32)
    load_key_from_block(reinterpret_cast<const float*>(kh), shape_.k_dim, shape_.n_head_kv, held(layer), slot,
                        reinterpret_cast<float*>(row.data()));
  else
    load_key_blocks_from_block(types_.k, kh, shape_.k_dim, shape_.n_head_kv, held(layer), slot, row.data());
  kv_row_to_floats(types_.k, row.data(), k, shape_.k_dim);
}

void RingKVCache::read_value(int layer, int seq, int32_t pos, float* v) const {
  const size_t idx = row_index(layer, seq, pos);
  if (!blocks_) {
    kv_row_to_floats(types_.v, v_.data() + idx * v_row_bytes_, v, shape_.v_dim);
    return;
  }
  const int64_t hd = shape_.v_dim / shape_.n_head_kv;
  const size_t head_row = v_row_bytes_ / shape_.n_head_kv;
  const int32_t slot = pos % capacity_[layer];
  for (int h = 0; h < shape_.n_head_kv; ++h)
    kv_row_to_floats(types_.v, v_.data() + head_base(layer, seq, h, v_row_bytes_) + slot * head_row, v + h * hd, hd);
}

int32_t RingKVCache::first_visible(int layer, int32_t pos) const {
  const int32_t w = windows_[layer];
  return w == 0 ? 0 : std::max<int32_t>(0, pos - w + 1);
}

const void* RingKVCache::k_row(int layer, int seq, int32_t pos) const {
  const size_t idx = row_index(layer, seq, pos);
  if (blocks_) fail("KV cache: keys are stored in blocks, not rows (read them with key_blocks)");
  return k_.data() + idx * k_row_bytes_;
}

const void* RingKVCache::v_row(int layer, int seq, int32_t pos) const {
  const size_t idx = row_index(layer, seq, pos);
  if (blocks_) fail("KV cache: values are stored head by head, not rows (read them with value_head)");
  return v_.data() + idx * v_row_bytes_;
}

const uint8_t* RingKVCache::key_blocks(int layer, int seq, int head) const {
  if (!blocks_) return nullptr;
  check_head(layer, seq, head);
  return k_.data() + head_base(layer, seq, head, k_row_bytes_);
}

const uint8_t* RingKVCache::value_head(int layer, int seq, int head) const {
  if (!blocks_) return nullptr;
  check_head(layer, seq, head);
  return v_.data() + head_base(layer, seq, head, v_row_bytes_);
}

int32_t RingKVCache::ring_capacity(int layer) const {
  if (layer < 0 || layer >= shape_.n_layer) fail("KV cache: no layer {} (layers {})", layer, shape_.n_layer);
  return capacity_[layer];
}

int32_t RingKVCache::truncate(int seq, int32_t from) {
  if (seq < 0 || seq >= n_seq_) fail("KV cache: no sequence {}", seq);
  from = std::min(lengths_[seq], std::max(from, 0));
  // A query at `from` needs keys from - window + 1 .. from - 1. A ring of capacity c still
  // holds positions >= length - c; if the needed ones were overwritten, start over.
  for (size_t l = 0; l < windows_.size(); ++l) {
    if (windows_[l] == 0) continue;
    const int32_t oldest_kept = lengths_[seq] - capacity_[l];
    if (from - windows_[l] + 1 < oldest_kept && from > 0) from = 0;
  }
  lengths_[seq] = from;
  return from;
}

bool RingKVCache::shift(int seq, int32_t from, int32_t delta, const KeyRotation& rotate) {
  if (seq < 0 || seq >= n_seq_) fail("KV cache: no sequence {}", seq);
  const int32_t length = lengths_[seq];
  if (from < 0 || delta <= 0 || int64_t{from} + delta > length)
    fail("KV cache shift: positions {}..{} are not within the {} held", from, int64_t{from} + delta - 1, length);
  // A ring that has wrapped (a sliding-window layer past its window and a batch) holds only its
  // last `capacity` positions. It can still move when every position of its window after the
  // shift comes from after the dropped run (from <= new length - capacity), as in a long chat
  // that keeps a short prefix: those take their new slots, and the kept prefix is out of the
  // layer's view anyway. Where the new window would reach back into the kept prefix, the
  // positions the ring evicted are gone: refuse, changing nothing (the caller evaluates again).
  const int32_t new_length = length - delta;
  for (int32_t cap : capacity_)
    if (length > cap && from > new_length - cap) return false;
  const int32_t n_move = length - from - delta;
  // Keys in chunks, moved down in position order: a chunk's new slots are below its old ones
  // and above the chunks already moved, so nothing is overwritten before it is read.
  constexpr int32_t kChunk = 256;
  std::vector<float> keys(static_cast<size_t>(std::min(kChunk, std::max(n_move, 1))) * shape_.k_dim);
  for (int l = 0; l < shape_.n_layer; ++l) {
    if (length > capacity_[l]) {
      shift_wrapped(l, seq, delta, new_length, rotate);
      continue;
    }
    for (int32_t c0 = 0; c0 < n_move; c0 += kChunk) {
      const int32_t n = std::min(kChunk, n_move - c0);
      for (int32_t i = 0; i < n; ++i) read_key(l, seq, from + delta + c0 + i, keys.data() + i * shape_.k_dim);
      rotate(l, keys.data(), n, delta);
      for (int32_t i = 0; i < n; ++i) {
        const int32_t pos = from + c0 + i;
        store_key(l, seq, pos, row_index(l, seq, pos), keys.data() + i * shape_.k_dim);
      }
    }
    if (n_move == 0) continue;
    // Values are position-free: their bytes move as they are, one run per head (or of rows).
    if (blocks_) {
      const size_t head_row = v_row_bytes_ / shape_.n_head_kv;
      for (int h = 0; h < shape_.n_head_kv; ++h) {
        uint8_t* base = v_.data() + head_base(l, seq, h, v_row_bytes_);
        std::memmove(base + from * head_row, base + (from + delta) * head_row, n_move * head_row);
      }
    } else {
      std::memmove(v_.data() + row_index(l, seq, from) * v_row_bytes_,
                   v_.data() + row_index(l, seq, from + delta) * v_row_bytes_, n_move * v_row_bytes_);
    }
  }
  lengths_[seq] = new_length;
  return true;
}

void RingKVCache::shift_wrapped(int l, int seq, int32_t delta, int32_t new_length, const KeyRotation& rotate) {
  // Positions first .. new_length - 1 (a whole ring) come from first + delta ..: gathered, keys
  // rotated, then stored in their new slots (a permutation of the ring, so all are read first).
  const int32_t cap = capacity_[l], first = new_length - cap;
  std::vector<float> keys(static_cast<size_t>(cap) * shape_.k_dim);
  for (int32_t i = 0; i < cap; ++i) read_key(l, seq, first + delta + i, keys.data() + static_cast<size_t>(i) * shape_.k_dim);
  rotate(l, keys.data(), cap, delta);
  // Values move as bytes: per head in the block layout, whole rows otherwise.
  const int n_parts = blocks_ ? shape_.n_head_kv : 1;
  const size_t part = blocks_ ? v_row_bytes_ / shape_.n_head_kv : v_row_bytes_;
  auto value_at = [&](int h, int32_t pos) {
    return blocks_ ? v_.data() + head_base(l, seq, h, v_row_bytes_) + static_cast<size_t>(pos % cap) * part
                   : v_.data() + row_index(l, seq, pos) * v_row_bytes_;
  };
  std::vector<uint8_t> values(static_cast<size_t>(cap) * n_parts * part);
  for (int32_t i = 0; i < cap; ++i)
    for (int h = 0; h < n_parts; ++h)
      std::memcpy(values.data() + (static_cast<size_t>(i) * n_parts + h) * part, value_at(h, first + delta + i), part);
  for (int32_t i = 0; i < cap; ++i) {
    const int32_t pos = first + i;
    store_key(l, seq, pos % cap, row_index(l, seq, pos), keys.data() + static_cast<size_t>(i) * shape_.k_dim);
    for (int h = 0; h < n_parts; ++h)
      std::memcpy(value_at(h, pos), values.data() + (static_cast<size_t>(i) * n_parts + h) * part, part);
  }
}

namespace {

// A record of a sequence's rows (RingKVCache::save_seq): what it says of itself, then per layer
// its ring's capacity, whether the ring was saved whole (it had wrapped) or only its first
// `length` positions, and the key and value bytes of those, head by head where the cache keeps
// heads apart.
constexpr uint32_t kSeqRecordMagic = 0x51534B53;  // "SKSQ"

struct ByteWriter {
  std::string& out;
  template <class T>
  void put(T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void bytes(const uint8_t* p, size_t n) { out.append(reinterpret_cast<const char*>(p), n); }
};

struct ByteReader {
  std::string_view in;
  size_t at = 0;
  template <class T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof v, what).data(), sizeof v);
    return v;
  }
  std::string_view take(size_t n, const char* what) {
    if (in.size() - at < n) fail("KV cache record: it ends inside {} ({} bytes left, {} needed)", what, in.size() - at, n);
    const std::string_view s = in.substr(at, n);
    at += n;
    return s;
  }
};

}  // namespace

RingKVCache::SeqPart RingKVCache::seq_part(int64_t rows) const {
  SeqPart p;
  p.heads = blocks_ ? shape_.n_head_kv : 1;
  // Per head: whole key blocks (the kernel's layout) or key rows; value rows.
  p.k_head = blocks_ ? static_cast<size_t>((rows + kBlock - 1) / kBlock * key_block_stride())
                     : static_cast<size_t>(rows) * k_row_bytes_;
  p.v_head = static_cast<size_t>(rows) * (blocks_ ? v_row_bytes_ / shape_.n_head_kv : v_row_bytes_);
  return p;
}

size_t RingKVCache::seq_part_base(int layer, int seq, int head, size_t row_bytes) const {
  return blocks_ ? head_base(layer, seq, head, row_bytes) : row_index(layer, seq, 0) * row_bytes;
}

std::string RingKVCache::save_seq(int seq) const {
  if (seq < 0 || seq >= n_seq_) fail("KV cache: no sequence {}", seq);
  std::string out;
  ByteWriter w{out};
  const int32_t length = lengths_[seq];
  w.put(kSeqRecordMagic);
  w.put(static_cast<uint32_t>(shape_.n_layer));
  w.put(static_cast<uint32_t>(types_.k));
  w.put(static_cast<uint32_t>(types_.v));
  w.put(static_cast<uint8_t>(blocks_));
  w.put(static_cast<uint32_t>(shape_.n_head_kv));
  w.put(static_cast<uint64_t>(k_row_bytes_));
  w.put(static_cast<uint64_t>(v_row_bytes_));
  w.put(length);
  for (int l = 0; l < shape_.n_layer; ++l) {
    const bool whole = length > capacity_[l];
    const SeqPart part = seq_part(whole ? held(l) : length);
    w.put(capacity_[l]);
    w.put(static_cast<uint8_t>(whole));
    w.put(static_cast<uint64_t>(part.k_head * part.heads));
    w.put(static_cast<uint64_t>(part.v_head * part.heads));
    for (int h = 0; h < part.heads; ++h) w.bytes(k_.data() + seq_part_base(l, seq, h, k_row_bytes_), part.k_head);
    for (int h = 0; h < part.heads; ++h) w.bytes(v_.data() + seq_part_base(l, seq, h, v_row_bytes_), part.v_head);
  }
  return out;
}

void RingKVCache::restore_seq(int seq, std::string_view bytes) {
  if (seq < 0 || seq >= n_seq_) fail("KV cache: no sequence {}", seq);
  ByteReader r{bytes};
  if (r.get<uint32_t>("its header") != kSeqRecordMagic) fail("KV cache record: not one (its first bytes are wrong)");
  const auto n_layer = r.get<uint32_t>("its header");
  const auto k_type = r.get<uint32_t>("its header"), v_type = r.get<uint32_t>("its header");
  const auto blocks = r.get<uint8_t>("its header");
  const auto n_head_kv = r.get<uint32_t>("its header");
  const auto k_row = r.get<uint64_t>("its header"), v_row = r.get<uint64_t>("its header");
  const auto length = r.get<int32_t>("its header");
  if (n_layer != static_cast<uint32_t>(shape_.n_layer) || n_head_kv != static_cast<uint32_t>(shape_.n_head_kv) ||
      k_row != k_row_bytes_ || v_row != v_row_bytes_)
    fail("KV cache record: made for {} layers, {} KV heads, rows of {} and {} bytes; this cache has {}, {}, {} and {}",
         n_layer, n_head_kv, k_row, v_row, shape_.n_layer, shape_.n_head_kv, k_row_bytes_, v_row_bytes_);
  if (k_type != static_cast<uint32_t>(types_.k) || v_type != static_cast<uint32_t>(types_.v) ||
      blocks != static_cast<uint8_t>(blocks_))
    fail("KV cache record: its keys and values are {} and {}, this cache's {} (use the same -ctk / -ctv)",
         k_type < kDTypeIdLimit ? dtype_name(static_cast<DType>(k_type)) : std::to_string(k_type),
         v_type < kDTypeIdLimit ? dtype_name(static_cast<DType>(v_type)) : std::to_string(v_type), kv_types_name(types_));
  if (length < 0 || length > n_ctx_)
    fail("KV cache record: {} positions do not fit in this context of {} (raise -c)", length, n_ctx_);
  // Check every layer before changing anything.
  struct Part {
    std::string_view k, v;
  };
  std::vector<Part> parts(static_cast<size_t>(shape_.n_layer));
  for (int l = 0; l < shape_.n_layer; ++l) {
    const auto capacity = r.get<int32_t>("a layer's header");
    const bool whole = r.get<uint8_t>("a layer's header") != 0;
    const auto k_bytes = r.get<uint64_t>("a layer's header"), v_bytes = r.get<uint64_t>("a layer's header");
    if (whole ? capacity != capacity_[l] : length > capacity_[l])
      fail("KV cache record: layer {} held {} positions in a ring of {}; this cache's holds {} (use the same -c and -b)",
           l, length, capacity, capacity_[l]);
    const SeqPart expect = seq_part(whole ? held(l) : length);
    if (k_bytes != expect.k_head * expect.heads || v_bytes != expect.v_head * expect.heads)
      fail("KV cache record: layer {} has {} and {} bytes of keys and values, {} and {} expected", l, k_bytes, v_bytes,
           expect.k_head * expect.heads, expect.v_head * expect.heads);
    parts[static_cast<size_t>(l)].k = r.take(k_bytes, "a layer's keys");
    parts[static_cast<size_t>(l)].v = r.take(v_bytes, "a layer's values");
  }
  if (r.at != bytes.size()) fail("KV cache record: {} bytes past its end", bytes.size() - r.at);
  const int heads = blocks_ ? shape_.n_head_kv : 1;
  for (int l = 0; l < shape_.n_layer; ++l) {
    const Part& part = parts[static_cast<size_t>(l)];
    const size_t k_head = part.k.size() / heads, v_head = part.v.size() / heads;
    for (int h = 0; h < heads; ++h) {
      std::memcpy(k_.data() + seq_part_base(l, seq, h, k_row_bytes_), part.k.data() + h * k_head, k_head);
      std::memcpy(v_.data() + seq_part_base(l, seq, h, v_row_bytes_), part.v.data() + h * v_head, v_head);
    }
  }
  lengths_[seq] = length;
}

std::unique_ptr<KVCache> make_full_kv_cache(const KVShape& shape, int n_ctx, int n_seq, KVTypes types) {
  return std::make_unique<RingKVCache>(shape, std::vector<int32_t>(static_cast<size_t>(shape.n_layer), 0), n_ctx,
                                       n_seq, 1, types);
}

}  // namespace slm
