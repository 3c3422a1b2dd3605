// llama.cpp's tokenizer test vectors (tests/test-tokenizer-0.cpp's format), read the way that
// test reads them: inputs in <vocab>.gguf.inp separated by "\n__ggml_vocab_test__\n" (a
// trailing separator ends the list), one line of ids per input in <vocab>.gguf.out.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "support/fixtures.h"

namespace slm::test {

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::vector<VocabCase> read_vocab_cases(const std::filesystem::path& inp, const std::filesystem::path& out) {
  const std::string raw = read_text_file(inp);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<VocabCase> cases;
  std::istringstream lines(read_text_file(out));
  std::string line;
  for (size_t i = 0; i < inputs.size() && std::getline(lines, line); ++i) {
    VocabCase c{inputs[i], {}};
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(cases.size(), inputs.size()) << "input and output files disagree on the number of cases";
  return cases;
}

}  // namespace slm::test
