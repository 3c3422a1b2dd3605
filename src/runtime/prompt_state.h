// Prompt cache files: a sequence's tokens and its KV cache rows as stored (KVCache::save_seq),
// under a line that names what made them (the model, its adapters and scales, the cache types).
// `slm run --prompt-cache` keeps a session's prompt in one (Session::save_state / load_state);
// `slm serve --slot-save-path` saves and restores a slot's (POST /slots/ID?action=save|restore).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "models/lora.h"
#include "models/model.h"
#include "runtime/kv_cache.h"

namespace slm {

struct PromptState {
  std::string identity;         // prompt_state_identity of what made it
  std::vector<int32_t> tokens;  // the sequence's tokens, position 0 first
  std::string record;           // KVCache::save_seq of their rows
};

// What a prompt cache file says of the model and settings its rows were computed with: the
// shape, the file's size, a sample of the weights (read from the file, 8 x 4 KiB: a base model
// and its fine-tune have the same shape and size), each adapter with its scale (scales[i] for
// lora->adapters[i]; lora null or empty: none) and the cache types. Only a run that says the
// same may load the file.
std::string prompt_state_identity(const Model& model, const LoraSet* lora, std::span<const float> scales,
                                  KVTypes types);

// Writes the file (beside it, then renamed over it: a run stopped halfway leaves the old one).
// Returns its size. Throws slm::Error on I/O failure.
size_t write_prompt_state(const std::string& path, const PromptState& state);
// Reads one made by `identity` (prompt_state_identity of the reader), checking its form and that
// its tokens are below n_vocab; throws slm::Error naming the file and what is wrong (not one,
// made for another model or settings, cut short, bytes past its end).
PromptState read_prompt_state(const std::string& path, const std::string& identity, int64_t n_vocab);
// The state's rows into sequence seq of cache (KVCache::restore_seq), checked to hold as many
// positions as it has tokens; returns the tokens. Throws slm::Error naming path, the cache left
// as it was, or (rows and tokens disagreeing) with the sequence emptied.
std::vector<int32_t> restore_prompt_state(KVCache& cache, int seq, PromptState&& state, const std::string& path);

}  // namespace slm
