// tiny-gemma2: `slm synth --like tiny-gemma2` in f32 with llama.cpp's bert-bge vocabulary, a
// small Gemma 2 whose sliding-window layers (8 positions) wrap their cache rings within a test.
#pragma once
#include <filesystem>
#include <string>

#include "support/run_cli.h"

namespace slm::test {

// Writes dir/tiny-gemma2.gguf and returns its path; empty (the command's stderr in *error)
// where synth failed.
inline std::string synth_tiny_gemma2(const std::filesystem::path& vocab, const std::filesystem::path& dir,
                                     std::string* error) {
  const std::string path = (dir / "tiny-gemma2.gguf").string();
  const RunResult r = run_cli({"synth", "--like", "tiny-gemma2", "--vocab", vocab.string(), "--type", "f32", "-o", path, "-q"}, 120);
  if (r.exit_code == 0) return path;
  *error = r.err;
  return {};
}

}  // namespace slm::test
