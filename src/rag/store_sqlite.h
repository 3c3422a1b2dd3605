// The index as one SQLite file (WAL mode): documents, chunks, an FTS5 table over the chunks
// ranked by slm_bm25f (bm25f.h), and embeddings per chunk and model. No server, no other
// process: the file is the index, and a process killed at any moment leaves a consistent file.
//
// Schema version kSchemaVersion (PRAGMA user_version). A file from a newer slm, or one that is not
// an slm index, is refused with a message that says so; older versions are migrated on open.
#pragma once
#include <string>
#include <utility>

#include "rag/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace slm::rag {

// The FTS5 expression for a lexical query and how many of its leading phrases only select rows:
// "(sel1 OR sel2) AND (w1 OR w2 OR ...)" with the selecting group skipped in scoring, or the
// words OR-ed. Words are quoted, so FTS5 operators in them are plain text.
std::pair<std::string, int> fts_match(const LexicalQuery& q);

class SqliteStore final : public Store {
 public:
  SqliteStore(const std::string& path, bool create);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  const std::string& path() const override { return path_; }
  const char* kind() const override { return "sqlite"; }
  std::optional<DocumentInfo> find_document(const std::string& path) const override;
  std::vector<DocumentInfo> documents() const override;
  int64_t put_document(const DocumentInfo& doc, const std::vector<Chunk>& chunks, const EmbedModelInfo* model = nullptr,
                       const std::vector<std::vector<float>>* vectors = nullptr) override;
  void set_mtime(int64_t doc_id, int64_t mtime) override;
  void remove_document(int64_t doc_id) override;
  void add_root(const std::string& path) override;
  std::vector<std::string> roots() const override;
  std::optional<EmbedModelInfo> find_model(const std::string& fingerprint) const override;
  EmbedModelInfo register_model(const std::string& name, const std::string& fingerprint, int64_t dim) override;
  std::vector<EmbedModelInfo> models() const override;
  std::vector<ChunkInfo> chunks_without_vectors(int64_t doc_id, int64_t model_id) const override;
  void put_vectors(int64_t model_id, const std::vector<int64_t>& chunk_ids,
                   const std::vector<std::vector<float>>& vectors) override;
  void load_vectors(int64_t model_id, std::vector<int64_t>& ids, std::vector<float>& matrix) const override;
  std::vector<Bm25Hit> bm25(const LexicalQuery& q, int limit, const Bm25Params& params = {}) const override;
  std::optional<ChunkInfo> chunk(int64_t id) const override;
  std::vector<std::pair<int64_t, Chunk>> document_chunks(int64_t doc_id) const override;
  int64_t chunk_count() const override;
  int64_t document_frequency(const std::string& term) const override;
  void refresh_statistics() override;
  StoreStats stats() const override;
  std::string check() const override;

  // FTS5 MATCH over the chunks ranked as bm25() ranks; the first `skip_phrases` phrases of
  // `match` select rows without counting in the score.
  std::vector<Bm25Hit> bm25_match(const std::string& match, int limit, const Bm25Params& params, int skip_phrases) const;

  sqlite3* handle() const { return db_; }

 private:
  void exec(const char* sql) const;
  void create_schema();
  void migrate(int from);

  std::string path_;
  sqlite3* db_ = nullptr;
};

// One prepared statement, finalized on scope exit; bind by 1-based index.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& bind(int i, int64_t v);
  Statement& bind(int i, double v);
  Statement& bind(int i, const std::string& v);
  Statement& bind_blob(int i, const void* data, size_t n);
  Statement& bind_null(int i);
  bool step();  // true while a row is there; throws on error
  void run() { while (step()) {} }
  void reset();
  int64_t int64(int col) const;
  double real(int col) const;
  std::string text(int col) const;
  const void* blob(int col, size_t& n) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

}  // namespace slm::rag
