// BM25F as an FTS5 ranking function, `slm_bm25f(table, k1, w0, b0, w1, b1, ...)`: one weight
// and one length normalisation per column, the column frequencies summed before saturation
// (Robertson & Zaragoza's BM25F), where FTS5's own bm25() has one b for all columns and
// normalises by the whole row's length. That matters here: a chunk's heading path and title are
// a few words and its text a few hundred, so one b either ignores text length or punishes a
// heading match in a long chunk. Higher scores are better. An optional last argument names a
// number of leading phrases to leave out of the score (they only select rows).
#pragma once
#include <string>
#include <vector>

struct sqlite3;

namespace slm::rag {

// Registers slm_bm25f on this connection. Throws slm::Error when SQLite has no FTS5.
void register_bm25f(sqlite3* db);

// The terms the index holds for `text`: FTS5's porter tokenizer over unicode61, as chunks_fts
// tokenizes ("Copying files" -> "copi", "file").
std::vector<std::string> index_terms(sqlite3* db, const std::string& text);

}  // namespace slm::rag
