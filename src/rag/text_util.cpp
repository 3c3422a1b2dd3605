// See text_util.h.
#include "rag/text_util.h"

#include <utf8proc.h>

#include <cctype>
#include <cstring>

namespace slm::rag {

std::string collapse_whitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i);
    utf8proc_int32_t cp;
    const utf8proc_ssize_t n = utf8proc_iterate(p, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) return i;
    i += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

namespace {

bool word_char_before(std::string_view s, size_t i) {
  return i > 0 && (std::isalnum(static_cast<unsigned char>(s[i - 1])) || static_cast<unsigned char>(s[i - 1]) >= 0x80);
}

// `text <target>` -> text (or target when there is no text), leading ~ and ! dropped.
std::string role_text(std::string_view inner) {
  if (!inner.empty() && inner.back() == '>') {
    const size_t lt = inner.rfind('<');
    if (lt != std::string_view::npos) {
      std::string_view text = inner.substr(0, lt);
      while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
      if (!text.empty()) return std::string(text);
      inner = inner.substr(lt + 1, inner.size() - lt - 2);
    }
  }
  while (!inner.empty() && (inner[0] == '~' || inner[0] == '!')) inner.remove_prefix(1);
  return std::string(inner);
}

}  // namespace

std::string strip_rst_inline(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      out += s[i + 1];
      i += 2;
      continue;
    }
    if (c == '`' && i + 1 < s.size() && s[i + 1] == '`') {  // ``literal``
      const size_t end = s.find("``", i + 2);
      if (end != std::string_view::npos) {
        out += s.substr(i + 2, end - i - 2);
        i = end + 2;
        continue;
      }
    }
    if (c == ':' && !word_char_before(s, i)) {  // :role:`text`
      size_t j = i + 1;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' || s[j] == '_' || s[j] == ':' || s[j] == '+'))
        ++j;
      if (j > i + 1 && j < s.size() && s[j] == '`' && s[j - 1] == ':') {
        const size_t end = s.find('`', j + 1);
        if (end != std::string_view::npos) {
          out += role_text(s.substr(j + 1, end - j - 1));
          i = end + 1;
          while (i < s.size() && s[i] == '_') ++i;
          continue;
        }
      }
    }
    if (c == '`') {  // `interpreted` or `link <url>`_
      const size_t end = s.find('`', i + 1);
      if (end != std::string_view::npos) {
        out += role_text(s.substr(i + 1, end - i - 1));
        i = end + 1;
        while (i < s.size() && s[i] == '_') ++i;
        continue;
      }
    }
    if (c == '[' && i + 1 < s.size()) {  // footnote reference [1]_ / [#]_ / [#name]_
      const size_t end = s.find("]_", i + 1);
      if (end != std::string_view::npos && end - i < 24 && s.substr(i + 1, end - i - 1).find(' ') == std::string_view::npos) {
        i = end + 2;
        continue;
      }
    }
    if (c == '*' || c == '|') {  // emphasis markers, substitution bars
      ++i;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

std::string strip_markdown_inline(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size() && std::ispunct(static_cast<unsigned char>(s[i + 1]))) {
      out += s[i + 1];
      i += 2;
      continue;
    }
    if (c == '!' && i + 1 < s.size() && s[i + 1] == '[') {  // image: keep the alt text
      ++i;
      continue;
    }
    if (c == '[') {  // [text](url) or [text][ref]
      const size_t close = s.find(']', i + 1);
      if (close != std::string_view::npos && close + 1 < s.size() && (s[close + 1] == '(' || s[close + 1] == '[')) {
        const char want = s[close + 1] == '(' ? ')' : ']';
        const size_t end = s.find(want, close + 2);
        if (end != std::string_view::npos) {
          out += strip_markdown_inline(s.substr(i + 1, close - i - 1));
          i = end + 1;
          continue;
        }
      }
    }
    if (c == '<') {  // inline HTML tag or autolink: keep an autolink's address
      const size_t end = s.find('>', i + 1);
      if (end != std::string_view::npos && end - i < 200) {
        std::string_view inner = s.substr(i + 1, end - i - 1);
        if (inner.find("://") != std::string_view::npos || inner.find('@') != std::string_view::npos) out += inner;
        i = end + 1;
        continue;
      }
    }
    if (c == '`' || c == '*' || (c == '_' && (!word_char_before(s, i) || i + 1 >= s.size() ||
                                               !std::isalnum(static_cast<unsigned char>(s[i + 1]))))) {
      ++i;
      continue;
    }
    if (c == '>' && (i == 0 || s[i - 1] == '\n')) {  // quote marker
      ++i;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

std::vector<std::string> words_of(std::string_view s) {
  std::vector<std::string> words;
  std::string cur;
  size_t i = 0;
  auto flush = [&] {
    if (!cur.empty()) words.push_back(std::move(cur));
    cur.clear();
  };
  while (i < s.size()) {
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i);
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(p, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) {  // invalid byte: a separator
      flush();
      ++i;
      continue;
    }
    const utf8proc_category_t cat = utf8proc_category(cp);
    const bool word = (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
                      (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) ||
                      (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) || cat == UTF8PROC_CATEGORY_CO;
    if (!word) {
      flush();
    } else if (cur.size() < 64) {
      utf8proc_uint8_t buf[4];
      const utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_tolower(cp), buf);
      cur.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(m));
    }
    i += static_cast<size_t>(n);
  }
  flush();
  return words;
}

std::vector<std::string_view> sentences_of(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  auto push = [&](size_t end) {
    std::string_view t = s.substr(start, end - start);
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
    if (!t.empty()) out.push_back(t);
    start = end;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\n' && i + 1 < s.size() && s[i + 1] == '\n') {
      push(i);
      continue;
    }
    if ((c == '.' || c == '!' || c == '?') && (i + 1 == s.size() || s[i + 1] == ' ' || s[i + 1] == '\n')) {
      // "e.g. x", "Mr. X", "A. Smith", "os.path. ": not a sentence end when the word before is
      // one capital letter or a known abbreviation.
      size_t w = i;
      while (w > start && !std::isspace(static_cast<unsigned char>(s[w - 1]))) --w;
      const std::string_view word = s.substr(w, i - w);
      if (word.size() == 1 && std::isupper(static_cast<unsigned char>(word[0]))) continue;
      if (word == "e.g" || word == "i.e" || word == "etc" || word == "vs" || word == "Mr" || word == "Dr" ||
          word == "cf" || word == "approx")
        continue;
      push(i + 1);
    }
  }
  push(s.size());
  return out;
}

int estimate_tokens(std::string_view s) {
  return s.empty() ? 0 : static_cast<int>((s.size() + 3) / 4);
}

}  // namespace slm::rag
