// Renders the real chat templates of shared/fixtures/templates/ and compares the output,
// byte for byte, with what Python Jinja2 3.1.6 (HF's apply_chat_template environment)
// rendered for cases.json; cases with "error" must raise that raise_exception message.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "chat/jinja.h"
#include "support/fixtures.h"

namespace {

using nlohmann::ordered_json;

// Keys of a case that are not template variables.
bool is_meta_key(const std::string& k) {
  return k == "template" || k == "case" || k == "output" || k == "error";
}

TEST(ChatTemplateCases, RenderLikeJinja2) {
  SLM_REQUIRE_FIXTURE(cases_path, "fixtures/templates/cases.json");
  const ordered_json doc = ordered_json::parse(slm::test::read_text_file(cases_path));
  const auto& cases = doc.at("cases");
  ASSERT_EQ(cases.size(), 40u);
  const auto dir = cases_path.parent_path();
  slm::chat::RenderOptions options;
  options.now = slm::chat::RenderOptions::fixed_date(2024, 7, 26);

  int passed = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const ordered_json& c = cases[i];
    const std::string name = c.at("template").get<std::string>() + " / " +
                             c.at("case").get<std::string>() + " / add_generation_prompt=" +
                             c.value("add_generation_prompt", ordered_json()).dump();
    SCOPED_TRACE(name);
    const std::string source = slm::test::read_text_file(dir / c.at("template").get<std::string>());
    ASSERT_FALSE(source.empty()) << "missing template file";
    ordered_json context = ordered_json::object();
    for (auto it = c.begin(); it != c.end(); ++it)
      if (!is_meta_key(it.key())) context[it.key()] = it.value();

    if (c.contains("error")) {
      try {
        const std::string out = slm::chat::render_template(source, context, options);
        ADD_FAILURE() << "expected RaiseException, got output:\n" << out;
      } catch (const slm::chat::RaiseException& e) {
        EXPECT_EQ(std::string(e.what()), c.at("error").get<std::string>());
        if (std::string(e.what()) == c.at("error").get<std::string>()) ++passed;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "expected RaiseException, got: " << e.what();
      }
      continue;
    }
    try {
      const std::string out = slm::chat::render_template(source, context, options);
      EXPECT_EQ(out, c.at("output").get<std::string>());
      if (out == c.at("output").get<std::string>()) ++passed;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "render failed: " << e.what();
    }
  }
  std::cout << "[ cases    ] " << passed << "/" << cases.size() << " template cases match\n";
  EXPECT_EQ(passed, static_cast<int>(cases.size()));
}

// The parsed form renders the same as the one-shot helper, and can be reused.
TEST(ChatTemplateCases, TemplateObjectIsReusable) {
  SLM_REQUIRE_FIXTURE(cases_path, "fixtures/templates/cases.json");
  const ordered_json doc = ordered_json::parse(slm::test::read_text_file(cases_path));
  const auto dir = cases_path.parent_path();
  slm::chat::RenderOptions options;
  options.now = slm::chat::RenderOptions::fixed_date(2024, 7, 26);
  const ordered_json& c = doc.at("cases").at(0);
  const slm::chat::Template tmpl(slm::test::read_text_file(dir / c.at("template").get<std::string>()));
  ordered_json context = ordered_json::object();
  for (auto it = c.begin(); it != c.end(); ++it)
    if (!is_meta_key(it.key())) context[it.key()] = it.value();
  for (int k = 0; k < 3; ++k) EXPECT_EQ(tmpl.render(context, options), c.at("output").get<std::string>());
}

}  // namespace
