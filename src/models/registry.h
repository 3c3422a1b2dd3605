// The table of architectures: general.architecture -> the factory in its own file.
#pragma once
#include <string>
#include <vector>

#include "models/model.h"

namespace slm {

ModelFactory find_architecture(const std::string& arch);

// Factories, one per architecture file.
std::unique_ptr<Model> make_llama(std::unique_ptr<GGUFFile> file);
std::unique_ptr<Model> make_qwen2(std::unique_ptr<GGUFFile> file);
std::unique_ptr<Model> make_qwen3(std::unique_ptr<GGUFFile> file);
std::unique_ptr<Model> make_gemma2(std::unique_ptr<GGUFFile> file);
std::unique_ptr<Model> make_gemma3(std::unique_ptr<GGUFFile> file);
std::unique_ptr<Model> make_phi3(std::unique_ptr<GGUFFile> file);

}  // namespace slm
