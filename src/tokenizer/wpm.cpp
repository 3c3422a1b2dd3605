// WordPiece as llama.cpp implements it (llm_tokenizer_wpm_session). The GGUF vocabulary
// already marks word-initial pieces with U+2581 instead of marking continuations with "##",
// so a word is matched as "▁word" by greedy longest prefix.
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace slm::tok {

namespace {

// CJK ideographs are split into single-character words. The ranges are BERT's, including
// its off-by-one-block 0x2B920 (llama.cpp copies it from the Hugging Face Rust code).
bool is_chinese_char(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// BERT's basic tokenizer: normalise, then split on whitespace and around punctuation, ASCII
// symbols and CJK characters.
std::vector<std::string> preprocess(std::string_view text, const WpmOptions& opt) {
  std::vector<uint32_t> cpts = unicode::decode_utf8(text);
  if (opt.strip_accents) {
    for (uint32_t& c : cpts) c = unicode::nfd_first(c);
  }
  std::vector<std::string> words(1);
  for (const uint32_t c : cpts) {
    const unicode::Flags f = unicode::flags(c);
    if (f.whitespace) {
      if (!words.back().empty()) words.emplace_back();
      continue;
    }
    if (c == 0 || c == unicode::kReplacement || f.control) continue;
    if (opt.strip_accents && f.accent_mark) continue;
    const std::string s = unicode::to_utf8(opt.lowercase ? unicode::to_lower(c) : c);
    if (f.punctuation || (c < 0x7F && f.symbol) || is_chinese_char(c)) {
      if (!words.back().empty()) words.emplace_back();
      words.back() = s;
      words.emplace_back();
    } else {
      words.back() += s;
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

}  // namespace

void wpm_tokenize(const Vocab& vocab, const WpmOptions& opt, std::string_view text,
                  std::vector<int32_t>& out) {
  for (const std::string& word : preprocess(text, opt)) {
    if (word.empty()) continue;
    const std::string w = "\xE2\x96\x81" + word;
    const size_t n = w.size();
    const size_t before = out.size();
    // Greedy longest match, in bytes like llama.cpp (a candidate may end inside a character;
    // such a candidate simply is not a token). If some position has no match at all, the
    // whole word becomes the unknown token.
    for (size_t i = 0; i < n; ++i) {
      bool matched = false;
      for (size_t j = std::min(n, i + vocab.max_token_len + 1); j > i; --j) {
        if (const int32_t id = vocab.find(std::string_view(w).substr(i, j - i)); id >= 0) {
          out.push_back(id);
          matched = true;
          i = j - 1;
          break;
        }
      }
      if (!matched) {
        out.resize(before);
        break;
      }
    }
    if (out.size() == before && vocab.unk_id >= 0) out.push_back(vocab.unk_id);
  }
}

}  // namespace slm::tok
