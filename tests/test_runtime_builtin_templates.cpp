// The built-in chat templates (--chat-template chatml | llama3 | phi3 | gemma, as llama.cpp
// names them; runtime/chat_prompt.cpp) against what Python Jinja2 rendered with the models' own
// templates (shared/fixtures/templates/cases.json) wherever the two formats agree: Qwen2.5's
// with a system message (without one it adds its own), Phi-3.5's with the generation prompt
// (without it, it ends in EOS), Gemma 2's without a system message (it refuses one; the built-in
// opens the first user turn with it, as llama.cpp does). Llama 3.2's always writes a dated
// system header, so llama3 is checked against the format written out.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "chat/jinja.h"
#include "runtime/chat_prompt.h"
#include "support/fixtures.h"

namespace {

using nlohmann::ordered_json;

std::string render(const char* name, const ordered_json& messages, bool add_generation_prompt, const std::string& bos) {
  const char* source = slm::ChatPrompt::builtin_source(name);
  EXPECT_NE(source, nullptr) << name;
  ordered_json context = {{"messages", messages}, {"add_generation_prompt", add_generation_prompt}, {"bos_token", bos}};
  return slm::chat::Template(source).render(context);
}

TEST(BuiltinChatTemplates, AgreeWithTheModelsOwnWhereTheFormatsAgree) {
  SLM_REQUIRE_FIXTURE(cases_path, "fixtures/templates/cases.json");
  const ordered_json doc = ordered_json::parse(slm::test::read_text_file(cases_path));
  int compared = 0;
  for (const ordered_json& c : doc.at("cases")) {
    if (c.contains("tools") || c.contains("error")) continue;
    const std::string tmpl = c.at("template"), kase = c.at("case");
    const bool gen = c.at("add_generation_prompt");
    const char* name = nullptr;
    if (tmpl.rfind("Qwen", 0) == 0 && kase == "system-user") name = "chatml";
    if (tmpl.rfind("microsoft-Phi-3.5", 0) == 0 && gen) name = "phi3";
    if (tmpl.rfind("google-gemma-2", 0) == 0) name = "gemma";
    if (!name) continue;
    SCOPED_TRACE(tmpl + " / " + kase + " / add_generation_prompt=" + (gen ? "true" : "false"));
    const std::string bos = c.contains("bos_token") && c["bos_token"].is_string() ? c["bos_token"].get<std::string>() : "";
    EXPECT_EQ(render(name, c.at("messages"), gen, bos), c.at("output").get<std::string>());
    ++compared;
  }
  EXPECT_EQ(compared, 2 + 4 + 6);
}

TEST(BuiltinChatTemplates, Llama3AndGemmaSystemMessages) {
  const ordered_json messages = ordered_json::parse(R"([{"role": "system", "content": "Be brief."},
      {"role": "user", "content": " hi \n"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "again"}])");
  EXPECT_EQ(render("llama3", messages, true, "<|begin_of_text|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nagain<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render("gemma", messages, true, "<bos>"),
            "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
            "<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(slm::ChatPrompt::builtin_source("nosuch"), nullptr);
  EXPECT_EQ(slm::ChatPrompt::builtin_names(), "chatml, llama3, phi3, gemma");
}

}  // namespace
