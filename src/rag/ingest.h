// Indexing files into a Store: walk folders, read each supported file, chunk it, embed the chunks
// (when an embedding model is given) and write the document in one transaction. Unchanged files
// (same content hash) are skipped, changed ones replaced; a run killed at any point leaves every
// document either fully indexed or absent, and the next run finishes the job.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rag/chunker.h"
#include "rag/store.h"

namespace slm {
class Embedder;
class Model;
}  // namespace slm

namespace slm::rag {

// What identifies an embedding model's vectors: its architecture, shapes, tensor names and
// types, and a hash of some of its weights. Two files with the same weights (a copy, a renamed
// file) match; another model of the same dimension does not.
std::string model_fingerprint(const Model& model);
// A readable name: general.name, else the file's name.
std::string model_display_name(const Model& model);

// Hash of a file's bytes (128-bit, hex): what "unchanged" means.
std::string content_hash(std::string_view bytes);

struct IngestOptions {
  ChunkOptions chunk;
  Embedder* embedder = nullptr;  // null: no vectors
  int embed_batch = 32;          // chunks per Embedder call
  // Called after each file (for a progress display).
  std::function<void(const struct IngestProgress&)> on_progress;
};

struct IngestProgress {
  int files_done = 0, files_total = 0;
  int64_t chunks = 0, bytes = 0;
  double seconds = 0;
  std::string current;  // relative path of the file just done
};

struct SkippedFile {
  std::string path;
  std::string reason;
};

struct IngestReport {
  int files = 0;  // supported files seen
  int added = 0, updated = 0, unchanged = 0, removed = 0;
  int64_t chunks = 0;       // written in this run
  int64_t bytes = 0;        // of the files read
  int64_t embedded = 0;     // chunks given vectors in this run
  double seconds = 0;
  std::vector<SkippedFile> skipped;  // unsupported format, unreadable, not text, damaged
};

// Indexes files and folders (recursively; names starting with '.' are left out). A folder's
// documents get paths relative to it; a file given alone is relative to its own folder. Each
// argument is remembered as a root for sync(). Throws slm::Error when a path does not exist or
// nothing under the paths is a file the index reads.
IngestReport index_paths(Store& store, const std::vector<std::string>& paths, const IngestOptions& opts);

// Walks the store's roots again (adds and updates what changed) and removes documents whose
// files are gone.
IngestReport sync_store(Store& store, const IngestOptions& opts);

}  // namespace slm::rag
