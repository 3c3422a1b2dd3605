// Tokenizers built from GGUF metadata, matching llama.cpp token for token:
//   tokenizer.ggml.model = "gpt2"  byte-level BPE; pre-tokenizers of the llama-bpe (Llama 3) and
//                                   qwen2 families (tokenizer.ggml.pre)
//                          "llama" SentencePiece BPE with byte fallback (Llama 2, Phi-3, TinyStories)
//                          "bert"  WordPiece (BERT / BGE embedding models)
//                          "t5"    SentencePiece unigram (llama.cpp's UGM), with the model's
//                                  precompiled character map
// Anything else is rejected with an slm::Error naming the value rather than guessed at.
// All const member functions are safe to call concurrently.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

class GGUFFile;

class Tokenizer {
 public:
  // Reads the tokenizer.* metadata. Throws slm::Error naming the file, the key and the value.
  static std::unique_ptr<Tokenizer> from_gguf(const GGUFFile& f);
  virtual ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  int32_t n_vocab() const;

  // add_special: add BOS (and EOS) when the metadata says so (WordPiece: [CLS] ... [SEP]).
  // parse_special: recognise the text of control tokens in the input. Like llama.cpp, the text
  // of user-defined tokens is always recognised; with parse_special false control-token texts
  // are tokenized as ordinary text.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes a token stands for (SPM: U+2581 -> space, <0xXX> -> that byte; BPE: byte-level
  // alphabet undone). Control and unknown tokens give "" unless render_special; user-defined
  // tokens always give their text. Throws slm::Error for an id outside the vocabulary.
  std::string token_to_piece(int32_t id, bool render_special = false) const;
  // llama.cpp's llama_detokenize(remove_special = false, unparse_special = render_special):
  // concatenated pieces; with add_space_prefix (SPM) the first token loses one leading space;
  // models with clean_up_tokenization_spaces (Llama 3, BERT) get " ," -> "," etc.
  std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;

  // Special tokens; -1 when the vocabulary has none. The defaults follow llama.cpp
  // (SPM: bos 1, eos 2, unk 0), metadata overrides them when in range.
  int32_t bos() const;
  int32_t eos() const;
  int32_t eot() const;
  int32_t eom() const;
  int32_t unk() const;
  int32_t sep() const;
  int32_t pad() const;
  bool add_bos() const;
  bool add_eos() const;
  // Fill-in-the-middle tokens (code models: Qwen2.5-Coder, CodeGemma, StarCoder, ...), from the
  // tokenizer.ggml.fim_* keys or, like llama.cpp, found by their text; -1 when absent.
  // pre/suf/mid frame the prefix, suffix and middle; rep and sep start the repository name and
  // each file of the repo-level format (Qwen2.5-Coder); pad ends a fill.
  int32_t fim_pre() const;
  int32_t fim_suf() const;
  int32_t fim_mid() const;
  int32_t fim_pad() const;
  int32_t fim_rep() const;
  int32_t fim_sep() const;

  // End of generation: eos, eot, eom, and (like llama.cpp) tokens such as <|im_end|>,
  // <|eot_id|>, <|end|>, <end_of_turn>, <|endoftext|> when present.
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const;  // ascending
  bool is_control(int32_t id) const;

  const std::string& token_text(int32_t id) const;  // raw vocabulary string
  std::optional<int32_t> find_token(std::string_view text) const;

  const std::string& model_type() const;  // tokenizer.ggml.model
  const std::string& pre_type() const;    // tokenizer.ggml.pre ("" when absent)

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streaming detokenizer: push token ids, get back only complete UTF-8 text (never half of a
// multi-byte character, e.g. when an emoji arrives as several byte tokens); flush() returns
// whatever is still held back. Bytes that can never complete a character are passed through.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool render_special = false)
      : tok_(&tok), render_special_(render_special) {}
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool render_special_;
  std::string pending_;
};

}  // namespace slm
