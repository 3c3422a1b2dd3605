// A large zero-filled byte buffer whose pages the kernel provides on first touch: allocating
// it costs nothing up front, and memory use grows with the part actually written. A KV cache
// for a 4096-token context (128 MiB for a 1B Llama) held in a std::vector was zero-filled at
// once, which took ~370 ms of start-up on the team's VM before the first token.
#pragma once
#include <cstddef>
#include <cstdint>

namespace slm {

class ZeroedBuffer {
 public:
  ZeroedBuffer() = default;
  explicit ZeroedBuffer(size_t bytes);  // throws slm::Error when the memory cannot be reserved
  ~ZeroedBuffer();
  ZeroedBuffer(ZeroedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr, o.size_ = 0; }
  ZeroedBuffer& operator=(ZeroedBuffer&& o) noexcept;
  ZeroedBuffer(const ZeroedBuffer&) = delete;
  ZeroedBuffer& operator=(const ZeroedBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace slm
