// Small text helpers shared by the RAG readers, the chunker and search: whitespace, UTF-8
// validity, inline markup removal, words as SQLite FTS5's unicode61 tokenizer sees them, and
// sentences.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace slm::rag {

// Runs of whitespace (newlines included) become one space; leading/trailing spaces go.
std::string collapse_whitespace(std::string_view s);

// Offset of the first byte that is not part of valid UTF-8 (overlongs, surrogates and code
// points past U+10FFFF are invalid), or npos.
size_t first_invalid_utf8(std::string_view s);

// reST inline markup to its text: :role:`text <target>` -> text, ``literal`` -> literal,
// `link <url>`_ -> link, *emphasis* -> emphasis, |subst| -> subst, footnote references dropped,
// backslash escapes resolved.
std::string strip_rst_inline(std::string_view s);
// Markdown inline markup to its text: [text](url) -> text, ![alt](src) -> alt, `code` -> code,
// emphasis markers and HTML tags dropped.
std::string strip_markdown_inline(std::string_view s);

// Lower-cased words as FTS5's unicode61 tokenizer splits them (letters, digits and marks;
// everything else separates; diacritics kept), each at most 64 bytes.
std::vector<std::string> words_of(std::string_view s);

// Sentence spans of a text: ends at . ! ? (followed by space and not after a single capital or
// a common abbreviation) and at newlines that end a paragraph. Empty spans are dropped.
std::vector<std::string_view> sentences_of(std::string_view s);

// Rough token count for sizing chunks when no tokenizer is given: ~4 bytes a token for English
// prose (GPT-style BPE and WordPiece both land near that), at least 1 for any text.
int estimate_tokens(std::string_view s);

}  // namespace slm::rag
