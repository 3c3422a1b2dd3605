// Files the LoRA tests share (test_convert_lora, test_convert_lora_export): a temporary folder
// per test program, the slm-docs-19m F32 conversion and the lora-sqlite-r8 adapter converted
// once per program, PEFT/safetensors readers, and the tiny llama of tiny_model.h as a file.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/safetensors.h"
#include "core/gguf.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"
#include "support/run_cli.h"
#include "support/tiny_model.h"

namespace slm::test::lora {

namespace fs = std::filesystem;
using nlohmann::json;

// Removed when the test program ends (it holds ~200 MB of models).
inline slm::test::ProgramTempDir g_temp("convert-lora");
inline const fs::path& temp_dir() { return g_temp.path(); }

inline fs::path peft_dir() { return slm::test::shared_dir() / "models/hf/lora-sqlite-r8"; }
inline fs::path hf_base() { return slm::test::shared_dir() / "models/hf/slm-docs-19m"; }

// Runs once per test program (the results are files in temp_dir()); recursive, as one
// result (an adapter converted against the GGUF base) needs another (that base).
inline fs::path once(const std::string& key, const std::function<fs::path()>& make) {
  static std::recursive_mutex mu;
  static std::map<std::string, fs::path> done;
  std::lock_guard<std::recursive_mutex> lock(mu);
  if (auto it = done.find(key); it != done.end()) return it->second;
  return done[key] = make();
}

inline fs::path f32_base() {
  return once("base", [] {
    const fs::path out = temp_dir() / "slm-docs-19m-f32.gguf";
    const auto r = slm::test::run_cli({"convert", hf_base().string(), "-o", out.string(), "--outtype", "f32", "-q"}, 300);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out;
  });
}

// The real adapter converted with --base the HF folder ("hf") or the F32 GGUF ("gguf").
inline fs::path real_adapter(const std::string& base_kind) {
  return once("lora-" + base_kind, [&] {
    const fs::path out = temp_dir() / ("lora-sqlite-r8-" + base_kind + ".gguf");
    const std::string base = base_kind == "hf" ? hf_base().string() : f32_base().string();
    const auto r = slm::test::run_cli({"convert-lora", peft_dir().string(), "--base", base, "-o", out.string()}, 120);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("112 tensors"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("rank 8, alpha 16, arch llama"), std::string::npos) << r.err;
    return out;
  });
}

inline std::vector<float> st_floats(const slm::convert::StTensor& t) {
  std::vector<float> v(static_cast<size_t>(t.nelements()));
  slm::convert::st_read_floats(t, 0, t.nelements(), v.data());
  return v;
}

inline const float* f32_data(const slm::TensorInfo* t) {
  EXPECT_EQ(t->type, DType::F32) << t->name;
  return reinterpret_cast<const float*>(t->data);
}

// Row j of a Llama q/k matrix in GGUF comes from this checkpoint row (written out here rather
// than taken from the converter: each head's rows go from [first half | second half] to
// interleaved pairs).
inline int64_t hf_row(int64_t j, int64_t head_dim) {
  const int64_t h = j / head_dim, r = j % head_dim;
  return h * head_dim + (r % 2 == 0 ? r / 2 : head_dim / 2 + r / 2);
}

inline json read_json(const fs::path& p) { return json::parse(slm::test::read_text_file(p)); }
inline void write_text(const fs::path& p, const std::string& s) {
  fs::remove(p);  // a link into shared/ must not be written through
  std::ofstream(p, std::ios::binary) << s;
}

// The tiny llama of tiny_model.h written to temp_dir()/<name>.gguf.
inline fs::path tiny_gguf(const std::string& name, const slm::test::TinyModelOptions& o = {}) {
  const fs::path p = temp_dir() / (name + ".gguf");
  const std::vector<uint8_t> b = slm::test::make_tiny_llama(o).to_bytes();
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return p;
}

}  // namespace slm::test::lora
