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
// One 64-bit key for a pair of string hashes (splitmix64's finaliser over a combination that
// depends on the order).
uint64_t pair_key(uint64_t hl, uint64_t hr) {
  uint64_t x = hl * 0x9E3779B97F4A7C15ull + (hr ^ (hr >> 29));
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
constexpr uint64_t kRankMask = (uint64_t{1} << 22) - 1;
}  // namespace

BpeModel::BpeModel(const Vocab& vocab, PreType pre, bool ignore_merges, size_t n_merges,
                   const std::function<std::string_view(size_t)>& merge)
    : vocab_(vocab), ignore_merges_(ignore_merges) {
  splitter_ = std::make_unique<RegexSplitter>(pre == PreType::Llama3 ? kRegexLlama3 : kRegexQwen2);
  size_t total = 0;
  for (size_t m = 0; m < n_merges; ++m) total += merge(m).size();
  if (n_merges > kRankMask || total > UINT32_MAX)
    fail("tokenizer: {} merges ({} bytes) are more than slm can index", n_merges, total);
  lines_.reserve(total);
  ends_.reserve(n_merges);
  size_t cap = 16;
  while (cap * 7 < n_merges * 10) cap *= 2;
  table_.assign(cap, kEmpty);
  mask_ = cap - 1;
  for (size_t m = 0; m < n_merges; ++m) {
    const std::string_view line = merge(m);
    lines_.append(line);
    ends_.push_back(static_cast<uint32_t>(lines_.size()));
    const size_t sp = line.find(' ', 1);
    if (sp == std::string_view::npos) continue;  // not a merge: never matches
    const std::string_view left = line.substr(0, sp), right = line.substr(sp + 1);
    const uint64_t hl = Vocab::hash(left), hr = Vocab::hash(right);
    if (rank(left, hl, right, hr) >= 0) continue;  // duplicate
    const uint64_t key = pair_key(hl, hr);
    for (uint64_t h = key & mask_;; h = (h + 1) & mask_) {
      if (table_[h] == kEmpty) {
        table_[h] = (key & ~kRankMask) | m;
        break;
      }
    }
  }
}

BpeModel::~BpeModel() = default;

int32_t BpeModel::rank(std::string_view left, uint64_t hl, std::string_view right, uint64_t hr) const {
  const uint64_t key = pair_key(hl, hr);
  for (uint64_t h = key & mask_;; h = (h + 1) & mask_) {
    const uint64_t e = table_[h];
    if (e == kEmpty) return -1;
    if ((e & ~kRankMask) != (key & ~kRankMask)) continue;
    const size_t m = e & kRankMask;
    const size_t b = m == 0 ? 0 : ends_[m - 1];
    const std::string_view line(lines_.data() + b, ends_[m] - b);
    // The line must split into exactly (left, right) at its first space after position 0.
    if (line.size() == left.size() + 1 + right.size() && line.find(' ', 1) == left.size() &&
        line.compare(0, left.size(), left) == 0 && line.compare(left.size() + 1, right.size(), right) == 0)
      return static_cast<int32_t>(m);
  }
}

namespace {
struct Symbol {
  int prev;
  int next;
  size_t off;  // into the word
  size_t n;    // bytes; 0 once merged into its left neighbour
  int32_t id;  // token whose text this is, or -1
  uint64_t h;  // Vocab::hash() of its text
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

  std::string word, utf8;
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
      const std::string_view t = std::string_view(word).substr(off, n);
      const uint64_t h = Vocab::hash(t);
      syms.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n, vocab_.find(t, h), h});
      off += n;
    }
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const std::string_view lt(word.data() + syms[l].off, syms[l].n);
      const std::string_view rt(word.data() + syms[r].off, syms[r].n);
      const int32_t rk = rank(lt, syms[l].h, rt, syms[r].h);
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
      const std::string_view merged = std::string_view(word).substr(l.off, l.n);
      l.h = Vocab::hash(merged);
      l.id = vocab_.find(merged, l.h);
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
