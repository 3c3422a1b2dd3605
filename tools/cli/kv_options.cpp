#include "kv_options.h"

#include <array>
#include <utility>

#include "core/error.h"

namespace slm::cli {

namespace {
// llama.cpp's names for -ctk / -ctv (its kv_cache_types), each a type the cache can store.
constexpr std::array<std::pair<const char*, DType>, 9> kTypes = {{{"f16", DType::F16},
                                                                   {"f32", DType::F32},
                                                                   {"bf16", DType::BF16},
                                                                   {"q8_0", DType::Q8_0},
                                                                   {"q4_0", DType::Q4_0},
                                                                   {"q4_1", DType::Q4_1},
                                                                   {"q5_0", DType::Q5_0},
                                                                   {"q5_1", DType::Q5_1},
                                                                   {"iq4_nl", DType::IQ4_NL}}};

}  // namespace

DType parse_kv_type(const std::string& s, const char* option) {
  for (const auto& [name, type] : kTypes)
    if (s == name) return type;
  fail("{} '{}' is not supported (use {})", option, s, kv_cache_type_names());
}

void KvCacheOptions::add_to(CLI::App& app) {
  std::vector<std::string> names;
  for (const auto& [name, type] : kTypes) names.emplace_back(name);
  const auto types = CLI::IsMember(names);
  app.add_option("--kv-type", both,
                 "KV cache type of keys and values: f16, f32, bf16, q8_0 (half f16's memory), q4_0, q4_1, q5_0, "
                 "q5_1 or iq4_nl")
      ->check(types);
  app.add_option("--cache-type-k", k, "KV cache type of the keys (llama.cpp's -ctk, also taken; default: --kv-type)")->check(types);
  app.add_option("--cache-type-v", v, "KV cache type of the values (llama.cpp's -ctv, also taken; default: --kv-type)")
      ->check(types);
}

KVTypes KvCacheOptions::types() const {
  const DType d = parse_kv_type(both, "--kv-type");
  return KVTypes(k.empty() ? d : parse_kv_type(k, "--cache-type-k"), v.empty() ? d : parse_kv_type(v, "--cache-type-v"));
}

}  // namespace slm::cli
