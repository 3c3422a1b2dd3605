// See store_sqlite.h.
#include "rag/store_sqlite.h"

#include "rag/bm25f.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>

#include "core/error.h"

namespace slm::rag {

namespace {

// PRAGMA application_id of an slm index ("SLMI"), so that another program's SQLite file is
// recognised as not ours even when its user_version happens to match.
constexpr int kApplicationId = 0x534C4D49;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The file an error is about, for its message.
std::string db_file(sqlite3* db) {
  const char* f = sqlite3_db_filename(db, "main");
  return f && *f ? f : "?";
}

}  // namespace

// ---- Statement

Statement::Statement(sqlite3* db, const char* sql) : db_(db) {
  if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK)
    fail("index {}: preparing SQL failed: {} ({})", db_file(db), sqlite3_errmsg(db), sql);
}
Statement::~Statement() { sqlite3_finalize(st_); }
Statement& Statement::bind(int i, int64_t v) {
  sqlite3_bind_int64(st_, i, v);
  return *this;
}
Statement& Statement::bind(int i, double v) {
  sqlite3_bind_double(st_, i, v);
  return *this;
}
Statement& Statement::bind(int i, const std::string& v) {
  sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bind_blob(int i, const void* data, size_t n) {
  sqlite3_bind_blob(st_, i, data, static_cast<int>(n), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bind_null(int i) {
  sqlite3_bind_null(st_, i);
  return *this;
}
bool Statement::step() {
  const int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  const std::string msg = sqlite3_errmsg(db_);
  sqlite3_reset(st_);
  fail("index {}: {} (SQLite error {})", db_file(db_), msg, rc);
}
void Statement::reset() {
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
}
int64_t Statement::int64(int col) const { return sqlite3_column_int64(st_, col); }
double Statement::real(int col) const { return sqlite3_column_double(st_, col); }
std::string Statement::text(int col) const {
  const auto* p = sqlite3_column_text(st_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st_, col))) : std::string();
}
const void* Statement::blob(int col, size_t& n) const {
  const void* p = sqlite3_column_blob(st_, col);
  n = static_cast<size_t>(sqlite3_column_bytes(st_, col));
  return p;
}

namespace {

// BEGIN IMMEDIATE ... COMMIT, rolled back when the scope is left by an exception.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { exec("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    exec("COMMIT");
    done_ = true;
  }

 private:
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      fail("index: {} failed: {}", sql, msg);
    }
  }
  sqlite3* db_;
  bool done_ = false;
};

const char* const kSchemaV1 = R"sql(
CREATE TABLE documents(
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  rel_path TEXT NOT NULL,
  root TEXT NOT NULL,
  hash TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime INTEGER NOT NULL,
  title TEXT NOT NULL,
  format TEXT NOT NULL,
  indexed_at INTEGER NOT NULL
);
CREATE TABLE chunks(
  id INTEGER PRIMARY KEY,
  doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  ord INTEGER NOT NULL,
  text TEXT NOT NULL,
  heading_path TEXT NOT NULL,
  line_start INTEGER NOT NULL,
  line_end INTEGER NOT NULL,
  page_start INTEGER NOT NULL,
  page_end INTEGER NOT NULL,
  n_tokens INTEGER NOT NULL,
  UNIQUE(doc_id, ord)
);
-- Porter stemming: "copying files" finds "copy a file".
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, headings, title, tokenize = 'porter unicode61');
CREATE VIRTUAL TABLE chunks_vocab USING fts5vocab(chunks_fts, 'row');
-- FTS rows go with their chunk, also when a document's deletion cascades to its chunks.
CREATE TRIGGER chunks_delete_fts AFTER DELETE ON chunks BEGIN
  DELETE FROM chunks_fts WHERE rowid = old.id;
END;
CREATE TABLE embed_models(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  fingerprint TEXT NOT NULL UNIQUE,
  dim INTEGER NOT NULL
);
CREATE TABLE embeddings(
  chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
  model_id INTEGER NOT NULL REFERENCES embed_models(id) ON DELETE CASCADE,
  vec BLOB NOT NULL,
  PRIMARY KEY(chunk_id, model_id)
) WITHOUT ROWID;
CREATE INDEX embeddings_model ON embeddings(model_id);
CREATE TABLE roots(path TEXT PRIMARY KEY);
)sql";

}  // namespace

// ---- Store

SqliteStore::SqliteStore(const std::string& path, bool create) : path_(path) {
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (!exists && !create)
    fail("no index at {} (make one with: slm index add --db {} FOLDER)", path, path);
  if (exists && S_ISDIR(st.st_mode)) fail("{} is a folder, not an index file", path);
  const int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    fail("cannot open index {}: {}", path, msg);
  }
  sqlite3_busy_timeout(db_, 10000);
  try {
    // The first read tells a SQLite file from anything else ("file is not a database").
    int64_t objects = 0, version = 0, app = 0;
    {
      Statement q(db_, "SELECT count(*) FROM sqlite_master");
      q.step();
      objects = q.int64(0);
    }
    {
      Statement q(db_, "PRAGMA user_version");
      q.step();
      version = q.int64(0);
    }
    {
      Statement q(db_, "PRAGMA application_id");
      q.step();
      app = q.int64(0);
    }
    // No tables at all (an empty file, or an `index add` killed before its first commit): an
    // empty index; reading commands get the schema written and find nothing.
    if (objects > 0 && app != kApplicationId)
      fail("{} is an SQLite database but not an slm index (application_id {:#x}); give another --db path", path, app);
    if (version > kSchemaVersion)
      fail("{} is an index of schema version {}, from a newer slm (this one reads versions up to {}); "
           "use that slm or index again into a new file", path, version, kSchemaVersion);
    exec("PRAGMA journal_mode = WAL");
    exec("PRAGMA synchronous = NORMAL");
    // Searches read much of the FTS index and every vector: map the file (no read() per page)
    // and keep a larger page cache than SQLite's 2 MiB default.
    exec("PRAGMA mmap_size = 4294967296");
    exec("PRAGMA cache_size = -65536");
    exec("PRAGMA foreign_keys = ON");
    if (objects == 0) create_schema();
    else if (version < kSchemaVersion) migrate(static_cast<int>(version));
    register_bm25f(db_);
  } catch (const Error& e) {
    sqlite3_close(db_);
    db_ = nullptr;
    const std::string what = e.what();
    if (what.find("file is not a database") != std::string::npos)
      fail("{} is not an slm index (not an SQLite database); give another --db path", path);
    if (what.find("database disk image is malformed") != std::string::npos)
      fail("{} is a damaged index (SQLite: database disk image is malformed); index again into a new file", path);
    throw;
  }
}

SqliteStore::~SqliteStore() {
  if (db_) sqlite3_close(db_);
}

void SqliteStore::exec(const char* sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    fail("index {}: {}", path_, msg);
  }
}

void SqliteStore::create_schema() {
  Transaction tx(db_);
  exec(kSchemaV1);
  exec(fmt::format("PRAGMA application_id = {}", kApplicationId).c_str());
  exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion).c_str());
  tx.commit();
}

void SqliteStore::migrate(int from) {
  // Version 1 is the first schema: there is nothing older to migrate from yet. When version 2
  // comes, its step goes here (one transaction per step, user_version bumped inside it).
  fail("{}: index schema version {} cannot be migrated to {}; index again into a new file", path_, from, kSchemaVersion);
}

std::optional<DocumentInfo> SqliteStore::find_document(const std::string& path) const {
  Statement q(db_,
              "SELECT d.id, d.path, d.rel_path, d.root, d.hash, d.size, d.mtime, d.title, d.format, "
              "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d WHERE d.path = ?");
  q.bind(1, path);
  if (!q.step()) return std::nullopt;
  return DocumentInfo{q.int64(0), q.text(1), q.text(2), q.text(3), q.text(4), q.int64(5), q.int64(6), q.text(7), q.text(8), q.int64(9)};
}

std::vector<DocumentInfo> SqliteStore::documents() const {
  Statement q(db_,
              "SELECT d.id, d.path, d.rel_path, d.root, d.hash, d.size, d.mtime, d.title, d.format, "
              "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d ORDER BY d.root, d.rel_path");
  std::vector<DocumentInfo> out;
  while (q.step())
    out.push_back({q.int64(0), q.text(1), q.text(2), q.text(3), q.text(4), q.int64(5), q.int64(6), q.text(7), q.text(8), q.int64(9)});
  return out;
}

int64_t SqliteStore::put_document(const DocumentInfo& doc, const std::vector<Chunk>& chunks, const EmbedModelInfo* model,
                            const std::vector<std::vector<float>>* vectors) {
  if (model && (!vectors || vectors->size() != chunks.size()))
    fail("index: {} vectors for {} chunks of {}", vectors ? vectors->size() : 0, chunks.size(), doc.path);
  Transaction tx(db_);
  {
    Statement del(db_, "DELETE FROM documents WHERE path = ?");
    del.bind(1, doc.path).run();
  }
  Statement ins(db_,
                "INSERT INTO documents(path, rel_path, root, hash, size, mtime, title, format, indexed_at) "
                "VALUES(?,?,?,?,?,?,?,?,?)");
  ins.bind(1, doc.path).bind(2, doc.rel_path).bind(3, doc.root).bind(4, doc.hash).bind(5, doc.size).bind(6, doc.mtime);
  ins.bind(7, doc.title).bind(8, doc.format).bind(9, now_seconds()).run();
  const int64_t doc_id = sqlite3_last_insert_rowid(db_);
  Statement chunk(db_,
                  "INSERT INTO chunks(doc_id, ord, text, heading_path, line_start, line_end, page_start, page_end, n_tokens) "
                  "VALUES(?,?,?,?,?,?,?,?,?)");
  Statement fts(db_, "INSERT INTO chunks_fts(rowid, text, headings, title) VALUES(?,?,?,?)");
  Statement vec(db_, "INSERT INTO embeddings(chunk_id, model_id, vec) VALUES(?,?,?)");
  // The title column also holds the file's path words ("library/csv.rst.txt": csv).
  const std::string title_words = doc.title + " " + doc.rel_path;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    chunk.reset();
    chunk.bind(1, doc_id).bind(2, static_cast<int64_t>(i)).bind(3, c.text).bind(4, c.heading_path);
    chunk.bind(5, int64_t{c.line_start}).bind(6, int64_t{c.line_end}).bind(7, int64_t{c.page_start});
    chunk.bind(8, int64_t{c.page_end}).bind(9, int64_t{c.n_tokens}).run();
    const int64_t chunk_id = sqlite3_last_insert_rowid(db_);
    fts.reset();
    fts.bind(1, chunk_id).bind(2, c.text).bind(3, c.heading_path).bind(4, title_words).run();
    if (model) {
      const auto& v = (*vectors)[i];
      if (static_cast<int64_t>(v.size()) != model->dim)
        fail("index: a vector of {} numbers for model {} of dimension {}", v.size(), model->name, model->dim);
      vec.reset();
      vec.bind(1, chunk_id).bind(2, model->id).bind_blob(3, v.data(), v.size() * sizeof(float)).run();
    }
  }
  tx.commit();
  return doc_id;
}

void SqliteStore::set_mtime(int64_t doc_id, int64_t mtime) {
  Statement q(db_, "UPDATE documents SET mtime = ? WHERE id = ?");
  q.bind(1, mtime).bind(2, doc_id).run();
}

void SqliteStore::remove_document(int64_t doc_id) {
  Transaction tx(db_);
  Statement q(db_, "DELETE FROM documents WHERE id = ?");
  q.bind(1, doc_id).run();
  tx.commit();
}

void SqliteStore::add_root(const std::string& path) {
  Statement q(db_, "INSERT OR IGNORE INTO roots(path) VALUES(?)");
  q.bind(1, path).run();
}

std::vector<std::string> SqliteStore::roots() const {
  Statement q(db_, "SELECT path FROM roots ORDER BY path");
  std::vector<std::string> out;
  while (q.step()) out.push_back(q.text(0));
  return out;
}

std::optional<EmbedModelInfo> SqliteStore::find_model(const std::string& fingerprint) const {
  Statement q(db_,
              "SELECT m.id, m.name, m.fingerprint, m.dim, (SELECT count(*) FROM embeddings e WHERE e.model_id = m.id) "
              "FROM embed_models m WHERE m.fingerprint = ?");
  q.bind(1, fingerprint);
  if (!q.step()) return std::nullopt;
  return EmbedModelInfo{q.int64(0), q.text(1), q.text(2), q.int64(3), q.int64(4)};
}

EmbedModelInfo SqliteStore::register_model(const std::string& name, const std::string& fingerprint, int64_t dim) {
  if (auto m = find_model(fingerprint)) return *m;
  Statement q(db_, "INSERT INTO embed_models(name, fingerprint, dim) VALUES(?,?,?)");
  q.bind(1, name).bind(2, fingerprint).bind(3, dim).run();
  return EmbedModelInfo{sqlite3_last_insert_rowid(db_), name, fingerprint, dim, 0};
}

std::vector<EmbedModelInfo> SqliteStore::models() const {
  Statement q(db_,
              "SELECT m.id, m.name, m.fingerprint, m.dim, (SELECT count(*) FROM embeddings e WHERE e.model_id = m.id) "
              "FROM embed_models m ORDER BY m.id");
  std::vector<EmbedModelInfo> out;
  while (q.step()) out.push_back({q.int64(0), q.text(1), q.text(2), q.int64(3), q.int64(4)});
  return out;
}

std::vector<ChunkInfo> SqliteStore::chunks_without_vectors(int64_t doc_id, int64_t model_id) const {
  Statement q(db_,
              "SELECT c.id, c.ord, c.text, c.heading_path FROM chunks c WHERE c.doc_id = ? AND NOT EXISTS "
              "(SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model_id = ?) ORDER BY c.ord");
  q.bind(1, doc_id).bind(2, model_id);
  std::vector<ChunkInfo> out;
  while (q.step()) {
    ChunkInfo c;
    c.id = q.int64(0);
    c.doc_id = doc_id;
    c.ord = q.int64(1);
    c.text = q.text(2);
    c.heading_path = q.text(3);
    out.push_back(std::move(c));
  }
  return out;
}

void SqliteStore::put_vectors(int64_t model_id, const std::vector<int64_t>& chunk_ids, const std::vector<std::vector<float>>& vectors) {
  Transaction tx(db_);
  Statement vec(db_, "INSERT OR REPLACE INTO embeddings(chunk_id, model_id, vec) VALUES(?,?,?)");
  for (size_t i = 0; i < chunk_ids.size(); ++i) {
    vec.reset();
    vec.bind(1, chunk_ids[i]).bind(2, model_id).bind_blob(3, vectors[i].data(), vectors[i].size() * sizeof(float)).run();
  }
  tx.commit();
}

void SqliteStore::load_vectors(int64_t model_id, std::vector<int64_t>& ids, std::vector<float>& matrix) const {
  int64_t dim = 0;
  {
    Statement q(db_, "SELECT dim FROM embed_models WHERE id = ?");
    q.bind(1, model_id);
    if (!q.step()) fail("index {}: no embedding model with id {}", path_, model_id);
    dim = q.int64(0);
  }
  ids.clear();
  matrix.clear();
  Statement q(db_, "SELECT chunk_id, vec FROM embeddings WHERE model_id = ? ORDER BY chunk_id");
  q.bind(1, model_id);
  while (q.step()) {
    size_t n = 0;
    const void* p = q.blob(1, n);
    if (n != static_cast<size_t>(dim) * sizeof(float))
      fail("index {}: the vector of chunk {} has {} bytes, not {} (dimension {}); the file is damaged", path_, q.int64(0), n,
           dim * 4, dim);
    ids.push_back(q.int64(0));
    const size_t at = matrix.size();
    matrix.resize(at + static_cast<size_t>(dim));
    std::memcpy(matrix.data() + at, p, n);
  }
}

std::pair<std::string, int> fts_match(const LexicalQuery& q) {
  auto or_of = [](const std::vector<std::string>& words) {
    std::string out;
    for (const std::string& w : words) {
      if (!out.empty()) out += " OR ";
      out += '"';
      for (char ch : w) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);  // FTS5 doubles a quote
      out += '"';
    }
    return out;
  };
  if (q.select.empty()) return {or_of(q.words), 0};
  // "(select) AND (words)" selects the rows of the select words and lists every word as a phrase
  // to score; the first group's phrases are skipped in scoring (they come again in the second).
  return {fmt::format("({}) AND ({})", or_of(q.select), or_of(q.words)), static_cast<int>(q.select.size())};
}

std::vector<Bm25Hit> SqliteStore::bm25(const LexicalQuery& q, int limit, const Bm25Params& p) const {
  if (q.words.empty()) return {};
  const auto [match, skip] = fts_match(q);
  return bm25_match(match, limit, p, skip);
}

std::vector<Bm25Hit> SqliteStore::bm25_match(const std::string& match, int limit, const Bm25Params& p, int skip_phrases) const {
  // The row's first section (its heading path is the document's title alone) is where a page says
  // what it is for; `lead_boost` ranks it above a passing mention deeper down.
  // Scoring runs inside FTS5 for every matching row; only the best 2 x limit by BM25F are joined
  // with their chunk and document rows for the lead boost (at most 1.5x: a row further down
  // rarely overtakes), which keeps a common word's tens of thousands of rows cheap.
  const std::string sql = fmt::format(
      "SELECT x.rowid, c.doc_id, x.s, c.heading_path = d.title AS lead FROM "
      "(SELECT rowid, slm_bm25f(chunks_fts, {k1}, {wt}, {bt}, {wh}, {bh}, {wti}, {bti}, {skip}) AS s FROM chunks_fts "
      " WHERE chunks_fts MATCH ?1 ORDER BY s DESC LIMIT ?3) x "
      "JOIN chunks c ON c.id = x.rowid JOIN documents d ON d.id = c.doc_id "
      "ORDER BY x.s * (1.0 + {lead} * lead) DESC, x.rowid LIMIT ?2",
      fmt::arg("k1", p.k1), fmt::arg("wt", p.text_weight), fmt::arg("bt", p.text_b), fmt::arg("wh", p.heading_weight),
      fmt::arg("bh", p.heading_b), fmt::arg("wti", p.title_weight), fmt::arg("bti", p.title_b),
      fmt::arg("lead", p.lead_boost), fmt::arg("skip", skip_phrases));
  Statement q(db_, sql.c_str());
  q.bind(1, match).bind(2, int64_t{limit}).bind(3, int64_t{2} * limit);
  std::vector<Bm25Hit> out;
  while (q.step()) out.push_back({q.int64(0), q.int64(1), q.real(2), q.int64(3) != 0});
  return out;
}

std::optional<ChunkInfo> SqliteStore::chunk(int64_t id) const {
  Statement q(db_,
              "SELECT c.id, c.doc_id, c.ord, c.text, c.heading_path, c.line_start, c.line_end, c.page_start, c.page_end, "
              "d.rel_path, d.path, d.title FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = ?");
  q.bind(1, id);
  if (!q.step()) return std::nullopt;
  ChunkInfo c;
  c.id = q.int64(0);
  c.doc_id = q.int64(1);
  c.ord = q.int64(2);
  c.text = q.text(3);
  c.heading_path = q.text(4);
  c.line_start = static_cast<int>(q.int64(5));
  c.line_end = static_cast<int>(q.int64(6));
  c.page_start = static_cast<int>(q.int64(7));
  c.page_end = static_cast<int>(q.int64(8));
  c.rel_path = q.text(9);
  c.path = q.text(10);
  c.title = q.text(11);
  return c;
}

std::vector<std::pair<int64_t, Chunk>> SqliteStore::document_chunks(int64_t doc_id) const {
  Statement q(db_,
              "SELECT id, text, heading_path, line_start, line_end, page_start, page_end, n_tokens FROM chunks "
              "WHERE doc_id = ? ORDER BY ord");
  q.bind(1, doc_id);
  std::vector<std::pair<int64_t, Chunk>> out;
  while (q.step()) {
    Chunk c;
    c.text = q.text(1);
    c.heading_path = q.text(2);
    c.line_start = static_cast<int>(q.int64(3));
    c.line_end = static_cast<int>(q.int64(4));
    c.page_start = static_cast<int>(q.int64(5));
    c.page_end = static_cast<int>(q.int64(6));
    c.n_tokens = static_cast<int>(q.int64(7));
    out.emplace_back(q.int64(0), std::move(c));
  }
  return out;
}

int64_t SqliteStore::chunk_count() const {
  Statement q(db_, "SELECT count(*) FROM chunks");
  q.step();
  return q.int64(0);
}

int64_t SqliteStore::document_frequency(const std::string& word) const {
  Statement q(db_, "SELECT doc FROM chunks_vocab WHERE term = ?");
  q.bind(1, word);
  return q.step() ? q.int64(0) : 0;
}

void SqliteStore::refresh_statistics() { exec("PRAGMA optimize"); }

StoreStats SqliteStore::stats() const {
  StoreStats s;
  {
    Statement q(db_, "SELECT count(*), coalesce(sum(size), 0) FROM documents");
    q.step();
    s.documents = q.int64(0);
    s.bytes = q.int64(1);
  }
  s.chunks = chunk_count();
  s.models = models();
  s.roots = roots();
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) s.file_bytes = st.st_size;
  return s;
}

std::string SqliteStore::check() const {
  std::string problems;
  {
    Statement q(db_, "PRAGMA integrity_check");
    while (q.step()) {
      const std::string row = q.text(0);
      if (row != "ok") problems += row + "; ";
    }
  }
  {
    Statement q(db_, "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = c.doc_id)");
    q.step();
    if (q.int64(0)) problems += fmt::format("{} chunks without a document; ", q.int64(0));
  }
  {
    Statement q(db_, "SELECT count(*) FROM chunks_fts f WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = f.rowid)");
    q.step();
    if (q.int64(0)) problems += fmt::format("{} search rows without a chunk; ", q.int64(0));
  }
  {
    Statement q(db_, "SELECT (SELECT count(*) FROM chunks) - (SELECT count(*) FROM chunks_fts)");
    q.step();
    if (q.int64(0)) problems += fmt::format("{} chunks missing from the search index; ", q.int64(0));
  }
  {
    Statement q(db_, "INSERT INTO chunks_fts(chunks_fts, rank) VALUES('integrity-check', 1)");
    try {
      q.run();
    } catch (const Error& e) {
      problems += std::string("full-text index: ") + e.what() + "; ";
    }
  }
  if (problems.empty()) return "ok";
  problems.resize(problems.size() - 2);
  return problems;
}

}  // namespace slm::rag
