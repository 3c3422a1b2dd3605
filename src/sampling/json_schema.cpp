// JSON Schema -> GBNF. One rule per schema node (named after its path, identical bodies
// shared), plus fixed building blocks (space, string, number, value, ...) added on demand.
//
// Layout convention: a value's rule never includes whitespace; containers put `space` after
// each opening bracket, key, colon, member and comma, so the root is exactly the value and no
// two `space`s are ever adjacent (which would double the whitespace bound and make the
// grammar ambiguous, i.e. more stacks per step in the engine).
#include "sampling/json_schema.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "sampling/grammar.h"

namespace slm {

namespace {

using json = nlohmann::ordered_json;

// A schema no value can satisfy (types that do not intersect, an enum with no value of the
// declared type, ...). An error at the top, but inside anyOf/oneOf that alternative is just
// dropped: merging sibling keywords into alternatives legitimately produces such cases.
struct Unsatisfiable : Error {
  using Error::Error;
};

struct Primitive {
  const char* name;
  const char* body;
  std::vector<const char*> deps;
};

// Numbers are bounded at 16 digits per part, and whitespace at one space or 1-2 newlines plus
// 20 indentation characters, so a model cannot loop forever inside a token.
const Primitive kPrimitives[] = {
    {"space", R"(| " " | "\n"{1,2} [ \t]{0,20})", {}},
    {"escape", R"([\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4}))", {}},
    {"char", R"([^"\\\x7F\x00-\x1F] | escape)", {"escape"}},
    {"string", R"("\"" char* "\"")", {"char"}},
    {"integral-part", R"([0] | [1-9] [0-9]{0,15})", {}},
    {"integer", R"("-"? integral-part)", {"integral-part"}},
    {"number", R"("-"? integral-part ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,16})?)", {"integral-part"}},
    {"boolean", R"("true" | "false")", {}},
    {"null", R"("null")", {}},
    {"value", "object | array | string | number | boolean | null",
     {"object", "array", "string", "number", "boolean", "null"}},
    {"object", R"("{" space (string space ":" space value space ("," space string space ":" space value space)*)? "}")",
     {"space", "string", "value"}},
    {"array", R"("[" space (value space ("," space value space)*)? "]")", {"space", "value"}},
    {"date", R"([0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]))", {}},
    {"time",
     R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" ([0-5] [0-9] | "60") ("." [0-9]{1,9})? ([Zz] | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]))",
     {}},
    {"date-time", R"(date [Tt] time)", {"date", "time"}},
    {"uuid", R"([0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12})", {}},
    {"date-string", R"("\"" date "\"")", {"date"}},
    {"time-string", R"("\"" time "\"")", {"time"}},
    {"date-time-string", R"("\"" date-time "\"")", {"date-time"}},
    {"uuid-string", R"("\"" uuid "\"")", {"uuid"}},
};

// Keywords that constrain values in ways a context-free grammar here cannot (or does not yet)
// express; accepting them silently would let invalid output through.
const std::set<std::string> kUnsupportedAnyType = {
    "not", "if", "then", "else", "dependentSchemas", "unevaluatedProperties", "unevaluatedItems",
    "$dynamicRef", "$recursiveRef", "$recursiveAnchor"};

// Type-specific keywords: each type's supported and unsupported ones. Also used to infer the
// type of a schema without "type" (so {"pattern": "x"} is still refused, not ignored).
struct Family {
  const char* type;
  std::vector<std::string> supported;
  std::vector<std::string> unsupported;
};
const Family kFamilies[] = {
    {"object", {"properties", "required", "additionalProperties"},
     {"patternProperties", "minProperties", "maxProperties", "dependentRequired", "dependencies", "propertyNames"}},
    {"array", {"items", "prefixItems", "additionalItems", "minItems", "maxItems"},
     {"uniqueItems", "contains", "minContains", "maxContains"}},
    {"string", {"minLength", "maxLength", "format"}, {"pattern"}},
    {"number", {}, {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}},
};

const std::set<std::string> kLowerBounds = {"minLength", "minItems", "minimum", "exclusiveMinimum"};
const std::set<std::string> kUpperBounds = {"maxLength", "maxItems", "maximum", "exclusiveMaximum"};

std::string where(const std::string& path) { return path.empty() ? "the top level" : path; }

std::string ptr_escape(std::string_view s) {
  std::string out;
  for (char c : s) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? std::string(sep) : "") + parts[i];
  return out;
}

// Alternatives as one element that can be placed in a sequence.
std::string group(const std::vector<std::string>& alts) {
  return alts.size() == 1 ? alts[0] : "(" + join(alts, " | ") + ")";
}

// A GBNF literal for exact bytes (UTF-8 passes through; the engine decodes it).
std::string literal(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += {'\\', static_cast<char>(c)};
    else if (c == '\n' || c == '\r' || c == '\t') out += c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t";
    else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02X}", c);
    else out += static_cast<char>(c);
  }
  return out + "\"";
}

bool is_identifier(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// Rule name from a path-like hint: runs of anything outside [a-zA-Z0-9] become one '-'.
std::string sanitize(std::string_view hint) {
  std::string out;
  for (char c : hint) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (ok) out += c;
    else if (!out.empty() && out.back() != '-') out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  // Never end in "-<digits>": the engine names the rules it makes for groups and repetitions
  // "<rule>-<k>", so "tags-0" becomes "tags0".
  size_t dash = out.rfind('-');
  if (dash != std::string::npos && out.find_first_not_of("0123456789", dash + 1) == std::string::npos) out.erase(dash, 1);
  return out.empty() ? "x" : out;
}

std::string child(const std::string& hint, const std::string& part) {
  bool numeric = !part.empty() && part[0] >= '0' && part[0] <= '9';  // "0" alone would be a poor name
  return hint == "root" && !numeric ? part : hint + "-" + part;
}

json without(const json& s, std::initializer_list<const char*> keys) {
  json out = s;
  for (const char* k : keys) out.erase(k);
  return out;
}

// Keywords that constrain values (those supported and those refused); any other keyword is an
// annotation or unknown, and JSON Schema ignores unknown keywords (OpenAPI's "discriminator",
// "x-..." extensions).
bool is_constraint(const std::string& k) {
  static const std::set<std::string> known = [] {
    std::set<std::string> out(kUnsupportedAnyType);
    out.insert({"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "nullable"});
    for (const Family& f : kFamilies) {
      out.insert(f.supported.begin(), f.supported.end());
      out.insert(f.unsupported.begin(), f.unsupported.end());
    }
    return out;
  }();
  return known.count(k) > 0;
}

// Whether an object schema has a constraining keyword (then it must be honoured).
bool constrains(const json& s) {
  for (auto& [k, v] : s.items())
    if (is_constraint(k)) return true;
  return false;
}

std::vector<std::string> type_list(const json& t, const std::string& path) {
  static const std::set<std::string> known = {"string", "number", "integer", "boolean", "null", "object", "array"};
  std::vector<std::string> out;
  for (const json& x : t.is_array() ? t : json::array({t})) {
    if (!x.is_string()) fail("json schema at {}: \"type\" must be a string or an array of strings", where(path));
    if (!known.count(x.get<std::string>()))
      fail("json schema at {}: unknown type \"{}\" (known: string, number, integer, boolean, null, object, array)",
           where(path), x.get<std::string>());
    if (std::find(out.begin(), out.end(), x.get<std::string>()) == out.end()) out.push_back(x.get<std::string>());
  }
  if (out.empty()) fail("json schema at {}: \"type\" must not be an empty array", where(path));
  return out;
}

bool value_has_type(const json& v, const std::string& t) {
  if (t == "integer") return v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  return t == (v.is_number() ? "number" : v.is_boolean() ? "boolean" : v.type_name());  // type_name: "string", "null", ...
}

// A count keyword (minLength, maxItems, ...): a non-negative integer.
std::optional<uint64_t> count(const json& s, const char* key, const std::string& path) {
  if (!s.contains(key)) return std::nullopt;
  const json& v = s[key];
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number() && v.get<double>() >= 0 && std::floor(v.get<double>()) == v.get<double>() && v.get<double>() < 1e15)
    return static_cast<uint64_t>(v.get<double>());
  fail("json schema at {}: \"{}\" must be a non-negative integer", where(path), key);
}

// Postfix repetition of one element for [lo, hi] occurrences (hi empty: unbounded); ""
// when the element cannot occur at all, so the caller leaves it out.
std::string repeat(const std::string& elem, uint64_t lo, std::optional<uint64_t> hi) {
  if (hi && *hi == 0) return "";
  if (hi && lo == *hi) return lo == 1 ? elem : fmt::format("{}{{{}}}", elem, lo);
  if (!hi) return lo == 0 ? elem + "*" : lo == 1 ? elem + "+" : fmt::format("{}{{{},}}", elem, lo);
  if (lo == 0 && *hi == 1) return elem + "?";
  return fmt::format("{}{{{},{}}}", elem, lo, *hi);
}

// --- integer ranges: decimal strings between two bounds, digit position by digit position --

std::string digit_range(const std::string& a, const std::string& b) {  // same length, a <= b
  if (a == b) return literal(a);
  size_t n = a.size();
  if (n == 1) return fmt::format("[{}-{}]", a[0], b[0]);
  if (a[0] == b[0]) return literal(a.substr(0, 1)) + " " + digit_range(a.substr(1), b.substr(1));
  std::vector<std::string> alts;
  char lo = a[0], hi = b[0];
  std::string high;
  if (a.find_first_not_of('0', 1) != std::string::npos) {
    alts.push_back(literal(a.substr(0, 1)) + " " + digit_range(a.substr(1), std::string(n - 1, '9')));
    ++lo;
  }
  if (b.find_first_not_of('9', 1) != std::string::npos) {
    high = literal(b.substr(0, 1)) + " " + digit_range(std::string(n - 1, '0'), b.substr(1));
    --hi;
  }
  if (lo <= hi) alts.push_back(fmt::format("[{}-{}] [0-9]{{{}}}", lo, hi, n - 1));
  if (!high.empty()) alts.push_back(high);
  return group(alts);
}

std::string uint_range(uint64_t a, uint64_t b) {  // a <= b
  std::string sa = std::to_string(a), sb = std::to_string(b);
  if (sa.size() == sb.size()) return digit_range(sa, sb);
  std::vector<std::string> alts{digit_range(sa, std::string(sa.size(), '9'))};
  for (size_t d = sa.size() + 1; d < sb.size(); ++d) alts.push_back(fmt::format("[1-9] [0-9]{{{}}}", d - 1));
  alts.push_back(digit_range("1" + std::string(sb.size() - 1, '0'), sb));
  return group(alts);
}

std::string uint_at_least(uint64_t a) {  // up to 16 digits, like the plain integer rule
  std::string sa = std::to_string(a);
  std::vector<std::string> alts{digit_range(sa, std::string(sa.size(), '9'))};
  if (sa.size() < 16) alts.push_back(fmt::format("[1-9] [0-9]{{{},15}}", sa.size()));
  return group(alts);
}

std::string int_range(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  std::vector<std::string> alts;
  if (!lo || *lo < 0) {  // negatives: magnitudes from max(1, -hi) up to -lo
    uint64_t mlo = (hi && *hi < 0) ? static_cast<uint64_t>(-*hi) : 1;
    alts.push_back("\"-\" " + (lo ? uint_range(mlo, static_cast<uint64_t>(-*lo)) : uint_at_least(mlo)));
  }
  if (!hi || *hi >= 0) {
    uint64_t a = (lo && *lo > 0) ? static_cast<uint64_t>(*lo) : 0;
    alts.push_back(hi ? uint_range(a, static_cast<uint64_t>(*hi)) : uint_at_least(a));
  }
  return join(alts, " | ");
}

// Splits the JSON text of a key (without quotes) into units: one code point or one escape.
std::vector<std::string> key_units(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c == '\\' ? (s[i + 1] == 'u' ? 6 : 2) : c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

// A character for a [...] class: alphanumerics as they are, other ASCII as \xHH (safe for
// ] ^ - \), non-ASCII as raw UTF-8.
std::string class_char(const std::string& unit) {
  unsigned char c = static_cast<unsigned char>(unit[0]);
  if (unit.size() > 1 || std::isalnum(c)) return unit;
  return fmt::format("\\x{:02X}", c);
}

struct Depth {  // counts recursion, to stop a cycle with an error instead of a crash
  int& d;
  explicit Depth(int& x) : d(x) { ++d; }
  ~Depth() { --d; }
};

class Converter {
 public:
  explicit Converter(const json& root) : root_(root) {
    used_.insert("root");
    for (const Primitive& p : kPrimitives) used_.insert(p.name);
  }

  std::string convert() { return render(expr(root_, "root", "")); }

  std::string object_only() { return render(need("object")); }
  bool used_refs() const { return !refs_.empty(); }

 private:
  std::string render(const std::string& root_body) {
    std::string out = "root ::= " + root_body + "\n";
    for (auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    for (const Primitive& p : kPrimitives)
      if (needed_.count(p.name)) out += std::string(p.name) + " ::= " + p.body + "\n";
    return out;
  }

  // Everything a conversion adds, to undo a branch that turned out unsatisfiable (its rules
  // could reference a $ref rule whose definition was abandoned).
  struct Snapshot {
    size_t n_rules;
    std::set<std::string> used, needed;
    std::map<std::string, std::string> by_body, refs;
  };
  Snapshot snapshot() const { return {rules_.size(), used_, needed_, by_body_, refs_}; }
  void restore(Snapshot&& s) {
    rules_.resize(s.n_rules);
    std::tie(used_, needed_, by_body_, refs_) = std::tie(s.used, s.needed, s.by_body, s.refs);
  }

  // A building block, with the ones it uses; returns its name.
  std::string need(const std::string& name) {
    if (needed_.insert(name).second)
      for (const Primitive& p : kPrimitives)
        if (name == p.name)
          for (const char* d : p.deps) need(d);
    return name;
  }

  std::string fresh(const std::string& hint) {
    std::string base = sanitize(hint), name = base;
    // (a digit suffix, not "-<k>": see sanitize)
    bool digit_end = base.back() >= '0' && base.back() <= '9';
    for (int i = 1; used_.count(name); ++i) name = base + (digit_end ? "-v" : "") + std::to_string(i);
    used_.insert(name);
    return name;
  }

  // A rule for this body: an existing one with the same body, else a new one named by hint.
  std::string add_rule(const std::string& hint, const std::string& body) {
    if (is_identifier(body)) return body;
    if (auto it = by_body_.find(body); it != by_body_.end()) return it->second;
    std::string name = fresh(hint);
    rules_.emplace_back(name, body);
    by_body_[body] = name;
    return name;
  }

  std::string rule(const json& s, const std::string& hint, const std::string& path) {  // a rule name
    return add_rule(hint, expr(s, hint, path));
  }

  // The body of a rule matching schema s (a rule name, or alternatives of sequences).
  std::string expr(const json& s, const std::string& hint, const std::string& path) {
    Depth depth(depth_);
    if (depth_ > 256) fail("json schema at {}: nested too deeply (or an allOf/$ref cycle)", where(path));
    if (s.is_boolean()) {
      if (s.get<bool>()) return need("value");
      throw Unsatisfiable(fmt::format("json schema at {}: the schema `false` accepts no value", where(path)));
    }
    if (!s.is_object()) fail("json schema at {}: a schema must be an object or a boolean, not {}", where(path), s.type_name());
    for (auto& [k, v] : s.items())
      if (kUnsupportedAnyType.count(k))
        fail("json schema at {}: keyword \"{}\" is not supported (supported: type, enum, const, properties, required, "
             "additionalProperties, items, prefixItems, minItems, maxItems, minLength, maxLength, format, anyOf, oneOf, "
             "allOf, $ref to #/$defs); remove it and check that condition after generation", where(path), k);

    if (s.contains("allOf")) {
      const json& all = s["allOf"];
      if (!all.is_array() || all.empty()) fail("json schema at {}: \"allOf\" must be a non-empty array", where(path));
      json merged = without(s, {"allOf"});
      for (size_t i = 0; i < all.size(); ++i) merged = merge(merged, all[i], path + "/allOf/" + std::to_string(i));
      return expr(merged, hint, path);
    }
    if (s.contains("$ref")) {
      json rest = without(s, {"$ref"});
      if (constrains(rest)) return expr(merge(rest, json{{"$ref", s["$ref"]}}, path), hint, path);
      return ref_rule(s["$ref"], path);
    }
    if (s.contains("anyOf") && s.contains("oneOf"))
      fail("json schema at {}: \"anyOf\" and \"oneOf\" together are not supported; wrap one of them in \"allOf\"",
           where(path));
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      // oneOf is treated as anyOf: a value matching several alternatives is not excluded.
      const json& alts = s[key];
      if (!alts.is_array() || alts.empty()) fail("json schema at {}: \"{}\" must be a non-empty array", where(path), key);
      json rest = without(s, {key});
      bool merge_rest = constrains(rest);
      std::vector<std::string> parts;
      std::string first_reason;
      for (size_t i = 0; i < alts.size(); ++i) {
        std::string p = path + "/" + key + "/" + std::to_string(i);
        Snapshot snap = snapshot();
        try {
          json alt = merge_rest ? merge(rest, alts[i], p) : alts[i];
          std::string r = rule(alt, child(hint, std::to_string(i)), p);
          if (std::find(parts.begin(), parts.end(), r) == parts.end()) parts.push_back(r);
        } catch (const Unsatisfiable& e) {
          restore(std::move(snap));  // drop the rules the failed alternative had added
          if (first_reason.empty()) first_reason = e.what();
        }
      }
      if (parts.empty()) throw Unsatisfiable(first_reason);
      return join(parts, " | ");
    }
    if (s.contains("enum") || s.contains("const")) return enum_expr(s, path);

    std::vector<std::string> types;
    if (s.contains("type")) {
      types = type_list(s["type"], path);
    } else {
      for (const Family& f : kFamilies)
        for (auto& [k, v] : s.items())
          if ((std::count(f.supported.begin(), f.supported.end(), k) ||
               std::count(f.unsupported.begin(), f.unsupported.end(), k)) &&
              std::find(types.begin(), types.end(), f.type) == types.end())
            types.push_back(f.type);
      if (types.empty()) return need("value");
    }
    if (s.value("nullable", false) && std::find(types.begin(), types.end(), "null") == types.end()) types.push_back("null");
    if (std::count(types.begin(), types.end(), "number"))  // which already accepts every integer
      std::erase(types, "integer");
    if (types.size() == 1) return type_expr(s, types[0], hint, path);
    std::vector<std::string> parts;
    for (const std::string& t : types) parts.push_back(add_rule(child(hint, t), type_expr(s, t, hint, path)));
    return join(parts, " | ");
  }

  std::string enum_expr(const json& s, const std::string& path) {
    for (auto& [k, v] : s.items())
      if (is_constraint(k) && k != "enum" && k != "const" && k != "type" && k != "nullable")
        fail("json schema at {}: \"{}\" together with enum/const is not supported; list only the allowed values",
             where(path), k);
    if (s.contains("enum") && !s["enum"].is_array()) fail("json schema at {}: \"enum\" must be an array", where(path));
    std::vector<json> values;
    for (const json& v : s.contains("enum") ? s["enum"] : json::array({s["const"]}))
      if (!s.contains("const") || v == s["const"]) values.push_back(v);
    if (s.contains("type")) {
      std::vector<std::string> types = type_list(s["type"], path);
      if (s.value("nullable", false)) types.push_back("null");
      std::erase_if(values, [&](const json& v) {
        return std::none_of(types.begin(), types.end(), [&](const std::string& t) { return value_has_type(v, t); });
      });
    }
    std::vector<std::string> alts;
    for (const json& v : values) {
      std::string lit = literal(v.dump());  // compact JSON text, UTF-8 as is
      if (std::find(alts.begin(), alts.end(), lit) == alts.end()) alts.push_back(lit);
    }
    if (alts.empty())
      throw Unsatisfiable(fmt::format("json schema at {}: no value of enum/const satisfies the other keywords", where(path)));
    return join(alts, " | ");
  }

  void refuse_unsupported(const json& s, const std::string& type, const std::string& path) {
    for (const Family& f : kFamilies) {
      bool applies = type == f.type || (type == "integer" && std::string(f.type) == "number");
      if (!applies) continue;
      for (const std::string& k : f.unsupported) {
        if (!s.contains(k)) continue;
        if (type == "integer" && k != "multipleOf") continue;       // integer bounds are supported
        if (k == "uniqueItems" && s[k] == false) continue;          // no-op
        std::string supported = f.supported.empty() ? "none" : join(f.supported, ", ");
        if (type == "number") supported = "none; minimum/maximum work with \"type\": \"integer\"";
        fail("json schema at {}: keyword \"{}\" is not supported for type {} (supported: {}); remove it and check "
             "that condition after generation", where(path), k, type, supported);
      }
    }
  }

  std::string type_expr(const json& s, const std::string& t, const std::string& hint, const std::string& path) {
    refuse_unsupported(s, t, path);
    if (t == "string") return string_expr(s, path);
    if (t == "integer") return integer_expr(s, path);
    if (t == "number" || t == "boolean" || t == "null") return need(t);
    if (t == "object") return object_expr(s, hint, path);
    return array_expr(s, hint, path);  // type_list admits no other name
  }

  std::string string_expr(const json& s, const std::string& path) {
    std::optional<uint64_t> lo = count(s, "minLength", path), hi = count(s, "maxLength", path);
    if (!lo && !hi) {
      // Formats are annotations: known ones get a grammar, others are plain strings. With a
      // length bound the bound wins (still only valid strings, just not format-checked).
      std::string fmt_name = s.value("format", std::string());
      if (fmt_name == "date" || fmt_name == "time" || fmt_name == "date-time" || fmt_name == "uuid")
        return need(fmt_name + "-string");
      return need("string");
    }
    if (lo && hi && *lo > *hi)
      throw Unsatisfiable(fmt::format("json schema at {}: minLength {} is above maxLength {}", where(path), *lo, *hi));
    return "\"\\\"\" " + repeat(need("char"), lo.value_or(0), hi) + " \"\\\"\"";
  }

  std::string integer_expr(const json& s, const std::string& path) {
    std::optional<int64_t> lo, hi;
    auto num = [&](const char* key) -> std::optional<double> {
      if (!s.contains(key) || s[key].is_boolean()) return std::nullopt;
      if (!s[key].is_number()) fail("json schema at {}: \"{}\" must be a number", where(path), key);
      double v = s[key].get<double>();
      if (!(std::fabs(v) <= 1e18))
        fail("json schema at {}: \"{}\" {} is out of the supported range (+-1e18)", where(path), key, v);
      return v;
    };
    auto tighten_lo = [&](int64_t v) { lo = lo ? std::max(*lo, v) : v; };
    auto tighten_hi = [&](int64_t v) { hi = hi ? std::min(*hi, v) : v; };
    // Draft 4 spells exclusivity as a boolean next to minimum/maximum; later drafts as a number.
    bool ex_min = s.value("exclusiveMinimum", json(false)) == true;
    bool ex_max = s.value("exclusiveMaximum", json(false)) == true;
    auto floor = [](double v) { return static_cast<int64_t>(std::floor(v)); };
    auto ceil = [](double v) { return static_cast<int64_t>(std::ceil(v)); };
    if (auto v = num("minimum")) tighten_lo(ex_min ? floor(*v) + 1 : ceil(*v));
    if (auto v = num("maximum")) tighten_hi(ex_max ? ceil(*v) - 1 : floor(*v));
    if (auto v = num("exclusiveMinimum")) tighten_lo(floor(*v) + 1);
    if (auto v = num("exclusiveMaximum")) tighten_hi(ceil(*v) - 1);
    if (!lo && !hi) return need("integer");
    if (lo && hi && *lo > *hi)
      throw Unsatisfiable(fmt::format("json schema at {}: no integer lies between the bounds", where(path)));
    return int_range(lo, hi);
  }

  std::string object_expr(const json& s, const std::string& hint, const std::string& path) {
    const json* props = s.contains("properties") ? &s["properties"] : nullptr;
    if (props && !props->is_object()) fail("json schema at {}: \"properties\" must be an object", where(path));
    std::set<std::string> required;
    for (const json& r : s.value("required", json::array())) {
      if (!r.is_string() || !s["required"].is_array())
        fail("json schema at {}: \"required\" must be an array of names", where(path));
      if (!props || !props->contains(r.get<std::string>()))
        fail("json schema at {}: \"required\" names \"{}\", which is not in \"properties\"; add it to properties "
             "(with its schema) or drop it from required", where(path), r.get<std::string>());
      required.insert(r.get<std::string>());
    }
    // Extra keys: schema `true` (any value), a schema, or absent (none allowed).
    std::optional<json> extra_schema;
    if (s.contains("additionalProperties")) {
      const json& a = s["additionalProperties"];
      if (!a.is_boolean() && !a.is_object())
        fail("json schema at {}: \"additionalProperties\" must be a boolean or a schema", where(path));
      if (a != false) extra_schema = a;
    } else if (!props) {
      extra_schema = json(true);
    }
    if (!props && extra_schema == json(true)) return need("object");
    need("space");

    struct Item {
      std::string kv;
      bool required;
    };
    std::vector<Item> items;
    std::vector<std::string> names;
    if (props)
      for (auto& [name, sub] : props->items()) {
        names.push_back(name);
        std::string vh = child(hint, name), p = path + "/properties/" + ptr_escape(name);
        std::string val;
        Snapshot snap = snapshot();
        try {
          val = rule(sub, vh, p);
        } catch (const Unsatisfiable&) {
          if (required.count(name)) throw;
          restore(std::move(snap));
          continue;  // a property that cannot have any value must just be left out
        }
        std::string kv = add_rule(vh + "-kv", literal(json(name).dump()) + " space \":\" space " + val);
        items.push_back({kv, required.count(name) > 0});
      }
    std::string extra;  // the rule for one extra member, "" when none are allowed
    if (extra_schema) {
      std::string val = rule(*extra_schema, child(hint, "additional"), path + "/additionalProperties");
      std::string key = names.empty() ? need("string") : other_key(names, hint);
      extra = add_rule(child(hint, "additional-kv"), key + " space \":\" space " + val);
    }
    // Members in the listed order, each optional one possibly skipped: after the first member
    // written, every later one is preceded by its comma. rest[i]: members i.. after at least
    // one was written (rules, so the grammar stays linear in the number of properties).
    std::vector<std::string> rest(items.size() + 1);
    if (!extra.empty()) rest.back() = "(\",\" space " + extra + " space)*";
    for (size_t i = items.size(); i-- > 1;) {  // (rest[0] is never needed)
      std::string member = "\",\" space " + items[i].kv + " space";
      std::string body = items[i].required ? member : "(" + member + ")?";
      rest[i] = add_rule(items[i].kv + "-rest", body + (rest[i + 1].empty() ? "" : " " + rest[i + 1]));
    }
    auto then = [&](size_t i) { return rest[i].empty() ? std::string() : " " + rest[i]; };
    std::vector<std::string> firsts;  // the first member written: any optional one up to the first required one
    bool any_required = false;
    for (size_t i = 0; i < items.size() && !any_required; ++i) {
      firsts.push_back(items[i].kv + " space" + then(i + 1));
      any_required = items[i].required;
    }
    if (!any_required && !extra.empty()) firsts.push_back(extra + " space" + then(items.size()));
    if (firsts.empty()) return "\"{\" space \"}\"";
    return "\"{\" space (" + join(firsts, " | ") + ")" + (any_required ? "" : "?") + " \"}\"";
  }

  // A string key other than the listed names (so an extra member cannot repeat a listed one):
  // a trie over the names' JSON text; at each node the key may end (unless a name ends
  // there), continue along the trie, or leave it with any other character.
  std::string other_key(const std::vector<std::string>& names, const std::string& hint) {
    struct Node {
      std::map<std::string, size_t> kids;
      bool end = false;
    };
    std::vector<Node> nodes(1);
    for (const std::string& n : names) {
      std::string text = json(n).dump();
      size_t at = 0;
      for (const std::string& u : key_units(text.substr(1, text.size() - 2))) {
        auto it = nodes[at].kids.find(u);
        if (it == nodes[at].kids.end()) {
          nodes.emplace_back();
          it = nodes[at].kids.emplace(u, nodes.size() - 1).first;
        }
        at = it->second;
      }
      nodes[at].end = true;
    }
    need("char");
    std::string close = literal("\"");
    std::function<std::string(size_t)> gen = [&](size_t at) {
      std::vector<std::string> alts;
      if (!nodes[at].end) alts.push_back(close);
      std::string cls = R"([^"\\\x7F\x00-\x1F)";
      bool escape_kid = false;
      for (auto& [u, k] : nodes[at].kids) {
        alts.push_back(literal(u) + " " + gen(k));
        if (u[0] == '\\') escape_kid = true;
        else cls += class_char(u);
      }
      alts.push_back(cls + "] char* " + close);
      // Leaving the trie with an escape is only offered where no name continues with one
      // (stricter than needed for names with quotes or backslashes, never looser).
      if (!escape_kid) alts.push_back(need("escape") + " char* " + close);
      return add_rule(child(hint, "other-key"), join(alts, " | "));
    };
    return add_rule(child(hint, "other-key"), close + " " + gen(0));
  }

  std::string array_expr(const json& s, const std::string& hint, const std::string& path) {
    // The tuple (prefixItems; before 2020-12, items as an array) and the schema of later items.
    bool legacy = !s.contains("prefixItems") && s.contains("items") && s["items"].is_array();
    const std::string tuple_key = legacy ? "items" : "prefixItems", rest_key = legacy ? "additionalItems" : "items";
    json tuple = s.value(tuple_key, json::array());
    if (!tuple.is_array()) fail("json schema at {}: \"{}\" must be an array", where(path), tuple_key);
    json rest = s.value(rest_key, json(true));
    uint64_t k = tuple.size(), lo = count(s, "minItems", path).value_or(0);
    std::optional<uint64_t> hi = count(s, "maxItems", path);
    if (hi && lo > *hi)
      throw Unsatisfiable(fmt::format("json schema at {}: minItems {} is above maxItems {}", where(path), lo, *hi));
    // Tuple items are always all written (as far as maxItems allows): stricter than the schema,
    // which lets a shorter array through, but what a caller listing them means.
    uint64_t n_prefix = hi ? std::min(k, *hi) : k, rest_lo = lo > k ? lo - k : 0;
    std::optional<uint64_t> rest_hi;
    if (hi) rest_hi = *hi > k ? *hi - k : 0;
    if (k > 0 && !s.contains(rest_key)) rest_hi = rest_lo;  // only as many as minItems needs
    if (rest == false) {
      if (rest_lo > 0)
        throw Unsatisfiable(fmt::format("json schema at {}: minItems {} needs more items than the tuple has", where(path), lo));
      rest_hi = 0;
    }
    need("space");
    std::string body = "\"[\" space";
    for (uint64_t i = 0; i < n_prefix; ++i) {
      std::string r = rule(tuple[i], child(hint, std::to_string(i)), path + "/" + tuple_key + "/" + std::to_string(i));
      body += (i ? " \",\" space " : " ") + r + " space";
    }
    if (!rest_hi || *rest_hi > 0) {
      std::string r = rule(rest, child(hint, "item"), path + "/" + rest_key);
      std::string more = "(\",\" space " + r + " space)";
      if (n_prefix > 0) {
        body += " " + repeat(more, rest_lo, rest_hi);
      } else {
        std::optional<uint64_t> more_hi;
        if (rest_hi) more_hi = *rest_hi - 1;
        std::string tail = repeat(more, rest_lo > 0 ? rest_lo - 1 : 0, more_hi);
        std::string seq = r + " space" + (tail.empty() ? "" : " " + tail);
        body += rest_lo == 0 ? " (" + seq + ")?" : " " + seq;
      }
    }
    return body + " \"]\"";
  }

  // --- $ref and allOf ------------------------------------------------------------------------

  const json& resolve(const json& ref, const std::string& path) {
    if (!ref.is_string()) fail("json schema at {}: \"$ref\" must be a string", where(path));
    const std::string r = ref.get<std::string>();
    if (r.empty() || r[0] != '#' || (r.size() > 1 && r[1] != '/'))
      fail("json schema at {}: $ref \"{}\" cannot be resolved: only local JSON-pointer references such as "
           "\"#/$defs/Name\", \"#/definitions/Name\" or \"#\" are supported; inline the referenced schema",
           where(path), r);
    std::string ptr;  // percent-decoded (a URI fragment)
    for (size_t i = 1; i < r.size(); ++i) {
      bool hex = r[i] == '%' && i + 2 < r.size() && std::isxdigit(static_cast<unsigned char>(r[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(r[i + 2]));
      ptr += hex ? static_cast<char>(std::stoi(r.substr(i + 1, 2), nullptr, 16)) : r[i];
      if (hex) i += 2;
    }
    try {
      json::json_pointer jp(ptr);
      if (root_.contains(jp)) return root_.at(jp);
    } catch (const json::exception&) {
    }
    fail("json schema at {}: $ref \"{}\" points to nothing in this schema; define it under \"$defs\"", where(path), r);
  }

  std::string ref_rule(const json& ref, const std::string& path) {
    const json& target = resolve(ref, path);
    const std::string r = ref.get<std::string>();
    if (auto it = refs_.find(r); it != refs_.end()) return it->second;
    // The name is fixed before the target is converted, so a recursive reference inside it
    // (a tree's children) becomes a reference to this rule.
    std::string name = fresh(r.size() <= 1 ? "root-ref" : r.substr(r.rfind('/') + 1));
    refs_[r] = name;
    std::string body = expr(target, name, r.substr(1));
    rules_.emplace_back(name, body);
    return name;
  }

  // The schema with its top-level $ref replaced by the target (merged with the siblings).
  json deref(const json& s, const std::string& path) {
    json cur = s;
    for (int hops = 0; cur.is_object() && cur.contains("$ref"); ++hops) {
      if (hops > 32) fail("json schema at {}: $ref chain too long (a $ref cycle without structure)", where(path));
      json rest = without(cur, {"$ref"});
      const json& target = resolve(cur["$ref"], path);
      cur = constrains(rest) ? merge(target, rest, path) : target;
    }
    return cur;
  }

  static json conj(const json& x, const json& y) {
    if (x == true || x == y) return y;
    if (y == true) return x;
    if (x == false || y == false) return false;
    return json{{"allOf", json::array({x, y})}};
  }

  // One schema requiring both a and b (allOf): keywords combined where that is exact,
  // otherwise an error.
  json merge(const json& a0, const json& b0, const std::string& path) {
    Depth depth(merge_depth_);
    if (merge_depth_ > 64) fail("json schema at {}: allOf/$ref nested too deeply (a cycle?)", where(path));
    json a = deref(a0, path), b = deref(b0, path);
    if (a == false || b == false)
      throw Unsatisfiable(fmt::format("json schema at {}: allOf with the schema `false` accepts no value", where(path)));
    if (a == true) return b;
    if (b == true) return a;
    if (!a.is_object() || !b.is_object()) fail("json schema at {}: a schema must be an object or a boolean", where(path));
    json out = a;
    // additionalProperties of one side constrains the other side's properties it does not list.
    if (a.contains("properties") || b.contains("properties") || a.contains("additionalProperties") ||
        b.contains("additionalProperties")) {
      json pa = a.value("properties", json::object()), pb = b.value("properties", json::object());
      json xa = a.value("additionalProperties", json(true)), xb = b.value("additionalProperties", json(true));
      json props = json::object();
      for (auto& [k, v] : pa.items()) props[k] = conj(v, pb.contains(k) ? pb[k] : xb);
      for (auto& [k, v] : pb.items())
        if (!pa.contains(k)) props[k] = conj(xa, v);
      if (!props.empty()) out["properties"] = props;
      json x = conj(xa, xb);
      if (x == true) out.erase("additionalProperties");
      else out["additionalProperties"] = x;
    }
    for (auto& [k, v] : b.items()) {
      if (k == "properties" || k == "additionalProperties" || !is_constraint(k)) continue;
      json& o = out[k];  // null when a lacks k
      if (o.is_null() || o == v) o = v;
      else if (k == "required") {
        for (const json& r : v)
          if (std::find(o.begin(), o.end(), r) == o.end()) o.push_back(r);
      } else if (k == "type") {
        json both = json::array();
        for (const std::string& t : type_list(o, path))
          for (const std::string& u : type_list(v, path)) {
            std::string m = t == u ? t : t + u == "integernumber" || t + u == "numberinteger" ? "integer" : "";
            if (!m.empty() && std::find(both.begin(), both.end(), m) == both.end()) both.push_back(m);
          }
        if (both.empty())
          throw Unsatisfiable(fmt::format("json schema at {}: allOf combines types {} and {}, which share no value",
                                          where(path), o.dump(), v.dump()));
        o = both.size() == 1 ? both[0] : both;
      } else if (kLowerBounds.count(k) && o.is_number() && v.is_number()) {  // the tighter bound
        if (v.get<double>() > o.get<double>()) o = v;
      } else if (kUpperBounds.count(k) && o.is_number() && v.is_number()) {
        if (v.get<double>() < o.get<double>()) o = v;
      } else if (k == "items" || k == "additionalItems") {
        o = conj(o, v);
      } else if (k == "enum" && o.is_array() && v.is_array()) {
        json both = json::array();
        for (const json& x : o)
          if (std::find(v.begin(), v.end(), x) != v.end()) both.push_back(x);
        if (both.empty())
          throw Unsatisfiable(fmt::format("json schema at {}: allOf of enums with no common value", where(path)));
        o = both;
      } else if (k == "const") {
        throw Unsatisfiable(fmt::format("json schema at {}: allOf of two different consts", where(path)));
      } else if (k == "nullable") {
        o = o == true && v == true;
      } else {
        fail("json schema at {}: allOf combines two different values of \"{}\", which is not supported; "
             "merge those subschemas by hand", where(path), k);
      }
    }
    return out;
  }

  const json& root_;
  std::vector<std::pair<std::string, std::string>> rules_;  // in order of definition
  std::set<std::string> used_;                               // rule names taken
  std::set<std::string> needed_;                             // building blocks used
  std::map<std::string, std::string> by_body_;               // body -> rule, to share rules
  std::map<std::string, std::string> refs_;                  // $ref -> its rule
  int depth_ = 0, merge_depth_ = 0;
};

}  // namespace

std::string json_schema_to_grammar(const nlohmann::ordered_json& schema) {
  Converter c(schema);
  try {
    std::string gbnf = c.convert();
    // Only a $ref cycle with nothing consumed in between (a ::= a | ...) makes the output
    // left-recursive (every other recursion goes through a bracket): say so here, rather than
    // leave the caller a grammar error about rules it never wrote.
    try {
      if (c.used_refs()) Grammar::parse(gbnf);
    } catch (const Error& e) {
      fail("json schema: it yields an unusable grammar ({}); usually a $ref that refers back to itself before any "
           "object, array or literal", e.what());
    }
    return gbnf;
  } catch (const Unsatisfiable& e) {
    throw Error(e.what());  // callers see a plain slm::Error
  } catch (const nlohmann::json::exception& e) {  // a keyword of the wrong JSON type
    fail("json schema: {}", e.what());
  }
}

std::string json_object_grammar() {
  Converter c(nlohmann::ordered_json::object());
  return c.object_only();
}

std::shared_ptr<const Grammar> json_schema_grammar(const nlohmann::ordered_json& schema) {
  return Grammar::parse(json_schema_to_grammar(schema));
}

std::shared_ptr<const Grammar> json_schema_grammar(std::string_view schema_text) {
  nlohmann::ordered_json schema;
  try {
    schema = nlohmann::ordered_json::parse(schema_text);
  } catch (const nlohmann::json::exception& e) {
    fail("not valid JSON: {}", e.what());
  }
  return json_schema_grammar(schema);
}

}  // namespace slm
