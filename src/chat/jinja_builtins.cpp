// Jinja2's default filters and tests, HF's tojson, and the template globals.
#include "chat/jinja_builtins.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <unordered_map>

#include "chat/jinja.h"
#include "chat/jinja_unicode.h"

namespace slm::chat::jinja {

// ------------------------------------------------------------------ argument binding

ArgBinder::ArgBinder(std::string_view function, CallArgs& args,
                     std::initializer_list<const char*> names)
    : function_(function), names_(names), bound_(names.size()) {
  if (args.args.size() > names_.size())
    fail("{}() takes at most {} argument(s) ({} given)", function_, names_.size(), args.args.size());
  for (size_t k = 0; k < args.args.size(); ++k) bound_[k] = args.args[k];
  for (auto& [key, value] : args.kwargs) {
    size_t idx = names_.size();
    for (size_t k = 0; k < names_.size(); ++k)
      if (key == names_[k]) idx = k;
    if (idx == names_.size()) fail("{}() got an unexpected keyword argument '{}'", function_, key);
    if (bound_[idx]) fail("{}() got multiple values for argument '{}'", function_, key);
    bound_[idx] = value;
  }
}

const Value& ArgBinder::required(size_t i) const {
  if (!bound_[i]) fail("{}() missing required argument '{}'", function_, names_[i]);
  return *bound_[i];
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  check_string_size(out.size());
  return out;
}

namespace {

using FilterFn = Value (*)(const Value&, CallArgs&);
using TestFn = bool (*)(const Value&, CallArgs&);

int64_t as_int(const Value& v, const char* what) {
  if (v.is_int()) return v.i();
  if (v.is_bool()) return v.b() ? 1 : 0;
  fail("'{}' object cannot be interpreted as an integer ({})", type_name(v), what);
}

// soft_str: str(value), keeping Markup strings.
Value soft_str(const Value& v) {
  if (v.is_string()) return v;
  return Value::string(to_str(v));
}

Value lower_if_string(const Value& v) {
  return v.is_string() ? Value::string(utf8::to_lower(v.str()), v.safe()) : v;
}

// Jinja's _prepare_attribute_parts: "a.0.b" -> ["a", 0, "b"].
ValueList attribute_parts(const Value& attribute) {
  if (attribute.is_none() || attribute.is_undefined()) return {};
  if (!attribute.is_string()) return {attribute};
  ValueList parts;
  const std::string& s = attribute.str();
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    const std::string part = s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits && part.size() < 19) {
      parts.push_back(Value::integer(std::stoll(part)));
    } else {
      parts.push_back(Value::string(part));
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

Value lookup_parts(Value item, const ValueList& parts) {
  for (const Value& p : parts) item = get_item(item, p);
  return item;
}

// make_attrgetter(attribute, postprocess=lower if lower, default=fallback)
struct AttrGetter {
  ValueList parts;
  bool lower = false;
  std::optional<Value> fallback;
  Value operator()(const Value& item) const {
    Value v = lookup_parts(item, parts);
    if (fallback && v.is_undefined()) v = *fallback;
    return lower ? lower_if_string(v) : v;
  }
};

// make_multi_attrgetter: comma separated attributes, compared as a list.
Value multi_key(const Value& item, const std::vector<ValueList>& parts, bool lower) {
  ValueList keys;
  for (const ValueList& p : parts) {
    Value v = lookup_parts(item, p);
    keys.push_back(lower ? lower_if_string(v) : v);
  }
  return Value::list(std::move(keys));
}

bool less_than(const Value& a, const Value& b) { return compare(a, b, "<") < 0; }

// Stable sort of items by keys (Python's sorted with key=, reverse=).
ValueList sorted_by(ValueList items, const ValueList& keys, bool reverse) {
  std::vector<size_t> idx(items.size());
  for (size_t k = 0; k < idx.size(); ++k) idx[k] = k;
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return reverse ? less_than(keys[b], keys[a]) : less_than(keys[a], keys[b]);
  });
  ValueList out;
  out.reserve(items.size());
  for (size_t k : idx) out.push_back(std::move(items[k]));
  return out;
}

Value call_test_by_name(const Value& name, const Value& item, const ValueList& args,
                        const std::vector<std::pair<std::string, Value>>& kwargs) {
  if (!name.is_string()) fail("test name must be a string");
  CallArgs a{args, kwargs};
  return Value::boolean(apply_test(name.str(), item, a));
}

// select/reject/selectattr/rejectattr.
Value select_impl(const Value& value, CallArgs& a, bool select, bool by_attr) {
  ValueList out;
  if (!truthy(value)) return Value::list({});
  size_t off = 0;
  std::optional<AttrGetter> getter;
  if (by_attr) {
    if (a.args.empty()) fail("Missing parameter for attribute name");
    getter = AttrGetter{attribute_parts(a.args[0]), false, std::nullopt};
    off = 1;
  }
  std::optional<Value> test_name;
  ValueList test_args;
  if (a.args.size() > off) {
    test_name = a.args[off];
    test_args.assign(a.args.begin() + static_cast<std::ptrdiff_t>(off + 1), a.args.end());
  }
  for (const Value& item : iterate(value)) {
    const Value subject = getter ? (*getter)(item) : item;
    const bool ok = test_name ? truthy(call_test_by_name(*test_name, subject, test_args, a.kwargs))
                              : truthy(subject);
    if (ok == select) out.push_back(item);
  }
  return Value::list(std::move(out));
}

std::optional<int64_t> parse_py_int(std::string s, int base) {
  s = utf8::strip(s, nullptr, true, true);
  bool neg = false;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (base == 0 || base == 16 || base == 8 || base == 2) {
    if (i + 1 < s.size() && s[i] == '0') {
      const char p = static_cast<char>(s[i + 1] | 0x20);
      const int pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
      if (pb && (base == 0 || base == pb)) {
        base = pb;
        i += 2;
        if (i < s.size() && s[i] == '_') ++i;
      }
    }
    if (base == 0) base = 10;
  }
  if (base < 2 || base > 36) fail("int() base must be >= 2 and <= 36, or 0");
  if (i >= s.size()) return std::nullopt;
  unsigned __int128 v = 0;
  bool prev_digit = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (!prev_digit || i + 1 >= s.size()) return std::nullopt;
      prev_digit = false;
      continue;
    }
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z') d = c - 'A' + 10;
    if (d < 0 || d >= base) return std::nullopt;
    v = v * static_cast<unsigned>(base) + static_cast<unsigned>(d);
    if (v > static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max()) + 1)
      fail("integer overflow (beyond 64 bits)");
    prev_digit = true;
  }
  if (!neg && v > static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max()))
    fail("integer overflow (beyond 64 bits)");
  return neg ? static_cast<int64_t>(0 - static_cast<uint64_t>(v)) : static_cast<int64_t>(v);
}

std::optional<double> parse_py_float(std::string s) {
  s = utf8::strip(s, nullptr, true, true);
  std::string t;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1])))
        return std::nullopt;
      continue;
    }
    t += s[i];
  }
  std::string low = utf8::to_lower(t);
  size_t sign = (!low.empty() && (low[0] == '+' || low[0] == '-')) ? 1 : 0;
  const std::string body = low.substr(sign);
  const double sgn = (sign && low[0] == '-') ? -1.0 : 1.0;
  if (body == "inf" || body == "infinity") return sgn * HUGE_VAL;
  if (body == "nan") return std::nan("");
  if (body.empty()) return std::nullopt;
  for (char c : body)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == '+' || c == '-'))
      return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return std::nullopt;
  return d;
}

double round_half_even(double x, int64_t precision) {
  if (!std::isfinite(x)) return x;
  if (precision > 300) return x;
  if (precision >= 0) {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), x);
    return std::strtod(buf, nullptr);
  }
  if (precision < -308) return std::copysign(0.0, x);
  const double scale = std::pow(10.0, static_cast<double>(-precision));
  const double y = x / scale;
  double r = std::nearbyint(y);  // default rounding mode: half to even
  return r * scale;
}

// ------------------------------------------------------------------ filters

Value f_abs(const Value& v, CallArgs& a) {
  ArgBinder b("abs", a, {});
  if (v.is_int()) return Value::integer(v.i() < 0 ? checked_sub(0, v.i()) : v.i());
  if (v.is_bool()) return Value::integer(v.b() ? 1 : 0);
  if (v.is_float()) return Value::real(std::fabs(v.f()));
  fail("bad operand type for abs(): '{}'", type_name(v));
}

Value f_attr(const Value& v, CallArgs& a) {
  ArgBinder b("attr", a, {"name"});
  const Value& name = b.required(0);
  if (!name.is_string()) fail("attribute name must be a string");
  if (v.is_undefined()) raise_undefined(v);
  return get_python_attr(v, name.str());
}

Value f_batch(const Value& v, CallArgs& a) {
  ArgBinder b("batch", a, {"linecount", "fill_with"});
  const int64_t n = as_int(b.required(0), "linecount");
  if (n <= 0) fail("batch size must be positive");
  const Value fill = b.get(1, Value::none());
  if (!fill.is_none() && n > 100000) fail("batch size too large");
  ValueList out, tmp;
  for (const Value& item : iterate(v)) {
    if (static_cast<int64_t>(tmp.size()) == n) {
      out.push_back(Value::list(std::move(tmp)));
      tmp.clear();
    }
    tmp.push_back(item);
  }
  if (!tmp.empty()) {
    if (!fill.is_none())
      while (static_cast<int64_t>(tmp.size()) < n) tmp.push_back(fill);
    out.push_back(Value::list(std::move(tmp)));
  }
  return Value::list(std::move(out));
}

Value f_capitalize(const Value& v, CallArgs& a) {
  ArgBinder b("capitalize", a, {});
  return Value::string(utf8::capitalize(to_str(v)), v.safe());
}

Value f_center(const Value& v, CallArgs& a) {
  ArgBinder b("center", a, {"width"});
  CallArgs m{{b.get(0, Value::integer(80))}, {}};
  const Value s = soft_str(v);
  CallArgs copy = m;
  return get_attr(s, "center").function().fn(copy);
}

Value f_default(const Value& v, CallArgs& a) {
  ArgBinder b("default", a, {"default_value", "boolean"});
  const Value dflt = b.get(0, Value::string(""));
  const bool boolean = truthy(b.get(1, Value::boolean(false)));
  if (v.is_undefined() || (boolean && !truthy(v))) return dflt;
  return v;
}

Value f_dictsort(const Value& v, CallArgs& a) {
  ArgBinder b("dictsort", a, {"case_sensitive", "by", "reverse"});
  const bool cs = truthy(b.get(0, Value::boolean(false)));
  const Value by = b.get(1, Value::string("key"));
  const bool reverse = truthy(b.get(2, Value::boolean(false)));
  size_t pos = 0;
  if (by.is_string() && by.str() == "key") pos = 0;
  else if (by.is_string() && by.str() == "value") pos = 1;
  else fail("You can only sort by either \"key\" or \"value\"");
  if (!v.is_dict()) fail("dictsort requires a mapping, got {}", type_name(v));
  ValueList items, keys;
  for (const auto& [k, x] : v.dict().entries) {
    items.push_back(Value::tuple({k, x}));
    const Value& key = pos == 0 ? k : x;
    keys.push_back(cs ? key : lower_if_string(key));
  }
  return Value::list(sorted_by(std::move(items), keys, reverse));
}

Value f_escape(const Value& v, CallArgs& a) {
  ArgBinder b("escape", a, {});
  if (v.is_string() && v.safe()) return v;
  return Value::string(html_escape(to_str(v)), true);
}

Value f_forceescape(const Value& v, CallArgs& a) {
  ArgBinder b("forceescape", a, {});
  return Value::string(html_escape(to_str(v)), true);
}

Value f_filesizeformat(const Value& v, CallArgs& a) {
  ArgBinder b("filesizeformat", a, {"binary"});
  const bool binary = truthy(b.get(0, Value::boolean(false)));
  double bytes = 0;
  if (v.is_number()) bytes = v.as_double();
  else if (v.is_string()) {
    auto d = parse_py_float(v.str());
    if (!d) fail("could not convert string to float: {}", string_repr(v.str()));
    bytes = *d;
  } else {
    fail("float() argument must be a string or a real number, not '{}'", type_name(v));
  }
  const double base = binary ? 1024 : 1000;
  static const char* kDec[] = {"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
  static const char* kBin[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
  if (bytes == 1) return Value::string("1 Byte");
  if (bytes < base) return Value::string(fmt::format("{} Bytes", static_cast<int64_t>(bytes)));
  double unit = base;
  for (int i = 0; i < 8; ++i) {
    unit = std::pow(base, i + 2);
    if (bytes < unit || i == 7)
      return Value::string(fmt::format("{:.1f} {}", base * bytes / unit, binary ? kBin[i] : kDec[i]));
  }
  return Value::string("");
}

Value f_first(const Value& v, CallArgs& a) {
  ArgBinder b("first", a, {});
  if (v.is_string()) {
    if (v.str().empty()) return Value::undefined("No first item, sequence was empty.");
    char32_t c = 0;
    const size_t n = utf8::decode(v.str(), 0, c);
    return Value::string(v.str().substr(0, n), v.safe());
  }
  if (v.is_sequence()) {
    if (v.items().empty()) return Value::undefined("No first item, sequence was empty.");
    return v.items().front();
  }
  ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value f_last(const Value& v, CallArgs& a) {
  ArgBinder b("last", a, {});
  if (v.is_sequence()) {
    if (v.items().empty()) return Value::undefined("No last item, sequence was empty.");
    return v.items().back();
  }
  ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_float(const Value& v, CallArgs& a) {
  ArgBinder b("float", a, {"default"});
  const Value dflt = b.get(0, Value::real(0.0));
  if (v.is_undefined()) raise_undefined(v);
  if (v.is_number()) return Value::real(v.as_double());
  if (v.is_string()) {
    if (auto d = parse_py_float(v.str())) return Value::real(*d);
  }
  return dflt;
}

Value f_format(const Value& v, CallArgs& a) {
  if (!a.args.empty() && !a.kwargs.empty())
    fail("can't handle positional and keyword arguments at the same time");
  Value args;
  if (!a.kwargs.empty()) {
    DictData d;
    for (auto& [k, x] : a.kwargs) d.set(Value::string(k), x);
    args = Value::dict(std::move(d));
  } else {
    args = Value::tuple(a.args);
  }
  const Value s = soft_str(v);
  return Value::string(percent_format(s.str(), args), s.safe());
}

Value f_groupby(const Value& v, CallArgs& a) {
  ArgBinder b("groupby", a, {"attribute", "default", "case_sensitive"});
  const ValueList parts = attribute_parts(b.required(0));
  const Value dflt = b.get(1, Value::none());
  const bool cs = truthy(b.get(2, Value::boolean(false)));
  const std::optional<Value> fallback = dflt.is_none() ? std::nullopt : std::optional<Value>(dflt);
  const AttrGetter key_of{parts, !cs, fallback};
  const AttrGetter output_of{parts, false, fallback};
  ValueList items = iterate(v);
  ValueList keys;
  for (const Value& item : items) keys.push_back(key_of(item));
  ValueList sorted = sorted_by(items, keys, false);
  ValueList out;
  ValueList group;
  Value group_key;
  for (const Value& item : sorted) {
    Value k = key_of(item);
    if (!group.empty() && !equals(k, group_key)) {
      Value grouper = cs ? group_key : output_of(group.front());
      out.push_back(Value::tuple({grouper, Value::list(std::move(group))}));
      group.clear();
    }
    if (group.empty()) group_key = k;
    group.push_back(item);
  }
  if (!group.empty()) {
    Value grouper = cs ? group_key : output_of(group.front());
    out.push_back(Value::tuple({grouper, Value::list(std::move(group))}));
  }
  return Value::list(std::move(out));
}

Value f_indent(const Value& v, CallArgs& a) {
  ArgBinder b("indent", a, {"width", "first", "blank"});
  const Value width = b.get(0, Value::integer(4));
  const bool first = truthy(b.get(1, Value::boolean(false)));
  const bool blank = truthy(b.get(2, Value::boolean(false)));
  std::string indention;
  if (width.is_string()) {
    indention = width.str();
  } else {
    const int64_t n = as_int(width, "width");
    if (n > 10000) fail("indent width too large");
    indention.assign(static_cast<size_t>(std::max<int64_t>(0, n)), ' ');
  }
  std::string s = to_str(v) + "\n";
  // str.splitlines()
  CallArgs none;
  const ValueList lines = get_attr(Value::string(s), "splitlines").function().fn(none).items();
  std::string rv;
  if (blank) {
    for (size_t k = 0; k < lines.size(); ++k) {
      if (k) rv += "\n" + indention;
      rv += lines[k].str();
      check_string_size(rv.size());
    }
  } else {
    rv = lines.empty() ? std::string() : lines[0].str();
    for (size_t k = 1; k < lines.size(); ++k) {
      rv += "\n";
      if (!lines[k].str().empty()) rv += indention;
      rv += lines[k].str();
      check_string_size(rv.size());
    }
  }
  if (first) rv = indention + rv;
  return Value::string(std::move(rv), v.safe());
}

Value f_int(const Value& v, CallArgs& a) {
  ArgBinder b("int", a, {"default", "base"});
  const Value dflt = b.get(0, Value::integer(0));
  const int64_t base = as_int(b.get(1, Value::integer(10)), "base");
  if (v.is_undefined()) raise_undefined(v);
  if (v.is_int()) return v;
  if (v.is_bool()) return Value::integer(v.b() ? 1 : 0);
  auto from_double = [&](double d) -> Value {
    if (std::isnan(d)) return dflt;
    if (std::isinf(d)) fail("cannot convert float infinity to integer");
    if (d >= 9223372036854775808.0 || d < -9223372036854775808.0) fail("integer overflow (beyond 64 bits)");
    return Value::integer(static_cast<int64_t>(d));
  };
  if (v.is_float()) return from_double(v.f());
  if (v.is_string()) {
    if (auto i = parse_py_int(v.str(), static_cast<int>(base))) return Value::integer(*i);
    if (auto d = parse_py_float(v.str())) {
      if (std::isinf(*d) || std::isnan(*d)) return dflt;
      return from_double(*d);
    }
  }
  return dflt;
}

Value f_items(const Value& v, CallArgs& a) {
  ArgBinder b("items", a, {});
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) fail("Can only get item pairs from a mapping.");
  ValueList out;
  for (const auto& [k, x] : v.dict().entries) out.push_back(Value::tuple({k, x}));
  return Value::list(std::move(out));
}

Value f_join(const Value& v, CallArgs& a) {
  ArgBinder b("join", a, {"d", "attribute"});
  const std::string sep = to_str(b.get(0, Value::string("")));
  std::optional<AttrGetter> getter;
  if (b[1] && !b[1]->is_none()) getter = AttrGetter{attribute_parts(*b[1]), false, std::nullopt};
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!first) out += sep;
    first = false;
    const Value x = getter ? (*getter)(item) : item;
    out += x.is_string() ? x.str() : to_str(x);
    check_string_size(out.size());
  }
  return Value::string(std::move(out));
}

Value f_length(const Value& v, CallArgs& a) {
  ArgBinder b("length", a, {});
  return Value::integer(length(v));
}

Value f_list(const Value& v, CallArgs& a) {
  ArgBinder b("list", a, {});
  return Value::list(iterate(v));
}

Value f_lower(const Value& v, CallArgs& a) {
  ArgBinder b("lower", a, {});
  return Value::string(utf8::to_lower(to_str(v)), v.safe());
}

Value f_upper(const Value& v, CallArgs& a) {
  ArgBinder b("upper", a, {});
  return Value::string(utf8::to_upper(to_str(v)), v.safe());
}

Value f_map(const Value& v, CallArgs& a) {
  if (!truthy(v)) return Value::list({});
  ValueList out;
  const auto attr_it = std::find_if(a.kwargs.begin(), a.kwargs.end(),
                                    [](const auto& kv) { return kv.first == "attribute"; });
  if (a.args.empty() && attr_it != a.kwargs.end()) {
    std::optional<Value> dflt;
    for (auto& [k, x] : a.kwargs) {
      if (k == "attribute") continue;
      if (k == "default") {
        if (!x.is_none()) dflt = x;
        continue;
      }
      fail("Unexpected keyword argument '{}'", k);
    }
    const AttrGetter getter{attribute_parts(attr_it->second), false, dflt};
    for (const Value& item : iterate(v)) out.push_back(getter(item));
    return Value::list(std::move(out));
  }
  if (a.args.empty()) fail("map requires a filter argument");
  if (!a.args[0].is_string()) fail("map filter name must be a string");
  const std::string name = a.args[0].str();
  const ValueList rest(a.args.begin() + 1, a.args.end());
  for (const Value& item : iterate(v)) {
    CallArgs fa{rest, a.kwargs};
    out.push_back(apply_filter(name, item, fa));
  }
  return Value::list(std::move(out));
}

Value min_max(const Value& v, CallArgs& a, bool max, const char* name) {
  ArgBinder b(name, a, {"case_sensitive", "attribute"});
  const bool cs = truthy(b.get(0, Value::boolean(false)));
  const AttrGetter key_of{attribute_parts(b.get(1, Value::none())), !cs, std::nullopt};
  const ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = key_of(items[0]);
  for (size_t k = 1; k < items.size(); ++k) {
    Value key = key_of(items[k]);
    if (max ? less_than(best_key, key) : less_than(key, best_key)) {
      best = k;
      best_key = std::move(key);
    }
  }
  return items[best];
}
Value f_max(const Value& v, CallArgs& a) { return min_max(v, a, true, "max"); }
Value f_min(const Value& v, CallArgs& a) { return min_max(v, a, false, "min"); }

Value f_select(const Value& v, CallArgs& a) { return select_impl(v, a, true, false); }
Value f_reject(const Value& v, CallArgs& a) { return select_impl(v, a, false, false); }
Value f_selectattr(const Value& v, CallArgs& a) { return select_impl(v, a, true, true); }
Value f_rejectattr(const Value& v, CallArgs& a) { return select_impl(v, a, false, true); }

Value f_replace(const Value& v, CallArgs& a) {
  ArgBinder b("replace", a, {"old", "new", "count"});
  const Value count = b.get(2, Value::none());
  CallArgs m{{Value::string(to_str(b.required(0))), Value::string(to_str(b.required(1))),
              count.is_none() ? Value::integer(-1) : count},
             {}};
  return get_attr(Value::string(to_str(v)), "replace").function().fn(m);
}

Value f_reverse(const Value& v, CallArgs& a) {
  ArgBinder b("reverse", a, {});
  if (v.is_string()) {
    CallArgs none;
    return get_slice(v, Value::none(), Value::none(), Value::integer(-1));
  }
  ValueList items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_round(const Value& v, CallArgs& a) {
  ArgBinder b("round", a, {"precision", "method"});
  const int64_t precision = as_int(b.get(0, Value::integer(0)), "precision");
  const Value method = b.get(1, Value::string("common"));
  const std::string m = method.is_string() ? method.str() : "";
  if (m != "common" && m != "ceil" && m != "floor") fail("method must be common, ceil or floor");
  if (v.is_undefined()) raise_undefined(v);
  if (!v.is_number()) fail("type {} doesn't define __round__ method", type_name(v));
  if (m == "common") {
    if (v.is_int() || v.is_bool()) {
      const int64_t x = v.is_int() ? v.i() : v.b();
      if (precision >= 0) return Value::integer(x);
      if (precision < -18) return Value::integer(0);
      int64_t scale = 1;
      for (int64_t k = 0; k < -precision; ++k) scale *= 10;
      int64_t q = x / scale;
      int64_t r = x % scale;
      if (r < 0) {
        r += scale;
        --q;
      }
      if (2 * r > scale || (2 * r == scale && (q & 1))) ++q;
      return Value::integer(checked_mul(q, scale));
    }
    return Value::real(round_half_even(v.f(), precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  const double r = m == "ceil" ? std::ceil(x) : std::floor(x);
  return Value::real(r / scale);
}

Value f_safe(const Value& v, CallArgs& a) {
  ArgBinder b("safe", a, {});
  return Value::string(v.is_string() ? v.str() : to_str(v), true);
}

Value f_slice(const Value& v, CallArgs& a) {
  ArgBinder b("slice", a, {"slices", "fill_with"});
  const int64_t slices = as_int(b.required(0), "slices");
  if (slices <= 0) fail("slices must be positive");
  const Value fill = b.get(1, Value::none());
  const ValueList seq = iterate(v);
  const auto len = static_cast<int64_t>(seq.size());
  const int64_t per = len / slices;
  const int64_t extra = len % slices;
  int64_t offset = 0;
  ValueList out;
  for (int64_t n = 0; n < slices && n < 100000; ++n) {
    const int64_t start = offset + n * per;
    if (n < extra) ++offset;
    const int64_t end = offset + (n + 1) * per;
    ValueList tmp(seq.begin() + start, seq.begin() + end);
    if (!fill.is_none() && n >= extra) tmp.push_back(fill);
    out.push_back(Value::list(std::move(tmp)));
  }
  return Value::list(std::move(out));
}

Value f_sort(const Value& v, CallArgs& a) {
  ArgBinder b("sort", a, {"reverse", "case_sensitive", "attribute"});
  const bool reverse = truthy(b.get(0, Value::boolean(false)));
  const bool cs = truthy(b.get(1, Value::boolean(false)));
  const Value attribute = b.get(2, Value::none());
  std::vector<ValueList> parts;
  if (attribute.is_string()) {
    const std::string& s = attribute.str();
    size_t start = 0;
    while (true) {
      const size_t comma = s.find(',', start);
      parts.push_back(attribute_parts(Value::string(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start))));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else {
    parts.push_back(attribute_parts(attribute));
  }
  ValueList items = iterate(v);
  ValueList keys;
  keys.reserve(items.size());
  for (const Value& item : items) keys.push_back(multi_key(item, parts, !cs));
  return Value::list(sorted_by(std::move(items), keys, reverse));
}

Value f_string(const Value& v, CallArgs& a) {
  ArgBinder b("string", a, {});
  return soft_str(v);
}

std::string html_unescape(const std::string& s) {
  static const std::pair<const char*, const char*> kEntities[] = {
      {"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"}, {"nbsp", "\xC2\xA0"}};
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const size_t semi = s.find(';', i);
    if (semi == std::string::npos || semi - i > 10) {
      out += s[i];
      continue;
    }
    const std::string name = s.substr(i + 1, semi - i - 1);
    bool done = false;
    if (!name.empty() && name[0] == '#') {
      const bool hex = name.size() > 1 && (name[1] == 'x' || name[1] == 'X');
      const std::string digits = name.substr(hex ? 2 : 1);
      char32_t cp = 0;
      bool ok = !digits.empty();
      for (char c : digits) {
        const int d = (c >= '0' && c <= '9') ? c - '0'
                      : (hex && c >= 'a' && c <= 'f') ? c - 'a' + 10
                      : (hex && c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                       : -1;
        if (d < 0 || cp > 0x10FFFF) ok = false;
        else cp = cp * (hex ? 16 : 10) + static_cast<char32_t>(d);
      }
      if (ok && cp <= 0x10FFFF) {
        utf8::append(out, cp);
        done = true;
      }
    } else {
      for (const auto& [n, rep] : kEntities) {
        if (name == n) {
          out += rep;
          done = true;
        }
      }
    }
    if (done) {
      i = semi;
    } else {
      out += s[i];
    }
  }
  return out;
}

Value f_striptags(const Value& v, CallArgs& a) {
  ArgBinder b("striptags", a, {});
  std::string s = to_str(v);
  for (size_t start; (start = s.find("<!--")) != std::string::npos;) {
    const size_t end = s.find("-->", start);
    if (end == std::string::npos) break;
    s.erase(start, end + 3 - start);
  }
  for (size_t start; (start = s.find('<')) != std::string::npos;) {
    const size_t end = s.find('>', start);
    if (end == std::string::npos) break;
    s.erase(start, end + 1 - start);
  }
  CallArgs none;
  const ValueList words = get_attr(Value::string(s), "split").function().fn(none).items();
  std::string joined;
  for (size_t k = 0; k < words.size(); ++k) {
    if (k) joined += ' ';
    joined += words[k].str();
  }
  return Value::string(html_unescape(joined));
}

Value f_sum(const Value& v, CallArgs& a) {
  ArgBinder b("sum", a, {"attribute", "start"});
  Value total = b.get(1, Value::integer(0));
  std::optional<AttrGetter> getter;
  if (b[0] && !b[0]->is_none()) getter = AttrGetter{attribute_parts(*b[0]), false, std::nullopt};
  for (const Value& item : iterate(v)) total = binary_op(BinOp::Add, total, getter ? (*getter)(item) : item);
  return total;
}

Value f_title(const Value& v, CallArgs& a) {
  ArgBinder b("title", a, {});
  // Jinja splits on runs of [-\s({[<] and title-cases each chunk's first character.
  const std::string s = to_str(v);
  std::string out;
  size_t i = 0;
  auto is_sep = [&](size_t k, size_t& n) {
    char32_t c = 0;
    n = utf8::decode(s, k, c);
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || utf8::is_space(c);
  };
  while (i < s.size()) {
    size_t n = 0;
    size_t j = i;
    const bool sep = is_sep(i, n);
    while (j < s.size()) {
      size_t m = 0;
      if (is_sep(j, m) != sep) break;
      j += m;
    }
    const std::string chunk = s.substr(i, j - i);
    if (sep) {
      out += chunk;
    } else {
      char32_t c = 0;
      const size_t first = utf8::decode(chunk, 0, c);
      out += utf8::to_upper(chunk.substr(0, first));
      out += utf8::to_lower(chunk.substr(first));
    }
    i = j;
  }
  return Value::string(std::move(out), v.safe());
}

Value f_tojson(const Value& v, CallArgs& a) {
  ArgBinder b("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions o;
  o.ensure_ascii = truthy(b.get(0, Value::boolean(false)));
  const Value indent = b.get(1, Value::none());
  if (indent.is_string()) {
    o.indent = indent.str();
  } else if (indent.is_int() || indent.is_bool()) {
    const int64_t n = indent.is_int() ? indent.i() : indent.b();
    if (n > 10000) fail("indent too large");
    o.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, n)), ' ');
  } else if (!indent.is_none()) {
    fail("can't multiply sequence by non-int of type '{}'", type_name(indent));
  }
  const Value seps = b.get(2, Value::none());
  if (seps.is_none()) {
    o.item_sep = o.indent ? "," : ", ";
    o.key_sep = ": ";
  } else {
    const ValueList parts = iterate(seps);
    if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string())
      fail("separators must be a pair of strings");
    o.item_sep = parts[0].str();
    o.key_sep = parts[1].str();
  }
  o.sort_keys = truthy(b.get(3, Value::boolean(false)));
  return Value::string(to_json(v, o));
}

Value f_trim(const Value& v, CallArgs& a) {
  ArgBinder b("trim", a, {"chars"});
  const Value chars = b.get(0, Value::none());
  const std::string s = to_str(v);
  if (chars.is_none()) return Value::string(utf8::strip(s, nullptr, true, true), v.safe());
  if (!chars.is_string()) fail("strip arg must be None or str");
  const std::string_view cs(chars.str());
  return Value::string(utf8::strip(s, &cs, true, true), v.safe());
}

Value f_truncate(const Value& v, CallArgs& a) {
  ArgBinder b("truncate", a, {"length", "killwords", "end", "leeway"});
  const int64_t len = as_int(b.get(0, Value::integer(255)), "length");
  const bool killwords = truthy(b.get(1, Value::boolean(false)));
  const std::string end = to_str(b.get(2, Value::string("...")));
  const int64_t leeway = as_int(b.get(3, Value::integer(5)), "leeway");
  const auto end_len = static_cast<int64_t>(utf8::length(end));
  if (len < end_len) fail("expected length >= {}, got {}", end_len, len);
  if (leeway < 0) fail("expected leeway >= 0, got {}", leeway);
  const std::string s = to_str(v);
  const std::vector<size_t> offs = utf8::char_offsets(s);
  const auto n = static_cast<int64_t>(offs.size() - 1);
  if (n <= len + leeway) return Value::string(s);
  const std::string head = s.substr(0, offs[static_cast<size_t>(len - end_len)]);
  if (killwords) return Value::string(head + end);
  const size_t space = head.rfind(' ');
  return Value::string((space == std::string::npos ? head : head.substr(0, space)) + end);
}

Value f_unique(const Value& v, CallArgs& a) {
  ArgBinder b("unique", a, {"case_sensitive", "attribute"});
  const bool cs = truthy(b.get(0, Value::boolean(false)));
  const AttrGetter key_of{attribute_parts(b.get(1, Value::none())), !cs, std::nullopt};
  std::unordered_map<std::string, bool> seen;
  ValueList out;
  for (const Value& item : iterate(v)) {
    if (seen.emplace(hash_key(key_of(item)), true).second) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_wordcount(const Value& v, CallArgs& a) {
  ArgBinder b("wordcount", a, {});
  const std::string s = to_str(v);
  int64_t count = 0;
  bool in_word = false;
  char32_t c = 0;
  for (size_t i = 0; i < s.size();) {
    i += utf8::decode(s, i, c);
    const bool w = c == '_' || utf8::is_alpha(c) || utf8::is_digit(c);
    if (w && !in_word) ++count;
    in_word = w;
  }
  return Value::integer(count);
}

Value f_unsupported(const Value&, CallArgs&) { fail("this filter is not supported"); }

const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const std::unordered_map<std::string_view, FilterFn> table = {
      {"abs", f_abs},
      {"attr", f_attr},
      {"batch", f_batch},
      {"capitalize", f_capitalize},
      {"center", f_center},
      {"count", f_length},
      {"d", f_default},
      {"default", f_default},
      {"dictsort", f_dictsort},
      {"e", f_escape},
      {"escape", f_escape},
      {"filesizeformat", f_filesizeformat},
      {"first", f_first},
      {"float", f_float},
      {"forceescape", f_forceescape},
      {"format", f_format},
      {"groupby", f_groupby},
      {"indent", f_indent},
      {"int", f_int},
      {"items", f_items},
      {"join", f_join},
      {"last", f_last},
      {"length", f_length},
      {"list", f_list},
      {"lower", f_lower},
      {"map", f_map},
      {"max", f_max},
      {"min", f_min},
      {"pprint", f_unsupported},
      {"random", f_unsupported},
      {"reject", f_reject},
      {"rejectattr", f_rejectattr},
      {"replace", f_replace},
      {"reverse", f_reverse},
      {"round", f_round},
      {"safe", f_safe},
      {"select", f_select},
      {"selectattr", f_selectattr},
      {"slice", f_slice},
      {"sort", f_sort},
      {"string", f_string},
      {"striptags", f_striptags},
      {"sum", f_sum},
      {"title", f_title},
      {"tojson", f_tojson},
      {"trim", f_trim},
      {"truncate", f_truncate},
      {"unique", f_unique},
      {"upper", f_upper},
      {"urlencode", f_unsupported},
      {"urlize", f_unsupported},
      {"wordcount", f_wordcount},
      {"wordwrap", f_unsupported},
      {"xmlattr", f_unsupported},
  };
  return table;
}

// ------------------------------------------------------------------ tests

const Value& one_arg(CallArgs& a, const char* name) {
  if (a.args.size() != 1 || !a.kwargs.empty()) fail("test '{}' takes exactly one argument", name);
  return a.args[0];
}

void no_args(CallArgs& a, const char* name) {
  if (!a.args.empty() || !a.kwargs.empty()) fail("test '{}' takes no arguments", name);
}

bool t_odd(const Value& v, CallArgs& a) {
  no_args(a, "odd");
  return equals(binary_op(BinOp::Mod, v, Value::integer(2)), Value::integer(1));
}
bool t_even(const Value& v, CallArgs& a) {
  no_args(a, "even");
  return equals(binary_op(BinOp::Mod, v, Value::integer(2)), Value::integer(0));
}
bool t_divisibleby(const Value& v, CallArgs& a) {
  return equals(binary_op(BinOp::Mod, v, one_arg(a, "divisibleby")), Value::integer(0));
}
bool t_defined(const Value& v, CallArgs& a) { no_args(a, "defined"); return !v.is_undefined(); }
bool t_undefined(const Value& v, CallArgs& a) { no_args(a, "undefined"); return v.is_undefined(); }
bool t_none(const Value& v, CallArgs& a) { no_args(a, "none"); return v.is_none(); }
bool t_boolean(const Value& v, CallArgs& a) { no_args(a, "boolean"); return v.is_bool(); }
bool t_false(const Value& v, CallArgs& a) { no_args(a, "false"); return v.is_bool() && !v.b(); }
bool t_true(const Value& v, CallArgs& a) { no_args(a, "true"); return v.is_bool() && v.b(); }
bool t_integer(const Value& v, CallArgs& a) { no_args(a, "integer"); return v.is_int(); }
bool t_float(const Value& v, CallArgs& a) { no_args(a, "float"); return v.is_float(); }
bool t_number(const Value& v, CallArgs& a) { no_args(a, "number"); return v.is_number(); }
bool t_string(const Value& v, CallArgs& a) { no_args(a, "string"); return v.is_string(); }
bool t_mapping(const Value& v, CallArgs& a) { no_args(a, "mapping"); return v.is_dict(); }
bool t_lower(const Value& v, CallArgs& a) {
  no_args(a, "lower");
  CallArgs none;
  return truthy(get_attr(Value::string(to_str(v)), "islower").function().fn(none));
}
bool t_upper(const Value& v, CallArgs& a) {
  no_args(a, "upper");
  CallArgs none;
  return truthy(get_attr(Value::string(to_str(v)), "isupper").function().fn(none));
}
bool t_sequence(const Value& v, CallArgs& a) {
  no_args(a, "sequence");
  return v.is_string() || v.is_sequence() || v.is_dict() || v.is_undefined();
}
bool t_iterable(const Value& v, CallArgs& a) {
  no_args(a, "iterable");
  return v.is_string() || v.is_sequence() || v.is_dict() || v.is_undefined() ||
         (v.is_object() && v.object().type_name == "LoopContext");
}
bool t_callable(const Value& v, CallArgs& a) {
  no_args(a, "callable");
  return v.is_callable() || v.is_undefined();
}
bool t_sameas(const Value& v, CallArgs& a) {
  const Value& other = one_arg(a, "sameas");
  if (v.type() != other.type()) return false;
  switch (v.type()) {
    case Value::Type::None:
    case Value::Type::Undefined: return v.is_none() || v.identity() == other.identity();
    case Value::Type::Bool: return v.b() == other.b();
    case Value::Type::Int: return v.i() == other.i() && v.i() >= -5 && v.i() <= 256;
    default: return v.identity() != nullptr && v.identity() == other.identity();
  }
}
bool t_escaped(const Value& v, CallArgs& a) { no_args(a, "escaped"); return v.is_string() && v.safe(); }
bool t_in(const Value& v, CallArgs& a) { return contains(one_arg(a, "in"), v); }
bool t_eq(const Value& v, CallArgs& a) { return equals(v, one_arg(a, "eq")); }
bool t_ne(const Value& v, CallArgs& a) { return !equals(v, one_arg(a, "ne")); }
bool ordered(const Value& v, const Value& w, const char* op) {
  if (v.is_undefined()) raise_undefined(v);
  if (w.is_undefined()) raise_undefined(w);
  return compare(v, w, op) < 0;
}
bool t_lt(const Value& v, CallArgs& a) { return ordered(v, one_arg(a, "lt"), "<"); }
bool t_gt(const Value& v, CallArgs& a) { const Value& w = one_arg(a, "gt"); return ordered(w, v, ">"); }
bool t_le(const Value& v, CallArgs& a) {
  const Value& w = one_arg(a, "le");
  if (v.is_undefined()) raise_undefined(v);
  if (w.is_undefined()) raise_undefined(w);
  return compare(v, w, "<=") <= 0;
}
bool t_ge(const Value& v, CallArgs& a) {
  const Value& w = one_arg(a, "ge");
  if (v.is_undefined()) raise_undefined(v);
  if (w.is_undefined()) raise_undefined(w);
  return compare(v, w, ">=") >= 0;
}
bool t_filter(const Value& v, CallArgs& a) {
  no_args(a, "filter");
  return v.is_string() && is_known_filter(v.str());
}
bool t_test(const Value& v, CallArgs& a) {
  no_args(a, "test");
  return v.is_string() && is_known_test(v.str());
}

const std::unordered_map<std::string_view, TestFn>& tests() {
  static const std::unordered_map<std::string_view, TestFn> table = {
      {"odd", t_odd},         {"even", t_even},           {"divisibleby", t_divisibleby},
      {"defined", t_defined}, {"undefined", t_undefined}, {"none", t_none},
      {"boolean", t_boolean}, {"false", t_false},         {"true", t_true},
      {"integer", t_integer}, {"float", t_float},         {"number", t_number},
      {"string", t_string},   {"mapping", t_mapping},     {"lower", t_lower},
      {"upper", t_upper},     {"sequence", t_sequence},   {"iterable", t_iterable},
      {"callable", t_callable}, {"sameas", t_sameas},     {"escaped", t_escaped},
      {"in", t_in},           {"==", t_eq},               {"eq", t_eq},
      {"equalto", t_eq},      {"!=", t_ne},               {"ne", t_ne},
      {"<", t_lt},            {"lt", t_lt},               {"lessthan", t_lt},
      {">", t_gt},            {"gt", t_gt},               {"greaterthan", t_gt},
      {"<=", t_le},           {"le", t_le},               {">=", t_ge},
      {"ge", t_ge},           {"filter", t_filter},       {"test", t_test},
  };
  return table;
}

// ------------------------------------------------------------------ globals

Value g_range(CallArgs& a) {
  if (!a.kwargs.empty()) fail("range() takes no keyword arguments");
  if (a.args.empty() || a.args.size() > 3)
    fail("range expected at most 3 arguments, got {}", a.args.size());
  int64_t start = 0, stop = 0, step = 1;
  if (a.args.size() == 1) {
    stop = as_int(a.args[0], "range");
  } else {
    start = as_int(a.args[0], "range");
    stop = as_int(a.args[1], "range");
    if (a.args.size() == 3) step = as_int(a.args[2], "range");
  }
  if (step == 0) fail("range() arg 3 must not be zero");
  __int128 n = 0;
  const __int128 s = start, e = stop, st = step;
  if (st > 0 && s < e) n = (e - s - 1) / st + 1;
  if (st < 0 && s > e) n = (s - e - 1) / (-st) + 1;
  if (n > 100000)
    fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  ValueList out;
  out.reserve(static_cast<size_t>(n));
  for (__int128 k = 0; k < n; ++k) out.push_back(Value::integer(static_cast<int64_t>(s + k * st)));
  return Value::list(std::move(out));
}

Value g_dict(CallArgs& a) {
  if (a.args.size() > 1) fail("dict expected at most 1 argument, got {}", a.args.size());
  DictData d;
  if (!a.args.empty()) {
    const Value& init = a.args[0];
    if (init.is_dict()) {
      d = init.dict();
    } else {
      for (const Value& pair : iterate(init)) {
        const ValueList kv = iterate(pair);
        if (kv.size() != 2)
          fail("dictionary update sequence element has length {}; 2 is required", kv.size());
        d.set(kv[0], kv[1]);
      }
    }
  }
  for (auto& [k, v] : a.kwargs) d.set(Value::string(k), v);
  return Value::dict(std::move(d));
}

Value g_joiner(CallArgs& a) {
  ArgBinder b("joiner", a, {"sep"});
  const std::string sep = to_str(b.get(0, Value::string(", ")));
  auto used = std::make_shared<bool>(false);
  auto o = std::make_shared<ObjectData>();
  o->type_name = "Joiner";
  o->call = [sep, used](CallArgs&) {
    if (!*used) {
      *used = true;
      return Value::string("");
    }
    return Value::string(sep);
  };
  return Value::object(std::move(o));
}

Value g_cycler(CallArgs& a) {
  if (a.args.empty()) fail("at least one item has to be provided");
  auto o = std::make_shared<ObjectData>();
  o->type_name = "Cycler";
  auto items = std::make_shared<const ValueList>(a.args);
  auto pos = std::make_shared<size_t>(0);
  std::weak_ptr<ObjectData> weak = o;
  o->attrs.set(Value::string("items"), Value::list(*items));
  o->attrs.set(Value::string("current"), (*items)[0]);
  o->attrs.set(Value::string("next"),
               make_function("next", [items, pos, weak](CallArgs&) {
                 const Value rv = (*items)[*pos];
                 *pos = (*pos + 1) % items->size();
                 if (auto self = weak.lock()) self->attrs.set(Value::string("current"), (*items)[*pos]);
                 return rv;
               }, FunctionData::Kind::Method));
  o->attrs.set(Value::string("reset"),
               make_function("reset", [items, pos, weak](CallArgs&) {
                 *pos = 0;
                 if (auto self = weak.lock()) self->attrs.set(Value::string("current"), (*items)[0]);
                 return Value::none();
               }, FunctionData::Kind::Method));
  return Value::object(std::move(o));
}

Value g_raise_exception(CallArgs& a) {
  ArgBinder b("raise_exception", a, {"message"});
  throw RaiseException(to_str(b.required(0)));
}

std::string format_time(const std::string& format, const std::tm& tm, int micros) {
  if (format.size() > 1000) fail("strftime format too long");
  // Python handles %f, %z and %Z itself (naive datetimes give "" for %z and %Z).
  std::string f;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && i + 1 < format.size()) {
      const char c = format[i + 1];
      if (c == 'f') {
        f += fmt::format("{:06d}", micros);
        ++i;
        continue;
      }
      if (c == 'z' || c == 'Z') {
        ++i;
        continue;
      }
      f += '%';
      f += c;
      ++i;
      continue;
    }
    f += format[i];
  }
  if (f.empty()) return "";
  std::string buf(f.size() * 8 + 64, '\0');
  for (int attempt = 0; attempt < 6; ++attempt) {
    const size_t n = std::strftime(buf.data(), buf.size(), f.c_str(), &tm);
    if (n > 0) return buf.substr(0, n);
    buf.resize(buf.size() * 4);
  }
  return "";
}

}  // namespace

bool is_known_filter(std::string_view name) { return filters().count(name) != 0; }
bool is_known_test(std::string_view name) { return tests().count(name) != 0; }

Value apply_filter(const std::string& name, const Value& input, CallArgs& args) {
  const auto& table = filters();
  auto it = table.find(name);
  if (it == table.end()) fail("No filter named '{}'.", name);
  if (it->second == f_unsupported) fail("the '{}' filter is not supported", name);
  return it->second(input, args);
}

bool apply_test(const std::string& name, const Value& input, CallArgs& args) {
  const auto& table = tests();
  auto it = table.find(name);
  if (it == table.end()) fail("No test named '{}'.", name);
  return it->second(input, args);
}

DictData make_globals(const std::optional<std::tm>& now) {
  DictData g;
  g.set(Value::string("range"), make_function("range", g_range));
  g.set(Value::string("dict"), make_function("dict", g_dict));
  g.set(Value::string("joiner"), make_function("joiner", g_joiner));
  g.set(Value::string("cycler"), make_function("cycler", g_cycler));
  g.set(Value::string("raise_exception"), make_function("raise_exception", g_raise_exception));
  g.set(Value::string("strftime_now"),
        make_function("strftime_now", [now](CallArgs& a) {
          ArgBinder b("strftime_now", a, {"format"});
          const Value& f = b.required(0);
          if (!f.is_string()) fail("strftime() argument 1 must be str, not {}", type_name(f));
          if (now) return Value::string(format_time(f.str(), *now, 0));
          const auto tp = std::chrono::system_clock::now();
          const std::time_t t = std::chrono::system_clock::to_time_t(tp);
          const auto micros = static_cast<int>(
              std::chrono::duration_cast<std::chrono::microseconds>(tp.time_since_epoch()).count() % 1000000);
          std::tm tm{};
          localtime_r(&t, &tm);
          return Value::string(format_time(f.str(), tm, micros));
        }));
  return g;
}

}  // namespace slm::chat::jinja
