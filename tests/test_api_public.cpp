// The public API returns a Status instead of throwing, and generates the same text as the CLI.
#include <gtest/gtest.h>
#include <slm/slm.h>

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
  // A prompt that does not fit is a status, and the session stays usable.
  slm::api::Session small(m, {.n_ctx = 4, .n_threads = 1});
  const auto st = small.generate("Once upon a time there was", gp, [](std::string_view) { return true; });
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find("context"), std::string::npos) << st.message;
}

}  // namespace
