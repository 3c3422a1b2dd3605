// See chunker.h.
#include "rag/chunker.h"

#include <algorithm>

#include "rag/text_util.h"

namespace slm::rag {

std::string join_heading_path(const std::vector<std::string>& headings) {
  std::string out;
  for (const std::string& h : headings) {
    if (h.empty()) continue;
    if (!out.empty()) out += " > ";
    out += h;
  }
  return out;
}

namespace {

struct Piece {
  std::string text;
  int line_start, line_end, page;
  int tokens;
};

class Chunker {
 public:
  Chunker(const ChunkOptions& opts) : opts_(opts) {}

  std::vector<Chunk> run(const ParsedDocument& doc) {
    for (const Block& b : doc.blocks) {
      if (b.kind == Block::Kind::Heading) {
        while (!path_.empty() && path_.back().first >= b.level) path_.pop_back();
        if (!cur_.empty() && cur_tokens_ < opts_.min_tokens) {
          // A short section (one small function's description) shares its chunk with the next:
          // tiny chunks rank by chance in BM25. The chunk keeps the headings both sections share,
          // and this section's heading becomes a line of its text.
          size_t keep = std::min(chunk_path_.size(), path_.size());
          for (size_t k = 0; k < keep; ++k)
            if (chunk_path_[k] != path_[k]) {
              keep = k;
              break;
            }
          if (keep < chunk_path_.size()) {
            // Headings the chunk no longer carries in its path open its text instead.
            std::vector<std::string> dropped;
            for (size_t k = keep; k < chunk_path_.size(); ++k) dropped.push_back(chunk_path_[k].second);
            std::string head = join_heading_path(dropped);
            const int n = count(head);
            cur_tokens_ += n;
            cur_.insert(cur_.begin(), Piece{std::move(head), cur_.front().line_start, cur_.front().line_start,
                                            cur_.front().page, n});
            chunk_path_.resize(keep);
          }
          path_.emplace_back(b.level, b.text);
          const int n = count(b.text);
          cur_tokens_ += n;
          cur_.push_back(Piece{b.text, b.line_start, b.line_end, b.page, n});
          continue;
        }
        flush(false);
        path_.emplace_back(b.level, b.text);
        continue;
      }
      const int n = count(b.text);
      if (n > opts_.target_tokens) {
        for (Piece& p : split_long(b)) add(std::move(p));
        continue;
      }
      add(Piece{b.text, b.line_start, b.line_end, b.page, n});
    }
    flush(false);
    return std::move(out_);
  }

 private:
  int count(std::string_view s) const {
    return opts_.count_tokens ? opts_.count_tokens(s) : estimate_tokens(s);
  }

  void add(Piece p) {
    if (!cur_.empty() && cur_tokens_ + p.tokens > opts_.target_tokens) {
      flush(true);
      // The overlap is best effort: it never pushes a chunk past the target.
      if (cur_tokens_ + p.tokens > opts_.target_tokens) {
        cur_.clear();
        cur_tokens_ = 0;
      }
    }
    if (cur_.empty()) chunk_path_ = path_;
    cur_tokens_ += p.tokens;
    cur_.push_back(std::move(p));
  }

  // Ends the current chunk. `carry`: the section goes on, so the next chunk starts with the last
  // sentences of this one (up to overlap_tokens) to keep a thought that straddles the cut.
  void flush(bool carry) {
    if (cur_.empty()) return;
    Chunk c;
    std::vector<std::string> heads;
    for (const auto& [level, text] : chunk_path_) heads.push_back(text);
    c.heading_path = join_heading_path(heads);
    for (const Piece& p : cur_) {
      if (!c.text.empty()) c.text += "\n\n";
      c.text += p.text;
      if (p.line_start > 0 && (c.line_start == 0 || p.line_start < c.line_start)) c.line_start = p.line_start;
      c.line_end = std::max(c.line_end, p.line_end);
      if (p.page > 0 && (c.page_start == 0 || p.page < c.page_start)) c.page_start = p.page;
      c.page_end = std::max(c.page_end, p.page);
    }
    c.n_tokens = cur_tokens_;
    std::vector<Piece> next;
    if (carry && opts_.overlap_tokens > 0) {
      const Piece& last = cur_.back();
      std::vector<std::string_view> sents = sentences_of(last.text);
      std::string tail;
      int tokens = 0;
      for (size_t i = sents.size(); i-- > 0;) {
        const int n = count(sents[i]);
        if (tokens + n > opts_.overlap_tokens) break;
        tail = std::string(sents[i]) + (tail.empty() ? "" : " ") + tail;
        tokens += n;
      }
      // Not the whole piece again: the overlap is a tail, never a copy of the last block.
      if (!tail.empty() && tail.size() < last.text.size())
        next.push_back(Piece{std::move(tail), last.line_end, last.line_end, last.page, tokens});
    }
    out_.push_back(std::move(c));
    cur_ = std::move(next);
    chunk_path_ = path_;
    cur_tokens_ = 0;
    for (const Piece& p : cur_) cur_tokens_ += p.tokens;
  }

  // A block over the target, cut into pieces of at most the target: prose at sentence ends,
  // code at line ends; a single sentence or line longer than the target is cut at a byte
  // boundary that does not split a UTF-8 character.
  std::vector<Piece> split_long(const Block& b) {
    std::vector<std::string_view> units;
    if (b.kind == Block::Kind::Code) {
      std::string_view s = b.text;
      size_t start = 0;
      while (start < s.size()) {
        size_t nl = s.find('\n', start);
        if (nl == std::string_view::npos) nl = s.size();
        units.push_back(s.substr(start, nl - start + (nl < s.size() ? 1 : 0)));
        start = nl + 1;
      }
    } else {
      units = sentences_of(b.text);
    }
    const bool code = b.kind == Block::Kind::Code;
    std::vector<Piece> pieces;
    std::string text;
    int tokens = 0;
    const int lines = std::max(1, b.line_end - b.line_start + 1);
    size_t done = 0;  // bytes of the block already in finished pieces, to estimate lines
    auto emit = [&] {
      if (text.empty()) return;
      // Lines of a piece, in proportion to its place in the block (a paragraph's own line breaks
      // are gone after whitespace collapsing).
      const int a = b.line_start + static_cast<int>(static_cast<double>(done) / b.text.size() * lines);
      done += text.size();
      const int z = b.line_start + static_cast<int>(static_cast<double>(std::min(done, b.text.size()) - 1) / b.text.size() * lines);
      pieces.push_back(Piece{text, b.line_start ? a : 0, b.line_start ? std::min(z, b.line_end) : 0, b.page, tokens});
      text.clear();
      tokens = 0;
    };
    // Pieces leave room for the overlap the next chunk starts with.
    const int limit = std::max(1, opts_.target_tokens - std::max(0, opts_.overlap_tokens));
    for (std::string_view u : units) {
      int n = count(u);
      while (n > limit && u.size() > 1) {  // one unit over the limit on its own
        emit();
        size_t cut = std::max<size_t>(1, u.size() * static_cast<size_t>(limit) / static_cast<size_t>(n));
        while (cut < u.size() && (static_cast<unsigned char>(u[cut]) & 0xC0) == 0x80) ++cut;
        text = std::string(u.substr(0, cut));
        tokens = count(text);
        emit();
        u.remove_prefix(cut);
        n = count(u);
      }
      if (tokens + n > limit) emit();
      if (!text.empty()) text += code ? "" : " ";
      text += u;
      tokens += n;
    }
    emit();
    return pieces;
  }

  const ChunkOptions& opts_;
  std::vector<std::pair<int, std::string>> path_;
  std::vector<std::pair<int, std::string>> chunk_path_;  // headings of the chunk being filled
  std::vector<Piece> cur_;
  int cur_tokens_ = 0;
  std::vector<Chunk> out_;
};

}  // namespace

std::vector<Chunk> chunk_document(const ParsedDocument& doc, const ChunkOptions& opts) {
  std::vector<Chunk> chunks = Chunker(opts).run(doc);
  // The document title heads every path, also in documents whose first heading is not level 1.
  if (!doc.title.empty())
    for (Chunk& c : chunks)
      if (c.heading_path.rfind(doc.title, 0) != 0) c.heading_path = join_heading_path({doc.title, c.heading_path});
  return chunks;
}

}  // namespace slm::rag
