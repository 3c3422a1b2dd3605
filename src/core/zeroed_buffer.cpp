#include "core/zeroed_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace slm {

ZeroedBuffer::ZeroedBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fail("cannot reserve {} bytes of memory: {}", bytes, std::strerror(errno));
  data_ = static_cast<uint8_t*>(p);
}

ZeroedBuffer::~ZeroedBuffer() {
  if (data_) ::munmap(data_, size_);
}

ZeroedBuffer& ZeroedBuffer::operator=(ZeroedBuffer&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

}  // namespace slm
