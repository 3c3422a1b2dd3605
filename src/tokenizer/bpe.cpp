// Byte-level BPE (GPT-2 style), following llama.cpp's llm_tokenizer_bpe_session:
//   1. split the text into words with the pre-tokenizer regex of the model family,
//   2. map every byte of a word to the GPT-2 byte alphabet,
//   3. merge adjacent symbols, lowest merge rank first (leftmost on ties),
//   4. look up each final symbol; a symbol that is not a token falls back to single bytes.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <queue>

#include "core/error.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace slm::tok {

namespace {

// llama.cpp matches these regexes either with a hand-written splitter (Llama 3) or with
// std::regex over text whose non-ASCII code points were collapsed to one byte per category
// (Qwen2). In both, "whitespace" is exactly the White_Space property (plus nothing else), while
// PCRE2's \s in UCP mode is a different set (it omits U+0085). So \s and \S are spelled out as
// explicit classes over the same list llama.cpp uses.
constexpr const char* kWhiteSpace =
    "\\x{09}-\\x{0D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// The regexes exactly as llama.cpp lists them (llama-vocab.cpp, llm_tokenizer_bpe). The
// case-insensitive contraction group "(?i:'s|...)" of the original tokenizer.json is already
// rewritten there with explicit [sS] classes: under PCRE2's caseless UTF matching 's' would
// also match U+017F and 'k' U+212A, which neither llama.cpp nor Hugging Face do.
// Llama 3's \p{N}{1,3} is handled by llama.cpp's custom splitter as plain greedy runs of up to
// three digits, which is also what a backtracking engine does with this pattern.
constexpr const char* kRegexLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kRegexQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Rewrites \s and \S of a llama.cpp regex into explicit classes (see kWhiteSpace).
std::string to_pcre2_pattern(std::string_view re) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      const char e = re[i + 1];
      ++i;
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (e == 'S') {
        if (in_class) fail("tokenizer: regex uses \\S inside a character class: {}", re);
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) in_class = true;
    else if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

// Splits text into pre-tokenizer words with a PCRE2 regex (UTF + UCP). Text between matches
// becomes a word of its own, as in llama.cpp's std::regex path.
class RegexSplitter {
 public:
  explicit RegexSplitter(std::string_view llama_regex) : pattern_(to_pcre2_pattern(llama_regex)) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.c_str()), pattern_.size(),
                          PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("tokenizer: cannot compile pre-tokenizer regex at offset {}: {} ({})", err_off,
           reinterpret_cast<const char*>(msg), pattern_);
    }
    // JIT is an optimisation only; without it pcre2_match interprets the pattern.
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~RegexSplitter() { pcre2_code_free(code_); }
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Returns the word lengths in code points; they sum to cpts.size().
  std::vector<size_t> split(const std::vector<uint32_t>& cpts) const {
    // Like llama.cpp's std::regex path, match a stand-in for each non-ASCII code point that
    // has the same class as far as the patterns can tell (letter, number, whitespace, or
    // anything else). The classes then come from one Unicode table (utf8proc's, close to the
    // recent one llama.cpp generates its tables from) rather than from PCRE2's older one, and
    // lone surrogates, which llama.cpp's lax decoder lets through, become valid UTF-8.
    std::string subject;
    subject.reserve(cpts.size() * 2);
    std::vector<size_t> start(cpts.size() + 1);
    for (size_t i = 0; i < cpts.size(); ++i) {
      start[i] = subject.size();
      uint32_t c = cpts[i];
      if (c >= 0x80) {
        const unicode::Flags f = unicode::flags(c);
        if (!f.whitespace) c = f.letter ? 0xC0 : f.number ? 0xB2 : 0xD7;  // À, ², ×
      }
      unicode::append_utf8(subject, c);
    }
    start[cpts.size()] = subject.size();
    auto cpt_index = [&](size_t byte_off) {
      return static_cast<size_t>(std::lower_bound(start.begin(), start.end(), byte_off) - start.begin());
    };

    std::vector<size_t> words;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    if (!md) fail("tokenizer: out of memory creating regex match data");
    const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
    const size_t len = subject.size();
    size_t pos = 0, prev_end = 0;
    while (pos < len) {
      int rc = pcre2_match(code_, subj, len, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT && jit_) {
        // Very long runs can exhaust the JIT's small machine stack; the interpreter keeps
        // its backtracking state on the heap instead.
        rc = pcre2_match(code_, subj, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        pcre2_match_data_free(md);
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        fail("tokenizer: pre-tokenizer regex failed at byte {} of {}: {}", pos, len,
             reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t ms = ov[0], me = ov[1];
      if (ms > prev_end) words.push_back(cpt_index(ms) - cpt_index(prev_end));
      if (me > ms) {
        words.push_back(cpt_index(me) - cpt_index(ms));
        prev_end = me;
        pos = me;
      } else {
        // An empty match (none of our patterns can produce one): step over one character.
        pos = start[std::min(cpt_index(ms) + 1, cpts.size())];
      }
    }
    pcre2_match_data_free(md);
    if (prev_end < len) words.push_back(cpts.size() - cpt_index(prev_end));
    return words;
  }

 private:
  std::string pattern_;
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

namespace {
// The id pair of a table entry (its top 42 bits), shifted down.
uint64_t pair_key(int32_t l, int32_t r) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 21) | static_cast<uint32_t>(r);
}
uint64_t mix(uint64_t x) {  // splitmix64 finaliser: spreads the ids over the table
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

BpeModel::BpeModel(const Vocab& vocab, PreType pre, bool ignore_merges,
                   const std::vector<std::string_view>& merges)
    : vocab_(vocab), ignore_merges_(ignore_merges) {
  splitter_ = std::make_unique<RegexSplitter>(pre == PreType::Llama3 ? kRegexLlama3 : kRegexQwen2);
  // llama.cpp splits each line at the first space after position 0 and keys the rank on the
  // (left, right) pair of strings; a duplicate keeps its first (lowest) rank.
  const size_t n = merges.size();
  size_t cap = 16;
  while (cap * 7 < n * 10) cap *= 2;
  pair_ranks_.assign(cap, kEmpty);
  pair_mask_ = cap - 1;
  const bool ids_fit = vocab.n() < (int32_t{1} << kIdBits);  // so no entry is all ones (kEmpty)
  // The two vocabulary lookups per merge are cache misses; hashing kLookahead merges ahead and
  // prefetching their index slots overlaps them.
  constexpr size_t kLookahead = 16;
  struct Pending {
    std::string_view left, right;
    uint64_t hl, hr;
  } ring[kLookahead];
  for (size_t i = 0; i < n + kLookahead; ++i) {
    if (i >= kLookahead) {
      const size_t m = i - kLookahead;
      const Pending& p = ring[m % kLookahead];
      if (!p.left.empty()) {
        const int32_t l = vocab.find(p.left, p.hl);
        const int32_t r = vocab.find(p.right, p.hr);
        if (l >= 0 && r >= 0 && ids_fit && m < (size_t{1} << kRankBits)) {
          const uint64_t key = pair_key(l, r);
          for (uint64_t h = mix(key) & pair_mask_;; h = (h + 1) & pair_mask_) {
            const uint64_t e = pair_ranks_[h];
            if (e == kEmpty) {
              pair_ranks_[h] = key << kRankBits | m;
              break;
            }
            if (e >> kRankBits == key) break;  // duplicate merge: keep the first rank
          }
        } else {
          // Keyed by the line itself: a lookup builds "<left> <right>", which equals the line
          // exactly when the pair does, because BPE symbols never contain a space.
          text_ranks_.emplace(std::string(merges[m]), static_cast<int32_t>(m));
        }
      }
    }
    if (i < n) {
      const std::string_view line = merges[i];
      const size_t sp = line.find(' ', 1);
      Pending& p = ring[i % kLookahead];
      if (sp == std::string_view::npos) {
        p = Pending{};  // not a merge: skipped
        continue;
      }
      p.left = line.substr(0, sp);
      p.right = line.substr(sp + 1);
      p.hl = Vocab::hash(p.left);
      p.hr = Vocab::hash(p.right);
      vocab.prefetch(p.hl);
      vocab.prefetch(p.hr);
    }
  }
}

BpeModel::~BpeModel() = default;

int32_t BpeModel::rank(int32_t left_id, std::string_view left, int32_t right_id,
                       std::string_view right, std::string& key) const {
  if (left_id >= 0 && right_id >= 0 && left_id < (int32_t{1} << kIdBits) && right_id < (int32_t{1} << kIdBits)) {
    const uint64_t k = pair_key(left_id, right_id);
    for (uint64_t h = mix(k) & pair_mask_;; h = (h + 1) & pair_mask_) {
      const uint64_t e = pair_ranks_[h];
      if (e == kEmpty) break;
      if (e >> kRankBits == k) return static_cast<int32_t>(e & ((uint64_t{1} << kRankBits) - 1));
    }
  }
  if (text_ranks_.empty()) return -1;
  key.assign(left);
  key.push_back(' ');
  key.append(right);
  auto it = text_ranks_.find(std::string_view(key));
  return it == text_ranks_.end() ? -1 : it->second;
}

namespace {
struct Symbol {
  int prev;
  int next;
  size_t off;  // into the word
  size_t n;    // bytes; 0 once merged into its left neighbour
  int32_t id;  // token whose text this is, or -1
};
struct Bigram {
  int left;
  int right;
  int rank;
  size_t size;
};
// Lowest rank first, then leftmost (llama.cpp's llm_bigram_bpe::comparator).
struct BigramLater {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  }
};
}  // namespace

void BpeModel::tokenize(std::string_view text, std::vector<int32_t>& out) const {
  const std::vector<uint32_t> cpts = unicode::decode_utf8(text);
  const std::vector<size_t> lens = splitter_->split(cpts);

  std::string word, key, utf8;
  std::vector<Symbol> syms;
  std::priority_queue<Bigram, std::vector<Bigram>, BigramLater> queue;
  size_t cp = 0;
  for (size_t wl : lens) {
    // Byte-level encoding of the word. llama.cpp rebuilds the word from decoded code points,
    // so invalid UTF-8 input reaches BPE as U+FFFD.
    word.clear();
    for (size_t k = 0; k < wl; ++k) {
      utf8.clear();
      unicode::append_utf8(utf8, cpts[cp + k]);
      for (char b : utf8) word += unicode::byte_to_bpe(static_cast<uint8_t>(b));
    }
    cp += wl;
    if (word.empty()) continue;

    if (ignore_merges_) {
      // Llama 3 style: a word that is itself a token is taken whole, whatever the merges say.
      if (const int32_t id = vocab_.find(word); id >= 0) {
        out.push_back(id);
        continue;
      }
    }

    syms.clear();
    for (size_t off = 0; off < word.size();) {
      const size_t n = std::min(word.size() - off, unicode::utf8_len(static_cast<uint8_t>(word[off])));
      const int idx = static_cast<int>(syms.size());
      syms.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n,
                      vocab_.find(std::string_view(word).substr(off, n))});
      off += n;
    }
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const std::string_view lt(word.data() + syms[l].off, syms[l].n);
      const std::string_view rt(word.data() + syms[r].off, syms[r].n);
      const int32_t rk = rank(syms[l].id, lt, syms[r].id, rt, key);
      if (rk >= 0) queue.push({l, r, rk, lt.size() + rt.size()});
    };
    for (int i = 1; i < static_cast<int>(syms.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
      const Bigram bg = queue.top();
      queue.pop();
      Symbol& l = syms[bg.left];
      Symbol& r = syms[bg.right];
      // Stale entry: one side was merged away or grew since the pair was queued. (llama.cpp
      // compares the pair's text; with symbols only ever growing rightwards this is the same.)
      if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;
      l.n += r.n;
      r.n = 0;
      l.id = vocab_.find(std::string_view(word).substr(l.off, l.n));
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = bg.left;
      try_add(l.prev, bg.left);
      try_add(bg.left, l.next);
    }

    for (const Symbol& s : syms) {
      if (s.n == 0) continue;
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      const std::string_view piece(word.data() + s.off, s.n);
      // Not a token: llama.cpp looks up each byte on its own and drops those that are not
      // tokens either (with a complete byte alphabet this never loses anything).
      for (char b : piece) {
        if (const int32_t id = vocab_.find(std::string_view(&b, 1)); id >= 0) out.push_back(id);
      }
    }
  }
}

}  // namespace slm::tok
