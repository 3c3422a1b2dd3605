#include "convert/hf_config.h"

#include <cctype>
#include <filesystem>

#include "convert/json_file.h"
#include "core/error.h"

namespace slm::convert {

using nlohmann::json;

namespace {

std::optional<double> number_in(const json& o, const char* key, const std::string& path, const char* where) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) fail("{}: field '{}{}' must be a number, found {}", path, where, key, it->dump());
  return it->get<double>();
}

std::vector<double> numbers_in(const json& o, const char* key, const std::string& path, const char* where) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_array()) fail("{}: field '{}{}' must be a list of numbers", path, where, key);
  std::vector<double> v;
  for (const json& x : *it) {
    if (!x.is_number()) fail("{}: field '{}{}' must be a list of numbers, found {}", path, where, key, x.dump());
    v.push_back(x.get<double>());
  }
  return v;
}

}  // namespace

HfConfig HfConfig::read(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  return from_json(read_json_file(path, " (not a Hugging Face model folder?)"), path);
}

HfConfig HfConfig::from_json(json j, std::string path) {
  HfConfig c;
  c.path_ = std::move(path);
  if (!j.is_object()) fail("{}: not a JSON object", c.path_);
  // Multimodal wrappers keep the language model's fields in text_config; llama.cpp's converter
  // merges them over the top level the same way.
  if (auto tc = j.find("text_config"); tc != j.end() && tc->is_object())
    for (auto it = tc->begin(); it != tc->end(); ++it) j[it.key()] = it.value();
  c.j_ = std::move(j);
  const json& o = c.j_;

  auto archs = o.find("architectures");
  if (archs == o.end() || archs->is_null()) fail("{}: missing required field 'architectures'", c.path_);
  if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    fail("{}: field 'architectures' must be a non-empty list of names", c.path_);
  c.arch_ = (*archs)[0].get<std::string>();

  // Rope: transformers 5's rope_parameters, else the classic rope_scaling; the per-attention
  // form keeps the full-attention layers' entry (the one the models here use for all layers).
  RopeConfig& r = c.rope_;
  json rp = json::object();
  const char* where = "rope_scaling.";
  if (auto p = o.find("rope_parameters"); p != o.end() && p->is_object()) {
    rp = *p;
    where = "rope_parameters.";
  } else if (auto s = o.find("rope_scaling"); s != o.end() && s->is_object()) {
    rp = *s;
  } else if (s != o.end() && !s->is_null()) {
    fail("{}: field 'rope_scaling' must be an object or null", c.path_);
  }
  if (auto fa = rp.find("full_attention"); fa != rp.end() && fa->is_object()) rp = *fa;
  auto type_of = [&](const char* key) -> std::optional<std::string> {
    auto it = rp.find(key);
    if (it == rp.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) fail("{}: field '{}{}' must be a string", c.path_, where, key);
    return it->get<std::string>();
  };
  // "rope_type" is the current spelling, "type" the older one; both appear in Hub configs.
  if (auto t = type_of("rope_type")) r.type = *t;
  else if (auto t2 = type_of("type")) r.type = *t2;
  for (char& ch : r.type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (auto t = number_in(rp, "rope_theta", c.path_, where)) r.theta = *t;
  else if (auto t2 = number_in(o, "rope_theta", c.path_, "")) r.theta = *t2;
  r.factor = number_in(rp, "factor", c.path_, where);
  r.low_freq_factor = number_in(rp, "low_freq_factor", c.path_, where);
  r.high_freq_factor = number_in(rp, "high_freq_factor", c.path_, where);
  r.attention_factor = number_in(rp, "attention_factor", c.path_, where);
  if (!r.attention_factor) r.attention_factor = number_in(rp, "attn_factor", c.path_, where);
  r.beta_fast = number_in(rp, "beta_fast", c.path_, where);
  r.beta_slow = number_in(rp, "beta_slow", c.path_, where);
  r.extrapolation_factor = number_in(rp, "extrapolation_factor", c.path_, where);
  r.short_factor = numbers_in(rp, "short_factor", c.path_, where);
  r.long_factor = numbers_in(rp, "long_factor", c.path_, where);
  if (auto p = number_in(rp, "partial_rotary_factor", c.path_, where)) r.partial_rotary_factor = *p;
  else if (auto p2 = number_in(o, "partial_rotary_factor", c.path_, "")) r.partial_rotary_factor = *p2;
  if (auto m = number_in(rp, "original_max_position_embeddings", c.path_, where))
    r.original_max_position_embeddings = static_cast<int64_t>(*m);
  else if (auto m2 = number_in(o, "original_max_position_embeddings", c.path_, ""))
    r.original_max_position_embeddings = static_cast<int64_t>(*m2);
  return c;
}

int64_t HfConfig::get_int(const std::string& key) const {
  if (auto v = opt_int(key)) return *v;
  fail("{}: missing required field '{}'", path_, key);
}

double HfConfig::get_float(const std::string& key) const {
  if (auto v = opt_float(key)) return *v;
  fail("{}: missing required field '{}'", path_, key);
}

std::optional<int64_t> HfConfig::opt_int(const std::string& key) const {
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  // 4096.0 happens in hand-edited configs; a fraction does not fit a count.
  if (it->is_number_float() && it->get<double>() == static_cast<double>(static_cast<int64_t>(it->get<double>())))
    return static_cast<int64_t>(it->get<double>());
  fail("{}: field '{}' must be an integer, found {}", path_, key, it->dump());
}

std::optional<double> HfConfig::opt_float(const std::string& key) const {
  return number_in(j_, key.c_str(), path_, "");
}

std::optional<bool> HfConfig::opt_bool(const std::string& key) const {
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) fail("{}: field '{}' must be true or false, found {}", path_, key, it->dump());
  return it->get<bool>();
}

std::optional<std::string> HfConfig::opt_string(const std::string& key) const {
  auto it = j_.find(key);
  if (it == j_.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) fail("{}: field '{}' must be a string, found {}", path_, key, it->dump());
  return it->get<std::string>();
}

}  // namespace slm::convert
