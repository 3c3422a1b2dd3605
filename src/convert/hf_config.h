// A Hugging Face config.json, in both forms found in the wild:
//   classic (what Hub checkpoints carry): "rope_theta" at the top, "rope_scaling" with "type"
//     or "rope_type" (llama3, linear, yarn, longrope, ...) and its factors;
//   transformers 5 ("rope_parameters"): rope_theta, rope_type and the factors in one object,
//     possibly per attention kind ({"full_attention": {...}, "sliding_attention": {...}}).
// Both are read into one RopeConfig, as llama.cpp's converter merges them. A field a
// converter needs and cannot default is an slm::Error naming the file and the field.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace slm::convert {

struct RopeConfig {
  std::string type = "default";  // "default" when the config has no scaling
  double theta = 10000.0;        // transformers' default when a config leaves it out
  std::optional<double> factor, low_freq_factor, high_freq_factor, attention_factor;
  std::optional<double> beta_fast, beta_slow, extrapolation_factor;
  std::optional<int64_t> original_max_position_embeddings;
  std::vector<double> short_factor, long_factor;  // LongRoPE
  double partial_rotary_factor = 1.0;
};

class HfConfig {
 public:
  // Reads <dir>/config.json. Throws slm::Error (missing file, bad JSON, missing field).
  static HfConfig read(const std::string& dir);
  static HfConfig from_json(nlohmann::json j, std::string path);

  const std::string& path() const { return path_; }
  const nlohmann::json& raw() const { return j_; }
  const std::string& architecture() const { return arch_; }  // architectures[0]
  const RopeConfig& rope() const { return rope_; }

  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  // Required getters: "<path>: missing required field '<key>'" when absent or null, and a
  // type error naming the field when it holds something else.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  std::optional<int64_t> opt_int(const std::string& key) const;
  std::optional<double> opt_float(const std::string& key) const;
  std::optional<bool> opt_bool(const std::string& key) const;
  std::optional<std::string> opt_string(const std::string& key) const;

 private:
  nlohmann::json j_;
  std::string path_, arch_;
  RopeConfig rope_;
};

}  // namespace slm::convert
