#include "kv_options.h"

#include "core/error.h"

namespace slm::cli {

DType parse_kv_type(const std::string& s, const char* option) {
  for (const KvCacheType& t : kv_cache_types())
    if (s == dtype_name(t.type)) return t.type;
  fail("{} '{}' is not supported (use {})", option, s, kv_cache_type_names());
}

void KvCacheOptions::add_to(CLI::App& app) {
  std::vector<std::string> names;
  for (const KvCacheType& t : kv_cache_types()) names.push_back(dtype_name(t.type));
  const auto types = CLI::IsMember(names);
  app.add_option("--kv-type", both,
                 "KV cache type of keys and values: " + kv_cache_type_names() + " (q8_0: half f16's memory)")
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
