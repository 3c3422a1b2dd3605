// The OpenAI API's request and response shapes (chat completions, completions, errors), kept
// apart from the HTTP plumbing so that each field's checks and each response's layout can be
// read in one place.
#pragma once
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/scheduler.h"

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

struct CompletionRequest {
  bool chat = false;
  json messages;       // chat: normalized to [{role, content: string}]
  std::string prompt;  // completions
  GenerationRequest gen;  // everything but the prompt tokens
  bool stream = false, include_usage = false;
  bool logprobs = false;
};

// Parses and checks a body. Throws ApiError (400) naming the offending field.
CompletionRequest parse_completion_request(const std::string& body, bool chat);

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
json full_response(const ResponseMeta& m, const std::string& text, const std::vector<TokenLogprob>& lp,
                   bool want_logprobs, const RequestEvents& fin);
// One streamed chunk: text (may be empty), the role on the first chat chunk, finish_reason on
// the last; with include_usage every chunk carries "usage": null, as OpenAI's do.
json stream_chunk(const ResponseMeta& m, const std::string& text, const std::vector<TokenLogprob>* lp,
                  bool first, const std::string& finish_reason, bool include_usage, size_t text_offset);
json usage_chunk(const ResponseMeta& m, const RequestEvents& fin);

}  // namespace slm::server
