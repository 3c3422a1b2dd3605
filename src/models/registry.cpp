#include "models/registry.h"

#include <utility>

#include "models/encoder.h"

namespace slm {

namespace {
const std::vector<std::pair<std::string, ModelFactory>>& table() {
  static const std::vector<std::pair<std::string, ModelFactory>> t = {
      {"llama", &make_llama},
      {"qwen2", &make_qwen2},
      {"qwen3", &make_qwen3},
      {"gemma2", &make_gemma2},
      {"gemma3", &make_gemma3},
      {"phi3", &make_phi3},
      {"bert", &make_bert},
  };
  return t;
}
}  // namespace

ModelFactory find_architecture(const std::string& arch) {
  for (const auto& [name, f] : table())
    if (name == arch) return f;
  return nullptr;
}

std::vector<std::string> Model::supported_architectures() {
  std::vector<std::string> out;
  for (const auto& [name, f] : table()) out.push_back(name);
  return out;
}

}  // namespace slm
