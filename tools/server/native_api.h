// llama.cpp's own server API beside the OpenAI one, for the tools written against it:
// /completion and /infill answers ({"content", "stop", "tokens_predicted", "timings", ...},
// streamed as {"content", "stop": false} events without [DONE]), /tokenize and /detokenize.
#pragma once
#include <string>

#include "openai.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace slm::server {

// The whole answer, or with `fin` null a streamed piece. Timings from the scheduler: prompt_ms
// from submission to the first generated token, predicted_ms from there to the end.
json native_response(const ResponseMeta& m, const std::string& text, const RequestEvents* fin, bool truncated);

// POST /tokenize {"content", "add_special": false, "parse_special": true, "with_pieces": false}
// -> {"tokens": [id, ...]} or, with pieces, [{"id", "piece"}] (a piece that is not whole UTF-8
// as its bytes). Throws ApiError (400).
json tokenize_response(const Tokenizer& tok, const std::string& body);
// POST /detokenize {"tokens": [id, ...]} -> {"content"}. Throws ApiError (400) for an id
// outside the vocabulary.
json detokenize_response(const Tokenizer& tok, const std::string& body);

}  // namespace slm::server
