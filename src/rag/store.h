// The document index behind `slm index/search/ask` and the server's /v1/search: documents, their
// chunks, a BM25F-ranked lexical index over the chunks (text, heading path, document title) and
// embeddings per chunk and model. Two kinds, one interface:
//  - an SQLite file (store_sqlite.h): no server, no other process, the file is the index;
//  - a PostgreSQL database (store_pg.h), named by a postgresql:// URL: one index that several
//    machines' servers and indexers share.
// Both rank alike: the same terms (FTS5's porter tokenizer), the same BM25F with the same
// statistics, so a query scores the same chunks the same way in either (tests/test_rag_store_pg).
// Every change to one document is one transaction in both.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "rag/chunker.h"

namespace slm::rag {

inline constexpr int kSchemaVersion = 1;  // of either kind (the schemas differ, their versions go together)

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
  int64_t documents = 0, chunks = 0, bytes = 0;
  int64_t file_bytes = 0;  // on disk: the file, or the index's tables and indexes in PostgreSQL
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

// What a lexical search looks for: rows holding at least one `select` word (none: any of `words`),
// scored by BM25F over `words`. Words as the user wrote them (lower-cased); the store maps them to
// its terms. See lexical_query in search.h for why the two lists differ.
struct LexicalQuery {
  std::vector<std::string> select;
  std::vector<std::string> words;
};

class Store {
 public:
  virtual ~Store() = default;

  // Where the index is: a file path, or the URL of a PostgreSQL index without its password.
  virtual const std::string& path() const = 0;
  // "sqlite" or "postgresql".
  virtual const char* kind() const = 0;

  // ---- documents
  virtual std::optional<DocumentInfo> find_document(const std::string& path) const = 0;
  virtual std::vector<DocumentInfo> documents() const = 0;
  // Replaces (or adds) a document and its chunks in one transaction, with their vectors when
  // `model` is given (vectors[i] for chunks[i]). Returns the document's id.
  virtual int64_t put_document(const DocumentInfo& doc, const std::vector<Chunk>& chunks,
                               const EmbedModelInfo* model = nullptr,
                               const std::vector<std::vector<float>>* vectors = nullptr) = 0;
  virtual void set_mtime(int64_t doc_id, int64_t mtime) = 0;
  virtual void remove_document(int64_t doc_id) = 0;

  // ---- folders given to `index add` (what `index sync` walks again)
  virtual void add_root(const std::string& path) = 0;
  virtual std::vector<std::string> roots() const = 0;

  // ---- embedding models and vectors
  virtual std::optional<EmbedModelInfo> find_model(const std::string& fingerprint) const = 0;
  // The model with this fingerprint, registered now when absent.
  virtual EmbedModelInfo register_model(const std::string& name, const std::string& fingerprint, int64_t dim) = 0;
  virtual std::vector<EmbedModelInfo> models() const = 0;
  // Chunks of a document that have no vector from the model yet (a run killed before its
  // embeddings were written, or a model added later).
  virtual std::vector<ChunkInfo> chunks_without_vectors(int64_t doc_id, int64_t model_id) const = 0;
  virtual void put_vectors(int64_t model_id, const std::vector<int64_t>& chunk_ids,
                           const std::vector<std::vector<float>>& vectors) = 0;
  // Every vector of a model, row-major in `matrix`, chunk ids in `ids` (ascending).
  virtual void load_vectors(int64_t model_id, std::vector<int64_t>& ids, std::vector<float>& matrix) const = 0;

  // ---- search
  // The rows `q` selects ranked by BM25F with the lead boost; best first, at most `limit`.
  virtual std::vector<Bm25Hit> bm25(const LexicalQuery& q, int limit, const Bm25Params& params = {}) const = 0;
  virtual std::optional<ChunkInfo> chunk(int64_t id) const = 0;
  // A document's chunks as they were put, in order, with their ids.
  virtual std::vector<std::pair<int64_t, Chunk>> document_chunks(int64_t doc_id) const = 0;
  // Several chunks at once, in the order of `ids`; ids no longer there are left out. (A search
  // reads its hits' chunks: one round trip, not one each, where the store is a server.)
  virtual std::vector<ChunkInfo> chunks(const std::vector<int64_t>& ids) const {
    std::vector<ChunkInfo> out;
    for (int64_t id : ids)
      if (auto c = chunk(id)) out.push_back(std::move(*c));
    return out;
  }
  virtual int64_t chunk_count() const = 0;
  // Chunks holding the term (a stem, as index_terms gives it).
  virtual int64_t document_frequency(const std::string& term) const = 0;

  // After a run that changed documents: what the database plans its searches by, brought up to
  // date (PostgreSQL plans a search over never-analysed postings ~15x slower).
  virtual void refresh_statistics() = 0;

  virtual StoreStats stats() const = 0;
  // The database's own check plus the index's invariants (every chunk has its document and its
  // search rows, and the other way round): "ok" or what is wrong.
  virtual std::string check() const = 0;
};

// The store's database cannot be reached now (a PostgreSQL server down or restarting): not the
// request's fault, and the next request may succeed (the connection is opened again).
class StoreUnavailable : public Error {
 public:
  using Error::Error;
};

// A postgresql:// or postgres:// URL (libpq's connection URI), as opposed to a file path.
bool is_postgres_url(const std::string& where);

// Opens (create: or creates) the index at `where`: a PostgreSQL URL or an SQLite file path.
// Throws slm::Error when it is not an slm index, is from a newer schema, or cannot be reached.
std::unique_ptr<Store> open_store(const std::string& where, bool create);

// What copy_index did.
struct CopyReport {
  int64_t documents = 0, unchanged = 0, chunks = 0, vectors = 0;
  double seconds = 0;
};

// Copies every document of `from` (chunks, vectors of every model, folders) into `to`, one
// transaction per document: an SQLite file into PostgreSQL when one machine is outgrown, or
// back. Documents `to` already holds with the same content hash and chunk count are left as
// they are, so a copy that was stopped can be run again. No file is read and nothing is
// embedded again. `on_document` (may be empty) is called after each document with how many of
// how many are done.
using CopyProgress = std::function<void(const DocumentInfo&, size_t done, size_t total)>;
CopyReport copy_index(const Store& from, Store& to, const CopyProgress& on_document = {});

// The terms the index holds for `text`: FTS5's porter tokenizer over unicode61 ("Copying files"
// -> "copi", "file"), the same for both kinds of store.
std::vector<std::string> index_terms(const std::string& text);

}  // namespace slm::rag
