// slm serve: an OpenAI-compatible HTTP server (chat completions, completions, models, health,
// metrics) and a web chat page, over the continuous-batching scheduler (runtime/scheduler.h).
#pragma once
#include <string>
#include <vector>

#include "core/dtype.h"
#include "runtime/kv_cache.h"

namespace slm::server {

struct ServerOptions {
  std::string model_path;
  std::string host = "127.0.0.1";
  int port = 8080;        // 0: any free port (printed when listening)
  int n_parallel = 4;
  int n_ctx = -1;         // per slot; -1: min(training context, 4096); 0: training context
  int n_threads = 1;
  std::string chat_template_file;  // a file, a built-in name or a template's text (ChatPrompt::for_model)
  std::string alias;               // the model's name in the API (empty: the file's name)
  std::string api_key;    // empty: no key required
  int max_queue = 64;
  KVTypes kv_types = DType::F16;
  std::string embed_model_path;  // POST /v1/embeddings (and vector search) when set
  std::string db_path;           // POST /v1/search over this index when set
  std::vector<std::string> override_kv;  // KEY=TYPE:VALUE metadata replacements (llama.cpp's --override-kv)
  std::vector<std::string> lora;  // LoRA adapters, FILE or FILE:SCALE (requests may rescale them)
  std::string draft_model_path;   // speculative decoding when set
  int n_draft = 7;
  float draft_p_min = 0.75f;
  bool lookup = false;            // prompt lookup decoding (speculation without a draft model)
  int lookup_ngram = 3;
  std::string slot_save_path;     // POST /slots/ID?action=save|restore files live here (empty: off)
  bool context_shift = false;     // llama-server's --context-shift (SchedulerOptions::context_shift)
  std::string chat_template_kwargs;  // JSON object of extra template variables (llama-server's)
  std::string reasoning_format = "auto";  // "none": <think> text stays in the content
  int reasoning_budget = -1;      // 0: thinking off (enable_thinking false); -1: the model's way
};

// Binds, prints "slm: listening on http://HOST:PORT" to stderr, loads the model (GET /health
// answers 503 meanwhile) and serves until SIGINT or SIGTERM. Returns the exit status. Throws
// slm::Error when it cannot bind or load.
int run(const ServerOptions& opts);

// The web chat page served at GET / (chat_page.html, compiled in).
extern const char* const kChatPage;

}  // namespace slm::server
