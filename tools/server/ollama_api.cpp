#include "ollama_api.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>

namespace slm::server {

namespace {

[[noreturn]] void refuse(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param, "invalid_value");
}

// ollama's "options" that have an OpenAI (or llama.cpp) field of the same meaning.
void copy_options(const json& body, json& out) {
  auto it = body.find("options");
  if (it == body.end() || it->is_null()) return;
  if (!it->is_object()) refuse("options", "'options' must be an object");
  for (const auto& [key, v] : it->items()) {
    if (key == "num_predict") {
      if (!v.is_number_integer()) refuse("options.num_predict", "'options.num_predict' must be an integer");
      // -1: no limit; -2: until the context is full (the same here).
      if (v.get<int64_t>() > 0) out["max_tokens"] = v;
      else if (v.get<int64_t>() == 0 || v.get<int64_t>() < -2)
        refuse("options.num_predict", "'options.num_predict' must be positive, -1 or -2");
    } else if (key == "num_keep") {
      out["n_keep"] = v;  // tokens a context shift keeps (slm serve --context-shift)
    } else if (key == "temperature" || key == "top_k" || key == "top_p" || key == "min_p" || key == "seed" ||
               key == "repeat_penalty" || key == "presence_penalty" || key == "frequency_penalty" || key == "stop" ||
               key == "typical_p" || key == "mirostat" || key == "mirostat_tau" || key == "mirostat_eta") {
      out[key] = v;
    } else if (key == "num_ctx" || key == "num_thread" || key == "num_gpu" || key == "num_batch" ||
               key == "repeat_last_n" || key == "use_mmap" || key == "use_mlock" ||
               key == "low_vram" || key == "main_gpu" || key == "numa") {
      // Set when the server starts here (-c, -t) or not applicable on a CPU: not a request's.
    } else {
      refuse("options." + key, "'options." + key + "' is not supported by this server");
    }
  }
}

void copy_format(const json& body, json& out) {
  auto it = body.find("format");
  if (it == body.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty())) return;
  if (it->is_string() && *it == "json") out["response_format"] = {{"type", "json_object"}};
  else if (it->is_object()) out["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "format"}, {"schema", *it}}}};
  else refuse("format", "'format' must be \"json\" or a JSON schema object");
}

std::string text_field(const json& body, const char* name, bool required) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) {
    if (required) throw ApiError(400, std::string("'") + name + "' is required", name, "missing_required_parameter");
    return {};
  }
  if (!it->is_string()) refuse(name, std::string("'") + name + "' must be a string");
  return it->get<std::string>();
}

}  // namespace

OllamaRequest ollama_request(const std::string& text, bool chat, bool has_template) {
  const json body = parse_json_body(text);
  OllamaRequest r;
  if (auto s = body.find("stream"); s != body.end() && !s->is_null()) {
    if (!s->is_boolean()) refuse("stream", "'stream' must be true or false");
    r.stream = s->get<bool>();
  }
  for (const char* unsupported : {"images", "context", "template"})
    if (auto it = body.find(unsupported); it != body.end() && !it->is_null() && !(it->is_array() && it->empty()))
      throw ApiError(400,
                     std::string("'") + unsupported + "' is not supported on the ollama routes of this server",
                     unsupported, "unsupported_parameter");
  json out = json::object();
  if (auto m = body.find("model"); m != body.end() && m->is_string()) out["model"] = *m;
  copy_options(body, out);
  copy_format(body, out);
  out["stream"] = r.stream;
  if (chat) {
    auto msgs = body.find("messages");
    if (msgs == body.end() || msgs->is_null()) throw ApiError(400, "'messages' is required", "messages", "missing_required_parameter");
    if (msgs->is_array())
      for (const json& m : *msgs)
        if (auto im = m.find("images"); m.is_object() && im != m.end() && !im->is_null() && !(im->is_array() && im->empty()))
          throw ApiError(400, "'messages[].images': this server reads text only", "messages", "unsupported_parameter");
    // The same shape as the OpenAI API's, checked by its parser; but ollama's tool results carry
    // no call id (they answer the calls in order), and its calls' arguments are objects.
    // ollama's "thinking" on an assistant message is the OpenAI side's reasoning_content.
    json messages = *msgs;
    if (messages.is_array())
      for (size_t i = 0; i < messages.size(); ++i) {
        json& m = messages[i];
        if (!m.is_object()) continue;
        if (m.value("role", "") == "tool" && !m.contains("tool_call_id")) m["tool_call_id"] = "call_" + std::to_string(i);
        if (auto t = m.find("thinking"); t != m.end()) {
          if (m.value("role", "") == "assistant" && !t->is_null()) m["reasoning_content"] = *t;
          m.erase("thinking");
        }
      }
    out["messages"] = std::move(messages);
    if (auto t = body.find("tools"); t != body.end() && !t->is_null()) out["tools"] = *t;
    // Not ollama's, but the OpenAI API's (slm extensions): require a call, or just one.
    for (const char* key : {"tool_choice", "parallel_tool_calls"})
      if (auto t = body.find(key); t != body.end() && !t->is_null()) out[key] = *t;
    r.endpoint = Endpoint::Chat;
  } else {
    const std::string prompt = text_field(body, "prompt", true), system = text_field(body, "system", false),
                      suffix = text_field(body, "suffix", false);
    bool raw = false;
    if (auto it = body.find("raw"); it != body.end() && !it->is_null()) {
      if (!it->is_boolean()) refuse("raw", "'raw' must be true or false");
      raw = it->get<bool>();
    }
    if (!suffix.empty() || raw || !has_template) {
      if (!system.empty() && (raw || !has_template))
        refuse("system", "'system' needs the model's chat template: this model has none, or 'raw' is true");
      out["prompt"] = prompt;
      if (!suffix.empty()) out["suffix"] = suffix;
      r.endpoint = Endpoint::Completions;
    } else {
      json messages = json::array();
      if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
      messages.push_back({{"role", "user"}, {"content", prompt}});
      out["messages"] = std::move(messages);
      r.endpoint = Endpoint::Chat;
    }
  }
  // ollama's "think": true / false (or, for models that take a level, "low" / "medium" / "high").
  if (auto t = body.find("think"); t != body.end() && !t->is_null()) {
    if (t->is_boolean()) r.think = t->get<bool>();
    else if (t->is_string() && (*t == "low" || *t == "medium" || *t == "high")) r.think = true;
    else refuse("think", "'think' must be true, false, \"low\", \"medium\" or \"high\"");
    if (r.endpoint == Endpoint::Chat) out["chat_template_kwargs"] = {{"enable_thinking", r.think}};
  }
  r.openai_body = dump(out);
  return r;
}

json ollama_chunk(bool chat, const std::string& model, const std::string& text, const RequestEvents* fin) {
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  json j = {{"model", model}, {"created_at", fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(now)), us)}};
  if (chat) j["message"] = {{"role", "assistant"}, {"content", text}};
  else j["response"] = text;
  j["done"] = fin != nullptr;
  if (fin) {
    auto ns = [](double ms) { return static_cast<int64_t>(ms * 1e6); };
    j["done_reason"] = fin->finish_reason == "length" ? "length" : "stop";
    j["total_duration"] = ns(fin->prompt_ms + fin->generation_ms);
    j["load_duration"] = 0;
    j["prompt_eval_count"] = fin->prompt_tokens - fin->cached_tokens;
    j["prompt_eval_duration"] = ns(fin->prompt_ms);
    j["eval_count"] = fin->completion_tokens;
    j["eval_duration"] = ns(fin->generation_ms);
  }
  return j;
}

json ollama_error(const std::string& message) { return {{"error", message}}; }

json ollama_tool_calls(const std::vector<ToolCall>& calls) {
  json out = json::array();
  for (const ToolCall& c : calls) {
    json args;
    try {
      args = json::parse(c.arguments);
    } catch (const json::exception&) {
      args = json::object();  // not reached: read_tool_reply keeps only calls whose arguments parse
    }
    out.push_back({{"function", {{"name", c.name}, {"arguments", std::move(args)}}}});
  }
  return out;
}

}  // namespace slm::server
