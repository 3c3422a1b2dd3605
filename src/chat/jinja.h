// Jinja2 template engine for GGUF `tokenizer.chat_template`s.
//
// Renders like Hugging Face's `apply_chat_template`: Python Jinja2 3.1 with
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True), the loopcontrols
// extension ({% break %}, {% continue %}), the `{% generation %}` tag, HF's `tojson`
// (json.dumps with ensure_ascii=False) and the globals `raise_exception` and `strftime_now`.
//
// Errors: TemplateError for syntax errors, unsupported syntax and runtime errors (the message
// names the line); RaiseException when the template calls raise_exception(msg), what() == msg.
//
// Key order: Python dicts keep insertion order, nlohmann::json sorts keys. Pass an
// nlohmann::ordered_json context when the order of object keys matters (tools | tojson).
#pragma once
#include <nlohmann/json.hpp>

#include <ctime>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace slm::chat {

// Syntax error, unsupported syntax, or an error while rendering. what() reads
// "template error (line N): message"; line() is N (0 when unknown).
class TemplateError : public std::runtime_error {
 public:
  TemplateError(const std::string& message, int line);
  int line() const { return line_; }
  // The message without the "template error (line N): " prefix.
  const std::string& message() const { return message_; }

 private:
  int line_;
  std::string message_;
};

// Thrown by the template's raise_exception(msg); what() is exactly msg.
class RaiseException : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RenderOptions {
  // The local time strftime_now() formats; unset means the current local time.
  std::optional<std::tm> now;

  // A fixed local date (midnight) for strftime_now, e.g. fixed_date(2024, 7, 26).
  static std::tm fixed_date(int year, int month, int day, int hour = 0, int minute = 0,
                            int second = 0);
};

namespace jinja {
struct Program;
}

// A parsed template: parse once, render many times. Thread-safe to render concurrently.
class Template {
 public:
  // Throws TemplateError on syntax errors and unsupported syntax.
  explicit Template(const std::string& source);
  ~Template();
  Template(const Template&) = default;
  Template& operator=(const Template&) = default;
  Template(Template&&) noexcept = default;
  Template& operator=(Template&&) noexcept = default;

  // `context` must be a JSON object; its keys become template variables.
  std::string render(const nlohmann::json& context, const RenderOptions& options = {}) const;
  std::string render(const nlohmann::ordered_json& context,
                     const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const jinja::Program> program_;
};

// Renders `source` with `context` (a JSON object: messages, add_generation_prompt, bos_token,
// eos_token, tools, ...).
std::string render_template(const std::string& source, const nlohmann::json& context);
std::string render_template(const std::string& source, const nlohmann::json& context,
                            const RenderOptions& options);
std::string render_template(const std::string& source, const nlohmann::ordered_json& context,
                            const RenderOptions& options = {});

}  // namespace slm::chat
