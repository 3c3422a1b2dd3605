// Blocks of a parsed document to chunks for the index: chunks follow the document's structure
// (a heading always starts a new chunk, and each chunk carries its heading path), fill up to a
// target size in tokens, and overlap a little with the chunk before when a long section had to be
// cut. A block longer than the target is cut at sentence ends (code at line ends).
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "rag/document.h"

namespace slm::rag {

struct Chunk {
  std::string text;          // blocks joined by blank lines
  std::string heading_path;  // "Title > Section > Subsection"
  int line_start = 0, line_end = 0;  // 1-based lines of the source (0: unknown / paged)
  int page_start = 0, page_end = 0;  // 1-based PDF pages (0: not paged)
  int n_tokens = 0;          // by ChunkOptions::count_tokens
};

struct ChunkOptions {
  int target_tokens = 256;
  int overlap_tokens = 32;
  // A section shorter than this shares its chunk with the sections after it.
  int min_tokens = 64;
  // Tokens in a text; empty: estimate_tokens (about 4 bytes a token). The index passes the
  // embedding model's tokenizer when it has one, so that no chunk outgrows the model.
  std::function<int(std::string_view)> count_tokens;
};

std::string join_heading_path(const std::vector<std::string>& headings);

std::vector<Chunk> chunk_document(const ParsedDocument& doc, const ChunkOptions& opts);

}  // namespace slm::rag
