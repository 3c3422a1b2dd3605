// Speculative decoding (`slm run --draft-model`): whatever the draft proposes, the text is the
// one plain decoding gives (greedy, sampled with a seed, under a grammar), on stories260K with
// quantized copies of itself as drafts (they agree with it about half the time, so both the
// kept and the replaced proposals are exercised) and on the Gemma 2 and Phi-3 fixtures, whose
// sliding-window caches are cut back after every rejected proposal.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/speculative.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"

namespace {

using slm::test::run_cli;

slm::test::ProgramTempDir& temp() {
  static slm::test::ProgramTempDir dir("speculative");
  return dir;
}

// A quantized copy of `model` (made once per type) to draft with.
std::string quantized(const std::filesystem::path& model, const std::string& type) {
  const std::string out = (temp().path() / (model.stem().string() + "-" + type + ".gguf")).string();
  if (!std::filesystem::exists(out)) {
    const auto r = run_cli({"quantize", model.string(), out, type});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  return out;
}

// Accepted and drafted counts from --timings ("... N tokens drafted, M accepted ...").
std::pair<int, int> acceptance(const std::string& err) {
  const size_t at = err.find("target passes, ");
  int drafted = -1, accepted = -1;
  if (at == std::string::npos ||
      std::sscanf(err.c_str() + at, "target passes, %d tokens drafted, %d accepted", &drafted, &accepted) != 2)
    return {-1, -1};
  return {accepted, drafted};
}

TEST(Speculative, GreedyTextEqualsLlamaCppReference) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  SLM_REQUIRE_FIXTURE(ref_path, "models/stories260K.greedy.json");
  const auto ref = nlohmann::json::parse(slm::test::read_text_file(ref_path));
  int drafted = 0, accepted = 0;
  for (const std::string type : {"Q8_0", "Q4_0"}) {
    const std::string draft = quantized(model, type);
    for (const auto& c : ref["cases"]) {
      const auto r = run_cli({"run", "-m", model.string(), "--draft-model", draft, "--draft-p-min", "0", "--draft-max",
                              "5", "-p", c["prompt"].get<std::string>(), "-n", std::to_string(c["n_predict"].get<int>()),
                              "--temp", "0", "--kv-type", "f32", "--timings"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, c["text"].get<std::string>()) << type << " draft, prompt: " << c["prompt"];
      const auto [a, d] = acceptance(r.err);
      accepted += a;
      drafted += d;
    }
  }
  // Both paths ran: proposals kept and proposals replaced.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, drafted);
  std::printf("  drafts kept: %d of %d\n", accepted, drafted);
}

TEST(Speculative, SampledAndConstrainedTextEqualsPlainDecoding) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::string draft = quantized(model, "Q4_0");
  const std::vector<std::vector<std::string>> variants = {
      {"--temp", "0.9", "--seed", "7"},
      {"--temp", "1.2", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", "99"},
      {"--temp", "0.7", "--repeat-penalty", "1.3", "--seed", "5"},
      {"--temp", "0", "-j", R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                 "age": {"type": "integer"}}, "required": ["name", "age"]})"},
  };
  for (const auto& v : variants) {
    std::vector<std::string> plain = {"run", "-m", model.string(), "-p", "Lily and Ben", "-n", "120"};
    plain.insert(plain.end(), v.begin(), v.end());
    std::vector<std::string> spec = plain;
    spec.insert(spec.end(), {"--draft-model", draft, "--draft-p-min", "0.2"});
    const auto a = run_cli(plain), b = run_cli(spec);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    EXPECT_EQ(a.out, b.out) << v[1];
  }
}

TEST(Speculative, SlidingWindowModelsAndTheContextEnd) {
  for (const char* family : {"gemma2-L4-E64", "phi3-L3-E64", "qwen2-L2-E64", "llama-L2-E64"}) {
    SLM_REQUIRE_FIXTURE(target, std::string("fixtures/logits/") + family + "-F32.gguf");
    SLM_REQUIRE_FIXTURE(draft, std::string("fixtures/logits/") + family + "-Q4_0.gguf");
    // -c 48: the prompt plus 40 tokens ends at the context (a long way past Gemma's and Phi-3's
    // fixture windows), so rounds near the end draft less.
    std::vector<std::string> args = {"run", "-m", target.string(), "-p", "Once upon a time", "-c", "48", "--temp", "0"};
    const auto a = run_cli(args);
    args.insert(args.end(), {"--draft-model", draft.string(), "--draft-p-min", "0", "--draft-max", "4"});
    const auto b = run_cli(args);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    EXPECT_EQ(a.out, b.out) << family;
    EXPECT_FALSE(a.out.empty());
    EXPECT_EQ(a.err.find("full") != std::string::npos, b.err.find("full") != std::string::npos) << a.err << b.err;
  }
}

// slm chat keeps the draft's session across turns (its cache catches up with each new prompt).
TEST(Speculative, ChatTurnsEqualPlainChat) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::string tmpl = std::string(SLM_SOURCE_DIR) + "/tests/data/stories260K-chat.jinja";
  const std::string draft = quantized(model, "Q8_0");
  const std::string input = "Once upon a time\nLily had a dog\nThe end\n";
  std::vector<std::string> args = {"chat", "-m", model.string(), "--chat-template", tmpl, "-n", "40", "--temp", "0"};
  const auto a = run_cli(args, 120.0, &input);
  args.insert(args.end(), {"--draft-model", draft, "--draft-p-min", "0"});
  const auto b = run_cli(args, 120.0, &input);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_GE(std::count(a.out.begin(), a.out.end(), '\n'), 3) << a.out;  // a reply may hold newlines too
  EXPECT_EQ(a.out, b.out);
}

TEST(Speculative, ADraftWithAnotherVocabularyIsAClearError) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  SLM_REQUIRE_FIXTURE(other, "fixtures/logits/phi3-L3-E64-F32.gguf");
  const auto r = run_cli({"run", "-m", model.string(), "--draft-model", other.string(), "-p", "Hi", "-n", "4"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the draft model's vocabulary has 32064 tokens but the target's has 512"), std::string::npos)
      << r.err;
  const auto bad = run_cli({"run", "-m", model.string(), "--draft-model", model.string(), "--draft-max", "0", "-p", "Hi"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("draft-max"), std::string::npos) << bad.err;
}

// Prompt lookup decoding: proposals from the text's own earlier n-grams.
TEST(Speculative, LookupProposalTakesWhatFollowedTheLatestEarlierNgram) {
  using slm::lookup_proposal;
  using V = std::vector<int32_t>;
  // "... 5 6 7 8 ... 5 6 7 9 ... 5 6 7": the latest 3-gram "5 6 7" was followed by 9.
  const V t = {1, 5, 6, 7, 8, 2, 5, 6, 7, 9, 3, 4, 5, 6, 7};
  EXPECT_EQ(lookup_proposal(t, 2, 3, 4), (V{9, 3, 4, 5}));
  EXPECT_EQ(lookup_proposal(t, 2, 3, 2), (V{9, 3}));
  // The longest n-gram first: "2 5 6 7" only occurs... no 4-gram repeats, so the 3-gram decides.
  EXPECT_EQ(lookup_proposal(t, 2, 4, 1), (V{9}));
  // No earlier occurrence of the last 2 or 3 tokens: nothing; with 1-grams, the last "7".
  const V u = {1, 2, 3, 4, 7, 8, 9, 7};
  EXPECT_EQ(lookup_proposal(u, 2, 3, 4), V{});
  EXPECT_EQ(lookup_proposal(u, 1, 3, 4), (V{8, 9, 7}));
  // A repeating pattern proposes into its own end (what follows is still known).
  const V r = {4, 4, 4, 4};
  EXPECT_EQ(lookup_proposal(r, 2, 2, 8), (V{4}));
  EXPECT_EQ(lookup_proposal(V{}, 1, 3, 4), V{});
  EXPECT_EQ(lookup_proposal(V{1}, 1, 3, 4), V{});
}

TEST(Speculative, LookupTextEqualsPlainDecoding) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  SLM_REQUIRE_FIXTURE(ref_path, "models/stories260K.greedy.json");
  const auto ref = nlohmann::json::parse(slm::test::read_text_file(ref_path));
  int drafted = 0, accepted = 0;
  for (const auto& c : ref["cases"]) {
    const auto r = run_cli({"run", "-m", model.string(), "--lookup", "-p", c["prompt"].get<std::string>(), "-n",
                            std::to_string(c["n_predict"].get<int>()), "--temp", "0", "--kv-type", "f32", "--timings"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, c["text"].get<std::string>()) << c["prompt"];
    const auto [a, d] = acceptance(r.err);
    accepted += a;
    drafted += d;
  }
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, drafted);
  std::printf("  lookup proposals kept: %d of %d\n", accepted, drafted);
  // Sampled and constrained too.
  const std::vector<std::vector<std::string>> variants = {{"--temp", "0.9", "--seed", "3"},
                                                          {"--temp", "0", "--grammar", R"(root ::= ([a-z]+ " ")+ "end.")"}};
  for (const auto& v : variants) {
    std::vector<std::string> plain = {"run", "-m", model.string(), "-p", "Lily and Ben", "-n", "100"};
    plain.insert(plain.end(), v.begin(), v.end());
    std::vector<std::string> look = plain;
    look.push_back("--lookup");
    const auto a = run_cli(plain), b = run_cli(look);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.out, b.out) << v[1];
  }
  const auto both = run_cli({"run", "-m", model.string(), "--lookup", "--draft-model", model.string(), "-p", "x"});
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;
}

}  // namespace
