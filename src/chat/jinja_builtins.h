// Built-in filters, tests, globals and the attribute/item access rules of Jinja2's
// ImmutableSandboxedEnvironment, plus HF's tojson, raise_exception and strftime_now.
#pragma once
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace slm::chat::jinja {

bool is_known_filter(std::string_view name);
bool is_known_test(std::string_view name);

Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
bool apply_test(const std::string& name, const Value& input, CallArgs& args);

// obj.name: Python attributes first (str/dict/list methods, namespace and loop attributes),
// then dict keys; an undefined value (with Jinja's message) when missing.
Value get_attr(const Value& obj, const std::string& name);
// obj|attr(name): like get_attr but never falls back to dict keys.
Value get_python_attr(const Value& obj, const std::string& name);
// obj[key]: items first, then attributes for string keys.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step]; each bound may be undefined() meaning omitted.
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// Raises the error an undefined value carries ("'x' is undefined", ...).
[[noreturn]] void raise_undefined(const Value& v);

// Python operators on values: -x / +x, and the binary arithmetic operators.
Value unary_op(char op, const Value& v);
Value binary_op(BinOp op, const Value& l, const Value& r);

// markupsafe.escape of a string: & < > " ' become entities.
std::string html_escape(std::string_view s);

// Python's `fmt % args` for strings.
std::string percent_format(const std::string& fmt, const Value& args);

// The globals every template sees: range, dict, namespace, joiner, cycler, raise_exception,
// strftime_now. `now` fixes the time strftime_now formats.
DictData make_globals(const std::optional<std::tm>& now);

// Binding of call arguments to a signature, Python style.
struct ArgBinder {
  // names: parameter names in positional order. Throws on unknown or duplicate arguments.
  ArgBinder(std::string_view function, CallArgs& args, std::initializer_list<const char*> names);
  // The bound value of parameter i, or nullopt when not given.
  const std::optional<Value>& operator[](size_t i) const { return bound_[i]; }
  Value get(size_t i, Value fallback) const { return bound_[i] ? *bound_[i] : std::move(fallback); }
  const Value& required(size_t i) const;

 private:
  std::string function_;
  std::vector<const char*> names_;
  std::vector<std::optional<Value>> bound_;
};

}  // namespace slm::chat::jinja
