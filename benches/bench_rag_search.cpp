// Search latency over a large synthetic index, as `slm search` pays it per query: BM25 (FTS5
// with BM25F, lead boost and page evidence), exact vector search (query embedding + cosine over
// every stored vector) and hybrid (both + RRF). Reported as p50/p95 milliseconds over a fixed
// set of queries. Needs an embedding model for vector and hybrid (its dimension sets the
// vectors'; bge-small-en-v1.5's shape is 384):
//   SLM_BENCH_EMBED_MODEL=bge-small-q8_0.gguf ./slm_benches --benchmark_filter=RagSearch
// The store (SLM_BENCH_RAG_DB, default /tmp/slm-bench-rag-<chunks>.db, or a postgresql:// URL)
// is built on the first run and reused: 100,000 chunks of ~120 Zipf-distributed pseudo-words in 2,000 documents, each
// chunk with a random unit vector registered to the model.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "models/model.h"
#include "rag/ingest.h"
#include "rag/search.h"
#include "rag/store.h"
#include "runtime/embedder.h"

namespace {

constexpr int kChunks = 100000, kDocs = 2000, kWordsPerChunk = 120, kVocab = 30000;

std::string pseudo_word(int i) {
  std::string w;
  do {
    w += static_cast<char>('a' + i % 26);
    i /= 26;
  } while (i > 0);
  if (w.size() < 3) w.append("ex");
  return w;
}

// Word ranks drawn with probability ~ 1/rank (Zipf, s = 1), as words in prose are.
struct Zipf {
  std::vector<double> cdf;
  Zipf() {
    cdf.resize(kVocab);
    double s = 0;
    for (int r = 0; r < kVocab; ++r) cdf[static_cast<size_t>(r)] = (s += 1.0 / (r + 1));
    for (double& c : cdf) c /= s;
  }
  int draw(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<int>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
  }
};

struct Fixture {
  std::unique_ptr<slm::Model> model;
  std::unique_ptr<slm::Embedder> embedder;
  std::unique_ptr<slm::rag::Store> store;
  std::unique_ptr<slm::rag::Searcher> searcher;
  std::vector<std::string> queries;
  std::string error;
};

void build_store(slm::rag::Store& store, const slm::rag::EmbedModelInfo* model) {
  std::mt19937_64 rng(7);
  const Zipf zipf;
  std::normal_distribution<float> normal(0, 1);
  const int per_doc = kChunks / kDocs;
  for (int d = 0; d < kDocs; ++d) {
    slm::rag::DocumentInfo doc;
    doc.path = "/synthetic/doc" + std::to_string(d) + ".md";
    doc.rel_path = "doc" + std::to_string(d) + ".md";
    doc.root = "/synthetic";
    doc.hash = std::to_string(d);
    doc.title = "Document ";
    doc.title.append(pseudo_word(zipf.draw(rng))).append(" ").append(pseudo_word(zipf.draw(rng)));
    doc.format = "markdown";
    std::vector<slm::rag::Chunk> chunks;
    std::vector<std::vector<float>> vecs;
    for (int c = 0; c < per_doc; ++c) {
      slm::rag::Chunk ch;
      ch.heading_path = doc.title;
      if (c) ch.heading_path.append(" > Section ").append(pseudo_word(zipf.draw(rng)));
      for (int w = 0; w < kWordsPerChunk; ++w) {
        if (w) ch.text.push_back(' ');
        ch.text.append(pseudo_word(zipf.draw(rng)));
      }
      ch.line_start = c * 10 + 1;
      ch.line_end = c * 10 + 10;
      ch.n_tokens = kWordsPerChunk;
      chunks.push_back(std::move(ch));
      if (model) {
        std::vector<float> v(static_cast<size_t>(model->dim));
        double n = 0;
        for (float& x : v) {
          x = normal(rng);
          n += static_cast<double>(x) * x;
        }
        for (float& x : v) x = static_cast<float>(x / std::sqrt(n));
        vecs.push_back(std::move(v));
      }
    }
    doc.size = static_cast<int64_t>(chunks.size()) * kWordsPerChunk * 6;
    store.put_document(doc, chunks, model, model ? &vecs : nullptr);
  }
  store.refresh_statistics();  // as `slm index add` ends
}

Fixture& fixture() {
  static Fixture f = [] {
    Fixture f;
    const char* mp = std::getenv("SLM_BENCH_EMBED_MODEL");
    if (!mp) {
      f.error = "set SLM_BENCH_EMBED_MODEL to an embedding model GGUF (bge-small-en-v1.5 shape)";
      return f;
    }
    f.model = slm::Model::load(mp);
    f.embedder = std::make_unique<slm::Embedder>(*f.model, 2);
    const char* dbp = std::getenv("SLM_BENCH_RAG_DB");
    const std::string db = dbp ? dbp : "/tmp/slm-bench-rag-" + std::to_string(kChunks) + "-d" +
                                           std::to_string(f.embedder->dim()) + ".db";
    const bool fresh = slm::rag::is_postgres_url(db) || !std::filesystem::exists(db);
    f.store = slm::rag::open_store(db, true);
    if (fresh && f.store->chunk_count() == 0) {
      const auto m = f.store->register_model(slm::rag::model_display_name(*f.model), slm::rag::model_fingerprint(*f.model),
                                             f.embedder->dim());
      build_store(*f.store, &m);
    }
    f.searcher = std::make_unique<slm::rag::Searcher>(*f.store, f.embedder.get());
    // Queries of 2 to 6 words, common and rare ones mixed as in real questions; the 100 most
    // common words are left out, as a real query loses its stop words.
    std::mt19937_64 rng(11);
    const Zipf zipf;
    for (int q = 0; q < 200; ++q) {
      std::string s;
      const int n = 2 + static_cast<int>(rng() % 5);
      for (int w = 0; w < n; ++w) {
        if (w) s.push_back(' ');
        s.append(pseudo_word(100 + zipf.draw(rng) % 4900));
      }
      f.queries.push_back(s);
    }
    return f;
  }();
  return f;
}

void run_queries(benchmark::State& state, slm::rag::SearchMode mode) {
  Fixture& f = fixture();
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  slm::rag::SearchOptions so;
  so.mode = mode;
  so.k = 10;
  if (const char* cr = std::getenv("SLM_BENCH_COMMON_ROWS")) so.common_rows = std::atoll(cr);
  // The first vector query loads every vector into memory: not part of a query's latency.
  if (mode != slm::rag::SearchMode::Bm25) f.searcher->search(f.queries[0], so);
  std::vector<double> ms;
  size_t i = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto hits = f.searcher->search(f.queries[i++ % f.queries.size()], so);
    benchmark::DoNotOptimize(hits);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  state.counters["p50_ms"] = ms[ms.size() / 2];
  state.counters["p95_ms"] = ms[std::min(ms.size() - 1, ms.size() * 95 / 100)];
  state.counters["chunks"] = static_cast<double>(f.store->chunk_count());
}

void BM_RagSearchBm25(benchmark::State& s) { run_queries(s, slm::rag::SearchMode::Bm25); }
void BM_RagSearchVector(benchmark::State& s) { run_queries(s, slm::rag::SearchMode::Vector); }
void BM_RagSearchHybrid(benchmark::State& s) { run_queries(s, slm::rag::SearchMode::Hybrid); }
BENCHMARK(BM_RagSearchBm25)->Iterations(200)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RagSearchVector)->Iterations(200)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RagSearchHybrid)->Iterations(200)->Unit(benchmark::kMillisecond);

}  // namespace
