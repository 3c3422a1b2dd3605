// --lora FILE[:SCALE] (repeatable), shared by the commands that run a model.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "models/lora.h"
#include "models/model.h"

namespace slm::cli {

struct LoraOptions {
  std::vector<std::string> specs;

  void add_to(CLI::App& app);
  // The adapters, loaded and checked against the model; null when none was given. Logs each
  // one to stderr. Throws slm::Error for a missing or mismatched adapter.
  std::shared_ptr<const LoraSet> load(const Model& model) const;
};

}  // namespace slm::cli
