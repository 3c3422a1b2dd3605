// Search over a Store: BM25 through FTS5, exact cosine over the stored vectors, and hybrid by
// reciprocal-rank fusion of the two. A Searcher keeps the vectors it loaded, so that many queries
// (a server, a benchmark, an evaluation) pay for loading once.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rag/store.h"

namespace slm {
class Embedder;
}

namespace slm::rag {

enum class SearchMode { Bm25, Vector, Hybrid };
SearchMode parse_search_mode(const std::string& s);  // bm25 | vector | hybrid; throws otherwise
const char* search_mode_name(SearchMode m);

// A user's query as an FTS5 expression: its words (as unicode61 splits them, lower-cased), each
// quoted, OR-ed, common English stop words left out unless nothing else is left. Quotes,
// operators (AND, NOT, NEAR, -, *, ^, :) and brackets in the query are plain text, never FTS5
// syntax. Words that `stem` (when given) maps to one term are kept once. Empty when the query
// has no words at all.
std::string fts_query(const std::string& query, const std::function<std::string(const std::string&)>& stem = {});
// The lexical query a search runs: a word in more than `common_rows` chunks only scores rows
// that hold one of the rarer words (Lucene's common-terms query), so that one common word does
// not make tens of thousands of chunks candidates to score (the store scores every selected row,
// at ~1 us each in FTS5); every word selects when all are rare or all are common.
LexicalQuery lexical_query(const std::vector<std::string>& words, const std::vector<int64_t>& doc_freq, int64_t common_rows);

// The words fts_query searches for, in query order.
std::vector<std::string> query_words(const std::string& query, const std::function<std::string(const std::string&)>& stem);

// Reciprocal-rank fusion constant (Cormack et al.: 60).
inline constexpr double kRrfK = 60.0;

struct SearchHit {
  ChunkInfo chunk;
  double score = 0;       // the mode's score: bm25 (higher better), cosine, or RRF
  int bm25_rank = 0;      // 1-based rank in the BM25 list (0: not in it)
  int vector_rank = 0;    // 1-based rank in the vector list (0: not in it)
  double bm25 = 0, cosine = 0;
  std::string snippet;    // the best sentences of the chunk for the query, at most ~240 bytes
};

struct SearchOptions {
  SearchMode mode = SearchMode::Bm25;
  int k = 10;
  // Candidates each list contributes before fusion; 0: max(50, 5k).
  int candidates = 0;
  // Lexical ranking: BM25F, the lead boost, and page evidence: a chunk gains page_weight times the
  // mean score of its document's best 3 chunks among the first `lexical_pool` matches, so that a
  // page about the question outranks a passing mention on a page about something else.
  Bm25Params bm25;
  double page_weight = 0.3;
  int lexical_pool = 1000;
  // See lexical_query. 5,000: the Python docs (9.9k chunks) never reach it (there it cost 0.01-0.07
  // MRR at 5-10% of the rows); on a 100k-chunk store it cut BM25's CPU time by ~half.
  int64_t common_rows = 5000;
};

// Lexical hits (best first, as Store::bm25 gives them) re-ranked with page evidence; the score of
// each is its final lexical score. Exposed for tests.
std::vector<Bm25Hit> rank_lexical(std::vector<Bm25Hit> hits, double lead_boost, double page_weight);

// Ranked lists fused: each id's score is the sum over lists of 1 / (kRrfK + rank), best first;
// ties broken by the id's best rank, then by id. Exposed for tests.
std::vector<std::pair<int64_t, double>> rrf_fuse(const std::vector<std::vector<int64_t>>& lists, double k = kRrfK);

class Searcher {
 public:
  // `embedder` (may be null: BM25 only) must be the model the store's vectors come from; vector
  // and hybrid searches throw slm::Error when the store has no vectors from it.
  Searcher(const Store& store, Embedder* embedder);
  ~Searcher();

  // Throws slm::Error for a query with no words (BM25, hybrid) or an empty one (vector), and for
  // a vector mode without a usable model.
  std::vector<SearchHit> search(const std::string& query, const SearchOptions& opts);

  // The vectors in memory (loaded by the first vector search).
  int64_t vectors_loaded() const { return static_cast<int64_t>(ids_.size()); }

 private:
  std::vector<std::pair<int64_t, double>> vector_search(const std::string& query, int limit);
  void load_vectors();

  const Store& store_;
  Embedder* embedder_;
  std::optional<EmbedModelInfo> model_;
  bool loaded_ = false;
  std::vector<int64_t> ids_;
  std::vector<float> matrix_;
};

// A hit as `slm search --json` and POST /v1/search give it: rank, score, path, heading, title,
// lines or pages, the ranks in each list, snippet, text, chunk_id.
nlohmann::ordered_json hit_json(const SearchHit& h, size_t rank);

// The sentences of `text` that hold the most query words, in text order, cut to about max_bytes.
std::string make_snippet(const std::string& text, const std::vector<std::string>& query_words, size_t max_bytes = 240);

}  // namespace slm::rag
