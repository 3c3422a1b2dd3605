// llama.cpp's tokenizer test vectors (tests/test-tokenizer-0.cpp): every case of
// ggml-vocab-<name>.gguf.inp must encode to the ids on the same line of .out, with
// add_special = false and parse_special = false, exactly as that test calls common_tokenize.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "support/fixtures.h"
#include "support/vocab_cases.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

class VocabVectors : public ::testing::TestWithParam<const char*> {};

TEST_P(VocabVectors, MatchLlamaCpp) {
  const std::string name = GetParam();
  SLM_REQUIRE_FIXTURE(path, "fixtures/vocab/ggml-vocab-" + name + ".gguf");
  const auto t0 = std::chrono::steady_clock::now();
  auto file = slm::GGUFFile::open(path.string());
  const auto t1 = std::chrono::steady_clock::now();
  auto tok = slm::Tokenizer::from_gguf(*file);
  const auto t2 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };

  const auto cases = slm::test::read_vocab_cases(path.string() + ".inp", path.string() + ".out");
  ASSERT_FALSE(cases.empty());
  size_t passed = 0;
  for (const slm::test::VocabCase& c : cases) {
    const std::vector<int32_t> got = tok->encode(c.text, /*add_special=*/false, /*parse_special=*/false);
    if (got == c.ids) {
      ++passed;
    } else {
      ADD_FAILURE() << name << ": '" << c.text << "'\n  expected: " << show(c.ids)
                    << "\n  got:      " << show(got) << "\n  decoded:  '" << tok->decode(got) << "'";
    }
  }
  std::cerr << "[ vectors  ] " << name << ": " << passed << "/" << cases.size()
            << " cases pass (n_vocab " << tok->n_vocab() << ", gguf open " << ms(t0, t1)
            << " ms, tokenizer load " << ms(t1, t2) << " ms)\n";
  EXPECT_EQ(passed, cases.size());
}

INSTANTIATE_TEST_SUITE_P(Vocabs, VocabVectors,
                         ::testing::Values("llama-bpe", "qwen2", "llama-spm", "phi-3", "bert-bge"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
