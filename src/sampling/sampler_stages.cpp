#include "sampling/sampler_stages.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "core/error.h"

namespace slm {

namespace {
using Stage = SamplerStage;
constexpr std::pair<const char*, Stage> kNames[] = {
    {"penalties", Stage::Penalties},     {"dry", Stage::Dry},          {"top_n_sigma", Stage::TopNSigma},
    {"top-n-sigma", Stage::TopNSigma},   {"top_k", Stage::TopK},       {"top-k", Stage::TopK},
    {"typ_p", Stage::Typical},           {"typical_p", Stage::Typical}, {"typical-p", Stage::Typical},
    {"typ-p", Stage::Typical},           {"typ", Stage::Typical},      {"typical", Stage::Typical},
    {"top_p", Stage::TopP},              {"top-p", Stage::TopP},       {"nucleus", Stage::TopP},
    {"min_p", Stage::MinP},              {"min-p", Stage::MinP},       {"xtc", Stage::Xtc},
    {"temperature", Stage::Temperature}, {"temp", Stage::Temperature}};
constexpr std::pair<char, Stage> kLetters[] = {{'e', Stage::Penalties}, {'d', Stage::Dry},  {'s', Stage::TopNSigma},
                                               {'k', Stage::TopK},      {'y', Stage::Typical}, {'p', Stage::TopP},
                                               {'m', Stage::MinP},      {'x', Stage::Xtc},  {'t', Stage::Temperature}};

void append(std::vector<Stage>& out, const std::string& word, std::optional<Stage> st, const std::string& what) {
  if (!st)
    fail("{}: '{}' is not a sampler slm has (penalties, dry, top_n_sigma, top_k, typ_p, top_p, min_p, xtc, "
         "temperature; letters edskypmxt)", what, word);
  if (!out.empty() && *st <= out.back())
    fail("{}: slm runs the samplers in llama.cpp's default order (penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;"
         "xtc;temperature), so a list may leave some out but not reorder or repeat them", what);
  out.push_back(*st);
}
}  // namespace

std::vector<SamplerStage> parse_sampler_stages(const std::vector<std::string>& names, const std::string& what) {
  std::vector<Stage> out;
  for (const std::string& word : names) {
    std::optional<Stage> st;
    for (const auto& [name, stage] : kNames)
      if (word == name) st = stage;
    append(out, word, st, what);
  }
  return out;
}

std::vector<SamplerStage> parse_sampler_letters(const std::string& letters, const std::string& what) {
  std::vector<Stage> out;
  for (const char c : letters) {
    std::optional<Stage> st;
    for (const auto& [l, stage] : kLetters)
      if (c == l) st = stage;
    append(out, std::string(1, c), st, what);
  }
  return out;
}

std::vector<std::string> split_sampler_names(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = std::min(list.find(';', start), list.size());
    if (end > start) out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

void keep_only_stages(SamplerParams& p, const std::vector<SamplerStage>& stages) {
  auto has = [&](Stage s) { return std::find(stages.begin(), stages.end(), s) != stages.end(); };
  if (!has(Stage::Penalties)) {
    p.repeat_penalty = 1.0f;
    p.presence_penalty = p.frequency_penalty = 0.0f;
  }
  if (!has(Stage::Dry)) p.dry_multiplier = 0.0f;
  if (!has(Stage::TopNSigma)) p.top_n_sigma = -1.0f;
  if (!has(Stage::TopK)) p.top_k = 0;
  if (!has(Stage::Typical)) p.typical_p = 1.0f;
  if (!has(Stage::TopP)) p.top_p = 1.0f;
  if (!has(Stage::MinP)) p.min_p = 0.0f;
  if (!has(Stage::Xtc)) p.xtc_probability = 0.0f;
  if (!has(Stage::Temperature)) p.temperature = 1.0f;
}

}  // namespace slm
