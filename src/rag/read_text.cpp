// Text formats for the index: plain text, Markdown and reStructuredText (Sphinx sources
// included), plus the format dispatch and the UTF-8 check every text reader goes through.
//
// These readers are for retrieval, not for rendering: they keep the words a person searches for
// (section titles, paragraphs, code, Sphinx object signatures, index entries) and drop the markup
// around them (roles, link targets, comments, table borders). Structure that matters for chunking
// is kept as Heading blocks, with levels in order of first appearance as reST defines them.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "rag/document.h"
#include "rag/text_util.h"

namespace slm::rag {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string file_stem(std::string_view path) {
  size_t slash = path.find_last_of("/\\");
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t dot = name.find('.');
  return std::string(dot == std::string_view::npos || dot == 0 ? name : name.substr(0, dot));
}

struct Line {
  std::string_view text;
  int number;  // 1-based
};

std::vector<Line> split_lines(std::string_view text) {
  std::vector<Line> lines;
  size_t start = 0;
  int n = 1;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(start, end - start);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (!(end == text.size() && l.empty() && start == text.size() && start != 0)) lines.push_back({l, n});
    if (end == text.size()) break;
    start = end + 1;
    ++n;
  }
  return lines;
}

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\f\v") == std::string_view::npos;
}

int indent_of(std::string_view s) {
  int n = 0;
  for (char c : s) {
    if (c == ' ') ++n;
    else if (c == '\t') n = (n / 8 + 1) * 8;
    else break;
  }
  return n;
}

std::string_view trim(std::string_view s) {
  size_t a = s.find_first_not_of(" \t\f\v\r\n");
  if (a == std::string_view::npos) return {};
  size_t b = s.find_last_not_of(" \t\f\v\r\n");
  return s.substr(a, b - a + 1);
}

// Drops `n` columns of indentation (tabs count to the next multiple of 8).
std::string_view dedent(std::string_view s, int n) {
  int col = 0;
  size_t i = 0;
  while (i < s.size() && col < n && (s[i] == ' ' || s[i] == '\t')) {
    col = s[i] == '\t' ? (col / 8 + 1) * 8 : col + 1;
    ++i;
  }
  return s.substr(i);
}

void add_block(ParsedDocument& doc, Block::Kind kind, std::string text, int first, int last, int level = 0) {
  if (kind == Block::Kind::Code) {
    // Keep the code's own lines; only drop blank lines around it.
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    size_t a = text.find_first_not_of('\n');
    text = a == std::string::npos ? std::string() : text.substr(a);
  } else {
    text = collapse_whitespace(text);
  }
  if (text.empty()) return;
  Block b;
  b.kind = kind;
  b.level = level;
  b.text = std::move(text);
  b.line_start = first;
  b.line_end = last;
  doc.blocks.push_back(std::move(b));
}

// ---------------------------------------------------------------------------------------------
// reStructuredText

// A section adornment: one punctuation character repeated (at least 3, or the title's width).
bool is_adornment(std::string_view s) {
  s = trim(s);
  if (s.size() < 3 || (indent_of(s) != 0)) return false;
  const char c = s[0];
  if (!std::strchr("=-`:'\"~^_*+#<>.", c)) return false;
  return std::all_of(s.begin(), s.end(), [c](char x) { return x == c; });
}

// Sphinx object descriptions: their signature becomes a heading one level below the section, so
// the chunks that describe shutil.copyfile carry "copyfile(src, dst, ...)" in their heading path.
bool is_object_directive(std::string_view name) {
  static const char* const kNames[] = {
      "function", "method", "class", "exception", "data", "attribute", "decorator", "decoratormethod",
      "classmethod", "staticmethod", "coroutinefunction", "coroutinemethod", "abstractmethod",
      "awaitablefunction", "awaitablemethod", "describe", "object", "opcode", "cmdoption", "option",
      "envvar", "pdbcommand", "type", "macro", "member", "var", "property", "fixer", "monitoring-event"};
  for (const char* n : kNames)
    if (name == n) return true;
  return false;
}

// Directives whose body is not prose worth indexing (tables of contents, layout, includes).
bool is_skipped_directive(std::string_view name) {
  static const char* const kNames[] = {
      "toctree", "highlight", "sectionauthor", "moduleauthor", "tabularcolumns", "literalinclude",
      "include", "image", "figure", "raw", "testsetup", "testcleanup", "currentmodule", "default-role",
      "role", "contents", "sectnum", "footer", "header", "meta", "only", "ifconfig", "program",
      "audit-event-table", "limited-api-list", "availability", "raw-html", "cssclass", "class-attr"};
  for (const char* n : kNames)
    if (name == n) return true;
  return false;
}

bool is_code_directive(std::string_view name) {
  return name == "code-block" || name == "sourcecode" || name == "code" || name == "doctest" ||
         name == "testcode" || name == "testoutput" || name == "productionlist" || name == "parsed-literal";
}

class RstReader {
 public:
  RstReader(std::string_view text, ParsedDocument& doc) : lines_(split_lines(text)), doc_(doc) {}

  void read() { read_range(0, lines_.size(), 0); }

 private:
  // Heading level for an adornment style, numbered in order of first appearance (as reST does).
  int level_for(char c, bool overline) {
    std::string key{c, overline ? 'o' : 'u'};
    auto it = std::find(styles_.begin(), styles_.end(), key);
    if (it == styles_.end()) {
      styles_.push_back(key);
      return static_cast<int>(styles_.size());
    }
    return static_cast<int>(it - styles_.begin()) + 1;
  }

  // End of the indented body that follows line `i` (lines indented deeper than `base`, blank
  // lines inside included).
  size_t body_end(size_t i, int base) const {
    size_t end = i + 1;
    size_t j = i + 1;
    while (j < lines_.size()) {
      if (is_blank(lines_[j].text)) {
        ++j;
        continue;
      }
      if (indent_of(lines_[j].text) <= base) break;
      end = ++j;
    }
    return end;
  }

  void flush_paragraph(std::string& para, int& first, int last) {
    if (!para.empty()) {
      // "Paragraph::" introduces a literal block; the "::" itself reads as ":" (or nothing).
      std::string_view t = trim(para);
      std::string text(t);
      if (ends_with(t, " ::")) text = std::string(t.substr(0, t.size() - 3));
      else if (ends_with(t, "::")) text = std::string(t.substr(0, t.size() - 1));
      add_block(doc_, Block::Kind::Text, strip_rst_inline(text), first, last);
    }
    para.clear();
    first = 0;
  }

  void read_range(size_t begin, size_t end, int base) {
    std::string para;
    int para_first = 0, para_last = 0;
    size_t i = begin;
    while (i < end) {
      const std::string_view raw = lines_[i].text;
      const int num = lines_[i].number;
      if (is_blank(raw)) {
        // A paragraph that ends in "::" announces an indented literal block.
        const bool literal = ends_with(trim(para), "::");
        flush_paragraph(para, para_first, para_last);
        ++i;
        if (literal) {
          size_t j = i;
          while (j < end && is_blank(lines_[j].text)) ++j;
          if (j < end && indent_of(lines_[j].text) > base) {
            const size_t stop = std::min(body_end(j - 1, base), end);
            add_code(j, stop);
            i = stop;
          }
        }
        continue;
      }
      const std::string_view line = dedent(raw, base);

      // Section title: overline + title + underline, or title + underline.
      if (base == 0 && i + 2 < end && is_adornment(line) && !is_blank(lines_[i + 1].text) &&
          is_adornment(lines_[i + 2].text) && trim(lines_[i + 2].text)[0] == trim(line)[0]) {
        flush_paragraph(para, para_first, para_last);
        add_heading(trim(lines_[i + 1].text), level_for(trim(line)[0], true), num, lines_[i + 2].number);
        i += 3;
        continue;
      }
      if (base == 0 && para.empty() && i + 1 < end && indent_of(raw) == 0 && !is_adornment(line) &&
          is_adornment(lines_[i + 1].text) && trim(lines_[i + 1].text).size() + 2 >= trim(line).size()) {
        add_heading(trim(line), level_for(trim(lines_[i + 1].text)[0], false), num, lines_[i + 1].number);
        i += 2;
        continue;
      }
      // A transition (a line of punctuation alone) separates paragraphs and holds no words.
      if (is_adornment(line) && trim(line).size() >= 4 && para.empty()) {
        ++i;
        continue;
      }

      // Explicit markup: directives, comments, targets, substitutions, footnotes.
      if (line.rfind("..", 0) == 0 && (line.size() == 2 || line[2] == ' ')) {
        flush_paragraph(para, para_first, para_last);
        const int here = indent_of(raw);
        const size_t stop = std::min(body_end(i, here), end);
        directive(i, stop, here);
        i = stop;
        continue;
      }

      // Table borders carry no words; cell separators become spaces.
      std::string_view t = trim(line);
      if (!t.empty() && t.find_first_not_of("+-=| ") == std::string_view::npos) {
        ++i;
        continue;
      }
      if (para.empty()) para_first = num;
      para_last = num;
      if (!para.empty()) para += ' ';
      std::string cleaned(t);
      if (!cleaned.empty() && (cleaned[0] == '|' || cleaned[0] == '+')) std::replace(cleaned.begin(), cleaned.end(), '|', ' ');
      para += cleaned;
      ++i;
    }
    const bool literal = ends_with(trim(para), "::");
    (void)literal;
    flush_paragraph(para, para_first, para_last);
  }

  void add_heading(std::string_view title, int level, int first, int last) {
    std::string text = strip_rst_inline(std::string(title));
    if (doc_.title.empty() && !text.empty()) doc_.title = collapse_whitespace(text);
    section_level_ = level;
    add_block(doc_, Block::Kind::Heading, std::move(text), first, last, level);
  }

  void add_code(size_t begin, size_t end) {
    if (begin >= end) return;
    int common = 1 << 20;
    for (size_t k = begin; k < end; ++k)
      if (!is_blank(lines_[k].text)) common = std::min(common, indent_of(lines_[k].text));
    std::string code;
    for (size_t k = begin; k < end; ++k) {
      code += is_blank(lines_[k].text) ? std::string_view() : dedent(lines_[k].text, common);
      code += '\n';
    }
    add_block(doc_, Block::Kind::Code, std::move(code), lines_[begin].number, lines_[end - 1].number);
  }

  // Lines [i, stop): ".. name:: arguments" then an indented body (options first).
  void directive(size_t i, size_t stop, int here) {
    std::string_view head = trim(dedent(lines_[i].text, here).substr(2));
    const size_t colons = head.find("::");
    if (head.empty() || head[0] == '_' || head[0] == '[' || head[0] == '|' || colons == std::string_view::npos ||
        head.substr(0, colons).find(' ') != std::string_view::npos) {
      return;  // a comment, a link target, a footnote or a substitution definition
    }
    const std::string name = lower(trim(head.substr(0, colons)));
    std::string args(trim(head.substr(colons + 2)));
    // Arguments may continue on the next lines (long signatures), until the options or a blank.
    size_t k = i + 1;
    const int body_indent = [&] {
      for (size_t j = i + 1; j < stop; ++j)
        if (!is_blank(lines_[j].text)) return indent_of(lines_[j].text);
      return here + 3;
    }();
    if (is_object_directive(name) || name == "module") {
      while (k < stop && !is_blank(lines_[k].text) && trim(lines_[k].text)[0] != ':') {
        args += '\n';
        args += trim(lines_[k].text);
        ++k;
      }
    }
    // Options (":synopsis: ...", ":noindex:"): the synopsis and a few others are prose.
    while (k < stop && !is_blank(lines_[k].text) && trim(lines_[k].text).rfind(':', 0) == 0) {
      std::string_view opt = trim(lines_[k].text);
      const size_t end_name = opt.find(':', 1);
      if (end_name != std::string_view::npos) {
        const std::string_view oname = opt.substr(1, end_name - 1);
        if (oname == "synopsis" || oname == "caption")
          add_block(doc_, Block::Kind::Text, strip_rst_inline(std::string(trim(opt.substr(end_name + 1)))),
                    lines_[k].number, lines_[k].number);
      }
      ++k;
    }
    const int first = lines_[i].number, last = lines_[stop - 1].number;
    if (is_skipped_directive(name)) return;
    if (is_code_directive(name)) {
      add_code(k, stop);
      return;
    }
    if (name == "index") {
      // Index entries are curated keywords ("pair: file; copy"): worth finding.
      std::string words = args;
      for (size_t j = k; j < stop; ++j) {
        words.push_back(' ');
        words.append(trim(lines_[j].text));
      }
      for (const char* kw : {"single:", "pair:", "triple:", "see:", "seealso:", "module:", "keyword:",
                             "operator:", "object:", "exception:", "statement:", "builtin:"}) {
        for (size_t p = words.find(kw); p != std::string::npos; p = words.find(kw, p)) words.replace(p, std::strlen(kw), 1, ' ');
      }
      std::replace(words.begin(), words.end(), ';', ' ');
      add_block(doc_, Block::Kind::Text, strip_rst_inline(words), first, last);
      return;
    }
    if (is_object_directive(name)) {
      // Each line of a multi-signature directive is one signature; the heading holds them all.
      std::string sig;
      size_t pos = 0;
      while (pos <= args.size()) {
        size_t nl = args.find('\n', pos);
        if (nl == std::string::npos) nl = args.size();
        std::string one = std::string(trim(std::string_view(args).substr(pos, nl - pos)));
        if (!one.empty()) sig += (sig.empty() ? "" : "; ") + one;
        pos = nl + 1;
      }
      // A signature is code ("reader(csvfile, **fmtparams)"): no inline markup to strip.
      add_block(doc_, Block::Kind::Heading, sig, first, lines_[k > i ? k - 1 : i].number,
                section_level_ + 1);
    } else if (name == "rubric" || name == "topic" || name == "admonition" || name == "versionadded" ||
               name == "versionchanged" || name == "deprecated" || name == "deprecated-removed" ||
               name == "glossary" || name == "note" || name == "warning" || name == "seealso" ||
               name == "impl-detail" || name == "tip" || name == "important" || name == "attention" ||
               name == "caution" || name == "hint" || name == "danger" || name == "error" || name == "sidebar" ||
               name == "table" || name == "csv-table" || name == "list-table" || name == "centered" ||
               name == "hlist" || name == "audit-event" || name == "opcode" || name == "container") {
      if (!args.empty() && name != "audit-event")
        add_block(doc_, Block::Kind::Text, strip_rst_inline(args), first, first);
    } else if (!args.empty() && name != "module") {
      add_block(doc_, Block::Kind::Text, strip_rst_inline(args), first, first);
    }
    if (k < stop) read_range(k, stop, std::max(body_indent, here + 1));
  }

  std::vector<Line> lines_;
  ParsedDocument& doc_;
  std::vector<std::string> styles_;
  int section_level_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Markdown (CommonMark's block structure, enough of it for notes and READMEs)

bool is_fence(std::string_view t, std::string_view& fence) {
  if (t.rfind("```", 0) == 0) fence = "```";
  else if (t.rfind("~~~", 0) == 0) fence = "~~~";
  else return false;
  return true;
}

void read_markdown_into(std::string_view text, ParsedDocument& doc) {
  const std::vector<Line> lines = split_lines(text);
  std::string para;
  int para_first = 0, para_last = 0;
  auto flush = [&] {
    add_block(doc, Block::Kind::Text, strip_markdown_inline(para), para_first, para_last);
    para.clear();
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string_view raw = lines[i].text;
    const std::string_view t = trim(raw);
    const int num = lines[i].number;
    std::string_view fence;
    if (indent_of(raw) < 4 && is_fence(t, fence)) {
      flush();
      std::string code;
      size_t j = i + 1;
      while (j < lines.size() && trim(lines[j].text).rfind(fence, 0) != 0) {
        code += lines[j].text;
        code += '\n';
        ++j;
      }
      add_block(doc, Block::Kind::Code, std::move(code), num, j < lines.size() ? lines[j].number : lines.back().number);
      i = j;
      continue;
    }
    if (t.empty()) {
      flush();
      continue;
    }
    if (indent_of(raw) >= 4 && para.empty()) {
      // Indented code: runs until a line indented less (blank lines inside kept).
      std::string code;
      size_t j = i;
      int last = num;
      while (j < lines.size() && (is_blank(lines[j].text) || indent_of(lines[j].text) >= 4)) {
        code += is_blank(lines[j].text) ? std::string_view() : dedent(lines[j].text, 4);
        code += '\n';
        if (!is_blank(lines[j].text)) last = lines[j].number;
        ++j;
      }
      add_block(doc, Block::Kind::Code, std::move(code), num, last);
      i = j - 1;
      continue;
    }
    if (indent_of(raw) < 4 && t[0] == '#') {
      size_t level = t.find_first_not_of('#');
      if (level == std::string_view::npos) level = t.size();
      if (level <= 6 && (level == t.size() || t[level] == ' ' || t[level] == '\t')) {
        flush();
        std::string title(trim(t.substr(level)));
        while (!title.empty() && title.back() == '#') title.pop_back();  // closing #s
        title = strip_markdown_inline(title);
        if (doc.title.empty() && level == 1) doc.title = collapse_whitespace(title);
        add_block(doc, Block::Kind::Heading, title, num, num, static_cast<int>(level));
        continue;
      }
    }
    // Setext heading: a paragraph line underlined with === (level 1) or --- (level 2).
    if (!para.empty() && para.find('\n') == std::string::npos && indent_of(raw) < 4 && t.size() >= 2 &&
        t.find_first_not_of(t[0]) == std::string_view::npos && (t[0] == '=' || t[0] == '-')) {
      const int level = t[0] == '=' ? 1 : 2;
      std::string title = strip_markdown_inline(para);
      if (doc.title.empty() && level == 1) doc.title = collapse_whitespace(title);
      add_block(doc, Block::Kind::Heading, title, para_first, num, level);
      para.clear();
      continue;
    }
    // Thematic break.
    if (para.empty() && t.size() >= 3 && (t[0] == '*' || t[0] == '-' || t[0] == '_') &&
        t.find_first_not_of(std::string{t[0], ' '}) == std::string_view::npos)
      continue;
    // List items and quotes start a block of their own, so each item can be found on its own.
    const bool item = t.rfind("- ", 0) == 0 || t.rfind("* ", 0) == 0 || t.rfind("+ ", 0) == 0 || t[0] == '>' ||
                      (std::isdigit(static_cast<unsigned char>(t[0])) && t.find_first_of(".)") != std::string_view::npos &&
                       t.find_first_not_of("0123456789") == t.find_first_of(".)"));
    if (item) flush();
    if (para.empty()) para_first = num;
    para_last = num;
    if (!para.empty()) para += '\n';
    para += t;
  }
  flush();
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Format format_of(std::string_view path) {
  const std::string p = lower(path);
  if (ends_with(p, ".rst.txt") || ends_with(p, ".rst") || ends_with(p, ".rest")) return Format::ReST;
  if (ends_with(p, ".md") || ends_with(p, ".markdown")) return Format::Markdown;
  if (ends_with(p, ".txt") || ends_with(p, ".text")) return Format::PlainText;
  if (ends_with(p, ".html") || ends_with(p, ".htm") || ends_with(p, ".xhtml")) return Format::Html;
  if (ends_with(p, ".pdf")) return Format::Pdf;
  return Format::Unsupported;
}

const char* format_name(Format f) {
  switch (f) {
    case Format::PlainText: return "text";
    case Format::Markdown: return "markdown";
    case Format::ReST: return "rst";
    case Format::Html: return "html";
    case Format::Pdf: return "pdf";
    case Format::Unsupported: break;
  }
  return "unsupported";
}

void check_utf8_text(std::string_view name, std::string_view text) {
  const size_t nul = text.find('\0');
  if (nul != std::string_view::npos)
    fail("{}: looks binary, not text (a NUL byte at offset {}); only text files are indexed", name, nul);
  const size_t bad = first_invalid_utf8(text);
  if (bad != std::string_view::npos)
    fail("{}: not valid UTF-8 at byte {} (0x{:02x}); save the file as UTF-8", name, bad,
         static_cast<unsigned char>(text[bad]));
}

ParsedDocument read_plain_text(std::string_view name, std::string_view text) {
  ParsedDocument doc;
  const std::vector<Line> lines = split_lines(text);
  std::string para;
  int first = 0, last = 0;
  for (const Line& l : lines) {
    if (is_blank(l.text)) {
      add_block(doc, Block::Kind::Text, para, first, last);
      para.clear();
      continue;
    }
    if (para.empty()) first = l.number;
    last = l.number;
    para += l.text;
    para += '\n';
  }
  add_block(doc, Block::Kind::Text, para, first, last);
  doc.title = file_stem(name);
  return doc;
}

ParsedDocument read_markdown(std::string_view name, std::string_view text) {
  ParsedDocument doc;
  read_markdown_into(text, doc);
  if (doc.title.empty()) doc.title = file_stem(name);
  return doc;
}

ParsedDocument read_rst(std::string_view name, std::string_view text) {
  ParsedDocument doc;
  RstReader(text, doc).read();
  if (doc.title.empty()) doc.title = file_stem(name);
  return doc;
}

ParsedDocument parse_document(std::string_view path, std::string_view bytes) {
  const Format f = format_of(path);
  if (f == Format::Unsupported) fail("{}: not a format the index reads (.txt .md .rst .html .pdf)", path);
  if (f == Format::Pdf) return read_pdf(path, bytes);
  if (f == Format::Html) {
    ParsedDocument doc = read_html(path, bytes);
    if (doc.title.empty()) doc.title = file_stem(path);
    return doc;
  }
  check_utf8_text(path, bytes);
  if (bytes.substr(0, 3) == "\xEF\xBB\xBF") bytes.remove_prefix(3);
  switch (f) {
    case Format::Markdown: return read_markdown(path, bytes);
    case Format::ReST: return read_rst(path, bytes);
    default: return read_plain_text(path, bytes);
  }
}

}  // namespace slm::rag
