// Models that ollama has pulled, by their ollama names: `slm run -m llama3.2:1b` reads the GGUF
// file ollama keeps for that name (its models folder: $OLLAMA_MODELS, else ~/.ollama/models or
// the Linux service's /usr/share/ollama/.ollama/models). ollama stores each model as
// manifests/HOST/NAMESPACE/MODEL/TAG, a JSON manifest whose layer of media type
// application/vnd.ollama.image.model names the blob (blobs/sha256-HEX) holding the GGUF file.
// Nothing is downloaded: a name ollama has not pulled is reported as such.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace slm {

// The folders searched, in order.
std::vector<std::filesystem::path> ollama_model_dirs();

// Whether `name` reads as an ollama model name (MODEL, MODEL:TAG, NAMESPACE/MODEL[:TAG],
// HOST/NAMESPACE/MODEL[:TAG]) rather than a file path (one ending in .gguf, or starting with
// '/', '.' or '~').
bool looks_like_ollama_name(const std::string& name);

// The GGUF blob ollama holds for `name`, or nullopt if no searched folder has a manifest for
// it. Throws slm::Error for a manifest that cannot be read, is not JSON, has no model layer, or
// names a blob that is missing.
std::optional<std::string> find_ollama_model(const std::string& name);

// The file a model argument names: `path` itself where it exists or is not an ollama name,
// else the blob ollama holds for that name. Throws slm::Error (find_ollama_model's, or that
// there is neither such a file nor such an ollama model, naming the folders searched).
std::string model_file(const std::string& path);

}  // namespace slm
