// slm search: ranked chunks of an index for a query (BM25, vector or hybrid), and
// slm eval-retrieval: page-level recall@1/5/10 and MRR@10 of a query file against an index.
#include <fmt/format.h>

#include <sstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "commands.h"
#include "core/error.h"
#include "core/whole_file.h"
#include "rag/search.h"
#include "rag/store.h"
#include "rag_common.h"

namespace slm::cli {

namespace {

struct SearchOpts {
  std::string db, embed_model, mode, query, queries;
  int k = 10, threads = 0;
  bool json = false, per_query = false;
};

}  // namespace

Runner add_search(CLI::App& app) {
  auto o = std::make_shared<SearchOpts>();
  app.add_option("query", o->query, "what to look for")->required();
  app.add_option("--db", o->db, "the index: an SQLite file, or a postgresql:// URL")->required();
  app.add_option("--embed-model", o->embed_model, "the embedding model the index's vectors come from (vector, hybrid)");
  app.add_option("-k", o->k, "how many chunks (default 10)")->check(CLI::PositiveNumber);
  add_mode_option(app, o->mode);
  app.add_flag("--json", o->json, "JSON output");
  app.add_option("-t,--threads", o->threads, "threads for embedding the query");
  return [o]() {
    const rag::SearchMode mode = search_mode(o->mode, o->embed_model);
    const std::unique_ptr<rag::Store> opened = rag::open_store(o->db, false);
    rag::Store& store = *opened;
    LoadedEmbedder emb = load_embedder(o->embed_model, o->threads);
    rag::Searcher searcher(store, emb.embedder.get());
    rag::SearchOptions so;
    so.mode = mode;
    so.k = o->k;
    const auto hits = searcher.search(o->query, so);
    if (o->json) {
      nlohmann::ordered_json arr = nlohmann::ordered_json::array();
      for (size_t i = 0; i < hits.size(); ++i) arr.push_back(rag::hit_json(hits[i], i + 1));
      fmt::print("{}\n", arr.dump(2));
      return 0;
    }
    if (hits.empty()) {
      fmt::print("no matches for \"{}\"\n", o->query);
      return 0;
    }
    for (size_t i = 0; i < hits.size(); ++i) {
      const auto& h = hits[i];
      fmt::print("{:>2}. {}  [{:.4f}]\n    {}\n    {}\n", i + 1, chunk_location(h.chunk), h.score, h.chunk.heading_path,
                 h.snippet);
    }
    return 0;
  };
}

Runner add_eval_retrieval(CLI::App& app) {
  auto o = std::make_shared<SearchOpts>();
  app.add_option("--db", o->db, "the index: an SQLite file, or a postgresql:// URL")->required();
  app.add_option("--queries", o->queries, "JSON Lines: {\"id\", \"query\", \"relevant\": [relative paths]}")->required();
  app.add_option("--embed-model", o->embed_model, "the embedding model of the index's vectors (vector, hybrid)");
  app.add_option("-k", o->k, "pages ranked per query (default 10)")->check(CLI::PositiveNumber);
  add_mode_option(app, o->mode);
  app.add_flag("--json", o->json, "JSON output");
  app.add_flag("--per-query", o->per_query, "also print each query's rank of its first relevant page");
  app.add_option("-t,--threads", o->threads, "threads for embedding the queries");
  return [o]() {
    const rag::SearchMode mode = search_mode(o->mode, o->embed_model);
    std::istringstream in(read_whole_file(o->queries, "query file"));
    struct Query {
      std::string id, text;
      std::set<std::string> relevant;
    };
    std::vector<Query> queries;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("{} line {}: not JSON ({})", o->queries, n, e.what());
      }
      if (!j.is_object() || !j.contains("query") || !j["query"].is_string() || !j.contains("relevant") || !j["relevant"].is_array())
        fail("{} line {}: needs \"query\" (a string) and \"relevant\" (an array of paths)", o->queries, n);
      Query q;
      q.id = j.value("id", fmt::format("line {}", n));
      q.text = j["query"];
      for (const auto& r : j["relevant"]) {
        if (!r.is_string()) fail("{} line {}: \"relevant\" holds a non-string", o->queries, n);
        q.relevant.insert(r.get<std::string>());
      }
      queries.push_back(std::move(q));
    }
    if (queries.empty()) fail("{} has no queries", o->queries);

    const std::unique_ptr<rag::Store> opened = rag::open_store(o->db, false);
    rag::Store& store = *opened;
    LoadedEmbedder emb = load_embedder(o->embed_model, o->threads);
    rag::Searcher searcher(store, emb.embedder.get());
    rag::SearchOptions so;
    so.mode = mode;
    // Pages are ranked by their best chunk: enough chunks that k distinct pages come out.
    so.k = std::max(100, 20 * o->k);
    so.candidates = std::max(200, 2 * so.k);
    double r1 = 0, r5 = 0, r10 = 0, mrr = 0;
    nlohmann::ordered_json per = nlohmann::ordered_json::array();
    for (const Query& q : queries) {
      std::vector<std::string> pages;
      std::set<std::string> seen;
      for (const auto& h : searcher.search(q.text, so)) {
        if (seen.insert(h.chunk.rel_path).second) pages.push_back(h.chunk.rel_path);
        if (static_cast<int>(pages.size()) == o->k) break;
      }
      int first = 0;
      for (size_t i = 0; i < pages.size() && !first; ++i)
        if (q.relevant.count(pages[i])) first = static_cast<int>(i + 1);
      r1 += first == 1;
      r5 += first >= 1 && first <= 5;
      r10 += first >= 1 && first <= 10;
      if (first && first <= 10) mrr += 1.0 / first;
      if (o->per_query && !o->json)
        fmt::print("{:<16} first relevant page at {:<4} top: {}\n", q.id, first ? std::to_string(first) : "-",
                   pages.empty() ? "" : pages[0]);
      per.push_back({{"id", q.id}, {"first_relevant_rank", first}, {"top", pages}});
    }
    const double n = static_cast<double>(queries.size());
    if (o->json) {
      nlohmann::ordered_json j{{"queries", queries.size()}, {"mode", rag::search_mode_name(mode)}, {"recall@1", r1 / n},
                               {"recall@5", r5 / n}, {"recall@10", r10 / n}, {"mrr@10", mrr / n}};
      if (o->per_query) j["per_query"] = per;
      fmt::print("{}\n", j.dump(2));
    } else {
      fmt::print("{} queries, mode {}, page level\nrecall@1  {:.3f}\nrecall@5  {:.3f}\nrecall@10 {:.3f}\nMRR@10    {:.3f}\n",
                 queries.size(), rag::search_mode_name(mode), r1 / n, r5 / n, r10 / n, mrr / n);
    }
    return 0;
  };
}

}  // namespace slm::cli
