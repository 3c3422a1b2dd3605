#include "chat/jinja_lexer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string_view>

#include "chat/jinja.h"
#include "chat/jinja_unicode.h"
#include "chat/jinja_value.h"

namespace slm::chat::jinja {

namespace {

// Operators, longest first (Jinja matches the longest).
constexpr const char* kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*",
                                      "%",  "~",  "[",  "]",  "(",  ")",  "{", "}", ">", "<",
                                      "=",  ".",  ":",  "|",  ",",  ";"};

bool ascii_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool ascii_digit(unsigned char c) { return c >= '0' && c <= '9'; }

int count_newlines(std::string_view s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

class Lexer {
 public:
  explicit Lexer(const std::string& source) {
    // Normalize \r\n and \r to \n, then drop one trailing newline.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    while (pos_ < src_.size()) root();
    Token eof;
    eof.type = TokenType::Eof;
    eof.line = line_;
    out_.push_back(std::move(eof));
    return std::move(out_);
  }

 private:
  [[noreturn]] void error(const std::string& msg) const { throw TemplateError(msg, line_); }

  // Byte length of the Python-\s whitespace character at i, or 0.
  size_t space_at(size_t i) const {
    if (i >= src_.size()) return 0;
    char32_t c = 0;
    const size_t n = utf8::decode(src_, i, c);
    return utf8::is_space(c) ? n : 0;
  }

  size_t skip_spaces(size_t i) const {
    while (size_t n = space_at(i)) i += n;
    return i;
  }

  bool all_space(std::string_view s) const {
    if (s.empty()) return false;  // `\s+` needs at least one character
    char32_t c = 0;
    for (size_t i = 0; i < s.size();) {
      i += utf8::decode(s, i, c);
      if (!utf8::is_space(c)) return false;
    }
    return true;
  }

  std::string rstrip(std::string_view s) const {
    return utf8::strip(s, nullptr, /*left=*/false, /*right=*/true);
  }

  bool starts(size_t i, std::string_view lit) const {
    return src_.compare(i, lit.size(), lit) == 0;
  }

  void emit(TokenType type, std::string value, int line) {
    Token t;
    t.type = type;
    t.value = std::move(value);
    t.line = line;
    out_.push_back(std::move(t));
  }

  // Emits the text before a tag, applying `-` (strip all whitespace) or lstrip_blocks.
  void emit_text(std::string text, char sign, bool is_variable) {
    int stripped_newlines = 0;
    if (sign == '-') {
      std::string s = rstrip(text);
      stripped_newlines = count_newlines(std::string_view(text).substr(s.size()));
      text = std::move(s);
    } else if (sign != '+' && !is_variable) {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && all_space(std::string_view(text).substr(l_pos)))
        text.resize(l_pos);
    }
    const int lines = count_newlines(text);
    if (!text.empty()) emit(TokenType::Data, std::move(text), line_);
    line_ += lines + stripped_newlines;
  }

  // `{%(-|+|)\s*raw\s*(-%}\s*|%})` at i: returns the end of the match or npos.
  size_t match_raw_begin(size_t i) const {
    size_t p = i + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_spaces(p);
    if (!starts(p, "raw")) return std::string::npos;
    p = skip_spaces(p + 3);
    if (starts(p, "-%}")) return skip_spaces(p + 3);
    if (starts(p, "%}")) return p + 2;
    return std::string::npos;
  }

  // `{%(-|+|)\s*endraw\s*(+%}|-%}\s*|%}\n?)` at i: end of the match or npos; sign is set.
  size_t match_raw_end(size_t i, char& sign) const {
    size_t p = i + 2;
    sign = 0;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
    p = skip_spaces(p);
    if (!starts(p, "endraw")) return std::string::npos;
    p = skip_spaces(p + 6);
    if (starts(p, "+%}")) return p + 3;
    if (starts(p, "-%}")) return skip_spaces(p + 3);
    if (starts(p, "%}")) return (p + 2 < src_.size() && src_[p + 2] == '\n') ? p + 3 : p + 2;
    return std::string::npos;
  }

  void root() {
    // Earliest tag opener.
    size_t found = std::string::npos;
    for (size_t p = src_.find('{', pos_); p != std::string::npos; p = src_.find('{', p + 1)) {
      if (p + 1 < src_.size() && (src_[p + 1] == '%' || src_[p + 1] == '{' || src_[p + 1] == '#')) {
        found = p;
        break;
      }
    }
    if (found == std::string::npos) {
      std::string text = src_.substr(pos_);
      const int lines = count_newlines(text);
      emit(TokenType::Data, std::move(text), line_);
      line_ += lines;
      pos_ = src_.size();
      return;
    }
    const char kind = src_[found + 1];
    size_t after = found + 2;
    char sign = 0;
    if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
    std::string text = src_.substr(pos_, found - pos_);

    if (kind == '%') {
      if (size_t raw_end = match_raw_begin(found); raw_end != std::string::npos) {
        emit_text(std::move(text), sign, false);
        line_ += count_newlines(std::string_view(src_).substr(found, raw_end - found));
        line_starting_ = src_[raw_end - 1] == '\n';
        pos_ = raw_end;
        raw_body();
        return;
      }
    }
    emit_text(std::move(text), sign, kind == '{');
    line_starting_ = false;
    pos_ = after;
    if (kind == '#') {
      comment();
    } else if (kind == '%') {
      emit(TokenType::BlockBegin, "{%", line_);
      tag(false);
    } else {
      emit(TokenType::VarBegin, "{{", line_);
      tag(true);
    }
  }

  void raw_body() {
    for (size_t p = src_.find("{%", pos_); p != std::string::npos; p = src_.find("{%", p + 1)) {
      char sign = 0;
      const size_t end = match_raw_end(p, sign);
      if (end == std::string::npos) continue;
      emit_text(src_.substr(pos_, p - pos_), sign, false);
      line_ += count_newlines(std::string_view(src_).substr(p, end - p));
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    error("Missing end of raw directive");
  }

  void comment() {
    const size_t p = src_.find("#}", pos_);
    if (p == std::string::npos) error("Missing end of comment tag");
    size_t end = p + 2;
    const char before = p > pos_ ? src_[p - 1] : 0;
    if (before == '-') {
      end = skip_spaces(end);
    } else if (before != '+') {
      if (end < src_.size() && src_[end] == '\n') ++end;
    }
    line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
    line_starting_ = src_[end - 1] == '\n';
    pos_ = end;
  }

  // Tokens inside {% %} or {{ }} up to the end tag.
  void tag(bool variable) {
    std::vector<char> balancing;
    while (pos_ < src_.size()) {
      if (balancing.empty()) {
        size_t end = std::string::npos;
        if (variable) {
          if (starts(pos_, "-}}")) {
            end = skip_spaces(pos_ + 3);
          } else if (starts(pos_, "}}")) {
            end = pos_ + 2;
          }
        } else {
          if (starts(pos_, "+%}")) {
            end = pos_ + 3;
          } else if (starts(pos_, "-%}")) {
            end = skip_spaces(pos_ + 3);
          } else if (starts(pos_, "%}")) {
            end = pos_ + 2;
            if (end < src_.size() && src_[end] == '\n') ++end;
          }
        }
        if (end != std::string::npos) {
          emit(variable ? TokenType::VarEnd : TokenType::BlockEnd, variable ? "}}" : "%}", line_);
          line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
          line_starting_ = src_[end - 1] == '\n';
          pos_ = end;
          return;
        }
      }
      if (size_t ws = skip_spaces(pos_); ws != pos_) {
        line_ += count_newlines(std::string_view(src_).substr(pos_, ws - pos_));
        line_starting_ = src_[ws - 1] == '\n';
        pos_ = ws;
        continue;
      }
      line_starting_ = false;
      const auto c = static_cast<unsigned char>(src_[pos_]);
      if (ascii_digit(c)) {
        number();
      } else if (ascii_alpha(c) || c == '_' || c >= 0x80) {
        name();
      } else if (c == '\'' || c == '"') {
        string();
      } else {
        op(balancing);
      }
    }
  }

  // Digits with optional single underscores between them: `(\d+_)*\d+`. Returns end or npos.
  size_t digits(size_t p) const {
    if (p >= src_.size() || !ascii_digit(static_cast<unsigned char>(src_[p])))
      return std::string::npos;
    while (p < src_.size()) {
      if (ascii_digit(static_cast<unsigned char>(src_[p]))) {
        ++p;
      } else if (src_[p] == '_' && p + 1 < src_.size() &&
                 ascii_digit(static_cast<unsigned char>(src_[p + 1]))) {
        ++p;
      } else {
        break;
      }
    }
    return p;
  }

  size_t match_float(size_t p) const {
    if (p > 0 && src_[p - 1] == '.') return std::string::npos;
    const size_t int_end = digits(p);
    if (int_end == std::string::npos) return std::string::npos;
    auto exponent = [&](size_t q) -> size_t {
      if (q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
        ++q;
        if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
        return digits(q);
      }
      return std::string::npos;
    };
    size_t frac_end = std::string::npos;
    if (int_end < src_.size() && src_[int_end] == '.') frac_end = digits(int_end + 1);
    if (frac_end != std::string::npos) {
      const size_t e = exponent(frac_end);
      return e != std::string::npos ? e : frac_end;
    }
    return exponent(int_end);
  }

  void number() {
    const int line = line_;
    if (size_t end = match_float(pos_); end != std::string::npos) {
      std::string text;
      for (size_t k = pos_; k < end; ++k)
        if (src_[k] != '_') text += src_[k];
      double d = 0;
      if (auto r = std::from_chars(text.data(), text.data() + text.size(), d);
          r.ec == std::errc::result_out_of_range) {
        const bool tiny = text.find("e-") != std::string::npos || text.find("E-") != std::string::npos;
        d = tiny ? 0.0 : HUGE_VAL;
      }
      Token t;
      t.type = TokenType::Float;
      t.value = src_.substr(pos_, end - pos_);
      t.float_value = d;
      t.line = line;
      out_.push_back(std::move(t));
      pos_ = end;
      return;
    }
    // Integers: 0b.., 0o.., 0x.., [1-9](_?\d)*, 0(_?0)*
    size_t p = pos_;
    int base = 10;
    auto is_digit_of = [&](char ch, int b) {
      const auto u = static_cast<unsigned char>(ch);
      if (b == 2) return ch == '0' || ch == '1';
      if (b == 8) return ch >= '0' && ch <= '7';
      if (b == 16) return ascii_digit(u) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
      return ascii_digit(u);
    };
    std::string digits_text;
    if (src_[p] == '0' && p + 1 < src_.size() &&
        std::strchr("bBoOxX", src_[p + 1]) != nullptr && src_[p + 1] != '\0') {
      const char k = static_cast<char>(src_[p + 1] | 0x20);
      base = k == 'b' ? 2 : (k == 'o' ? 8 : 16);
      size_t q = p + 2;
      while (q < src_.size()) {
        if (src_[q] == '_' && q + 1 < src_.size() && is_digit_of(src_[q + 1], base)) {
          ++q;
        } else if (is_digit_of(src_[q], base)) {
          digits_text += src_[q++];
        } else {
          break;
        }
      }
      if (digits_text.empty()) {
        base = 10;  // just "0"
      } else {
        p = q;
      }
    }
    if (base == 10) {
      digits_text.clear();
      size_t q = p;
      const char first = src_[q];
      digits_text += src_[q++];
      while (q < src_.size()) {
        const bool underscore = src_[q] == '_' && q + 1 < src_.size();
        const char next = underscore ? src_[q + 1] : src_[q];
        const bool ok = first == '0' ? next == '0' : ascii_digit(static_cast<unsigned char>(next));
        if (!ok) break;
        digits_text += next;
        q += underscore ? 2 : 1;
      }
      p = q;
    }
    uint64_t v = 0;
    auto r = std::from_chars(digits_text.data(), digits_text.data() + digits_text.size(), v, base);
    if (r.ec != std::errc() || v > static_cast<uint64_t>(INT64_MAX))
      error("integer literal too large: " + src_.substr(pos_, p - pos_));
    Token t;
    t.type = TokenType::Integer;
    t.value = src_.substr(pos_, p - pos_);
    t.int_value = static_cast<int64_t>(v);
    t.line = line;
    out_.push_back(std::move(t));
    pos_ = p;
  }

  void name() {
    size_t p = pos_;
    while (p < src_.size()) {
      const auto c = static_cast<unsigned char>(src_[p]);
      if (ascii_alpha(c) || ascii_digit(c) || c == '_') {
        ++p;
      } else if (c >= 0x80) {
        char32_t cp = 0;
        const size_t n = utf8::decode(src_, p, cp);
        if (utf8::is_space(cp) || !utf8::is_printable(cp) || (cp >= 0xDC80 && cp <= 0xDCFF))
          break;
        p += n;
      } else {
        break;
      }
    }
    if (p == pos_) error(fmt::format("unexpected char {} at {}", string_repr(src_.substr(pos_, 1)), pos_));
    for (size_t k = pos_; k < p;) {
      char32_t cp = 0;
      const size_t n = utf8::decode(src_, k, cp);
      if (cp >= 0x80 && !utf8::is_alpha(cp) && !utf8::is_digit(cp))
        error("Invalid character in identifier");
      k += n;
    }
    emit(TokenType::Name, src_.substr(pos_, p - pos_), line_);
    pos_ = p;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  void string() {
    const char quote = src_[pos_];
    size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) {
      if (src_[p] == '\\' && p + 1 < src_.size()) ++p;
      ++p;
    }
    if (p >= src_.size()) {
      // Not a string token; Jinja reports the quote as an unexpected character.
      error(fmt::format("unexpected char {} at {}", string_repr(std::string(1, quote)), pos_));
    }
    const std::string_view body(src_.data() + pos_ + 1, p - pos_ - 1);
    Token t;
    t.type = TokenType::String;
    t.line = line_;
    t.value = unescape(body);
    out_.push_back(std::move(t));
    line_ += count_newlines(body);
    pos_ = p + 1;
  }

  // Python's unicode-escape decoding of a string literal body.
  std::string unescape(std::string_view s) const {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\' || i + 1 >= s.size()) {
        out += s[i];
        continue;
      }
      const char e = s[++i];
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          char32_t v = 0;
          for (size_t k = 0; k < n; ++k) {
            const int h = i + 1 + k < s.size() ? hex_value(s[i + 1 + k]) : -1;
            if (h < 0) {
              error(e == 'x' ? "truncated \\xXX escape"
                             : (e == 'u' ? "truncated \\uXXXX escape" : "truncated \\UXXXXXXXX escape"));
            }
            v = v * 16 + static_cast<char32_t>(h);
          }
          if (v > 0x10FFFF) error("illegal Unicode character");
          i += n;
          utf8::append(out, v);
          break;
        }
        case 'N': error("\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k)
              v = v * 8 + static_cast<char32_t>(s[++i] - '0');
            utf8::append(out, v);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    return out;
  }

  void op(std::vector<char>& balancing) {
    for (const char* o : kOperators) {
      if (!starts(pos_, o)) continue;
      const std::string data = o;
      if (data == "{") balancing.push_back('}');
      if (data == "(") balancing.push_back(')');
      if (data == "[") balancing.push_back(']');
      if (data == "}" || data == ")" || data == "]") {
        if (balancing.empty()) error(fmt::format("unexpected '{}'", data));
        const char expected = balancing.back();
        balancing.pop_back();
        if (expected != data[0]) error(fmt::format("unexpected '{}', expected '{}'", data, expected));
      }
      emit(TokenType::Operator, data, line_);
      pos_ += data.size();
      return;
    }
    error(fmt::format("unexpected char {} at {}", string_repr(src_.substr(pos_, 1)), pos_));
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) { return Lexer(source).run(); }

std::string describe_token(const Token& t) {
  switch (t.type) {
    case TokenType::Name: return t.value;
    case TokenType::Operator: return t.value;
    case TokenType::Data: return "template data / text";
    case TokenType::BlockBegin: return "begin of statement block";
    case TokenType::BlockEnd: return "end of statement block";
    case TokenType::VarBegin: return "begin of print statement";
    case TokenType::VarEnd: return "end of print statement";
    case TokenType::String: return "string";
    case TokenType::Integer: return "integer";
    case TokenType::Float: return "float";
    case TokenType::Eof: return "end of template";
  }
  return "token";
}

}  // namespace slm::chat::jinja
