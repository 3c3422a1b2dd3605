// Tokenizer for Jinja2 templates, following jinja2/lexer.py with trim_blocks=True and
// lstrip_blocks=True: `{%- -%}` whitespace control, `{%+`, comments, {% raw %}, and the
// removal of one trailing newline of the source (keep_trailing_newline=False).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace slm::chat::jinja {

enum class TokenType : uint8_t {
  Data,        // template text
  BlockBegin,  // {%
  BlockEnd,    // %}
  VarBegin,    // {{
  VarEnd,      // }}
  Name,
  String,
  Integer,
  Float,
  Operator,  // value holds the operator text: "+", "//", "(", "==", ...
  Eof,
};

struct Token {
  TokenType type = TokenType::Eof;
  std::string value;  // Data text, name, decoded string, operator
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// Throws TemplateError (with the line) on lexical errors.
std::vector<Token> tokenize(const std::string& source);

// "name", "string", "end of statement block", ... as Jinja describes a token in errors.
std::string describe_token(const Token& t);

}  // namespace slm::chat::jinja
