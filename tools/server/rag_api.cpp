#include "rag_api.h"

#include <cstring>

namespace slm::server {

namespace {

constexpr size_t kMaxInputs = 2048;

std::vector<int32_t> token_array(const json& a, const std::string& param) {
  std::vector<int32_t> ids;
  for (const json& v : a) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      throw ApiError(400, "token ids must be non-negative integers", param);
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  if (ids.empty()) throw ApiError(400, "an input must not be empty", param);
  return ids;
}

json parse_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the body must be a JSON object");
  return j;
}

}  // namespace

EmbeddingsRequest parse_embeddings_request(const std::string& body, int64_t dim) {
  const json j = parse_object(body);
  if (!j.contains("input")) throw ApiError(400, "'input' is required: a string or an array of strings", "input");
  EmbeddingsRequest r;
  const json& in = j["input"];
  if (in.is_string()) {
    r.texts.push_back(in.get<std::string>());
  } else if (in.is_array()) {
    if (in.empty()) throw ApiError(400, "'input' must not be an empty array", "input");
    if (in.size() > kMaxInputs && !in[0].is_number())
      throw ApiError(400, "'input' holds " + std::to_string(in.size()) + " items; at most 2048 per request", "input");
    if (in[0].is_number()) {
      r.token_ids.push_back(token_array(in, "input"));
    } else {
      for (size_t i = 0; i < in.size(); ++i) {
        const std::string param = "input[" + std::to_string(i) + "]";
        if (in[i].is_string()) {
          if (!r.token_ids.empty()) throw ApiError(400, "'input' mixes strings and token arrays", param);
          r.texts.push_back(in[i].get<std::string>());
        } else if (in[i].is_array()) {
          if (!r.texts.empty()) throw ApiError(400, "'input' mixes strings and token arrays", param);
          r.token_ids.push_back(token_array(in[i], param));
        } else {
          throw ApiError(400, "each input must be a string or an array of token ids", param);
        }
      }
    }
  } else {
    throw ApiError(400, "'input' must be a string or an array of strings", "input");
  }
  for (size_t i = 0; i < r.texts.size(); ++i)
    if (r.texts[i].empty()) throw ApiError(400, "an input must not be an empty string", "input");
  if (j.contains("encoding_format")) {
    const json& f = j["encoding_format"];
    if (!f.is_string() || (f != "float" && f != "base64"))
      throw ApiError(400, "'encoding_format' must be \"float\" or \"base64\"", "encoding_format");
    r.base64 = f == "base64";
  }
  if (j.contains("dimensions") && !j["dimensions"].is_null()) {
    const json& d = j["dimensions"];
    if (!d.is_number_integer() || d.get<int64_t>() != dim)
      throw ApiError(400, "this model's embeddings have " + std::to_string(dim) +
                              " dimensions and cannot be shortened; leave 'dimensions' out or give " + std::to_string(dim),
                     "dimensions");
  }
  if (j.contains("model") && !j["model"].is_string()) throw ApiError(400, "'model' must be a string", "model");
  return r;
}

std::string base64_floats(const std::vector<float>& v) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(v.size() * sizeof(float), '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &v[i], 4);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + static_cast<size_t>(b)] = static_cast<char>((u >> (8 * b)) & 0xFF);
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t a = static_cast<unsigned char>(bytes[i]);
    const uint32_t b = i + 1 < bytes.size() ? static_cast<unsigned char>(bytes[i + 1]) : 0;
    const uint32_t c = i + 2 < bytes.size() ? static_cast<unsigned char>(bytes[i + 2]) : 0;
    const uint32_t t = (a << 16) | (b << 8) | c;
    out += kAlphabet[(t >> 18) & 63];
    out += kAlphabet[(t >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(t >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[t & 63] : '=';
  }
  return out;
}

json embeddings_response(const std::vector<std::vector<float>>& vectors, bool base64, const std::string& model,
                         int64_t prompt_tokens) {
  json data = json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    json e = {{"object", "embedding"}, {"index", i}};
    if (base64) e["embedding"] = base64_floats(vectors[i]);
    else e["embedding"] = vectors[i];
    data.push_back(std::move(e));
  }
  return {{"object", "list"}, {"data", std::move(data)}, {"model", model},
          {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}};
}

SearchRequest parse_search_request(const std::string& body) {
  const json j = parse_object(body);
  if (!j.contains("query") || !j["query"].is_string())
    throw ApiError(400, "'query' is required and must be a string", "query");
  SearchRequest r;
  r.query = j["query"].get<std::string>();
  if (j.contains("k")) {
    if (!j["k"].is_number_integer() || j["k"].get<int64_t>() < 1 || j["k"].get<int64_t>() > 100)
      throw ApiError(400, "'k' must be an integer from 1 to 100", "k");
    r.k = j["k"].get<int>();
  }
  if (j.contains("mode")) {
    const json& m = j["mode"];
    if (!m.is_string() || (m != "bm25" && m != "vector" && m != "hybrid"))
      throw ApiError(400, "'mode' must be \"bm25\", \"vector\" or \"hybrid\"", "mode");
    r.mode = m.get<std::string>();
  }
  return r;
}

}  // namespace slm::server
