// The document index: one SQLite file (WAL mode) holding documents, their chunks, an FTS5 index
// over the chunks (text, heading path, document title) and embeddings per chunk and model. No
// server, no other process: the file is the index, and every change to one document is one
// transaction, so a process killed at any moment leaves a consistent file.
//
// Schema version 1 (PRAGMA user_version). A file from a newer slm, or one that is not an slm
// index, is refused with a message that says so; older versions are migrated on open.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rag/chunker.h"

struct sqlite3;
struct sqlite3_stmt;

namespace slm::rag {

inline constexpr int kSchemaVersion = 1;

struct DocumentInfo {
  int64_t id = 0;
  std::string path;      // absolute path of the file (the key)
  std::string rel_path;  // its path under the folder given to `index add` (a file alone: its name)
  std::string root;      // that folder (absolute)
  std::string hash;      // of the file's bytes
  int64_t size = 0, mtime = 0;
  std::string title, format;
  int64_t n_chunks = 0;
};

// An embedding model as the store knows it: a row per model, so that vectors from another model
// are never compared with these.
struct EmbedModelInfo {
  int64_t id = 0;
  std::string name;
  std::string fingerprint;
  int64_t dim = 0;
  int64_t n_vectors = 0;
};

struct ChunkInfo {
  int64_t id = 0, doc_id = 0, ord = 0;
  std::string text, heading_path;
  int line_start = 0, line_end = 0, page_start = 0, page_end = 0;
  std::string rel_path, path, title;  // of its document
};

struct StoreStats {
  int64_t documents = 0, chunks = 0, bytes = 0, file_bytes = 0;
  std::vector<EmbedModelInfo> models;
  std::vector<std::string> roots;
};

struct Bm25Hit {
  int64_t chunk_id = 0, doc_id = 0;
  double score = 0;   // BM25F (higher is better), before the lead boost
  bool lead = false;  // the chunk opens its document (heading path = title)
};

// BM25F over the three FTS columns, and the boost of a document's opening chunk. Defaults chosen
// on the public Python FAQ queries (docs/rag.md has the figures and what each one changed).
struct Bm25Params {
  double k1 = 1.2;
  double text_weight = 1.0, text_b = 0.3;
  double heading_weight = 2.0, heading_b = 0.75;
  double title_weight = 5.0, title_b = 0.75;
  double lead_boost = 0.5;
};

class Store {
 public:
  // Opens (create: or creates) the index at `path`. Throws slm::Error when the file is not an
  // slm index, is from a newer schema, or cannot be opened.
  Store(const std::string& path, bool create);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }

  // ---- documents
  std::optional<DocumentInfo> find_document(const std::string& path) const;
  std::vector<DocumentInfo> documents() const;
  // Replaces (or adds) a document and its chunks in one transaction, with their vectors when
  // `model` is given (vectors[i] for chunks[i]). Returns the document's id.
  int64_t put_document(const DocumentInfo& doc, const std::vector<Chunk>& chunks,
                       const EmbedModelInfo* model = nullptr,
                       const std::vector<std::vector<float>>* vectors = nullptr);
  void set_mtime(int64_t doc_id, int64_t mtime);
  void remove_document(int64_t doc_id);

  // ---- folders given to `index add` (what `index sync` walks again)
  void add_root(const std::string& path);
  std::vector<std::string> roots() const;

  // ---- embedding models and vectors
  // The model with this fingerprint, registered now when `create` (and absent).
  std::optional<EmbedModelInfo> find_model(const std::string& fingerprint) const;
  EmbedModelInfo register_model(const std::string& name, const std::string& fingerprint, int64_t dim);
  std::vector<EmbedModelInfo> models() const;
  // Chunks of a document that have no vector from the model yet (a run killed before its
  // embeddings were written, or a model added later).
  std::vector<ChunkInfo> chunks_without_vectors(int64_t doc_id, int64_t model_id) const;
  void put_vectors(int64_t model_id, const std::vector<int64_t>& chunk_ids, const std::vector<std::vector<float>>& vectors);
  // Every vector of a model, row-major in `matrix`, chunk ids in `ids`.
  void load_vectors(int64_t model_id, std::vector<int64_t>& ids, std::vector<float>& matrix) const;

  // ---- search
  // FTS5 MATCH ranked by BM25F with the lead boost; best first, at most `limit`. The first
  // `skip_phrases` phrases of `match` select rows without counting in the score.
  std::vector<Bm25Hit> bm25(const std::string& match, int limit, const Bm25Params& params = {},
                            int skip_phrases = 0) const;
  std::optional<ChunkInfo> chunk(int64_t id) const;
  int64_t chunk_count() const;
  // Documents containing each word (FTS5 vocabulary; words stemmed as the index stems them).
  int64_t document_frequency(const std::string& word) const;

  StoreStats stats() const;
  // PRAGMA integrity_check, plus chunks without a document and FTS rows without a chunk: "ok"
  // or what is wrong.
  std::string check() const;

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
