// Constrained output end to end: the vocabulary walk on real tokenizers agrees with checking
// every token, and `slm run` with --grammar / --json-schema / --json writes text that
// follows them (parsed back with nlohmann::json), or says clearly what was wrong.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "runtime/grammar_vocab.h"
#include "sampling/sampler.h"
#include "sampling/grammar.h"
#include "sampling/json_schema.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace {

using slm::test::run_cli;

// Texts that walk a JSON grammar through its kinds of state: between tokens, inside a key,
// inside a string value (nearly every token fits), inside a number, after a split character.
const std::vector<std::string> kJsonPrefixes = {
    "", "{", "{\"na", "{\"name\": \"Jo", "{\"name\": \"Jo\\u00", "{\"name\": \"\xC3", "{\"name\": \"x\", \"age\": 4",
    "{\"name\": \"x\", \"age\": 42, \"tags\": [", "{\"name\": \"x\", \"age\": 42, \"tags\": [\"a\"]}"};

const char* kPersonSchema = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 40},
    "age": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}
  },
  "required": ["name", "age"]
})";

class GrammarVocabOnTokenizer : public ::testing::TestWithParam<const char*> {};

TEST_P(GrammarVocabOnTokenizer, MaskEqualsCheckingEveryToken) {
  SLM_REQUIRE_FIXTURE(path, std::string("fixtures/vocab/") + GetParam());
  auto file = slm::GGUFFile::open(path.string());
  auto tok = slm::Tokenizer::from_gguf(*file);
  auto vocab = slm::make_grammar_vocab(*tok);
  auto g = slm::Grammar::parse(slm::json_schema_to_grammar(nlohmann::ordered_json::parse(kPersonSchema)));
  std::vector<uint8_t> allowed;
  for (const std::string& prefix : kJsonPrefixes) {
    slm::GrammarState s(g);
    ASSERT_TRUE(s.advance(prefix)) << prefix;
    const auto t0 = std::chrono::steady_clock::now();
    vocab->allowed(s, allowed);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    int64_t n_allowed = 0, mismatches = 0;
    for (int32_t id = 0; id < vocab->n_vocab(); ++id) {
      const bool expect = vocab->allows(s, id);
      n_allowed += expect;
      if ((allowed[static_cast<size_t>(id)] != 0) != expect && ++mismatches <= 5)
        ADD_FAILURE() << "after \"" << prefix << "\": token " << id << " \"" << vocab->piece(id) << "\" mask "
                      << int(allowed[static_cast<size_t>(id)]) << " check " << expect;
    }
    EXPECT_EQ(mismatches, 0);
    // Informational (not a benchmark): how long one whole-vocabulary mask takes.
    std::printf("  after %-55s %6lld of %d tokens allowed, mask in %.2f ms\n",
                ("\"" + prefix + "\"").c_str(), static_cast<long long>(n_allowed), vocab->n_vocab(), ms);
    EXPECT_GT(n_allowed, 0) << prefix;
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, GrammarVocabOnTokenizer,
                         ::testing::Values("ggml-vocab-llama-bpe.gguf", "ggml-vocab-llama-spm.gguf",
                                           "ggml-vocab-qwen2.gguf", "ggml-vocab-phi-3.gguf"));

// The sampler keeps the masks of states it has seen (Sampler::grammar_mask): greedy picks over
// random logits on the Llama 3 vocabulary, where most steps need the mask, are at every step
// the argmax of the tokens a freshly computed mask allows, and states come back often enough
// for the kept masks to be used.
TEST(SamplerGrammar, KeptMasksAreTheMasksOfTheirStates) {
  SLM_REQUIRE_FIXTURE(path, "fixtures/vocab/ggml-vocab-llama-bpe.gguf");
  auto file = slm::GGUFFile::open(path.string());
  auto tok = slm::Tokenizer::from_gguf(*file);
  auto vocab = slm::make_grammar_vocab(*tok);
  const int32_t n = vocab->n_vocab();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> logits(static_cast<size_t>(n));
  std::vector<uint8_t> allowed;
  // The person schema, and a list of numbers whose states recur (after a digit, after a comma).
  const std::string list = R"(root ::= "[" [0-9]+ ("," " "? [0-9]+)* "]")";
  for (const std::string& gbnf :
       {slm::json_schema_to_grammar(nlohmann::ordered_json::parse(kPersonSchema)), list}) {
    auto g = slm::Grammar::parse(gbnf);
    slm::SamplerParams sp;
    sp.temperature = 0;
    slm::Sampler sampler(sp, n);
    sampler.set_grammar({g, vocab});
    slm::GrammarState check(g);
    std::string text;
    int steps = 0;
    for (; steps < 150; ++steps) {
      for (float& l : logits) l = normal(rng);
      // Keep the list going: its closing bracket and the end of generation less likely.
      if (gbnf == list) logits[static_cast<size_t>(*tok->find_token("]"))] -= 4.0f;
      const int32_t id = sampler.sample(logits.data());
      vocab->allowed(check, allowed);
      int32_t best = -1;
      for (int32_t i = 0; i < n; ++i)
        if (allowed[static_cast<size_t>(i)] && (best < 0 || logits[i] > logits[best])) best = i;
      ASSERT_EQ(id, best) << "step " << steps << " after " << text;
      if (vocab->is_eog(id)) break;
      sampler.accept_sampled(id);
      ASSERT_TRUE(check.advance(vocab->piece(id)));
      text += vocab->piece(id);
    }
    EXPECT_GT(sampler.grammar_redraws(), steps / 2);
    if (gbnf == list) {
      EXPECT_GT(sampler.grammar_mask_reuses(), sampler.grammar_redraws() / 2) << text;
    }
    std::printf("  %d steps, %lld masks needed, %lld of them kept from before: %.60s...\n", steps,
                static_cast<long long>(sampler.grammar_redraws()),
                static_cast<long long>(sampler.grammar_mask_reuses()), text.c_str());
  }
}

TEST(CliConstrained, JsonSchemaOutputParsesAndHasTheRequiredFields) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  for (const char* temp : {"0", "0.8"}) {
    const auto r = run_cli({"run", "-m", model.string(), "-p", "Once upon a time", "-n", "400", "--temp", temp,
                            "--seed", "5", "--json-schema", kPersonSchema});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    nlohmann::ordered_json j;
    ASSERT_NO_THROW(j = nlohmann::ordered_json::parse(r.out)) << "not JSON: " << r.out << "\n" << r.err;
    ASSERT_TRUE(j.is_object()) << r.out;
    ASSERT_TRUE(j.contains("name") && j["name"].is_string()) << r.out;
    ASSERT_TRUE(j.contains("age") && j["age"].is_number_integer()) << r.out;
    EXPECT_LE(j["name"].get<std::string>().size(), 40u * 4);  // maxLength counts characters
    for (auto it = j.begin(); it != j.end(); ++it)
      EXPECT_TRUE(it.key() == "name" || it.key() == "age" || it.key() == "tags") << it.key();
    if (j.contains("tags")) {
      ASSERT_TRUE(j["tags"].is_array());
      EXPECT_LE(j["tags"].size(), 3u);
    }
  }
}

TEST(CliConstrained, JsonFlagGivesAnObject) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto r = run_cli({"run", "-m", model.string(), "-p", "Lily said", "-n", "300", "--temp", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j;
  // 300 tokens may end inside a long string; then the warning says so and the text is a prefix.
  if (r.err.find("before the text the grammar asks for was complete") == std::string::npos) {
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out;
    EXPECT_TRUE(j.is_object()) << r.out;
  } else {
    EXPECT_EQ(r.out.rfind("{", 0), 0u) << r.out;
  }
}

TEST(CliConstrained, GrammarPicksAmongAlternatives) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  slm::test::ProgramTempDir dir("constrained");
  const std::string gfile = (dir.path() / "answer.gbnf").string();
  {
    std::FILE* f = std::fopen(gfile.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("# one word, then a period\nroot ::= (\"yes\" | \"no\" | \"maybe\") \".\"\n", f);
    std::fclose(f);
  }
  for (const std::vector<std::string>& how :
       {std::vector<std::string>{"--grammar", "root ::= (\"yes\" | \"no\" | \"maybe\") \".\""},
        std::vector<std::string>{"--grammar-file", gfile}}) {
    std::vector<std::string> args = {"run", "-m", model.string(), "-p", "Was the dog happy?", "-n", "20", "--temp", "0"};
    args.insert(args.end(), how.begin(), how.end());
    const auto r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(r.out == "yes." || r.out == "no." || r.out == "maybe.") << "[" << r.out << "]";
  }
}

TEST(CliConstrained, BadGrammarsAndSchemasFailClearly) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--grammar", "root ::= item"}, "rule `item` is used (line 1) but never defined"},
      {{"--grammar", "root ::= root \"a\""}, "left-recursive"},
      {{"--json-schema", "{\"type\": \"object\""}, "--json-schema: not valid JSON"},
      {{"--json-schema", "{\"type\": \"string\", \"pattern\": \"^a+$\"}"}, "pattern"},
      {{"--grammar-file", "/nonexistent/x.gbnf"}, "cannot read the grammar file /nonexistent/x.gbnf"},
      {{"--json", "--grammar", "root ::= \"a\""}, "exclude each other"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"run", "-m", model.string(), "-p", "Hi", "-n", "5"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const auto r = run_cli(args);
    EXPECT_NE(r.exit_code, 0) << c.args[0];
    EXPECT_EQ(r.signal, 0);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << "expected \"" << c.says << "\" in: " << r.err;
  }
}

}  // namespace
