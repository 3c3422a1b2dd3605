#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "chat/jinja_unicode.h"

namespace slm::chat::jinja {

namespace {

void check_depth(uint32_t depth) {
  if (depth > kMaxValueDepth) fail("values are nested too deeply (more than {})", kMaxValueDepth);
}

const ValueList& empty_list() {
  static const ValueList empty;
  return empty;
}

}  // namespace

// ---------------------------------------------------------------- construction

Value Value::undefined(std::string hint) {
  Value v;
  v.v_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::none() {
  Value v;
  v.type_ = Type::None;
  return v;
}

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::Bool;
  v.v_ = b;
  return v;
}

Value Value::integer(int64_t i) {
  Value v;
  v.type_ = Type::Int;
  v.v_ = i;
  return v;
}

Value Value::real(double d) {
  Value v;
  v.type_ = Type::Float;
  v.v_ = d;
  return v;
}

Value Value::string(std::string s, bool safe) {
  Value v;
  v.type_ = Type::String;
  v.safe_ = safe;
  v.v_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::list(ValueList items) {
  auto data = std::make_shared<ListData>();
  uint32_t depth = 0;
  for (const Value& x : items) depth = std::max(depth, x.depth());
  data->depth = depth + 1;
  check_depth(data->depth);
  data->items = std::move(items);
  Value v;
  v.type_ = Type::List;
  v.v_ = ListPtr(std::move(data));
  return v;
}

Value Value::tuple(ValueList items) {
  Value v = list(std::move(items));
  v.type_ = Type::Tuple;
  return v;
}

Value Value::dict(DictData d) {
  uint32_t depth = 0;
  for (const auto& [k, x] : d.entries) depth = std::max({depth, k.depth(), x.depth()});
  d.depth = depth + 1;
  check_depth(d.depth);
  Value v;
  v.type_ = Type::Dict;
  v.v_ = DictPtr(std::make_shared<const DictData>(std::move(d)));
  return v;
}

Value Value::object(std::shared_ptr<ObjectData> o) {
  Value v;
  v.type_ = Type::Object;
  v.v_ = std::move(o);
  return v;
}

Value Value::function(std::shared_ptr<const FunctionData> f) {
  Value v;
  v.type_ = Type::Function;
  v.v_ = std::move(f);
  return v;
}

Value make_function(std::string name, NativeFn fn, FunctionData::Kind kind) {
  auto f = std::make_shared<FunctionData>();
  f->name = std::move(name);
  f->kind = kind;
  f->fn = std::move(fn);
  return Value::function(std::move(f));
}

bool Value::is_callable() const {
  return type_ == Type::Function || (type_ == Type::Object && object().call);
}

double Value::as_double() const {
  switch (type_) {
    case Type::Int: return static_cast<double>(i());
    case Type::Float: return f();
    case Type::Bool: return b() ? 1.0 : 0.0;
    default: fail("expected a number, got {}", type_name(*this));
  }
}

const ValueList& Value::items() const {
  if (const auto* p = std::get_if<ListPtr>(&v_)) return (*p)->items;
  return empty_list();
}

const std::string* Value::undefined_hint() const {
  if (type_ != Type::Undefined) return nullptr;
  if (const auto* p = std::get_if<StrPtr>(&v_)) return p->get();
  return nullptr;
}

uint32_t Value::depth() const {
  if (const auto* p = std::get_if<ListPtr>(&v_)) return (*p)->depth;
  if (const auto* p = std::get_if<DictPtr>(&v_)) return (*p)->depth;
  if (type_ == Type::Object) return 1;
  return 0;
}

const void* Value::identity() const {
  switch (v_.index()) {
    case 4: return std::get<StrPtr>(v_).get();
    case 5: return std::get<ListPtr>(v_).get();
    case 6: return std::get<DictPtr>(v_).get();
    case 7: return std::get<ObjPtr>(v_).get();
    case 8: return std::get<FuncPtr>(v_).get();
    default: return nullptr;
  }
}

// ---------------------------------------------------------------- dict

const Value* DictData::find(const Value& key) const {
  auto it = index.find(hash_key(key));
  return it == index.end() ? nullptr : &entries[it->second].second;
}

const Value* DictData::find_str(std::string_view key) const {
  std::string k;
  k.reserve(key.size() + 1);
  k += 'S';
  k += key;
  auto it = index.find(k);
  return it == index.end() ? nullptr : &entries[it->second].second;
}

void DictData::set(Value key, Value value) {
  std::string h = hash_key(key);
  auto it = index.find(h);
  if (it != index.end()) {
    entries[it->second].second = std::move(value);  // Python keeps the first key object
    return;
  }
  index.emplace(std::move(h), entries.size());
  entries.emplace_back(std::move(key), std::move(value));
}

// ---------------------------------------------------------------- python semantics

std::string type_name(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return "Undefined";
    case Value::Type::None: return "NoneType";
    case Value::Type::Bool: return "bool";
    case Value::Type::Int: return "int";
    case Value::Type::Float: return "float";
    case Value::Type::String: return v.safe() ? "Markup" : "str";
    case Value::Type::List: return "list";
    case Value::Type::Tuple: return "tuple";
    case Value::Type::Dict: return "dict";
    case Value::Type::Object: return v.object().type_name;
    case Value::Type::Function:
      switch (v.function().kind) {
        case FunctionData::Kind::Macro: return "Macro";
        case FunctionData::Kind::Method: return "builtin_function_or_method";
        case FunctionData::Kind::Builtin: return "function";
      }
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined:
    case Value::Type::None: return false;
    case Value::Type::Bool: return v.b();
    case Value::Type::Int: return v.i() != 0;
    case Value::Type::Float: return v.f() != 0.0;
    case Value::Type::String: return !v.str().empty();
    case Value::Type::List:
    case Value::Type::Tuple: return !v.items().empty();
    case Value::Type::Dict: return v.dict().size() != 0;
    case Value::Type::Object:
    case Value::Type::Function: return true;
  }
  return false;
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  bool neg = false;
  if (!sci.empty() && sci[0] == '-') {
    neg = true;
    sci.remove_prefix(1);
  }
  const size_t epos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, epos))
    if (c != '.') digits += c;
  int exp10 = 0;
  std::string_view es = sci.substr(epos + 1);
  if (!es.empty() && es[0] == '+') es.remove_prefix(1);
  std::from_chars(es.data(), es.data() + es.size(), exp10);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int ndigits = static_cast<int>(digits.size());
  const int decpt = exp10 + 1;  // position of the decimal point relative to the digits
  std::string out = neg ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<size_t>(-decpt), '0');
      out += digits;
    } else if (decpt >= ndigits) {
      out += digits;
      out.append(static_cast<size_t>(decpt - ndigits), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt));
      out += '.';
      out += digits.substr(static_cast<size_t>(decpt));
    }
  } else {
    out += digits[0];
    if (ndigits > 1) {
      out += '.';
      out += digits.substr(1);
    }
    const int e = decpt - 1;
    out += e < 0 ? "e-" : "e+";
    const int ae = e < 0 ? -e : e;
    if (ae < 10) out += '0';
    out += std::to_string(ae);
  }
  return out;
}

std::string string_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out;
  out.reserve(s.size() + 2);
  out += quote;
  char32_t c = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8::decode(s, i, c);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!utf8::is_printable(c)) {
      if (c <= 0xFF) {
        out += fmt::format("\\x{:02x}", static_cast<unsigned>(c));
      } else if (c >= 0xDC80 && c <= 0xDCFF) {
        out += fmt::format("\\udc{:02x}", static_cast<unsigned>(c - 0xDC00));
      } else if (c <= 0xFFFF) {
        out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
      } else {
        out += fmt::format("\\U{:08x}", static_cast<unsigned>(c));
      }
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  out += quote;
  return out;
}

namespace {

void repr_into(const Value& v, std::string& out, uint32_t depth);

void repr_dict_into(const DictData& d, std::string& out, uint32_t depth) {
  out += '{';
  bool first = true;
  for (const auto& [k, x] : d.entries) {
    if (!first) out += ", ";
    first = false;
    repr_into(k, out, depth + 1);
    out += ": ";
    repr_into(x, out, depth + 1);
  }
  out += '}';
}

void repr_into(const Value& v, std::string& out, uint32_t depth) {
  if (depth > kMaxValueDepth) fail("maximum recursion depth exceeded while getting the repr");
  check_string_size(out.size());
  switch (v.type()) {
    case Value::Type::Undefined: out += "Undefined"; return;
    case Value::Type::String:
      if (v.safe()) {
        out += "Markup(";
        out += string_repr(v.str());
        out += ')';
      } else {
        out += string_repr(v.str());
      }
      return;
    case Value::Type::List:
    case Value::Type::Tuple: {
      const bool tuple = v.is_tuple();
      out += tuple ? '(' : '[';
      const ValueList& items = v.items();
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += ", ";
        repr_into(items[k], out, depth + 1);
      }
      if (tuple && items.size() == 1) out += ',';
      out += tuple ? ')' : ']';
      return;
    }
    case Value::Type::Dict: repr_dict_into(v.dict(), out, depth); return;
    case Value::Type::Object: {
      const ObjectData& o = v.object();
      if (o.type_name == "Namespace") {
        out += "<Namespace ";
        repr_dict_into(o.attrs, out, depth);
        out += '>';
      } else if (o.type_name == "LoopContext") {
        const Value* idx = o.attrs.find_str("index");
        const Value* len = o.attrs.find_str("length");
        out += fmt::format("<LoopContext {}/{}>", idx ? to_str(*idx) : "?",
                           len ? to_str(*len) : "?");
      } else {
        out += fmt::format("<{} object>", o.type_name);
      }
      return;
    }
    case Value::Type::Function: {
      const FunctionData& f = v.function();
      switch (f.kind) {
        case FunctionData::Kind::Macro: out += fmt::format("<Macro '{}'>", f.name); return;
        case FunctionData::Kind::Method: out += fmt::format("<built-in method {}>", f.name); return;
        case FunctionData::Kind::Builtin: out += fmt::format("<function {}>", f.name); return;
      }
      return;
    }
    default: out += to_str(v); return;
  }
}

}  // namespace

std::string repr(const Value& v) {
  std::string out;
  repr_into(v, out, 0);
  return out;
}

std::string to_str(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return "";
    case Value::Type::None: return "None";
    case Value::Type::Bool: return v.b() ? "True" : "False";
    case Value::Type::Int: return std::to_string(v.i());
    case Value::Type::Float: return float_repr(v.f());
    case Value::Type::String: return v.str();
    default: return repr(v);
  }
}

namespace {

bool num_equal(const Value& a, const Value& b) {
  if (!a.is_float() && !b.is_float()) {
    const int64_t x = a.is_bool() ? a.b() : a.i();
    const int64_t y = b.is_bool() ? b.b() : b.i();
    return x == y;
  }
  if (a.is_float() && b.is_float()) return a.f() == b.f();
  const double d = a.is_float() ? a.f() : b.f();
  const Value& n = a.is_float() ? b : a;
  const int64_t k = n.is_bool() ? n.b() : n.i();
  if (std::isnan(d) || std::isinf(d) || d != std::floor(d)) return false;
  if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) return false;
  return static_cast<int64_t>(d) == k;
}

std::partial_ordering num_compare(const Value& a, const Value& b) {
  if (!a.is_float() && !b.is_float()) {
    const int64_t x = a.is_bool() ? a.b() : a.i();
    const int64_t y = b.is_bool() ? b.b() : b.i();
    return x <=> y;
  }
  if (num_equal(a, b)) return std::partial_ordering::equivalent;
  return a.as_double() <=> b.as_double();
}

bool equals_impl(const Value& a, const Value& b, uint32_t depth) {
  if (depth > kMaxValueDepth) fail("maximum recursion depth exceeded in comparison");
  if (a.is_number() && b.is_number()) return num_equal(a, b);
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::Undefined:
    case Value::Type::None: return true;
    case Value::Type::String: return a.str() == b.str();
    case Value::Type::List:
    case Value::Type::Tuple: {
      const ValueList& x = a.items();
      const ValueList& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t k = 0; k < x.size(); ++k)
        if (!equals_impl(x[k], y[k], depth + 1)) return false;
      return true;
    }
    case Value::Type::Dict: {
      const DictData& x = a.dict();
      const DictData& y = b.dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, xv] : x.entries) {
        const Value* yv = y.find(k);
        if (!yv || !equals_impl(xv, *yv, depth + 1)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();
  }
}

}  // namespace

bool equals(const Value& a, const Value& b) { return equals_impl(a, b, 0); }

std::partial_ordering compare(const Value& a, const Value& b, const char* op) {
  if (a.is_number() && b.is_number()) return num_compare(a, b);
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());
    return c < 0 ? std::partial_ordering::less
                 : (c > 0 ? std::partial_ordering::greater : std::partial_ordering::equivalent);
  }
  if ((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) {
    const ValueList& x = a.items();
    const ValueList& y = b.items();
    const size_t n = std::min(x.size(), y.size());
    for (size_t k = 0; k < n; ++k) {
      if (!equals(x[k], y[k])) return compare(x[k], y[k], op);
    }
    return x.size() <=> y.size();
  }
  fail("'{}' not supported between instances of '{}' and '{}'", op, type_name(a), type_name(b));
}

namespace {

std::string tagged(char tag, std::string_view body) {
  std::string out;
  out.reserve(body.size() + 1);
  out += tag;
  out += body;
  return out;
}

}  // namespace

std::string hash_key(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return "U";
    case Value::Type::None: return "N";
    case Value::Type::Bool: return v.b() ? "I1" : "I0";
    case Value::Type::Int: return tagged('I', std::to_string(v.i()));
    case Value::Type::Float: {
      const double d = v.f();
      if (d == std::floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
        return tagged('I', std::to_string(static_cast<int64_t>(d)));
      return tagged('F', float_repr(d));
    }
    case Value::Type::String: return tagged('S', v.str());
    case Value::Type::Tuple: {
      std::string out = "T";
      for (const Value& x : v.items()) {
        std::string k = hash_key(x);
        out += std::to_string(k.size());
        out += ':';
        out += k;
      }
      return out;
    }
    case Value::Type::Object:
    case Value::Type::Function:
      return fmt::format("P{}", reinterpret_cast<uintptr_t>(v.identity()));
    default: fail("unhashable type: '{}'", type_name(v));
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::Undefined: return false;
    case Value::Type::String:
      if (!item.is_string())
        fail("'in <string>' requires string as left operand, not {}", type_name(item));
      return container.str().find(item.str()) != std::string::npos;
    case Value::Type::List:
    case Value::Type::Tuple:
      for (const Value& x : container.items())
        if (equals(x, item)) return true;
      return false;
    case Value::Type::Dict: return container.dict().find(item) != nullptr;
    default: fail("argument of type '{}' is not iterable", type_name(container));
  }
}

ValueList iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return {};
    case Value::Type::List:
    case Value::Type::Tuple: return v.items();
    case Value::Type::Dict: {
      ValueList out;
      out.reserve(v.dict().size());
      for (const auto& [k, x] : v.dict().entries) out.push_back(k);
      return out;
    }
    case Value::Type::String: {
      ValueList out;
      const std::string& s = v.str();
      char32_t c = 0;
      for (size_t i = 0; i < s.size();) {
        const size_t n = utf8::decode(s, i, c);
        out.push_back(Value::string(s.substr(i, n), v.safe()));
        i += n;
      }
      return out;
    }
    default: fail("'{}' object is not iterable", type_name(v));
  }
}

int64_t length(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return 0;
    case Value::Type::String: return static_cast<int64_t>(utf8::length(v.str()));
    case Value::Type::List:
    case Value::Type::Tuple: return static_cast<int64_t>(v.items().size());
    case Value::Type::Dict: return static_cast<int64_t>(v.dict().size());
    case Value::Type::Object:
      if (v.object().type_name == "LoopContext") {
        if (const Value* n = v.object().attrs.find_str("length")) return n->i();
      }
      [[fallthrough]];
    default: fail("object of type '{}' has no len()", type_name(v));
  }
}

// ---------------------------------------------------------------- json

namespace {

template <class Json>
Value from_json_impl(const Json& j, uint32_t depth) {
  if (depth > kMaxValueDepth) fail("JSON context is nested too deeply (more than {})", kMaxValueDepth);
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return Value::integer(static_cast<int64_t>(u));
      return Value::real(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::real(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::string(j.template get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json_impl(x, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      DictData d;
      for (auto it = j.begin(); it != j.end(); ++it)
        d.set(Value::string(it.key()), from_json_impl(it.value(), depth + 1));
      return Value::dict(std::move(d));
    }
    default: fail("unsupported JSON value in the context (binary or discarded)");
  }
}

void json_string(std::string_view s, bool ensure_ascii, std::string& out) {
  out += '"';
  char32_t c = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8::decode(s, i, c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
          if (c >= 0x10000) {
            const char32_t v = c - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", static_cast<unsigned>(0xD800 + (v >> 10)),
                               static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
          } else {
            out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
          }
        } else {
          out.append(s.substr(i, n));
        }
    }
    i += n;
  }
  out += '"';
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return float_repr(d);
}

std::string json_key(const Value& k) {
  switch (k.type()) {
    case Value::Type::String: return k.str();
    case Value::Type::Bool: return k.b() ? "true" : "false";
    case Value::Type::None: return "null";
    case Value::Type::Int: return std::to_string(k.i());
    case Value::Type::Float: return json_float(k.f());
    default: fail("keys must be str, int, float, bool or None, not {}", type_name(k));
  }
}

void json_newline(const JsonOptions& o, int level, std::string& out) {
  out += '\n';
  for (int k = 0; k < level; ++k) out += *o.indent;
}

void to_json_impl(const Value& v, const JsonOptions& o, int level, std::string& out) {
  if (static_cast<uint32_t>(level) > kMaxValueDepth) fail("maximum recursion depth exceeded in tojson");
  check_string_size(out.size());
  switch (v.type()) {
    case Value::Type::None: out += "null"; return;
    case Value::Type::Bool: out += v.b() ? "true" : "false"; return;
    case Value::Type::Int: out += std::to_string(v.i()); return;
    case Value::Type::Float: out += json_float(v.f()); return;
    case Value::Type::String: json_string(v.str(), o.ensure_ascii, out); return;
    case Value::Type::List:
    case Value::Type::Tuple: {
      const ValueList& items = v.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += o.item_sep;
        if (o.indent) json_newline(o, level + 1, out);
        to_json_impl(items[k], o, level + 1, out);
      }
      if (o.indent) json_newline(o, level, out);
      out += ']';
      return;
    }
    case Value::Type::Dict: {
      const DictData& d = v.dict();
      if (d.size() == 0) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<Value, Value>*> entries;
      entries.reserve(d.size());
      for (const auto& e : d.entries) entries.push_back(&e);
      if (o.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](const auto* x, const auto* y) {
          return compare(x->first, y->first, "<") < 0;
        });
      }
      out += '{';
      bool first = true;
      for (const auto* e : entries) {
        if (!first) out += o.item_sep;
        first = false;
        if (o.indent) json_newline(o, level + 1, out);
        json_string(json_key(e->first), o.ensure_ascii, out);
        out += o.key_sep;
        to_json_impl(e->second, o, level + 1, out);
      }
      if (o.indent) json_newline(o, level, out);
      out += '}';
      return;
    }
    default: fail("Object of type {} is not JSON serializable", type_name(v));
  }
}

}  // namespace

Value from_json(const nlohmann::json& j) { return from_json_impl(j, 0); }
Value from_json(const nlohmann::ordered_json& j) { return from_json_impl(j, 0); }

std::string to_json(const Value& v, const JsonOptions& options) {
  std::string out;
  to_json_impl(v, options, 0, out);
  return out;
}

// ---------------------------------------------------------------- checked arithmetic

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) fail("integer overflow (beyond 64 bits)");
  return r;
}

int64_t checked_sub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) fail("integer overflow (beyond 64 bits)");
  return r;
}

int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) fail("integer overflow (beyond 64 bits)");
  return r;
}

}  // namespace slm::chat::jinja
