#include "runtime/tool_calls.h"

#include <random>

#include "core/error.h"
#include "sampling/json_schema.h"

namespace slm {

using ojson = nlohmann::ordered_json;

const char* tool_format_name(ToolFormat f) {
  switch (f) {
    case ToolFormat::Hermes: return "hermes";
    case ToolFormat::Llama3: return "llama3";
    case ToolFormat::Generic: return "generic";
  }
  return "?";
}

ToolFormat tool_format_for_template(const std::string& source) {
  if (source.find("<tool_call>") != std::string::npos) return ToolFormat::Hermes;
  if (source.find("ipython") != std::string::npos ||
      source.find("\"parameters\": dictionary") != std::string::npos)
    return ToolFormat::Llama3;
  return ToolFormat::Generic;
}

namespace {

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\n' || s[a] == '\t' || s[a] == '\r')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\n' || s[b - 1] == '\t' || s[b - 1] == '\r')) --b;
  return std::string(s.substr(a, b - a));
}

const ToolSpec* find_tool(const std::vector<ToolSpec>& tools, const std::string& name) {
  for (const ToolSpec& t : tools)
    if (t.name == name) return &t;
  return nullptr;
}

// {"name": <a tool>, <args_key>: {...}} (arguments may also come as a string holding an
// object, which some models write) -> a call; nullopt for anything else.
std::optional<ToolCall> call_from_json(const ojson& j, const std::vector<ToolSpec>& tools, const char* args_key) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
  const std::string name = j["name"].get<std::string>();
  if (!find_tool(tools, name)) return std::nullopt;
  ojson args = ojson::object();
  const char* key = j.contains(args_key) ? args_key : j.contains("arguments") ? "arguments" : nullptr;
  if (key) {
    args = j[key];
    if (args.is_string()) {
      args = ojson::parse(args.get<std::string>(), nullptr, /*allow_exceptions=*/false);
      if (args.is_discarded()) return std::nullopt;
    }
    if (!args.is_object()) return std::nullopt;
  }
  return ToolCall{new_tool_call_id(), name, args.dump()};
}

ojson parse_object(const std::string& text) {
  ojson j = ojson::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? ojson() : j;
}

constexpr std::string_view kHermesOpen = "<tool_call>", kHermesClose = "</tool_call>";

// A Hermes reply cut into the text outside <tool_call> blocks (untrimmed, in order) and the
// blocks' bodies (the last block may lack its closing tag).
struct HermesSplit {
  std::string outside;
  std::vector<std::string_view> bodies;
};
HermesSplit split_hermes(std::string_view text) {
  HermesSplit out;
  size_t pos = 0;
  for (;;) {
    const size_t open = text.find(kHermesOpen, pos);
    out.outside += text.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    if (open == std::string::npos) break;
    const size_t body = open + kHermesOpen.size();
    const size_t close = text.find(kHermesClose, body);
    out.bodies.push_back(text.substr(body, close == std::string::npos ? std::string::npos : close - body));
    if (close == std::string::npos) break;
    pos = close + kHermesClose.size();
  }
  return out;
}

}  // namespace

ToolReply parse_tool_reply(ToolFormat f, const std::string& text, const std::vector<ToolSpec>& tools) {
  ToolReply plain{text, {}};
  if (f == ToolFormat::Hermes) {
    const HermesSplit split = split_hermes(text);
    if (split.bodies.empty()) return plain;
    ToolReply r{trim(split.outside), {}};
    for (std::string_view b : split.bodies) {
      auto call = call_from_json(parse_object(trim(b)), tools, "arguments");
      if (!call) return plain;
      r.calls.push_back(std::move(*call));
    }
    return r;
  }
  std::string body = trim(text);
  if (f == ToolFormat::Llama3) {
    if (body.rfind("<|python_tag|>", 0) == 0) body = trim(body.substr(14));
    if (body.empty() || body[0] != '{') return plain;
    auto call = call_from_json(parse_object(body), tools, "parameters");
    if (!call) return plain;
    return ToolReply{"", {std::move(*call)}};
  }
  const ojson j = parse_object(body);
  if (j.is_object() && j.contains("tool_call")) {
    auto call = call_from_json(j["tool_call"], tools, "arguments");
    if (call) return ToolReply{"", {std::move(*call)}};
  }
  if (j.is_object() && j.size() == 1 && j.contains("response") && j["response"].is_string())
    return ToolReply{j["response"].get<std::string>(), {}};
  return plain;
}

ToolReply read_tool_reply(ToolFormat f, const std::string& text, const std::vector<ToolSpec>& tools, bool finished) {
  return finished ? parse_tool_reply(f, text, tools) : ToolReply{text, {}};
}

std::shared_ptr<const Grammar> tool_reply_grammar(ToolFormat f, const std::vector<ToolSpec>& tools, bool required,
                                                  bool parallel) {
  if (tools.empty()) fail("tool_reply_grammar: no tools");
  const char* args_key = f == ToolFormat::Llama3 ? "parameters" : "arguments";
  ojson alternatives = ojson::array();
  for (const ToolSpec& t : tools) {
    ojson params = t.parameters.is_null() ? ojson{{"type", "object"}} : t.parameters;
    alternatives.push_back({{"type", "object"},
                            {"properties", {{"name", {{"const", t.name}}}, {args_key, params}}},
                            {"required", {"name", args_key}},
                            {"additionalProperties", false}});
  }
  ojson call = alternatives.size() == 1 ? alternatives[0] : ojson{{"anyOf", alternatives}};
  ojson schema = call;
  if (f == ToolFormat::Generic) {
    ojson as_call = {{"type", "object"},
                     {"properties", {{"tool_call", call}}},
                     {"required", {"tool_call"}},
                     {"additionalProperties", false}};
    ojson as_text = {{"type", "object"},
                     {"properties", {{"response", {{"type", "string"}}}}},
                     {"required", {"response"}},
                     {"additionalProperties", false}};
    schema = required ? as_call : ojson{{"anyOf", {as_call, as_text}}};
  }
  std::string gbnf;
  try {
    gbnf = json_schema_to_grammar(schema);
  } catch (const Error& e) {
    fail("the tools' parameters cannot be enforced: {}", e.what());
  }
  if (f != ToolFormat::Hermes) return Grammar::parse(gbnf);
  // One or more <tool_call> blocks around the JSON the schema allows.
  gbnf += "\nslm-tool-calls ::= \"<tool_call>\\n\" root \"\\n</tool_call>\"";
  if (parallel) gbnf += " (\"\\n<tool_call>\\n\" root \"\\n</tool_call>\")*";
  gbnf += "\n";
  return Grammar::parse(gbnf, "slm-tool-calls");
}

ojson tools_for_template(const std::vector<ToolSpec>& tools) {
  ojson out = ojson::array();
  for (const ToolSpec& t : tools) {
    ojson fn = {{"name", t.name}};
    if (!t.description.empty()) fn["description"] = t.description;
    fn["parameters"] = t.parameters.is_null() ? ojson{{"type", "object"}, {"properties", ojson::object()}} : t.parameters;
    out.push_back({{"type", "function"}, {"function", fn}});
  }
  return out;
}

namespace {

// An assistant message's calls with arguments as objects (templates write them with tojson).
ojson calls_with_object_arguments(const ojson& calls) {
  ojson out = ojson::array();
  for (const ojson& c : calls) {
    ojson call = c;
    if (call.contains("function") && call["function"].contains("arguments") && call["function"]["arguments"].is_string()) {
      ojson args = ojson::parse(call["function"]["arguments"].get<std::string>(), nullptr, false);
      if (!args.is_discarded()) call["function"]["arguments"] = args;
    }
    out.push_back(call);
  }
  return out;
}

std::string generic_instructions(const std::vector<ToolSpec>& tools) {
  std::string s = "You can call these tools:\n";
  for (const ToolSpec& t : tools) {
    s += "- " + t.name;
    if (!t.description.empty()) s += ": " + t.description;
    s += "\n  parameters: " + (t.parameters.is_null() ? std::string("{}") : t.parameters.dump()) + "\n";
  }
  s += "\nReply with one JSON object and nothing else: {\"tool_call\": {\"name\": <tool name>, \"arguments\": "
       "<arguments object>}} to call a tool, or {\"response\": <your answer>} to answer directly.";
  return s;
}

}  // namespace

ojson messages_for_template(ToolFormat f, const ojson& messages, const std::vector<ToolSpec>& tools) {
  if (f != ToolFormat::Generic) {
    ojson out = ojson::array();
    for (const ojson& m : messages) {
      ojson copy = m;
      if (copy.contains("tool_calls")) copy["tool_calls"] = calls_with_object_arguments(copy["tool_calls"]);
      out.push_back(std::move(copy));
    }
    return out;
  }
  ojson out = ojson::array();
  for (const ojson& m : messages) {
    const std::string role = m.value("role", "");
    const std::string content = m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "";
    if (role == "assistant" && m.contains("tool_calls")) {
      std::string text = content.empty() ? "" : content + "\n";
      for (const ojson& c : calls_with_object_arguments(m["tool_calls"]))
        text += ojson{{"tool_call", {{"name", c["function"]["name"]}, {"arguments", c["function"]["arguments"]}}}}.dump() + "\n";
      out.push_back({{"role", "assistant"}, {"content", trim(text)}});
    } else if (role == "tool") {
      const std::string result = "Tool result" + (m.contains("name") ? " (" + m["name"].get<std::string>() + ")" : std::string()) +
                                 ":\n" + content;
      // Results of several calls in a row: one user turn, so user and assistant still alternate.
      if (!out.empty() && out.back()["role"] == "user" && out.back().value("slm_tool_results", false))
        out.back()["content"] = out.back()["content"].get<std::string>() + "\n\n" + result;
      else
        out.push_back({{"role", "user"}, {"content", result}, {"slm_tool_results", true}});
    } else if (role == "user" && !out.empty() && out.back().value("slm_tool_results", false)) {
      out.back()["content"] = out.back()["content"].get<std::string>() + "\n\n" + content;  // keep turns alternating
    } else {
      out.push_back(m);
    }
  }
  for (ojson& m : out) m.erase("slm_tool_results");
  if (tools.empty()) return out;
  const std::string text = generic_instructions(tools);
  if (!out.empty() && out[0]["role"] == "system") {
    out[0]["content"] = out[0]["content"].get<std::string>() + "\n\n" + text;
  } else {
    for (ojson& m : out) {
      if (m["role"] == "user") {
        m["content"] = text + "\n\n" + m["content"].get<std::string>();
        break;
      }
    }
  }
  return out;
}

std::string ToolReplyStream::push(const std::string& text) {
  text_ += text;
  if (holding_ || f_ == ToolFormat::Generic) return {};
  const std::string lead = trim(text_);
  if (f_ == ToolFormat::Llama3) {
    // The whole reply is a call or not, decided by how it starts.
    static constexpr std::string_view kTag = "<|python_tag|>";
    if (sent_ == 0) {
      if (lead.empty() || (lead.size() < kTag.size() && kTag.substr(0, lead.size()) == lead)) return {};  // undecided
      if (lead[0] == '{' || lead.rfind(kTag, 0) == 0) {
        holding_ = true;
        return {};
      }
    }
    std::string out = text_.substr(sent_);
    sent_ = text_.size();
    return out;
  }
  // Hermes: stream up to a "<tool_call>" (or a tail that may become one).
  constexpr std::string_view kOpen = kHermesOpen;
  const size_t open = text_.find(kOpen, sent_);
  size_t until = open == std::string::npos ? text_.size() : open;
  if (open == std::string::npos) {
    // Hold back a tail that is a prefix of the tag.
    for (size_t k = std::min(kOpen.size() - 1, text_.size() - sent_); k > 0; --k) {
      if (std::string_view(text_).substr(text_.size() - k) == kOpen.substr(0, k)) {
        until = text_.size() - k;
        break;
      }
    }
  } else {
    holding_ = true;
  }
  // Leading whitespace waits too: a reply that is only calls should carry no content.
  if (sent_ == 0 && trim(std::string_view(text_).substr(0, until)).empty()) return {};
  std::string out = text_.substr(sent_, until - sent_);
  sent_ = until;
  return out;
}

ToolReply ToolReplyStream::finish(bool finished) {
  ToolReply r = read_tool_reply(f_, text_, tools_, finished);
  if (sent_ == 0) return r;
  // What was streamed is the start of the content: send the rest of it.
  if (r.calls.empty()) {
    r.content = text_.substr(sent_);
    return r;
  }
  // Hermes with calls after streamed text: the content outside the blocks, less what was sent.
  const std::string outside = split_hermes(text_).outside;
  r.content = outside.size() > sent_ ? trim(std::string_view(outside).substr(sent_)) : std::string();
  return r;
}

std::string new_tool_call_id() {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int> pick(0, sizeof(kChars) - 2);
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kChars[pick(rng)];
  return id;
}

}  // namespace slm
