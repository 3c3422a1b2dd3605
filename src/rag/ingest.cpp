// See ingest.h.
#include "rag/ingest.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "core/whole_file.h"
#include "models/model.h"
#include "rag/document.h"
#include "runtime/embedder.h"

namespace slm::rag {

namespace fs = std::filesystem;

std::string content_hash(std::string_view bytes) {
  // Two independent 64-bit lanes (FNV-1a and a multiply-xorshift), 128 bits together: enough to
  // tell an edited file from an unchanged one; not a security boundary.
  uint64_t a = 0xcbf29ce484222325ull, b = 0x9e3779b97f4a7c15ull ^ bytes.size();
  for (unsigned char c : bytes) {
    a = (a ^ c) * 0x100000001b3ull;
    b = (b + c) * 0xff51afd7ed558ccdull;
    b ^= b >> 29;
  }
  return fmt::format("{:016x}{:016x}", a, b);
}

std::string model_fingerprint(const Model& model) {
  const GGUFFile& g = model.gguf();
  std::string shape = g.opt_string("general.architecture").value_or("?");
  for (const TensorInfo& t : g.tensors()) {
    shape += fmt::format("|{}:{}", t.name, static_cast<uint32_t>(t.type));
    for (int64_t n : t.ne) shape += fmt::format(",{}", n);
  }
  // Weights: the first 64 KiB of every tensor (cheap, and no two trained models share them).
  std::string sample;
  for (const TensorInfo& t : g.tensors())
    if (t.data) sample.append(reinterpret_cast<const char*>(t.data), std::min<uint64_t>(t.nbytes, 65536));
  return content_hash(shape).substr(0, 16) + content_hash(sample).substr(0, 16);
}

std::string model_display_name(const Model& model) {
  if (auto n = model.gguf().opt_string("general.name"); n && !n->empty()) return *n;
  return fs::path(model.gguf().path()).filename().string();
}

namespace {

struct FileToIndex {
  std::string path, rel_path, root;
};

bool hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return n.size() > 1 && n[0] == '.' && n != "..";
}

// Files under the arguments, sorted within each folder so that runs are repeatable.
std::vector<FileToIndex> collect(const std::vector<std::string>& args, IngestReport& report) {
  std::vector<FileToIndex> files;
  for (const std::string& arg : args) {
    std::error_code ec;
    const fs::path p = fs::weakly_canonical(fs::absolute(arg, ec), ec);
    const fs::file_status st = fs::status(p, ec);
    if (ec || !fs::exists(st)) fail("{}: no such file or folder", arg);
    if (fs::is_regular_file(st)) {
      files.push_back({p.string(), p.filename().string(), p.parent_path().string()});
      continue;
    }
    if (!fs::is_directory(st)) fail("{}: not a file or folder", arg);
    std::vector<FileToIndex> here;
    fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) fail("{}: cannot read the folder: {}", arg, ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) {
        report.skipped.push_back({it->path().string(), "cannot read: " + ec.message()});
        ec.clear();
        continue;
      }
      if (hidden(it->path())) {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_regular_file(ec)) {
        // Not silently: a link to a missing file, a named pipe (never opened: it could block).
        if (!it->is_directory(ec))
          report.skipped.push_back({it->path().string(), it->is_symlink(ec) ? "a symbolic link to a missing file"
                                                                             : "not a regular file"});
        continue;
      }
      here.push_back({it->path().string(), fs::relative(it->path(), p, ec).generic_string(), p.string()});
    }
    std::sort(here.begin(), here.end(), [](const auto& x, const auto& y) { return x.rel_path < y.rel_path; });
    files.insert(files.end(), here.begin(), here.end());
  }
  return files;
}

int64_t mtime_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_mtime) : 0;
}

// What a chunk's vector is computed from: its heading path (what the section is about) and its
// text, cut to the model's context.
std::vector<int32_t> embed_input(const Embedder& emb, const std::string& heading, const std::string& text) {
  std::vector<int32_t> ids = emb.tokenize(heading.empty() ? text : heading + "\n\n" + text);
  const size_t max = static_cast<size_t>(emb.max_tokens());
  if (ids.size() > max) {
    const int32_t last = ids.back();  // [SEP]
    ids.resize(max);
    ids.back() = last;
  }
  return ids;
}

std::vector<std::vector<float>> embed_all(Embedder& emb, const std::vector<std::vector<int32_t>>& seqs, int batch) {
  std::vector<std::vector<float>> out;
  out.reserve(seqs.size());
  for (size_t i = 0; i < seqs.size(); i += static_cast<size_t>(batch)) {
    const size_t end = std::min(seqs.size(), i + static_cast<size_t>(batch));
    std::vector<std::vector<int32_t>> part(seqs.begin() + static_cast<long>(i), seqs.begin() + static_cast<long>(end));
    for (auto& v : emb.embed(part, true)) out.push_back(std::move(v));
  }
  return out;
}

class Indexer {
 public:
  Indexer(Store& store, const IngestOptions& opts) : store_(store), opts_(opts) {
    if (opts.embedder) {
      const Model& m = opts.embedder->model();
      model_ = store.register_model(model_display_name(m), model_fingerprint(m), opts.embedder->dim());
    }
  }

  void run(const std::vector<FileToIndex>& files, IngestReport& report) {
    const auto t0 = std::chrono::steady_clock::now();
    IngestProgress progress;
    progress.files_total = static_cast<int>(files.size());
    for (const FileToIndex& f : files) {
      one(f, report);
      progress.files_done++;
      progress.chunks = report.chunks;
      progress.bytes = report.bytes;
      progress.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress.current = f.rel_path;
      if (opts_.on_progress) opts_.on_progress(progress);
    }
    if (report.added + report.updated + report.removed > 0) store_.refresh_statistics();
    report.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  void one(const FileToIndex& f, IngestReport& report) {
    const Format format = format_of(f.path);
    if (format == Format::Unsupported) {
      report.skipped.push_back({f.path, "not a format the index reads (.txt .md .rst .html .pdf)"});
      return;
    }
    report.files++;
    std::string bytes, why;
    if (!try_read_whole_file(f.path, bytes, why)) {
      report.skipped.push_back({f.path, why});
      return;
    }
    report.bytes += static_cast<int64_t>(bytes.size());
    const std::string hash = content_hash(bytes);
    const int64_t mtime = mtime_of(f.path);
    const auto old = store_.find_document(f.path);
    if (old && old->hash == hash) {
      report.unchanged++;
      if (old->mtime != mtime) store_.set_mtime(old->id, mtime);
      if (opts_.embedder) fill_missing_vectors(old->id, report);
      return;
    }
    ParsedDocument doc;
    try {
      doc = parse_document(f.path, bytes);
    } catch (const Error& e) {
      report.skipped.push_back({f.path, strip_path(e.what(), f.path)});
      return;
    }
    std::vector<Chunk> chunks = chunk_document(doc, opts_.chunk);
    if (chunks.empty()) {
      report.skipped.push_back({f.path, "no text in it"});
      return;
    }
    DocumentInfo info;
    info.path = f.path;
    info.rel_path = f.rel_path;
    info.root = f.root;
    info.hash = hash;
    info.size = static_cast<int64_t>(bytes.size());
    info.mtime = mtime;
    info.title = doc.title;
    info.format = format_name(format);
    if (opts_.embedder) {
      std::vector<std::vector<int32_t>> seqs;
      for (const Chunk& c : chunks) seqs.push_back(embed_input(*opts_.embedder, c.heading_path, c.text));
      const auto vecs = embed_all(*opts_.embedder, seqs, opts_.embed_batch);
      store_.put_document(info, chunks, &model_, &vecs);
      report.embedded += static_cast<int64_t>(chunks.size());
    } else {
      store_.put_document(info, chunks);
    }
    report.chunks += static_cast<int64_t>(chunks.size());
    (old ? report.updated : report.added)++;
  }

  void fill_missing_vectors(int64_t doc_id, IngestReport& report) {
    const std::vector<ChunkInfo> missing = store_.chunks_without_vectors(doc_id, model_.id);
    if (missing.empty()) return;
    std::vector<std::vector<int32_t>> seqs;
    std::vector<int64_t> ids;
    for (const ChunkInfo& c : missing) {
      seqs.push_back(embed_input(*opts_.embedder, c.heading_path, c.text));
      ids.push_back(c.id);
    }
    store_.put_vectors(model_.id, ids, embed_all(*opts_.embedder, seqs, opts_.embed_batch));
    report.embedded += static_cast<int64_t>(ids.size());
  }

  // The reader's message starts with the path, which the report already shows.
  static std::string strip_path(const std::string& msg, const std::string& path) {
    if (msg.rfind(path + ": ", 0) == 0) return msg.substr(path.size() + 2);
    return msg;
  }

  Store& store_;
  const IngestOptions& opts_;
  EmbedModelInfo model_;
};

}  // namespace

IngestReport index_paths(Store& store, const std::vector<std::string>& paths, const IngestOptions& opts) {
  IngestReport report;
  if (paths.empty()) fail("nothing to index: give files or folders");
  std::vector<FileToIndex> files = collect(paths, report);
  const bool any_supported =
      std::any_of(files.begin(), files.end(), [](const FileToIndex& f) { return format_of(f.path) != Format::Unsupported; });
  if (!any_supported) {
    std::string list;
    for (const auto& p : paths) list += (list.empty() ? "" : ", ") + p;
    // Name what was skipped: the command prints no report when it stops here.
    std::vector<std::string> names;
    for (const auto& f : files) names.push_back(f.path);
    for (const auto& s : report.skipped) names.push_back(s.path + " (" + s.reason + ")");
    std::string skipped;
    for (size_t i = 0; i < names.size() && i < 10; ++i) skipped += (i ? ", " : "") + names[i];
    if (names.size() > 10) skipped += fmt::format(" and {} more", names.size() - 10);
    fail("{}: no files to index here (the index reads .txt .md .rst .html .pdf{})", list,
         names.empty() ? "; the folder is empty" : fmt::format("; skipped {}: {}", names.size(), skipped));
  }
  for (const std::string& arg : paths) {
    std::error_code ec;
    store.add_root(fs::weakly_canonical(fs::absolute(arg, ec), ec).string());
  }
  Indexer(store, opts).run(files, report);
  return report;
}

IngestReport sync_store(Store& store, const IngestOptions& opts) {
  IngestReport report;
  std::vector<std::string> roots;
  for (const std::string& r : store.roots()) {
    std::error_code ec;
    if (fs::exists(r, ec)) roots.push_back(r);
  }
  std::vector<FileToIndex> files;
  if (!roots.empty()) files = collect(roots, report);
  // Documents whose files are gone (or that no root holds any more) go first.
  for (const DocumentInfo& d : store.documents()) {
    std::error_code ec;
    if (!fs::is_regular_file(d.path, ec)) {
      store.remove_document(d.id);
      report.removed++;
    }
  }
  Indexer(store, opts).run(files, report);
  return report;
}

}  // namespace slm::rag
