// GGUF v3 writer: metadata in insertion order, tensor infos, then aligned tensor data.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/error.h"
#include "core/gguf.h"

namespace slm {

namespace {

class Out {
 public:
  std::vector<uint8_t> bytes;
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void pad_to(uint64_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
  }
};

using Scalar = std::variant<uint64_t, int64_t, double, bool, std::string>;

void put_scalar(Out& o, GGUFType t, const Scalar& s) {
  auto i = [&]() -> int64_t {
    if (auto* u = std::get_if<uint64_t>(&s)) return static_cast<int64_t>(*u);
    if (auto* v = std::get_if<int64_t>(&s)) return *v;
    if (auto* b = std::get_if<bool>(&s)) return *b;
    if (auto* d = std::get_if<double>(&s)) return static_cast<int64_t>(*d);
    fail("GGUF writer: a string where a number was expected");
  };
  auto f = [&]() -> double {
    if (auto* d = std::get_if<double>(&s)) return *d;
    return static_cast<double>(i());
  };
  switch (t) {
    case GGUFType::UINT8: o.put<uint8_t>(static_cast<uint8_t>(i())); break;
    case GGUFType::INT8: o.put<int8_t>(static_cast<int8_t>(i())); break;
    case GGUFType::UINT16: o.put<uint16_t>(static_cast<uint16_t>(i())); break;
    case GGUFType::INT16: o.put<int16_t>(static_cast<int16_t>(i())); break;
    case GGUFType::UINT32: o.put<uint32_t>(static_cast<uint32_t>(i())); break;
    case GGUFType::INT32: o.put<int32_t>(static_cast<int32_t>(i())); break;
    case GGUFType::UINT64:
      if (auto* u = std::get_if<uint64_t>(&s)) o.put<uint64_t>(*u);
      else o.put<uint64_t>(static_cast<uint64_t>(i()));
      break;
    case GGUFType::INT64: o.put<int64_t>(i()); break;
    case GGUFType::FLOAT32: o.put<float>(static_cast<float>(f())); break;
    case GGUFType::FLOAT64: o.put<double>(f()); break;
    case GGUFType::BOOL: o.put<uint8_t>(i() != 0); break;
    case GGUFType::STRING:
      if (auto* str = std::get_if<std::string>(&s)) o.put_string(*str);
      else fail("GGUF writer: a number where a string was expected");
      break;
    case GGUFType::ARRAY: fail("GGUF writer: nested arrays are not supported");
  }
}

}  // namespace

void GGUFWriter::set(const std::string& key, GGUFValue v) {
  for (auto& [k, old] : kv_)
    if (k == key) { old = std::move(v); return; }
  kv_.emplace_back(key, std::move(v));
}

void GGUFWriter::remove(const std::string& key) {
  std::erase_if(kv_, [&](const auto& p) { return p.first == key; });
}

void GGUFWriter::add_tensor(const std::string& name, DType type, std::vector<int64_t> ne,
                            const void* data, size_t nbytes, bool copy) {
  PendingTensor t{name, type, std::move(ne), data, nbytes, {}};
  if (copy && nbytes > 0) {
    t.owned.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + nbytes);
    t.data = t.owned.data();
  }
  tensors_.push_back(std::move(t));
}

void GGUFWriter::add_tensor_info(const std::string& name, DType type, std::vector<int64_t> ne) {
  const TypeTraits& tt = type_traits(type);
  if (!tt.known || tt.block_size <= 0) fail("GGUF writer: tensor {}: unknown type {}", name, dtype_name(type));
  if (ne.empty() || ne[0] % tt.block_size != 0)
    fail("GGUF writer: tensor {}: row length {} is not a multiple of {}'s block size {}", name,
         ne.empty() ? 0 : ne[0], tt.name, tt.block_size);
  uint64_t rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) {
    if (ne[i] < 0) fail("GGUF writer: tensor {}: negative dimension", name);
    rows *= static_cast<uint64_t>(ne[i]);
  }
  const size_t nbytes = row_size(type, ne[0]) * rows;
  PendingTensor t{name, type, std::move(ne), nullptr, nbytes, {}};
  t.streamed = true;
  tensors_.push_back(std::move(t));
}

std::vector<uint8_t> GGUFWriter::header_bytes() const {
  Out o;
  o.bytes.insert(o.bytes.end(), {'G', 'G', 'U', 'F'});
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors_.size());
  // general.alignment is written only when it differs from the default, or when the caller set
  // the key itself (tests write damaged values that way). A key that was set keeps its place,
  // so copying a file's metadata keeps its order.
  const bool write_alignment = alignment_ != 32;
  bool has_key = false;
  for (const auto& kv : kv_) has_key = has_key || kv.first == "general.alignment";
  o.put<uint64_t>(kv_.size() + (write_alignment && !has_key ? 1 : 0));
  auto put_kv = [&](const std::string& key, const GGUFValue& v) {
    o.put_string(key);
    o.put<uint32_t>(static_cast<uint32_t>(v.type));
    if (v.type == GGUFType::ARRAY) {
      o.put<uint32_t>(static_cast<uint32_t>(v.elem_type));
      o.put<uint64_t>(v.array_size());
      if (v.elem_type == GGUFType::STRING)
        for (size_t i = 0; i < v.array_size(); ++i) put_scalar(o, v.elem_type, std::string(v.str_at(i)));
      else
        for (size_t i = 0; i < v.array_size(); ++i) put_scalar(o, v.elem_type, v.elem(i));
    } else {
      put_scalar(o, v.type, v.scalar);
    }
  };
  for (const auto& [k, v] : kv_) {
    if (k == "general.alignment" && write_alignment) put_kv(k, GGUFValue::u32(alignment_));
    else put_kv(k, v);
  }
  if (write_alignment && !has_key) put_kv("general.alignment", GGUFValue::u32(alignment_));

  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    o.put_string(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) o.put<int64_t>(d);
    o.put<uint32_t>(static_cast<uint32_t>(t.type));
    o.put<uint64_t>(offset);
    offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  o.pad_to(alignment_);
  return o.bytes;
}

uint64_t GGUFWriter::header_size() const { return header_bytes().size(); }

std::vector<uint8_t> GGUFWriter::to_bytes() const {
  Out o;
  o.bytes = header_bytes();
  for (const PendingTensor& t : tensors_) {
    if (t.streamed) fail("GGUF writer: tensor {} has no data (declared for write_streamed)", t.name);
    const auto* p = static_cast<const uint8_t*>(t.data);
    if (t.nbytes) o.bytes.insert(o.bytes.end(), p, p + t.nbytes);
    o.pad_to(alignment_);
  }
  return o.bytes;
}

namespace {

// A file being written: buffered writes on a plain descriptor (so that kernel-side copies can
// be mixed in), byte count kept for padding, removed again unless commit() succeeds (so a
// failed run leaves no half-written model behind).
class OutFile {
 public:
  explicit OutFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("{}: cannot open for writing: {}", path, std::strerror(errno));
    // Blocks of a few MiB: a write() of this size still finds its source in the CPU's cache
    // once it copies into the page cache, and is large enough that calls cost nothing.
    buf_.reserve(size_t{4} << 20);
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  ~OutFile() {
    close_pipe();
    if (fd_ >= 0) {
      ::close(fd_);
      std::remove(path_.c_str());
    }
  }
  void write(const void* p, size_t n) {
    if (n == 0) return;
    const auto* src = static_cast<const uint8_t*>(p);
    if (buf_.size() + n <= buf_.capacity()) {
      buf_.insert(buf_.end(), src, src + n);
    } else {
      flush();
      if (n >= buf_.capacity()) write_all(src, n);
      else buf_.insert(buf_.end(), src, src + n);
    }
    written_ += n;
  }
  // n bytes of descriptor `fd` from `offset`: copy_file_range (in the kernel, no trip through
  // user memory), or, where the kernel or file systems refuse it (EXDEV, ENOSYS, EINVAL...),
  // pread and write.
  void copy_range(int fd, uint64_t offset, size_t n) {
    flush();
    size_t done = 0;
    while (done < n && kernel_copy_) {
      loff_t in = static_cast<loff_t>(offset + done);
      const ssize_t k = ::copy_file_range(fd, &in, fd_, nullptr, n - done, 0);
      if (k > 0) { done += static_cast<size_t>(k); continue; }
      if (k == 0) fail("{}: copying {} bytes at offset {}: the source ended early", path_, n, offset);
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP || errno == EBADF ||
          errno == EPERM) {
        kernel_copy_ = false;  // and for the rest of the file
        break;
      }
      fail("{}: write failed after {} bytes: {}", path_, written_ + done, std::strerror(errno));
    }
    std::vector<uint8_t> tmp;
    while (done < n) {
      const size_t k = std::min<size_t>(n - done, size_t{4} << 20);
      tmp.resize(k);
      const ssize_t r = ::pread(fd, tmp.data(), k, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        fail("{}: reading {} bytes at offset {} to copy: {}", path_, k, offset + done,
             r < 0 ? std::strerror(errno) : "the source ended early");
      write_all(tmp.data(), static_cast<size_t>(r));
      done += static_cast<size_t>(r);
    }
    written_ += n;
    kick_writeback();
  }
  void pad_to(uint64_t alignment) {
    static const uint8_t zeros[256] = {};
    uint64_t pad = (alignment - written_ % alignment) % alignment;
    while (pad > 0) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(pad, sizeof zeros));
      write(zeros, k);
      pad -= k;
    }
  }
  uint64_t written() const { return written_; }
  void commit() {
    flush();
    close_pipe();
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      const int err = errno;
      std::remove(path_.c_str());
      fail("{}: write failed when closing: {}", path_, std::strerror(err));
    }
  }

 private:
  void flush() {
    if (buf_.empty()) return;
    write_all(buf_.data(), buf_.size());
    buf_.clear();
  }
  // After a kernel copy: starts the disk writes of what has reached the file so far, every
  // 32 MiB, without waiting for them (SYNC_FILE_RANGE_WRITE only). Copying a bf16 checkpoint
  // is bound by the disk, and the kernel would otherwise leave the whole model dirty in the
  // page cache until its background threshold or a sync, the disk idle while the copy runs.
  // Not after converted bytes: there the CPUs are busy, and starting writeback takes the
  // file system's block allocation onto them (measured: f16 output 10-20% slower with it).
  void kick_writeback() {
    const uint64_t end = written_ - buf_.size();  // bytes in the file itself
    if (end - kicked_ < (uint64_t{32} << 20)) return;
    ::sync_file_range(fd_, static_cast<off_t>(kicked_), static_cast<off_t>(end - kicked_), SYNC_FILE_RANGE_WRITE);
    kicked_ = end;
  }
  // Large blocks go to the file through a pipe (vmsplice, then splice) where the kernel allows
  // it, so that the kernel copies them into the page cache from its own mapping of our pages,
  // as `cp` copies, instead of write() reading user memory: on the team's VMs (PVM, free page
  // reporting) that read made write() 2-2.5x slower than the pipe (2.4 GB in 8 MiB blocks after
  // a pause: write() 3.7-4.9 s, pipe 1.9-2.0 s). The pipe is drained before this returns, so
  // the caller may reuse its buffer.
  void write_all(const uint8_t* p, size_t n) {
    if (n >= kSpliceMin && splice_ok_) {
      const size_t done = splice_all(p, n);
      p += done;
      n -= done;
    }
    write_plain(p, n);
  }
  void write_plain(const uint8_t* p, size_t n) {
    while (n > 0) {
      const ssize_t k = ::write(fd_, p, n);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) fail("{}: write failed after {} bytes: {}", path_, written_, k < 0 ? std::strerror(errno) : "no progress");
      p += k;
      n -= static_cast<size_t>(k);
    }
  }
  // Returns how many bytes reached the file; fewer than n only when splicing turned out not to
  // be possible here (then splice_ok_ is false and the caller writes the rest).
  size_t splice_all(const uint8_t* p, size_t n) {
    if (pipe_[0] < 0) {
      if (::pipe2(pipe_, O_CLOEXEC) != 0) { splice_ok_ = false; return 0; }
      ::fcntl(pipe_[1], F_SETPIPE_SZ, 1 << 20);  // a hint: the default 64 KiB works too
    }
    size_t done = 0;
    while (done < n) {
      iovec iov{const_cast<uint8_t*>(p + done), n - done};
      const ssize_t k = ::vmsplice(pipe_[1], &iov, 1, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) {
        splice_ok_ = false;  // nothing of this block is in the pipe: write() takes it from here
        return done;
      }
      size_t moved = 0;
      while (moved < static_cast<size_t>(k)) {
        const ssize_t r = ::splice(pipe_[0], nullptr, fd_, nullptr, static_cast<size_t>(k) - moved, SPLICE_F_MOVE);
        if (r > 0) { moved += static_cast<size_t>(r); continue; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && moved == 0 && !spliced_any_ && (errno == EINVAL || errno == ENOSYS)) {
          // The file cannot take spliced data: drain the pipe (the bytes are still in p) and
          // leave the whole block to write().
          std::vector<uint8_t> back(static_cast<size_t>(k));
          for (size_t got = 0; got < back.size();) {
            const ssize_t g = ::read(pipe_[0], back.data() + got, back.size() - got);
            if (g < 0 && errno == EINTR) continue;
            if (g <= 0) fail("{}: write failed: could not take back {} piped bytes", path_, back.size());
            got += static_cast<size_t>(g);
          }
          splice_ok_ = false;
          return 0;
        }
        fail("{}: write failed after {} bytes: {}", path_, written_ + done + moved,
             r < 0 ? std::strerror(errno) : "no progress");
      }
      spliced_any_ = true;
      done += static_cast<size_t>(k);
    }
    return done;
  }
  void close_pipe() {
    for (int& f : pipe_)
      if (f >= 0) { ::close(f); f = -1; }
  }

  static constexpr size_t kSpliceMin = size_t{256} << 10;
  std::string path_;
  int fd_ = -1;
  std::vector<uint8_t> buf_;
  uint64_t written_ = 0;
  uint64_t kicked_ = 0;  // file bytes before this have had their writeback started
  bool kernel_copy_ = true;
  int pipe_[2] = {-1, -1};
  bool splice_ok_ = true, spliced_any_ = false;
};

}  // namespace

void GGUFWriter::write_streamed(const std::string& path,
                                const std::function<void(size_t, const Sink&)>& fill) const {
  const std::vector<uint8_t> header = header_bytes();
  OutFile out(path);
  out.write(header.data(), header.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = tensors_[i];
    if (!t.streamed) {
      out.write(t.data, t.nbytes);
    } else {
      if (!fill) fail("GGUF writer: tensor {} has no data", t.name);
      uint64_t got = 0;
      auto take = [&](size_t n) {
        if (got + n > t.nbytes)
          fail("GGUF writer: tensor {}: more than its {} bytes supplied", t.name, t.nbytes);
        got += n;
      };
      const Sink sink{[&](const void* p, size_t n) { take(n); out.write(p, n); },
                      [&](int fd, uint64_t off, size_t n) { take(n); out.copy_range(fd, off, n); }};
      fill(i, sink);
      if (got != t.nbytes)
        fail("GGUF writer: tensor {}: {} of its {} bytes supplied", t.name, got, t.nbytes);
    }
    out.pad_to(alignment_);
  }
  out.commit();
}

void GGUFWriter::write(const std::string& path) const { write_streamed(path, nullptr); }

}  // namespace slm
