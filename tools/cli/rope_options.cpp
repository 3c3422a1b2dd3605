#include "rope_options.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/gguf.h"

namespace slm::cli {

void RopeOptions::add_to(CLI::App& app) {
  app.add_option("--rope-scaling", scaling, "RoPE frequency scaling: none, linear or yarn (default: the model's)")
      ->check(CLI::IsMember({"none", "linear", "yarn"}));
  app.add_option("--rope-scale", scale, "RoPE context scaling factor: the context grows by this much (1 / --rope-freq-scale)")
      ->check(CLI::PositiveNumber);
  app.add_option("--rope-freq-base", freq_base, "RoPE base frequency (default: the model's)")->check(CLI::PositiveNumber);
  app.add_option("--rope-freq-scale", freq_scale, "RoPE frequency scaling factor (1 / --rope-scale)")
      ->check(CLI::PositiveNumber);
  app.add_option("--yarn-orig-ctx", yarn_orig_ctx, "YaRN: the context the model was trained with (default: the model's)")
      ->check(CLI::PositiveNumber);
  app.add_option("--yarn-ext-factor", yarn_ext_factor, "YaRN extrapolation mix factor (default 1; 0: plain interpolation)");
  app.add_option("--yarn-attn-factor", yarn_attn_factor, "YaRN: scale of the attention magnitude (default 1)");
  app.add_option("--yarn-beta-fast", yarn_beta_fast, "YaRN low correction dimension (default 32)");
  app.add_option("--yarn-beta-slow", yarn_beta_slow, "YaRN high correction dimension (default 1)");
}

bool RopeOptions::any() const {
  return !scaling.empty() || scale || freq_base || freq_scale || yarn_orig_ctx || yarn_ext_factor ||
         yarn_attn_factor || yarn_beta_fast || yarn_beta_slow;
}

std::vector<std::string> RopeOptions::overrides(const std::string& model_path,
                                                const std::vector<std::string>& then) const {
  if (!any()) return then;
  std::vector<std::string> out;
  if (scale && freq_scale) fail("--rope-scale and --rope-freq-scale say the same thing: give one");
  const std::string arch = GGUFFile::open(model_path)->get_string("general.architecture");
  auto f = [&](const char* key, float v) { out.push_back(fmt::format("{}.{}=float:{}", arch, key, v)); };
  if (!scaling.empty()) out.push_back(fmt::format("{}.rope.scaling.type=str:{}", arch, scaling));
  if (scale) f("rope.scaling.factor", *scale);
  if (freq_scale) f("rope.scaling.factor", 1.0f / *freq_scale);
  if ((scale || freq_scale) && scaling.empty())  // llama.cpp: a scale alone is linear scaling
    out.push_back(fmt::format("{}.rope.scaling.type=str:linear", arch));
  if (freq_base) f("rope.freq_base", *freq_base);
  if (yarn_orig_ctx) out.push_back(fmt::format("{}.rope.scaling.original_context_length=int:{}", arch, *yarn_orig_ctx));
  if (yarn_ext_factor) f("rope.scaling.yarn_ext_factor", *yarn_ext_factor);
  if (yarn_attn_factor) f("rope.scaling.yarn_attn_factor", *yarn_attn_factor);
  if (yarn_beta_fast) f("rope.scaling.yarn_beta_fast", *yarn_beta_fast);
  if (yarn_beta_slow) f("rope.scaling.yarn_beta_slow", *yarn_beta_slow);
  out.insert(out.end(), then.begin(), then.end());
  return out;
}

}  // namespace slm::cli
