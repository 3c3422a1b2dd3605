// The index in a PostgreSQL database (libpq), for servers that outgrow one machine: several
// `slm serve` processes on several machines search one index while `slm index add/sync` runs
// anywhere. Named by a libpq URL, e.g. postgresql://slm@db.internal/docs; the tables (all named
// slm_*) go into the connection's current schema, so one database holds one index per schema
// (postgresql://…/docs?options=-csearch_path%3Dteam_a) beside anything else it holds.
//
// Ranking is the SQLite store's, computed in SQL: each chunk's terms (index_terms: FTS5's porter
// tokenizer, run here) are kept as postings with their frequency per column, the column lengths on
// the chunk, and the totals BM25F averages over in one row kept by a trigger. Vectors are float32
// bytes as in the SQLite file; vector search loads them as it does there.
//
// Schema version kSchemaVersion, in slm_meta. A schema from a newer slm is refused.
#pragma once
#include <string>

#include "rag/store.h"

struct pg_conn;

namespace slm::rag {

// `url` without its password (user:password@ and password=...), for messages and path().
std::string redact_postgres_url(const std::string& url);

class PgStore final : public Store {
 public:
  PgStore(const std::string& url, bool create);
  ~PgStore() override;
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  const std::string& path() const override { return path_; }
  const char* kind() const override { return "postgresql"; }
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
  std::vector<ChunkInfo> chunks(const std::vector<int64_t>& ids) const override;
  int64_t chunk_count() const override;
  int64_t document_frequency(const std::string& term) const override;
  void refresh_statistics() override;
  StoreStats stats() const override;
  std::string check() const override;

 private:
  void open_schema(bool create);

  std::string path_;
  pg_conn* conn_ = nullptr;
};

}  // namespace slm::rag
