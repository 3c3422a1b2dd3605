// A document as the RAG index sees it: its title and a flat list of blocks (headings, paragraphs,
// code) in reading order, each with where it came from (lines of the source file, or a PDF page).
// One reader per format turns a file's bytes into this; the chunker (rag/chunker.h) turns blocks
// into chunks that keep their heading path.
//
// Readers: read_text.cpp (.txt, .md/.markdown, .rst), read_html.cpp (.html/.htm, Debian's
// gumbo), read_pdf.cpp (.pdf, Debian's poppler-cpp). Every reader throws slm::Error with a
// message that says what is wrong with the file ("not valid UTF-8 at byte 1234", "damaged PDF:
// ..."); the caller lists the file as skipped with that reason and goes on.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::rag {

struct Block {
  enum class Kind { Heading, Text, Code };
  Kind kind = Kind::Text;
  int level = 0;        // headings: 1 = top (a document title), 2 = its sections, ...
  std::string text;     // plain text: markup removed, whitespace inside a paragraph collapsed;
                        // code keeps its lines and indentation
  int line_start = 0;   // 1-based lines of the source file this block spans (0: unknown)
  int line_end = 0;
  int page = 0;         // 1-based PDF page (0: not a paged format)
};

struct ParsedDocument {
  std::string title;    // first top-level heading, <title>, PDF Title; else the file name
  std::vector<Block> blocks;
  bool paged = false;   // locations are pages (PDF), not lines
};

// The formats the index reads, by lower-cased extension with its dot: ".txt", ".md",
// ".markdown", ".rst", ".html", ".htm", ".pdf". Files named "*.rst.txt" (Sphinx's _sources) are
// reST.
enum class Format { Unsupported, PlainText, Markdown, ReST, Html, Pdf };
Format format_of(std::string_view path);
const char* format_name(Format f);

// Parses bytes read from `path` (path only picks the format and names the file in messages).
// Text formats must be valid UTF-8 and not binary (a NUL byte); a leading BOM is dropped.
// Throws slm::Error naming the file and the problem.
ParsedDocument parse_document(std::string_view path, std::string_view bytes);

// Per-format readers (parse_document picks one). `name` is for messages.
ParsedDocument read_plain_text(std::string_view name, std::string_view text);
ParsedDocument read_markdown(std::string_view name, std::string_view text);
ParsedDocument read_rst(std::string_view name, std::string_view text);
ParsedDocument read_html(std::string_view name, std::string_view bytes);
ParsedDocument read_pdf(std::string_view name, std::string_view bytes);

// Throws slm::Error("<name>: not valid UTF-8 at byte N ...") / ("<name>: looks binary (NUL byte
// at N)") when the text is not UTF-8 text.
void check_utf8_text(std::string_view name, std::string_view text);

}  // namespace slm::rag
