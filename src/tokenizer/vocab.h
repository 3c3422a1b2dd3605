// Internal: the vocabulary shared by the tokenizer algorithms (BPE, SPM, WordPiece).
// Not part of the public API; see tokenizer.h.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace slm::tok {

// Token attributes, bit-compatible with llama.cpp's llama_token_attr so that the rules copied
// from it (which tokens are special, which render, which strip spaces) read the same.
enum Attr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrNormalized = 1u << 6,
  kAttrLstrip = 1u << 7,
  kAttrRstrip = 1u << 8,
  kAttrSingleWord = 1u << 9,
};

// Hash usable with both std::string and std::string_view keys (heterogeneous lookup), so that
// lookups of substrings do not allocate. std::hash<string_view> equals std::hash<string> for
// the same bytes, which keeps iteration order identical to a plain string-keyed map.
// Deliberately not noexcept: libstdc++ then caches each node's hash, as it does for
// std::hash<std::string>; without the cache every bucket walk rehashes the keys it passes.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct TokenData {
  std::string text;
  float score = 0.0f;
  uint32_t attr = kAttrNormal;
};

struct Vocab {
  std::vector<TokenData> tokens;
  size_t max_token_len = 0;  // in bytes, for WordPiece's longest-match search
  int32_t unk_id = -1;

  int32_t n() const { return static_cast<int32_t>(tokens.size()); }
  // The id of a token's text, or -1.
  int32_t find(std::string_view text) const { return find(text, hash(text)); }
  static uint64_t hash(std::string_view text) { return std::hash<std::string_view>{}(text); }
  // find() with the text's hash() already known (BPE symbols carry theirs).
  int32_t find(std::string_view text, uint64_t h) const {
    if (index_.empty()) return -1;
    for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
      const uint64_t e = index_[i];
      if (e == 0) return -1;
      const auto id = static_cast<int32_t>((e & 0xFFFFFFFFu) - 1);
      if ((e >> 32) == (h >> 32) && tokens[id].text == text) return id;
    }
  }
  // Indexes every token's text for find(). Returns -1, or the first id whose text an earlier
  // token already has (*first gets that earlier id).
  int32_t build_index(int32_t* first);

 private:
  // Open addressing, linear probing: per slot the high 32 bits of the text's hash and id + 1
  // (0: empty). One flat array instead of a std::unordered_map of 128k nodes: reading Llama 3's
  // vocabulary went from 95 to 35 ms, and each lookup is one probe into 2 MiB.
  std::vector<uint64_t> index_;
  uint64_t mask_ = 0;
};

// Byte-level BPE (tokenizer.ggml.model = gpt2).
enum class PreType { Llama3, Qwen2 };

class RegexSplitter;  // PCRE2 pre-tokenizer, bpe.cpp

class BpeModel {
 public:
  // merge(i) for i < n_merges: the lines of tokenizer.ggml.merges, "<left> <right>".
  BpeModel(const Vocab& vocab, PreType pre, bool ignore_merges, size_t n_merges,
           const std::function<std::string_view(size_t)>& merge);
  ~BpeModel();
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;
  // Tokenizes one fragment of raw text (special tokens already split off).
  void tokenize(std::string_view text, std::vector<int32_t>& out) const;

 private:
  // Rank of merging the adjacent symbols (left, right), -1 when there is no such merge;
  // hl and hr are their Vocab::hash() values.
  int32_t rank(std::string_view left, uint64_t hl, std::string_view right, uint64_t hr) const;
  const Vocab& vocab_;
  bool ignore_merges_;
  std::unique_ptr<RegexSplitter> splitter_;
  // The merges as llama.cpp keys them: the (left, right) strings of each line split at its
  // first space after position 0; a duplicate keeps its first (lowest) rank. The lines are kept
  // back to back (merge i is lines_[ends_[i-1], ends_[i])), and an open-addressing table of
  // 64-bit entries maps the pair's hashes to a rank: the upper 42 bits of the mixed hashes,
  // then the rank (22 bits); at most 70% full; kEmpty marks free slots. Keyed by hashes of
  // the texts rather than by token ids, the table is built without looking anything up in the
  // vocabulary (Llama 3's 280k merges: 95 ms of lookups before), and a symbol's hash is
  // computed once anyway to find its token.
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static constexpr int kRankBits = 22;
  std::string lines_;
  std::vector<uint32_t> ends_;
  std::vector<uint64_t> table_;
  uint64_t mask_ = 0;
};

// SentencePiece BPE (tokenizer.ggml.model = llama). text must already have spaces replaced
// by U+2581 and the optional leading space added.
void spm_tokenize(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out);

// SentencePiece unigram (tokenizer.ggml.model = t5; llama.cpp's UGM): the text normalised
// (the model's precompiled character map, then whitespace: the dummy prefix, optional merging
// of runs, spaces escaped as U+2581) and segmented by Viterbi into the pieces whose scores sum
// highest; characters no piece covers become the unknown token, runs of them one token.
struct UgmOptions {
  bool add_space_prefix = true;
  bool remove_extra_whitespaces = true;
};

class UgmModel {
 public:
  // charsmap: tokenizer.ggml.precompiled_charsmap as stored (may be empty: no normalisation
  // beyond whitespace). Throws slm::Error when it is malformed or the vocabulary has no
  // unknown token.
  UgmModel(const Vocab& vocab, std::string_view charsmap, const UgmOptions& opt, const std::string& path);
  void tokenize(std::string_view text, std::vector<int32_t>& out) const;

 private:
  std::string normalize(std::string_view text) const;
  // Bytes of text (from off) that become `replacement` through the character map: 0 when
  // no entry of the map starts there.
  size_t charsmap_match(std::string_view text, size_t off, std::string_view* replacement) const;
  // A byte trie over the pieces: node n's child on byte b is edges_[(n << 8) | b].
  int32_t child(int32_t node, uint8_t b) const {
    auto it = edges_.find((static_cast<uint64_t>(node) << 8) | b);
    return it == edges_.end() ? -1 : it->second;
  }
  int32_t insert(std::string_view text);  // returns the node the text ends at

  const Vocab& vocab_;
  UgmOptions opt_;
  std::string path_;
  std::unordered_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> node_token_;        // the piece ending at each node, or -1
  std::vector<uint8_t> node_user_;         // a user-defined piece ends here
  bool has_user_ = false;                  // any user-defined piece at all
  std::vector<uint32_t> xcda_;             // the character map's double array
  std::string replacements_;               // its NUL-terminated replacement strings
  float unk_score_ = 0.0f;
};

// WordPiece (tokenizer.ggml.model = bert).
struct WpmOptions {
  bool lowercase = true;
  bool strip_accents = true;
};
void wpm_tokenize(const Vocab& vocab, const WpmOptions& opt, std::string_view text,
                  std::vector<int32_t>& out);

}  // namespace slm::tok
