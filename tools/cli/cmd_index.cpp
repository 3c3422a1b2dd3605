// slm index add|sync|list|stats|remove: the document index, one SQLite file (src/rag/).
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "rag/ingest.h"
#include "rag/store.h"
#include "rag_common.h"

namespace slm::cli {

LoadedEmbedder load_embedder(const std::string& path, int threads) {
  LoadedEmbedder out;
  if (path.empty()) return out;
  out.model = Model::load(path);
  EmbedderOptions eo;
  eo.n_threads = threads > 0 ? threads : default_threads();
  out.embedder = std::make_unique<Embedder>(*out.model, eo);
  return out;
}

CLI::Option* add_mode_option(CLI::App& app, std::string& mode) {
  return app.add_option("--mode", mode, "bm25, vector or hybrid (default: hybrid with --embed-model, else bm25)")
      ->check(CLI::IsMember({"bm25", "vector", "hybrid"}));
}

rag::SearchMode search_mode(const std::string& mode, const std::string& embed_model) {
  const rag::SearchMode m = !mode.empty()          ? rag::parse_search_mode(mode)
                            : embed_model.empty() ? rag::SearchMode::Bm25
                                                  : rag::SearchMode::Hybrid;
  if (m != rag::SearchMode::Bm25 && embed_model.empty())
    fail("--mode {} needs --embed-model (the model the index's vectors come from)", rag::search_mode_name(m));
  return m;
}

std::string chunk_location(const rag::ChunkInfo& c) {
  std::string s = c.rel_path;
  if (c.page_start > 0)
    s += c.page_end > c.page_start ? fmt::format(", pages {}-{}", c.page_start, c.page_end) : fmt::format(", page {}", c.page_start);
  else if (c.line_start > 0)
    s += c.line_end > c.line_start ? fmt::format(", lines {}-{}", c.line_start, c.line_end) : fmt::format(", line {}", c.line_start);
  return s;
}

namespace {

struct IndexOpts {
  std::string db, embed_model, to;
  std::vector<std::string> paths;
  int threads = 0, chunk_tokens = 256, overlap = 32;
  bool quiet = false, json = false, check = false;
};

// One line, redrawn in place, on a terminal only (a log file gets the summary alone).
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : on_(enabled && ::isatty(STDERR_FILENO)) {}
  ~ProgressLine() { finish(); }
  void update(const rag::IngestProgress& p) {
    if (!on_) return;
    const double mb_s = p.seconds > 0 ? p.bytes / 1e6 / p.seconds : 0;
    const int width = 24;
    const int filled = p.files_total ? width * p.files_done / p.files_total : width;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::string name = p.current;
    if (name.size() > 40) name = "…" + name.substr(name.size() - 39);
    fmt::print(stderr, "\r\033[K[{}] {}/{} files  {} chunks  {:.1f} MB/s  {}", bar, p.files_done, p.files_total, p.chunks,
               mb_s, name);
    std::fflush(stderr);
    drawn_ = true;
  }
  void finish() {
    if (drawn_) fmt::print(stderr, "\r\033[K");
    drawn_ = false;
  }

 private:
  bool on_;
  bool drawn_ = false;
};

int report_run(const rag::IngestReport& r, const rag::Store& store, bool quiet) {
  for (const auto& s : r.skipped) fmt::print(stderr, "skipped {}: {}\n", s.path, s.reason);
  if (!quiet) {
    const double mb = r.bytes / 1e6;
    fmt::print("{} files: {} added, {} updated, {} unchanged, {} removed, {} skipped; {} chunks written",
               r.files, r.added, r.updated, r.unchanged, r.removed, r.skipped.size(), r.chunks);
    if (r.embedded) fmt::print(", {} embedded ({:.1f} chunks/s)", r.embedded, r.seconds > 0 ? r.embedded / r.seconds : 0);
    fmt::print("; {:.1f} MB in {:.2f} s ({:.2f} MB/s)\n", mb, r.seconds, r.seconds > 0 ? mb / r.seconds : 0);
    const rag::StoreStats st = store.stats();
    fmt::print("index {}: {} documents, {} chunks\n", store.path(), st.documents, st.chunks);
  }
  // Nothing could be indexed at all (every file failed): the command did not do its job.
  if (r.files > 0 && r.added + r.updated + r.unchanged == 0 && r.removed == 0) {
    fmt::print(stderr, "slm: error: none of the {} files could be indexed (reasons above)\n", r.files);
    return 1;
  }
  return 0;
}

rag::IngestOptions ingest_options(const IndexOpts& o, LoadedEmbedder& emb, ProgressLine& progress) {
  rag::IngestOptions io;
  if (o.chunk_tokens < 16) fail("--chunk-tokens must be at least 16 (got {})", o.chunk_tokens);
  if (o.overlap < 0 || o.overlap >= o.chunk_tokens) fail("--overlap must be between 0 and --chunk-tokens - 1 (got {})", o.overlap);
  io.chunk.target_tokens = o.chunk_tokens;
  io.chunk.overlap_tokens = o.overlap;
  io.chunk.min_tokens = o.chunk_tokens / 4;
  if (emb.embedder) {
    io.embedder = emb.embedder.get();
    Embedder* e = emb.embedder.get();
    // Sized in the embedding model's own tokens, so that a chunk fits its context.
    io.chunk.count_tokens = [e](std::string_view s) { return static_cast<int>(e->tokenize(std::string(s)).size()) - 2; };
    if (o.chunk_tokens + 64 > e->max_tokens())
      fail("--chunk-tokens {} does not fit the embedding model's context of {} tokens (with room for headings)",
           o.chunk_tokens, e->max_tokens());
  }
  io.on_progress = [&progress](const rag::IngestProgress& p) { progress.update(p); };
  return io;
}

void add_common(CLI::App* sub, IndexOpts& o) {
  sub->add_option("--db", o.db, "the index: an SQLite file (made when absent), or a postgresql:// URL")->required();
}

// What `add` and `sync` both take: how to chunk and embed what they read.
void add_ingest_options(CLI::App* sub, IndexOpts& o) {
  sub->add_option("--embed-model", o.embed_model, "embedding model (GGUF) to store vectors for vector/hybrid search");
  sub->add_option("-t,--threads", o.threads, "threads for embedding (default: all cores)");
  sub->add_option("--chunk-tokens", o.chunk_tokens, "target chunk size in tokens (default 256)");
  sub->add_option("--overlap", o.overlap, "tokens a cut section repeats from the chunk before (default 32)");
  sub->add_flag("-q,--quiet", o.quiet, "no summary");
}

}  // namespace

Runner add_index(CLI::App& app) {
  auto o = std::make_shared<IndexOpts>();
  app.require_subcommand(1);
  auto* add = app.add_subcommand("add", "index files and folders (.txt .md .rst .html .pdf)");
  add_common(add, *o);
  add->add_option("paths", o->paths, "files or folders")->required();
  add_ingest_options(add, *o);
  auto* sync = app.add_subcommand("sync", "index what changed under the indexed folders, drop documents whose files are gone");
  add_common(sync, *o);
  add_ingest_options(sync, *o);
  auto* list = app.add_subcommand("list", "list the indexed documents");
  add_common(list, *o);
  list->add_flag("--json", o->json, "JSON output");
  auto* stats = app.add_subcommand("stats", "counts, size, embedding models and folders of an index");
  add_common(stats, *o);
  stats->add_flag("--json", o->json, "JSON output");
  stats->add_flag("--check", o->check, "also check the file's integrity (exit 1 when damaged)");
  auto* copy = app.add_subcommand("copy", "copy an index into another (an SQLite file into PostgreSQL, or back) without reading or embedding again");
  add_common(copy, *o);
  copy->add_option("--to", o->to, "the index to copy into: an SQLite file (made when absent) or a postgresql:// URL")->required();
  copy->add_flag("-q,--quiet", o->quiet, "no progress or summary");
  auto* remove = app.add_subcommand("remove", "remove documents: a path as indexed, or every document under a folder");
  add_common(remove, *o);
  remove->add_option("paths", o->paths, "files or folders (absolute, or relative to the current folder)")->required();

  return [o, add, sync, list, stats, copy, remove]() -> int {
    if (copy->parsed()) {
      const std::unique_ptr<rag::Store> from = rag::open_store(o->db, false);
      const std::unique_ptr<rag::Store> to = rag::open_store(o->to, true);
      const bool tty = !o->quiet && ::isatty(2);
      const rag::CopyReport r = rag::copy_index(*from, *to, [&](const rag::DocumentInfo& d, size_t done, size_t total) {
        if (tty) fmt::print(stderr, "\r{}/{} {:<60.60}", done, total, d.rel_path);
      });
      if (tty) fmt::print(stderr, "\r{:<80}\r", "");
      if (!o->quiet)
        fmt::print("copied {} documents ({} chunks, {} vectors) from {} to {} in {:.1f} s; {} unchanged\n", r.documents,
                   r.chunks, r.vectors, from->path(), to->path(), r.seconds, r.unchanged);
      return 0;
    }
    if (add->parsed() || sync->parsed()) {
      const std::unique_ptr<rag::Store> opened = rag::open_store(o->db, add->parsed());
      rag::Store& store = *opened;
      LoadedEmbedder emb = load_embedder(o->embed_model, o->threads);
      ProgressLine progress(!o->quiet);
      const rag::IngestOptions io = ingest_options(*o, emb, progress);
      const rag::IngestReport r = add->parsed() ? rag::index_paths(store, o->paths, io) : rag::sync_store(store, io);
      progress.finish();
      return report_run(r, store, o->quiet);
    }
    const std::unique_ptr<rag::Store> opened = rag::open_store(o->db, false);
    rag::Store& store = *opened;
    if (list->parsed()) {
      const auto docs = store.documents();
      if (o->json) {
        nlohmann::ordered_json arr = nlohmann::ordered_json::array();
        for (const auto& d : docs)
          arr.push_back({{"path", d.rel_path}, {"file", d.path}, {"title", d.title}, {"format", d.format},
                         {"chunks", d.n_chunks}, {"bytes", d.size}, {"hash", d.hash}});
        fmt::print("{}\n", arr.dump(2));
      } else {
        for (const auto& d : docs) fmt::print("{}\t{} chunks\t{}\t{}\n", d.rel_path, d.n_chunks, d.title, d.path);
      }
      return 0;
    }
    if (stats->parsed()) {
      const rag::StoreStats st = store.stats();
      const std::string check = o->check ? store.check() : "";
      if (o->json) {
        nlohmann::ordered_json j{{"documents", st.documents}, {"chunks", st.chunks}, {"bytes", st.bytes},
                                 {"file_bytes", st.file_bytes}, {"kind", store.kind()}, {"schema_version", rag::kSchemaVersion},
                                 {"roots", st.roots}, {"models", nlohmann::ordered_json::array()}};
        for (const auto& m : st.models) j["models"].push_back({{"name", m.name}, {"dim", m.dim}, {"vectors", m.n_vectors}});
        if (!check.empty()) j["integrity"] = check;
        fmt::print("{}\n", j.dump(2));
      } else {
        fmt::print("index:      {} ({}, {:.1f} MB, schema {})\n", store.path(), store.kind(), st.file_bytes / 1e6, rag::kSchemaVersion);
        fmt::print("documents:  {} ({:.1f} MB of text)\n", st.documents, st.bytes / 1e6);
        fmt::print("chunks:     {}\n", st.chunks);
        for (const auto& m : st.models) fmt::print("embeddings: {} (dimension {}): {} vectors\n", m.name, m.dim, m.n_vectors);
        for (const auto& r : st.roots) fmt::print("folder:     {}\n", r);
        if (!check.empty()) fmt::print("integrity:  {}\n", check);
      }
      return check.empty() || check == "ok" ? 0 : 1;
    }
    // remove
    int removed = 0;
    for (const std::string& arg : o->paths) {
      std::error_code ec;
      const std::string abs = std::filesystem::weakly_canonical(std::filesystem::absolute(arg, ec), ec).string();
      int here = 0;
      for (const auto& d : store.documents()) {
        if (d.path == abs || d.path.rfind(abs + "/", 0) == 0 || d.rel_path == arg) {
          store.remove_document(d.id);
          ++here;
        }
      }
      if (here == 0) fail("{}: no indexed document has this path (see slm index list --db {})", arg, o->db);
      removed += here;
    }
    fmt::print("removed {} documents\n", removed);
    return 0;
  };
}

}  // namespace slm::cli
