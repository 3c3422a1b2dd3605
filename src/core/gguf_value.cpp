// GGUFValue conversions: numeric types convert to each other when the value fits; anything
// else is an error naming the stored type.
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/gguf.h"

namespace slm {

const char* gguf_type_name(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: return "uint8";
    case GGUFType::INT8: return "int8";
    case GGUFType::UINT16: return "uint16";
    case GGUFType::INT16: return "int16";
    case GGUFType::UINT32: return "uint32";
    case GGUFType::INT32: return "int32";
    case GGUFType::FLOAT32: return "float32";
    case GGUFType::BOOL: return "bool";
    case GGUFType::STRING: return "string";
    case GGUFType::ARRAY: return "array";
    case GGUFType::UINT64: return "uint64";
    case GGUFType::INT64: return "int64";
    case GGUFType::FLOAT64: return "float64";
  }
  return "unknown";
}

size_t gguf_type_size(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
    case GGUFType::UINT16: case GGUFType::INT16: return 2;
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
    case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
    case GGUFType::STRING: case GGUFType::ARRAY: return 0;
  }
  return 0;
}

namespace {
using Scalar = std::variant<uint64_t, int64_t, double, bool, std::string>;

int64_t scalar_int(const Scalar& s, GGUFType t) {
  if (auto* u = std::get_if<uint64_t>(&s)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail("value {} does not fit in int64", *u);
    return static_cast<int64_t>(*u);
  }
  if (auto* i = std::get_if<int64_t>(&s)) return *i;
  fail("expected an integer, found {}", gguf_type_name(t));
}
double scalar_float(const Scalar& s, GGUFType t) {
  if (auto* d = std::get_if<double>(&s)) return *d;
  if (auto* u = std::get_if<uint64_t>(&s)) return static_cast<double>(*u);
  if (auto* i = std::get_if<int64_t>(&s)) return static_cast<double>(*i);
  fail("expected a number, found {}", gguf_type_name(t));
}
template <class T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
}  // namespace

size_t GGUFValue::array_size() const {
  if (elem_type == GGUFType::STRING) return str_ends.size();
  const size_t w = gguf_type_size(elem_type);
  return w ? raw.size() / w : 0;
}

Scalar GGUFValue::elem(size_t i) const {
  const size_t w = gguf_type_size(elem_type);
  if (w == 0 || i >= array_size()) fail("internal: element {} of an array of {}", i, gguf_type_name(elem_type));
  const uint8_t* p = raw.data() + i * w;
  switch (elem_type) {
    case GGUFType::UINT8: return uint64_t{*p};
    case GGUFType::INT8: return int64_t{static_cast<int8_t>(*p)};
    case GGUFType::UINT16: return uint64_t{load_le<uint16_t>(p)};
    case GGUFType::INT16: return int64_t{load_le<int16_t>(p)};
    case GGUFType::UINT32: return uint64_t{load_le<uint32_t>(p)};
    case GGUFType::INT32: return int64_t{load_le<int32_t>(p)};
    case GGUFType::UINT64: return load_le<uint64_t>(p);
    case GGUFType::INT64: return load_le<int64_t>(p);
    case GGUFType::FLOAT32: return double{load_le<float>(p)};
    case GGUFType::FLOAT64: return load_le<double>(p);
    case GGUFType::BOOL: return *p != 0;
    default: break;
  }
  fail("internal: element of an array of {}", gguf_type_name(elem_type));
}

int64_t GGUFValue::as_int() const {
  if (is_array()) fail("expected an integer, found an array");
  return scalar_int(scalar, type);
}
uint64_t GGUFValue::as_uint() const {
  if (auto* u = std::get_if<uint64_t>(&scalar); u && !is_array()) return *u;
  int64_t v = as_int();
  if (v < 0) fail("expected a non-negative integer, found {}", v);
  return static_cast<uint64_t>(v);
}
double GGUFValue::as_float() const {
  if (is_array()) fail("expected a number, found an array");
  return scalar_float(scalar, type);
}
bool GGUFValue::as_bool() const {
  if (auto* b = std::get_if<bool>(&scalar); b && !is_array()) return *b;
  fail("expected a bool, found {}", gguf_type_name(type));
}
const std::string& GGUFValue::as_string() const {
  if (auto* s = std::get_if<std::string>(&scalar); s && !is_array()) return *s;
  fail("expected a string, found {}", gguf_type_name(type));
}
std::vector<std::string> GGUFValue::as_strings() const {
  if (!is_array() || elem_type != GGUFType::STRING)
    fail("expected an array of strings, found {}", is_array() ? std::string("array of ") + gguf_type_name(elem_type) : gguf_type_name(type));
  std::vector<std::string> out;
  out.reserve(array_size());
  for (size_t i = 0; i < array_size(); ++i) out.emplace_back(str_at(i));
  return out;
}
std::vector<int64_t> GGUFValue::as_ints() const {
  if (!is_array()) fail("expected an array of integers, found {}", gguf_type_name(type));
  if (elem_type == GGUFType::STRING) fail("expected an array of integers, found an array of strings");
  std::vector<int64_t> out;
  out.reserve(array_size());
  for (size_t i = 0; i < array_size(); ++i) out.push_back(scalar_int(elem(i), elem_type));
  return out;
}
std::vector<float> GGUFValue::as_floats() const {
  if (!is_array()) fail("expected an array of numbers, found {}", gguf_type_name(type));
  if (elem_type == GGUFType::STRING) fail("expected an array of numbers, found an array of strings");
  std::vector<float> out;
  out.reserve(array_size());
  for (size_t i = 0; i < array_size(); ++i) out.push_back(static_cast<float>(scalar_float(elem(i), elem_type)));
  return out;
}

GGUFValue GGUFValue::u32(uint32_t v) { GGUFValue r; r.type = GGUFType::UINT32; r.scalar = uint64_t{v}; return r; }
GGUFValue GGUFValue::i32(int32_t v) { GGUFValue r; r.type = GGUFType::INT32; r.scalar = int64_t{v}; return r; }
GGUFValue GGUFValue::u64(uint64_t v) { GGUFValue r; r.type = GGUFType::UINT64; r.scalar = v; return r; }
GGUFValue GGUFValue::f32(float v) { GGUFValue r; r.type = GGUFType::FLOAT32; r.scalar = double{v}; return r; }
GGUFValue GGUFValue::boolean(bool v) { GGUFValue r; r.type = GGUFType::BOOL; r.scalar = v; return r; }
GGUFValue GGUFValue::str(std::string v) { GGUFValue r; r.type = GGUFType::STRING; r.scalar = std::move(v); return r; }
GGUFValue GGUFValue::strings(const std::vector<std::string>& v) {
  GGUFValue r; r.type = GGUFType::ARRAY; r.elem_type = GGUFType::STRING;
  for (const auto& s : v) r.push_string(s);
  return r;
}
GGUFValue GGUFValue::i32s(const std::vector<int32_t>& v) {
  GGUFValue r; r.type = GGUFType::ARRAY; r.elem_type = GGUFType::INT32;
  r.raw.resize(v.size() * sizeof(int32_t));
  if (!v.empty()) std::memcpy(r.raw.data(), v.data(), r.raw.size());
  return r;
}
GGUFValue GGUFValue::bytes(std::string_view v) {
  GGUFValue r; r.type = GGUFType::ARRAY; r.elem_type = GGUFType::UINT8;
  r.raw.assign(v.begin(), v.end());
  return r;
}
GGUFValue GGUFValue::f32s(const std::vector<float>& v) {
  GGUFValue r; r.type = GGUFType::ARRAY; r.elem_type = GGUFType::FLOAT32;
  r.raw.resize(v.size() * sizeof(float));
  if (!v.empty()) std::memcpy(r.raw.data(), v.data(), r.raw.size());
  return r;
}

}  // namespace slm
