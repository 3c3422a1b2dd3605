// See store.h: which kind of store a --db names.
#include "rag/store.h"

#include <chrono>
#include <unordered_map>

#include "rag/store_pg.h"
#include "rag/store_sqlite.h"

namespace slm::rag {

bool is_postgres_url(const std::string& where) {
  return where.rfind("postgresql://", 0) == 0 || where.rfind("postgres://", 0) == 0;
}

std::unique_ptr<Store> open_store(const std::string& where, bool create) {
  if (is_postgres_url(where)) return std::make_unique<PgStore>(where, create);
  return std::make_unique<SqliteStore>(where, create);
}

CopyReport copy_index(const Store& from, Store& to, const CopyProgress& on_document) {
  if (from.path() == to.path()) fail("copying index {} onto itself", from.path());
  const auto t0 = std::chrono::steady_clock::now();
  CopyReport rep;
  for (const std::string& r : from.roots()) to.add_root(r);
  // Each model's vectors, by source chunk id, and the model as the destination knows it.
  struct ModelVectors {
    EmbedModelInfo dest;
    int64_t dim = 0;
    std::unordered_map<int64_t, size_t> row;
    std::vector<float> matrix;
  };
  std::vector<ModelVectors> models;
  for (const EmbedModelInfo& m : from.models()) {
    ModelVectors mv;
    mv.dest = to.register_model(m.name, m.fingerprint, m.dim);
    if (mv.dest.dim != m.dim)
      fail("{} knows model {} with dimension {}, {} with {}", to.path(), m.name, mv.dest.dim, from.path(), m.dim);
    mv.dim = m.dim;
    std::vector<int64_t> ids;
    from.load_vectors(m.id, ids, mv.matrix);
    for (size_t i = 0; i < ids.size(); ++i) mv.row[ids[i]] = i;
    models.push_back(std::move(mv));
  }
  const std::vector<DocumentInfo> docs = from.documents();
  size_t done = 0;
  for (const DocumentInfo& doc : docs) {
    ++done;
    const std::optional<DocumentInfo> there = to.find_document(doc.path);
    const bool same = there && there->hash == doc.hash && there->n_chunks == doc.n_chunks;
    if (same) {
      // Same content: only vectors the destination lacks (a copy stopped between the two steps).
      bool complete = true;
      for (const ModelVectors& mv : models) complete = complete && to.chunks_without_vectors(there->id, mv.dest.id).empty();
      if (complete) {
        rep.unchanged++;
        if (on_document) on_document(doc, done, docs.size());
        continue;
      }
    }
    const std::vector<std::pair<int64_t, Chunk>> chunks = from.document_chunks(doc.id);
    int64_t dest_id = 0;
    if (same) {
      dest_id = there->id;
    } else {
      std::vector<Chunk> plain;
      for (const auto& [id, c] : chunks) plain.push_back(c);
      dest_id = to.put_document(doc, plain);
      rep.documents++;
      rep.chunks += static_cast<int64_t>(chunks.size());
    }
    for (const ModelVectors& mv : models) {
      // The destination's chunks come back in the same order (by ord) as the source's.
      const std::vector<ChunkInfo> missing = to.chunks_without_vectors(dest_id, mv.dest.id);
      std::vector<int64_t> ids;
      std::vector<std::vector<float>> vecs;
      for (const ChunkInfo& c : missing) {
        if (c.ord < 0 || c.ord >= static_cast<int64_t>(chunks.size())) continue;
        auto it = mv.row.find(chunks[static_cast<size_t>(c.ord)].first);
        if (it == mv.row.end()) continue;  // the source has none for this chunk either
        const float* v = mv.matrix.data() + it->second * static_cast<size_t>(mv.dim);
        ids.push_back(c.id);
        vecs.emplace_back(v, v + mv.dim);
      }
      if (!ids.empty()) to.put_vectors(mv.dest.id, ids, vecs);
      rep.vectors += static_cast<int64_t>(ids.size());
    }
    if (on_document) on_document(doc, done, docs.size());
  }
  if (rep.documents > 0) to.refresh_statistics();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace slm::rag
