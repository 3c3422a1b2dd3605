// GGUF v3 writer: metadata in insertion order, tensor infos, then aligned tensor data.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

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

// A file being written: large buffered writes, byte count kept for padding, removed again
// unless commit() succeeds (so a failed run leaves no half-written model behind).
class OutFile {
 public:
  explicit OutFile(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) fail("{}: cannot open for writing: {}", path, std::strerror(errno));
    buf_.resize(size_t{8} << 20);
    std::setvbuf(f_, buf_.data(), _IOFBF, buf_.size());
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  ~OutFile() {
    if (f_) {
      std::fclose(f_);
      std::remove(path_.c_str());
    }
  }
  void write(const void* p, size_t n) {
    if (n == 0) return;
    if (std::fwrite(p, 1, n, f_) != n)
      fail("{}: write failed after {} bytes: {}", path_, written_, std::strerror(errno));
    written_ += n;
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
    std::FILE* f = f_;
    f_ = nullptr;
    if (std::fclose(f) != 0) {
      const int err = errno;
      std::remove(path_.c_str());
      fail("{}: write failed when closing: {}", path_, std::strerror(err));
    }
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  std::vector<char> buf_;
  uint64_t written_ = 0;
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
      const Sink sink = [&](const void* p, size_t n) {
        if (got + n > t.nbytes)
          fail("GGUF writer: tensor {}: more than its {} bytes supplied", t.name, t.nbytes);
        out.write(p, n);
        got += n;
      };
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
