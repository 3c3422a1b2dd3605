#include "lora_options.h"

#include <fmt/format.h>

namespace slm::cli {

void LoraOptions::add_to(CLI::App& app) {
  app.add_option("--lora", specs,
                 "LoRA adapter (GGUF, as slm convert-lora or llama.cpp writes them), FILE or FILE:SCALE; "
                 "repeatable; applied unmerged on top of the model")
      ->take_all();
}

std::shared_ptr<const LoraSet> LoraOptions::load(const Model& model) const {
  if (specs.empty()) return nullptr;
  auto set = std::make_shared<LoraSet>();
  for (const std::string& spec : specs) {
    auto [path, scale] = parse_lora_arg(spec);
    auto ad = LoraAdapter::load(path, model);
    fmt::print(stderr, "slm: LoRA adapter {}: {} matrices, rank {}, alpha {:g}, scale {:g}\n", path,
               ad->tensors.size(), ad->tensors.empty() ? 0 : ad->tensors[0].rank, ad->alpha, scale);
    set->adapters.push_back(std::move(ad));
    set->scales.push_back(scale);
  }
  return set;
}

}  // namespace slm::cli
