// Tool calls (runtime/tool_calls.h): reading replies back in each format, the grammar that
// forces a call, and the messages the real chat templates of Qwen2.5, Llama 3.2, Gemma 2 and
// Phi-3.5 (shared/fixtures/templates) render with tools and a call's history.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/gguf.h"
#include "runtime/chat_prompt.h"
#include "runtime/tool_calls.h"
#include "sampling/grammar.h"
#include "support/fixtures.h"
#include "tokenizer/tokenizer.h"

namespace slm {
namespace {

using ojson = nlohmann::ordered_json;

std::vector<ToolSpec> test_tools() {
  return {
      {"get_weather", "The weather in a city",
       ojson::parse(R"({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                        "required": ["city"], "additionalProperties": false})")},
      {"now", "", ojson()},
  };
}

TEST(ToolFormat, PickedFromTheTemplateText) {
  EXPECT_EQ(tool_format_for_template("... <tool_call>\\n{\"name\": ..."), ToolFormat::Hermes);
  EXPECT_EQ(tool_format_for_template("Environment: ipython"), ToolFormat::Llama3);
  EXPECT_EQ(tool_format_for_template("{% for m in messages %}{{ m.content }}{% endfor %}"), ToolFormat::Generic);
}

TEST(ParseToolReply, Hermes) {
  const auto tools = test_tools();
  auto r = parse_tool_reply(ToolFormat::Hermes,
                            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
                            "</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>",
                            tools);
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.content, "Let me check.");
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments, R"({"city":"Oslo"})");
  EXPECT_EQ(r.calls[1].name, "now");
  EXPECT_EQ(r.calls[1].arguments, "{}");
  EXPECT_NE(r.calls[0].id, r.calls[1].id);
  EXPECT_EQ(r.calls[0].id.rfind("call_", 0), 0u);
  // Arguments written as a string holding JSON, and a last block without its closing tag.
  r = parse_tool_reply(ToolFormat::Hermes, "<tool_call>\n{\"name\": \"now\", \"arguments\": \"{\\\"tz\\\": 1}\"}", tools);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments, R"({"tz":1})");
  // Not calls: words, a block that is not JSON, an unknown function. All stay text.
  for (const std::string& text : {std::string("It is sunny."), std::string("<tool_call>\n{\"name\": \"get_weather\", \"argu"),
                                 std::string("<tool_call>\n{\"name\": \"launch\", \"arguments\": {}}\n</tool_call>")}) {
    r = parse_tool_reply(ToolFormat::Hermes, text, tools);
    EXPECT_TRUE(r.calls.empty()) << text;
    EXPECT_EQ(r.content, text);
  }
}

TEST(ParseToolReply, Llama3AndGeneric) {
  const auto tools = test_tools();
  auto r = parse_tool_reply(ToolFormat::Llama3, " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}\n", tools);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments, R"({"city":"Rome"})");
  EXPECT_EQ(r.content, "");
  r = parse_tool_reply(ToolFormat::Llama3, "<|python_tag|>{\"name\": \"now\", \"parameters\": {}}", tools);
  EXPECT_EQ(r.calls.size(), 1u);
  r = parse_tool_reply(ToolFormat::Llama3, "{\"name\": \"Bob\", \"age\": 3}", tools);  // JSON, but no call
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(r.content, "{\"name\": \"Bob\", \"age\": 3}");

  r = parse_tool_reply(ToolFormat::Generic, "{\"tool_call\": {\"name\": \"now\", \"arguments\": {}}}", tools);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "now");
  r = parse_tool_reply(ToolFormat::Generic, "{\"response\": \"It is \\\"sunny\\\".\"}", tools);
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(r.content, "It is \"sunny\".");
}

bool grammar_accepts(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  GrammarState s(g);
  return s.advance(text) && s.can_end();
}

TEST(ToolReplyGrammar, ForcesAWellFormedCall) {
  const auto tools = test_tools();
  auto hermes = tool_reply_grammar(ToolFormat::Hermes, tools, true, /*parallel=*/true);
  EXPECT_TRUE(grammar_accepts(hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"unit\": \"c\"}}\n</tool_call>"));
  EXPECT_TRUE(grammar_accepts(hermes, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
                                      "{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(grammar_accepts(hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"));  // city missing
  EXPECT_FALSE(grammar_accepts(hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"O\", \"unit\": \"k\"}}\n</tool_call>"));
  EXPECT_FALSE(grammar_accepts(hermes, "<tool_call>\n{\"name\": \"launch\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(grammar_accepts(hermes, "Sure!"));
  auto single = tool_reply_grammar(ToolFormat::Hermes, tools, true, /*parallel=*/false);
  EXPECT_FALSE(grammar_accepts(single, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
                                       "{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));

  auto llama = tool_reply_grammar(ToolFormat::Llama3, tools, true, false);
  EXPECT_TRUE(grammar_accepts(llama, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}"));
  EXPECT_FALSE(grammar_accepts(llama, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}"));

  auto generic_auto = tool_reply_grammar(ToolFormat::Generic, tools, false, false);
  EXPECT_TRUE(grammar_accepts(generic_auto, "{\"tool_call\": {\"name\": \"now\", \"arguments\": {}}}"));
  EXPECT_TRUE(grammar_accepts(generic_auto, "{\"response\": \"hello\"}"));
  auto generic_required = tool_reply_grammar(ToolFormat::Generic, tools, true, false);
  EXPECT_FALSE(grammar_accepts(generic_required, "{\"response\": \"hello\"}"));

  // A parameters schema that cannot be enforced is an error naming the keyword.
  std::vector<ToolSpec> bad = {{"f", "", ojson::parse(R"({"type": "object", "properties": {"s": {"type": "string", "pattern": "a"}}})")}};
  try {
    tool_reply_grammar(ToolFormat::Hermes, bad, true, false);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pattern"), std::string::npos) << e.what();
  }
}

TEST(ToolMessages, GenericKeepsTurnsAlternating) {
  const ojson messages = ojson::parse(R"([
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
    {"role": "user", "content": "And tomorrow?"}])");
  const ojson out = messages_for_template(ToolFormat::Generic, messages, test_tools());
  ASSERT_EQ(out.size(), 3u) << out.dump(1);
  EXPECT_EQ(out[0]["role"], "user");
  EXPECT_NE(out[0]["content"].get<std::string>().find("get_weather: The weather in a city"), std::string::npos);
  EXPECT_EQ(out[1]["role"], "assistant");
  EXPECT_EQ(out[1]["content"], R"({"tool_call":{"name":"get_weather","arguments":{"city":"Oslo"}}})");
  EXPECT_EQ(out[2]["role"], "user");
  EXPECT_EQ(out[2]["content"], "Tool result:\nrain\n\nAnd tomorrow?");
  // The other formats keep the messages, with arguments as objects for the templates' tojson.
  const ojson kept = messages_for_template(ToolFormat::Hermes, messages, test_tools());
  EXPECT_EQ(kept.size(), 4u);
  EXPECT_TRUE(kept[1]["tool_calls"][0]["function"]["arguments"].is_object());
}

// Fed a few bytes at a time (as tokens arrive): what streams, and what the end adds.
struct Streamed {
  std::string streamed;
  ToolReply last;
};
Streamed stream_in_pieces(ToolFormat f, const std::string& text, size_t piece, bool finished = true) {
  ToolReplyStream s(f, test_tools());
  Streamed out;
  for (size_t i = 0; i < text.size(); i += piece) out.streamed += s.push(text.substr(i, piece));
  out.last = s.finish(finished);
  return out;
}

TEST(ToolReplyStream, ContentStreamsAndCallsComeWhole) {
  const std::string call = "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>";
  for (size_t piece : {1, 3, 7, 1000}) {
    auto r = stream_in_pieces(ToolFormat::Hermes, "Hello there, a < b.", piece);
    EXPECT_EQ(r.streamed + r.last.content, "Hello there, a < b.") << piece;
    EXPECT_TRUE(r.last.calls.empty());

    r = stream_in_pieces(ToolFormat::Hermes, call, piece);
    EXPECT_EQ(r.streamed, "") << piece;
    ASSERT_EQ(r.last.calls.size(), 1u);
    EXPECT_EQ(r.last.content, "");

    r = stream_in_pieces(ToolFormat::Hermes, "\n\n" + call, piece);
    EXPECT_EQ(r.streamed, "") << piece;  // leading whitespace waits: a reply of only calls has no content
    EXPECT_EQ(r.last.calls.size(), 1u);

    r = stream_in_pieces(ToolFormat::Hermes, "Let me check.\n" + call, piece);
    EXPECT_EQ(r.streamed, "Let me check.\n") << piece;
    EXPECT_EQ(r.last.calls.size(), 1u);
    EXPECT_EQ(r.last.content, "");

    // Cut short inside a tag: what was held comes out as content.
    r = stream_in_pieces(ToolFormat::Hermes, "x <tool", piece, /*finished=*/false);
    EXPECT_EQ(r.streamed + r.last.content, "x <tool") << piece;
    EXPECT_TRUE(r.last.calls.empty());

    r = stream_in_pieces(ToolFormat::Llama3, "{\"name\": \"now\", \"parameters\": {}}", piece);
    EXPECT_EQ(r.streamed, "");
    EXPECT_EQ(r.last.calls.size(), 1u);
    r = stream_in_pieces(ToolFormat::Llama3, "Sure, here it is.", piece);
    EXPECT_EQ(r.streamed + r.last.content, "Sure, here it is.");
    EXPECT_FALSE(r.streamed.empty());

    r = stream_in_pieces(ToolFormat::Generic, "{\"response\": \"hi\"}", piece);
    EXPECT_EQ(r.streamed, "");
    EXPECT_EQ(r.last.content, "hi");
  }
}

class ToolTemplates : public ::testing::TestWithParam<const char*> {};

TEST_P(ToolTemplates, RenderToolsAndACallsHistory) {
  SLM_REQUIRE_FIXTURE(tmpl, std::string("fixtures/templates/") + GetParam());
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  auto file = GGUFFile::open(vocab.string());
  auto tok = Tokenizer::from_gguf(*file);
  ChatPrompt chat(*tok, test::read_text_file(tmpl));
  ojson messages = ojson::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "rain, 4 C"}])");
  const ToolFormat f = chat.tool_format();
  // Gemma 2's template has no system role (it raises): the tool list then goes into the first
  // user turn.
  if (std::string(GetParam()).find("gemma") != std::string::npos) messages.erase(messages.begin());
  const ojson msgs = messages_for_template(f, messages, test_tools());
  const std::string text = f == ToolFormat::Generic ? chat.render(msgs) : chat.render(msgs, tools_for_template(test_tools()));
  EXPECT_NE(text.find("rain, 4 C"), std::string::npos) << text;
  EXPECT_NE(text.find("get_weather"), std::string::npos) << text;
  EXPECT_NE(text.find("Oslo"), std::string::npos) << text;
  switch (f) {
    case ToolFormat::Hermes:
      EXPECT_NE(text.find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"),
                std::string::npos) << text;
      EXPECT_NE(text.find("<tool_response>\nrain, 4 C\n</tool_response>"), std::string::npos) << text;
      break;
    case ToolFormat::Llama3:
      EXPECT_NE(text.find("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}"), std::string::npos) << text;
      EXPECT_NE(text.find("<|start_header_id|>ipython<|end_header_id|>"), std::string::npos) << text;
      break;
    case ToolFormat::Generic:
      EXPECT_NE(text.find("{\"tool_call\":{\"name\":\"get_weather\""), std::string::npos) << text;
      EXPECT_NE(text.find("Tool result:\nrain, 4 C"), std::string::npos) << text;
      EXPECT_NE(text.find("- get_weather: The weather in a city"), std::string::npos) << text;
      break;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ToolTemplates,
                         ::testing::Values("Qwen-Qwen2.5-7B-Instruct.jinja", "meta-llama-Llama-3.2-3B-Instruct.jinja",
                                           "google-gemma-2-2b-it.jinja", "microsoft-Phi-3.5-mini-instruct.jinja"));

}  // namespace
}  // namespace slm
