// The KV cache's storage types on the command line: --kv-type for keys and values alike, and
// llama.cpp's -ctk/--cache-type-k and -ctv/--cache-type-v for each (which win over --kv-type).
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "runtime/kv_cache.h"

namespace slm::cli {

// One of llama.cpp's cache type names (f16, q8_0, ...) as a DType; `option` names the option in
// the error for another. Throws slm::Error.
DType parse_kv_type(const std::string& name, const char* option);

struct KvCacheOptions {
  std::string both = "f16", k, v;
  void add_to(CLI::App& app);
  KVTypes types() const;
};

}  // namespace slm::cli
