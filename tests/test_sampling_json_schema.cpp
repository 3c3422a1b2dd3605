// JSON Schema -> GBNF: each generated grammar is run through the grammar engine on valid and
// invalid instances (the engine, not string comparison, decides), plus the error messages for
// schemas the converter must refuse.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "sampling/grammar.h"
#include "sampling/json_schema.h"

namespace {

using json = nlohmann::ordered_json;
using slm::json_schema_to_grammar;

bool matches(const std::string& gbnf, std::string_view text) {
  slm::GrammarState s(slm::Grammar::parse(gbnf));
  return s.advance(text) && s.can_end();
}

// Every `good` text is accepted and every `bad` one refused, reporting the grammar on failure.
void expect_language(const json& schema, const std::vector<std::string>& good, const std::vector<std::string>& bad) {
  std::string g = json_schema_to_grammar(schema);
  for (const std::string& t : good) EXPECT_TRUE(matches(g, t)) << "should accept: " << t << "\ngrammar:\n" << g;
  for (const std::string& t : bad) EXPECT_FALSE(matches(g, t)) << "should refuse: " << t << "\ngrammar:\n" << g;
}

// The message of the slm::Error the conversion throws ("" when it does not throw).
std::string error_of(const json& schema) {
  try {
    json_schema_to_grammar(schema);
  } catch (const slm::Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonSchema, Numbers) {
  expect_language(json{{"type", "number"}}, {"0", "-1.5e10", "3.25", "1E+2", "-0", "12345678901234"},
                  {"01", "1.", ".5", "+1", "-", "1e", "1.5.2", "\"1\"", " 1", "1 "});
  expect_language(json{{"type", "integer"}}, {"0", "-7", "42"}, {"1.0", "01", "-", "1e3"});
}

TEST(JsonSchema, IntegerBounds) {
  expect_language(json{{"type", "integer"}, {"minimum", 1}, {"maximum", 120}}, {"1", "9", "10", "99", "100", "119", "120"},
                  {"0", "121", "200", "-1", "1000"});
  expect_language(json{{"type", "integer"}, {"minimum", -15}, {"maximum", 7}}, {"-15", "-10", "-9", "-1", "0", "7"},
                  {"-16", "-20", "8", "-0"});
  expect_language(json{{"type", "integer"}, {"exclusiveMinimum", 99}}, {"100", "1234567", "999"}, {"99", "0", "-5", "10"});
  expect_language(json{{"type", "integer"}, {"maximum", -3}}, {"-3", "-4", "-1000"}, {"-2", "0", "5"});
  expect_language(json{{"type", "integer"}, {"minimum", 0}}, {"0", "5", "10", "123"}, {"-1", "01"});
  EXPECT_NE(error_of(json{{"type", "integer"}, {"minimum", 5}, {"maximum", 4}}), "");
}

TEST(JsonSchema, StringsAndEscapes) {
  expect_language(json{{"type", "string"}}, {R"("")", R"("abc")", R"("\u00e9")", R"("a\"b\\c\n")", "\"caf\xC3\xA9\""},
                  {"\"a\nb\"", R"("\x")", R"("\u12")", R"("abc)", "abc", R"("a"b")"});
  expect_language(json{{"type", "string"}, {"minLength", 2}, {"maxLength", 3}}, {R"("ab")", R"("abc")", R"("a\n")"},
                  {R"("a")", R"("abcd")", R"("")"});
}

TEST(JsonSchema, StringFormats) {
  expect_language(json{{"type", "string"}, {"format", "date"}}, {R"("2024-02-29")", R"("1999-12-31")"},
                  {R"("2024-13-01")", R"("2024-1-01")", R"("2024-01-32")", R"("x")"});
  expect_language(json{{"type", "string"}, {"format", "time"}}, {R"("23:59:59Z")", R"("08:30:00.123+02:00")"},
                  {R"("24:00:00Z")", R"("08:30:00")", R"("8:30:00Z")"});
  expect_language(json{{"type", "string"}, {"format", "date-time"}}, {R"("2024-05-01T12:00:00Z")"},
                  {R"("2024-05-01 12:00")", R"("2024-05-01")"});
  expect_language(json{{"type", "string"}, {"format", "uuid"}}, {R"("123e4567-e89b-12d3-a456-426614174000")"},
                  {R"("123e4567e89b12d3a456426614174000")", R"("123e4567-e89b-12d3-a456-42661417400g")"});
  // An unknown format is only an annotation: any string.
  expect_language(json{{"type", "string"}, {"format", "email"}}, {R"("not an email")"}, {"1"});
}

TEST(JsonSchema, EnumConstAndTypeArrays) {
  json e = json::parse(R"({"enum": ["red", "say \"hi\"", "caf\u00e9", "\u65e5\u672c", 42, null, true, {"a": [1]}]})");
  expect_language(e, {R"("red")", R"("say \"hi\"")", "\"caf\xC3\xA9\"", "\"\xE6\x97\xA5\xE6\x9C\xAC\"", "42", "null", "true",
                      R"({"a":[1]})"},
                  {R"("blue")", R"("say "hi"")", "false", "43", R"("42")"});
  // enum values of another type than "type" are left out
  expect_language(json::parse(R"({"type": "string", "enum": ["a", 1]})"), {R"("a")"}, {"1"});
  expect_language(json::parse(R"({"const": "fixed"})"), {R"("fixed")"}, {R"("other")"});
  expect_language(json::parse(R"({"type": ["string", "null"]})"), {R"("x")", "null"}, {"1", "nul"});
  expect_language(json::parse(R"({"type": "integer", "nullable": true})"), {"3", "null"}, {R"("3")"});
  expect_language(json::parse(R"({"type": "boolean"})"), {"true", "false"}, {"True", "1"});
}

TEST(JsonSchema, NestedObjects) {
  json schema = json::parse(R"({
    "type": "object",
    "properties": {
      "name": {"type": "string"},
      "address": {"type": "object",
                  "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
                  "required": ["city", "zip"]}
    },
    "required": ["name", "address"]})");
  expect_language(schema,
                  {R"({"name":"Ann","address":{"city":"Oslo","zip":150}})",
                   "{\n  \"name\": \"Ann\",\n  \"address\": {\n    \"city\": \"Oslo\",\n    \"zip\": 150\n  }\n}",
                   R"({ "name" : "Ann" , "address" : { "city" : "Oslo" , "zip" : 150 } })"},
                  {R"({"name":"Ann"})", R"({"address":{"city":"Oslo","zip":150},"name":"Ann"})",
                   R"({"name":"Ann","address":{"city":"Oslo","zip":"150"}})",
                   R"({"name":"Ann","address":{"city":"Oslo","zip":150},"extra":1})",
                   R"( {"name":"Ann","address":{"city":"Oslo","zip":150}})"});
}

TEST(JsonSchema, OptionalPropertiesAndCommas) {
  // a optional, b required, c optional, d optional: any subset of the optional ones, in order.
  json schema = json::parse(R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
    "c": {"type": "integer"}, "d": {"type": "integer"}}, "required": ["b"]})");
  expect_language(schema,
                  {R"({"b":2})", R"({"a":1,"b":2})", R"({"b":2,"c":3})", R"({"b":2,"d":4})", R"({"a":1,"b":2,"d":4})",
                   R"({"a":1,"b":2,"c":3,"d":4})"},
                  {R"({})", R"({"a":1})", R"({"a":1,"c":3})", R"({,"b":2})", R"({"b":2,})", R"({"a":1,,"b":2})",
                   R"({"b":2,"c":3,"b":2})", R"({"b":2 "c":3})", R"({"c":3,"b":2})"});
  // All optional: the empty object and every ordered subset.
  json all_opt = json::parse(R"({"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "string"},
    "z": {"type": "string"}}})");
  expect_language(all_opt, {"{}", "{ }", R"({"x":"1"})", R"({"y":"1"})", R"({"z":"1"})", R"({"x":"1","z":"3"})",
                            R"({"y":"2","z":"3"})", R"({"x":"1","y":"2","z":"3"})"},
                  {R"({"z":"3","x":"1"})", R"({,"y":"2"})", R"({"x":"1",})", R"({"w":"1"})"});
}

TEST(JsonSchema, AdditionalProperties) {
  json schema = json::parse(R"({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
    "additionalProperties": {"type": "string"}})");
  expect_language(schema, {R"({"id":1})", R"({"id":1,"note":"x"})", R"({"id":1,"a":"x","i":"y","idx":"z"})"},
                  {R"({"id":1,"note":2})", R"({"id":1,"id":"x"})", R"({"note":"x"})"});
  // additionalProperties: true and no properties -> any object; bare "object" too.
  expect_language(json::parse(R"({"type": "object", "additionalProperties": true})"), {"{}", R"({"k":[1,{"z":null}]})"},
                  {"[]"});
  expect_language(json::parse(R"({"type": "object", "additionalProperties": false})"), {"{}"}, {R"({"a":1})"});
}

TEST(JsonSchema, Arrays) {
  expect_language(json::parse(R"({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3})"),
                  {"[1]", "[1,2]", "[1, 2, 3]", "[ 1 ]"}, {"[]", "[1,2,3,4]", "[1,]", "[,1]", R"(["1"])"});
  expect_language(json::parse(R"({"type": "array", "items": {"type": "string"}})"), {"[]", R"(["a","b"])"}, {"[1]"});
  expect_language(json::parse(R"({"type": "array", "minItems": 2})"), {"[1,\"a\"]", "[null,{},[]]"}, {"[1]", "[]"});
  // a tuple: exactly the listed items
  expect_language(json::parse(R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]})"),
                  {R"(["a",1])", R"([ "a" , 1 ])"}, {R"([1,"a"])", R"(["a"])", R"(["a",1,2])"});
  // a tuple with more items of another schema
  expect_language(json::parse(R"({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"},
                                  "maxItems": 3})"),
                  {R"(["a"])", R"(["a",1])", R"(["a",1,2])"}, {R"(["a",1,2,3])", R"(["a","b"])", "[1]"});
}

TEST(JsonSchema, AnyOfOneOfAllOf) {
  expect_language(json::parse(R"({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]})"),
                  {"1", R"("ab")"}, {R"("abc")", "true"});
  expect_language(json::parse(R"({"oneOf": [{"type": "boolean"}, {"type": "null"}]})"), {"true", "null"}, {"0"});
  // allOf of object schemas: properties and required merged
  expect_language(json::parse(R"({"allOf": [
      {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
      {"properties": {"b": {"type": "string"}}, "required": ["b"]}]})"),
                  {R"({"a":1,"b":"x"})"}, {R"({"a":1})", R"({"b":"x"})"});
  // sibling keywords apply to every alternative
  expect_language(json::parse(R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
      "anyOf": [{"required": ["a"]}, {"required": ["b"]}]})"),
                  {R"({"a":1})", R"({"b":2})", R"({"a":1,"b":2})"}, {"{}"});
}

TEST(JsonSchema, RecursiveRef) {
  json tree = json::parse(R"({
    "$defs": {"node": {"type": "object",
      "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
      "required": ["value"]}},
    "$ref": "#/$defs/node"})");
  expect_language(tree, {R"({"value":1})", R"({"value":1,"children":[]})",
                         R"({"value":1,"children":[{"value":2},{"value":3,"children":[{"value":4}]}]})"},
                  {R"({"value":1,"children":[{}]})", R"({"children":[]})"});
  json defs = json::parse(R"({"definitions": {"id": {"type": "string", "format": "uuid"}},
    "type": "object", "properties": {"x": {"$ref": "#/definitions/id", "description": "an id"}}, "required": ["x"]})");
  expect_language(defs, {R"({"x":"123e4567-e89b-12d3-a456-426614174000"})"}, {R"({"x":"abc"})"});
}

TEST(JsonSchema, AnySchemas) {
  for (const json& any : {json(true), json::object(), json::parse(R"({"description": "anything"})")})
    expect_language(any, {"1", "\"s\"", "null", "[1,{\"a\":false}]", "{}"}, {"nope", "[1,]"});
  EXPECT_NE(error_of(json(false)), "");
}

TEST(JsonSchema, WhitespaceIsBounded) {
  json schema = json::parse(R"({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})");
  std::string g = json_schema_to_grammar(schema);
  EXPECT_TRUE(matches(g, "{\"a\": 1}"));
  EXPECT_TRUE(matches(g, "{\n    \"a\": 1\n}"));
  EXPECT_FALSE(matches(g, "{\"a\":" + std::string(30, ' ') + "1}"));
  EXPECT_FALSE(matches(g, "{\n" + std::string(30, ' ') + "\"a\":1}"));
  EXPECT_FALSE(matches(g, "{\n\n\n\"a\":1}"));
}

TEST(JsonSchema, ObjectGrammar) {
  std::string g = slm::json_object_grammar();
  EXPECT_TRUE(matches(g, R"({"a":{"b":[1,2,{"c":null}]},"d":"e"})"));
  EXPECT_TRUE(matches(g, "{}"));
  EXPECT_FALSE(matches(g, "[1,2]"));
  EXPECT_FALSE(matches(g, "42"));
  EXPECT_FALSE(matches(g, R"({"a":})"));
}

TEST(JsonSchema, Errors) {
  std::string e = error_of(json::parse(R"({"type": "object", "properties": {"age": {"type": "string", "pattern": "^a"}}})"));
  EXPECT_NE(e.find("/properties/age"), std::string::npos) << e;
  EXPECT_NE(e.find("\"pattern\""), std::string::npos) << e;

  e = error_of(json::parse(R"({"$ref": "https://example.com/schema.json"})"));
  EXPECT_NE(e.find("$ref"), std::string::npos) << e;
  e = error_of(json::parse(R"({"$ref": "#/$defs/missing"})"));
  EXPECT_NE(e.find("#/$defs/missing"), std::string::npos) << e;

  e = error_of(json::parse(R"({"type": "object", "properties": {"a": {}}, "required": ["a", "b"]})"));
  EXPECT_NE(e.find("\"b\""), std::string::npos) << e;

  e = error_of(json::parse(R"({"type": "numbr"})"));
  EXPECT_NE(e.find("numbr"), std::string::npos) << e;

  for (const char* bad : {R"({"type": "number", "minimum": 0})", R"({"type": "array", "uniqueItems": true})",
                          R"({"not": {"type": "string"}})", R"({"type": "object", "patternProperties": {}})",
                          R"({"type": "integer", "multipleOf": 2})", R"({"if": {}, "then": {}})",
                          R"({"pattern": "x"})", R"({"type": "object", "properties": {"a": {"type": "string"}},
                             "allOf": [{"properties": {"a": {"pattern": "x"}}}]})"})
    EXPECT_NE(error_of(json::parse(bad)), "") << bad;
}


TEST(JsonSchema, AwkwardPropertyNames) {
  // Names that sanitize alike, collide with building blocks ("space", "string", "root") or end
  // in "-<digits>" (the engine's own names for groups and repetitions), quotes and non-ASCII.
  json schema = json::parse(R"({"type": "object", "properties": {
      "a": {"type": "string", "maxLength": 2}, "a-1": {"type": "integer"}, "a 1": {"type": "array", "items": {"type": "integer"}},
      "space": {"type": "boolean"}, "string": {"type": "null"}, "root": {"type": "integer"},
      "say \"hi\"": {"type": "integer"}, "\u65e5\u672c": {"type": "string"}}, "additionalProperties": {"type": "integer"}})");
  expect_language(schema,
                  {R"({"a":"xy","a-1":1,"a 1":[1,2],"space":true,"string":null,"root":3,"say \"hi\"":4})",
                   "{\"\xE6\x97\xA5\xE6\x9C\xAC\":\"x\"}", "{\"\xE6\x97\xA5x\":1}", R"({"a 1":[],"sa":1,"say \"hi\"x":2,"b":3})"},
                  {R"({"a":"xyz"})", R"({"space":1})", R"({"say "hi"":4})", R"({"a":"x","a":"y"})", R"({"sa":1,"a":"x"})",
                   R"({"b":1,"space":true})", "{\"\xE6\x97\xA5\xE6\x9C\xAC\":1}", R"({"b":3,"string":1})"});
}

TEST(JsonSchema, MoreCombinations) {
  // alternatives that cannot be satisfied once the siblings are merged in are dropped
  expect_language(json::parse(R"({"type": "string", "anyOf": [{"type": "integer"}, {"maxLength": 1}]})"),
                  {R"("a")"}, {"1", R"("ab")"});
  // allOf: additionalProperties false in one part forbids the other part's extra names
  expect_language(json::parse(R"({"allOf": [
      {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false},
      {"properties": {"a": {"minimum": 1}, "b": {"type": "string"}}}]})"),
                  {"{}", R"({"a":1})"}, {R"({"a":0})", R"({"b":"x"})"});
  // $ref with constraining siblings: both apply
  expect_language(json::parse(R"({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "maxLength": 1})"),
                  {R"("a")"}, {R"("ab")", "1"});
  // the pre-2020 tuple form, and extra tuple items
  expect_language(json::parse(R"({"type": "array", "items": [{"type": "integer"}], "additionalItems": {"type": "string"}})"),
                  {"[1]", R"([1,"a","b"])"}, {"[]", "[1,2]"});
  // type inferred from keywords when "type" is missing
  expect_language(json::parse(R"({"properties": {"a": {"const": 1}}, "required": ["a"]})"), {R"({"a":1})"}, {"1", "{}"});
  expect_language(json::parse(R"({"items": {"type": "boolean"}, "maxItems": 1})"), {"[]", "[true]"}, {"[true,false]", "1"});
  // allOf intersects types (integer is the common part of integer and number)
  expect_language(json::parse(R"({"allOf": [{"type": ["string", "integer"]}, {"type": ["number", "null"]}]})"), {"5"},
                  {"5.5", R"("a")", "null"});
  // "#" refers to the whole schema
  expect_language(json::parse(R"({"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
                                  "required": ["next"]})"),
                  {R"({"next":null})", R"({"next":{"next":null}})"}, {R"({"next":{}})"});
  // a $ref cycle that never reaches any structure is refused with a hint, not a grammar error
  std::string e = error_of(json::parse(R"({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},
                                           "$ref": "#/$defs/a"})"));
  EXPECT_NE(e.find("refers back to itself"), std::string::npos) << e;
  // a large bound stays usable
  auto zeros = [](int n) {
    std::string t = "[0";
    for (int i = 1; i < n; ++i) t += ",0";
    return t + "]";
  };
  expect_language(json::parse(R"({"type": "array", "items": {"type": "integer"}, "maxItems": 200})"), {zeros(1), zeros(200)},
                  {zeros(201)});
}

TEST(JsonSchema, PydanticStyleSchema) {
  // What pydantic / OpenAI strict mode produce: $defs, titles, nullable via anyOf, defaults.
  json schema = json::parse(R"({
    "$defs": {"Pet": {"properties": {"kind": {"enum": ["cat", "dog"], "title": "Kind", "type": "string"},
                                     "age": {"minimum": 0, "title": "Age", "type": "integer"}},
                      "required": ["kind", "age"], "title": "Pet", "type": "object", "additionalProperties": false}},
    "properties": {"name": {"title": "Name", "type": "string", "description": "full name"},
                   "pets": {"items": {"$ref": "#/$defs/Pet"}, "title": "Pets", "type": "array"},
                   "nick": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Nick"}},
    "required": ["name", "pets"], "title": "Owner", "type": "object"})");
  expect_language(schema,
                  {R"({"name":"Al","pets":[{"kind":"cat","age":3}]})", R"({"name":"Al","pets":[],"nick":null})",
                   "{\n  \"name\": \"Al\",\n  \"pets\": [\n    {\n      \"kind\": \"dog\",\n      \"age\": 0\n    }\n  ],\n  \"nick\": \"A\"\n}"},
                  {R"({"name":"Al","pets":[{"kind":"cow","age":3}]})", R"({"name":"Al","pets":[{"kind":"cat","age":-1}]})",
                   R"({"name":"Al"})"});
}

}  // namespace
