// The HTML and PDF readers of the RAG index: blocks in reading order with their kinds, levels and
// locations, charset handling, and clear errors (never a crash) for files they cannot read. The
// PDFs are written here by hand, so each test shows exactly what the file holds.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "rag/document.h"

namespace {

using slm::rag::Block;
using slm::rag::ParsedDocument;
using slm::rag::read_html;
using slm::rag::read_pdf;

// Runs `read` and returns the slm::Error message it throws ("" and a test failure if none).
template <class Read>
std::string error_of(Read&& read) {
  try {
    read();
  } catch (const slm::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected slm::Error";
  return {};
}

std::vector<std::string> texts(const ParsedDocument& doc) {
  std::vector<std::string> out;
  for (const Block& b : doc.blocks) out.push_back(b.text);
  return out;
}

// ---- HTML ----

TEST(RagHtml, BlocksComeInOrderWithKindsAndLevels) {
  const ParsedDocument doc = read_html("guide.html",
                                       "<!DOCTYPE html><html><head><title>Guide</title></head><body>\n"
                                       "<h1>Install</h1>\n"
                                       "<p>Run   the\n  installer.</p>\n"
                                       "<h3>Options</h3>\n"
                                       "<ul><li>First item</li><li>Second item</li></ul>\n"
                                       "<pre>make\n  install</pre>\n"
                                       "<dl><dt>Term</dt><dd>Meaning</dd></dl>\n"
                                       "<blockquote>Quoted words</blockquote>\n"
                                       "<div>Loose text <section>Nested section</section> after</div>\n"
                                       "</body></html>\n");
  EXPECT_FALSE(doc.paged);
  ASSERT_EQ(doc.blocks.size(), 12u) << ::testing::PrintToString(texts(doc));
  const std::vector<std::pair<Block::Kind, int>> kinds = {
      {Block::Kind::Heading, 1}, {Block::Kind::Text, 0}, {Block::Kind::Heading, 3}, {Block::Kind::Text, 0},
      {Block::Kind::Text, 0},    {Block::Kind::Code, 0}, {Block::Kind::Text, 0},    {Block::Kind::Text, 0},
      {Block::Kind::Text, 0},    {Block::Kind::Text, 0}, {Block::Kind::Text, 0},    {Block::Kind::Text, 0}};
  const std::vector<std::string> expected = {"Install",    "Run the installer.", "Options",      "First item",
                                             "Second item", "make\n  install",    "Term",         "Meaning",
                                             "Quoted words", "Loose text",        "Nested section", "after"};
  EXPECT_EQ(texts(doc), expected);
  for (size_t i = 0; i < doc.blocks.size(); ++i) {
    EXPECT_EQ(doc.blocks[i].kind, kinds[i].first) << "block " << i;
    EXPECT_EQ(doc.blocks[i].level, kinds[i].second) << "block " << i;
    EXPECT_EQ(doc.blocks[i].page, 0) << "block " << i;
  }
}

TEST(RagHtml, AllHeadingLevels) {
  const ParsedDocument doc =
      read_html("h.html", "<h1>a</h1><h2>b</h2><h3>c</h3><h4>d</h4><h5>e</h5><h6>f</h6>");
  ASSERT_EQ(doc.blocks.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(doc.blocks[i].kind, Block::Kind::Heading);
    EXPECT_EQ(doc.blocks[i].level, i + 1);
    EXPECT_EQ(doc.blocks[i].text, std::string(1, static_cast<char>('a' + i)));
  }
  // A block element wrapping a heading's words is still the heading.
  const ParsedDocument wrapped = read_html("w.html", "<h2><div>Wrapped</div> title</h2><p>Body</p>");
  ASSERT_EQ(wrapped.blocks.size(), 2u);
  EXPECT_EQ(wrapped.blocks[0].kind, Block::Kind::Heading);
  EXPECT_EQ(wrapped.blocks[0].text, "Wrapped title");
  EXPECT_EQ(wrapped.blocks[1].kind, Block::Kind::Text);
}

TEST(RagHtml, ScriptStyleNavAndCommentsAreDropped) {
  const ParsedDocument doc = read_html("page.html",
                                       "<html><head><style>p { color: red }</style>"
                                       "<script>var inHead = 1;</script></head><body>"
                                       "<nav><a href='/'>Home</a> <a href='/docs'>Docs</a></nav>"
                                       "<div role='navigation'>Sidebar links</div>"
                                       "<p>Kept<script>document.write('injected')</script> text<!-- a comment --></p>"
                                       "<noscript>Enable JavaScript</noscript><template><p>Later</p></template>"
                                       "<p hidden>Invisible</p><style>.x{}</style>"
                                       "<h2>Section<a class='headerlink' href='#s'>\xC2\xB6</a></h2>"
                                       "</body></html>");
  EXPECT_EQ(texts(doc), (std::vector<std::string>{"Kept text", "Section"}));
}

TEST(RagHtml, EntitiesAreDecoded) {
  const ParsedDocument doc =
      read_html("e.html", "<p>Fish &amp; chips &lt;b&gt; &quot;q&quot; caf&eacute; &#x263A; a&nbsp;b</p>");
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].text, "Fish & chips <b> \"q\" caf\xC3\xA9 \xE2\x98\xBA a b");
}

TEST(RagHtml, InlineMarkupStaysInItsParagraph) {
  const ParsedDocument doc = read_html("i.html",
                                       "<p>Call <code>read_html()</code> with <b>bytes</b>, see "
                                       "<a href='x'>the <em>docs</em></a>.<br>Next line.</p>");
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].kind, Block::Kind::Text);
  EXPECT_EQ(doc.blocks[0].text, "Call read_html() with bytes, see the docs. Next line.");
}

TEST(RagHtml, PreKeepsLinesAndIndentation) {
  const ParsedDocument doc = read_html("c.html",
                                       "<p>Example:</p>\n"
                                       "<pre><code class=\"language-cpp\">int main() {\n"
                                       "    <span class=\"k\">return</span> 0;<br>}\n</code></pre>\n"
                                       "<p>After.</p>");
  ASSERT_EQ(doc.blocks.size(), 3u) << ::testing::PrintToString(texts(doc));
  EXPECT_EQ(doc.blocks[1].kind, Block::Kind::Code);
  EXPECT_EQ(doc.blocks[1].text, "int main() {\n    return 0;\n}");
  EXPECT_EQ(doc.blocks[2].text, "After.");
}

TEST(RagHtml, TableRowsAreBlocks) {
  const ParsedDocument doc = read_html("t.html",
                                       "<table><tr><th>Name</th><th>Size</th></tr>"
                                       "<tr><td>tiny</td><td><p>1 MB</p></td></tr></table>");
  EXPECT_EQ(texts(doc), (std::vector<std::string>{"Name | Size", "tiny | 1 MB"}));
}

TEST(RagHtml, LineNumbersComeFromTheSource) {
  const ParsedDocument doc = read_html("l.html",
                                       "<html>\n"                 // 1
                                       "<body>\n"                 // 2
                                       "<h2>Heading</h2>\n"       // 3
                                       "<p>\n"                    // 4
                                       "  First line of text\n"   // 5
                                       "  second &amp; last\n"    // 6
                                       "</p>\n"                   // 7
                                       "<pre>a\nb\nc</pre>\n"     // 8-10
                                       "</body></html>\n");
  ASSERT_EQ(doc.blocks.size(), 3u);
  EXPECT_EQ(doc.blocks[0].line_start, 3);
  EXPECT_EQ(doc.blocks[0].line_end, 3);
  EXPECT_EQ(doc.blocks[1].line_start, 5);
  EXPECT_EQ(doc.blocks[1].line_end, 6);
  EXPECT_EQ(doc.blocks[2].line_start, 8);
  EXPECT_EQ(doc.blocks[2].line_end, 10);
}

TEST(RagHtml, TitleFromTitleElementElseFirstH1) {
  EXPECT_EQ(read_html("a.html", "<title>  The\n Title </title><h1>Heading</h1>").title, "The Title");
  EXPECT_EQ(read_html("b.html", "<h2>Sub</h2><h1>Main <i>one</i></h1><h1>Second</h1>").title, "Main one");
  EXPECT_EQ(read_html("c.html", "<p>No heading at all</p>").title, "");
  // An SVG <title> is a tooltip, not the page's title.
  EXPECT_EQ(read_html("d.html", "<body><svg><title>icon</title></svg><h1>Real</h1></body>").title, "Real");
}

TEST(RagHtml, Latin1DeclaredPageIsConverted) {
  // "café", then windows-1252 curly quotes (0x93 0x94) and the euro sign (0x80).
  const std::string page =
      "<html><head><meta charset=\"ISO-8859-1\"><title>R\xE9sum\xE9</title></head>"
      "<body><p>caf\xE9 \x93quoted\x94 5\x80</p></body></html>";
  const ParsedDocument doc = read_html("latin.html", page);
  EXPECT_EQ(doc.title, "R\xC3\xA9sum\xC3\xA9");
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].text, "caf\xC3\xA9 \xE2\x80\x9Cquoted\xE2\x80\x9D 5\xE2\x82\xAC");

  const ParsedDocument http_equiv = read_html(
      "old.html",
      "<META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=windows-1252'><p>na\xEFve</p>");
  ASSERT_EQ(http_equiv.blocks.size(), 1u);
  EXPECT_EQ(http_equiv.blocks[0].text, "na\xC3\xAFve");
}

TEST(RagHtml, DeclaredUtf8IsReadAsUtf8) {
  const ParsedDocument doc = read_html("u.html", "<meta charset='utf-8'><p>caf\xC3\xA9</p>");
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].text, "caf\xC3\xA9");
}

TEST(RagHtml, UnsupportedCharsetErrorsClearly) {
  const std::string msg =
      error_of([] { read_html("jp.html", "<meta charset=\"Shift_JIS\"><p>\x82\xA0</p>"); });
  EXPECT_NE(msg.find("jp.html"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shift_jis is not supported"), std::string::npos) << msg;
  EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;

  const std::string utf16 = error_of([] { read_html("w.html", std::string("\xFF\xFE<\0p\0", 6)); });
  EXPECT_NE(utf16.find("w.html: HTML in charset UTF-16 is not supported"), std::string::npos) << utf16;
  // Without a byte order mark, the NUL bytes beside "<" give UTF-16 and UTF-32 away.
  const std::string utf16be = error_of([] { read_html("be.html", std::string("\0<\0p\0>", 6)); });
  EXPECT_NE(utf16be.find("be.html: HTML in charset UTF-16 is not supported"), std::string::npos) << utf16be;
  const std::string utf32 = error_of([] { read_html("le32.html", std::string("<\0\0\0p\0\0\0", 8)); });
  EXPECT_NE(utf32.find("le32.html: HTML in charset UTF-32 is not supported"), std::string::npos) << utf32;
}

TEST(RagHtml, InvalidUtf8WithoutDeclarationErrors) {
  const std::string msg = error_of([] { read_html("bad.html", "<p>caf\xE9</p>"); });
  EXPECT_NE(msg.find("bad.html"), std::string::npos) << msg;
  EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;
}

TEST(RagHtml, Utf8ByteOrderMarkIsDropped) {
  const ParsedDocument doc = read_html("bom.html", "\xEF\xBB\xBF<h1>Start</h1>");
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].text, "Start");
  EXPECT_EQ(doc.blocks[0].line_start, 1);
}

TEST(RagHtml, MalformedHtmlStillParses) {
  const ParsedDocument doc = read_html("broken.html",
                                       "<html><body><h1>Title<p>First <b>bold <i>both</b> still italic"
                                       "<p>Second</div></span><li>item<table><td>cell");
  EXPECT_EQ(texts(doc), (std::vector<std::string>{"Title", "First bold both still italic", "Second", "item",
                                                   "cell"}));
  EXPECT_EQ(doc.blocks[0].kind, Block::Kind::Heading);

  // An unterminated comment and an unterminated tag swallow the rest, as in a browser.
  EXPECT_EQ(texts(read_html("c.html", "<p>before</p><!-- never closed <p>hidden</p>")),
            std::vector<std::string>{"before"});
  EXPECT_NO_THROW(read_html("t.html", "<p>text</p><a href=\"x"));
}

TEST(RagHtml, DeepNestingDoesNotOverflowTheStack) {
  // 400k nested elements: a recursive walk (or gumbo's own recursive free) overflows an 8 MB
  // stack well before that. Spans, because gumbo parses nested blocks in quadratic time.
  std::string page = "<body><p>";
  for (int i = 0; i < 400000; ++i) page += "<span>";
  page += "deep text<div>after</div>";
  const ParsedDocument doc = read_html("deep.html", page);
  EXPECT_EQ(texts(doc), (std::vector<std::string>{"deep text", "after"}));
}

TEST(RagHtml, EmptyOrMarkupOnlyPageHasNoBlocks) {
  EXPECT_TRUE(read_html("empty.html", "").blocks.empty());
  const ParsedDocument doc = read_html("m.html", "<html><body><p> &nbsp; </p><div>\n\n</div><pre>\n\n</pre></body>");
  EXPECT_TRUE(doc.blocks.empty()) << ::testing::PrintToString(texts(doc));
  EXPECT_EQ(doc.title, "");
}

// ---- PDF ----

struct PdfLine {
  int y;             // baseline, in points from the bottom of a letter-size page
  std::string text;  // WinAnsi bytes
};

std::string pdf_string(std::string_view text) {
  std::string out = "(";
  for (char c : text) {
    if (c == '(' || c == ')' || c == '\\') out += '\\';
    out += c;
  }
  return out + ")";
}

// A minimal PDF 1.4: catalog, page tree, one page per entry of `pages` (each line drawn in
// Helvetica 12 at x = 72), an /Info dictionary with `title` (none if empty), and a correct
// cross-reference table. `encrypt` adds a standard security handler whose user password is not
// empty, so the file cannot be opened without one.
std::string make_pdf(const std::vector<std::vector<PdfLine>>& pages, const std::string& title,
                     bool encrypt = false) {
  std::vector<std::string> objects;  // objects[i] is object number i + 1
  const int page_count = static_cast<int>(pages.size());
  const int first_page = 4;  // 1 catalog, 2 page tree, 3 font, then page/content pairs
  std::string kids;
  for (int i = 0; i < page_count; ++i) kids += fmt::format("{} 0 R ", first_page + 2 * i);
  objects.push_back("<< /Type /Catalog /Pages 2 0 R >>");
  objects.push_back(fmt::format("<< /Type /Pages /Kids [{}] /Count {} >>", kids, page_count));
  objects.push_back("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>");
  for (int i = 0; i < page_count; ++i) {
    std::string content;
    for (const PdfLine& line : pages[i])
      content += fmt::format("BT /F1 12 Tf 72 {} Td {} Tj ET\n", line.y, pdf_string(line.text));
    objects.push_back(fmt::format(
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
        "/Contents {} 0 R >>",
        first_page + 2 * i + 1));
    objects.push_back(fmt::format("<< /Length {} >>\nstream\n{}endstream", content.size(), content));
  }
  std::string trailer_extra;
  if (!title.empty()) {
    objects.push_back(fmt::format("<< /Title {} /Producer (slm test) >>", pdf_string(title)));
    trailer_extra += fmt::format(" /Info {} 0 R", objects.size());
  }
  if (encrypt) {
    const std::string hash32(64, 'A');  // 32 bytes in hex: no password hashes to this
    objects.push_back(fmt::format("<< /Filter /Standard /V 1 /R 2 /O <{0}> /U <{0}> /P -4 >>", hash32));
    trailer_extra += fmt::format(" /Encrypt {} 0 R /ID [<00112233445566778899AABBCCDDEEFF> "
                                 "<00112233445566778899AABBCCDDEEFF>]",
                                 objects.size());
  }

  std::string pdf = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += fmt::format("{} 0 obj\n{}\nendobj\n", i + 1, objects[i]);
  }
  const size_t xref = pdf.size();
  pdf += fmt::format("xref\n0 {}\n0000000000 65535 f \n", objects.size() + 1);
  for (size_t offset : offsets) pdf += fmt::format("{:010} 00000 n \n", offset);
  pdf += fmt::format("trailer\n<< /Size {} /Root 1 0 R{} >>\nstartxref\n{}\n%%EOF\n", objects.size() + 1,
                     trailer_extra, xref);
  return pdf;
}

TEST(RagPdf, PagesTextAndTitle) {
  const std::string pdf =
      make_pdf({{{720, "Hello page one"}}, {{720, "Second page   says hi"}}}, "Test Document");
  const ParsedDocument doc = read_pdf("two.pdf", pdf);
  EXPECT_TRUE(doc.paged);
  EXPECT_EQ(doc.title, "Test Document");
  ASSERT_EQ(doc.blocks.size(), 2u) << ::testing::PrintToString(texts(doc));
  EXPECT_EQ(doc.blocks[0].text, "Hello page one");
  EXPECT_EQ(doc.blocks[0].page, 1);
  EXPECT_EQ(doc.blocks[1].text, "Second page says hi");
  EXPECT_EQ(doc.blocks[1].page, 2);
  for (const Block& b : doc.blocks) {
    EXPECT_EQ(b.kind, Block::Kind::Text);
    EXPECT_EQ(b.level, 0);
    EXPECT_EQ(b.line_start, 0);
    EXPECT_EQ(b.line_end, 0);
  }
}

TEST(RagPdf, NoInfoDictionaryMeansNoTitle) {
  const ParsedDocument doc = read_pdf("untitled.pdf", make_pdf({{{700, "Body"}}}, ""));
  EXPECT_EQ(doc.title, "");
  EXPECT_EQ(texts(doc), std::vector<std::string>{"Body"});
}

TEST(RagPdf, ParagraphsSplitAtGapsAndLinesJoin) {
  const ParsedDocument doc = read_pdf("paras.pdf", make_pdf({{{720, "First paragraph starts here"},
                                                                {706, "and continues with infor-"},
                                                                {692, "mation on this line."},
                                                                {500, "Second paragraph far below."},
                                                                {400, "\x95 -- ..."}}},
                                                              "Paragraphs"));
  EXPECT_EQ(texts(doc), (std::vector<std::string>{
                            "First paragraph starts here and continues with information on this line.",
                            "Second paragraph far below."}));
  for (const Block& b : doc.blocks) EXPECT_EQ(b.page, 1);
}

TEST(RagPdf, WinAnsiTextComesOutAsUtf8) {
  const ParsedDocument doc = read_pdf("cafe.pdf", make_pdf({{{700, "Caf\xE9 cr\xE8me"}}}, "Men\xFC"));
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].text, "Caf\xC3\xA9 cr\xC3\xA8me");
  EXPECT_EQ(doc.title, "Men\xC3\xBC");  // PDFDocEncoding agrees with Latin-1 here
}

TEST(RagPdf, PageWithoutTextGivesNoBlocks) {
  const ParsedDocument doc = read_pdf("blank.pdf", make_pdf({{}, {{700, "Only page two"}}, {}}, "Blank"));
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].page, 2);
  EXPECT_TRUE(read_pdf("empty-page.pdf", make_pdf({{}}, "")).blocks.empty());
}

TEST(RagPdf, DamagedInputThrowsNamingTheFile) {
  std::mt19937 rng(1234);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  const std::string good = make_pdf({{{720, "Hello page one"}}}, "T");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"noise.pdf", noise},
      {"truncated.pdf", good.substr(0, 30)},
      {"empty.pdf", ""},
      {"header-only.pdf", "%PDF-1.4\n"},
      {"text.pdf", "this is not a PDF at all\n"},
  };
  for (const auto& [name, bytes] : cases) {
    const std::string msg = error_of([&] { read_pdf(name, bytes); });
    EXPECT_EQ(msg.rfind(name + ": damaged or unreadable PDF", 0), 0u) << name << ": " << msg;
  }
}

TEST(RagPdf, TruncatedAnywhereNeverCrashes) {
  // Every cut either reads (poppler rebuilds a lost xref table from the objects) or throws a
  // message naming the file; what matters is that no cut crashes.
  const std::string good = make_pdf({{{720, "Hello page one"}}, {{720, "Page two"}}}, "Cut");
  int opened = 0;
  for (size_t cut = 1; cut < good.size(); cut += 7) {
    try {
      const ParsedDocument doc = read_pdf("cut.pdf", good.substr(0, cut));
      EXPECT_TRUE(doc.paged);
      ++opened;
    } catch (const slm::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("cut.pdf: ", 0), 0u) << e.what();
    }
  }
  // A cut just before the cross-reference table loses nothing that poppler cannot rebuild.
  EXPECT_GT(opened, 0);
}

TEST(RagPdf, PasswordProtectedThrows) {
  const std::string pdf = make_pdf({{{720, "Secret"}}}, "Locked", /*encrypt=*/true);
  EXPECT_EQ(error_of([&] { read_pdf("locked.pdf", pdf); }), "locked.pdf: PDF is password-protected");
}

}  // namespace
