// See bm25f.h.
#include "rag/bm25f.h"

#include <sqlite3.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "rag/store.h"

namespace slm::rag {
namespace {

// What one MATCH query computes once and every row reuses: per-column average lengths and the
// IDF of each phrase (rows holding it in any column).
struct QueryStats {
  std::vector<double> avg_len;
  std::vector<double> idf;
};

int count_row(const Fts5ExtensionApi*, Fts5Context*, void* user) {
  ++*static_cast<sqlite3_int64*>(user);
  return SQLITE_OK;
}

QueryStats* query_stats(const Fts5ExtensionApi* api, Fts5Context* fts, int& rc) {
  if (auto* s = static_cast<QueryStats*>(api->xGetAuxdata(fts, 0))) return s;
  auto* s = new QueryStats;
  const int ncol = api->xColumnCount(fts);
  sqlite3_int64 rows = 0;
  rc = api->xRowCount(fts, &rows);
  s->avg_len.assign(static_cast<size_t>(ncol), 1.0);
  for (int c = 0; c < ncol && rc == SQLITE_OK; ++c) {
    sqlite3_int64 total = 0;
    rc = api->xColumnTotalSize(fts, c, &total);
    if (rows > 0 && total > 0) s->avg_len[static_cast<size_t>(c)] = static_cast<double>(total) / static_cast<double>(rows);
  }
  const int nphrase = api->xPhraseCount(fts);
  for (int p = 0; p < nphrase && rc == SQLITE_OK; ++p) {
    sqlite3_int64 hits = 0;
    rc = api->xQueryPhrase(fts, p, &hits, count_row);
    const double n = static_cast<double>(rows), h = static_cast<double>(hits);
    // Lucene's form: never negative, so a word in most rows still counts a little.
    s->idf.push_back(std::log(1.0 + (n - h + 0.5) / (h + 0.5)));
  }
  if (rc == SQLITE_OK) rc = api->xSetAuxdata(fts, s, [](void* p) { delete static_cast<QueryStats*>(p); });
  if (rc != SQLITE_OK) {
    delete s;
    return nullptr;
  }
  return s;
}

void bm25f(const Fts5ExtensionApi* api, Fts5Context* fts, sqlite3_context* ctx, int nval, sqlite3_value** val) {
  const int ncol = api->xColumnCount(fts);
  if (nval != 1 + 2 * ncol && nval != 2 + 2 * ncol) {
    sqlite3_result_error(ctx, "slm_bm25f wants k1, a (weight, b) pair per column, and optionally the phrases to skip", -1);
    return;
  }
  // Leading phrases that only select rows (see Store::bm25): they are scored again later on.
  const int skip = nval == 2 + 2 * ncol ? sqlite3_value_int(val[nval - 1]) : 0;
  int rc = SQLITE_OK;
  QueryStats* s = query_stats(api, fts, rc);
  if (!s) {
    sqlite3_result_error_code(ctx, rc);
    return;
  }
  const double k1 = sqlite3_value_double(val[0]);
  const int nphrase = static_cast<int>(s->idf.size());
  // Term frequency per phrase and column for this row.
  thread_local std::vector<int> tf;
  tf.assign(static_cast<size_t>(nphrase * ncol), 0);
  // Each phrase's own position list (xPhraseFirst/Next) rather than xInst, which merges all
  // phrases' positions into one sorted list first.
  for (int p = skip; p < nphrase; ++p) {
    Fts5PhraseIter it;
    int c = 0, off = 0;
    if ((rc = api->xPhraseFirst(fts, p, &it, &c, &off)) != SQLITE_OK) {
      sqlite3_result_error_code(ctx, rc);
      return;
    }
    for (; c >= 0; api->xPhraseNext(fts, &it, &c, &off)) ++tf[static_cast<size_t>(p * ncol + c)];
  }
  thread_local std::vector<double> norm;
  norm.assign(static_cast<size_t>(ncol), 0.0);
  for (int c = 0; c < ncol; ++c) {
    int len = 0;
    if ((rc = api->xColumnSize(fts, c, &len)) != SQLITE_OK) {
      sqlite3_result_error_code(ctx, rc);
      return;
    }
    const double w = sqlite3_value_double(val[1 + 2 * c]), b = sqlite3_value_double(val[2 + 2 * c]);
    norm[static_cast<size_t>(c)] = w / (1.0 - b + b * len / s->avg_len[static_cast<size_t>(c)]);
  }
  double score = 0;
  for (int p = skip; p < nphrase; ++p) {
    double f = 0;
    for (int c = 0; c < ncol; ++c) f += tf[static_cast<size_t>(p * ncol + c)] * norm[static_cast<size_t>(c)];
    if (f > 0) score += s->idf[static_cast<size_t>(p)] * f * (k1 + 1.0) / (f + k1);
  }
  sqlite3_result_double(ctx, score);
}

fts5_api* fts5_of(sqlite3* db) {
  fts5_api* api = nullptr;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, nullptr) != SQLITE_OK)
    fail("this SQLite has no FTS5 ({}); slm's index needs it", sqlite3_errmsg(db));
  sqlite3_bind_pointer(st, 1, &api, "fts5_api_ptr", nullptr);
  sqlite3_step(st);
  sqlite3_finalize(st);
  if (!api || api->iVersion < 2) fail("this SQLite's FTS5 is too old for slm's index");
  return api;
}

}  // namespace

std::vector<std::string> index_terms(sqlite3* db, const std::string& text) {
  fts5_api* api = fts5_of(db);
  void* ctx = nullptr;
  fts5_tokenizer tok{};
  if (api->xFindTokenizer(api, "porter", &ctx, &tok) != SQLITE_OK) fail("SQLite's FTS5 has no porter tokenizer");
  Fts5Tokenizer* t = nullptr;
  if (tok.xCreate(ctx, nullptr, 0, &t) != SQLITE_OK) fail("creating FTS5's porter tokenizer failed");
  std::vector<std::string> out;
  auto on_token = [](void* user, int, const char* p, int n, int, int) {
    static_cast<std::vector<std::string>*>(user)->emplace_back(p, static_cast<size_t>(n));
    return SQLITE_OK;
  };
  const int rc = tok.xTokenize(t, &out, FTS5_TOKENIZE_DOCUMENT, text.data(), static_cast<int>(text.size()), on_token);
  tok.xDelete(t);
  if (rc != SQLITE_OK) fail("FTS5's porter tokenizer failed on \"{}\"", text);
  return out;
}

std::vector<std::string> index_terms(const std::string& text) {
  // The tokenizer needs a connection only to be found: a private in-memory one per thread
  // (connections are not shared between threads here), so that a PostgreSQL store, which has
  // no SQLite file, tokenizes exactly as the SQLite one.
  struct Memory {
    sqlite3* db = nullptr;
    Memory() {
      if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
        fail("opening an in-memory SQLite database for the index's tokenizer failed");
    }
    ~Memory() { sqlite3_close(db); }
  };
  thread_local Memory mem;
  return index_terms(mem.db, text);
}

void register_bm25f(sqlite3* db) {
  fts5_api* api = fts5_of(db);
  if (api->xCreateFunction(api, "slm_bm25f", nullptr, bm25f, nullptr) != SQLITE_OK)
    fail("registering slm_bm25f: {}", sqlite3_errmsg(db));
}

}  // namespace slm::rag
