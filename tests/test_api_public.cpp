// The public API returns a Status instead of throwing, and generates the same text as the CLI.
#include <gtest/gtest.h>
#include <slm/slm.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "support/fixtures.h"

namespace {

TEST(PublicApi, BadFileIsAStatusNotAnException) {
  slm::api::Model m;
  const slm::api::Status st = slm::api::Model::load("/nonexistent.gguf", &m);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find("cannot open"), std::string::npos) << st.message;
  EXPECT_FALSE(m.loaded());
  slm::api::Session s(m, {});
  EXPECT_FALSE(s.generate("hi", {}, [](std::string_view) { return true; }).ok);
}

TEST(PublicApi, GreedyGenerationMatchesReference) {
  SLM_REQUIRE_FIXTURE(model_path, "models/stories260K.gguf");
  SLM_REQUIRE_FIXTURE(ref_path, "models/stories260K.greedy.json");
  const auto ref = nlohmann::json::parse(slm::test::read_text_file(ref_path));
  slm::api::Model m;
  ASSERT_TRUE(slm::api::Model::load(model_path.string(), &m).ok);
  EXPECT_EQ(m.info().architecture, "llama");
  slm::api::Session s(m, {.n_ctx = 512, .n_threads = 2, .kv_f32 = true});
  const auto& c = ref["cases"][0];
  std::string text;
  slm::api::GenerateParams gp;
  gp.n_predict = c["n_predict"];
  gp.temperature = 0;
  ASSERT_TRUE(s.generate(c["prompt"].get<std::string>(), gp, [&](std::string_view p) {
    text += p;
    return true;
  }).ok);
  EXPECT_EQ(text, c["text"].get<std::string>());
  // A q8_0 cache.
  slm::api::Session q8(m, {.n_ctx = 512, .n_threads = 2, .kv_type = slm::api::KvType::Q8_0});
  std::string text_q8;
  ASSERT_TRUE(q8.generate(c["prompt"].get<std::string>(), gp, [&](std::string_view p) {
    text_q8 += p;
    return true;
  }).ok);
  // The same story for its first sentences; the 8-bit cache flips a near tie later on (at
  // "with my ball" / "with your ball"), which also shows that the q8_0 cache was the one used.
  EXPECT_EQ(text_q8.substr(0, 200), text.substr(0, 200));
  EXPECT_NE(text_q8, text);
  // llama.cpp's -ctk q8_0 -ctv q4_0: 4-bit values part from the story within its third sentence.
  slm::api::Session mixed(m, {.n_ctx = 512, .n_threads = 2, .kv_type_k = slm::api::KvType::Q8_0,
                              .kv_type_v = slm::api::KvType::Q4_0});
  std::string text_mixed;
  ASSERT_TRUE(mixed.generate(c["prompt"].get<std::string>(), gp, [&](std::string_view p) {
    text_mixed += p;
    return true;
  }).ok);
  EXPECT_EQ(text_mixed.substr(0, 30), text.substr(0, 30));
  EXPECT_NE(text_mixed, text);
  // llama.cpp's optional sampling stages reach the sampler: XTC at probability 1 turns greedy
  // away from the likeliest tokens; a bad mirostat setting is a status.
  slm::api::GenerateParams xtc = gp;
  xtc.xtc_probability = 1.0f;
  std::string text_xtc;
  ASSERT_TRUE(s.generate(c["prompt"].get<std::string>(), xtc, [&](std::string_view p) {
    text_xtc += p;
    return true;
  }).ok);
  EXPECT_NE(text_xtc, text);
  slm::api::GenerateParams bad_mirostat = gp;
  bad_mirostat.mirostat = 3;
  const auto bad = s.generate("Once", bad_mirostat, [](std::string_view) { return true; });
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.message.find("mirostat"), std::string::npos) << bad.message;
  // A 48-token context: the story stops where it fills, or with context_shift goes on past it
  // (the same text up to there).
  slm::api::Session short_ctx(m, {.n_ctx = 48, .n_threads = 2});
  slm::api::GenerateParams shifting = gp;
  shifting.n_predict = 120;
  shifting.logit_bias = {{2, -INFINITY}};  // stories260K's end of text: every token asked for
  std::string stopped, shifted;
  int n_stopped = 0, n_shifted = 0;
  ASSERT_TRUE(short_ctx.generate("Once upon a time", shifting, [&](std::string_view p) {
    stopped += p;
    ++n_stopped;
    return true;
  }).ok);
  shifting.context_shift = true;
  shifting.n_keep = -1;
  ASSERT_TRUE(short_ctx.generate("Once upon a time", shifting, [&](std::string_view p) {
    shifted += p;
    ++n_shifted;
    return true;
  }).ok);
  EXPECT_LT(n_stopped, 48);
  EXPECT_EQ(n_shifted, 120);
  EXPECT_EQ(shifted.substr(0, stopped.size()), stopped);
  // Evaluated again instead of rotated: the same text up to the first shift, another after it
  // (stories260K's rows remember the dropped tokens only when rotated).
  std::string reevaluated;
  shifting.context_shift_reevaluate = true;
  ASSERT_TRUE(short_ctx.generate("Once upon a time", shifting, [&](std::string_view p) {
    reevaluated += p;
    return true;
  }).ok);
  EXPECT_EQ(reevaluated.substr(0, stopped.size()), stopped);
  EXPECT_NE(reevaluated, shifted);
  // A prompt that does not fit is a status, and the session stays usable.
  slm::api::Session small(m, {.n_ctx = 4, .n_threads = 1});
  const auto st = small.generate("Once upon a time there was", gp, [](std::string_view) { return true; });
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find("context"), std::string::npos) << st.message;
}

TEST(PublicApi, ConstrainedOutputFollowsTheSchemaOrIsAStatus) {
  SLM_REQUIRE_FIXTURE(model_path, "models/stories260K.gguf");
  slm::api::Model m;
  ASSERT_TRUE(slm::api::Model::load(model_path.string(), &m).ok);
  slm::api::Session s(m, {.n_ctx = 1024, .n_threads = 2});
  slm::api::GenerateParams gp;
  gp.n_predict = 300;
  gp.temperature = 0;
  gp.json_schema = R"({"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]},
                       "count": {"type": "integer"}}, "required": ["colour", "count"]})";
  std::string text;
  const auto st = s.generate("The ball was", gp, [&](std::string_view p) {
    text += p;
    return true;
  });
  ASSERT_TRUE(st.ok) << st.message;
  const auto j = nlohmann::json::parse(text);
  EXPECT_TRUE(j["colour"] == "red" || j["colour"] == "green" || j["colour"] == "blue") << text;
  EXPECT_TRUE(j["count"].is_number_integer()) << text;
  // A grammar instead.
  slm::api::GenerateParams gg;
  gg.temperature = 0;
  gg.grammar = R"(root ::= [0-9]{3})";
  text.clear();
  ASSERT_TRUE(s.generate("The number is", gg, [&](std::string_view p) {
    text += p;
    return true;
  }).ok);
  EXPECT_EQ(text.size(), 3u) << text;
  EXPECT_TRUE(std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) << text;
  // Bad ones are a Status, and the session goes on working.
  gg.grammar = "root ::= missing";
  auto bad = s.generate("x", gg, [](std::string_view) { return true; });
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.message.find("never defined"), std::string::npos) << bad.message;
  gg.grammar.clear();
  gg.json_schema = "{not json";
  bad = s.generate("x", gg, [](std::string_view) { return true; });
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.message.find("not valid JSON"), std::string::npos) << bad.message;
  gg.json_schema = R"({"type": "number", "multipleOf": 3})";
  bad = s.generate("x", gg, [](std::string_view) { return true; });
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.message.find("multipleOf"), std::string::npos) << bad.message;
}

}  // namespace
