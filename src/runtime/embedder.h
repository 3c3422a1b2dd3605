// Sentence embeddings: texts or token sequences in, one vector per sequence out, from an
// embedding model (an EncoderModel: architecture bert). Many sequences go through one forward
// pass, each its own sequence (attention never crosses between them), up to a token budget per
// pass; the per-token hidden states are pooled as the file says (<arch>.pooling_type) or as
// asked, and optionally L2-normalized. Results agree with llama.cpp's llama-embedding
// (tests/test_engine_embeddings.cpp, ../shared/fixtures/embeddings).
//
//   auto model = slm::Model::load("bge-small-en-v1.5-f16.gguf");
//   slm::Embedder emb(*model, {.n_threads = 4});
//   auto vecs = emb.embed_texts({"first text", "second text"});  // L2-normalized
//
// An Embedder holds scratch memory and a thread pool: use one per thread. The Model can be
// shared by any number of Embedders (and sessions).
//
// Decoder models (llama, qwen2, gemma2, phi3) embed too: their final normalized hidden states,
// pooled by the last token unless asked otherwise (llama.cpp's --pooling last), each sequence
// attending causally to itself only.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "models/encoder.h"
#include "ops/compute.h"
#include "runtime/batch.h"
#include "tokenizer/tokenizer.h"

namespace slm {

struct EmbedderOptions {
  int n_threads = 1;
  // Tokens per forward pass. Sequences are never split: a pass holds whole sequences up to this
  // many tokens, and a sequence longer than the budget (but within the model's context) gets a
  // pass of its own. 512 (llama.cpp's micro-batch): on a bge-small-shaped Q8_0 file, 2 threads,
  // 128 / 512 / 2048 gave 6.6k / 6.9k / 6.7k tokens/s (within noise), and the activations of
  // a pass stay small.
  int n_batch = 512;
  // Overrides the file's pooling (nullopt: the file's; a file without one pools nothing).
  std::optional<Pooling> pooling;
};

// Counters of the work an Embedder has done since it was made.
struct EmbedStats {
  int64_t sequences = 0, tokens = 0, passes = 0;
  double seconds = 0;  // in forward passes and pooling
};

// v / ||v||_2 in place (a zero vector stays zero), as llama.cpp's common_embd_normalize(.., 2).
void normalize_l2(std::span<float> v);

class Embedder {
 public:
  // Throws slm::Error for a batch size that is not positive.
  Embedder(const Model& model, const EmbedderOptions& opts);
  Embedder(const Model& model, int n_threads) : Embedder(model, with_threads(n_threads)) {}

  const Model& model() const { return model_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  int64_t dim() const { return model_.hparams().n_embd; }
  // The longest sequence, in tokens ([CLS] and [SEP] included): the model's context.
  int64_t max_tokens() const { return model_.hparams().n_ctx_train; }
  Pooling pooling() const { return pooling_; }

  // The token ids embed() takes for a text: [CLS] + WordPiece ids + [SEP], as llama.cpp adds
  // them. The text of control tokens ("[SEP]" typed in a document) stays plain text
  // (llama-embedding would turn it into the token).
  std::vector<int32_t> tokenize(std::string_view text) const;

  // One embedding per sequence, in input order: dim() floats (pooling None: one row of dim()
  // floats per token, each row normalized on its own). Throws slm::Error, before any work, for
  // an empty sequence, one longer than max_tokens() (naming both numbers) or an id outside the
  // vocabulary.
  std::vector<std::vector<float>> embed(const std::vector<std::vector<int32_t>>& seqs, bool normalize = true);
  // tokenize() then embed().
  std::vector<std::vector<float>> embed_texts(const std::vector<std::string>& texts, bool normalize = true);

  const EmbedStats& stats() const { return stats_; }

 private:
  static EmbedderOptions with_threads(int n) {
    EmbedderOptions o;
    o.n_threads = n;
    return o;
  }
  // Runs seqs[first, last) in one pass and writes their pooled vectors into out.
  void run_pass(const std::vector<std::vector<int32_t>>& seqs, size_t first, size_t last, bool normalize,
                std::vector<std::vector<float>>& out);

  const Model& model_;
  const EncoderModel* encoder_;
  EmbedderOptions opts_;
  Pooling pooling_;
  std::unique_ptr<Tokenizer> tok_;
  ComputeContext ctx_;
  Batch batch_;
  std::vector<float> hidden_;
  EmbedStats stats_;
};

}  // namespace slm
