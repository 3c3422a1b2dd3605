// Perplexity and KL divergence with llama.cpp's method (tools/perplexity), so that the numbers
// compare with llama-perplexity's: the text is tokenized whole with BOS (as the vocabulary
// says) and special-token text not parsed; it is cut into chunks of n_ctx tokens (the tail
// that does not fill a chunk is dropped); each chunk is evaluated from an empty cache with its
// first token replaced by BOS; only the second half of each chunk is scored (every scored
// token then has at least n_ctx/2 tokens of context): position j's logits predict token j + 1
// for j in [n_ctx/2, n_ctx - 1). PPL = exp(mean NLL), and its error is llama.cpp's:
// PPL * sqrt(var(NLL) / (N - 1)).
//
// KL divergence, as llama.cpp measures a quantization: a run of the full-precision model saves
// the log-probabilities of every scored position (kl_base_out); a run of the quantized model
// on the same text reads them (kl_base_in) and reports the mean KL(base || model), its
// percentiles, how often both put the same token on top, and PPL(model) / PPL(base).
// The file: "SLMKLD01", int32 n_ctx, n_vocab, n_chunks, n_tokens, the int32 tokens of the
// whole text (a comparison refuses another text or tokenizer), then per scored position the
// log-probabilities quantized to 16 bits over their top 16 nats, as llama.cpp stores them:
// float min, float step, then (unlike llama.cpp) the exact NLL of the target token as a
// float, then uint16 q[n_vocab] (log p = min + step * q); 2 bytes per vocabulary entry. The
// exact NLL keeps PPL(base) right where a surprising target lies below the 16-nat floor
// (1.6% of PPL on 8 chunks of slm-docs-19m otherwise).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "runtime/kv_cache.h"

namespace slm {

class Model;
class Tokenizer;
struct LoraSet;

struct PerplexityOptions {
  int n_ctx = 512;
  int n_batch = 512;   // tokens per forward pass (at most n_ctx)
  int n_chunks = -1;   // at most this many chunks (-1: all)
  int n_threads = 1;
  KVTypes kv_types = DType::F16;  // llama.cpp's default cache type
  std::shared_ptr<const LoraSet> lora;  // adapters applied to the model (models/lora.h)
  std::string kl_base_out;     // save the log-probabilities here (full-precision model)
  std::string kl_base_in;      // compare with the log-probabilities saved here
  // Called after each chunk with its index (from 0), the chunk count and the running PPL.
  std::function<void(int chunk, int n_chunks, double ppl)> on_chunk;
};

struct KlStats {
  double base_ppl = 0;                 // PPL of the saved model over the same positions
  double ppl_ratio = 0;                // PPL(model) / PPL(base)
  double kld_mean = 0, kld_error = 0;  // mean KL(base || model) per position, +/- its error
  double kld_max = 0, kld_p999 = 0, kld_p99 = 0, kld_median = 0;
  double same_top = 0, same_top_error = 0;  // fraction of positions with the same argmax
};

struct PerplexityResult {
  int64_t n_tokens = 0;  // of the whole text, BOS included
  int n_chunks = 0;
  int64_t n_scored = 0;  // tokens whose NLL counted
  double ppl = 0, ppl_error = 0;
  double mean_nll = 0;
  bool has_kl = false;
  KlStats kl;
  double seconds = 0;
};

// Throws slm::Error when the text holds fewer than 2 * n_ctx tokens (as llama.cpp refuses),
// the options are out of range, or a KL base file is unreadable or made from another text,
// context size or vocabulary.
PerplexityResult perplexity(const Model& model, const Tokenizer& tok, std::string_view text,
                            const PerplexityOptions& opts);

}  // namespace slm
