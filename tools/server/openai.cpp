#include "openai.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <fmt/format.h>

#include <limits>
#include <random>

#include "core/error.h"
#include "sampling/sampler_stages.h"
#include "sampling/json_schema.h"

namespace slm::server {

namespace {

const char* default_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: case 503: return "server_overloaded";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  throw ApiError(400, message, param, code);
}

// Nesting deeper than this is refused before parsing: no chat request needs more, and it keeps
// a hostile body from costing a deep structure's memory and time.
constexpr int kMaxDepth = 64;

void check_depth(const std::string& body) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth)
        throw ApiError(400, "the JSON body is nested deeper than " + std::to_string(kMaxDepth) + " levels", {},
                       "invalid_json");
    } else if (c == ']' || c == '}') --depth;
  }
}

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& body, const char* name, double def, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) bad(name, std::string("'") + name + "' must be a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(name, std::string("'") + name + "' must be between " + fmt::format("{}", lo) + " and " + fmt::format("{}", hi) +
                  ", got " + v->dump());
  return x;
}

int64_t integer(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number_integer()) bad(name, std::string("'") + name + "' must be an integer, got " + v->dump());
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad(name, std::string("'") + name + "' is too large: " + v->dump());
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    bad(name, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                  ", got " + std::to_string(x));
  return x;
}

bool boolean(const json& body, const char* name, bool def) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_boolean()) bad(name, std::string("'") + name + "' must be true or false, got " + v->dump());
  return v->get<bool>();
}

std::string message_content(const json& m, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) {
    if (m.value("role", "") == "assistant") return {};
    bad(param, "'" + param + "' is missing", "missing_required_parameter");
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) bad(param, "'" + param + "' must be a string or an array of text parts");
  std::string out;
  for (size_t p = 0; p < it->size(); ++p) {
    const json& part = (*it)[p];
    const std::string pp = param + "[" + std::to_string(p) + "]";
    if (!part.is_object()) bad(pp, "'" + pp + "' must be an object {\"type\": \"text\", \"text\": ...}");
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) bad(pp + ".type", "'" + pp + ".type' must be a string");
    if (*type != "text")
      bad(pp + ".type", "content parts of type " + type->dump() + " are not supported: this server reads text only");
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) bad(pp + ".text", "'" + pp + ".text' must be a string");
    out += text->get<std::string>();
  }
  return out;
}

// An assistant message's tool_calls: [{"id", "type": "function", "function": {"name",
// "arguments": JSON text}}], as the API's responses give them back.
json checked_tool_calls(const json& calls, const std::string& p) {
  if (!calls.is_array()) bad(p, "'" + p + "' must be an array");
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    const json& c = calls[i];
    const std::string pi = p + "[" + std::to_string(i) + "]";
    if (!c.is_object() || !c.contains("function") || !c["function"].is_object() || !c["function"].contains("name") ||
        !c["function"]["name"].is_string())
      bad(pi, "'" + pi + "' must be {\"id\": ..., \"type\": \"function\", \"function\": {\"name\": ..., \"arguments\": ...}}");
    const json& fn = c["function"];
    std::string args = "{}";
    if (fn.contains("arguments")) {
      if (fn["arguments"].is_string()) args = fn["arguments"].get<std::string>();
      else if (fn["arguments"].is_object()) args = fn["arguments"].dump();
      else bad(pi + ".function.arguments", "'" + pi + ".function.arguments' must be a JSON text (string)");
    }
    out.push_back({{"id", c.value("id", "")}, {"type", "function"}, {"function", {{"name", fn["name"]}, {"arguments", args}}}});
  }
  return out;
}

// The request's tools: [{"type": "function", "function": {"name", "description", "parameters"}}].
std::vector<ToolSpec> parse_tools(const json& tools) {
  if (!tools.is_array()) bad("tools", "'tools' must be an array of {\"type\": \"function\", \"function\": {...}}");
  if (tools.size() > 128) bad("tools", "'tools' holds at most 128 functions");
  std::vector<ToolSpec> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string p = "tools[" + std::to_string(i) + "]";
    if (!t.is_object() || t.value("type", "") != "function")
      bad(p + ".type", "'" + p + "' must be {\"type\": \"function\", \"function\": {...}} (only functions are supported)");
    const json* fn = field(t, "function");
    if (!fn || !fn->is_object()) bad(p + ".function", "'" + p + ".function' is required and must be an object");
    const json* name = field(*fn, "name");
    if (!name || !name->is_string()) bad(p + ".function.name", "'" + p + ".function.name' is required and must be a string");
    ToolSpec spec;
    spec.name = name->get<std::string>();
    const bool name_ok = !spec.name.empty() && spec.name.size() <= 64 &&
                         std::all_of(spec.name.begin(), spec.name.end(), [](char c) {
                           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
                         });
    if (!name_ok) bad(p + ".function.name", "'" + p + ".function.name' must be 1-64 letters, digits, _ or -");
    for (const ToolSpec& o : out)
      if (o.name == spec.name) bad(p + ".function.name", "two tools are named '" + spec.name + "'");
    if (const json* d = field(*fn, "description")) {
      if (!d->is_string()) bad(p + ".function.description", "'" + p + ".function.description' must be a string");
      spec.description = d->get<std::string>();
    }
    if (const json* params = field(*fn, "parameters")) {
      if (!params->is_object()) bad(p + ".function.parameters", "'" + p + ".function.parameters' must be a JSON schema object");
      spec.parameters = *params;
    }
    out.push_back(std::move(spec));
  }
  return out;
}

// Constrained output: OpenAI's response_format ({"type": "text" | "json_object" |
// "json_schema", "json_schema": {"name", "schema", "strict"}}) and llama.cpp's server
// extensions "json_schema" (a schema) and "grammar" (GBNF text). At most one of them.
std::shared_ptr<const Grammar> requested_grammar(const json& body) {
  const json* rf = field(body, "response_format");
  const json* js = field(body, "json_schema");
  const json* gr = field(body, "grammar");
  if ((rf != nullptr) + (js != nullptr) + (gr != nullptr) > 1)
    bad(rf ? "response_format" : "json_schema", "give at most one of 'response_format', 'json_schema' and 'grammar'");
  auto from_schema = [](const json& schema, const std::string& param) {
    if (!schema.is_object() && !schema.is_boolean()) bad(param, "'" + param + "' must be a JSON schema (an object)");
    try {
      return json_schema_grammar(schema);
    } catch (const Error& e) {
      bad(param, "'" + param + "': " + e.what(), "unsupported_schema");
    }
  };
  if (gr) {
    if (!gr->is_string() || gr->get<std::string>().empty()) bad("grammar", "'grammar' must be a non-empty GBNF string");
    try {
      return Grammar::parse(gr->get<std::string>());
    } catch (const Error& e) {
      bad("grammar", std::string("'grammar': ") + e.what(), "invalid_grammar");
    }
  }
  if (js) return from_schema(*js, "json_schema");
  if (!rf) return nullptr;
  if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
    bad("response_format", "'response_format' must be an object with a 'type': \"text\", \"json_object\" or \"json_schema\"");
  const std::string type = (*rf)["type"].get<std::string>();
  if (type == "text") return nullptr;
  if (type == "json_object") {
    // llama.cpp's server takes a schema here too ("schema"); without one, any object.
    if (rf->contains("schema")) return from_schema((*rf)["schema"], "response_format.schema");
    return Grammar::parse(json_object_grammar());
  }
  if (type == "json_schema") {
    const json* spec = field(*rf, "json_schema");
    if (!spec || !spec->is_object())
      bad("response_format.json_schema", "'response_format.json_schema' is required with type \"json_schema\": "
          "{\"name\": ..., \"schema\": {...}}", "missing_required_parameter");
    const json* schema = field(*spec, "schema");
    // OpenAI makes the schema optional (then any JSON object is fine).
    if (!schema) return Grammar::parse(json_object_grammar());
    return from_schema(*schema, "response_format.json_schema.schema");
  }
  bad("response_format.type", "unknown 'response_format.type' \"" + type + "\": use \"text\", \"json_object\" or \"json_schema\"");
}

// /infill's fields (llama.cpp's server): input_prefix and input_suffix (required strings),
// input_extra ([{"filename", "text"}], other files for context) and prompt (text typed at the
// cursor).
InfillInput parse_infill_fields(const json& body) {
  InfillInput in;
  for (const char* name : {"input_prefix", "input_suffix"}) {
    const json* v = field(body, name);
    if (!v) bad(name, std::string("'") + name + "' is required", "missing_required_parameter");
    if (!v->is_string()) bad(name, std::string("'") + name + "' must be a string");
    (std::string(name) == "input_prefix" ? in.prefix : in.suffix) = v->get<std::string>();
  }
  if (const json* p = field(body, "prompt")) {
    if (!p->is_string()) bad("prompt", "'prompt' (the text typed at the cursor) must be a string");
    in.middle = p->get<std::string>();
  }
  if (const json* extra = field(body, "input_extra")) {
    const char* shape = "'input_extra' must be an array of {\"filename\": string, \"text\": string}";
    if (!extra->is_array()) bad("input_extra", shape);
    for (size_t i = 0; i < extra->size(); ++i) {
      const json& c = (*extra)[i];
      const std::string p = "input_extra[" + std::to_string(i) + "]";
      if (!c.is_object()) bad(p, shape);
      const json* t = field(c, "text");
      if (!t || !t->is_string()) bad(p + ".text", "'" + p + ".text' is required and must be a string");
      InfillFile f;
      f.text = t->get<std::string>();
      if (const json* n = field(c, "filename")) {
        if (!n->is_string()) bad(p + ".filename", "'" + p + ".filename' must be a string");
        f.name = n->get<std::string>();
      }
      in.extra.push_back(std::move(f));
    }
  }
  return in;
}

}  // namespace

ApiError::ApiError(int s, std::string message, std::string p, std::string c, std::string t)
    : std::runtime_error(std::move(message)), status(s), param(std::move(p)), code(std::move(c)),
      type(t.empty() ? default_type(s) : std::move(t)) {}

json error_body(int status, const std::string& message, const std::string& param, const std::string& code,
                const std::string& type) {
  json e = {{"message", message},
            {"type", type.empty() ? default_type(status) : type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  return {{"error", e}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json parse_json_body(const std::string& text) {
  check_depth(text);
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {
    // nlohmann's parser also rejects strings that are not valid UTF-8.
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what(), {}, "invalid_json");
  }
  if (!body.is_object()) throw ApiError(400, "the body must be a JSON object", {}, "invalid_json");
  return body;
}

CompletionRequest parse_completion_request(const std::string& text, Endpoint endpoint) {
  const bool chat = endpoint == Endpoint::Chat;
  const json body = parse_json_body(text);

  for (const char* legacy : {"functions", "function_call"})
    if (field(body, legacy))
      bad(legacy, std::string("'") + legacy + "' (the API's old form of tool calls) is not supported: send 'tools' and 'tool_choice'",
          "unsupported_parameter");
  if (const json* m = field(body, "model"); m && !m->is_string()) bad("model", "'model' must be a string");

  CompletionRequest r;
  r.chat = chat;
  r.infill = endpoint == Endpoint::Infill;
  r.native = r.infill || endpoint == Endpoint::Native;
  if (r.infill) {
    r.fill = parse_infill_fields(body);
  } else if (endpoint == Endpoint::Native) {
    // llama.cpp's /completion: a string (special-token text parsed) or token ids.
    const json* p = field(body, "prompt");
    if (!p) bad("prompt", "'prompt' is required", "missing_required_parameter");
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
    if (p->is_string()) {
      r.prompt = p->get<std::string>();
      if (r.prompt.empty()) bad("prompt", "'prompt' is empty: there is nothing to continue");
      r.parse_special = true;
    } else if (p->is_array() && !p->empty()) {
      for (const json& id : *p) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
          bad("prompt", "'prompt' must be a string or an array of token ids, got an element " + id.dump());
        r.prompt_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    } else {
      bad("prompt", "'prompt' must be a non-empty string or an array of token ids");
    }
  } else if (chat) {
    const json* msgs = field(body, "messages");
    if (!msgs) bad("messages", "'messages' is required", "missing_required_parameter");
    if (!msgs->is_array() || msgs->empty()) bad("messages", "'messages' must be a non-empty array");
    r.messages = json::array();
    for (size_t i = 0; i < msgs->size(); ++i) {
      const json& m = (*msgs)[i];
      const std::string p = "messages[" + std::to_string(i) + "]";
      if (!m.is_object()) bad(p, "'" + p + "' must be an object with 'role' and 'content'");
      auto role = m.find("role");
      if (role == m.end() || !role->is_string())
        bad(p + ".role", "'" + p + ".role' is required and must be a string", "missing_required_parameter");
      std::string rs = role->get<std::string>();
      if (rs == "developer") rs = "system";  // OpenAI's newer name for the system role
      if (rs == "function")
        bad(p + ".role", "role 'function' is the API's old form of tool results: send role 'tool'", "unsupported_parameter");
      if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool")
        bad(p + ".role", "unknown role '" + rs + "' in " + p + ": use system, user, assistant or tool");
      json msg = {{"role", rs}, {"content", message_content(m, i)}};
      if (rs == "tool") {
        auto id = m.find("tool_call_id");
        if (id == m.end() || !id->is_string())
          bad(p + ".tool_call_id", "'" + p + ".tool_call_id' is required for a tool message and must be a string",
              "missing_required_parameter");
        msg["tool_call_id"] = *id;
        if (auto n = m.find("name"); n != m.end() && n->is_string()) msg["name"] = *n;
      }
      // A thinking model's earlier reasoning, sent back as the server returned it: templates that
      // use it (Qwen3's, for the turns after the last question) see message.reasoning_content.
      if (auto rc = m.find("reasoning_content"); rc != m.end() && !rc->is_null()) {
        if (rs != "assistant") bad(p + ".reasoning_content", "only assistant messages carry 'reasoning_content'");
        if (!rc->is_string()) bad(p + ".reasoning_content", "'" + p + ".reasoning_content' must be a string");
        msg["reasoning_content"] = *rc;
      }
      if (auto tc = m.find("tool_calls"); tc != m.end() && !tc->is_null()) {
        if (rs != "assistant") bad(p + ".tool_calls", "only assistant messages carry 'tool_calls'");
        msg["tool_calls"] = checked_tool_calls(*tc, p + ".tool_calls");
      }
      r.messages.push_back(std::move(msg));
    }
  } else {
    const json* p = field(body, "prompt");
    if (!p) bad("prompt", "'prompt' is required", "missing_required_parameter");
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
    if (!p->is_string()) bad("prompt", "'prompt' must be a string");
    r.prompt = p->get<std::string>();
    // With a suffix the completion is inserted between the two (fill-in-the-middle), and an
    // empty prompt is an insertion at the start.
    if (const json* suffix = field(body, "suffix")) {
      if (!suffix->is_string()) bad("suffix", "'suffix' must be a string");
      r.fill.emplace();
      r.fill->prefix = r.prompt;
      r.fill->suffix = suffix->get<std::string>();
    } else if (r.prompt.empty()) {
      bad("prompt", "'prompt' is empty: there is nothing to continue");
    }
  }

  if (integer(body, "n", 1, 1, std::numeric_limits<int32_t>::max()) != 1)
    bad("n", "'n' must be 1: this server returns one choice per request");
  if (integer(body, "best_of", 1, 1, std::numeric_limits<int32_t>::max()) != 1)
    bad("best_of", "'best_of' must be 1: this server generates one completion per request");
  for (const char* media : {"audio", "modalities"})
    if (const json* m = field(body, media); m && !(m->is_array() && m->size() == 1 && (*m)[0] == "text"))
      bad(media, std::string("'") + media + "': audio is not supported: this server writes text only", "unsupported_parameter");
  int64_t max_tokens = integer(body, "max_tokens", -1, 1, std::numeric_limits<int32_t>::max());
  max_tokens = integer(body, "max_completion_tokens", max_tokens, 1, std::numeric_limits<int32_t>::max());
  if (r.native) {
    // llama.cpp's name; -1 (its default): until end of generation or the context is full.
    max_tokens = integer(body, "n_predict", max_tokens, -1, std::numeric_limits<int32_t>::max());
    if (max_tokens == 0) bad("n_predict", "'n_predict' must be -1 (no limit) or at least 1");
    r.gen.n_indent = static_cast<int>(integer(body, "n_indent", 0, 0, 1 << 16));
    r.gen.t_max_predict_ms = number(body, "t_max_predict_ms", 0, 0, 1e9);
  }
  r.gen.max_tokens = static_cast<int>(max_tokens);

  SamplerParams& s = r.gen.sampling;
  s.temperature = static_cast<float>(number(body, "temperature", kDefaultTemperature, 0.0, 2.0));
  s.top_p = static_cast<float>(number(body, "top_p", kDefaultTopP, 0.0, 1.0));
  if (s.top_p <= 0.0f) bad("top_p", "'top_p' must be greater than 0");
  s.top_k = static_cast<int32_t>(integer(body, "top_k", kDefaultTopK, 0, std::numeric_limits<int32_t>::max()));
  s.min_p = static_cast<float>(number(body, "min_p", kDefaultMinP, 0.0, 1.0));
  s.presence_penalty = static_cast<float>(number(body, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = static_cast<float>(number(body, "frequency_penalty", 0.0, -2.0, 2.0));
  s.repeat_penalty = static_cast<float>(number(body, "repeat_penalty", 1.0, 0.0, 10.0));
  if (s.repeat_penalty <= 0.0f) bad("repeat_penalty", "'repeat_penalty' must be greater than 0");
  // llama.cpp's server's optional stages (sampling/sampler.h), off by default as there.
  s.typical_p = static_cast<float>(number(body, "typical_p", 1.0, 0.0, 1.0));
  if (s.typical_p <= 0.0f) bad("typical_p", "'typical_p' must be greater than 0 (1: off)");
  s.top_n_sigma = static_cast<float>(number(body, "top_n_sigma", -1.0, -1000.0, 1000.0));
  s.xtc_probability = static_cast<float>(number(body, "xtc_probability", 0.0, 0.0, 1.0));
  s.xtc_threshold = static_cast<float>(number(body, "xtc_threshold", 0.1, 0.0, 1.0));
  s.mirostat = static_cast<int32_t>(integer(body, "mirostat", 0, 0, 2));
  s.mirostat_tau = static_cast<float>(number(body, "mirostat_tau", 5.0, 0.0, 1000.0));
  if (s.mirostat_tau <= 0.0f) bad("mirostat_tau", "'mirostat_tau' must be greater than 0");
  s.mirostat_eta = static_cast<float>(number(body, "mirostat_eta", 0.1, 0.0, 1000.0));
  s.dry_multiplier = static_cast<float>(number(body, "dry_multiplier", 0.0, 0.0, 1000.0));
  s.dry_base = static_cast<float>(number(body, "dry_base", 1.75, 1.0, 1000.0));
  s.dry_allowed_length = static_cast<int32_t>(integer(body, "dry_allowed_length", 2, 0, 1 << 20));
  s.dry_penalty_last_n = static_cast<int32_t>(integer(body, "dry_penalty_last_n", -1, -1, 1 << 24));
  if (const json* br = field(body, "dry_sequence_breakers")) {
    if (!br->is_array()) bad("dry_sequence_breakers", "'dry_sequence_breakers' must be an array of strings");
    s.dry_sequence_breakers.clear();
    for (const json& b : *br) {
      if (!b.is_string() || b.get<std::string>().empty())
        bad("dry_sequence_breakers", "'dry_sequence_breakers' must hold non-empty strings, got " + b.dump());
      s.dry_sequence_breakers.push_back(b.get<std::string>());
    }
  }
  // llama.cpp's server's "samplers": the stages to run, as names (["top_k", "temperature"]) or
  // its letters ("kt"); the others are off. slm keeps llama.cpp's default order.
  if (const json* st = field(body, "samplers")) {
    try {
      if (st->is_string()) {
        keep_only_stages(s, parse_sampler_letters(st->get<std::string>(), "'samplers'"));
      } else if (st->is_array()) {
        std::vector<std::string> names;
        for (const json& n : *st) {
          if (!n.is_string()) bad("samplers", "'samplers' must be an array of sampler names or a string of letters");
          names.push_back(n.get<std::string>());
        }
        keep_only_stages(s, parse_sampler_stages(names, "'samplers'"));
      } else {
        bad("samplers", "'samplers' must be an array of sampler names or a string of letters");
      }
    } catch (const Error& e) {
      bad("samplers", e.what());
    }
  }
  if (const json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) bad("seed", "'seed' must be an integer, got " + seed->dump());
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  } else {
    s.seed = std::random_device{}();
  }

  // Extension (llama.cpp's server): "lora": [{"id": 0, "scale": 0.5}, ...] rescales the
  // server's adapters for this request; the ids are checked against them by the caller.
  if (const json* lora = field(body, "lora")) {
    if (!lora->is_array()) bad("lora", "'lora' must be an array of {\"id\": N, \"scale\": X}");
    for (const json& e : *lora) {
      if (!e.is_object() || !e.contains("id") || !e["id"].is_number_integer() ||
          (e.contains("scale") && !e["scale"].is_number()))
        bad("lora", "'lora' entries must be {\"id\": integer, \"scale\": number}, got " + e.dump());
      const double sc = e.value("scale", 1.0);
      if (!std::isfinite(sc) || std::abs(sc) > 100.0) bad("lora", "'lora' scales must be within -100..100");
      r.gen.lora.emplace_back(static_cast<int>(std::clamp<int64_t>(e["id"].get<int64_t>(), -1, INT32_MAX)),
                              static_cast<float>(sc));
    }
  }
  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      r.gen.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > 4) bad("stop", "'stop' holds at most 4 strings, got " + std::to_string(stop->size()));
      for (const auto& x : *stop) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or an array of strings");
        r.gen.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or an array of strings");
    }
    for (const auto& x : r.gen.stop)
      if (x.empty()) bad("stop", "'stop' strings must not be empty");
  }

  r.gen.grammar = requested_grammar(body);
  if (const json* tools = field(body, "tools")) {
    if (!chat) bad("tools", "'tools' is for /v1/chat/completions");
    r.tools = parse_tools(*tools);
  }
  if (const json* tc = field(body, "tool_choice")) {
    if (tc->is_string() && (*tc == "none" || *tc == "auto" || *tc == "required")) {
      r.tool_choice = tc->get<std::string>();
    } else if (tc->is_object() && tc->value("type", "") == "function" && tc->contains("function") &&
               (*tc)["function"].is_object() && (*tc)["function"].contains("name") && (*tc)["function"]["name"].is_string()) {
      r.tool_choice = "function";
      r.tool_choice_name = (*tc)["function"]["name"].get<std::string>();
      bool known = false;
      for (const ToolSpec& t : r.tools) known = known || t.name == r.tool_choice_name;
      if (!known) bad("tool_choice", "'tool_choice' names function '" + r.tool_choice_name + "', which is not in 'tools'");
    } else {
      bad("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
          "\"function\": {\"name\": ...}}");
    }
    if (r.tools.empty() && r.tool_choice != "none" && r.tool_choice != "auto")
      bad("tool_choice", "'tool_choice' \"" + r.tool_choice + "\" needs 'tools'");
  }
  r.parallel_tool_calls = boolean(body, "parallel_tool_calls", true);
  if (const json* kw = field(body, "chat_template_kwargs")) {
    if (!chat) bad("chat_template_kwargs", "'chat_template_kwargs' is for /v1/chat/completions");
    if (!kw->is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object, e.g. {\"enable_thinking\": false}");
    r.template_kwargs = *kw;
  }
  if (const json* rf = field(body, "reasoning_format")) {
    if (!chat) bad("reasoning_format", "'reasoning_format' is for /v1/chat/completions");
    if (!rf->is_string() || (*rf != "none" && *rf != "deepseek" && *rf != "auto"))
      bad("reasoning_format", "'reasoning_format' must be \"none\" (reasoning left in the content), \"deepseek\" or "
          "\"auto\" (returned as reasoning_content)");
    r.reasoning_format = rf->get<std::string>();
  }
  if (r.tool_mode() && r.gen.grammar)
    bad("response_format", "'response_format' (or 'grammar' / 'json_schema') and 'tools' cannot be used together: "
        "describe the output as a tool's parameters, or drop the tools");
  if (const json* lb = field(body, "logit_bias")) {
    if (!lb->is_object() && !lb->is_array())
      bad("logit_bias", "'logit_bias' must be an object {\"token id\": bias} or an array [[token, bias], ...]");
    r.logit_bias = *lb;
  }
  r.gen.ignore_eos = boolean(body, "ignore_eos", false);
  r.gen.n_keep = static_cast<int>(integer(body, "n_keep", 0, -1, std::numeric_limits<int32_t>::max()));
  r.stream = boolean(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed with \"stream\": true");
    r.include_usage = boolean(*so, "include_usage", false);
  }

  r.echo = boolean(body, "echo", false);
  if (r.echo && (chat || r.native)) bad("echo", "'echo' is for /v1/completions");
  if (r.echo && r.fill) bad("echo", "'echo' and 'suffix' cannot be used together");
  if (r.echo && field(body, "logprobs"))
    bad("echo", "'echo' with 'logprobs' is not supported (the prompt's tokens would need their log-probabilities too)",
        "unsupported_parameter");
  if (r.native) {
    for (const char* name : {"n_probs", "logprobs"})
      if (field(body, name))
        bad(name, std::string("'") + name + "': this endpoint returns no token probabilities; send the request to "
            "/v1/completions (for a fill: 'prompt' and 'suffix') with 'logprobs'", "unsupported_parameter");
  } else if (chat) {
    r.logprobs = boolean(body, "logprobs", false);
    const int64_t top = integer(body, "top_logprobs", 0, 0, 20);
    if (field(body, "top_logprobs") && !r.logprobs)
      bad("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
    r.gen.top_logprobs = r.logprobs ? static_cast<int>(top) : -1;
  } else {
    // The completions API's logprobs is the number of alternatives (0..5).
    const int64_t n = integer(body, "logprobs", -1, 0, 5);
    r.logprobs = n >= 0;
    r.gen.top_logprobs = static_cast<int>(n);
  }
  return r;
}

std::vector<std::pair<int32_t, float>> resolve_logit_bias(const json& v, const Tokenizer& tok) {
  std::vector<std::pair<int32_t, float>> out;
  auto id_of = [&](int64_t id) {
    if (id < 0 || id >= tok.n_vocab())
      bad("logit_bias", "'logit_bias' names token " + std::to_string(id) + ", outside this model's vocabulary (0.." +
                            std::to_string(tok.n_vocab() - 1) + ")");
    return static_cast<int32_t>(id);
  };
  auto bias_of = [&](const json& b) -> float {
    if (b.is_boolean() && !b.get<bool>()) return -std::numeric_limits<float>::infinity();
    if (!b.is_number() || !std::isfinite(b.get<double>()) || std::abs(b.get<double>()) > 100.0)
      bad("logit_bias", "'logit_bias' values must be numbers from -100 to 100 (or false to ban), got " + b.dump());
    return b.get<float>();
  };
  if (v.is_object()) {
    for (const auto& [key, b] : v.items()) {
      size_t used = 0;
      int64_t id = -1;
      try {
        id = std::stoll(key, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != key.size()) bad("logit_bias", "'logit_bias' keys must be token ids, got \"" + key + "\"");
      out.emplace_back(id_of(id), bias_of(b));
    }
    return out;
  }
  for (const json& e : v) {
    if (!e.is_array() || e.size() != 2)
      bad("logit_bias", "'logit_bias' entries must be [token id or text, bias], got " + e.dump());
    const float b = bias_of(e[1]);
    if (e[0].is_number_integer()) {
      out.emplace_back(id_of(e[0].get<int64_t>()), b);
    } else if (e[0].is_string()) {
      for (const int32_t id : tok.encode(e[0].get<std::string>(), false, false)) out.emplace_back(id, b);
    } else {
      bad("logit_bias", "'logit_bias' entries must be [token id or text, bias], got " + e.dump());
    }
  }
  return out;
}

std::string api_finish_reason(const std::string& reason) { return reason == "cancelled" ? "stop" : reason; }

json usage_json(const RequestEvents& fin) {
  return {{"prompt_tokens", fin.prompt_tokens},
          {"completion_tokens", fin.completion_tokens},
          {"total_tokens", fin.prompt_tokens + fin.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", fin.cached_tokens}}}};
}

json logprobs_json(bool chat, const std::vector<TokenLogprob>& lp, size_t text_offset) {
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  };
  if (chat) {
    json content = json::array();
    for (const auto& t : lp) {
      json top = json::array();
      for (const auto& [piece, l] : t.top) top.push_back({{"token", piece}, {"logprob", l}, {"bytes", bytes(piece)}});
      content.push_back({{"token", t.piece}, {"logprob", t.logprob}, {"bytes", bytes(t.piece)}, {"top_logprobs", top}});
    }
    return {{"content", content}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), offsets = json::array();
  for (const auto& t : lp) {
    tokens.push_back(t.piece);
    token_logprobs.push_back(t.logprob);
    json top = json::object();
    for (const auto& [piece, l] : t.top) top[piece] = l;
    top_logprobs.push_back(top);
    offsets.push_back(text_offset);
    text_offset += t.piece.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs}, {"text_offset", offsets}};
}

json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json c;
    if (with_index) c["index"] = i;
    c["id"] = calls[i].id;
    c["type"] = "function";
    c["function"] = {{"name", calls[i].name}, {"arguments", calls[i].arguments}};
    out.push_back(std::move(c));
  }
  return out;
}

json full_response(const ResponseMeta& m, const std::string& text, const std::vector<TokenLogprob>& lp,
                   bool want_logprobs, const RequestEvents& fin, const ToolReply* tools, const std::string& reasoning) {
  json choice;
  choice["index"] = 0;
  std::string finish = api_finish_reason(fin.finish_reason);
  if (m.chat && tools && !tools->calls.empty()) {
    choice["message"] = {{"role", "assistant"},
                         {"content", tools->content.empty() ? json(nullptr) : json(tools->content)},
                         {"refusal", nullptr},
                         {"tool_calls", tool_calls_json(tools->calls, false)}};
    finish = "tool_calls";
  } else if (m.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", tools ? tools->content : text}, {"refusal", nullptr}};
  } else {
    choice["text"] = text;
  }
  if (m.chat && !reasoning.empty()) choice["message"]["reasoning_content"] = reasoning;
  choice["logprobs"] = want_logprobs ? logprobs_json(m.chat, lp, 0) : json(nullptr);
  choice["finish_reason"] = finish;
  return {{"id", m.id},
          {"object", m.chat ? "chat.completion" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", "slm"},
          {"choices", json::array({choice})},
          {"usage", usage_json(fin)}};
}

json stream_chunk(const ResponseMeta& m, const std::string& text, const std::vector<TokenLogprob>* lp, bool first,
                  const std::string& finish_reason, bool include_usage, size_t text_offset) {
  json choice;
  choice["index"] = 0;
  if (m.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (first || !text.empty()) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = lp && !lp->empty() ? logprobs_json(m.chat, *lp, text_offset) : json(nullptr);
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  json chunk = {{"id", m.id},
                {"object", m.chat ? "chat.completion.chunk" : "text_completion"},
                {"created", m.created},
                {"model", m.model},
                {"system_fingerprint", "slm"},
                {"choices", json::array({choice})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

namespace {
// A streamed chat chunk carrying `delta` alone (no logprobs, no finish_reason).
json delta_chunk(const ResponseMeta& m, json delta, bool include_usage) {
  json chunk = {{"id", m.id},
                {"object", "chat.completion.chunk"},
                {"created", m.created},
                {"model", m.model},
                {"system_fingerprint", "slm"},
                {"choices", json::array({{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}, {"finish_reason", nullptr}}})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}
}  // namespace

json reasoning_chunk(const ResponseMeta& m, const std::string& text, bool include_usage) {
  return delta_chunk(m, {{"reasoning_content", text}}, include_usage);
}

json tool_reply_chunk(const ResponseMeta& m, const ToolReply& reply, bool include_usage) {
  json delta = json::object();
  if (!reply.content.empty()) delta["content"] = reply.content;
  if (!reply.calls.empty()) delta["tool_calls"] = tool_calls_json(reply.calls, true);
  return delta_chunk(m, std::move(delta), include_usage);
}

json usage_chunk(const ResponseMeta& m, const RequestEvents& fin) {
  return {{"id", m.id},
          {"object", m.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", "slm"},
          {"choices", json::array()},
          {"usage", usage_json(fin)}};
}

}  // namespace slm::server
