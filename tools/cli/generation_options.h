// Options shared by the commands that generate text (run, chat).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "kv_options.h"
#include "lora_options.h"
#include "rope_options.h"
#include "models/model.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "runtime/speculative.h"
#include "tokenizer/tokenizer.h"
#include "sampling/grammar.h"
#include "sampling/sampler.h"

namespace slm::cli {

struct GenerationOptions {
  std::string model;
  int n_predict = -1;
  SamplerParams sampling;
  int threads = 0;
  int n_ctx = -1;  // -1: min(training context, 4096); 0: training context
  KvCacheOptions kv;
  LoraOptions lora;
  // Constrained output (at most one): GBNF text or file, a JSON schema (text or file), or
  // --json for any JSON object.
  std::string grammar, grammar_file, json_schema, json_schema_file;
  bool json = false;
  // Speculative decoding: a draft model with the same tokenizer (empty: none).
  std::string draft_model;
  SpeculativeParams speculative;
  // Prompt lookup decoding (speculation without a draft model): --lookup.
  bool lookup = false;
  LookupParams lookup_params;
  // Metadata the file gets wrong or lacks, as llama.cpp's --override-kv KEY=TYPE:VALUE.
  std::vector<std::string> override_kv;
  RopeOptions rope;  // --rope-scaling, --rope-scale, --yarn-orig-ctx, ...: more overrides
  std::vector<std::string> logit_bias;  // as given; parsed into sampling.logit_bias
  std::vector<std::string> dry_breakers;  // --dry-sequence-breaker, as given (escapes read)
  // llama.cpp's --samplers "top_k;top_p;..." and --sampling-seq "kpt": which stages run. slm's
  // order is fixed (llama.cpp's default): a list may leave stages out, not reorder them.
  std::string samplers, sampling_seq;
  // llama.cpp's spellings for how a run goes rather than what it samples: -b/--batch-size and
  // -ub/--ubatch-size (prompt tokens per forward pass: the smaller of the two), -tb/
  // --threads-batch (slm runs prompts and generation on -t threads: another count is warned
  // about), --ignore-eos (end-of-generation tokens banned, so -n decides the length). 0: unset.
  int n_batch = 0, n_ubatch = 0, threads_batch = 0;
  bool ignore_eos = false;
  // Accepted for llama.cpp's command lines, each what slm does anyway: --no-warmup (no warm-up
  // pass is run), --no-display-prompt (the prompt is not echoed), -no-cnv/--no-conversation
  // (run generates once; slm chat is the conversation).
  bool no_warmup = false, no_display_prompt = false, no_conversation = false;
  // llama.cpp's --context-shift (off by default, as there) and --keep N: when the text fills
  // the context, keep the prompt's first N tokens (-1: the whole prompt; the BOS token besides)
  // and drop half of the rest (runtime/generate.h, ContextShift).
  bool context_shift = false;
  int n_keep = 0;
  // --context-shift-reeval: what stays is evaluated again instead of its cached keys being
  // rotated (ContextShift::reevaluate); implies --context-shift.
  bool context_shift_reeval = false;
  bool shifts_context() const { return context_shift || context_shift_reeval; }

  void add_to(CLI::App& app, bool model_required = true);
  // The sampler's settings, with --ignore-eos's bans on the tokenizer's end-of-generation tokens.
  SamplerParams sampler_params(const Tokenizer& tok) const;
  // The model with the --override-kv values (and the RoPE options') applied.
  std::unique_ptr<Model> load_model() const;
  // Loads the --lora adapters too (throws slm::Error for a bad one). With a draft model the
  // row kernels are off (every pass of the target is several tokens).
  SessionOptions session_options(const Model& m) const;
  // The grammar the options ask for, parsed (null: none). Throws slm::Error for an unreadable
  // file, bad JSON, an unsupported schema or a bad grammar, naming the option.
  std::shared_ptr<const Grammar> load_grammar() const;
};

// llama.cpp's escapes in a prompt given on the command line (-p, as its -e, on by default):
// \n \r \t \' \" \\ \xHH; any other backslash stays as written.
std::string process_escapes(const std::string& s);

// "15043+1.5" / "15043-inf" -> (15043, 1.5) / (15043, -inf). Throws slm::Error.
std::pair<int32_t, float> parse_logit_bias(const std::string& v);

// Plain or speculative generation, as the options say; the draft model (if any) is loaded
// once and keeps its own session across calls (slm chat's turns).
class Generator {
 public:
  // Throws slm::Error for a draft model that cannot be loaded or has another vocabulary.
  Generator(const GenerationOptions& o, const Tokenizer& tok, Session& session);
  ~Generator();
  GenerateResult operator()(Sampler& sampler, std::span<const int32_t> prompt,
                            const std::function<bool(const std::string&)>& on_text);
  bool speculative() const { return draft_session_ != nullptr || o_.lookup; }
  const SpeculativeStats& stats() const { return stats_; }

 private:
  const GenerationOptions& o_;
  const Tokenizer& tok_;
  Session& session_;
  std::unique_ptr<Model> draft_model_;
  std::unique_ptr<Tokenizer> draft_tok_;
  std::unique_ptr<Session> draft_session_;
  SpeculativeStats stats_;
};

}  // namespace slm::cli
