// llama.cpp's RoPE options on the command line (--rope-scaling, --rope-scale, --rope-freq-base,
// --rope-freq-scale, --yarn-orig-ctx, --yarn-ext-factor, --yarn-attn-factor, --yarn-beta-fast,
// --yarn-beta-slow), e.g. Qwen's long contexts: `--rope-scaling yarn --rope-scale 4
// --yarn-orig-ctx 32768`. They become metadata overrides of the model's <arch>.rope.* keys, which
// the model reads as it reads the file's own.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

namespace slm::cli {

struct RopeOptions {
  std::string scaling;  // none, linear, yarn ("": the file's)
  std::optional<float> scale, freq_base, freq_scale, yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
  std::optional<int64_t> yarn_orig_ctx;

  void add_to(CLI::App& app);
  bool any() const;
  // --override-kv entries (KEY=TYPE:VALUE) for the model at `model_path` (its architecture names
  // the keys), followed by `then` (the command's own --override-kv, which so has the last word).
  // Throws slm::Error for an unreadable file or contradicting options.
  std::vector<std::string> overrides(const std::string& model_path, const std::vector<std::string>& then = {}) const;
};

}  // namespace slm::cli
