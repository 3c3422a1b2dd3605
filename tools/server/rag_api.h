// The server's document routes: POST /v1/embeddings (the OpenAI shape, from --embed-model) and
// POST /v1/search (slm's own: ranked chunks of the --db index, as `slm search --json` prints
// them). Request parsing and response layout live here; server.cpp does the HTTP plumbing.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "openai.h"
#include "rag/search.h"

namespace slm::server {

struct EmbeddingsRequest {
  // Each input as text, or as token ids when the client sent ids.
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> token_ids;
  bool base64 = false;  // encoding_format: the official clients ask for base64 by default
};

// Checks `input` (a string, an array of strings, an array of token ids or of such arrays; at
// most 2048 inputs, none empty), `encoding_format` (float | base64) and `dimensions` (only the
// model's own: `dim`). Throws ApiError (400) naming the field.
EmbeddingsRequest parse_embeddings_request(const std::string& body, int64_t dim);

// {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}
json embeddings_response(const std::vector<std::vector<float>>& vectors, bool base64, const std::string& model,
                         int64_t prompt_tokens);

// Little-endian float32 bytes, base64 (what the OpenAI clients decode).
std::string base64_floats(const std::vector<float>& v);

struct SearchRequest {
  std::string query;
  int k = 10;
  std::string mode;  // empty: hybrid with an embedding model, else bm25
};
SearchRequest parse_search_request(const std::string& body);

}  // namespace slm::server
