#include "sampling/grammar.h"

#include <algorithm>
#include <functional>
#include <map>

#include "core/error.h"

namespace slm {

using E = GrammarElement;

// ---- parsing -------------------------------------------------------------------------------

// Recursive descent over the text. A rule's body runs until the next `name ::=` or the end,
// so rules may span lines freely (llama.cpp ends a rule at a newline outside parentheses; every
// grammar it reads means the same here).
class GrammarParser {
 public:
  explicit GrammarParser(std::string_view text) : src_(text) {}

  std::shared_ptr<const Grammar> run(std::string_view start_rule) {
    skip_space();
    if (pos_ == src_.size()) fail("grammar: the text is empty: write at least `root ::= ...`");
    while (pos_ < src_.size()) parse_rule();
    for (size_t id = 0; id < g_.rules_.size(); ++id)
      if (g_.rules_[id].empty())
        fail("grammar: rule `{}` is used (line {}) but never defined", g_.names_[id], line_at(first_use_[id]));
    auto it = ids_.find(std::string(start_rule));
    if (it == ids_.end()) fail("grammar: no `{}` rule: the grammar starts there, so define it", start_rule);
    g_.start_ = it->second;
    check_left_recursion();
    return std::make_shared<const Grammar>(std::move(g_));
  }

 private:
  [[noreturn]] void error_here(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail("grammar: line {} column {}: {}", line, col, what);
  }
  size_t line_at(size_t pos) const {
    return static_cast<size_t>(std::count(src_.begin(), src_.begin() + static_cast<std::ptrdiff_t>(pos), '\n')) + 1;
  }

  bool at_end() const { return pos_ >= src_.size(); }
  char peek(size_t ahead = 0) const { return pos_ + ahead < src_.size() ? src_[pos_ + ahead] : '\0'; }

  void skip_space() {
    while (!at_end()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else {
        break;
      }
    }
  }
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
  }
  std::string_view name_at(size_t p) const {
    size_t e = p;
    while (e < src_.size() && is_name_char(src_[e])) ++e;
    return src_.substr(p, e - p);
  }
  // Whether a rule definition (`name ::=`) starts at the current position.
  bool at_definition() const {
    const std::string_view n = name_at(pos_);
    if (n.empty()) return false;
    size_t p = pos_ + n.size();
    while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n' || src_[p] == '\r')) ++p;
    return src_.substr(p, 3) == "::=";
  }

  uint32_t rule_id(std::string_view name) {
    auto [it, added] = ids_.try_emplace(std::string(name), static_cast<uint32_t>(g_.rules_.size()));
    if (added) {
      g_.rules_.emplace_back();
      g_.names_.emplace_back(name);
      first_use_.push_back(pos_);  // the line is counted only for an error
    }
    return it->second;
  }
  // A rule for a group or a repetition, named <rule>_<k>: rule names written in a grammar
  // cannot hold "_" (as in llama.cpp), so these never clash with one defined later. The
  // counter per rule keeps x{0,4000} linear.
  uint32_t new_rule(const std::string& base) {
    const std::string name = base + "_" + std::to_string(++generated_[base]);
    const auto id = static_cast<uint32_t>(g_.rules_.size());
    ids_.emplace(name, id);
    g_.rules_.emplace_back();
    g_.names_.push_back(name);
    first_use_.push_back(0);
    return id;
  }

  void parse_rule() {
    const std::string_view name = name_at(pos_);
    if (name.empty()) error_here(fmt::format("expected a rule name, found `{}`", peek()));
    const uint32_t id = rule_id(name);
    if (!g_.rules_[id].empty()) error_here(fmt::format("rule `{}` is defined twice", name));
    pos_ += name.size();
    skip_space();
    if (src_.substr(pos_, 3) != "::=") error_here(fmt::format("expected `::=` after rule name `{}`", name));
    pos_ += 3;
    std::vector<E> body;
    parse_alternatives(std::string(name), body, false);
    g_.rules_[id] = std::move(body);
  }

  // alternatives := sequence ('|' sequence)*; appends them to out ending with End.
  void parse_alternatives(const std::string& rule, std::vector<E>& out, bool in_group) {
    for (;;) {
      parse_sequence(rule, out, in_group);
      skip_space();
      if (peek() == '|') {
        ++pos_;
        out.push_back({E::Alt, 0});
        continue;
      }
      break;
    }
    out.push_back({E::End, 0});
  }

  void parse_sequence(const std::string& rule, std::vector<E>& out, bool in_group) {
    size_t last_start = out.size();  // where the last symbol's elements begin
    bool have_last = false;
    for (;;) {
      skip_space();
      if (at_end()) break;
      const char c = peek();
      if (c == '|' || (c == ')' && in_group)) break;
      if (c == ')') error_here("`)` without a matching `(`");
      if (!in_group && at_definition()) break;
      const size_t sym = out.size();
      if (c == '"') {
        ++pos_;
        while (peek() != '"') {
          if (at_end() || peek() == '\n') error_here("unterminated string literal: close it with \"");
          out.push_back({E::Char, read_char()});
        }
        ++pos_;
      } else if (c == '[') {
        parse_class(out);
      } else if (c == '.') {
        ++pos_;
        out.push_back({E::CharAny, 0});
      } else if (c == '(') {
        // The parser recurses per group: bound it, so a body of a million "(" is an error, not a
        // stack overflow.
        if (++group_depth_ > kMaxGroupDepth) error_here(fmt::format("groups nested deeper than {}", kMaxGroupDepth));
        ++pos_;
        const uint32_t sub = new_rule(rule);
        std::vector<E> body;
        parse_alternatives(rule, body, true);
        g_.rules_[sub] = std::move(body);
        skip_space();
        if (peek() != ')') error_here("expected `)` to close the group");
        ++pos_;
        --group_depth_;
        out.push_back({E::RuleRef, sub});
      } else if (is_name_char(c)) {
        const std::string_view n = name_at(pos_);
        out.push_back({E::RuleRef, rule_id(n)});
        pos_ += n.size();
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (!have_last) error_here(fmt::format("`{}` has nothing before it to repeat", c));
        ++pos_;
        int lo = 0, hi = -1;
        if (c == '+') lo = 1;
        if (c == '?') hi = 1;
        if (c == '{') parse_braces(lo, hi);
        repeat(rule, out, last_start, lo, hi);
        continue;  // a repetition is itself the last symbol (a{2}? is legal)
      } else {
        error_here(fmt::format("unexpected character `{}`", c));
      }
      last_start = sym;
      have_last = true;
    }
  }

  void parse_braces(int& lo, int& hi) {
    auto number = [&]() {
      skip_space();
      if (!(peek() >= '0' && peek() <= '9')) error_here("expected a number in {m,n}");
      long v = 0;
      while (peek() >= '0' && peek() <= '9') {
        v = v * 10 + (peek() - '0');
        if (v > 10000) error_here("repetition count above 10000");
        ++pos_;
      }
      skip_space();
      return static_cast<int>(v);
    };
    lo = number();
    if (peek() == '}') {
      hi = lo;
    } else if (peek() == ',') {
      ++pos_;
      skip_space();
      hi = peek() == '}' ? -1 : number();
    } else {
      error_here("expected `,` or `}` in {m,n}");
    }
    if (peek() != '}') error_here("expected `}` to close {m,n}");
    ++pos_;
    if (hi >= 0 && hi < lo) error_here(fmt::format("{{{},{}}}: the maximum is below the minimum", lo, hi));
  }

  // Rewrites the symbol at out[start..] as lo..hi (hi < 0: unbounded) repetitions of it, with
  // helper rules that are right-recursive (never left: the matcher expands rules eagerly).
  void repeat(const std::string& rule, std::vector<E>& out, size_t start, int lo, int hi) {
    std::vector<E> sym(out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
    out.resize(start);
    if (sym.size() > 1) {  // one element to copy: a rule of its own
      const uint32_t r = new_rule(rule);
      sym.push_back({E::End, 0});
      g_.rules_[r] = std::move(sym);
      sym = {{E::RuleRef, r}};
    }
    // A class is several elements but one symbol: it was wrapped above. Copies are now cheap.
    for (int i = 0; i < lo; ++i) out.insert(out.end(), sym.begin(), sym.end());
    if (hi < 0) {  // star ::= sym star | (empty)
      const uint32_t r = new_rule(rule);
      std::vector<E> body = sym;
      body.push_back({E::RuleRef, r});
      body.push_back({E::Alt, 0});
      body.push_back({E::End, 0});
      g_.rules_[r] = std::move(body);
      out.push_back({E::RuleRef, r});
    } else if (hi > lo) {  // opt_k ::= sym opt_{k-1} | (empty), opt_1 ::= sym | (empty)
      uint32_t prev = 0;
      bool have_prev = false;
      for (int k = 1; k <= hi - lo; ++k) {
        const uint32_t r = new_rule(rule);
        std::vector<E> body = sym;
        if (have_prev) body.push_back({E::RuleRef, prev});
        body.push_back({E::Alt, 0});
        body.push_back({E::End, 0});
        g_.rules_[r] = std::move(body);
        prev = r;
        have_prev = true;
      }
      out.push_back({E::RuleRef, prev});
    }
    if (lo == 0 && hi == 0) {
      // x{0}: matches nothing, which is the empty sequence; nothing to emit.
    }
  }

  void parse_class(std::vector<E>& out) {
    ++pos_;  // '['
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    bool first = true;
    while (peek() != ']') {
      if (at_end() || peek() == '\n') error_here("unterminated character class: close it with ]");
      const uint32_t lo = read_char();
      out.push_back({first ? (negated ? E::CharNot : E::Char) : E::CharAlt, lo});
      first = false;
      if (peek() == '-' && peek(1) != ']' && pos_ + 1 < src_.size()) {
        ++pos_;
        const uint32_t hi = read_char();
        if (hi < lo) error_here(fmt::format("range U+{:04X}-U+{:04X} runs backwards", lo, hi));
        out.push_back({E::CharRangeUpper, hi});
      }
    }
    if (first && !negated) error_here("empty character class [] matches nothing");
    if (first) out.push_back({E::CharNot, 0x110000});  // [^]: any character
    ++pos_;  // ']'
  }

  // One character of a literal or class: an escape or a UTF-8 sequence.
  uint32_t read_char() {
    const auto b = static_cast<uint8_t>(peek());
    if (b == '\\') {
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case 'n': return '\n';
        case 't': return '\t';
        case 'r': return '\r';
        case '\\': return '\\';
        case '"': return '"';
        case '[': return '[';
        case ']': return ']';
        case '-': return '-';
        case '^': return '^';
        case 'x': return read_hex(2);
        case 'u': return read_hex(4);
        case 'U': return read_hex(8);
        default: --pos_; error_here(fmt::format("unknown escape `\\{}`", e));
      }
    }
    int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || pos_ + static_cast<size_t>(len) > src_.size()) error_here("invalid UTF-8 in the grammar text");
    uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (int i = 1; i < len; ++i) {
      const auto c = static_cast<uint8_t>(src_[pos_ + static_cast<size_t>(i)]);
      if ((c & 0xC0) != 0x80) error_here("invalid UTF-8 in the grammar text");
      cp = (cp << 6) | (c & 0x3F);
    }
    pos_ += static_cast<size_t>(len);
    return cp;
  }
  uint32_t read_hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = peek();
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) error_here(fmt::format("expected {} hex digits in the escape", digits));
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > 0x10FFFF) error_here(fmt::format("escape U+{:X} is past the last Unicode code point", v));
    return v;
  }

  // A rule that can reach itself before consuming a character would make the matcher expand
  // forever: refuse it here, naming the cycle.
  void check_left_recursion() {
    const size_t n = g_.rules_.size();
    std::vector<char> nullable(n, 0);
    // Fixed point: a rule is nullable if some alternative is all nullable rule refs.
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        bool alt_ok = true;
        for (const E& e : g_.rules_[r]) {
          if (e.type == E::End || e.type == E::Alt) {
            if (alt_ok) {
              nullable[r] = 1;
              changed = true;
              break;
            }
            alt_ok = true;
          } else if (e.type != E::RuleRef || !nullable[e.value]) {
            alt_ok = false;
          }
        }
      }
    }
    // left[r]: the rules r can start with (through nullable prefixes).
    std::vector<std::vector<uint32_t>> left(n);
    for (size_t r = 0; r < n; ++r) {
      bool at_start = true;
      for (const E& e : g_.rules_[r]) {
        if (e.type == E::End || e.type == E::Alt) {
          at_start = true;
        } else if (at_start) {
          if (e.type == E::RuleRef) {
            left[r].push_back(e.value);
            at_start = nullable[e.value] != 0;
          } else {
            at_start = false;
          }
        }
      }
    }
    // Depth-first with an explicit stack (a chain of 100k rules must not overflow ours).
    std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<std::pair<uint32_t, size_t>> path;  // rule, next of its left[] to visit
    for (uint32_t root = 0; root < n; ++root) {
      if (color[root] != 0) continue;
      color[root] = 1;
      path.push_back({root, 0});
      while (!path.empty()) {
        auto& [r, i] = path.back();
        if (i == left[r].size()) {
          color[r] = 2;
          path.pop_back();
          continue;
        }
        const uint32_t s = left[r][i++];
        if (color[s] == 1) {
          std::string cycle;
          auto from = std::find_if(path.begin(), path.end(), [&](const auto& e) { return e.first == s; });
          for (auto it = from; it != path.end(); ++it) cycle += g_.names_[it->first] + " -> ";
          cycle += g_.names_[s];
          fail("grammar: rule `{}` is left-recursive ({}): rewrite it to consume a character before "
               "recursing, e.g. `list ::= item (\",\" item)*`", g_.names_[s], cycle);
        }
        if (color[s] == 0) {
          color[s] = 1;
          path.push_back({s, 0});
        }
      }
    }
  }

  std::string_view src_;
  size_t pos_ = 0;
  Grammar g_;
  std::map<std::string, uint32_t, std::less<>> ids_;
  std::vector<size_t> first_use_;  // text position of each rule's first mention
  std::map<std::string, int> generated_;
  static constexpr int kMaxGroupDepth = 256;
  int group_depth_ = 0;
};

std::shared_ptr<const Grammar> Grammar::parse(std::string_view text, std::string_view start_rule) {
  auto g = GrammarParser(text).run(start_rule);
  GrammarState probe(g);  // the start's expansion hits the limits below now, not mid-generation
  return g;
}

// ---- matching ------------------------------------------------------------------------------

namespace {

bool is_end(const E* p) { return p->type == E::End || p->type == E::Alt; }

// Whether the class starting at p contains cp; *after gets the element past the class.
bool match_char(const E* p, uint32_t cp, const E** after) {
  bool found = false;
  const bool positive = p->type == E::Char;
  if (p->type == E::CharAny) {
    *after = p + 1;
    return true;
  }
  do {
    if (p[1].type == E::CharRangeUpper) {
      found = found || (p->value <= cp && cp <= p[1].value);
      p += 2;
    } else {
      found = found || p->value == cp;
      p += 1;
    }
  } while (p->type == E::CharAlt);
  *after = p;
  return found == positive;
}

// Whether the class at p admits some code point in [lo, hi].
bool match_range(const E* p, uint32_t lo, uint32_t hi) {
  if (p->type == E::CharAny) return true;
  const bool positive = p->type == E::Char;
  bool intersects = false, covers = false;
  do {
    uint32_t a = p->value, b = a;
    if (p[1].type == E::CharRangeUpper) {
      b = p[1].value;
      p += 2;
    } else {
      p += 1;
    }
    intersects = intersects || (a <= hi && lo <= b);
    covers = covers || (a <= lo && hi <= b);
  } while (p->type == E::CharAlt);
  return positive ? intersects : !covers;
}

using Cursor = GrammarCursor;

// Bounds on what one step may build: an ambiguous grammar multiplies stacks, and a chain of
// rules that each start with the next nests the expansion; both are errors rather than a
// server thread lost to them (or its stack overflowed).
constexpr size_t kMaxStacks = 4096;
constexpr int kMaxExpandDepth = 400;  // real grammars nest tens; ASan frames must fit 8 MiB too

// Appends stack (bottom to top) to out unless out already holds it.
void add_stack(Cursor& out, const std::vector<const E*>& stack) {
  const size_t n = stack.size();
  for (size_t i = 0, begin = 0; i < out.ends.size(); begin = out.ends[i++]) {
    if (out.ends[i] - begin == n && std::equal(stack.begin(), stack.end(), out.elems.begin() + static_cast<std::ptrdiff_t>(begin)))
      return;
  }
  if (out.ends.size() >= kMaxStacks)
    fail("grammar: more than {} ways through the grammar at once: it is too ambiguous (alternatives that "
         "match the same text, repeated); make the alternatives start differently", kMaxStacks);
  out.elems.insert(out.elems.end(), stack.begin(), stack.end());
  out.ends.push_back(static_cast<uint32_t>(out.elems.size()));
}

// Expands stack until its top is a character element (or it is empty: the text may end),
// adding every resulting stack to out. stack is restored before returning.
void expand(const Grammar& g, std::vector<const E*>& stack, Cursor& out, int depth = 0) {
  if (stack.empty() || stack.back()->type != E::RuleRef) {
    add_stack(out, stack);
    return;
  }
  if (depth > kMaxExpandDepth)
    fail("grammar: more than {} rules begin one inside another before a character: flatten the rule chain",
         kMaxExpandDepth);
  const E* top = stack.back();
  stack.pop_back();
  const bool has_next = !is_end(top + 1);
  if (has_next) stack.push_back(top + 1);
  const E* alt = g.rules()[top->value].data();
  for (;;) {
    if (!is_end(alt)) {
      stack.push_back(alt);
      expand(g, stack, out, depth + 1);
      stack.pop_back();
    } else {
      expand(g, stack, out, depth + 1);  // an empty alternative: go on with what follows
    }
    while (!is_end(alt)) ++alt;
    if (alt->type == E::End) break;
    ++alt;  // past Alt
  }
  if (has_next) stack.pop_back();
  stack.push_back(top);
}

// The stacks of c after code point cp, into out (cleared first; empty: refused).
void step(const Grammar& g, const Cursor& c, uint32_t cp, Cursor& out) {
  thread_local std::vector<const E*> stack;
  out.elems.clear();
  out.ends.clear();
  for (size_t i = 0, begin = 0; i < c.ends.size(); begin = c.ends[i++]) {
    if (c.ends[i] == begin) continue;  // an ended stack takes no more characters
    const E* after = nullptr;
    if (!match_char(c.elems[c.ends[i] - 1], cp, &after)) continue;
    stack.assign(c.elems.begin() + static_cast<std::ptrdiff_t>(begin), c.elems.begin() + c.ends[i] - 1);
    if (!is_end(after)) stack.push_back(after);
    expand(g, stack, out);
  }
}

// The smallest code point a UTF-8 sequence of each length may hold: anything below is an
// overlong form ("{" as F0 80 81 BB), which byte-fallback tokens could otherwise spell and
// which no JSON parser accepts.
constexpr uint32_t kMinOfLength[5] = {0, 0, 0x80, 0x800, 0x10000};

// Whether some stack of c could accept a code point that starts with the partial sequence
// `value` (len bytes read, left still to come).
bool partial_possible(const Cursor& c, uint32_t value, int left, int len) {
  const int shift = 6 * left;
  uint32_t lo = value << shift;
  const uint32_t hi = std::min<uint32_t>(lo | ((1u << shift) - 1), 0x10FFFF);
  lo = std::max(lo, kMinOfLength[len + left]);
  if (lo > hi) return false;
  for (size_t i = 0; i < c.n_stacks(); ++i)
    if (!c.stack_empty(i) && match_range(c.top(i), lo, hi)) return true;
  return false;
}

// Moves c on by code point cp; false (c untouched) when refused.
bool take_code_point(const Grammar& g, Cursor& c, uint32_t cp) {
  thread_local Cursor next;
  step(g, c, cp, next);
  if (next.ends.empty()) return false;
  std::swap(c.elems, next.elems);  // the old arrays stay with `next` for the next step
  std::swap(c.ends, next.ends);
  c.partial_value = 0;
  c.partial_left = 0;
  c.partial_len = 0;
  return true;
}

}  // namespace

GrammarState::GrammarState(std::shared_ptr<const Grammar> g) : g_(std::move(g)) {
  // The start rule as if referenced from a rule of its own: expand() then lays out every
  // alternative down to its first character (the reference itself is not kept in a stack).
  const E start_ref[2] = {{E::RuleRef, g_->start()}, {E::End, 0}};
  std::vector<const E*> stack = {&start_ref[0]};
  expand(*g_, stack, c_, /*depth=*/-1);  // the made-up reference is not a level of the grammar
}

bool GrammarState::push_byte(const Grammar& g, Cursor& c, uint8_t b) {
  if (c.partial_left == 0) {
    if (b < 0x80) return take_code_point(g, c, b);
    const int left = (b >> 5) == 0x6 ? 1 : (b >> 4) == 0xE ? 2 : (b >> 3) == 0x1E ? 3 : -1;
    if (left < 0) return false;  // a continuation byte with no lead, or not UTF-8 at all
    const uint32_t v = b & (left == 1 ? 0x1Fu : left == 2 ? 0x0Fu : 0x07u);
    if (!partial_possible(c, v, left, 1)) return false;
    c.partial_value = v;
    c.partial_left = left;
    c.partial_len = 1;
    return true;
  }
  if ((b & 0xC0) != 0x80) return false;
  const uint32_t v = (c.partial_value << 6) | (b & 0x3F);
  if (c.partial_left == 1) {
    if (v < kMinOfLength[c.partial_len + 1] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
    return take_code_point(g, c, v);
  }
  if (!partial_possible(c, v, c.partial_left - 1, c.partial_len + 1)) return false;
  c.partial_value = v;
  --c.partial_left;
  ++c.partial_len;
  return true;
}

bool GrammarState::advance(std::string_view bytes) {
  Cursor c = c_;
  for (char ch : bytes)
    if (!push_byte(*g_, c, static_cast<uint8_t>(ch))) return false;
  c_ = std::move(c);
  return true;
}

bool GrammarState::can_end() const {
  if (c_.partial_left != 0) return false;
  for (size_t i = 0; i < c_.n_stacks(); ++i)
    if (c_.stack_empty(i)) return true;
  return false;
}

bool GrammarState::must_end() const {
  if (c_.partial_left != 0) return false;
  for (size_t i = 0; i < c_.n_stacks(); ++i)
    if (!c_.stack_empty(i)) return false;
  return true;
}

// ---- vocabulary ----------------------------------------------------------------------------

GrammarVocab::GrammarVocab(const std::vector<std::string>& pieces, const std::vector<int32_t>& eog_ids)
    : pieces_(pieces), eog_(eog_ids) {
  std::sort(eog_.begin(), eog_.end());
  // Tokens with text, sorted by it: every trie node is then a contiguous range of them, and
  // its children the runs of equal bytes at the node's depth.
  std::vector<int32_t> order;
  for (size_t i = 0; i < pieces_.size(); ++i)
    if (!pieces_[i].empty() && !is_eog(static_cast<int32_t>(i))) order.push_back(static_cast<int32_t>(i));
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return pieces_[static_cast<size_t>(a)] < pieces_[static_cast<size_t>(b)]; });
  struct Pending {
    uint32_t node;
    size_t lo, hi, depth;
  };
  nodes_.push_back({});
  std::vector<Pending> queue{{0, 0, order.size(), 0}};
  for (size_t qi = 0; qi < queue.size(); ++qi) {
    const Pending p = queue[qi];
    size_t i = p.lo;
    while (i < p.hi && pieces_[static_cast<size_t>(order[i])].size() == p.depth) nodes_[p.node].tokens.push_back(order[i++]);
    const auto first = static_cast<uint32_t>(nodes_.size());
    uint16_t count = 0;
    while (i < p.hi) {
      const auto byte = static_cast<uint8_t>(pieces_[static_cast<size_t>(order[i])][p.depth]);
      size_t j = i;
      while (j < p.hi && static_cast<uint8_t>(pieces_[static_cast<size_t>(order[j])][p.depth]) == byte) ++j;
      Node child;
      child.byte = byte;
      nodes_.push_back(std::move(child));
      queue.push_back({static_cast<uint32_t>(nodes_.size() - 1), i, j, p.depth + 1});
      ++count;
      i = j;
    }
    nodes_[p.node].first_child = first;
    nodes_[p.node].n_children = count;
  }
}

bool GrammarVocab::is_eog(int32_t id) const { return std::binary_search(eog_.begin(), eog_.end(), id); }

bool GrammarVocab::allows(const GrammarState& s, int32_t id) const {
  if (id < 0 || id >= n_vocab()) return false;
  if (is_eog(id)) return s.can_end();
  const std::string& p = pieces_[static_cast<size_t>(id)];
  if (p.empty()) return false;
  thread_local GrammarCursor c;
  c = s.cursor();
  for (char ch : p)
    if (!GrammarState::push_byte(s.grammar(), c, static_cast<uint8_t>(ch))) return false;
  return true;
}

// Depth-first over the trie, one cursor per depth (levels[d] after the first d bytes), reused
// from node to node so that the walk does not allocate once they have grown.
void GrammarVocab::walk(const Grammar& g, uint32_t node, size_t depth, std::vector<GrammarCursor>& levels,
                        std::vector<uint8_t>& allowed) const {
  const Node& n = nodes_[node];
  if (levels.size() < depth + 2) levels.resize(depth + 2);
  for (uint32_t c = n.first_child; c < n.first_child + n.n_children; ++c) {
    GrammarCursor& t = levels[depth + 1];
    t = levels[depth];
    if (!GrammarState::push_byte(g, t, nodes_[c].byte)) continue;  // the whole subtree shares this prefix
    for (int32_t id : nodes_[c].tokens) allowed[static_cast<size_t>(id)] = 1;
    if (nodes_[c].n_children) walk(g, c, depth + 1, levels, allowed);
  }
}

void GrammarVocab::allowed(const GrammarState& s, std::vector<uint8_t>& allowed) const {
  allowed.assign(pieces_.size(), 0);
  thread_local std::vector<GrammarCursor> levels;
  if (levels.empty()) levels.resize(1);
  levels[0] = s.cursor();
  walk(s.grammar(), 0, 0, levels, allowed);
  if (s.can_end())
    for (int32_t id : eog_)
      if (id >= 0 && id < n_vocab()) allowed[static_cast<size_t>(id)] = 1;
}

void GrammarCursor::key(std::string& out) const {
  out.clear();
  auto put = [&out](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  const int partial[3] = {static_cast<int>(partial_value), partial_left, partial_len};
  put(partial, sizeof(partial));
  put(ends.data(), ends.size() * sizeof(uint32_t));
  put(elems.data(), elems.size() * sizeof(const GrammarElement*));
}

}  // namespace slm
