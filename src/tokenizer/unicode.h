// Unicode helpers for the tokenizers. Several of these deliberately reproduce llama.cpp's
// (sometimes lax) behaviour, because token ids must agree with it exactly; each such choice is
// noted where it is made.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::unicode {

inline constexpr uint32_t kReplacement = 0xFFFD;

// Length of a UTF-8 sequence judged only by its first byte, as llama.cpp does (a stray
// continuation byte counts as 1). Used to split text into "characters" for SPM/BPE symbols.
size_t utf8_len(uint8_t lead);

// Decodes UTF-8 like llama.cpp's unicode_cpts_from_utf8: overlong forms and surrogates are
// accepted as decoded, an invalid or truncated sequence yields U+FFFD and skips one byte.
// Unlike llama.cpp (which throws later), values above U+10FFFF also become U+FFFD.
std::vector<uint32_t> decode_utf8(std::string_view s);

// Appends the UTF-8 encoding of cpt (anything above U+10FFFF becomes U+FFFD).
void append_utf8(std::string& out, uint32_t cpt);
std::string to_utf8(uint32_t cpt);

// General-category classes as llama.cpp's unicode tables define them (from the Unicode
// general category; whitespace is the White_Space property, a separate flag).
struct Flags {
  bool undefined = false;    // Cn
  bool number = false;       // N*
  bool letter = false;       // L*
  bool separator = false;    // Z*
  bool accent_mark = false;  // M*
  bool punctuation = false;  // P*
  bool symbol = false;       // S*
  bool control = false;      // Cc, Cf, Co, Cs
  bool whitespace = false;   // White_Space property
};
Flags flags(uint32_t cpt);
bool is_whitespace(uint32_t cpt);

// Simple (one-to-one) lowercase mapping from UnicodeData.
uint32_t to_lower(uint32_t cpt);
// First code point of the canonical decomposition (NFD); llama.cpp's WordPiece normaliser
// keeps only that one, so accents vanish and nothing else does.
uint32_t nfd_first(uint32_t cpt);

// GPT-2 byte-level alphabet: each byte maps to one printable code point (UTF-8 string).
const std::string& byte_to_bpe(uint8_t byte);
// Inverse mapping; -1 when cpt is not part of the alphabet.
int bpe_to_byte(uint32_t cpt);

// Number of bytes at the end of s that begin a UTF-8 sequence still waiting for continuation
// bytes (0 when s ends on a complete character or on bytes that can never complete).
size_t incomplete_utf8_tail(std::string_view s);

}  // namespace slm::unicode
