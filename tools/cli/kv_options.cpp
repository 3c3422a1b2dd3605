#include "kv_options.h"

#include "core/error.h"

namespace slm::cli {

namespace {
DType parse(const std::string& s, const char* option) {
  if (s == "f16") return DType::F16;
  if (s == "f32") return DType::F32;
  if (s == "q8_0") return DType::Q8_0;
  fail("{} '{}' is not supported (use f16, f32 or q8_0)", option, s);
}
}  // namespace

void KvCacheOptions::add_to(CLI::App& app) {
  const auto types = CLI::IsMember({"f16", "f32", "q8_0"});
  app.add_option("--kv-type", both, "KV cache type of keys and values: f16, f32 or q8_0 (half f16's memory)")
      ->check(types);
  app.add_option("--cache-type-k", k, "KV cache type of the keys (llama.cpp's -ctk, also taken; default: --kv-type)")->check(types);
  app.add_option("--cache-type-v", v, "KV cache type of the values (llama.cpp's -ctv, also taken; default: --kv-type)")
      ->check(types);
}

KVTypes KvCacheOptions::types() const {
  const DType d = parse(both, "--kv-type");
  return KVTypes(k.empty() ? d : parse(k, "--cache-type-k"), v.empty() ? d : parse(v, "--cache-type-v"));
}

}  // namespace slm::cli
