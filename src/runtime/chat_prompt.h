// A conversation to prompt tokens through a chat template (the model's own
// tokenizer.chat_template or one the user names): shared by `slm chat` and `slm serve`, so
// both build exactly the same prompt for the same messages.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/jinja.h"
#include "runtime/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace slm {

class ChatPrompt {
 public:
  // Throws slm::Error when the template does not parse (the message says where).
  ChatPrompt(const Tokenizer& tok, const std::string& source);
  // The model's own template, or the one `template_file` names when it is not empty: a file,
  // else a built-in name (builtin_names()), else the text of a Jinja template (llama.cpp's
  // --chat-template takes the last two). Throws slm::Error when the model has none and none is
  // given, or the argument is none of those.
  static ChatPrompt for_model(const Tokenizer& tok, const GGUFFile& gguf, const std::string& template_file,
                              const std::string& model_path);
  // The built-in templates, as llama.cpp names them: chatml, llama3, phi3, gemma.
  static std::string builtin_names();
  static const char* builtin_source(const std::string& name);  // null: no such name

  // Renders `messages` (an array of {role, content}) with add_generation_prompt. Throws
  // slm::Error, with "chat template refused the conversation: ..." when the template raises.
  std::string render(const nlohmann::ordered_json& messages) const;
  // The same with the template's `tools` variable set (tool calls, runtime/tool_calls.h).
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) const;
  // The same with extra variables (llama.cpp's chat_template_kwargs, e.g. Qwen3's
  // enable_thinking): `kwargs` over the defaults of set_template_kwargs(), the standard
  // variables (messages, tools when not null, add_generation_prompt, bos/eos_token) over both.
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json* tools,
                     const nlohmann::ordered_json& kwargs) const;
  // Variables every render() sees (slm serve --chat-template-kwargs, --reasoning-budget 0).
  // Throws slm::Error unless `kwargs` is a JSON object.
  void set_template_kwargs(nlohmann::ordered_json kwargs);
  // Those variables from llama.cpp's options: --chat-template-kwargs (a JSON object's text, may
  // be empty) and --reasoning-budget (0: enable_thinking false; -1: as the template does).
  // Throws slm::Error naming the option.
  static nlohmann::ordered_json template_kwargs_from_options(const std::string& json_text, int reasoning_budget);
  // The template's text (the file's, the built-in's, or the model's).
  const std::string& source() const { return source_; }
  // How this template shows tools to the model and how its replies are read back.
  ToolFormat tool_format() const { return tool_format_; }
  // Prompt tokens: special-token text parsed, BOS added when the model wants one and the
  // template did not write it.
  std::vector<int32_t> tokenize(const std::string& rendered) const;

  // A conversation that has outgrown the context, made to fit as ollama does: the oldest
  // turns (a user message and the replies after it) leave `messages` until the rendered prompt
  // leaves `room` tokens of n_ctx free for the reply. System messages and the last user
  // message always stay; when they alone do not fit, `fits` is false (and `tokens` theirs).
  // Throws slm::Error as render() does.
  struct Fitted {
    std::vector<int32_t> tokens;
    size_t dropped = 0;  // messages left out
    bool fits = true;
  };
  Fitted fit(nlohmann::ordered_json& messages, int64_t n_ctx, int64_t room) const;

 private:
  const Tokenizer* tok_;
  chat::Template tmpl_;
  std::string bos_, eos_;
  std::string source_;
  ToolFormat tool_format_;
  nlohmann::ordered_json kwargs_ = nlohmann::ordered_json::object();
  std::string render_context(nlohmann::ordered_json context) const;
};

}  // namespace slm
