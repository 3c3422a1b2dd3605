// Tool (function) calls, the OpenAI API's `tools`: how a chat template shows the model its
// tools and how the model's reply is read back as calls. Three formats, picked from the
// template's text as llama.cpp does:
//
//   Hermes   (Qwen2.5, and templates that write <tool_call>): the template lists the tools;
//            the model writes <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>,
//            one block per call, possibly after some text.
//   Llama3   (Llama 3.1/3.2: "ipython", `"parameters": dictionary`): the template lists the
//            tools; the whole reply is {"name": ..., "parameters": {...}}.
//   Generic  (every other template: Gemma 2, Phi-3, ...): slm writes the tool list and the
//            reply format into the first message, and the reply is always constrained to
//            {"tool_call": {"name": ..., "arguments": {...}}} or {"response": "..."}.
//
// When the request requires a call (tool_choice "required" or a named function), the reply is
// constrained to that format with each tool's parameters schema (sampling/json_schema.h), so
// the arguments always parse and fit the schema.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sampling/grammar.h"

namespace slm {

enum class ToolFormat { Hermes, Llama3, Generic };
const char* tool_format_name(ToolFormat f);
// The format a chat template's source expects (see above).
ToolFormat tool_format_for_template(const std::string& source);

struct ToolSpec {
  std::string name, description;
  nlohmann::ordered_json parameters;  // a JSON schema (an object schema; {} when not given)
};

struct ToolCall {
  std::string id;         // "call_..." (made up by the server: models do not write one)
  std::string name;
  std::string arguments;  // JSON text of an object, as the API sends it
};

struct ToolReply {
  std::string content;  // text outside the calls (may be empty)
  std::vector<ToolCall> calls;
};

// Reads a reply in format f. Text that is not a well-formed call for one of `tools` stays
// content (a model that meant to answer in words is not turned into a broken call).
ToolReply parse_tool_reply(ToolFormat f, const std::string& text, const std::vector<ToolSpec>& tools);
// The same for a reply as generation left it: one cut short (finished false: the token limit,
// a cancel) is never read as a call, whatever it holds.
ToolReply read_tool_reply(ToolFormat f, const std::string& text, const std::vector<ToolSpec>& tools, bool finished);

// The grammar a reply must follow: with `required`, a call to one of `tools` (several in a row
// for Hermes with `parallel`); without it (Generic only: the other formats need none), a call
// or {"response": text}. Throws slm::Error when a parameters schema cannot be enforced.
std::shared_ptr<const Grammar> tool_reply_grammar(ToolFormat f, const std::vector<ToolSpec>& tools, bool required,
                                                  bool parallel);

// The messages as the template should see them. Hermes and Llama3 templates take assistant
// tool_calls (with arguments as JSON objects) and "tool" messages as they are; for Generic,
// calls become the JSON reply the model was asked for, tool results a user message, and the
// tool list and reply format go into the system message (or the first user message, for
// templates without a system role).
nlohmann::ordered_json messages_for_template(ToolFormat f, const nlohmann::ordered_json& messages,
                                             const std::vector<ToolSpec>& tools);
// The `tools` value the template gets: [{"type": "function", "function": {...}}].
nlohmann::ordered_json tools_for_template(const std::vector<ToolSpec>& tools);

// Streams a tool-mode reply as it is generated: text that cannot be (part of) a call goes out
// at once, the rest is held until the reply is whole. Hermes: text before a <tool_call> block
// streams (a tail that could begin "<tool_call>" is held back); Llama3: a reply that does not
// start like a call ({ or <|python_tag|>) streams whole; Generic: nothing streams (the reply is
// JSON).
class ToolReplyStream {
 public:
  ToolReplyStream(ToolFormat f, std::vector<ToolSpec> tools) : f_(f), tools_(std::move(tools)) {}
  // Adds generated text; returns the content that may be sent now.
  std::string push(const std::string& text);
  // The reply read back once whole (finished: whether generation ended normally); its content
  // less what push() already returned, for the last delta.
  ToolReply finish(bool finished);

 private:
  ToolFormat f_;
  std::vector<ToolSpec> tools_;
  std::string text_;     // everything generated
  size_t sent_ = 0;      // bytes of text_ already returned as content
  bool holding_ = false; // a call has begun (or may have): nothing more streams
};

// "call_" + 24 random letters and digits.
std::string new_tool_call_id();

}  // namespace slm
