// SentencePiece's unigram model as llama.cpp runs it (llm_tokenizer_ugm): normalise, then a
// Viterbi pass over the normalised bytes. One difference: the path scores are kept the way
// SentencePiece (spm_encode, transformers' slow tokenizers) keeps them, where llama.cpp and
// the Rust tokenizers sum in double. In SentencePiece (unigram_model.cc, EncodeOptimized) each
// candidate is a double (the piece's score is a double because of the user-defined branch of
// its conditional) added to the float stored for the start, compared with the float stored
// for the end, and stored as a float. That decides ties: a run covered by "a" + "bb" or by
// "bb" + "a" has the same score, and which wins depends on the rounding. On 450 lines of
// SQLite's docs (runs of U+00A0 pieces) this gives spm_encode's ids on all; plain double
// sums (llama.cpp) on 436, plain float sums on 437.
#include <algorithm>
#include <cfloat>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace slm::tok {

namespace {

// Length of the well-formed UTF-8 sequence at s[off] (lead byte and continuation bytes
// checked, as llama.cpp's unicode_cpt_from_utf8), or 0 when it is not one.
size_t valid_utf8_len(std::string_view s, size_t off) {
  const auto b = static_cast<uint8_t>(s[off]);
  size_t n = 0;
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) n = 2;
  else if ((b & 0xF0) == 0xE0) n = 3;
  else if ((b & 0xF8) == 0xF0) n = 4;
  else return 0;
  if (off + n > s.size()) return 0;
  for (size_t i = 1; i < n; ++i)
    if ((static_cast<uint8_t>(s[off + i]) & 0xC0) != 0x80) return 0;
  return n;
}

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581
// SentencePiece's penalty for a character no piece covers, below the lowest piece score.
constexpr float kUnknownPenalty = 10.0f;

}  // namespace

int32_t UgmModel::insert(std::string_view text) {
  int32_t node = 0;
  for (char ch : text) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(ch);
    auto [it, added] = edges_.try_emplace(key, static_cast<int32_t>(node_token_.size()));
    if (added) {
      node_token_.push_back(-1);
      node_user_.push_back(0);
    }
    node = it->second;
  }
  return node;
}

UgmModel::UgmModel(const Vocab& vocab, std::string_view charsmap, const UgmOptions& opt, const std::string& path)
    : vocab_(vocab), opt_(opt), path_(path) {
  if (vocab.unk_id < 0 || vocab.unk_id >= vocab.n())
    fail("tokenizer: {}: a unigram (t5) vocabulary needs an unknown token (tokenizer.ggml.unknown_token_id)", path);
  if (!charsmap.empty()) {
    // [u32 size of the double array in bytes][the double array][NUL-terminated replacements]
    if (charsmap.size() < 4) fail("tokenizer: {}: tokenizer.ggml.precompiled_charsmap is {} bytes, too short", path, charsmap.size());
    uint32_t blob = 0;
    std::memcpy(&blob, charsmap.data(), 4);
    if (blob % 4 != 0 || uint64_t{blob} + 4 >= charsmap.size())
      fail("tokenizer: {}: tokenizer.ggml.precompiled_charsmap declares {} bytes of trie in {} bytes", path, blob,
           charsmap.size());
    xcda_.resize(blob / 4);
    std::memcpy(xcda_.data(), charsmap.data() + 4, blob);
    replacements_.assign(charsmap.substr(4 + blob));
  }
  node_token_.push_back(-1);
  node_user_.push_back(0);
  float min_score = std::numeric_limits<float>::infinity();
  for (int32_t id = 0; id < vocab.n(); ++id) {
    const TokenData& td = vocab.tokens[id];
    if (td.attr & kAttrNormal) min_score = std::min(min_score, td.score);
    // Pieces that can be matched: normal, user-defined and (as llama.cpp) unused ones.
    if (td.text.empty() || !(td.attr & (kAttrNormal | kAttrUserDefined | kAttrUnused))) continue;
    const int32_t node = insert(td.text);
    if (node_token_[node] < 0) node_token_[node] = id;  // first id wins for duplicate texts
    if (td.attr & kAttrUserDefined) node_user_[node] = has_user_ = true;
  }
  if (!(min_score < std::numeric_limits<float>::infinity()))
    fail("tokenizer: {}: a unigram (t5) vocabulary without any normal piece", path);
  unk_score_ = min_score - kUnknownPenalty;
}

size_t UgmModel::charsmap_match(std::string_view text, size_t off, std::string_view* replacement) const {
  if (xcda_.empty()) return 0;
  // The map is a darts-clone double array, each unit bit-packed: BASE in bits 10-30 (shifted
  // left by 8 when bit 9 is set), LEAF in bit 8, LABEL in bits 0-7 and 31; a leaf's child unit
  // holds the offset of the replacement in its low 31 bits.
  auto unit = [&](uint64_t i) {
    if (i >= xcda_.size())
      fail("tokenizer: {}: tokenizer.ggml.precompiled_charsmap is malformed (trie index {} past its {} entries)",
           path_, i, xcda_.size());
    return xcda_[static_cast<size_t>(i)];
  };
  auto base = [](uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  size_t best_len = 0;
  uint32_t best_value = 0;
  uint64_t node = base(unit(0));
  for (size_t p = off; p < text.size(); ++p) {
    const auto c = static_cast<uint8_t>(text[p]);
    if (c == 0) break;
    node ^= c;
    if (node >= xcda_.size()) break;  // no child: darts leaves such indexes out of the array
    const uint32_t u = unit(node);
    if ((u & ((1u << 31) | 0xFFu)) != c) break;
    const bool leaf = (u >> 8) & 1u;
    node ^= base(u);
    if (leaf) {
      best_len = p - off + 1;
      best_value = unit(node) & ((1u << 31) - 1);
    }
  }
  if (best_len == 0) return 0;
  if (best_value >= replacements_.size())
    fail("tokenizer: {}: tokenizer.ggml.precompiled_charsmap is malformed (replacement at {} past its {} bytes)", path_,
         best_value, replacements_.size());
  const size_t end = replacements_.find('\0', best_value);
  *replacement = std::string_view(replacements_).substr(best_value, end == std::string::npos ? std::string::npos : end - best_value);
  return best_len;
}

// llama.cpp's llm_tokenizer_ugm_session::normalize: each prefix of the input becomes a
// user-defined piece unchanged, or what the character map makes of it, or itself when it is
// valid UTF-8, or U+FFFD for one bad byte; then spaces are escaped, runs of them merged when
// remove_extra_whitespaces (which also drops leading and trailing ones), and the dummy
// prefix added before the first word.
std::string UgmModel::normalize(std::string_view text) const {
  std::string out;
  out.reserve(text.size() * 3 / 2 + 3);
  // SentencePiece's escape_whitespaces and treat_whitespace_as_suffix have no GGUF keys; the
  // converter refuses models that change them from their defaults (on, off).
  const std::string_view space = kEscapedSpace;
  const bool prepend = opt_.add_space_prefix;
  const bool merge = opt_.remove_extra_whitespaces;
  bool prepended = false, in_word = false;
  for (size_t off = 0; off < text.size();) {
    std::string_view piece;
    size_t consumed = 0;
    // The longest user-defined piece starting here, if any (the walk is skipped when there are
    // none, as in most vocabularies: it would retrace the pieces' trie at every byte).
    for (int32_t node = 0, p = static_cast<int32_t>(off); has_user_ && p < static_cast<int32_t>(text.size());) {
      node = child(node, static_cast<uint8_t>(text[static_cast<size_t>(p)]));
      if (node < 0) break;
      ++p;
      if (node_user_[static_cast<size_t>(node)]) consumed = static_cast<size_t>(p) - off;
    }
    if (consumed > 0) {
      piece = text.substr(off, consumed);
    } else if (size_t n = charsmap_match(text, off, &piece); n > 0) {
      consumed = n;
    } else if (size_t len = valid_utf8_len(text, off); len > 0) {
      piece = text.substr(off, len);
      consumed = len;
    } else {
      piece = "\xEF\xBF\xBD";
      consumed = 1;
    }
    for (char c : piece) {
      if (c != ' ') {
        if (!in_word) {
          in_word = true;
          if ((prepend && !prepended) || merge) {
            out += space;
            prepended = true;
          }
        }
        out.push_back(c);
      } else {
        in_word = false;
        if (!merge) out += space;
      }
    }
    off += consumed;
  }
  return out;
}

void UgmModel::tokenize(std::string_view text, std::vector<int32_t>& out) const {
  const std::string norm = normalize(text);
  const size_t n = norm.size();
  if (n == 0) return;
  struct Best {
    int32_t id;
    size_t from;
    float score;
  };
  const int32_t unk = vocab_.unk_id;
  std::vector<Best> best(n + 1, Best{unk, 0, -FLT_MAX});
  best[0].score = 0.0;
  for (size_t off = 0; off < n;) {
    const size_t char_len = std::min(unicode::utf8_len(static_cast<uint8_t>(norm[off])), n - off);
    const float here = best[off].score;
    bool whole_char = false;
    int32_t node = 0;
    for (size_t p = off; p < n;) {
      node = child(node, static_cast<uint8_t>(norm[p]));
      if (node < 0) break;
      ++p;
      const int32_t id = node_token_[static_cast<size_t>(node)];
      if (id < 0) continue;
      if (p - off == char_len) whole_char = true;
      // User-defined pieces score 0, above any log-probability, as in llama.cpp.
      const TokenData& td = vocab_.tokens[static_cast<size_t>(id)];
      const double s = static_cast<double>(here) + ((td.attr & kAttrUserDefined) ? 0.0 : static_cast<double>(td.score));
      if (s > static_cast<double>(best[p].score)) best[p] = {id, off, static_cast<float>(s)};
    }
    if (!whole_char) {
      const float s = here + unk_score_;  // float + float in SentencePiece too
      if (s > best[off + char_len].score) best[off + char_len] = {unk, off, s};
    }
    off += char_len;
  }
  // Back from the end; consecutive unknown characters become one unknown token.
  const size_t first = out.size();
  bool prev_unk = false;
  for (size_t pos = n;;) {
    const Best& b = best[pos];
    const bool is_unk = b.id == unk;
    if (!(prev_unk && is_unk)) out.push_back(b.id);
    prev_unk = is_unk;
    if (b.from == 0) break;
    pos = b.from;
  }
  std::reverse(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
}

}  // namespace slm::tok
