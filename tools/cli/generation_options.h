// Options shared by the commands that generate text (run, chat).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "lora_options.h"
#include "models/model.h"
#include "runtime/session.h"
#include "sampling/grammar.h"
#include "sampling/sampler.h"

namespace slm::cli {

struct GenerationOptions {
  std::string model;
  int n_predict = -1;
  SamplerParams sampling;
  int threads = 0;
  int n_ctx = -1;  // -1: min(training context, 4096); 0: training context
  std::string kv_type = "f16";
  LoraOptions lora;
  // Constrained output (at most one): GBNF text or file, a JSON schema (text or file), or
  // --json for any JSON object.
  std::string grammar, grammar_file, json_schema, json_schema_file;
  bool json = false;

  void add_to(CLI::App& app, bool model_required = true);
  // Loads the --lora adapters too (throws slm::Error for a bad one).
  SessionOptions session_options(const Model& m) const;
  // The grammar the options ask for, parsed (null: none). Throws slm::Error for an unreadable
  // file, bad JSON, an unsupported schema or a bad grammar, naming the option.
  std::shared_ptr<const Grammar> load_grammar() const;
};

}  // namespace slm::cli
