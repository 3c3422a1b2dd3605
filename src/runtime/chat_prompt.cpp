#include "runtime/chat_prompt.h"

#include "core/error.h"
#include "core/gguf.h"
#include "core/whole_file.h"

#include <filesystem>

namespace slm {

namespace {
chat::Template parse_template(const std::string& source) {
  try {
    return chat::Template(source);
  } catch (const chat::TemplateError& e) {
    fail("chat template: {}", e.what());
  }
}
std::string special_text(const Tokenizer& tok, int32_t id) { return id >= 0 ? tok.token_text(id) : std::string(); }
}  // namespace

ChatPrompt::ChatPrompt(const Tokenizer& tok, const std::string& source)
    : tok_(&tok),
      tmpl_(parse_template(source)),
      bos_(special_text(tok, tok.bos())),
      eos_(special_text(tok, tok.eos())),
      source_(source),
      tool_format_(tool_format_for_template(source)) {}

namespace {
// The formats of the four families slm runs, as llama.cpp's --chat-template names them, for
// files whose metadata lacks a template (or carries a wrong one). Written from the formats'
// descriptions: ChatML (Qwen2.5), Llama 3's headers, Phi-3's role tags, Gemma's turns (no
// system role: a system message opens the first user turn, as llama.cpp does).
struct Builtin {
  const char* name;
  const char* source;
};
constexpr Builtin kBuiltins[] = {
    {"chatml",
     "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"},
    {"llama3",
     "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
     "{{ m.content | trim }}<|eot_id|>{% endfor %}"
     "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"},
    {"phi3",
     "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}"
     "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"},
    {"gemma",
     "{{ bos_token }}{% if messages[0].role == 'system' %}{% set first = messages[0].content + '\n\n' %}"
     "{% set turns = messages[1:] %}{% else %}{% set first = '' %}{% set turns = messages %}{% endif %}"
     "{% for m in turns %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
     "{{ first if loop.first else '' }}{{ m.content | trim }}<end_of_turn>\n{% endfor %}"
     "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"},
};
}  // namespace

std::string ChatPrompt::builtin_names() {
  std::string names;
  for (const Builtin& b : kBuiltins) names += (names.empty() ? "" : ", ") + std::string(b.name);
  return names;
}

const char* ChatPrompt::builtin_source(const std::string& name) {
  for (const Builtin& b : kBuiltins)
    if (name == b.name) return b.source;
  return nullptr;
}

ChatPrompt ChatPrompt::for_model(const Tokenizer& tok, const GGUFFile& gguf, const std::string& template_file,
                                 const std::string& model_path) {
  if (!template_file.empty()) {
    // llama.cpp's --chat-template takes a built-in name or the template itself; slm's took a
    // file: a file that exists wins, then a name, then text that looks like a template.
    std::error_code ec;
    if (std::filesystem::exists(template_file, ec))  // a directory gets read_whole_file's message
      return ChatPrompt(tok, read_whole_file(template_file, "chat template file"));
    if (const char* source = builtin_source(template_file)) return ChatPrompt(tok, source);
    if (template_file.find("{%") != std::string::npos || template_file.find("{{") != std::string::npos)
      return ChatPrompt(tok, template_file);
    fail("--chat-template '{}': no such file, and not a built-in template ({}) or a Jinja template's text",
         template_file, builtin_names());
  }
  if (auto t = gguf.opt_string("tokenizer.chat_template")) return ChatPrompt(tok, *t);
  fail("{} has no chat template (tokenizer.chat_template); pass one with --chat-template FILE", model_path);
}

std::string ChatPrompt::render(const nlohmann::ordered_json& messages) const {
  return render(messages, nullptr, nlohmann::ordered_json::object());
}

std::string ChatPrompt::render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) const {
  return render(messages, &tools, nlohmann::ordered_json::object());
}

std::string ChatPrompt::render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json* tools,
                               const nlohmann::ordered_json& kwargs) const {
  nlohmann::ordered_json context = kwargs_;
  for (const auto& [k, v] : kwargs.items()) context[k] = v;
  context["messages"] = messages;
  if (tools) context["tools"] = *tools;
  context["add_generation_prompt"] = true;
  context["bos_token"] = bos_;
  context["eos_token"] = eos_;
  return render_context(std::move(context));
}

nlohmann::ordered_json ChatPrompt::template_kwargs_from_options(const std::string& text, int reasoning_budget) {
  nlohmann::ordered_json kw = nlohmann::ordered_json::object();
  if (!text.empty()) {
    try {
      kw = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail("--chat-template-kwargs: not JSON ({}); give an object such as '{{\"enable_thinking\": false}}'", e.what());
    }
    if (!kw.is_object()) fail("--chat-template-kwargs must be a JSON object, got {}", kw.dump());
  }
  if (reasoning_budget != -1 && reasoning_budget != 0)
    fail("--reasoning-budget {}: only -1 (think as the model does) and 0 (no thinking) are supported", reasoning_budget);
  if (reasoning_budget == 0) kw["enable_thinking"] = false;
  return kw;
}

void ChatPrompt::set_template_kwargs(nlohmann::ordered_json kwargs) {
  if (!kwargs.is_object()) fail("chat template kwargs must be a JSON object, got {}", kwargs.dump());
  kwargs_ = std::move(kwargs);
}

std::string ChatPrompt::render_context(nlohmann::ordered_json context) const {
  try {
    return tmpl_.render(context);
  } catch (const chat::RaiseException& e) {
    fail("chat template refused the conversation: {}", e.what());
  } catch (const chat::TemplateError& e) {
    fail("chat template: {}", e.what());
  }
}

std::vector<int32_t> ChatPrompt::tokenize(const std::string& rendered) const {
  // The template writes BOS itself when the model wants one; add it only if it did not.
  const bool add_bos = tok_->add_bos() && !bos_.empty() && rendered.rfind(bos_, 0) != 0;
  std::vector<int32_t> ids;
  if (add_bos) ids.push_back(tok_->bos());
  const std::vector<int32_t> body = tok_->encode(rendered, /*add_special=*/false, /*parse_special=*/true);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

ChatPrompt::Fitted ChatPrompt::fit(nlohmann::ordered_json& messages, int64_t n_ctx, int64_t room) const {
  Fitted out;
  for (;;) {
    out.tokens = tokenize(render(messages));
    if (static_cast<int64_t>(out.tokens.size()) + room <= n_ctx) return out;
    // The oldest turn after the system messages: its user message and what follows up to the
    // next user message; never the last user message.
    size_t first = 0;
    while (first < messages.size() && messages[first].value("role", "") == "system") ++first;
    size_t last_user = messages.size();
    for (size_t i = messages.size(); i-- > first;)
      if (messages[i].value("role", "") == "user") {
        last_user = i;
        break;
      }
    if (first >= last_user) {
      out.fits = false;
      return out;
    }
    size_t end = first + 1;
    while (end < last_user && messages[end].value("role", "") != "user") ++end;
    messages.erase(messages.begin() + static_cast<std::ptrdiff_t>(first),
                   messages.begin() + static_cast<std::ptrdiff_t>(end));
    out.dropped += end - first;
  }
}

}  // namespace slm
