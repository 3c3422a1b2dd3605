// A reply's <think> part told apart from its answer (runtime/reasoning.h), whole and streamed in
// pieces of every size: the stream must give exactly what the whole reply gives, wherever the
// tags are cut.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/reasoning.h"

namespace {

using slm::ReasoningSplitter;

struct Case {
  std::string reply;
  bool open;
  std::string reasoning, content;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      // Qwen3 thinking: "<think>\n...\n</think>\n\n" then the answer.
      {"<think>\nThe user greets me.\nI greet back.\n</think>\n\nHello!", false,
       "The user greets me.\nI greet back.", "Hello!"},
      // No reasoning at all (thinking off, or a model that does not think).
      {"Hello! <think> is just text here.", false, "", "Hello! <think> is just text here."},
      {"  \nHello", false, "", "  \nHello"},
      // Leading whitespace before the tag.
      {"\n<think>a</think>b", false, "a", "b"},
      // The prompt opened the reasoning (DeepSeek-R1 distills): only </think> comes.
      {"\nsome thought\n</think>\n\nThe answer.", true, "some thought", "The answer."},
      // Cut off while thinking: what there is stays reasoning.
      {"<think>\nstill thinking ", false, "still thinking", ""},
      {"half a tag </thi", true, "half a tag </thi", ""},
      // An empty reasoning (Qwen3 sometimes writes one).
      {"<think>\n\n</think>\n\nDone.", false, "", "Done."},
      // Text that only looks like the start of a tag.
      {"<thin air", false, "", "<thin air"},
      {"<", false, "", "<"},
      {"", false, "", ""},
      // A second think block is part of the answer.
      {"<think>x</think>y<think>z</think>", false, "x", "y<think>z</think>"},
  };
  return c;
}

TEST(ReasoningSplitter, WholeReplies) {
  for (const Case& c : cases()) {
    const auto d = ReasoningSplitter::split(c.reply, c.open);
    EXPECT_EQ(d.reasoning, c.reasoning) << "reply: " << c.reply;
    EXPECT_EQ(d.content, c.content) << "reply: " << c.reply;
  }
}

TEST(ReasoningSplitter, StreamedInPiecesOfEverySizeGivesTheSame) {
  for (const Case& c : cases()) {
    for (size_t step = 1; step <= c.reply.size() + 1; ++step) {
      ReasoningSplitter s(c.open);
      std::string reasoning, content;
      for (size_t i = 0; i < c.reply.size(); i += step) {
        const auto d = s.push(std::string_view(c.reply).substr(i, step));
        reasoning += d.reasoning;
        content += d.content;
      }
      const auto end = s.finish();
      reasoning += end.reasoning;
      content += end.content;
      EXPECT_EQ(reasoning, c.reasoning) << "reply: " << c.reply << ", pieces of " << step;
      EXPECT_EQ(content, c.content) << "reply: " << c.reply << ", pieces of " << step;
    }
  }
}

// Reasoning text is given out as it comes (not held to the end), all but a possible cut tag.
TEST(ReasoningSplitter, ReasoningStreamsAsItComes) {
  ReasoningSplitter s;
  EXPECT_TRUE(s.push("<thi").empty());
  EXPECT_TRUE(s.push("nk>\n").empty());
  EXPECT_EQ(s.push("First step.").reasoning, "First step.");
  EXPECT_EQ(s.push(" Second </th").reasoning, " Second");
  const auto d = s.push("ink>\n\nAnswer");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "Answer");
  EXPECT_EQ(s.push(" goes on.").content, " goes on.");
}

TEST(ReasoningSplitter, PromptThatOpensTheReasoning) {
  EXPECT_TRUE(slm::prompt_opens_reasoning("<|im_start|>assistant\n<think>\n"));
  EXPECT_TRUE(slm::prompt_opens_reasoning("<｜Assistant｜><think>"));
  EXPECT_FALSE(slm::prompt_opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
  EXPECT_FALSE(slm::prompt_opens_reasoning("<|im_start|>assistant\n"));
  EXPECT_FALSE(slm::prompt_opens_reasoning(""));
}

}  // namespace
