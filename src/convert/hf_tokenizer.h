// A Hugging Face tokenizer folder to GGUF tokenizer.* metadata, as llama.cpp's converter
// writes it and slm's tokenizer (src/tokenizer/) reads it:
//   tokenizer.json, byte-level BPE -> tokenizer.ggml.model "gpt2", the vocabulary with token
//     types (added tokens: CONTROL when special or <|...|>-shaped, else USER_DEFINED; ids the
//     files leave out: "[PAD<id>]", UNUSED), the merges (both the "a b" and ["a", "b"] forms);
//     tokenizer.ggml.pre recognised from the pre-tokenizer's regex (Llama 3 -> llama-bpe,
//     Qwen2 -> qwen2); any other regex is an error that prints it, never a guess.
//   tokenizer_config.json / config.json / generation_config.json -> BOS, EOS, EOT, PAD, ... ids
//     and add_bos / add_eos (the post-processor's template first, an explicit add_bos_token
//     after), the chat template (or chat_template.jinja / chat_template.json).
//   tokenizer.model (SentencePiece; read without libsentencepiece, its protobuf is simple):
//     BPE type -> tokenizer.ggml.model "llama", unigram type -> "t5" (llama.cpp's UGM, with the
//     model's precompiled_charsmap and remove_extra_whitespaces); pieces, scores and types,
//     add_space_prefix from add_dummy_prefix; preferred over tokenizer.json when both are
//     there, as llama.cpp does.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/gguf.h"

namespace slm::convert {

struct HfVocab {
  std::string model;  // tokenizer.ggml.model
  std::string pre;    // tokenizer.ggml.pre
  std::vector<std::string> tokens;
  std::vector<int32_t> types;   // GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined,
                                // 5 unused, 6 byte
  std::vector<float> scores;    // SentencePiece only
  std::vector<std::string> merges;  // BPE only
  std::optional<bool> add_space_prefix;  // SentencePiece's add_dummy_prefix
  // SentencePiece unigram models ("t5"): normalisation as the model specifies it.
  std::optional<bool> remove_extra_whitespaces;
  std::string precompiled_charsmap;  // bytes; empty: none
  // Special-token ids and add_* flags in the order llama.cpp's SpecialVocab writes them;
  // names as in the GGUF keys' stems ("bos", "eos", "eot", "unk", "sep", "pad", ...).
  std::vector<std::pair<std::string, uint32_t>> special_ids;
  std::vector<std::pair<std::string, bool>> add_special;
  std::optional<std::string> chat_template;
  std::vector<std::pair<std::string, std::string>> named_chat_templates;  // besides the default
  std::string pre_regex;  // the pre-tokenizer regex it was recognised from (for messages)
};

// Reads the tokenizer files of `dir`. n_vocab: config.json's vocab_size (the embedding rows),
// or 0 to size the vocabulary from the tokenizer itself. Throws slm::Error naming the file and
// what is wrong (no tokenizer.json, a model type other than BPE, an unknown pre-tokenizer, ids
// past n_vocab, ...).
HfVocab read_hf_vocab(const std::string& dir, int64_t n_vocab);

// Adds the tokenizer.* keys to `w`.
void add_vocab_metadata(GGUFWriter& w, const HfVocab& v);

}  // namespace slm::convert
