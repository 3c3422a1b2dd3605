#include "convert/json_file.h"

#include "core/error.h"
#include "core/whole_file.h"

namespace slm::convert {

nlohmann::json read_json_file(const std::string& path, std::string_view hint) {
  std::string text, why;
  if (!try_read_whole_file(path, text, why)) fail("{}: {}{}", path, why, hint);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

}  // namespace slm::convert
