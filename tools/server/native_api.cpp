#include "native_api.h"

#include "core/error.h"

namespace slm::server {

json native_response(const ResponseMeta& m, const std::string& text, const RequestEvents* fin, bool truncated) {
  if (!fin) return {{"index", 0}, {"content", text}, {"stop", false}};
  const bool word = !fin->stop_word.empty();
  const int evaluated = fin->prompt_tokens - fin->cached_tokens;
  auto per_second = [](int n, double ms) { return ms > 0 ? 1000.0 * n / ms : 0.0; };
  return {{"index", 0},
          {"content", text},
          {"stop", true},
          {"model", m.model},
          {"tokens_predicted", fin->completion_tokens},
          {"tokens_evaluated", fin->prompt_tokens},
          {"tokens_cached", fin->prompt_tokens + fin->completion_tokens},
          {"truncated", truncated},
          {"has_new_line", text.find('\n') != std::string::npos},
          {"stop_type", fin->finish_reason == "length" ? "limit" : word ? "word" : "eos"},
          {"stopping_word", fin->stop_word},
          {"timings",
           {{"cache_n", fin->cached_tokens},
            {"prompt_n", evaluated},
            {"prompt_ms", fin->prompt_ms},
            {"prompt_per_second", per_second(evaluated, fin->prompt_ms)},
            {"predicted_n", fin->completion_tokens},
            {"predicted_ms", fin->generation_ms},
            {"predicted_per_second", per_second(fin->completion_tokens, fin->generation_ms)}}}};
}

namespace {

bool flag(const json& body, const char* name, bool def) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return def;
  if (!it->is_boolean()) throw ApiError(400, std::string("'") + name + "' must be true or false", name, "invalid_value");
  return it->get<bool>();
}

// Whether `s` is whole UTF-8 (the JSON writer refuses anything else).
bool whole_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

}  // namespace

json tokenize_response(const Tokenizer& tok, const std::string& text) {
  const json body = parse_json_body(text);
  auto content = body.find("content");
  if (content == body.end() || !content->is_string())
    throw ApiError(400, "'content' is required and must be a string", "content", "missing_required_parameter");
  // llama.cpp's defaults: no BOS, special-token text parsed.
  const std::vector<int32_t> ids = tok.encode(content->get<std::string>(), flag(body, "add_special", false),
                                              flag(body, "parse_special", true));
  if (!flag(body, "with_pieces", false)) return {{"tokens", ids}};
  json tokens = json::array();
  for (const int32_t id : ids) {
    const std::string piece = tok.token_to_piece(id, /*render_special=*/true);
    json p;
    if (whole_utf8(piece)) {
      p = piece;
    } else {
      p = json::array();
      for (unsigned char c : piece) p.push_back(static_cast<int>(c));
    }
    tokens.push_back({{"id", id}, {"piece", std::move(p)}});
  }
  return {{"tokens", std::move(tokens)}};
}

json detokenize_response(const Tokenizer& tok, const std::string& text) {
  const json body = parse_json_body(text);
  auto tokens = body.find("tokens");
  if (tokens == body.end() || !tokens->is_array())
    throw ApiError(400, "'tokens' is required and must be an array of token ids", "tokens", "missing_required_parameter");
  std::vector<int32_t> ids;
  for (const json& t : *tokens) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.n_vocab())
      throw ApiError(400, "'tokens' holds " + t.dump() + ", not a token id of this model (0.." +
                              std::to_string(tok.n_vocab() - 1) + ")", "tokens", "invalid_value");
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return {{"content", tok.decode(ids, /*render_special=*/true)}};
}

}  // namespace slm::server
