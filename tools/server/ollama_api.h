// ollama's API beside the OpenAI one, for the tools written against it (Open WebUI in ollama
// mode, Continue, LangChain's and LlamaIndex's Ollama classes): POST /api/chat and
// /api/generate (newline-delimited JSON, streamed unless "stream": false), GET /api/tags,
// POST /api/show, POST /api/embed. A request is translated into the OpenAI form that
// parse_completion_request checks, so both APIs share every limit and error; what ollama has
// and slm has not (images, "context" arrays) is refused with a message saying so.
#pragma once
#include <string>

#include "openai.h"

namespace slm::server {

// The body of an /api/chat (chat) or /api/generate request as the OpenAI API's JSON text, and
// the endpoint to parse it as. /api/generate renders the model's chat template with `system` and
// `prompt` unless "raw" is true or there is no template (then, as with "suffix", it is a plain
// completion). Throws ApiError (400) naming the ollama field.
struct OllamaRequest {
  std::string openai_body;
  Endpoint endpoint = Endpoint::Completions;
  bool stream = true;  // ollama streams unless told not to
  // "think": true: the reply's <think> part goes to "thinking" (and the template is told
  // enable_thinking); false: the template is told not to think.
  bool think = false;
};
OllamaRequest ollama_request(const std::string& body, bool chat, bool has_template);

// One streamed line's object (text so far since the last one), or with `fin` the last one:
// done, done_reason and the counts and durations (nanoseconds) ollama reports. `chat`:
// {"message": {"role", "content"}}, else {"response"}.
json ollama_chunk(bool chat, const std::string& model, const std::string& text, const RequestEvents* fin);

// {"error": message}: ollama's error body.
json ollama_error(const std::string& message);

// A reply's tool calls as ollama writes them: [{"function": {"name", "arguments": {object}}}].
json ollama_tool_calls(const std::vector<ToolCall>& calls);

}  // namespace slm::server
