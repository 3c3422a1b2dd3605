// Encoder models (BERT family: bge, all-MiniLM, e5): bidirectional attention within each
// sequence, no KV cache, no output head. Instead of Model::forward's logits they give the final
// hidden state of every token, which runtime/embedder.h pools into one vector per sequence.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "models/model.h"

namespace slm {

// How per-token hidden states become one vector per sequence. The numbers are llama.cpp's
// llama_pooling_type, as stored in the GGUF key <arch>.pooling_type.
enum class Pooling : int {
  None = 0,  // no pooling: one vector per token
  Mean = 1,  // average of every token's final hidden state ([CLS] and [SEP] included)
  Cls = 2,   // the first token's ([CLS])
  Last = 3,  // the last token's
};
const char* pooling_name(Pooling p);  // "none", "mean", "cls", "last"
// "none" / "mean" / "cls" / "last"; nullopt for anything else.
std::optional<Pooling> parse_pooling(const std::string& name);

class EncoderModel : public Model {
 public:
  // Runs the batch and writes the final hidden state of every token, [T][n_embd] in batch
  // order. Each sequence of the batch is complete in it (there is no cache): a token attends to
  // every token of its own sequence (to those at earlier or equal positions when causal()), never
  // to another sequence's. Positions index the position embeddings (0 = [CLS]). Throws
  // slm::Error for ids outside the vocabulary, positions outside the context, negative sequence
  // ids or a position repeated within a sequence.
  virtual void encode(ComputeContext& ctx, const Batch& batch, float* hidden) const = 0;

  // The pooling the file names (<arch>.pooling_type; None when absent, as llama.cpp).
  Pooling pooling() const { return pooling_; }
  // <arch>.attention.causal (false for BERT).
  bool causal() const { return causal_; }

  // An encoder has no output head and no cache: forward() throws slm::Error saying so.
  void forward(ComputeContext& ctx, const Batch& batch, KVCache& cache, float* logits) const override;

 protected:
  using Model::Model;
  Pooling pooling_ = Pooling::None;
  bool causal_ = false;
};

// Factories of the encoder architectures (registered in models/registry.cpp).
std::unique_ptr<Model> make_bert(std::unique_ptr<GGUFFile> file);

}  // namespace slm
