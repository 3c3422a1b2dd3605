// Attribute and item access (sandboxed), Python methods of str/dict/list, operators and
// printf-style `%` formatting.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "chat/jinja_builtins.h"
#include "chat/jinja_unicode.h"

namespace slm::chat::jinja {

namespace {

constexpr size_t kMaxString = kMaxStringBytes;

void check_size(size_t n) { check_string_size(n); }

// Jinja's object_type_repr: how undefined-value messages name the object.
std::string object_type_repr(const Value& v) {
  switch (v.type()) {
    case Value::Type::None: return "None";
    case Value::Type::String: return v.safe() ? "markupsafe.Markup object" : "str object";
    case Value::Type::Object:
      if (v.object().type_name == "Namespace") return "jinja2.utils.Namespace object";
      if (v.object().type_name == "LoopContext") return "jinja2.runtime.LoopContext object";
      return "jinja2.utils." + v.object().type_name + " object";
    case Value::Type::Function:
      if (v.function().kind == FunctionData::Kind::Macro) return "jinja2.runtime.Macro object";
      return type_name(v) + " object";
    default: return type_name(v) + " object";
  }
}

Value missing_attr(const Value& obj, const std::string& name) {
  return Value::undefined(
      fmt::format("{} has no attribute {}", string_repr(object_type_repr(obj)), string_repr(name)));
}

Value missing_item(const Value& obj, const Value& key) {
  if (key.is_string()) return missing_attr(obj, key.str());
  return Value::undefined(fmt::format("{} has no element {}", object_type_repr(obj), repr(key)));
}

Value unsafe_attr(const Value& obj, const std::string& name) {
  return Value::undefined(fmt::format("access to attribute {} of {} object is unsafe.",
                                      string_repr(name), string_repr(type_name(obj))));
}

Value method(const std::string& name, NativeFn fn) {
  return make_function(name, std::move(fn), FunctionData::Kind::Method);
}

int64_t to_index(const Value& v, const char* what) {
  if (v.is_int()) return v.i();
  if (v.is_bool()) return v.b() ? 1 : 0;
  fail("{} indices must be integers or slices, not {}", what, type_name(v));
}

// Code point offsets of s, for index/slice conversions.
struct Chars {
  explicit Chars(const std::string& s) : str(s), offs(utf8::char_offsets(s)) {}
  size_t size() const { return offs.size() - 1; }
  std::string at(size_t i) const { return str.substr(offs[i], offs[i + 1] - offs[i]); }
  std::string range(size_t a, size_t b) const { return str.substr(offs[a], offs[b] - offs[a]); }
  size_t index_of_byte(size_t byte) const {
    return static_cast<size_t>(std::lower_bound(offs.begin(), offs.end(), byte) - offs.begin());
  }
  const std::string& str;
  std::vector<size_t> offs;
};

// Python's optional start/end arguments of str.find & co., clamped to [0, n].
std::pair<size_t, size_t> str_bounds(const std::optional<Value>& start, const std::optional<Value>& end,
                                     size_t n) {
  auto clamp = [n](const std::optional<Value>& v, size_t dflt) -> size_t {
    if (!v || v->is_none()) return dflt;
    int64_t k = to_index(*v, "slice");
    const auto sn = static_cast<int64_t>(n);
    if (k < 0) k = std::max<int64_t>(0, k + sn);
    return static_cast<size_t>(std::min(k, sn));
  };
  return {clamp(start, 0), clamp(end, n)};
}

// str.split(sep=None, maxsplit=-1) and rsplit.
Value split_impl(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  ValueList parts;
  if (sep.is_none() || sep.is_undefined()) {
    // Runs of whitespace separate; leading/trailing whitespace ignored.
    const Chars c(s);
    std::vector<std::pair<size_t, size_t>> words;  // char ranges
    size_t i = 0;
    const size_t n = c.size();
    auto is_ws = [&](size_t k) {
      char32_t cp = 0;
      utf8::decode(s, c.offs[k], cp);
      return utf8::is_space(cp);
    };
    if (!from_right) {
      int64_t splits = 0;
      while (i < n) {
        while (i < n && is_ws(i)) ++i;
        if (i >= n) break;
        if (maxsplit >= 0 && splits >= maxsplit) {
          size_t j = n;
          while (j > i && is_ws(j - 1)) --j;
          words.emplace_back(i, j);
          break;
        }
        size_t j = i;
        while (j < n && !is_ws(j)) ++j;
        words.emplace_back(i, j);
        ++splits;
        i = j;
      }
    } else {
      size_t j = n;
      int64_t splits = 0;
      while (j > 0) {
        while (j > 0 && is_ws(j - 1)) --j;
        if (j == 0) break;
        if (maxsplit >= 0 && splits >= maxsplit) {
          size_t k = 0;
          while (k < j && is_ws(k)) ++k;
          words.emplace_back(k, j);
          break;
        }
        size_t k = j;
        while (k > 0 && !is_ws(k - 1)) --k;
        words.emplace_back(k, j);
        ++splits;
        j = k;
      }
      std::reverse(words.begin(), words.end());
    }
    for (auto [a, b] : words) parts.push_back(Value::string(c.range(a, b)));
    return Value::list(std::move(parts));
  }
  if (!sep.is_string()) fail("must be str or None, not {}", type_name(sep));
  const std::string& d = sep.str();
  if (d.empty()) fail("empty separator");
  std::vector<std::string> out;
  if (!from_right) {
    size_t pos = 0;
    int64_t splits = 0;
    while (maxsplit < 0 || splits < maxsplit) {
      const size_t f = s.find(d, pos);
      if (f == std::string::npos) break;
      out.push_back(s.substr(pos, f - pos));
      pos = f + d.size();
      ++splits;
    }
    out.push_back(s.substr(pos));
  } else {
    size_t end = s.size();
    int64_t splits = 0;
    while (maxsplit < 0 || splits < maxsplit) {
      if (end < d.size()) break;
      const size_t f = s.rfind(d, end - d.size());
      if (f == std::string::npos) break;
      out.push_back(s.substr(f + d.size(), end - f - d.size()));
      end = f;
      ++splits;
    }
    out.push_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
  }
  for (auto& p : out) parts.push_back(Value::string(std::move(p)));
  return Value::list(std::move(parts));
}

std::string str_arg(const Value& v, const char* fn) {
  if (!v.is_string()) fail("{}() argument must be str, not {}", fn, type_name(v));
  return v.str();
}

bool affix_match(const std::string& s, const Value& affix, bool prefix, const char* fn) {
  auto one = [&](const Value& a) {
    const std::string x = str_arg(a, fn);
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_tuple()) {
    for (const Value& a : affix.items())
      if (one(a)) return true;
    return false;
  }
  if (!affix.is_string())
    fail("{} first arg must be str or a tuple of str, not {}", fn, type_name(affix));
  return one(affix);
}

std::string pad(const std::string& s, int64_t width, const std::string& fill, int align) {
  const auto len = static_cast<int64_t>(utf8::length(s));
  if (width <= len) return s;
  if (width > static_cast<int64_t>(kMaxString)) fail("width too large");
  if (utf8::length(fill) != 1) fail("The fill character must be exactly one character long");
  const int64_t marg = width - len;
  int64_t left = 0;
  if (align < 0) left = 0;
  else if (align > 0) left = marg;
  else left = marg / 2 + (marg & width & 1);
  std::string out;
  for (int64_t k = 0; k < left; ++k) out += fill;
  out += s;
  for (int64_t k = 0; k < marg - left; ++k) out += fill;
  return out;
}

bool all_chars(const std::string& s, bool (*pred)(char32_t)) {
  if (s.empty()) return false;
  char32_t c = 0;
  for (size_t i = 0; i < s.size();) {
    i += utf8::decode(s, i, c);
    if (!pred(c)) return false;
  }
  return true;
}

std::string replace_impl(const std::string& s, const std::string& old, const std::string& repl,
                         int64_t count) {
  std::string out;
  if (old.empty()) {
    const Chars c(s);
    int64_t done = 0;
    for (size_t k = 0; k <= c.size(); ++k) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      if (k < c.size()) out += c.at(k);
      check_size(out.size());
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t f = s.find(old, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += repl;
    check_size(out.size());
    pos = f + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

Value str_method(const Value& self, const std::string& name) {
  const std::string s = self.str();
  const bool safe = self.safe();
  auto bind = [&](auto fn) { return method(name, fn); };
  auto str_result = [safe](std::string r) { return Value::string(std::move(r), safe); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool left = name != "rstrip";
    const bool right = name != "lstrip";
    return bind([s, left, right, name, str_result](CallArgs& a) {
      ArgBinder b(name, a, {"chars"});
      const Value chars = b.get(0, Value::none());
      if (chars.is_none()) return str_result(utf8::strip(s, nullptr, left, right));
      const std::string cs = str_arg(chars, name.c_str());
      const std::string_view v(cs);
      return str_result(utf8::strip(s, &v, left, right));
    });
  }
  if (name == "split" || name == "rsplit") {
    const bool right = name == "rsplit";
    return bind([s, right, name](CallArgs& a) {
      ArgBinder b(name, a, {"sep", "maxsplit"});
      const Value max = b.get(1, Value::integer(-1));
      return split_impl(s, b.get(0, Value::none()), to_index(max, "maxsplit"), right);
    });
  }
  if (name == "splitlines") {
    return bind([s](CallArgs& a) {
      ArgBinder b("splitlines", a, {"keepends"});
      const bool keep = truthy(b.get(0, Value::boolean(false)));
      ValueList lines;
      size_t start = 0;
      char32_t c = 0;
      for (size_t i = 0; i < s.size();) {
        const size_t n = utf8::decode(s, i, c);
        if (utf8::is_linebreak(c)) {
          size_t end = i + n;
          if (c == '\r' && end < s.size() && s[end] == '\n') ++end;
          lines.push_back(Value::string(s.substr(start, (keep ? end : i) - start)));
          start = end;
          i = end;
        } else {
          i += n;
        }
      }
      if (start < s.size()) lines.push_back(Value::string(s.substr(start)));
      return Value::list(std::move(lines));
    });
  }
  if (name == "startswith" || name == "endswith") {
    const bool prefix = name == "startswith";
    return bind([s, prefix, name](CallArgs& a) {
      ArgBinder b(name, a, {"prefix", "start", "end"});
      const Chars c(s);
      auto [lo, hi] = str_bounds(b[1], b[2], c.size());
      const std::string sub = lo <= hi ? c.range(lo, hi) : std::string();
      if (lo > hi) return Value::boolean(false);
      return Value::boolean(affix_match(sub, b.required(0), prefix, name.c_str()));
    });
  }
  if (name == "upper") return bind([s, str_result](CallArgs&) { return str_result(utf8::to_upper(s)); });
  if (name == "lower" || name == "casefold")
    return bind([s, str_result](CallArgs&) { return str_result(utf8::to_lower(s)); });
  if (name == "title") return bind([s, str_result](CallArgs&) { return str_result(utf8::title(s)); });
  if (name == "capitalize")
    return bind([s, str_result](CallArgs&) { return str_result(utf8::capitalize(s)); });
  if (name == "swapcase")
    return bind([s, str_result](CallArgs&) { return str_result(utf8::swapcase(s)); });
  if (name == "replace") {
    return bind([s, str_result](CallArgs& a) {
      ArgBinder b("replace", a, {"old", "new", "count"});
      const std::string old = str_arg(b.required(0), "replace");
      const std::string repl = str_arg(b.required(1), "replace");
      const int64_t count = to_index(b.get(2, Value::integer(-1)), "count");
      return str_result(replace_impl(s, old, repl, count));
    });
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    const bool right = name[0] == 'r';
    const bool raise = name.find("index") != std::string::npos;
    return bind([s, right, raise, name](CallArgs& a) {
      ArgBinder b(name, a, {"sub", "start", "end"});
      const std::string sub = str_arg(b.required(0), name.c_str());
      const Chars c(s);
      auto [lo, hi] = str_bounds(b[1], b[2], c.size());
      int64_t found = -1;
      if (lo <= hi) {
        const std::string hay = c.range(lo, hi);
        const size_t f = right ? hay.rfind(sub) : hay.find(sub);
        if (f != std::string::npos) found = static_cast<int64_t>(lo + Chars(hay).index_of_byte(f));
      }
      if (found < 0 && raise) fail("substring not found");
      return Value::integer(found);
    });
  }
  if (name == "count") {
    return bind([s](CallArgs& a) {
      ArgBinder b("count", a, {"sub", "start", "end"});
      const std::string sub = str_arg(b.required(0), "count");
      const Chars c(s);
      auto [lo, hi] = str_bounds(b[1], b[2], c.size());
      if (lo > hi) return Value::integer(0);
      const std::string hay = c.range(lo, hi);
      if (sub.empty()) return Value::integer(static_cast<int64_t>(hi - lo + 1));
      int64_t n = 0;
      for (size_t p = hay.find(sub); p != std::string::npos; p = hay.find(sub, p + sub.size())) ++n;
      return Value::integer(n);
    });
  }
  if (name == "join") {
    return bind([s, safe](CallArgs& a) {
      ArgBinder b("join", a, {"iterable"});
      std::string out;
      size_t k = 0;
      for (const Value& x : iterate(b.required(0))) {
        if (!x.is_string())
          fail("sequence item {}: expected str instance, {} found", k, type_name(x));
        if (k++) out += s;
        out += x.str();
        check_size(out.size());
      }
      return Value::string(std::move(out), safe);
    });
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    const int align = name == "center" ? 0 : (name == "ljust" ? -1 : 1);
    return bind([s, align, name, str_result](CallArgs& a) {
      ArgBinder b(name, a, {"width", "fillchar"});
      const int64_t width = to_index(b.required(0), "width");
      const Value fill = b.get(1, Value::string(" "));
      return str_result(pad(s, width, str_arg(fill, name.c_str()), align));
    });
  }
  if (name == "zfill") {
    return bind([s](CallArgs& a) {
      ArgBinder b("zfill", a, {"width"});
      const int64_t width = to_index(b.required(0), "width");
      const auto len = static_cast<int64_t>(utf8::length(s));
      if (width <= len) return Value::string(s);
      if (width > static_cast<int64_t>(kMaxString)) fail("width too large");
      std::string zeros(static_cast<size_t>(width - len), '0');
      if (!s.empty() && (s[0] == '+' || s[0] == '-')) return Value::string(s.substr(0, 1) + zeros + s.substr(1));
      return Value::string(zeros + s);
    });
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const bool prefix = name == "removeprefix";
    return bind([s, prefix, name, str_result](CallArgs& a) {
      ArgBinder b(name, a, {"affix"});
      const std::string x = str_arg(b.required(0), name.c_str());
      if (x.size() <= s.size()) {
        if (prefix && s.compare(0, x.size(), x) == 0) return str_result(s.substr(x.size()));
        if (!prefix && s.compare(s.size() - x.size(), x.size(), x) == 0)
          return str_result(s.substr(0, s.size() - x.size()));
      }
      return str_result(s);
    });
  }
  if (name == "partition" || name == "rpartition") {
    const bool right = name == "rpartition";
    return bind([s, right, name](CallArgs& a) {
      ArgBinder b(name, a, {"sep"});
      const std::string sep = str_arg(b.required(0), name.c_str());
      if (sep.empty()) fail("empty separator");
      const size_t f = right ? s.rfind(sep) : s.find(sep);
      if (f == std::string::npos) {
        if (right) return Value::tuple({Value::string(""), Value::string(""), Value::string(s)});
        return Value::tuple({Value::string(s), Value::string(""), Value::string("")});
      }
      return Value::tuple({Value::string(s.substr(0, f)), Value::string(sep),
                           Value::string(s.substr(f + sep.size()))});
    });
  }
  using Pred = bool (*)(char32_t);
  static const std::pair<const char*, Pred> kPredicates[] = {
      {"isdigit", utf8::is_digit},
      {"isdecimal", utf8::is_digit},
      {"isnumeric", utf8::is_digit},
      {"isalpha", utf8::is_alpha},
      {"isspace", utf8::is_space},
      {"isalnum", [](char32_t c) { return utf8::is_alpha(c) || utf8::is_digit(c); }},
  };
  for (const auto& [pname, pred] : kPredicates) {
    if (name == pname) return bind([s, pred = pred](CallArgs&) { return Value::boolean(all_chars(s, pred)); });
  }
  if (name == "isupper" || name == "islower") {
    const bool upper = name == "isupper";
    return bind([s, upper](CallArgs&) {
      bool cased = false;
      char32_t c = 0;
      for (size_t i = 0; i < s.size();) {
        i += utf8::decode(s, i, c);
        if (upper ? utf8::is_lower(c) : utf8::is_upper(c)) return Value::boolean(false);
        if (utf8::is_cased(c)) cased = true;
      }
      return Value::boolean(cased);
    });
  }
  if (name == "format" || name == "format_map" || name == "encode" || name == "translate" ||
      name == "expandtabs" || name == "istitle" || name == "isidentifier" ||
      name == "isprintable" || name == "isascii" || name == "maketrans") {
    return bind([name](CallArgs&) -> Value { fail("str.{}() is not supported", name); });
  }
  return missing_attr(self, name);
}

Value dict_method(const Value& self, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    const int which = name == "items" ? 0 : (name == "keys" ? 1 : 2);
    return method(name, [self, which](CallArgs& a) {
      ArgBinder b("dict." + std::string(which == 0 ? "items" : which == 1 ? "keys" : "values"), a, {});
      ValueList out;
      out.reserve(self.dict().size());
      for (const auto& [k, v] : self.dict().entries) {
        if (which == 0) out.push_back(Value::tuple({k, v}));
        else out.push_back(which == 1 ? k : v);
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return method(name, [self](CallArgs& a) {
      ArgBinder b("get", a, {"key", "default"});
      const Value& key = b.required(0);
      if (const Value* v = self.dict().find(key)) return *v;
      return b.get(1, Value::none());
    });
  }
  if (name == "copy") return method(name, [self](CallArgs&) { return self; });
  if (name == "clear" || name == "pop" || name == "popitem" || name == "setdefault" ||
      name == "update")
    return unsafe_attr(self, name);
  return Value();  // not a method
}

Value list_method(const Value& self, const std::string& name) {
  if (name == "count") {
    return method(name, [self](CallArgs& a) {
      ArgBinder b("count", a, {"value"});
      int64_t n = 0;
      for (const Value& x : self.items())
        if (equals(x, b.required(0))) ++n;
      return Value::integer(n);
    });
  }
  if (name == "index") {
    return method(name, [self](CallArgs& a) {
      ArgBinder b("index", a, {"value", "start", "stop"});
      const ValueList& items = self.items();
      auto [lo, hi] = str_bounds(b[1], b[2], items.size());
      for (size_t k = lo; k < hi; ++k)
        if (equals(items[k], b.required(0))) return Value::integer(static_cast<int64_t>(k));
      fail("{} is not in {}", repr(b.required(0)), self.is_tuple() ? "tuple" : "list");
    });
  }
  if (self.is_list()) {
    if (name == "copy") return method(name, [self](CallArgs&) { return self; });
    if (name == "append" || name == "clear" || name == "pop" || name == "reverse" ||
        name == "insert" || name == "sort" || name == "extend" || name == "remove")
      return unsafe_attr(self, name);
  }
  return Value();
}

}  // namespace

[[noreturn]] void raise_undefined(const Value& v) {
  if (const std::string* hint = v.undefined_hint()) throw EvalError(*hint);
  throw EvalError("undefined value");
}

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.type()) {
    case Value::Type::Undefined: raise_undefined(obj);
    case Value::Type::String: return str_method(obj, name);
    case Value::Type::Dict: {
      Value m = dict_method(obj, name);
      if (!m.is_undefined() || m.undefined_hint()) return m;
      if (const Value* v = obj.dict().find_str(name)) return *v;
      return missing_attr(obj, name);
    }
    case Value::Type::List:
    case Value::Type::Tuple: {
      Value m = list_method(obj, name);
      if (!m.is_undefined() || m.undefined_hint()) return m;
      return missing_attr(obj, name);
    }
    case Value::Type::Object: {
      if (const Value* v = obj.object().attrs.find_str(name)) {
        if (!name.empty() && name[0] == '_') return unsafe_attr(obj, name);
        return *v;
      }
      return missing_attr(obj, name);
    }
    default: return missing_attr(obj, name);
  }
}

Value get_python_attr(const Value& obj, const std::string& name) {
  if (obj.is_dict()) {
    Value m = dict_method(obj, name);
    if (!m.is_undefined() || m.undefined_hint()) return m;
    return missing_attr(obj, name);
  }
  return get_attr(obj, name);
}

Value get_item(const Value& obj, const Value& key) {
  switch (obj.type()) {
    case Value::Type::Undefined: raise_undefined(obj);
    case Value::Type::Dict: {
      if (!key.is_list() && !key.is_dict() && !key.is_object()) {
        if (const Value* v = obj.dict().find(key)) return *v;
      }
      if (key.is_string()) {
        Value m = dict_method(obj, key.str());
        if (!m.is_undefined() || m.undefined_hint()) return m;
      }
      return missing_item(obj, key);
    }
    case Value::Type::List:
    case Value::Type::Tuple:
    case Value::Type::String: {
      if (key.is_int() || key.is_bool()) {
        int64_t k = key.is_int() ? key.i() : (key.b() ? 1 : 0);
        if (obj.is_string()) {
          const Chars c(obj.str());
          const auto n = static_cast<int64_t>(c.size());
          if (k < 0) k += n;
          if (k < 0 || k >= n) return missing_item(obj, key);
          return Value::string(c.at(static_cast<size_t>(k)), obj.safe());
        }
        const ValueList& items = obj.items();
        const auto n = static_cast<int64_t>(items.size());
        if (k < 0) k += n;
        if (k < 0 || k >= n) return missing_item(obj, key);
        return items[static_cast<size_t>(k)];
      }
      if (key.is_string()) return get_attr(obj, key.str());
      return missing_item(obj, key);
    }
    default:
      if (key.is_string()) return get_attr(obj, key.str());
      return missing_item(obj, key);
  }
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) raise_undefined(obj);
  auto bound = [](const Value& v, bool& ok) -> std::optional<int64_t> {
    if (v.is_none()) return std::nullopt;
    if (v.is_int()) return v.i();
    if (v.is_bool()) return v.b() ? 1 : 0;
    ok = false;
    return std::nullopt;
  };
  bool ok = true;
  const auto a = bound(start, ok);
  const auto b = bound(stop, ok);
  const auto c = bound(step, ok);
  const std::string slice_repr =
      fmt::format("slice({}, {}, {})", repr(start), repr(stop), repr(step));
  if (!ok || !(obj.is_string() || obj.is_sequence()))
    return Value::undefined(fmt::format("{} has no element {}", object_type_repr(obj), slice_repr));
  const int64_t st = c.value_or(1);
  if (st == 0) fail("slice step cannot be zero");
  std::optional<Chars> chars;
  if (obj.is_string()) chars.emplace(obj.str());
  const auto len = static_cast<int64_t>(chars ? chars->size() : obj.items().size());
  auto adjust = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x = x < -len ? -1 : x + len;
      if (x < 0) x = st < 0 ? -1 : 0;
    } else if (x >= len) {
      x = st < 0 ? len - 1 : len;
    }
    return x;
  };
  const int64_t lo = adjust(a, st < 0 ? len - 1 : 0);
  const int64_t hi = adjust(b, st < 0 ? -1 : len);
  int64_t count = 0;
  if (st > 0 && lo < hi) count = (hi - lo - 1) / st + 1;
  if (st < 0 && lo > hi) count = st == std::numeric_limits<int64_t>::min() ? 1 : (lo - hi - 1) / (-st) + 1;
  if (chars) {
    std::string out;
    for (int64_t k = 0; k < count; ++k) out += chars->at(static_cast<size_t>(lo + k * st));
    return Value::string(std::move(out), obj.safe());
  }
  ValueList out;
  out.reserve(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) out.push_back(obj.items()[static_cast<size_t>(lo + k * st)]);
  return obj.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

// ------------------------------------------------------------------ operators

namespace {

bool int_like(const Value& v) { return v.is_int() || v.is_bool(); }
int64_t int_of(const Value& v) { return v.is_int() ? v.i() : (v.b() ? 1 : 0); }

const char* op_symbol(BinOp op) {
  switch (op) {
    case BinOp::Add: return "+";
    case BinOp::Sub: return "-";
    case BinOp::Mul: return "*";
    case BinOp::Div: return "/";
    case BinOp::FloorDiv: return "//";
    case BinOp::Mod: return "%";
    case BinOp::Pow: return "** or pow()";
  }
  return "?";
}

[[noreturn]] void unsupported(BinOp op, const Value& l, const Value& r) {
  fail("unsupported operand type(s) for {}: '{}' and '{}'", op_symbol(op), type_name(l),
       type_name(r));
}

Value repeat(const Value& seq, int64_t n) {
  if (n <= 0) {
    if (seq.is_string()) return Value::string("", seq.safe());
    return seq.is_tuple() ? Value::tuple({}) : Value::list({});
  }
  if (seq.is_string()) {
    const std::string& s = seq.str();
    if (!s.empty() && static_cast<uint64_t>(n) > kMaxString / s.size()) check_size(kMaxString + 1);
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) out += s;
    return Value::string(std::move(out), seq.safe());
  }
  const ValueList& items = seq.items();
  if (!items.empty() && static_cast<uint64_t>(n) > (size_t{16} << 20) / items.size())
    fail("sequence repetition too large");
  ValueList out;
  out.reserve(items.size() * static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), items.begin(), items.end());
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

double float_floordiv(double a, double b, double* mod_out) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, b);
  }
  double floordiv = 0;
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, a / b);
  }
  if (mod_out) *mod_out = mod;
  return floordiv;
}

Value int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  int64_t b = base;
  while (exp > 0) {
    if (exp & 1) result = checked_mul(result, b);
    exp >>= 1;
    if (exp) b = checked_mul(b, b);
  }
  return Value::integer(result);
}

}  // namespace

Value unary_op(char op, const Value& v) {
  if (v.is_undefined()) raise_undefined(v);
  if (int_like(v)) {
    const int64_t x = int_of(v);
    return Value::integer(op == '-' ? checked_sub(0, x) : x);
  }
  if (v.is_float()) return Value::real(op == '-' ? -v.f() : v.f());
  fail("bad operand type for unary {}: '{}'", op, type_name(v));
}

Value binary_op(BinOp op, const Value& l, const Value& r) {
  if (l.is_undefined()) raise_undefined(l);
  if (r.is_undefined()) raise_undefined(r);
  const bool nums = l.is_number() && r.is_number();
  const bool ints = int_like(l) && int_like(r);
  switch (op) {
    case BinOp::Add:
      if (ints) return Value::integer(checked_add(int_of(l), int_of(r)));
      if (nums) return Value::real(l.as_double() + r.as_double());
      if (l.is_string() && r.is_string()) {
        check_size(l.str().size() + r.str().size());
        if (l.safe() || r.safe()) {
          return Value::string((l.safe() ? l.str() : html_escape(l.str())) +
                                   (r.safe() ? r.str() : html_escape(r.str())),
                               true);
        }
        return Value::string(l.str() + r.str());
      }
      if ((l.is_list() && r.is_list()) || (l.is_tuple() && r.is_tuple())) {
        ValueList out = l.items();
        out.insert(out.end(), r.items().begin(), r.items().end());
        return l.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
      }
      if (l.is_string() || l.is_list() || l.is_tuple())
        fail("can only concatenate {} (not \"{}\") to {}", type_name(l), type_name(r), type_name(l));
      unsupported(op, l, r);
    case BinOp::Sub:
      if (ints) return Value::integer(checked_sub(int_of(l), int_of(r)));
      if (nums) return Value::real(l.as_double() - r.as_double());
      unsupported(op, l, r);
    case BinOp::Mul:
      if (ints) return Value::integer(checked_mul(int_of(l), int_of(r)));
      if (nums) return Value::real(l.as_double() * r.as_double());
      if ((l.is_string() || l.is_sequence()) && int_like(r)) return repeat(l, int_of(r));
      if (int_like(l) && (r.is_string() || r.is_sequence())) return repeat(r, int_of(l));
      if ((l.is_string() || l.is_sequence()) && r.is_number())
        fail("can't multiply sequence by non-int of type '{}'", type_name(r));
      if (l.is_number() && (r.is_string() || r.is_sequence()))
        fail("can't multiply sequence by non-int of type '{}'", type_name(l));
      unsupported(op, l, r);
    case BinOp::Div:
      if (nums) {
        if (r.as_double() == 0) fail("division by zero");
        return Value::real(l.as_double() / r.as_double());
      }
      unsupported(op, l, r);
    case BinOp::FloorDiv:
      if (ints) {
        const int64_t a = int_of(l);
        const int64_t b = int_of(r);
        if (b == 0) fail("integer division or modulo by zero");
        if (a == std::numeric_limits<int64_t>::min() && b == -1) fail("integer overflow (beyond 64 bits)");
        int64_t q = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
        return Value::integer(q);
      }
      if (nums) {
        if (r.as_double() == 0) fail("float floor division by zero");
        return Value::real(float_floordiv(l.as_double(), r.as_double(), nullptr));
      }
      unsupported(op, l, r);
    case BinOp::Mod:
      if (l.is_string()) return Value::string(percent_format(l.str(), r), l.safe());
      if (ints) {
        const int64_t a = int_of(l);
        const int64_t b = int_of(r);
        if (b == 0) fail("integer modulo by zero");
        if (b == -1) return Value::integer(0);
        int64_t m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) m += b;
        return Value::integer(m);
      }
      if (nums) {
        if (r.as_double() == 0) fail("float modulo");
        double mod = 0;
        float_floordiv(l.as_double(), r.as_double(), &mod);
        return Value::real(mod);
      }
      unsupported(op, l, r);
    case BinOp::Pow:
      if (ints) {
        const int64_t a = int_of(l);
        const int64_t b = int_of(r);
        if (b >= 0) return int_pow(a, b);
        if (a == 0) fail("0.0 cannot be raised to a negative power");
        return Value::real(std::pow(static_cast<double>(a), static_cast<double>(b)));
      }
      if (nums) {
        const double a = l.as_double();
        const double b = r.as_double();
        if (a == 0 && b < 0) fail("0.0 cannot be raised to a negative power");
        if (a < 0 && b != std::floor(b)) fail("complex results are not supported");
        return Value::real(std::pow(a, b));
      }
      unsupported(op, l, r);
  }
  unsupported(op, l, r);
}

// ------------------------------------------------------------------ % formatting

std::string percent_format(const std::string& fmt, const Value& args) {
  ValueList positional;
  const Value* mapping = nullptr;
  if (args.is_tuple()) {
    positional = args.items();
  } else if (args.is_dict()) {
    mapping = &args;
    positional.push_back(args);
  } else {
    positional.push_back(args);
  }
  size_t next_arg = 0;
  bool used_mapping = false;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    check_size(out.size());
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) fail("incomplete format");
    if (fmt[i] == '%') {
      out += '%';
      continue;
    }
    const Value* arg = nullptr;
    Value keyed;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) fail("incomplete format key");
      if (!mapping) fail("format requires a mapping");
      const Value* v = mapping->dict().find(Value::string(fmt.substr(i + 1, close - i - 1)));
      if (!v) fail("KeyError: {}", string_repr(fmt.substr(i + 1, close - i - 1)));
      keyed = *v;
      arg = &keyed;
      used_mapping = true;
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos)
      flags += fmt[i++];
    auto read_num = [&]() -> int {
      int n = 0;
      if (i < fmt.size() && fmt[i] == '*') fail("* width in % formatting is not supported");
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
        n = n * 10 + (fmt[i++] - '0');
        if (n > 10000) fail("width or precision too large in % format");
      }
      return n;
    };
    const int width = read_num();
    int precision = -1;
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      precision = read_num();
    }
    while (i < fmt.size() && (fmt[i] == 'l' || fmt[i] == 'h' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) fail("incomplete format");
    const char conv = fmt[i];
    if (!arg) {
      if (next_arg >= positional.size()) fail("not enough arguments for format string");
      arg = &positional[next_arg++];
    }
    const bool left = flags.find('-') != std::string::npos;
    std::string piece;
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        piece = conv == 's' ? to_str(*arg) : repr(*arg);
        if (precision >= 0) {
          const Chars c(piece);
          if (static_cast<size_t>(precision) < c.size()) piece = c.range(0, static_cast<size_t>(precision));
        }
        const auto len = static_cast<int>(utf8::length(piece));
        if (width > len) {
          const std::string padding(static_cast<size_t>(width - len), ' ');
          piece = left ? piece + padding : padding + piece;
        }
        out += piece;
        continue;
      }
      case 'c': {
        if (arg->is_string() && utf8::length(arg->str()) == 1) piece = arg->str();
        else if (arg->is_int() && arg->i() >= 0 && arg->i() <= 0x10FFFF) utf8::append(piece, static_cast<char32_t>(arg->i()));
        else fail("%c requires int or char");
        out += piece;
        continue;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        if (!arg->is_number())
          fail("%{} format: a real number is required, not {}", conv, type_name(*arg));
        int64_t v = 0;
        if (arg->is_float()) {
          const double d = arg->f();
          if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) fail("cannot convert float to integer");
          v = static_cast<int64_t>(d);
        } else {
          v = int_of(*arg);
        }
        const bool neg = v < 0;
        uint64_t mag = neg ? 0ULL - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
        const unsigned base = (conv == 'x' || conv == 'X') ? 16 : (conv == 'o' ? 8 : 10);
        const char* digit_chars = conv == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
        std::string digits;
        do {
          digits.insert(digits.begin(), digit_chars[mag % base]);
          mag /= base;
        } while (mag);
        if (precision > 0 && digits.size() < static_cast<size_t>(precision))
          digits.insert(0, static_cast<size_t>(precision) - digits.size(), '0');
        std::string prefix;
        if (flags.find('#') != std::string::npos && base != 10)
          prefix = conv == 'x' ? "0x" : (conv == 'X' ? "0X" : "0o");
        const std::string sign = neg ? "-"
                                 : flags.find('+') != std::string::npos ? "+"
                                 : flags.find(' ') != std::string::npos ? " "
                                                                         : "";
        std::string body = sign + prefix + digits;
        if (width > 0 && body.size() < static_cast<size_t>(width)) {
          const size_t fill = static_cast<size_t>(width) - body.size();
          if (left) body += std::string(fill, ' ');
          else if (flags.find('0') != std::string::npos) body = sign + prefix + std::string(fill, '0') + digits;
          else body = std::string(fill, ' ') + body;
        }
        out += body;
        continue;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!arg->is_number())
          fail("must be real number, not {}", type_name(*arg));
        std::string spec = "%" + flags + std::to_string(width) + "." +
                           std::to_string(precision < 0 ? 6 : precision) + conv;
        const int n = std::snprintf(nullptr, 0, spec.c_str(), arg->as_double());
        if (n < 0) fail("invalid % format");
        std::string s(static_cast<size_t>(n) + 1, '\0');
        std::snprintf(s.data(), s.size(), spec.c_str(), arg->as_double());
        s.resize(static_cast<size_t>(n));
        out += s;
        continue;
      }
      default:
        fail("unsupported format character '{}' (0x{:x})", conv, static_cast<unsigned char>(conv));
    }
  }
  if (!mapping && next_arg < positional.size())
    fail("not all arguments converted during string formatting");
  (void)used_mapping;
  return out;
}

}  // namespace slm::chat::jinja
