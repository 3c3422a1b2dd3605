// slm serve: the command-line face of the HTTP server in tools/server.
#include <string>

#include "commands.h"
#include "kv_options.h"
#include "rope_options.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/whole_file.h"
#include "server.h"

namespace slm::cli {

Runner add_serve(CLI::App& app) {
  struct Opts {
    server::ServerOptions s;
    std::string api_key_file;
    KvCacheOptions kv;
    RopeOptions rope;
    int threads = 0;
    std::string chat_template_file;
    bool jinja = false, cont_batching = false, metrics = false, no_warmup = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->s.model_path, "GGUF model")->required();
  app.add_option("--host", o->s.host, "address to listen on (default 127.0.0.1: this machine only)");
  app.add_option("--port", o->s.port, "port (0: any free port, printed when listening)");
  app.add_option("--parallel", o->s.n_parallel, "requests generating at once (default 4)");
  app.add_option("-c,--ctx-size", o->s.n_ctx, "context per request (default min(training context, 4096); 0: training context)");
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  app.add_option("--chat-template", o->s.chat_template_file,
                 "chat template: a Jinja file, a built-in name (chatml, llama3, phi3, gemma) or the template's text "
                 "(default: the model's own)");
  app.add_option("--chat-template-file", o->chat_template_file, "Jinja chat template file (llama.cpp's spelling)");
  app.add_option("-a,--alias", o->s.alias, "the model's name in /v1/models and the replies (default: the file's name)");
  app.add_flag("--jinja", o->jinja, "accepted for llama.cpp's command lines (templates are always Jinja here)");
  app.add_flag("--cont-batching", o->cont_batching, "llama.cpp's -cb, accepted (batching is always continuous here)");
  app.add_flag("--metrics", o->metrics, "accepted for llama.cpp's command lines (GET /metrics is always on)");
  // A warm-up pass (the weights repacked before the server reports ready) was measured: on the
  // team's VM it delayed readiness by 1.1-1.4 s and the first request was no faster
  // (docs/performance.md), so there is none to skip.
  app.add_flag("--no-warmup", o->no_warmup, "accepted for llama.cpp's command lines (slm serve runs no warm-up pass)");
  auto* key = app.add_option("--api-key", o->s.api_key, "require 'Authorization: Bearer KEY' on /v1/*, /completion, /infill, /tokenize, /detokenize");
  app.add_option("--api-key-file", o->api_key_file, "read the API key from a file (first line)")->excludes(key);
  app.add_option("--max-queue", o->s.max_queue, "requests that may wait for a slot before a 503 (default 64)");
  o->kv.add_to(app);
  o->rope.add_to(app);
  app.add_option("--embed-model", o->s.embed_model_path, "embedding model (bert) for POST /v1/embeddings and vector search");
  app.add_option("--db", o->s.db_path, "index (slm index add) for POST /v1/search: an SQLite file or a postgresql:// URL");
  app.add_option("--override-kv", o->s.override_kv,
                 "replace a metadata value the file gets wrong: KEY=TYPE:VALUE, TYPE int, float, bool or str (repeatable)");
  app.add_option("--draft-model", o->s.draft_model_path,
                 "a small model with the same tokenizer that proposes tokens for this one to check (speculative decoding)");
  app.add_option("--draft-max", o->s.n_draft, "most tokens the draft proposes per request and step (default 7)")
      ->check(CLI::Range(1, 64));
  app.add_option("--draft-p-min", o->s.draft_p_min, "the draft stops proposing below this probability of its own pick")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--lookup", o->s.lookup,
               "prompt lookup decoding: propose what followed the last words' earlier occurrence in the request's "
               "prompt or text (pays where replies repeat their input: quotes, code edits)")
      ->excludes("--draft-model");
  app.add_option("--lookup-ngram", o->s.lookup_ngram, "longest n-gram --lookup matches (default 3)")->check(CLI::Range(2, 16));
  app.add_option("--slot-save-path", o->s.slot_save_path,
                 "folder for POST /slots/ID?action=save|restore {\"filename\": NAME}: a slot's cached prompt kept in a file "
                 "and loaded back (llama-server's)");
  app.add_flag("--context-shift,!--no-context-shift", o->s.context_shift,
               "a request whose text fills the context drops half of it after its n_keep tokens and goes on, the "
               "cached keys of what stays rotated (llama-server's; default: it ends with finish_reason length)");
  app.add_option("--chat-template-kwargs", o->s.chat_template_kwargs,
                 "extra chat template variables, a JSON object (e.g. '{\"enable_thinking\": false}' for Qwen3); a request's "
                 "chat_template_kwargs add to them");
  app.add_option("--reasoning-format", o->s.reasoning_format,
                 "where a thinking model's <think> text goes: auto or deepseek (message.reasoning_content, "
                 "delta.reasoning_content when streamed; the default) or none (left in the content)")
      ->check(CLI::IsMember({"auto", "deepseek", "none"}));
  app.add_option("--reasoning-budget", o->s.reasoning_budget,
                 "-1: let the model think (default); 0: ask the template not to (enable_thinking false)")
      ->check(CLI::IsMember({-1, 0}));
  app.add_option("--lora", o->s.lora,
                 "LoRA adapter FILE or FILE:SCALE (repeatable); a request may set {\"lora\": [{\"id\": 0, \"scale\": S}]}")
      ->take_all();
  return [o]() {
    if (!o->api_key_file.empty()) {
      // The first line is the key (a file written with `echo` ends in a newline).
      const std::string text = read_whole_file(o->api_key_file, "API key file");
      o->s.api_key = text.substr(0, text.find('\n'));
      while (!o->s.api_key.empty() && (o->s.api_key.back() == '\r' || o->s.api_key.back() == ' '))
        o->s.api_key.pop_back();
      if (o->s.api_key.empty()) fail("{} holds an empty API key", o->api_key_file);
    }
    if (!o->chat_template_file.empty()) {
      if (!o->s.chat_template_file.empty()) fail("--chat-template and --chat-template-file: give one");
      o->s.chat_template_file = o->chat_template_file;
    }
    o->s.n_threads = o->threads > 0 ? o->threads : default_threads();
    o->s.kv_types = o->kv.types();
    o->s.override_kv = o->rope.overrides(o->s.model_path, o->s.override_kv);
    return server::run(o->s);
  };
}

}  // namespace slm::cli
