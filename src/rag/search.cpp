// See search.h.
#include "rag/search.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <unordered_map>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "rag/store_sqlite.h"
#include "rag/ingest.h"
#include "rag/text_util.h"
#include "runtime/embedder.h"

namespace slm::rag {

SearchMode parse_search_mode(const std::string& s) {
  if (s == "bm25") return SearchMode::Bm25;
  if (s == "vector") return SearchMode::Vector;
  if (s == "hybrid") return SearchMode::Hybrid;
  fail("unknown search mode '{}' (bm25, vector or hybrid)", s);
}

const char* search_mode_name(SearchMode m) {
  switch (m) {
    case SearchMode::Bm25: return "bm25";
    case SearchMode::Vector: return "vector";
    case SearchMode::Hybrid: return "hybrid";
  }
  return "?";
}

namespace {

// Words that say nothing about what a question is about ("how do I ... in python").
bool is_stop_word(const std::string& w) {
  static const std::set<std::string> kStop = {
      "a", "about", "an", "and", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for", "from",
      "get", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on",
      "or", "should", "so", "that", "the", "their", "there", "these", "this", "to", "use", "using", "was",
      "way", "we", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
      "python", "not", "no", "there's", "some", "any", "all", "one", "than", "then", "them",
      // What unicode61 leaves of contractions ("I've", "don't", "it's"): never what a page is about.
      "s", "t", "ve", "ll", "re", "d", "m"};
  return kStop.count(w) > 0;
}

}  // namespace

std::vector<std::string> query_words(const std::string& query, const std::function<std::string(const std::string&)>& stem) {
  std::vector<std::string> all = words_of(query), kept;
  // Words with one stem ("print", "prints") are one term: counting it twice would rank a page by
  // how the question happened to be phrased.
  std::set<std::string> seen;
  auto key = [&](const std::string& w) { return stem ? stem(w) : w; };
  for (const std::string& w : all)
    if (!is_stop_word(w) && seen.insert(key(w)).second) kept.push_back(w);
  if (kept.empty())
    for (const std::string& w : all)
      if (seen.insert(key(w)).second) kept.push_back(w);
  return kept;
}

std::string fts_query(const std::string& query, const std::function<std::string(const std::string&)>& stem) {
  return fts_match(LexicalQuery{{}, query_words(query, stem)}).first;
}

LexicalQuery lexical_query(const std::vector<std::string>& words, const std::vector<int64_t>& doc_freq, int64_t common_rows) {
  LexicalQuery q;
  q.words = words;
  for (size_t i = 0; i < words.size(); ++i)
    if (doc_freq[i] <= common_rows) q.select.push_back(words[i]);
  // All rare or all common: every word selects.
  if (q.select.size() == words.size()) q.select.clear();
  return q;
}

std::vector<std::pair<int64_t, double>> rrf_fuse(const std::vector<std::vector<int64_t>>& lists, double k) {
  std::unordered_map<int64_t, std::pair<double, int>> acc;  // id -> (score, best rank)
  for (const auto& list : lists)
    for (size_t r = 0; r < list.size(); ++r) {
      auto& [score, best] = acc.try_emplace(list[r], 0.0, 1 << 30).first->second;
      score += 1.0 / (k + static_cast<double>(r + 1));
      best = std::min(best, static_cast<int>(r + 1));
    }
  std::vector<std::tuple<int64_t, double, int>> all;
  for (const auto& [id, v] : acc) all.emplace_back(id, v.first, v.second);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) > std::get<1>(b);
    if (std::get<2>(a) != std::get<2>(b)) return std::get<2>(a) < std::get<2>(b);
    return std::get<0>(a) < std::get<0>(b);
  });
  std::vector<std::pair<int64_t, double>> out;
  for (const auto& [id, s, r] : all) out.emplace_back(id, s);
  return out;
}

nlohmann::ordered_json hit_json(const SearchHit& h, size_t rank) {
  nlohmann::ordered_json j{{"rank", rank}, {"score", h.score}, {"path", h.chunk.rel_path},
                           {"heading", h.chunk.heading_path}, {"title", h.chunk.title}};
  if (h.chunk.page_start > 0) j["pages"] = {h.chunk.page_start, h.chunk.page_end};
  else j["lines"] = {h.chunk.line_start, h.chunk.line_end};
  if (h.bm25_rank) j["bm25_rank"] = h.bm25_rank;
  if (h.vector_rank) j["vector_rank"] = h.vector_rank;
  j["snippet"] = h.snippet;
  j["text"] = h.chunk.text;
  j["chunk_id"] = h.chunk.id;
  return j;
}

std::string make_snippet(const std::string& text, const std::vector<std::string>& qwords, size_t max_bytes) {
  const std::vector<std::string_view> sents = sentences_of(text);
  if (sents.empty()) return {};
  std::set<std::string> q(qwords.begin(), qwords.end());
  std::vector<std::pair<int, size_t>> scored;  // (distinct query words, index)
  for (size_t i = 0; i < sents.size(); ++i) {
    std::set<std::string> hit;
    for (const std::string& w : words_of(sents[i]))
      if (q.count(w)) hit.insert(w);
    scored.emplace_back(static_cast<int>(hit.size()), i);
  }
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<size_t> pick;
  size_t bytes = 0;
  for (const auto& [n, i] : scored) {
    if (!pick.empty() && (n == 0 || bytes + sents[i].size() > max_bytes)) break;
    pick.push_back(i);
    bytes += sents[i].size() + 1;
  }
  std::sort(pick.begin(), pick.end());
  std::string out;
  for (size_t j = 0; j < pick.size(); ++j) {
    if (j && pick[j] != pick[j - 1] + 1) out += " … ";
    else if (j) out += ' ';
    out += collapse_whitespace(sents[pick[j]]);
  }
  if (out.size() > max_bytes) {
    size_t cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + "…";
  }
  return out;
}

std::vector<Bm25Hit> rank_lexical(std::vector<Bm25Hit> hits, double lead_boost, double page_weight) {
  constexpr size_t kPageBest = 3;
  std::unordered_map<int64_t, std::vector<double>> by_doc;
  for (const Bm25Hit& h : hits) {
    std::vector<double>& best = by_doc[h.doc_id];
    if (best.size() < kPageBest) best.push_back(h.score);  // hits come best-boosted first: near enough
    else {
      auto low = std::min_element(best.begin(), best.end());
      if (h.score > *low) *low = h.score;
    }
  }
  std::unordered_map<int64_t, double> page;
  for (const auto& [doc, best] : by_doc) {
    double sum = 0;
    for (double v : best) sum += v;
    page[doc] = sum / static_cast<double>(kPageBest);  // a page with one match counts less
  }
  for (Bm25Hit& h : hits) h.score = h.score * (1.0 + lead_boost * (h.lead ? 1 : 0)) + page_weight * page[h.doc_id];
  std::stable_sort(hits.begin(), hits.end(), [](const Bm25Hit& a, const Bm25Hit& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.chunk_id < b.chunk_id;
  });
  return hits;
}

Searcher::Searcher(const Store& store, Embedder* embedder) : store_(store), embedder_(embedder) {
  if (embedder_) {
    const Model& m = embedder_->model();
    model_ = store_.find_model(model_fingerprint(m));
    if (model_ && model_->dim != embedder_->dim())
      fail("index {}: model {} is recorded with dimension {}, but the file gives {}", store_.path(), model_->name,
           model_->dim, embedder_->dim());
  }
}

Searcher::~Searcher() = default;

void Searcher::load_vectors() {
  if (loaded_) return;
  if (!embedder_) fail("vector and hybrid search need the embedding model the index was built with (--embed-model)");
  if (!model_ || model_->n_vectors == 0) {
    std::string have;
    for (const EmbedModelInfo& m : store_.models())
      if (m.n_vectors > 0) have += fmt::format("{}{} (dimension {}, {} vectors)", have.empty() ? "" : ", ", m.name, m.dim, m.n_vectors);
    fail("index {} has no vectors from {}; {}", store_.path(), model_display_name(embedder_->model()),
         have.empty() ? "it has none at all (index with: slm index add --embed-model MODEL ...)"
                      : "it has vectors from: " + have + ". Search with that model, or index again with this one");
  }
  store_.load_vectors(model_->id, ids_, matrix_);
  loaded_ = true;
}

std::vector<std::pair<int64_t, double>> Searcher::vector_search(const std::string& query, int limit) {
  if (query.find_first_not_of(" \t\r\n") == std::string::npos) fail("the query is empty");
  load_vectors();
  const int64_t dim = model_->dim;
  const std::vector<float> qv = embedder_->embed_texts({query}, true).at(0);
  const int64_t n = static_cast<int64_t>(ids_.size());
  std::vector<float> scores(static_cast<size_t>(n));
  // Stored vectors are L2-normalized, so cosine is a dot product: one matrix-vector product with
  // the F32 kernel of the best instruction set (the scalar loop where the dimension does not
  // suit it).
  const kern::FloatKernels& fk = kern::active().flt[static_cast<int>(DType::F32)];
  if (fk.gemv && dim % 32 == 0 && n > 0) {
    fk.gemv(reinterpret_cast<const uint8_t*>(matrix_.data()), static_cast<size_t>(dim) * sizeof(float), 0, n, dim,
            qv.data(), scores.data());
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float* row = matrix_.data() + i * dim;
      float s = 0;
      for (int64_t d = 0; d < dim; ++d) s += row[d] * qv[static_cast<size_t>(d)];
      scores[static_cast<size_t>(i)] = s;
    }
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  const size_t top = std::min<size_t>(static_cast<size_t>(limit), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<long>(top), order.end(), [&](int64_t a, int64_t b) {
    if (scores[static_cast<size_t>(a)] != scores[static_cast<size_t>(b)]) return scores[static_cast<size_t>(a)] > scores[static_cast<size_t>(b)];
    return ids_[static_cast<size_t>(a)] < ids_[static_cast<size_t>(b)];
  });
  std::vector<std::pair<int64_t, double>> out;
  for (size_t i = 0; i < top; ++i) out.emplace_back(ids_[static_cast<size_t>(order[i])], scores[static_cast<size_t>(order[i])]);
  return out;
}

std::vector<SearchHit> Searcher::search(const std::string& query, const SearchOptions& opts) {
  if (opts.k <= 0) fail("-k must be at least 1 (got {})", opts.k);
  const int candidates = opts.candidates > 0 ? opts.candidates : std::max(50, 5 * opts.k);
  std::vector<Bm25Hit> lexical;
  std::vector<std::pair<int64_t, double>> vec;
  if (opts.mode != SearchMode::Vector) {
    // Each word is stemmed once: query_words dedupes by stem, the document frequencies read it.
    std::unordered_map<std::string, std::string> stems;
    auto stem = [&](const std::string& w) {
      auto it = stems.find(w);
      if (it == stems.end()) {
        std::vector<std::string> t = index_terms(w);
        it = stems.emplace(w, t.empty() ? w : t.front()).first;
      }
      return it->second;
    };
    const std::vector<std::string> words = query_words(query, stem);
    if (words.empty()) fail("the query \"{}\" has no words to search for (only punctuation or symbols)", query);
    std::vector<int64_t> df;
    for (const std::string& w : words) df.push_back(store_.document_frequency(stem(w)));
    const LexicalQuery lq = lexical_query(words, df, opts.common_rows);
    lexical = rank_lexical(store_.bm25(lq, std::max(opts.lexical_pool, candidates), opts.bm25),
                           opts.bm25.lead_boost, opts.page_weight);
    if (lexical.size() > static_cast<size_t>(opts.mode == SearchMode::Bm25 ? opts.k : candidates))
      lexical.resize(static_cast<size_t>(opts.mode == SearchMode::Bm25 ? opts.k : candidates));
  }
  if (opts.mode != SearchMode::Bm25) vec = vector_search(query, opts.mode == SearchMode::Vector ? opts.k : candidates);

  std::unordered_map<int64_t, SearchHit> by_id;
  for (size_t r = 0; r < lexical.size(); ++r) {
    SearchHit& h = by_id[lexical[r].chunk_id];
    h.bm25_rank = static_cast<int>(r + 1);
    h.bm25 = lexical[r].score;
  }
  for (size_t r = 0; r < vec.size(); ++r) {
    SearchHit& h = by_id[vec[r].first];
    h.vector_rank = static_cast<int>(r + 1);
    h.cosine = vec[r].second;
  }
  std::vector<std::pair<int64_t, double>> ranked;
  if (opts.mode == SearchMode::Bm25) {
    for (const Bm25Hit& h : lexical) ranked.emplace_back(h.chunk_id, h.score);
  } else if (opts.mode == SearchMode::Vector) {
    ranked = vec;
  } else {
    std::vector<int64_t> a, b;
    for (const Bm25Hit& h : lexical) a.push_back(h.chunk_id);
    for (const auto& [id, s] : vec) b.push_back(id);
    ranked = rrf_fuse({a, b});
  }
  if (ranked.size() > static_cast<size_t>(opts.k)) ranked.resize(static_cast<size_t>(opts.k));
  const std::vector<std::string> qwords = query_words(query, {});
  std::vector<int64_t> ids;
  for (const auto& [id, score] : ranked) ids.push_back(id);
  std::unordered_map<int64_t, double> score_of(ranked.begin(), ranked.end());
  std::vector<SearchHit> out;
  // Chunks removed by another process since the search are not among them.
  for (ChunkInfo& c : store_.chunks(ids)) {
    SearchHit h = by_id[c.id];
    h.score = score_of[c.id];
    h.chunk = std::move(c);
    h.snippet = make_snippet(h.chunk.text, qwords);
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace slm::rag
