#include "chat/jinja_unicode.h"

namespace slm::chat::jinja::utf8 {

size_t decode(std::string_view s, size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  size_t n = 0;
  char32_t v = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, v = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, v = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, v = b0 & 0x07, min = 0x10000;
  } else {
    cp = 0xDC00 + b0;
    return 1;
  }
  if (i + n > s.size()) {
    cp = 0xDC00 + b0;
    return 1;
  }
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      cp = 0xDC00 + b0;
      return 1;
    }
    v = (v << 6) | (b & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
    cp = 0xDC00 + b0;
    return 1;
  }
  cp = v;
  return n;
}

void append(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {  // an invalid byte carried through decode()
    out.push_back(static_cast<char>(cp - 0xDC00));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<size_t> char_offsets(std::string_view s) {
  std::vector<size_t> offs;
  offs.reserve(s.size() + 1);
  char32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    offs.push_back(i);
    i += decode(s, i, cp);
  }
  offs.push_back(s.size());
  return offs;
}

size_t length(std::string_view s) {
  size_t n = 0;
  char32_t cp = 0;
  for (size_t i = 0; i < s.size(); ++n) i += decode(s, i, cp);
  return n;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_linebreak(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
         c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
}

bool is_printable(char32_t c) {
  if (c < 0x20 || c == 0x7F) return false;
  if (c < 0x7F) return true;
  if (c <= 0xA0 || c == 0xAD) return false;
  if (c >= 0xDC80 && c <= 0xDCFF) return false;
  if (c == 0x061C || c == 0x1680 || c == 0x180E) return false;
  if ((c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
      (c >= 0x205F && c <= 0x206F))
    return false;
  if (c == 0x3000 || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || c == 0xFFFE ||
      c == 0xFFFF)
    return false;
  if ((c >= 0xD800 && c <= 0xF8FF) || c >= 0xF0000) return false;  // surrogates, private use
  if (c >= 0xE0000 && c <= 0xE007F) return false;                    // tags
  return true;
}

namespace {

// Simple (one to one) upper case mapping; cp itself when there is none.
char32_t upper1(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  if (c == 0xB5) return 0x39C;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) ||
        (c >= 0x14A && c <= 0x177))
      return (c & 1) ? c - 1 : c;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c : c - 1;
    return c;
  }
  if (c >= 0x370 && c <= 0x3FF) {
    if (c == 0x3C2) return 0x3A3;
    if ((c >= 0x3B1 && c <= 0x3CB)) return c - 32;
    if (c == 0x3AC) return 0x386;
    if (c >= 0x3AD && c <= 0x3AF) return c - 37;
    if (c == 0x3CC) return 0x38C;
    if (c == 0x3CD || c == 0x3CE) return c - 63;
    return c;
  }
  if (c >= 0x400 && c <= 0x52F) {
    if (c >= 0x430 && c <= 0x44F) return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F))
      return (c & 1) ? c - 1 : c;
    if (c >= 0x4C1 && c <= 0x4CE) return (c & 1) ? c : c - 1;
    if (c == 0x4CF) return 0x4C0;
    return c;
  }
  if (c >= 0x561 && c <= 0x586) return c - 48;
  if ((c >= 0x1E00 && c <= 0x1E95) || (c >= 0x1EA0 && c <= 0x1EFF)) return (c & 1) ? c - 1 : c;
  if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
  return c;
}

char32_t lower1(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x100 && c <= 0x17F) {
    if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) ||
        (c >= 0x14A && c <= 0x177))
      return (c & 1) ? c : c + 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
    return c;
  }
  if (c >= 0x370 && c <= 0x3FF) {
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    return c;
  }
  if (c >= 0x400 && c <= 0x52F) {
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F))
      return (c & 1) ? c : c + 1;
    if (c >= 0x4C1 && c <= 0x4CE) return (c & 1) ? c + 1 : c;
    if (c == 0x4C0) return 0x4CF;
    return c;
  }
  if (c >= 0x531 && c <= 0x556) return c + 48;
  if ((c >= 0x1E00 && c <= 0x1E95) || (c >= 0x1EA0 && c <= 0x1EFF)) return (c & 1) ? c : c + 1;
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
  return c;
}

// Full mappings with the special cases Python applies.
void append_upper(std::string& out, char32_t c) {
  if (c == 0xDF) {
    out += "SS";
  } else if (c == 0x149) {
    append(out, 0x2BC);
    out += 'N';
  } else {
    append(out, upper1(c));
  }
}

void append_title(std::string& out, char32_t c) {
  if (c == 0xDF) {
    out += "Ss";
  } else if (c == 0x149) {
    append(out, 0x2BC);
    out += 'N';
  } else {
    append(out, upper1(c));
  }
}

bool cased(char32_t c) { return upper1(c) != c || lower1(c) != c || c == 0xDF || c == 0x149; }

// Lower case of the character c at s[i] (n bytes); prev_cased tells whether the character
// before it is cased (for the final sigma rule).
void append_lower(std::string& out, std::string_view s, size_t i, char32_t c, size_t n,
                  bool prev_cased) {
  if (c == 0x130) {
    out += 'i';
    append(out, 0x307);
    return;
  }
  if (c == 0x3A3) {
    bool after = false;
    if (i + n < s.size()) {
      char32_t nx = 0;
      decode(s, i + n, nx);
      after = cased(nx);
    }
    append(out, prev_cased && !after ? 0x3C2 : 0x3C3);
    return;
  }
  append(out, lower1(c));
}

}  // namespace

bool is_upper(char32_t c) { return lower1(c) != c; }
bool is_lower(char32_t c) { return upper1(c) != c || c == 0xDF || c == 0x149; }
bool is_cased(char32_t c) { return cased(c); }

bool is_alpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (cased(c)) return true;
  if (c == 0xAA || c == 0xBA) return true;
  if (c >= 0xC0 && c <= 0x24F) return c != 0xD7 && c != 0xF7;
  if (c >= 0x5D0 && c <= 0x5EA) return true;  // Hebrew
  if (c >= 0x620 && c <= 0x64A) return true;  // Arabic
  if (c >= 0x904 && c <= 0x939) return true;  // Devanagari
  if (c >= 0xE01 && c <= 0xE30) return true;  // Thai
  if (c >= 0x3041 && c <= 0x30FF && c != 0x30A0 && c != 0x30FB) return true;  // kana
  if (c >= 0x3400 && c <= 0x4DBF) return true;
  if (c >= 0x4E00 && c <= 0x9FFF) return true;
  if (c >= 0xAC00 && c <= 0xD7A3) return true;  // Hangul
  if (c >= 0x20000 && c <= 0x3134F) return true;
  return false;
}

bool is_digit(char32_t c) {
  if (c >= '0' && c <= '9') return true;
  if (c == 0xB2 || c == 0xB3 || c == 0xB9) return true;
  if ((c >= 0x660 && c <= 0x669) || (c >= 0x6F0 && c <= 0x6F9) || (c >= 0x966 && c <= 0x96F))
    return true;
  if (c >= 0xFF10 && c <= 0xFF19) return true;
  if (c >= 0x2070 && c <= 0x2079 && c != 0x2071 && c != 0x2072 && c != 0x2073) return true;
  if (c >= 0x2080 && c <= 0x2089) return true;
  return false;
}

std::string to_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t c = 0;
  for (size_t i = 0; i < s.size();) {
    i += decode(s, i, c);
    append_upper(out, c);
  }
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t c = 0;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    const size_t n = decode(s, i, c);
    append_lower(out, s, i, c, n, prev_cased);
    prev_cased = cased(c);
    i += n;
  }
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t c = 0;
  bool first = true;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    const size_t n = decode(s, i, c);
    if (first) {
      append_title(out, c);
      first = false;
    } else {
      append_lower(out, s, i, c, n, prev_cased);
    }
    prev_cased = cased(c);
    i += n;
  }
  return out;
}

std::string title(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t c = 0;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    const size_t n = decode(s, i, c);
    if (prev_cased) {
      append_lower(out, s, i, c, n, prev_cased);
    } else {
      append_title(out, c);
    }
    prev_cased = cased(c);
    i += n;
  }
  return out;
}

std::string swapcase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t c = 0;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    const size_t n = decode(s, i, c);
    const bool was_cased = prev_cased;
    prev_cased = cased(c);
    if (is_upper(c)) {
      append_lower(out, s, i, c, n, was_cased);
    } else if (is_lower(c)) {
      append_upper(out, c);
    } else {
      append(out, c);
    }
    i += n;
  }
  return out;
}

std::string strip(std::string_view s, const std::string_view* chars, bool left, bool right) {
  std::vector<char32_t> set;
  if (chars) {
    char32_t c = 0;
    for (size_t i = 0; i < chars->size();) {
      i += decode(*chars, i, c);
      set.push_back(c);
    }
  }
  auto strippable = [&](char32_t c) {
    if (!chars) return is_space(c);
    for (char32_t x : set)
      if (x == c) return true;
    return false;
  };
  const std::vector<size_t> offs = char_offsets(s);
  size_t lo = 0;
  size_t hi = offs.size() - 1;  // number of characters
  char32_t c = 0;
  if (left) {
    while (lo < hi) {
      decode(s, offs[lo], c);
      if (!strippable(c)) break;
      ++lo;
    }
  }
  if (right) {
    while (hi > lo) {
      decode(s, offs[hi - 1], c);
      if (!strippable(c)) break;
      --hi;
    }
  }
  return std::string(s.substr(offs[lo], offs[hi] - offs[lo]));
}

}  // namespace slm::chat::jinja::utf8
