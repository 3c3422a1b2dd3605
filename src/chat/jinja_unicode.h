// UTF-8 helpers with Python str semantics: code point indexing, whitespace as str.isspace(),
// and case mapping for Latin, Greek, Cyrillic and Armenian (other scripts pass unchanged).
// Bytes that are not valid UTF-8 count as one character each and are copied through.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace slm::chat::jinja::utf8 {

// Decodes the character at s[i] into cp and returns its byte length (>= 1 when i < size).
// An invalid byte yields cp = 0xDC00 + byte (like Python's surrogateescape) and length 1.
size_t decode(std::string_view s, size_t i, char32_t& cp);
void append(std::string& out, char32_t cp);

// Byte offsets of each character start, plus s.size() at the end.
std::vector<size_t> char_offsets(std::string_view s);
size_t length(std::string_view s);

bool is_space(char32_t cp);     // str.isspace()
bool is_linebreak(char32_t cp);  // str.splitlines() boundaries
bool is_printable(char32_t cp);  // str.isprintable(), approximately for rare scripts
bool is_alpha(char32_t cp);
bool is_digit(char32_t cp);
bool is_upper(char32_t cp);
bool is_lower(char32_t cp);
bool is_cased(char32_t cp);

std::string to_upper(std::string_view s);
std::string to_lower(std::string_view s);
std::string capitalize(std::string_view s);  // str.capitalize()
std::string title(std::string_view s);       // str.title()
std::string swapcase(std::string_view s);

// str.strip / lstrip / rstrip; chars == nullptr means whitespace.
std::string strip(std::string_view s, const std::string_view* chars, bool left, bool right);

}  // namespace slm::chat::jinja::utf8
