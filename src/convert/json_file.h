// A JSON file of a Hugging Face or PEFT folder (config.json, tokenizer.json, the safetensors
// index, adapter_config.json), read in one call and parsed from memory: nlohmann's stream
// adapter goes a character at a time (Llama 3's tokenizer.json is 9 MB).
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace slm::convert {

// Throws slm::Error "<path>: <why the file cannot be read><hint>" or "<path>: not valid JSON:
// ...". hint, when given, follows the read error (" (not a Hugging Face model folder?)").
nlohmann::json read_json_file(const std::string& path, std::string_view hint = {});

}  // namespace slm::convert
