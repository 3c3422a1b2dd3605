// Values of the Jinja interpreter, with Python semantics: str()/repr() output, truthiness,
// equality and ordering, dict key hashing, json.dumps. Containers are immutable once built
// (ImmutableSandboxedEnvironment); only namespace() objects are mutable.
#pragma once
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace slm::chat::jinja {

// How deep values, templates and calls may nest before rendering stops with an error.
inline constexpr uint32_t kMaxValueDepth = 512;
// The longest string (and template output) rendering may build.
inline constexpr size_t kMaxStringBytes = size_t{64} << 20;

// An error raised while evaluating; the interpreter adds the line of the failing node.
class EvalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw EvalError(fmt::format(f, std::forward<Args>(args)...));
}

// Fails when a string being built would exceed kMaxStringBytes.
inline void check_string_size(size_t n) {
  if (n > kMaxStringBytes) fail("string exceeds {} bytes", kMaxStringBytes);
}

class Value;
using ValueList = std::vector<Value>;
struct ListData;
struct DictData;
struct ObjectData;
struct FunctionData;

class Value {
 public:
  enum class Type : uint8_t {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Tuple,
    Dict,
    Object,
    Function
  };

  Value() = default;
  static Value undefined() { return Value(); }
  // An undefined value whose use raises `hint` (e.g. "'dict object' has no attribute 'x'").
  static Value undefined(std::string hint);
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value real(double d);
  static Value string(std::string s, bool safe = false);
  static Value list(ValueList items);
  static Value tuple(ValueList items);
  static Value dict(DictData d);
  static Value object(std::shared_ptr<ObjectData> o);
  static Value function(std::shared_ptr<const FunctionData> f);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::Undefined; }
  bool is_none() const { return type_ == Type::None; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_float() const { return type_ == Type::Float; }
  // int, float or bool (Python's numbers.Number).
  bool is_number() const {
    return type_ == Type::Int || type_ == Type::Float || type_ == Type::Bool;
  }
  bool is_string() const { return type_ == Type::String; }
  bool is_list() const { return type_ == Type::List; }
  bool is_tuple() const { return type_ == Type::Tuple; }
  bool is_sequence() const { return type_ == Type::List || type_ == Type::Tuple; }
  bool is_dict() const { return type_ == Type::Dict; }
  bool is_object() const { return type_ == Type::Object; }
  bool is_function() const { return type_ == Type::Function; }
  bool is_callable() const;
  bool safe() const { return safe_; }  // a Markup string

  bool b() const { return std::get<bool>(v_); }
  int64_t i() const { return std::get<int64_t>(v_); }
  double f() const { return std::get<double>(v_); }
  // Numeric value of an int, float or bool.
  double as_double() const;
  const std::string& str() const { return *std::get<StrPtr>(v_); }
  const ValueList& items() const;
  const DictData& dict() const { return *std::get<DictPtr>(v_); }
  ObjectData& object() const { return *std::get<ObjPtr>(v_); }
  const std::shared_ptr<ObjectData>& object_ptr() const { return std::get<ObjPtr>(v_); }
  const FunctionData& function() const { return *std::get<FuncPtr>(v_); }
  // Message raised when an undefined value is used; nullptr for a plain undefined.
  const std::string* undefined_hint() const;
  // Nesting depth: 0 for scalars, 1 + deepest child for containers.
  uint32_t depth() const;
  // Identity for `is sameas` (pointer of the shared payload, or nullptr for scalars).
  const void* identity() const;

 private:
  using StrPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<const ListData>;
  using DictPtr = std::shared_ptr<const DictData>;
  using ObjPtr = std::shared_ptr<ObjectData>;
  using FuncPtr = std::shared_ptr<const FunctionData>;

  Type type_ = Type::Undefined;
  bool safe_ = false;
  std::variant<std::monostate, bool, int64_t, double, StrPtr, ListPtr, DictPtr, ObjPtr, FuncPtr>
      v_;
};

struct ListData {
  ValueList items;
  uint32_t depth = 1;
};

// An insertion-ordered dict with Python key semantics (1 == 1.0 == True).
struct DictData {
  std::vector<std::pair<Value, Value>> entries;
  std::unordered_map<std::string, size_t> index;
  uint32_t depth = 1;

  const Value* find(const Value& key) const;  // throws EvalError for unhashable keys
  const Value* find_str(std::string_view key) const;
  void set(Value key, Value value);
  size_t size() const { return entries.size(); }
};

struct CallArgs {
  ValueList args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

using NativeFn = std::function<Value(CallArgs&)>;

struct FunctionData {
  enum class Kind : uint8_t { Builtin, Method, Macro };
  std::string name;
  Kind kind = Kind::Builtin;
  NativeFn fn;
};

// namespace(), loop, joiner() and cycler() objects: attributes plus an optional call.
struct ObjectData {
  std::string type_name;
  DictData attrs;
  bool assignable = false;  // `{% set ns.attr = ... %}` allowed (namespace)
  NativeFn call;            // set when the object itself is callable (recursive loop)
};

Value make_function(std::string name, NativeFn fn,
                    FunctionData::Kind kind = FunctionData::Kind::Builtin);

// Python's type(v).__name__ ("str", "int", "NoneType", "dict", ...).
std::string type_name(const Value& v);
bool truthy(const Value& v);
// str(v) as Jinja prints it: undefined is "", None is "None", containers as repr.
std::string to_str(const Value& v);
std::string repr(const Value& v);
std::string float_repr(double d);
std::string string_repr(std::string_view s);
bool equals(const Value& a, const Value& b);
// Python ordering of a and b for operator `op` (used in the error message); throws for
// unorderable types; unordered when a float is NaN.
std::partial_ordering compare(const Value& a, const Value& b, const char* op);
// A key such that Python-equal hashable values get equal keys; throws for unhashable values.
std::string hash_key(const Value& v);
// `item in container`.
bool contains(const Value& container, const Value& item);
// list(v): list/tuple items, dict keys, string characters; undefined is empty.
ValueList iterate(const Value& v);
// len(v); undefined is 0.
int64_t length(const Value& v);

Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

// json.dumps(v, ensure_ascii=..., indent=..., separators=..., sort_keys=...).
struct JsonOptions {
  std::optional<std::string> indent;  // None, or the indent unit (int n means n spaces)
  bool ensure_ascii = false;
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonOptions& options);

// Checked int64 arithmetic (Python ints do not overflow; we report an error instead).
int64_t checked_add(int64_t a, int64_t b);
int64_t checked_sub(int64_t a, int64_t b);
int64_t checked_mul(int64_t a, int64_t b);

}  // namespace slm::chat::jinja
