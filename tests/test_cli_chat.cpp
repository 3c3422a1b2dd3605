// slm chat end to end on each of the four architectures: a two-turn conversation fed through
// stdin; the prompt slm builds each turn must equal the chat template's own rendering.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "chat/jinja.h"
#include "core/gguf.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "tokenizer/tokenizer.h"

namespace {

using slm::test::run_cli;

// Text between `open` and `close` lines, for each occurrence.
std::vector<std::string> blocks(const std::string& s, const std::string& open, const std::string& close) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = s.find(open + "\n", pos)) != std::string::npos) {
    pos += open.size() + 1;
    const size_t end = s.find("\n" + close + "\n", pos);
    if (end == std::string::npos) break;
    out.push_back(s.substr(pos, end - pos));
    pos = end + close.size() + 2;
  }
  return out;
}

struct ChatCase {
  const char* model;     // under shared/
  const char* tmpl;      // template file under shared/, or "" for the GGUF's own
  const char* system;    // system message or ""
};

class CliChat : public testing::TestWithParam<ChatCase> {};

std::string family_name(const testing::TestParamInfo<ChatCase>& info) {
  const std::string m = std::filesystem::path(info.param.model).filename().string();
  return m.substr(0, m.find('-'));
}

TEST_P(CliChat, TwoTurnsUseTheTemplatesRendering) {
  const ChatCase& c = GetParam();
  SLM_REQUIRE_FIXTURE(model, c.model);
  std::string source;
  std::vector<std::string> args = {"chat", "-m", model.string(), "-n", "6", "--temp", "0", "--show-prompt"};
  if (*c.tmpl) {
    SLM_REQUIRE_FIXTURE(tmpl, c.tmpl);
    source = slm::test::read_text_file(tmpl);
    args.push_back("--chat-template");
    args.push_back(tmpl.string());
  } else {
    source = slm::GGUFFile::open(model.string())->get_string("tokenizer.chat_template");
  }
  if (*c.system) {
    args.push_back("--system");
    args.push_back(c.system);
  }
  const std::string input = "What is the capital of France?\nAnd of Italy?\n";
  const auto r = run_cli(args, 120.0, &input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto prompts = blocks(r.err, "<<<PROMPT", "PROMPT>>>");
  const auto replies = blocks(r.err, "<<<REPLY", "REPLY>>>");
  ASSERT_EQ(prompts.size(), 2u) << r.err;
  ASSERT_EQ(replies.size(), 2u) << r.err;
  EXPECT_EQ(r.out, replies[0] + "\n" + replies[1] + "\n");

  auto gguf = slm::GGUFFile::open(model.string());
  auto tok = slm::Tokenizer::from_gguf(*gguf);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (*c.system) messages.push_back({{"role", "system"}, {"content", c.system}});
  const char* users[] = {"What is the capital of France?", "And of Italy?"};
  for (int turn = 0; turn < 2; ++turn) {
    messages.push_back({{"role", "user"}, {"content", users[turn]}});
    nlohmann::ordered_json ctx = {{"messages", messages}, {"add_generation_prompt", true},
                                  {"bos_token", tok->token_text(tok->bos())},
                                  {"eos_token", tok->token_text(tok->eos())}};
    EXPECT_EQ(prompts[turn], slm::chat::render_template(source, ctx)) << "turn " << turn;
    messages.push_back({{"role", "assistant"}, {"content", replies[turn]}});
  }
}

INSTANTIATE_TEST_SUITE_P(
    FourFamilies, CliChat,
    testing::Values(
        ChatCase{"fixtures/logits/llama-L2-E64-Q8_0.gguf", "fixtures/templates/meta-llama-Llama-3.2-3B-Instruct.jinja", "You are terse."},
        ChatCase{"fixtures/logits/qwen2-L2-E64-Q8_0.gguf", "fixtures/templates/Qwen-Qwen2.5-7B-Instruct.jinja", ""},
        ChatCase{"fixtures/logits/gemma2-L4-E64-Q8_0.gguf", "fixtures/templates/google-gemma-2-2b-it.jinja", ""},
        ChatCase{"fixtures/logits/phi3-L3-E64-Q8_0.gguf", "", "You are terse."}),
    family_name);

TEST(CliChat, ModelWithoutTemplateNeedsOne) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::string input = "hello\n";
  const auto r = run_cli({"chat", "-m", model.string()}, 60.0, &input);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--chat-template"), std::string::npos) << r.err;
}

TEST(CliChat, TemplateRaiseIsReported) {
  SLM_REQUIRE_FIXTURE(model, "fixtures/logits/gemma2-L4-E64-Q8_0.gguf");
  SLM_REQUIRE_FIXTURE(tmpl, "fixtures/templates/google-gemma-2-2b-it.jinja");
  const std::string input = "hello\n";
  // Gemma's template refuses a system role.
  const auto r = run_cli({"chat", "-m", model.string(), "--chat-template", tmpl.string(), "--system", "x"}, 60.0, &input);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("System role not supported"), std::string::npos) << r.err;
}

// A conversation longer than the context goes on, as in ollama: the oldest turns are left out
// (the system message and the newest message stay, user and assistant still alternate, as
// Gemma's template insists), and a message too long on its own is refused for that turn only.
TEST(CliChat, ALongConversationLeavesOutItsOldestTurns) {
  SLM_REQUIRE_FIXTURE(model, "fixtures/logits/llama-L2-E64-Q8_0.gguf");
  SLM_REQUIRE_FIXTURE(tmpl, "fixtures/templates/meta-llama-Llama-3.2-3B-Instruct.jinja");
  std::string input;
  for (int i = 1; i <= 8; ++i) input += "question number " + std::to_string(i) + " about the weather today\n";
  std::string huge;
  for (int i = 0; i < 300; ++i) huge += "word ";
  input += huge + "\nthe last question\n";
  const auto r = run_cli({"chat", "-m", model.string(), "--chat-template", tmpl.string(), "--system", "You are terse.",
                          "-c", "256", "-n", "24", "--temp", "0", "--show-prompt"},
                         120.0, &input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto prompts = blocks(r.err, "<<<PROMPT", "PROMPT>>>");
  const auto replies = blocks(r.err, "<<<REPLY", "REPLY>>>");
  ASSERT_EQ(prompts.size(), 9u) << r.err;  // every message but the one too long
  EXPECT_EQ(replies.size(), 9u);
  EXPECT_NE(r.err.find("oldest messages are left out"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("write a shorter message"), std::string::npos) << r.err;
  const std::string& last = prompts.back();
  EXPECT_NE(last.find("You are terse."), std::string::npos) << last;
  EXPECT_NE(last.find("the last question"), std::string::npos) << last;
  EXPECT_EQ(last.find("question number 1 "), std::string::npos) << "the first turn was left out: " << last;
  EXPECT_EQ(last.find("word word"), std::string::npos) << "the refused message is not in the conversation";
  // Each prompt fits with room for the reply (24 tokens) in the context of 256.
  auto tok = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(model.string()));
  for (const auto& p : prompts) EXPECT_LE(tok->encode(p, false, true).size() + 24, 256u) << p;
}

// A message that fits the context but leaves no room for the reply is refused, unless
// --context-shift lets the reply shift the context when it fills (llama-cli's conversation mode).
TEST(CliChat, ContextShiftAnswersAMessageThatLeavesNoRoomForTheReply) {
  SLM_REQUIRE_FIXTURE(model, "fixtures/logits/llama-L2-E64-Q8_0.gguf");
  SLM_REQUIRE_FIXTURE(tmpl, "fixtures/templates/meta-llama-Llama-3.2-3B-Instruct.jinja");
  std::string input;
  for (int i = 0; i < 110; ++i) input += "word ";
  input += "\n";
  const std::vector<std::string> args = {"chat", "-m", model.string(), "--chat-template", tmpl.string(), "-c", "256",
                                         "-n", "100", "--temp", "0", "--ignore-eos", "--show-prompt"};
  const auto refused = run_cli(args, 120.0, &input);
  ASSERT_EQ(refused.exit_code, 0) << refused.err;
  EXPECT_NE(refused.err.find("write a shorter message"), std::string::npos) << refused.err;
  std::vector<std::string> shifting = args;
  shifting.push_back("--context-shift");
  const auto answered = run_cli(shifting, 120.0, &input);
  ASSERT_EQ(answered.exit_code, 0) << answered.err;
  EXPECT_EQ(answered.err.find("write a shorter message"), std::string::npos) << answered.err;
  EXPECT_NE(answered.err.find("(256 tokens) 1 time: each time half"), std::string::npos) << answered.err;
  const auto replies = blocks(answered.err, "<<<REPLY", "REPLY>>>");
  ASSERT_EQ(replies.size(), 1u) << answered.err;
  auto tok = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(model.string()));
  EXPECT_GE(tok->encode(replies[0], false, false).size(), 80u) << "the whole reply, past the context: " << replies[0];
}

// Commands, as in `ollama run`: /system sets the system message, /clear forgets the turns (not
// the system message), "//" sends a line starting with "/", /bye ends; none reaches the model.
TEST(CliChat, SlashCommands) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::string tmpl = std::string(SLM_SOURCE_DIR) + "/tests/data/stories260K-chat.jinja";
  const std::string input = "Once upon a time\n/help\n/system Lily and the dog.\nThe end\n/clear\n//slash\n/oops\n/bye\nnot sent\n";
  const auto r = run_cli({"chat", "-m", model.string(), "--chat-template", tmpl, "-n", "8", "--temp", "0", "--show-prompt"},
                         60.0, &input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto prompts = blocks(r.err, "<<<PROMPT", "PROMPT>>>");
  ASSERT_EQ(prompts.size(), 3u) << r.err;
  EXPECT_EQ(prompts[0].find("Lily and the dog."), std::string::npos);
  EXPECT_EQ(prompts[1].rfind("<s>Lily and the dog.\nOnce upon a time", 0), 0u) << prompts[1];  // system first, turns kept
  EXPECT_NE(prompts[1].find("The end"), std::string::npos);
  EXPECT_EQ(prompts[2], "<s>Lily and the dog.\n/slash") << "cleared, system kept, // sent as /";
  EXPECT_NE(r.err.find("unknown command /oops"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("commands: /clear"), std::string::npos);
  for (const auto& p : prompts) EXPECT_EQ(p.find("not sent"), std::string::npos);
}

// --chat-template-kwargs and --reasoning-budget 0 (llama-cli's) reach the template: a thinking
// template then ends the prompt with an empty think block; bad values are one-line errors.
TEST(CliChat, TemplateKwargsAndReasoningBudget) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::string tmpl = std::string(SLM_SOURCE_DIR) + "/tests/data/templates/thinking-chatml.jinja";
  const std::string input = "Hi\n";
  auto prompt_with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"chat", "-m", model.string(), "--chat-template", tmpl, "-n", "4", "--temp", "0", "--show-prompt"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = run_cli(args, 60.0, &input);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto prompts = blocks(r.err, "<<<PROMPT", "PROMPT>>>");
    return prompts.empty() ? std::string() : prompts[0];
  };
  const std::string empty_think = "<|im_start|>assistant\n<think>\n\n</think>\n";
  EXPECT_EQ(prompt_with({}).find("<think>"), std::string::npos);
  EXPECT_NE(prompt_with({"--reasoning-budget", "0"}).find(empty_think), std::string::npos);
  EXPECT_NE(prompt_with({"--chat-template-kwargs", R"({"enable_thinking": false})"}).find(empty_think), std::string::npos);
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--chat-template-kwargs", "enable_thinking=false"},
                                              std::vector<std::string>{"--chat-template-kwargs", "[1]"},
                                              std::vector<std::string>{"--reasoning-budget", "100"}}) {
    std::vector<std::string> args = {"chat", "-m", model.string(), "--chat-template", tmpl};
    args.insert(args.end(), bad.begin(), bad.end());
    const auto r = run_cli(args, 60.0, &input);
    EXPECT_NE(r.exit_code, 0) << bad[1];
    EXPECT_NE(r.err.find(bad[0]), std::string::npos) << r.err;
  }
}

}  // namespace
