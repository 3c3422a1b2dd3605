#include "runtime/chat_prompt.h"

#include "core/error.h"
#include "core/gguf.h"
#include "core/whole_file.h"

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
      tool_format_(tool_format_for_template(source)) {}

ChatPrompt ChatPrompt::for_model(const Tokenizer& tok, const GGUFFile& gguf, const std::string& template_file,
                                 const std::string& model_path) {
  if (!template_file.empty()) {
    return ChatPrompt(tok, read_whole_file(template_file, "chat template file"));
  }
  if (auto t = gguf.opt_string("tokenizer.chat_template")) return ChatPrompt(tok, *t);
  fail("{} has no chat template (tokenizer.chat_template); pass one with --chat-template FILE", model_path);
}

std::string ChatPrompt::render(const nlohmann::ordered_json& messages) const {
  return render_context({{"messages", messages}, {"add_generation_prompt", true}, {"bos_token", bos_}, {"eos_token", eos_}});
}

std::string ChatPrompt::render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) const {
  return render_context({{"messages", messages},
                         {"tools", tools},
                         {"add_generation_prompt", true},
                         {"bos_token", bos_},
                         {"eos_token", eos_}});
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
