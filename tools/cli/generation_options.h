// Options shared by the commands that generate text (run, chat).
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "lora_options.h"
#include "models/model.h"
#include "runtime/session.h"
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

  void add_to(CLI::App& app, bool model_required = true);
  // Loads the --lora adapters too (throws slm::Error for a bad one).
  SessionOptions session_options(const Model& m) const;
};

}  // namespace slm::cli
