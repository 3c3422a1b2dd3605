// Read-only memory map of a whole file; weights stay in the page cache, never copied.
// The descriptor stays open as well: read_at() copies bytes out of the page cache without
// mapping them into this process, which matters on machines (VMs especially) where setting up
// page-table entries for a file costs more than copying it (repacking weights, see ops.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace slm {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws slm::Error
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }  // open read-only for the object's lifetime
  // Copies n bytes at `offset` into dst (pread). Throws slm::Error past the end or on I/O errors.
  void read_at(uint64_t offset, void* dst, size_t n) const;
  // Drops the whole pages inside [offset, offset + n) from this process's resident memory
  // (they stay in the page cache and come back if read again). A hint: never fails.
  void release(uint64_t offset, size_t n) const;
  // Maps the pages inside [offset, offset + n) now (MADV_POPULATE_READ), in one call rather
  // than one page fault at a time. A hint: never fails.
  void populate(uint64_t offset, size_t n) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
  void* base_ = nullptr;  // the reserved address range the mapping was placed in
  size_t reserved_ = 0;
  bool locked_ = false;  // mlock-ed (--mlock, core/memory_lock.h)
};

}  // namespace slm
