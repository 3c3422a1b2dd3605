// A loaded model: hyperparameters and weights bound to the mapped GGUF file, and the
// architecture's forward pass. Each architecture lives in its own file behind the same
// three steps (read hparams, bind tensors, forward); shared blocks are in models/blocks.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "ops/compute.h"
#include "ops/ops.h"
#include "ops/tensor.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"

namespace slm {

struct DecoderView;  // models/decoder_view.h

struct HParams {
  std::string arch;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_ff = 0;
  int64_t head_dim_k = 0;
  int64_t head_dim_v = 0;
  float norm_eps = 1e-5f;
  RopeParams rope;
  // Gemma-style extras (0 = off).
  float attn_softcap = 0.0f;
  float final_softcap = 0.0f;
  int32_t sliding_window = 0;
  float attn_scale = 0.0f;  // 0: 1/sqrt(head_dim_k)
};

class Model {
 public:
  virtual ~Model() = default;
  // Opens the file and builds the model for its general.architecture. Throws slm::Error.
  static std::unique_ptr<Model> load(const std::string& path);
  // The same for a file already opened (slm info looks at it first).
  static std::unique_ptr<Model> load(std::unique_ptr<GGUFFile> file);
  static std::vector<std::string> supported_architectures();

  const HParams& hparams() const { return hp_; }
  const GGUFFile& gguf() const { return *file_; }
  KVShape kv_shape() const {
    return {static_cast<int>(hp_.n_layer), hp_.n_head_kv * hp_.head_dim_k, hp_.n_head_kv * hp_.head_dim_v,
            static_cast<int>(hp_.n_head_kv)};
  }
  // The cache this architecture needs (sliding-window models override).
  virtual std::unique_ptr<KVCache> make_cache(int n_ctx, int n_seq, int n_batch, KVTypes types) const;
  // Runs the batch: stores its K/V in the cache and writes n_vocab logits for every token
  // whose logits flag is set, in batch order.
  virtual void forward(ComputeContext& ctx, const Batch& batch, KVCache& cache,
                       float* logits) const = 0;
  // The weights and block variations a training pass works with (models/decoder_view.h), for
  // a context of n_ctx positions (Phi-3's LongRoPE factors depend on it). Throws slm::Error for
  // architectures that cannot be fine-tuned (encoders).
  virtual DecoderView decoder_view(int n_ctx) const;
  // How this decoder's cached keys move `delta` positions back (KVCache::shift, a context
  // shift): RoPE by -delta with the frequencies of a context of n_ctx (Phi-3's LongRoPE factors
  // depend on it), at unit magnitude (LongRoPE's attn_factor is in the keys already), over rows
  // of n_head_kv heads. Throws slm::Error as decoder_view does for encoders.
  KVCache::KeyRotation key_rotation(int n_ctx) const;

 protected:
  explicit Model(std::unique_ptr<GGUFFile> file) : file_(std::move(file)) {}
  // Step 1 helpers: the architecture's keys, "<arch>.<suffix>".
  int64_t key_int(const std::string& suffix) const;
  int64_t key_int(const std::string& suffix, int64_t def) const;
  float key_float(const std::string& suffix, float def) const;
  void read_common_hparams();  // sizes, heads, eps, rope, vocab
  void read_yarn(float factor);  // rope.scaling.type yarn
  // Step 2 helpers: a matrix of exactly n_in x n_out (null Weight if optional and absent).
  Weight bind(const std::string& name, int64_t n_in, int64_t n_out, bool required = true) const;
  std::vector<float> bind_vector(const std::string& name, int64_t n, bool required = true) const;
  // Qwen3 / Gemma 3: layer l's attn_q_norm and attn_k_norm (head_dim_k weights each).
  void bind_head_norms(int64_t layer, std::vector<float>& q_norm, std::vector<float>& k_norm) const;
  static std::string layer_name(int64_t layer, const char* what) {
    return "blk." + std::to_string(layer) + "." + what;
  }

  std::unique_ptr<GGUFFile> file_;
  HParams hp_;
};

using ModelFactory = std::unique_ptr<Model> (*)(std::unique_ptr<GGUFFile>);

}  // namespace slm
