// The KV cache's storage types on the command line: --kv-type for keys and values alike, and
// llama.cpp's -ctk/--cache-type-k and -ctv/--cache-type-v for each (which win over --kv-type).
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "runtime/kv_cache.h"

namespace slm::cli {

struct KvCacheOptions {
  std::string both = "f16", k, v;
  void add_to(CLI::App& app);
  KVTypes types() const;
};

}  // namespace slm::cli
