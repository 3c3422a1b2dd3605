// Which stages of the sampler chain run, as llama.cpp's --samplers "top_k;top_p;..." /
// --sampling-seq "kpt" and its server's "samplers" field name them. slm's chain has a fixed
// order (llama.cpp's default, sampling/sampler.h): a list may leave stages out, which turns
// them off, but not reorder or repeat them.
#pragma once
#include <string>
#include <vector>

#include "sampling/sampler.h"

namespace slm {

enum class SamplerStage { Penalties, Dry, TopNSigma, TopK, Typical, TopP, MinP, Xtc, Temperature };

// Names (llama.cpp's, with its aliases: top_k / top-k, typ_p / typical_p / typical, temp, ...)
// in order. Throws slm::Error naming `what` (the option or field) for an unknown name or an
// order other than the chain's.
std::vector<SamplerStage> parse_sampler_stages(const std::vector<std::string>& names, const std::string& what);
// The same from llama.cpp's letters (e penalties, d dry, s top_n_sigma, k top_k, y typical,
// p top_p, m min_p, x xtc, t temperature).
std::vector<SamplerStage> parse_sampler_letters(const std::string& letters, const std::string& what);
// "a;b;c" -> {"a", "b", "c"} (empty parts dropped).
std::vector<std::string> split_sampler_names(const std::string& list);
// Turns off every stage `stages` leaves out (without temperature the draw is at temperature 1,
// as llama.cpp's chain then has no temperature stage).
void keep_only_stages(SamplerParams& p, const std::vector<SamplerStage>& stages);

}  // namespace slm
