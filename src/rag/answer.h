// From search hits to an answer: which hits are relevant at all, the numbered sources a chat
// model is prompted with (fitted to its context), the sentences an extractive answer quotes, and
// the [n] citations a generated answer makes.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rag/search.h"
#include "rag/store.h"

namespace slm::rag {

// Query terms as the index holds them (stop words out, stems unique), each with its IDF over the
// store's chunks: what coverage and sentence scores weigh words by.
struct QueryTerms {
  std::vector<std::string> terms;
  std::vector<double> idf;
  double total_idf = 0;
};
QueryTerms query_terms(const Store& store, const std::string& query);

// Share of the query's IDF mass whose terms occur in `text` (0..1). "read a CSV file" against a
// passage on csv.reader is near 1; against a passage that only says "file" it is small.
double coverage(const Store& store, const QueryTerms& q, const std::string& text);

struct Source {
  int number = 0;  // 1-based, as the prompt and the citations say it
  SearchHit hit;
};

// The hits worth answering from: lexical coverage of at least `min_coverage`, in rank order.
// Empty means nothing relevant was found (the caller says so instead of answering).
std::vector<Source> relevant_sources(const Store& store, const QueryTerms& q, const std::vector<SearchHit>& hits,
                                     double min_coverage);

// "library/csv.rst.txt > csv --- CSV File Reading and Writing, lines 5-26"
std::string source_label(const ChunkInfo& c);

// The chat messages of a grounded answer: one user message with the rules (answer only from the
// sources, cite them as [n], say so when they do not hold the answer), the numbered sources and
// the question. Sources are added best first while `count_tokens` of
// the whole conversation stays within `budget_tokens`; `used` receives those that fit (at least
// one is needed: otherwise slm::Error says how much room the first one lacked).
nlohmann::ordered_json grounded_messages(const std::string& question, const std::vector<Source>& sources,
                                         const std::function<int(const nlohmann::ordered_json&)>& count_tokens,
                                         int budget_tokens, std::vector<Source>& used);

struct QuotedSentence {
  std::string text;
  int source = 0;  // Source::number
};

// Extractive answer: the sentences of the sources that cover the most of the query (IDF-weighted,
// better-ranked sources first on ties), at most `max_sentences`, in the order they score.
std::vector<QuotedSentence> extract_sentences(const Store& store, const QueryTerms& q, const std::vector<Source>& sources,
                                              int max_sentences = 3);

// Source numbers an answer cites as [n] (also [n, m] and [n][m]), each once, in order of first
// citation; numbers outside 1..n_sources are ignored.
std::vector<int> cited_numbers(const std::string& answer, int n_sources);

}  // namespace slm::rag
