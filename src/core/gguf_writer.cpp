// GGUF v3 writer: metadata in insertion order, tensor infos, then aligned tensor data.
#include <cstdio>
#include <cstring>
#include <fstream>

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

std::vector<uint8_t> GGUFWriter::to_bytes() const {
  Out o;
  o.bytes.insert(o.bytes.end(), {'G', 'G', 'U', 'F'});
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors_.size());
  // general.alignment is written only when it differs from the default.
  const bool write_alignment = alignment_ != 32;
  o.put<uint64_t>(kv_.size() + (write_alignment ? 1 : 0));
  auto put_kv = [&](const std::string& key, const GGUFValue& v) {
    o.put_string(key);
    o.put<uint32_t>(static_cast<uint32_t>(v.type));
    if (v.type == GGUFType::ARRAY) {
      o.put<uint32_t>(static_cast<uint32_t>(v.elem_type));
      o.put<uint64_t>(v.array.size());
      for (const auto& e : v.array) put_scalar(o, v.elem_type, e);
    } else {
      put_scalar(o, v.type, v.scalar);
    }
  };
  for (const auto& [k, v] : kv_)
    if (k != "general.alignment") put_kv(k, v);
  if (write_alignment) put_kv("general.alignment", GGUFValue::u32(alignment_));
  else
    for (const auto& [k, v] : kv_)
      if (k == "general.alignment") put_kv(k, v);

  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const PendingTensor& t : tensors_) {
    o.put_string(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) o.put<int64_t>(d);
    o.put<uint32_t>(static_cast<uint32_t>(t.type));
    o.put<uint64_t>(offset);
    offsets.push_back(offset);
    offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  o.pad_to(alignment_);
  for (const PendingTensor& t : tensors_) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    if (t.nbytes) o.bytes.insert(o.bytes.end(), p, p + t.nbytes);
    o.pad_to(alignment_);
  }
  return o.bytes;
}

void GGUFWriter::write(const std::string& path) const {
  std::vector<uint8_t> bytes = to_bytes();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail("{}: cannot open for writing: {}", path, std::strerror(errno));
  const size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int rc = std::fclose(f);
  if (n != bytes.size() || rc != 0) fail("{}: write failed after {} of {} bytes", path, n, bytes.size());
}

}  // namespace slm
