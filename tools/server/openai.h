// The OpenAI API's request and response shapes (chat completions, completions, errors), kept
// apart from the HTTP plumbing so that each field's checks and each response's layout can be
// read in one place.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/infill.h"
#include "runtime/scheduler.h"
#include "runtime/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace slm::server {

using json = nlohmann::ordered_json;

// A request the API refuses: HTTP status and the OpenAI error object's fields.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = {});
  int status;
  std::string param, code, type;
};

// {"error": {"message", "type", "param", "code"}}; type defaults by status.
json error_body(int status, const std::string& message, const std::string& param = {},
                const std::string& code = {}, const std::string& type = {});
// JSON text for the wire: bytes that are not UTF-8 (a token's piece of a character) are
// replaced rather than throwing.
std::string dump(const json& j);

// Sampling a request gets for the fields it leaves out (also what GET /props reports).
inline constexpr double kDefaultTemperature = 0.8, kDefaultTopP = 0.95, kDefaultMinP = 0.05;
inline constexpr int kDefaultTopK = 40;

// POST /v1/completions, /v1/chat/completions, or llama.cpp's own /completion and /infill.
enum class Endpoint { Completions, Chat, Native, Infill };

struct CompletionRequest {
  bool chat = false;
  bool native = false;  // /completion or /infill: llama.cpp's field names and response shape
  bool infill = false;  // /infill
  // chat: normalized to [{role, content: string}], plus tool_calls on assistant messages and
  // tool_call_id (and name) on "tool" messages
  json messages;
  std::string prompt;  // completions
  // /completion: the prompt as token ids (llama.cpp takes them), and whether special-token
  // text in a string prompt is parsed (as llama.cpp's /completion does; /v1/completions never).
  std::vector<int32_t> prompt_ids;
  bool parse_special = false;
  // Fill-in-the-middle: /infill (input_prefix, input_suffix, input_extra, prompt), or a
  // completion with a 'suffix' (the prompt is the prefix).
  std::optional<InfillInput> fill;
  bool fill_truncated = false;  // set when the prompt is built: part of the input did not fit
  GenerationRequest gen;  // everything but the prompt tokens
  bool stream = false, include_usage = false;
  bool logprobs = false;
  bool echo = false;  // completions: the answer's text starts with the prompt
  // Tool calls (chat only): the tools offered, and tool_choice: "auto", "none", "required",
  // or the name of the one function the model must call.
  std::vector<ToolSpec> tools;
  std::string tool_choice = "auto";
  std::string tool_choice_name;
  bool parallel_tool_calls = true;
  bool tool_mode() const { return !tools.empty() && tool_choice != "none"; }
  json logit_bias;  // as sent (null: none); resolve_logit_bias() turns it into token ids
  // Chat: extra template variables (llama.cpp's chat_template_kwargs, e.g. enable_thinking),
  // and how a reply's <think> part is returned: "" (the server's --reasoning-format), "none"
  // (left in the content), "deepseek" or "auto" (as message.reasoning_content).
  json template_kwargs = json::object();
  std::string reasoning_format;
  bool reasoning_open = false;  // set when the prompt is built: it ends inside <think>
};

// Parses and checks a body. Throws ApiError (400) naming the offending field.
CompletionRequest parse_completion_request(const std::string& body, Endpoint endpoint);
// A request body as a JSON object (nesting bounded). Throws ApiError (400).
json parse_json_body(const std::string& body);
// 'logit_bias' as the OpenAI API sends it ({"token id": bias}, bias in -100..100) or as
// llama.cpp's server takes it too ([[token id or text, bias or false], ...]; a text biases
// each of its tokens, false bans). Throws ApiError (400) naming what is wrong.
std::vector<std::pair<int32_t, float>> resolve_logit_bias(const json& v, const Tokenizer& tok);

// What one response is made of, for both the whole and the streamed forms.
struct ResponseMeta {
  std::string id, model;
  int64_t created = 0;
  bool chat = false;
};

// The API's finish_reason for the scheduler's: a request cut short (cancelled) ends as "stop".
std::string api_finish_reason(const std::string& reason);
json usage_json(const RequestEvents& fin);
json logprobs_json(bool chat, const std::vector<TokenLogprob>& lp, size_t text_offset);
// The non-streamed response.
// With `tools` (a request in tool mode), the reply as read back: content and tool_calls, and
// finish_reason "tool_calls" when there are calls.
// `reasoning`: the reply's reasoning, split from its content (message.reasoning_content, left
// out when empty).
json full_response(const ResponseMeta& m, const std::string& text, const std::vector<TokenLogprob>& lp,
                   bool want_logprobs, const RequestEvents& fin, const ToolReply* tools = nullptr,
                   const std::string& reasoning = {});
// A streamed chat chunk of reasoning text (delta.reasoning_content, as llama-server sends it).
json reasoning_chunk(const ResponseMeta& m, const std::string& text, bool include_usage);
// The chunk of a streamed tool-mode reply that carries it whole (sent once generation ends).
json tool_reply_chunk(const ResponseMeta& m, const ToolReply& reply, bool include_usage);
// The API's tool_calls array.
json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index);
// One streamed chunk: text (may be empty), the role on the first chat chunk, finish_reason on
// the last; with include_usage every chunk carries "usage": null, as OpenAI's do.
json stream_chunk(const ResponseMeta& m, const std::string& text, const std::vector<TokenLogprob>* lp,
                  bool first, const std::string& finish_reason, bool include_usage, size_t text_offset);
json usage_chunk(const ResponseMeta& m, const RequestEvents& fin);

}  // namespace slm::server
