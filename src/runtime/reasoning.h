// A reply's reasoning and its answer told apart, as llama-server's --reasoning-format deepseek
// does for thinking models (Qwen3, DeepSeek-R1 distills, ...): the text between <think> and
// </think> at the start of the reply is the reasoning, the rest the answer. Works piece by piece
// on streamed text, holding back only what may still turn out to be a tag.
#pragma once
#include <string>
#include <string_view>

namespace slm {

// Whether a rendered chat prompt leaves the model inside its reasoning: the template wrote the
// opening <think> itself (DeepSeek-R1 distills; Qwen3 with enable_thinking writes none, or an
// empty <think></think> when thinking is off).
bool prompt_opens_reasoning(std::string_view rendered_prompt);

class ReasoningSplitter {
 public:
  // open: the reply starts inside the reasoning (prompt_opens_reasoning).
  explicit ReasoningSplitter(bool open = false);

  struct Delta {
    std::string reasoning, content;
    bool empty() const { return reasoning.empty() && content.empty(); }
  };
  // The reasoning and answer text that `piece` completes; with `last`, what was held back too
  // (the reply ends there: an unclosed reasoning stays reasoning).
  Delta push(std::string_view piece, bool last = false);
  // What was held back, at the end of the reply.
  Delta finish();
  // Splits a whole reply.
  static Delta split(std::string_view reply, bool open = false);

 private:
  Delta take(std::string_view piece);  // push() without the end
  enum class State { Start, Reasoning, AfterReasoning, Content };
  State state_;
  std::string held_;  // text not yet given out: a possible tag, or trailing whitespace
  bool reasoning_started_ = false;  // leading newlines of the reasoning are dropped
};

}  // namespace slm
