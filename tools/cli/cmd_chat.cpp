// slm chat: multi-turn chat on stdin/stdout, prompts built with the model's own chat
// template (tokenizer.chat_template) or one the user names; never a guessed format.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "chat/jinja.h"
#include "commands.h"
#include "core/error.h"
#include "core/whole_file.h"
#include "generation_options.h"
#include "runtime/chat_prompt.h"
#include "runtime/generate.h"
#include "runtime/grammar_vocab.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {

Runner add_chat(CLI::App& app) {
  struct Opts : GenerationOptions {
    std::string system, template_file, template_kwargs;
    int reasoning_budget = -1;
    bool show_prompt = false;
  };
  auto o = std::make_shared<Opts>();
  o->add_to(app);
  app.add_option("--system", o->system, "system message");
  app.add_option("--chat-template,--chat-template-file", o->template_file,
                 "chat template: a Jinja file, a built-in name (chatml, llama3, phi3, gemma) or the template's text "
                 "(default: the model's tokenizer.chat_template)");
  app.add_flag("--jinja", [](int64_t) {}, "accepted for llama.cpp's command lines (templates are always Jinja here)");
  app.add_option("--chat-template-kwargs", o->template_kwargs,
                 "extra chat template variables, a JSON object (e.g. '{\"enable_thinking\": false}' for Qwen3)");
  app.add_option("--reasoning-budget", o->reasoning_budget,
                 "-1: let a thinking model think (default); 0: ask its template not to (enable_thinking false)")
      ->check(CLI::IsMember({-1, 0}));
  app.add_flag("--show-prompt", o->show_prompt,
               "print each rendered prompt to stderr between <<<PROMPT and PROMPT>>> lines, and "
               "each reply between <<<REPLY and REPLY>>> lines");
  return [o]() {
    auto model = o->load_model();
    auto tok = Tokenizer::from_gguf(model->gguf());
    ChatPrompt chat = ChatPrompt::for_model(*tok, model->gguf(), o->template_file, o->model);
    chat.set_template_kwargs(ChatPrompt::template_kwargs_from_options(o->template_kwargs, o->reasoning_budget));
    Session session(*model, o->session_options(*model));
    Sampler sampler(o->sampler_params(*tok), static_cast<int32_t>(model->hparams().n_vocab));
    if (auto g = o->load_grammar()) sampler.set_grammar({g, make_grammar_vocab(*tok)});
    Generator gen(*o, *tok, session);

    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!o->system.empty()) messages.push_back({{"role", "system"}, {"content", o->system}});
    const bool interactive = isatty(STDIN_FILENO);
    std::string line;
    for (;;) {
      if (interactive) {
        std::fputs("> ", stderr);
        std::fflush(stderr);
      }
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      // Commands, as in `ollama run`: /clear, /system TEXT, /bye, /help. "//..." sends "/...".
      if (line[0] == '/' && line.rfind("//", 0) != 0) {
        const std::string cmd = line.substr(0, line.find(' '));
        const std::string arg = line.size() > cmd.size() ? line.substr(cmd.size() + 1) : std::string();
        if (cmd == "/bye" || cmd == "/exit") break;
        if (cmd == "/clear") {
          nlohmann::ordered_json kept = nlohmann::ordered_json::array();
          for (const auto& m : messages)
            if (m.value("role", "") == "system") kept.push_back(m);
          messages = std::move(kept);
          fmt::print(stderr, "slm: the conversation is cleared\n");
        } else if (cmd == "/system") {
          nlohmann::ordered_json rest = nlohmann::ordered_json::array();
          if (!arg.empty()) rest.push_back({{"role", "system"}, {"content", arg}});
          for (const auto& m : messages)
            if (m.value("role", "") != "system") rest.push_back(m);
          messages = std::move(rest);
          fmt::print(stderr, "slm: {}\n", arg.empty() ? "no system message now" : "system message set");
        } else {
          if (cmd != "/help") fmt::print(stderr, "slm: unknown command {}\n", cmd);
          fmt::print(stderr, "slm: commands: /clear (forget the conversation), /system TEXT (set the system message; "
                             "none without TEXT), /bye (end); a line starting with // sends it with one / less\n");
        }
        continue;
      }
      if (line.rfind("//", 0) == 0) line.erase(0, 1);
      messages.push_back({{"role", "user"}, {"content", line}});
      // Room for the reply: -n, else a quarter of the context.
      const int64_t n_ctx = session.n_ctx();
      const int64_t room = o->n_predict > 0 ? std::min<int64_t>(o->n_predict, n_ctx / 2) : n_ctx / 4;
      const ChatPrompt::Fitted fitted = chat.fit(messages, n_ctx, room);
      if (fitted.dropped > 0)
        fmt::print(stderr, "slm: the conversation outgrew the context ({} tokens): its {} oldest messages are left "
                   "out from now on\n", n_ctx, fitted.dropped);
      // With --context-shift a prompt that fits by itself is answered: the reply shifts the
      // context when it fills (llama-cli's conversation mode does the same).
      if (!fitted.fits && !(o->shifts_context() && static_cast<int64_t>(fitted.tokens.size()) < n_ctx)) {
        fmt::print(stderr, "slm: that message (with the system prompt: {} tokens) and {} tokens for the reply do not "
                   "fit in the context of {} tokens; write a shorter message, or start with a larger -c{}\n",
                   fitted.tokens.size(), room, n_ctx, o->shifts_context() ? "" : " (or --context-shift)");
        messages.erase(messages.end() - 1);  // it is not part of the conversation
        continue;
      }
      const std::vector<int32_t>& ids = fitted.tokens;
      if (o->show_prompt) fmt::print(stderr, "<<<PROMPT\n{}\nPROMPT>>>\n", chat.render(messages));
      GenerateResult r = gen(sampler, ids, [](const std::string& s) {
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fflush(stdout);
        return true;
      });
      std::fputs("\n", stdout);
      std::fflush(stdout);
      if (o->show_prompt) fmt::print(stderr, "<<<REPLY\n{}\nREPLY>>>\n", r.text);
      messages.push_back({{"role", "assistant"}, {"content", r.text}});
      if (r.context_full)
        fmt::print(stderr, "slm: the reply filled the context ({} tokens) and was cut; older messages will be left "
                   "out to make room\n", session.n_ctx());
      if (r.context_shifts > 0)
        fmt::print(stderr, "slm: the reply filled the context ({} tokens) {} time{}: each time half of the text after "
                   "the kept tokens (--keep) was dropped (--context-shift)\n",
                   session.n_ctx(), r.context_shifts, r.context_shifts == 1 ? "" : "s");
    }
    return 0;
  };
}

Runner add_chat_template(CLI::App& app) {
  struct Opts { std::string template_file, context_file; };
  auto o = std::make_shared<Opts>();
  app.add_option("--template", o->template_file, "Jinja template file")->required();
  app.add_option("--context", o->context_file,
                 "JSON file: messages, add_generation_prompt, bos_token, eos_token, tools")->required();
  return [o]() {
    const std::string source = read_whole_file(o->template_file, "template file");
    nlohmann::ordered_json context;
    try {
      context = nlohmann::ordered_json::parse(read_whole_file(o->context_file, "context file"));
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}: malformed JSON: {}", o->context_file, e.what());
    }
    if (!context.is_object()) fail("{}: the context must be a JSON object", o->context_file);
    std::string out;
    try {
      out = chat::render_template(source, context);
    } catch (const chat::RaiseException& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 1;
    } catch (const chat::TemplateError& e) {
      fail("{}: {}", o->template_file, e.what());
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  };
}

}  // namespace slm::cli
