// PDF documents for the index, through Debian's poppler-cpp.
//
// A PDF is a drawing of text, not a structure: there are no trustworthy headings or paragraphs,
// only glyphs at positions. The reader asks poppler for each page's text in reading order and
// cuts it into paragraphs at blank lines; every block carries its page number, which is the
// location a person can look up. Headings are not guessed (font sizes lie too often), so the
// chunker sees one flat run of paragraphs per page.
#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>

#include <climits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "rag/document.h"
#include "rag/text_util.h"

namespace slm::rag {

namespace {

// poppler reports every oddity of a damaged file on stderr; the reader reports the one that
// matters (the file could not be read) itself.
void ignore_poppler_message(const std::string& /*message*/, void* /*closure*/) {}

void silence_poppler() {
  static std::once_flag once;
  std::call_once(once, [] { poppler::set_debug_error_function(ignore_poppler_message, nullptr); });
}

std::string utf8_of(const poppler::ustring& s) {
  const poppler::byte_array bytes = s.to_utf8();
  return std::string(bytes.begin(), bytes.end());
}

// Text as the index stores it: valid UTF-8 (a lone UTF-16 surrogate in a font's ToUnicode map
// survives conversion as invalid bytes; each becomes U+FFFD) without control characters other
// than line breaks and tabs (some PDFs map glyphs to NUL or other C0 codes).
std::string clean_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    const size_t bad = first_invalid_utf8(s);
    const std::string_view good = s.substr(0, bad == std::string_view::npos ? s.size() : bad);
    for (char c : good) {
      const auto b = static_cast<unsigned char>(c);
      if (b >= 0x20 || c == '\n' || c == '\t') out += c;
      else if (c == '\r' || c == '\f' || c == '\v') out += '\n';
    }
    if (bad == std::string_view::npos) break;
    out += "\xEF\xBF\xBD";
    s.remove_prefix(bad + 1);
  }
  return out;
}

bool is_blank(std::string_view line) { return line.find_first_not_of(" \t") == std::string_view::npos; }

bool is_lower_ascii(char c) { return c >= 'a' && c <= 'z'; }

// Joins a paragraph's lines with spaces, rejoining words hyphenated across a line break
// ("infor-" + "mation") so the word can be found; a hyphen before a capital or a digit is kept.
std::string join_lines(const std::vector<std::string_view>& lines) {
  std::string joined;
  for (std::string_view line : lines) {
    const size_t first = line.find_first_not_of(" \t");
    line.remove_prefix(first == std::string_view::npos ? line.size() : first);
    const bool rejoin = joined.size() >= 2 && joined.back() == '-' && is_lower_ascii(joined[joined.size() - 2]) &&
                        !line.empty() && is_lower_ascii(line.front());
    if (rejoin) joined.pop_back();
    else if (!joined.empty()) joined += ' ';
    joined += line;
  }
  return collapse_whitespace(joined);
}

// A page's text cut into paragraphs at blank lines.
std::vector<std::string> paragraphs_of(std::string_view page_text) {
  std::vector<std::string> paragraphs;
  std::vector<std::string_view> lines;
  auto end_paragraph = [&] {
    std::string text = join_lines(lines);
    // A lone list bullet or rule ("•", "—") sits in a paragraph of its own in reading order;
    // with no word in it there is nothing to find.
    if (!words_of(text).empty()) paragraphs.push_back(std::move(text));
    lines.clear();
  };
  size_t pos = 0;
  while (pos <= page_text.size()) {
    size_t nl = page_text.find('\n', pos);
    if (nl == std::string_view::npos) nl = page_text.size();
    const std::string_view line = page_text.substr(pos, nl - pos);
    if (is_blank(line)) end_paragraph();
    else lines.push_back(line);
    pos = nl + 1;
  }
  end_paragraph();
  return paragraphs;
}

}  // namespace

ParsedDocument read_pdf(std::string_view name, std::string_view bytes) {
  silence_poppler();
  if (bytes.empty()) fail("{}: damaged or unreadable PDF (the file is empty)", name);
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    fail("{}: PDF too large to read ({} bytes; at most {})", name, bytes.size(), INT_MAX);

  // load_from_raw_data does not copy: `bytes` outlives the document, which is gone on return.
  const std::unique_ptr<poppler::document> pdf(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!pdf) fail("{}: damaged or unreadable PDF (poppler could not open it)", name);
  if (pdf->is_locked()) fail("{}: PDF is password-protected", name);

  ParsedDocument doc;
  doc.paged = true;
  doc.title = collapse_whitespace(clean_text(utf8_of(pdf->info_key("Title"))));
  const int page_count = pdf->pages();
  for (int index = 0; index < page_count; ++index) {
    const std::unique_ptr<poppler::page> page(pdf->create_page(index));
    if (!page) continue;  // a page object poppler cannot resolve has no text to give
    // Reading order (what pdftotext prints by default): columns come out one after the other
    // instead of interleaved line by line as in the physical layout.
    const std::string text =
        clean_text(utf8_of(page->text(poppler::rectf(), poppler::page::non_raw_non_physical_layout)));
    for (std::string& paragraph : paragraphs_of(text)) {
      Block b;
      b.kind = Block::Kind::Text;
      b.text = std::move(paragraph);
      b.page = index + 1;
      doc.blocks.push_back(std::move(b));
    }
  }
  return doc;
}

}  // namespace slm::rag
