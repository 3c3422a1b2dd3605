#include "models/model.h"

#include <cmath>

#include "core/error.h"
#include "models/decoder_view.h"
#include "models/registry.h"

namespace slm {

std::unique_ptr<Model> Model::load(const std::string& path) { return load(GGUFFile::open(path)); }

std::unique_ptr<Model> Model::load(std::unique_ptr<GGUFFile> file) {
  const std::string path = file->path();
  const GGUFValue* arch_v = file->find("general.architecture");
  if (!arch_v) fail("{}: missing metadata key general.architecture (not a model file?)", path);
  if (arch_v->type != GGUFType::STRING)
    fail("{}: general.architecture must be a string", path);
  const std::string arch = arch_v->as_string();
  ModelFactory factory = find_architecture(arch);
  if (!factory)
    fail("{}: unknown architecture '{}' (slm supports: {})", path, arch,
         fmt::join(supported_architectures(), ", "));
  // A model's tensors are read through the mapping from its first forward pass on (kernels
  // that work on the file's own rows, see ops.cpp): mapping them in one call costs ~5 ms for
  // 735 MiB held in huge page-cache folios and saved ~15 ms of page faults in that first pass.
  file->populate_tensors();
  try {
    return factory(std::move(file));
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind(path, 0) == 0) throw;
    fail("{}: loading {} model: {}", path, arch, msg);
  }
}

std::unique_ptr<KVCache> Model::make_cache(int n_ctx, int n_seq, int, KVTypes types) const {
  return make_full_kv_cache(kv_shape(), n_ctx, n_seq, types);
}

KVCache::KeyRotation Model::key_rotation(int n_ctx) const {
  // Copies: the view's frequency factors live in the model, its per-layer RoPE in the view.
  const DecoderView view = decoder_view(n_ctx);
  std::vector<RopeParams> per_layer;
  for (const DecoderLayerView& L : view.layers) {
    RopeParams p = L.rope ? *L.rope : view.attn.rope;
    p.attn_factor = 1.0f;
    per_layer.push_back(p);
  }
  const int64_t n_head_kv = hp_.n_head_kv, head_dim = hp_.head_dim_k;
  return [per_layer, n_head_kv, head_dim](int layer, float* keys, int64_t n_rows, int32_t delta) {
    // R(p - delta) = R(-delta) R(p) for every rotated pair: one angle for all rows.
    rope(keys, n_rows * n_head_kv, head_dim, -delta, per_layer.at(static_cast<size_t>(layer)));
  };
}

DecoderView Model::decoder_view(int) const {
  fail("{}: {} models cannot be fine-tuned by slm (only the decoders: llama, qwen2, gemma2, phi3)",
       file_->path(), hp_.arch);
}

int64_t Model::key_int(const std::string& suffix) const {
  return file_->get_int(hp_.arch + "." + suffix);
}
int64_t Model::key_int(const std::string& suffix, int64_t def) const {
  return file_->opt_int(hp_.arch + "." + suffix).value_or(def);
}
float Model::key_float(const std::string& suffix, float def) const {
  return static_cast<float>(file_->opt_float(hp_.arch + "." + suffix).value_or(def));
}

void Model::read_common_hparams() {
  hp_.arch = file_->get_string("general.architecture");
  hp_.n_ctx_train = key_int("context_length");
  hp_.n_embd = key_int("embedding_length");
  hp_.n_layer = key_int("block_count");
  hp_.n_ff = key_int("feed_forward_length");
  hp_.n_head = key_int("attention.head_count");
  hp_.n_head_kv = key_int("attention.head_count_kv", hp_.n_head);
  hp_.norm_eps = key_float("attention.layer_norm_rms_epsilon", 1e-5f);
  auto positive = [&](const char* what, int64_t v, int64_t max) {
    if (v <= 0 || v > max) fail("{}: hyperparameter {} = {} is out of range (1..{})", file_->path(), what, v, max);
  };
  positive("embedding_length", hp_.n_embd, 1 << 20);
  positive("block_count", hp_.n_layer, 4096);
  positive("feed_forward_length", hp_.n_ff, 1 << 22);
  positive("attention.head_count", hp_.n_head, 1 << 14);
  positive("attention.head_count_kv", hp_.n_head_kv, hp_.n_head);
  positive("context_length", hp_.n_ctx_train, int64_t{1} << 32);
  if (hp_.n_head % hp_.n_head_kv != 0)
    fail("{}: head_count {} is not a multiple of head_count_kv {}", file_->path(), hp_.n_head, hp_.n_head_kv);
  const int64_t default_head_dim = hp_.n_embd / hp_.n_head;
  hp_.head_dim_k = key_int("attention.key_length", default_head_dim);
  hp_.head_dim_v = key_int("attention.value_length", default_head_dim);
  positive("attention.key_length", hp_.head_dim_k, 4096);
  positive("attention.value_length", hp_.head_dim_v, 4096);

  hp_.rope.n_rot = static_cast<int>(key_int("rope.dimension_count", hp_.head_dim_k));
  if (hp_.rope.n_rot <= 0 || hp_.rope.n_rot > hp_.head_dim_k || hp_.rope.n_rot % 2 != 0)
    fail("{}: rope.dimension_count {} must be even and at most the head size {}", file_->path(),
         hp_.rope.n_rot, hp_.head_dim_k);
  hp_.rope.freq_base = key_float("rope.freq_base", 10000.0f);
  const std::string scaling = file_->opt_string(hp_.arch + ".rope.scaling.type").value_or("none");
  const float factor = key_float("rope.scaling.factor", 0.0f);
  if (scaling == "linear" && factor > 0.0f) hp_.rope.freq_scale = 1.0f / factor;
  else if (scaling == "yarn") read_yarn(factor);
  else if (scaling != "none" && scaling != "linear" && scaling != "longrope")
    fail("{}: rope scaling type '{}' is not supported (slm reads none, linear, yarn and longrope)", file_->path(),
         scaling);
  hp_.rope.freq_scale = key_float("rope.scale_linear", 0.0f) > 0.0f
                            ? 1.0f / key_float("rope.scale_linear", 1.0f) : hp_.rope.freq_scale;

  const GGUFValue* tokens = file_->find("tokenizer.ggml.tokens");
  hp_.n_vocab = key_int("vocab_size", tokens && tokens->is_array() ? static_cast<int64_t>(tokens->array_size()) : 0);
  const TensorInfo* te = file_->find_tensor("token_embd.weight");
  if (te && te->ne.size() >= 2) {
    if (hp_.n_vocab == 0) hp_.n_vocab = te->ne[1];
    else if (te->ne[1] != hp_.n_vocab)
      fail("{}: token_embd.weight has {} rows but the vocabulary has {} tokens", file_->path(), te->ne[1], hp_.n_vocab);
  }
  if (hp_.n_vocab <= 0) fail("{}: cannot tell the vocabulary size (no tokenizer.ggml.tokens)", file_->path());
}

// YaRN as llama.cpp reads it: interpolation by 1 / factor blended with the original angles over
// ggml's correction range for the original context, ext_factor 1 unless the file says otherwise,
// and cos/sin scaled by yarn_attn_factor * (1 + 0.1 ln(factor)) (ggml's mscale, folded into
// attn_factor here, see RopeParams).
void Model::read_yarn(float factor) {
  if (factor <= 0.0f) fail("{}: rope scaling type yarn needs {}.rope.scaling.factor > 0", file_->path(), hp_.arch);
  RopeParams& r = hp_.rope;
  r.freq_scale = 1.0f / factor;
  r.ext_factor = key_float("rope.scaling.yarn_ext_factor", 1.0f);
  const int64_t n_ctx_orig = key_int("rope.scaling.original_context_length", hp_.n_ctx_train);
  if (n_ctx_orig <= 0)
    fail("{}: {}.rope.scaling.original_context_length {} must be positive", file_->path(), hp_.arch, n_ctx_orig);
  const float beta_fast = key_float("rope.scaling.yarn_beta_fast", 32.0f);
  const float beta_slow = key_float("rope.scaling.yarn_beta_slow", 1.0f);
  std::tie(r.yarn_low, r.yarn_high) = yarn_corr_dims(r.n_rot, n_ctx_orig, r.freq_base, beta_fast, beta_slow);
  const float attn = key_float("rope.scaling.yarn_attn_factor", 1.0f);
  r.attn_factor = r.ext_factor != 0.0f ? attn * (1.0f + 0.1f * std::log(1.0f / r.freq_scale)) : attn;
}

Weight Model::bind(const std::string& name, int64_t n_in, int64_t n_out, bool required) const {
  const TensorInfo* t = file_->find_tensor(name);
  if (!t) {
    if (required) fail("{}: missing tensor {}", file_->path(), name);
    return {};
  }
  const int64_t got_out = t->ne.size() > 1 ? t->ne[1] : 1;
  if (t->ne.size() > 2 || t->ne[0] != n_in || got_out != n_out)
    fail("{}: tensor {} has shape {}, expected {} x {}", file_->path(), name, fmt::join(t->ne, " x "), n_in, n_out);
  if (!type_traits(t->type).to_float || !type_traits(t->type).vec_dot) {
    std::vector<std::string> runnable;
    for (uint32_t id = 0; id < kDTypeIdLimit; ++id)
      if (type_traits(id).to_float && type_traits(id).vec_dot) runnable.push_back(type_traits(id).name);
    fail("{}: tensor {} has type {}, which slm cannot compute with yet (it runs {}); quantize the "
         "F16/BF16 model again to one of those, e.g. `slm quantize model-f16.gguf out.gguf Q4_K_M`",
         file_->path(), name, dtype_name(t->type), fmt::join(runnable, ", "));
  }
  return Weight::from(*t);
}

void Model::bind_head_norms(int64_t layer, std::vector<float>& q_norm, std::vector<float>& k_norm) const {
  q_norm = bind_vector(layer_name(layer, "attn_q_norm.weight"), hp_.head_dim_k);
  k_norm = bind_vector(layer_name(layer, "attn_k_norm.weight"), hp_.head_dim_k);
}

std::vector<float> Model::bind_vector(const std::string& name, int64_t n, bool required) const {
  const TensorInfo* t = file_->find_tensor(name);
  if (!t) {
    if (required) fail("{}: missing tensor {}", file_->path(), name);
    return {};
  }
  if (t->nelements != n)
    fail("{}: tensor {} has {} values, expected {}", file_->path(), name, t->nelements, n);
  if (!type_traits(t->type).to_float)
    fail("{}: tensor {} has type {}, which slm cannot decode", file_->path(), name, dtype_name(t->type));
  return tensor_to_floats(*t);
}

}  // namespace slm
