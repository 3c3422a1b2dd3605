// HTML documents for the index, through Debian's gumbo (a WHATWG-conformant parser, so broken
// markup parses the way a browser would show it).
//
// The reader keeps what a person reads on the page and would search for: headings, paragraphs,
// list items, table rows and preformatted code, in document order. Page furniture that is not
// content (scripts, styles, navigation, embedded media fallbacks) is dropped. Inline markup
// (links, emphasis, inline code) only contributes its text to the block around it.
//
// Only UTF-8 is read as is. Pages that declare Latin-1/windows-1252 (still common in older
// documentation) are converted first; any other declared charset is refused with a message,
// because guessing wrong would index mojibake that no query matches.
#include <gumbo.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "rag/document.h"
#include "rag/text_util.h"

namespace slm::rag {

namespace {

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The charset label that follows "charset" / "encoding" at `pos` in `s` ("= 'iso-8859-1'"),
// lower-cased; empty when there is none. Only token characters are taken, so a label read from
// arbitrary bytes is safe to put in a message.
std::string label_after(std::string_view s, size_t pos) {
  while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
  if (pos >= s.size() || s[pos] != '=') return {};
  ++pos;
  while (pos < s.size() && (std::isspace(static_cast<unsigned char>(s[pos])) || s[pos] == '"' || s[pos] == '\''))
    ++pos;
  std::string label;
  while (pos < s.size() && label.size() < 40) {
    const char c = s[pos++];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != ':') break;
    label += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return label;
}

// The charset the page declares: an XML declaration's encoding, or a <meta charset> /
// <meta http-equiv content="...; charset=..."> before <body>. Browsers look only at the start
// of the file too; 64 KiB leaves room for heads full of inline styles.
std::string declared_charset(std::string_view bytes) {
  const std::string head = ascii_lower(bytes.substr(0, 64 * 1024));
  const size_t first = head.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && head.compare(first, 5, "<?xml") == 0) {
    const size_t decl_end = head.find("?>", first);
    const size_t enc = head.find("encoding", first);
    if (enc != std::string::npos && enc < decl_end) {
      std::string label = label_after(head, enc + 8);
      if (!label.empty()) return label;
    }
  }
  const size_t body = head.find("<body");
  for (size_t meta = head.find("<meta"); meta < body; meta = head.find("<meta", meta + 5)) {
    const size_t tag_end = std::min(head.find('>', meta), body);
    for (size_t cs = head.find("charset", meta); cs < tag_end; cs = head.find("charset", cs + 7)) {
      std::string label = label_after(head, cs + 7);
      if (!label.empty()) return label;
    }
  }
  return {};
}

// "UTF-16" / "UTF-32" when the file starts like a page in one of those (a byte order mark, or
// "<" with NUL bytes beside it), so the message names the charset instead of a NUL byte.
std::string_view wide_unicode_signature(std::string_view bytes) {
  const auto starts = [&](std::string_view prefix) { return bytes.substr(0, prefix.size()) == prefix; };
  using namespace std::string_view_literals;
  if (starts("\xFF\xFE\0\0"sv) || starts("\0\0\xFE\xFF"sv) || starts("<\0\0\0"sv) || starts("\0\0\0<"sv))
    return "UTF-32";
  if (starts("\xFF\xFE"sv) || starts("\xFE\xFF"sv) || starts("<\0"sv) || starts("\0<"sv)) return "UTF-16";
  return {};
}

// A <meta> that says UTF-16 in a file that is not (we only get here when it is not) means
// UTF-8, as WHATWG rules: the page was re-saved without its declaration being updated.
bool is_utf8_label(std::string_view label) {
  return label == "utf-8" || label == "utf8" || label == "utf-16" || label == "utf-16le" || label == "utf-16be";
}

// Labels that WHATWG decodes as windows-1252 (ASCII and ISO-8859-1 included: browsers have
// always read those as 1252, and the two agree wherever Latin-1 has printable characters).
bool is_latin1_label(std::string_view label) {
  static const char* const kLabels[] = {
      "iso-8859-1", "iso8859-1", "iso_8859-1", "iso88591", "iso_8859-1:1987", "latin1", "latin-1",
      "l1",         "cp819",     "ibm819",     "csisolatin1", "iso-ir-100", "windows-1252", "cp1252",
      "x-cp1252",   "us-ascii",  "ascii",      "ansi_x3.4-1968"};
  return std::find(std::begin(kLabels), std::end(kLabels), label) != std::end(kLabels);
}

// Code points below U+10000 (all that windows-1252 maps to).
void append_utf8(std::string& out, unsigned cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
    return;
  }
  if (cp < 0x800) out += static_cast<char>(0xC0 | (cp >> 6));
  else out += {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F))};
  out += static_cast<char>(0x80 | (cp & 0x3F));
}

// windows-1252 to UTF-8. Bytes 0x80-0x9F are 1252's punctuation (curly quotes, dashes, euro);
// the five it leaves undefined map to the C1 code points of the same value, as WHATWG does.
std::string cp1252_to_utf8(std::string_view bytes) {
  static const unsigned short kHigh[32] = {
      0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
      0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
      0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};
  std::string out;
  out.reserve(bytes.size() + bytes.size() / 8);
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    append_utf8(out, b >= 0x80 && b < 0xA0 ? kHigh[b - 0x80] : b);
  }
  return out;
}

// Elements whose contents are not text a reader sees as part of the page.
bool is_skipped(GumboTag tag) {
  switch (tag) {
    case GUMBO_TAG_HEAD: case GUMBO_TAG_TITLE: case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE:
    case GUMBO_TAG_NOSCRIPT: case GUMBO_TAG_TEMPLATE: case GUMBO_TAG_NAV: case GUMBO_TAG_SELECT:
    case GUMBO_TAG_BUTTON: case GUMBO_TAG_IFRAME: case GUMBO_TAG_OBJECT: case GUMBO_TAG_EMBED:
    case GUMBO_TAG_CANVAS: case GUMBO_TAG_AUDIO: case GUMBO_TAG_VIDEO: case GUMBO_TAG_NOFRAMES:
    case GUMBO_TAG_SVG: case GUMBO_TAG_MATH:
      return true;
    default:
      return false;
  }
}

// Phrasing elements: their text flows into the surrounding block. Unknown (custom) elements
// count as inline, as CSS displays them by default.
bool is_inline(GumboTag tag) {
  switch (tag) {
    case GUMBO_TAG_A: case GUMBO_TAG_ABBR: case GUMBO_TAG_ACRONYM: case GUMBO_TAG_B:
    case GUMBO_TAG_BDI: case GUMBO_TAG_BDO: case GUMBO_TAG_BIG: case GUMBO_TAG_BLINK:
    case GUMBO_TAG_CITE: case GUMBO_TAG_CODE: case GUMBO_TAG_DATA: case GUMBO_TAG_DEL:
    case GUMBO_TAG_DFN: case GUMBO_TAG_EM: case GUMBO_TAG_FONT: case GUMBO_TAG_I:
    case GUMBO_TAG_IMG: case GUMBO_TAG_INS: case GUMBO_TAG_KBD: case GUMBO_TAG_LABEL:
    case GUMBO_TAG_MARK: case GUMBO_TAG_NOBR: case GUMBO_TAG_Q: case GUMBO_TAG_RP:
    case GUMBO_TAG_RT: case GUMBO_TAG_RTC: case GUMBO_TAG_RUBY: case GUMBO_TAG_S:
    case GUMBO_TAG_SAMP: case GUMBO_TAG_SMALL: case GUMBO_TAG_SPAN: case GUMBO_TAG_STRIKE:
    case GUMBO_TAG_STRONG: case GUMBO_TAG_SUB: case GUMBO_TAG_SUP: case GUMBO_TAG_TIME:
    case GUMBO_TAG_TT: case GUMBO_TAG_U: case GUMBO_TAG_VAR: case GUMBO_TAG_WBR:
    case GUMBO_TAG_OUTPUT: case GUMBO_TAG_METER: case GUMBO_TAG_PROGRESS: case GUMBO_TAG_UNKNOWN:
      return true;
    default:
      return false;
  }
}

bool has_class(const GumboElement& el, std::string_view wanted) {
  const GumboAttribute* cls = gumbo_get_attribute(&el.attributes, "class");
  if (cls == nullptr) return false;
  std::string_view list = cls->value;
  size_t pos = 0;
  while (pos < list.size()) {
    const size_t end = std::min(list.find_first_of(" \t\r\n\f", pos), list.size());
    if (list.substr(pos, end - pos) == wanted) return true;
    pos = end + 1;
  }
  return false;
}

// Hidden elements, ARIA navigation landmarks (sidebars and menus that are not <nav>), and the
// "¶" permalink Sphinx and MkDocs append to every heading.
bool is_hidden_or_chrome(const GumboElement& el) {
  if (gumbo_get_attribute(&el.attributes, "hidden") != nullptr) return true;
  if (const GumboAttribute* role = gumbo_get_attribute(&el.attributes, "role")) {
    const std::string r = ascii_lower(role->value);
    if (r == "navigation" || r == "search") return true;
  }
  return el.tag == GUMBO_TAG_A && has_class(el, "headerlink");
}

// 1..6 for h1..h6 (consecutive in gumbo's tag enum), else 0.
int heading_level(GumboTag tag) {
  return tag >= GUMBO_TAG_H1 && tag <= GUMBO_TAG_H6 ? static_cast<int>(tag - GUMBO_TAG_H1) + 1 : 0;
}

bool is_preformatted(GumboTag tag) {
  return tag == GUMBO_TAG_PRE || tag == GUMBO_TAG_LISTING || tag == GUMBO_TAG_XMP || tag == GUMBO_TAG_PLAINTEXT;
}

// Code keeps its lines and indentation; only blank lines around it and trailing space go.
std::string tidy_code(std::string_view s) {
  size_t start = 0;
  for (size_t i = 0; i < s.size() && std::isspace(static_cast<unsigned char>(s[i])); ++i) {
    if (s[i] == '\n') start = i + 1;
  }
  size_t end = s.size();
  while (end > start && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return std::string(s.substr(start, end - start));
}

// Walks the tree without recursion: gumbo builds trees as deep as the markup nests (a page of
// 400k unclosed <span>s is a 400k-deep tree), which would overflow the stack of a recursive walk.
class HtmlWalker {
 public:
  explicit HtmlWalker(std::vector<Block>& out) : out_(out) {}

  void walk(const GumboNode* root) {
    struct Frame {
      const GumboNode* node;
      unsigned next_child;
      Close close;
    };
    std::vector<Frame> stack;
    if (root->type == GUMBO_NODE_ELEMENT || root->type == GUMBO_NODE_DOCUMENT) stack.push_back({root, 0, open(root)});
    while (!stack.empty()) {
      Frame& top = stack.back();
      const GumboVector& children =
          top.node->type == GUMBO_NODE_DOCUMENT ? top.node->v.document.children : top.node->v.element.children;
      if (top.close == Close::Skip || top.next_child >= children.length) {
        close(top.close);
        stack.pop_back();
        continue;
      }
      const auto* child = static_cast<const GumboNode*>(children.data[top.next_child++]);
      if (child->type == GUMBO_NODE_ELEMENT) {
        stack.push_back({child, 0, open(child)});
      } else if (child->type == GUMBO_NODE_TEXT || child->type == GUMBO_NODE_CDATA) {
        add_text(child->v.text);
      } else if (child->type == GUMBO_NODE_WHITESPACE) {
        pending_ += pre_depth_ > 0 ? std::string_view(child->v.text.text) : std::string_view(" ");
      }
      // Comments and <template> contents (GUMBO_NODE_TEMPLATE) are not page text.
    }
    flush();
  }

 private:
  // What leaving an element does, decided when entering it.
  enum class Close { None, Skip, Flush, EndPre, EndRow };

  Close open(const GumboNode* node) {
    if (node->type == GUMBO_NODE_DOCUMENT) return Close::None;
    const GumboElement& el = node->v.element;
    if (el.tag_namespace != GUMBO_NAMESPACE_HTML || is_skipped(el.tag) || is_hidden_or_chrome(el)) return Close::Skip;
    if (el.tag == GUMBO_TAG_BR) {
      pending_ += pre_depth_ > 0 ? '\n' : ' ';
      return Close::None;
    }
    if (is_preformatted(el.tag)) {
      if (pre_depth_++ == 0) start_block(Block::Kind::Code, 0);
      return Close::EndPre;
    }
    if (pre_depth_ > 0 || is_inline(el.tag)) return Close::None;
    if (const int level = heading_level(el.tag)) {
      start_block(Block::Kind::Heading, level);
      return Close::Flush;
    }
    if (el.tag == GUMBO_TAG_TR) {
      flush();
      row_cells_.push_back(0);
      return Close::EndRow;
    }
    if ((el.tag == GUMBO_TAG_TD || el.tag == GUMBO_TAG_TH) && !row_cells_.empty()) {
      if (row_cells_.back()++ > 0 && !collapse_whitespace(pending_).empty()) pending_ += " | ";
      return Close::None;
    }
    // Any other block element: a new block, unless it sits inside a table row, whose text
    // stays one block (a <p> in a cell), or wraps a heading's words (<h2><div>Title</div>). A
    // block after a heading's words ends the heading: an unclosed <h1> must not turn the rest
    // of the page into one heading.
    if (!row_cells_.empty() || (kind_ == Block::Kind::Heading && collapse_whitespace(pending_).empty())) {
      pending_ += ' ';
      return Close::None;
    }
    flush();
    return Close::Flush;
  }

  void close(Close what) {
    if (what == Close::Flush || (what == Close::EndPre && --pre_depth_ == 0)) flush();
    if (what == Close::EndRow) {
      flush();
      row_cells_.pop_back();
    }
  }

  void start_block(Block::Kind kind, int level) {
    flush();
    kind_ = kind;
    level_ = level;
  }

  void add_text(const GumboText& t) {
    std::string_view text = t.text;
    // &nbsp; is layout, not content; as a plain space it collapses like any other.
    for (size_t nbsp; (nbsp = text.find("\xC2\xA0")) != std::string_view::npos;) {
      pending_ += text.substr(0, nbsp);
      pending_ += ' ';
      text.remove_prefix(nbsp + 2);
    }
    pending_ += text;
    note_lines(t);
  }

  // Lines of the first and last visible character of a text node, from its source position
  // and the newlines in its source text (before entities were decoded).
  void note_lines(const GumboText& t) {
    if (t.start_pos.line == 0 || t.original_text.data == nullptr) return;
    const std::string_view src(t.original_text.data, t.original_text.length);
    const size_t first = src.find_first_not_of(" \t\r\n\f");
    if (first == std::string_view::npos) return;
    const size_t last = src.find_last_not_of(" \t\r\n\f");
    const int first_line = static_cast<int>(t.start_pos.line + std::count(src.begin(), src.begin() + first, '\n'));
    const int last_line = first_line + static_cast<int>(std::count(src.begin() + first, src.begin() + last, '\n'));
    if (line_start_ == 0 || first_line < line_start_) line_start_ = first_line;
    line_end_ = std::max(line_end_, last_line);
  }

  void flush() {
    std::string text = kind_ == Block::Kind::Code ? tidy_code(pending_) : collapse_whitespace(pending_);
    if (!text.empty()) out_.push_back({kind_, level_, std::move(text), line_start_, std::max(line_end_, line_start_), 0});
    pending_.clear();
    kind_ = Block::Kind::Text;
    level_ = 0;
    line_start_ = line_end_ = 0;
  }

  std::vector<Block>& out_;
  std::string pending_;  // raw text of the block being collected
  Block::Kind kind_ = Block::Kind::Text;
  int level_ = 0;
  int line_start_ = 0, line_end_ = 0;
  int pre_depth_ = 0;            // > 0 inside <pre>: whitespace and newlines are kept
  std::vector<int> row_cells_;   // cells seen so far in each open table row (nested tables)
};

// Text of the document's <title> (HTML namespace: an SVG <title> is a tooltip), or empty.
std::string title_of(const GumboNode* root) {
  std::vector<const GumboNode*> stack{root};
  while (!stack.empty()) {
    const GumboNode* node = stack.back();
    stack.pop_back();
    if (node->type != GUMBO_NODE_ELEMENT) continue;
    const GumboElement& el = node->v.element;
    if (el.tag == GUMBO_TAG_TITLE && el.tag_namespace == GUMBO_NAMESPACE_HTML) {
      std::string text;
      for (unsigned i = 0; i < el.children.length; ++i) {
        const auto* child = static_cast<const GumboNode*>(el.children.data[i]);
        if (child->type == GUMBO_NODE_TEXT || child->type == GUMBO_NODE_WHITESPACE) text += child->v.text.text;
      }
      return collapse_whitespace(text);
    }
    for (unsigned i = el.children.length; i-- > 0;) stack.push_back(static_cast<const GumboNode*>(el.children.data[i]));
  }
  return {};
}

// Owns every block gumbo allocates, and frees what is left at once when it goes (on every way
// out, exceptions included). gumbo_destroy_output frees the tree recursively and overflows the
// stack on a page of ~300k nested elements (a 2 MB file), so it is never called.
class GumboMemory {
 public:
  explicit GumboMemory(size_t input_size) { live_.reserve(input_size / 16 + 64); }
  GumboMemory(const GumboMemory&) = delete;
  GumboMemory& operator=(const GumboMemory&) = delete;
  ~GumboMemory() { std::for_each(live_.begin(), live_.end(), std::free); }

  void use_in(GumboOptions& options) {
    options.allocator = &GumboMemory::allocate;
    options.deallocator = &GumboMemory::release;
    options.userdata = this;
  }

 private:
  // gumbo is C and cannot pass an exception on: running out of memory here ends the program,
  // as it would inside gumbo's own malloc calls.
  static void* allocate(void* self, size_t size) noexcept {
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) std::abort();
    static_cast<GumboMemory*>(self)->live_.insert(p);
    return p;
  }
  static void release(void* self, void* p) noexcept {
    if (p == nullptr) return;
    static_cast<GumboMemory*>(self)->live_.erase(p);
    std::free(p);
  }

  std::unordered_set<void*> live_;
};

}  // namespace

ParsedDocument read_html(std::string_view name, std::string_view bytes) {
  std::string converted;  // the page in UTF-8 when it was declared Latin-1 / windows-1252
  if (bytes.substr(0, 3) == "\xEF\xBB\xBF") {
    bytes.remove_prefix(3);  // a UTF-8 byte order mark overrides any declaration
    check_utf8_text(name, bytes);
  } else if (const std::string_view wide = wide_unicode_signature(bytes); !wide.empty()) {
    fail("{}: HTML in charset {} is not supported (save it as UTF-8)", name, wide);
  } else {
    const std::string charset = declared_charset(bytes);
    if (charset.empty() || is_utf8_label(charset)) {
      check_utf8_text(name, bytes);
    } else if (is_latin1_label(charset)) {
      converted = cp1252_to_utf8(bytes);
      check_utf8_text(name, converted);  // still refuses binary files (NUL bytes)
      bytes = converted;
    } else {
      fail("{}: HTML in charset {} is not supported (save it as UTF-8)", name, charset);
    }
  }

  GumboMemory memory(bytes.size());
  GumboOptions options = kGumboDefaultOptions;
  options.max_errors = 0;  // parse errors are not reported; don't spend memory recording them
  memory.use_in(options);
  const GumboOutput* output = gumbo_parse_with_options(&options, bytes.data(), bytes.size());
  if (output == nullptr || output->root == nullptr) fail("{}: the HTML parser gave no document", name);

  ParsedDocument doc;
  HtmlWalker(doc.blocks).walk(output->root);
  doc.title = title_of(output->root);
  if (doc.title.empty()) {
    for (const Block& b : doc.blocks) {
      if (b.kind == Block::Kind::Heading && b.level == 1) {
        doc.title = b.text;
        break;
      }
    }
  }
  return doc;
}

}  // namespace slm::rag
