// JSON Schema -> GBNF: the grammar behind response_format {"type":"json_schema"} and
// {"type":"json_object"}, so a model asked for structured output can only write JSON that
// the caller's schema accepts.
//
// The grammar may accept fewer texts than the schema (whitespace between tokens is bounded,
// numbers have at most 16 digits per part, properties come in the listed order, optional
// tuple items are always written) but never more: a keyword it cannot enforce (pattern,
// multipleOf, not, if/then/else, ...) is an error naming the keyword and where it is, rather
// than a grammar that silently lets invalid output through. The root rule is exactly the
// value: no whitespace before or after it.
#pragma once
#include <nlohmann/json.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "sampling/grammar.h"

namespace slm {

// GBNF whose `root` rule accepts the JSON texts valid under `schema` (see above for the
// supported subset). Throws slm::Error "json schema at <JSON pointer>: <problem>" for a
// schema it cannot enforce, a $ref it cannot resolve, or one no value can satisfy.
std::string json_schema_to_grammar(const nlohmann::ordered_json& schema);

// GBNF for any JSON object (response_format {"type":"json_object"}): root is an object.
std::string json_object_grammar();

// The parsed grammar for a schema, and for a schema given as JSON text (slm::Error "not valid
// JSON: ..." when it does not parse): what --json-schema, the API's response_format and
// GenerateParams::json_schema constrain with.
std::shared_ptr<const Grammar> json_schema_grammar(const nlohmann::ordered_json& schema);
std::shared_ptr<const Grammar> json_schema_grammar(std::string_view schema_text);

}  // namespace slm
