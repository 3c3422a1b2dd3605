// Tree-walking evaluator for parsed templates.
#pragma once
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace slm::chat::jinja {

// Renders `program` with the variables of `context` (a dict) on top of the globals.
std::string render_program(const Program& program, const Value& context,
                           const std::optional<std::tm>& now);

}  // namespace slm::chat::jinja
