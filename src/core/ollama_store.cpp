#include "core/ollama_store.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace slm {

namespace fs = std::filesystem;

std::vector<fs::path> ollama_model_dirs() {
  if (const char* env = std::getenv("OLLAMA_MODELS"); env && *env) return {env};
  std::vector<fs::path> dirs;
  if (const char* home = std::getenv("HOME"); home && *home) dirs.push_back(fs::path(home) / ".ollama" / "models");
  dirs.emplace_back("/usr/share/ollama/.ollama/models");  // the Linux install script's service user
  return dirs;
}

bool looks_like_ollama_name(const std::string& name) {
  if (name.empty() || name.size() > 512) return false;
  if (name[0] == '/' || name[0] == '.' || name[0] == '~') return false;
  if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".gguf") == 0) return false;
  for (const char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == ':' || c == '/')) return false;
  return name.find("..") == std::string::npos && name.find("//") == std::string::npos;
}

namespace {

// MODEL[:TAG] with up to two leading parts, as ollama completes it: registry.ollama.ai as the
// host, library as the namespace, latest as the tag.
fs::path manifest_path(const std::string& name) {
  std::string path = name, tag = "latest";
  if (const size_t colon = name.rfind(':'); colon != std::string::npos && name.find('/', colon) == std::string::npos) {
    path = name.substr(0, colon);
    tag = name.substr(colon + 1);
  }
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string p; std::getline(ss, p, '/');) parts.push_back(p);
  if (parts.size() == 1) parts.insert(parts.begin(), "library");
  if (parts.size() == 2) parts.insert(parts.begin(), "registry.ollama.ai");
  fs::path out = "manifests";
  for (const std::string& p : parts) out /= p;
  return out / tag;
}

}  // namespace

std::optional<std::string> find_ollama_model(const std::string& name) {
  if (!looks_like_ollama_name(name)) return std::nullopt;
  const fs::path rel = manifest_path(name);
  for (const fs::path& dir : ollama_model_dirs()) {
    const fs::path manifest = dir / rel;
    std::error_code ec;
    if (!fs::is_regular_file(manifest, ec)) continue;
    std::ifstream in(manifest, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) fail("{}: ollama's manifest for {} cannot be read", manifest.string(), name);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text.str());
    } catch (const nlohmann::json::exception& e) {
      fail("{}: ollama's manifest for {} is not JSON ({})", manifest.string(), name, e.what());
    }
    const auto layers = j.is_object() ? j.find("layers") : j.end();
    if (layers == j.end() || !layers->is_array())
      fail("{}: ollama's manifest for {} has no layers", manifest.string(), name);
    for (const auto& layer : *layers) {
      if (!layer.is_object() || layer.value("mediaType", "") != "application/vnd.ollama.image.model") continue;
      const std::string digest = layer.value("digest", "");
      if (digest.rfind("sha256:", 0) != 0 || digest.size() != 7 + 64 ||
          digest.find_first_not_of("0123456789abcdef", 7) != std::string::npos)
        fail("{}: ollama's manifest for {} names its model blob '{}', not a sha256 digest", manifest.string(), name,
             digest);
      const fs::path blob = dir / "blobs" / ("sha256-" + digest.substr(7));
      if (!fs::is_regular_file(blob, ec))
        fail("{}: ollama's manifest for {} names the blob {}, which is missing (pull the model again with ollama)",
             manifest.string(), name, blob.string());
      return blob.string();
    }
    fail("{}: ollama's manifest for {} has no model layer (application/vnd.ollama.image.model)", manifest.string(),
         name);
  }
  return std::nullopt;
}

std::string model_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) || !looks_like_ollama_name(path)) return path;
  if (const std::optional<std::string> blob = find_ollama_model(path)) return *blob;
  std::string dirs;
  for (const fs::path& d : ollama_model_dirs()) dirs += (dirs.empty() ? "" : ", ") + d.string();
  fail("{}: no such file, and not a model ollama has pulled (looked in {}; OLLAMA_MODELS sets the folder)", path, dirs);
}

}  // namespace slm
