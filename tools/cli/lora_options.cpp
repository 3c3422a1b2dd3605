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
  auto set = load_lora_set(specs, model);
  if (set)
    for (size_t i = 0; i < set->adapters.size(); ++i) {
      const LoraAdapter& ad = *set->adapters[i];
      fmt::print(stderr, "slm: LoRA adapter {}: {} matrices, rank {}, alpha {:g}, scale {:g}\n", ad.path,
                 ad.tensors.size(), ad.tensors.empty() ? 0 : ad.tensors[0].rank, ad.alpha, set->scales[i]);
    }
  return set;
}

}  // namespace slm::cli
