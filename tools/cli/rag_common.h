// What the document commands (index, search, ask, eval-retrieval) share: loading an embedding
// model for the index, and printing where a chunk comes from.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "models/model.h"
#include "rag/search.h"
#include "rag/store.h"
#include "runtime/embedder.h"

namespace slm::cli {

struct LoadedEmbedder {
  std::unique_ptr<Model> model;
  std::unique_ptr<Embedder> embedder;
};

// Loads MODEL as an embedding model with `threads` workers (0: all cores); an empty path gives
// an empty LoadedEmbedder.
LoadedEmbedder load_embedder(const std::string& path, int threads);

// "library/csv.rst.txt, lines 40-72" / "report.pdf, page 3"
std::string chunk_location(const rag::ChunkInfo& c);

// --mode of search, eval-retrieval and ask, checked against the choices.
CLI::Option* add_mode_option(CLI::App& app, std::string& mode);
// The search mode those commands run: --mode, else hybrid with --embed-model and bm25 without.
// Throws slm::Error when vector or hybrid is asked for without --embed-model.
rag::SearchMode search_mode(const std::string& mode, const std::string& embed_model);

}  // namespace slm::cli
