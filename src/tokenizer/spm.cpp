// SentencePiece-style BPE as llama.cpp implements it (llm_tokenizer_spm_session): start from
// single UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is a token
// with the highest score (leftmost on ties), then emit each piece, falling back to <0xXX> byte
// tokens for pieces that are not in the vocabulary.
#include <queue>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace slm::tok {

namespace {

struct Symbol {
  int prev;
  int next;
  size_t off;
  size_t n;  // bytes; 0 once merged into the left neighbour
};

struct Bigram {
  int left;
  int right;
  float score;
  size_t size;
};

// Highest score first, then leftmost (llama.cpp's llm_bigram_spm::comparator).
struct BigramWorse {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

class Session {
 public:
  Session(const Vocab& vocab, std::string_view text) : vocab_(vocab), text_(text) {}

  void run(std::vector<int32_t>& out) {
    for (size_t off = 0; off < text_.size();) {
      const size_t n = std::min(text_.size() - off, unicode::utf8_len(static_cast<uint8_t>(text_[off])));
      const int idx = static_cast<int>(syms_.size());
      syms_.push_back({idx - 1, off + n == text_.size() ? -1 : idx + 1, off, n});
      off += n;
    }
    for (int i = 1; i < static_cast<int>(syms_.size()); ++i) try_add(i - 1, i);

    while (!queue_.empty()) {
      const Bigram bg = queue_.top();
      queue_.pop();
      Symbol& l = syms_[bg.left];
      Symbol& r = syms_[bg.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;  // stale
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) syms_[r.next].prev = bg.left;
      try_add(l.prev, bg.left);
      try_add(bg.left, l.next);
    }

    if (syms_.empty()) return;
    for (int i = 0; i != -1; i = syms_[i].next) resegment(syms_[i], out, 0);
  }

 private:
  std::string_view piece(const Symbol& s) const { return text_.substr(s.off, s.n); }

  void try_add(int left, int right) {
    if (left < 0 || right < 0) return;
    const std::string_view t = text_.substr(syms_[left].off, syms_[left].n + syms_[right].n);
    const int32_t id = vocab_.find(t);
    if (id < 0) return;
    queue_.push({left, right, vocab_.tokens[id].score, t.size()});
    // Last writer wins, as in llama.cpp's rev_merge map.
    rev_merge_[std::string(t)] = {left, right};
  }

  void resegment(const Symbol& s, std::vector<int32_t>& out, size_t depth) {
    const std::string_view t = piece(s);
    if (const int32_t id = vocab_.find(t); id >= 0) {
      out.push_back(id);
      return;
    }
    // Every merge produces a token, so this path is reached for single characters that are
    // not tokens; rev_merge is consulted first only because llama.cpp does. The depth guard
    // keeps a pathological vocabulary from recursing without end.
    auto it = rev_merge_.find(t);
    if (it != rev_merge_.end() && depth < syms_.size()) {
      const auto [l, r] = it->second;
      resegment(syms_[l], out, depth + 1);
      resegment(syms_[r], out, depth + 1);
      return;
    }
    for (char c : t) out.push_back(byte_token(static_cast<uint8_t>(c)));
  }

  // llama.cpp's byte_to_token for SPM: "<0xXX>", else the byte itself as a token. It throws
  // when neither exists; we fall back to the unknown token (or drop the byte without one).
  int32_t byte_token(uint8_t b) const {
    static constexpr char kHex[] = "0123456789ABCDEF";
    const char buf[6] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    if (const int32_t id = vocab_.find(std::string_view(buf, 6)); id >= 0) return id;
    const char raw = static_cast<char>(b);
    if (const int32_t id = vocab_.find(std::string_view(&raw, 1)); id >= 0) return id;
    return vocab_.unk_id;
  }

  const Vocab& vocab_;
  std::string_view text_;
  std::vector<Symbol> syms_;
  std::priority_queue<Bigram, std::vector<Bigram>, BigramWorse> queue_;
  StringMap<std::pair<int, int>> rev_merge_;
};

}  // namespace

void spm_tokenize(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) {
  const size_t before = out.size();
  Session(vocab, text).run(out);
  // Drop the -1 of a byte with neither a byte token nor an unknown token.
  size_t w = before;
  for (size_t i = before; i < out.size(); ++i) {
    if (out[i] >= 0) out[w++] = out[i];
  }
  out.resize(w);
}

}  // namespace slm::tok
