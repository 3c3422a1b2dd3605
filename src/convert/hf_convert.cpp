#include "convert/hf_convert.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>

#include <fmt/format.h>

#include "convert/hf_config.h"
#include "convert/hf_tokenizer.h"
#include "convert/progress.h"
#include "convert/safetensors.h"
#include "convert/synth.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/gguf.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

namespace slm::convert {

namespace fs = std::filesystem;

namespace {

// The architectures: Hugging Face name -> general.architecture.
struct ArchName {
  const char* hf;
  const char* gguf;
};
constexpr ArchName kArchs[] = {
    {"LlamaForCausalLM", "llama"},
    {"Qwen2ForCausalLM", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3"},
    {"Gemma2ForCausalLM", "gemma2"},
    {"Gemma3ForCausalLM", "gemma3"},
    {"Phi3ForCausalLM", "phi3"},
};

// The hyperparameters every architecture here has, from config.json.
struct Hp {
  std::string hf_arch, arch;
  int64_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  int64_t n_ctx = 0, n_vocab = 0;
  bool head_dim_given = false;  // config.json states head_dim (llama.cpp then writes key_length)
  double eps = 1e-5;
  bool tied = false;
};

enum class Xform {
  None,
  PermuteHeads,  // Llama q/k: rows of each head reordered from HF's halves to GGML's pairs
  AddOne,        // Gemma norms: w -> 1 + w
};

// One tensor of the output file.
struct Entry {
  std::string hf_name;  // empty for generated tensors
  std::string name;     // GGUF name
  std::vector<int64_t> hf_shape;  // expected, row-major (PyTorch order)
  bool required = true;
  Xform xform = Xform::None;
  int64_t perm_heads = 0;
  std::vector<float> constant;  // generated tensors (rope factors)
  const StTensor* src = nullptr;
  DType type = DType::F32;

  std::vector<int64_t> ne() const { return {hf_shape.rbegin(), hf_shape.rend()}; }
  int64_t nelements() const {
    int64_t n = 1;
    for (int64_t d : hf_shape) n *= d;
    return n;
  }
  // Values fetched at a time: one row, or (permuting a 1-D bias) one element.
  int64_t unit() const {
    if (hf_shape.size() == 1) return xform == Xform::PermuteHeads ? 1 : hf_shape[0];
    return hf_shape.back();
  }
};

Hp read_hp(const HfConfig& cfg, const std::string& arch) {
  Hp hp;
  hp.hf_arch = cfg.architecture();
  hp.arch = arch;
  hp.n_layer = cfg.get_int("num_hidden_layers");
  hp.n_embd = cfg.get_int("hidden_size");
  hp.n_ff = cfg.get_int("intermediate_size");
  hp.n_head = cfg.get_int("num_attention_heads");
  hp.n_head_kv = cfg.opt_int("num_key_value_heads").value_or(hp.n_head);
  hp.n_ctx = cfg.get_int("max_position_embeddings");
  hp.n_vocab = cfg.get_int("vocab_size");
  hp.eps = cfg.get_float("rms_norm_eps");
  // Bounds far above any real model (the same as the GGUF loader's): a damaged value must be
  // an error, not a plan of a billion layers or a vocabulary array of a terabyte.
  auto positive = [&](const char* key, int64_t v, int64_t max = int64_t{1} << 24) {
    if (v <= 0 || v > max) fail("{}: field '{}' = {} is out of range (1..{})", cfg.path(), key, v, max);
  };
  positive("num_hidden_layers", hp.n_layer, 4096);
  positive("hidden_size", hp.n_embd, 1 << 20);
  positive("intermediate_size", hp.n_ff, 1 << 22);
  positive("num_attention_heads", hp.n_head, 1 << 14);
  positive("num_key_value_heads", hp.n_head_kv, 1 << 14);
  positive("max_position_embeddings", hp.n_ctx, int64_t{1} << 32);
  positive("vocab_size", hp.n_vocab);
  if (hp.n_head % hp.n_head_kv != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", cfg.path(), hp.n_head, hp.n_head_kv);
  if (auto hd = cfg.opt_int("head_dim")) {
    hp.head_dim = *hd;
    hp.head_dim_given = true;
    positive("head_dim", hp.head_dim, 4096);
  } else {
    if (hp.n_embd % hp.n_head != 0)
      fail("{}: hidden_size {} is not a multiple of num_attention_heads {} (and no head_dim)", cfg.path(),
           hp.n_embd, hp.n_head);
    hp.head_dim = hp.n_embd / hp.n_head;
  }
  return hp;
}

// The output tensors of a model, in the order slm synth writes them (embeddings, rope factors,
// each layer, final norm, output), each with the checkpoint tensor it comes from.
class Planner {
 public:
  Entry& add(std::string hf, std::string name, std::vector<int64_t> shape, bool required = true) {
    Entry e;
    e.hf_name = std::move(hf);
    e.name = std::move(name);
    e.hf_shape = std::move(shape);
    e.required = required;
    entries_.push_back(std::move(e));
    return entries_.back();
  }
  void generated(std::string name, std::vector<float> values) {
    Entry e;
    e.name = std::move(name);
    e.hf_shape = {static_cast<int64_t>(values.size())};
    e.constant = std::move(values);
    entries_.push_back(std::move(e));
  }
  std::vector<Entry>& entries() { return entries_; }

 private:
  std::vector<Entry> entries_;
};

std::string layer_hf(int64_t l, const char* what) { return fmt::format("model.layers.{}.{}", l, what); }
std::string layer_gguf(int64_t l, const char* what) { return fmt::format("blk.{}.{}", l, what); }

}  // namespace

// llama.cpp's LlamaModel.permute(): rows of a head go from [first halves | second halves]
// (HF's rotate_half layout) to interleaved pairs (GGML's "normal" RoPE).
int64_t permuted_source_row(int64_t j, int64_t rows, int64_t heads) {
  const int64_t hd = rows / heads, half = hd / 2;
  const int64_t h = j / hd, r = j % hd;
  return h * hd + (r % 2) * half + r / 2;
}

namespace {

// Rope factors for Llama 3's scaling (rope_type llama3), as llama.cpp's converter computes them.
std::vector<float> llama3_factors(const Hp& hp, const RopeConfig& r) {
  return llama3_rope_factors(hp.head_dim, static_cast<float>(r.theta), static_cast<float>(r.factor.value_or(8.0)),
                             static_cast<float>(r.low_freq_factor.value_or(1.0)),
                             static_cast<float>(r.high_freq_factor.value_or(4.0)),
                             r.original_max_position_embeddings.value_or(8192));
}

void plan_llama_like(Planner& p, const Hp& hp, const HfConfig& cfg) {
  const int64_t E = hp.n_embd, F = hp.n_ff, V = hp.n_vocab;
  const int64_t Q = hp.n_head * hp.head_dim, KV = hp.n_head_kv * hp.head_dim;
  const bool llama = hp.arch == "llama", qwen2 = hp.arch == "qwen2", qwen3 = hp.arch == "qwen3";
  p.add("model.embed_tokens.weight", "token_embd.weight", {V, E});
  if (llama && cfg.rope().type == "llama3") p.generated("rope_freqs.weight", llama3_factors(hp, cfg.rope()));
  // Qwen uses NEOX RoPE (rotate_half, the layout HF stores), so only Llama permutes.
  auto perm = [&](Entry& e, int64_t heads) -> Entry& {
    if (llama) {
      e.xform = Xform::PermuteHeads;
      e.perm_heads = heads;
    }
    return e;
  };
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    p.add(layer_hf(l, "input_layernorm.weight"), layer_gguf(l, "attn_norm.weight"), {E});
    perm(p.add(layer_hf(l, "self_attn.q_proj.weight"), layer_gguf(l, "attn_q.weight"), {Q, E}), hp.n_head);
    perm(p.add(layer_hf(l, "self_attn.q_proj.bias"), layer_gguf(l, "attn_q.bias"), {Q}, qwen2), hp.n_head);
    perm(p.add(layer_hf(l, "self_attn.k_proj.weight"), layer_gguf(l, "attn_k.weight"), {KV, E}), hp.n_head_kv);
    perm(p.add(layer_hf(l, "self_attn.k_proj.bias"), layer_gguf(l, "attn_k.bias"), {KV}, qwen2), hp.n_head_kv);
    p.add(layer_hf(l, "self_attn.v_proj.weight"), layer_gguf(l, "attn_v.weight"), {KV, E});
    p.add(layer_hf(l, "self_attn.v_proj.bias"), layer_gguf(l, "attn_v.bias"), {KV}, qwen2);
    if (qwen3) {  // each head's query and key RMS-normalized before RoPE
      p.add(layer_hf(l, "self_attn.q_norm.weight"), layer_gguf(l, "attn_q_norm.weight"), {hp.head_dim});
      p.add(layer_hf(l, "self_attn.k_norm.weight"), layer_gguf(l, "attn_k_norm.weight"), {hp.head_dim});
    }
    p.add(layer_hf(l, "self_attn.o_proj.weight"), layer_gguf(l, "attn_output.weight"), {E, Q});
    p.add(layer_hf(l, "self_attn.o_proj.bias"), layer_gguf(l, "attn_output.bias"), {E}, false);
    p.add(layer_hf(l, "post_attention_layernorm.weight"), layer_gguf(l, "ffn_norm.weight"), {E});
    p.add(layer_hf(l, "mlp.gate_proj.weight"), layer_gguf(l, "ffn_gate.weight"), {F, E});
    p.add(layer_hf(l, "mlp.gate_proj.bias"), layer_gguf(l, "ffn_gate.bias"), {F}, false);
    p.add(layer_hf(l, "mlp.up_proj.weight"), layer_gguf(l, "ffn_up.weight"), {F, E});
    p.add(layer_hf(l, "mlp.up_proj.bias"), layer_gguf(l, "ffn_up.bias"), {F}, false);
    p.add(layer_hf(l, "mlp.down_proj.weight"), layer_gguf(l, "ffn_down.weight"), {E, F});
    p.add(layer_hf(l, "mlp.down_proj.bias"), layer_gguf(l, "ffn_down.bias"), {E}, false);
  }
  p.add("model.norm.weight", "output_norm.weight", {E});
  if (!hp.tied) p.add("lm_head.weight", "output.weight", {V, E});
}

// Gemma 2 and Gemma 3 (whose heads' query and key norms are Gemma norms too).
void plan_gemma(Planner& p, const Hp& hp) {
  const int64_t E = hp.n_embd, F = hp.n_ff, V = hp.n_vocab;
  const int64_t Q = hp.n_head * hp.head_dim, KV = hp.n_head_kv * hp.head_dim;
  // Gemma's RMSNorm scales by (1 + w); llama.cpp's norm scales by w, so the converter stores
  // 1 + w (computed in float32, as llama.cpp's converter does after widening bf16).
  auto norm = [&](std::string hf, std::string name, int64_t n) {
    p.add(std::move(hf), std::move(name), {n}).xform = Xform::AddOne;
  };
  p.add("model.embed_tokens.weight", "token_embd.weight", {V, E});
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    norm(layer_hf(l, "input_layernorm.weight"), layer_gguf(l, "attn_norm.weight"), E);
    p.add(layer_hf(l, "self_attn.q_proj.weight"), layer_gguf(l, "attn_q.weight"), {Q, E});
    p.add(layer_hf(l, "self_attn.k_proj.weight"), layer_gguf(l, "attn_k.weight"), {KV, E});
    p.add(layer_hf(l, "self_attn.v_proj.weight"), layer_gguf(l, "attn_v.weight"), {KV, E});
    if (hp.arch == "gemma3") {
      norm(layer_hf(l, "self_attn.q_norm.weight"), layer_gguf(l, "attn_q_norm.weight"), hp.head_dim);
      norm(layer_hf(l, "self_attn.k_norm.weight"), layer_gguf(l, "attn_k_norm.weight"), hp.head_dim);
    }
    p.add(layer_hf(l, "self_attn.o_proj.weight"), layer_gguf(l, "attn_output.weight"), {E, Q});
    norm(layer_hf(l, "post_attention_layernorm.weight"), layer_gguf(l, "post_attention_norm.weight"), E);
    norm(layer_hf(l, "pre_feedforward_layernorm.weight"), layer_gguf(l, "ffn_norm.weight"), E);
    p.add(layer_hf(l, "mlp.gate_proj.weight"), layer_gguf(l, "ffn_gate.weight"), {F, E});
    p.add(layer_hf(l, "mlp.up_proj.weight"), layer_gguf(l, "ffn_up.weight"), {F, E});
    p.add(layer_hf(l, "mlp.down_proj.weight"), layer_gguf(l, "ffn_down.weight"), {E, F});
    norm(layer_hf(l, "post_feedforward_layernorm.weight"), layer_gguf(l, "post_ffw_norm.weight"), E);
  }
  norm("model.norm.weight", "output_norm.weight", E);
  if (!hp.tied) p.add("lm_head.weight", "output.weight", {V, E});
}

// Phi-3's rope dimensions, as llama.cpp computes them (from n_embd, not head_dim).
int64_t phi3_rope_dims(const Hp& hp, const RopeConfig& r) {
  return static_cast<int64_t>(r.partial_rotary_factor * static_cast<double>(hp.n_embd)) / hp.n_head;
}

void plan_phi3(Planner& p, const Hp& hp, const HfConfig& cfg) {
  const int64_t E = hp.n_embd, F = hp.n_ff, V = hp.n_vocab;
  const int64_t Q = hp.n_head * hp.head_dim, KV = hp.n_head_kv * hp.head_dim;
  const RopeConfig& r = cfg.rope();
  p.add("model.embed_tokens.weight", "token_embd.weight", {V, E});
  if (!r.long_factor.empty()) {
    const size_t want = static_cast<size_t>(phi3_rope_dims(hp, r) / 2);
    if (r.short_factor.empty()) fail("{}: rope scaling has long_factor but no short_factor", cfg.path());
    if (r.long_factor.size() != want || r.short_factor.size() != want)
      fail("{}: LongRoPE needs {} long and short factors (rope dimensions / 2), found {} and {}", cfg.path(),
           want, r.long_factor.size(), r.short_factor.size());
    p.generated("rope_factors_long.weight", {r.long_factor.begin(), r.long_factor.end()});
    p.generated("rope_factors_short.weight", {r.short_factor.begin(), r.short_factor.end()});
  }
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    p.add(layer_hf(l, "input_layernorm.weight"), layer_gguf(l, "attn_norm.weight"), {E});
    // Phi-3 stores Q, K and V as one matrix (rows [Q | K | V]), which GGUF keeps fused.
    p.add(layer_hf(l, "self_attn.qkv_proj.weight"), layer_gguf(l, "attn_qkv.weight"), {Q + 2 * KV, E});
    p.add(layer_hf(l, "self_attn.o_proj.weight"), layer_gguf(l, "attn_output.weight"), {E, Q});
    p.add(layer_hf(l, "post_attention_layernorm.weight"), layer_gguf(l, "ffn_norm.weight"), {E});
    // gate and up fused likewise (rows [gate | up]): GGUF's ffn_up of 2 x n_ff rows.
    p.add(layer_hf(l, "mlp.gate_up_proj.weight"), layer_gguf(l, "ffn_up.weight"), {2 * F, E});
    p.add(layer_hf(l, "mlp.down_proj.weight"), layer_gguf(l, "ffn_down.weight"), {E, F});
  }
  p.add("model.norm.weight", "output_norm.weight", {E});
  if (!hp.tied) p.add("lm_head.weight", "output.weight", {V, E});
}

void check_rope_type(const HfConfig& cfg, const Hp& hp, std::initializer_list<const char*> ok) {
  const std::string& t = cfg.rope().type;
  for (const char* o : ok)
    if (t == o) return;
  fail("{}: rope scaling type '{}' is not supported for {} (supported: {})", cfg.path(), t, hp.hf_arch,
       fmt::join(ok, ", "));
}

// general.file_type (llama_ftype) of an output type.
uint32_t file_type_of(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q8_0: return 7;
    case DType::BF16: return 32;
    default: fail("convert: output type {} has no file type", dtype_name(t));
  }
}

// Gemma 3's keys as llama.cpp's Gemma3Model writes them. What llama.cpp does not read from the
// file (it fixes the rest: five sliding layers of six, RoPE base 10,000 on them, queries scaled
// by the head size) must be what the checkpoint says, or the file would compute another model.
void add_gemma3_metadata(GGUFWriter& w, const Hp& hp, const HfConfig& cfg, DType ftype) {
  const std::string a = hp.arch;
  const RopeConfig& r = cfg.rope();
  auto u32 = [](int64_t v) { return GGUFValue::u32(static_cast<uint32_t>(v)); };
  auto f32 = [](double v) { return GGUFValue::f32(static_cast<float>(v)); };
  for (const char* cap : {"attn_logit_softcapping", "final_logit_softcapping"})
    if (cfg.opt_float(cap))
      fail("{}: Gemma 3 with {} set is not supported (llama.cpp's gemma3 has no soft-capping)", cfg.path(), cap);
  const double want_scalar = hp.n_layer == 62 ? static_cast<double>(hp.n_embd / hp.n_head)
                                              : static_cast<double>(hp.head_dim);
  if (auto s = cfg.opt_float("query_pre_attn_scalar"); s && *s != want_scalar)
    fail("{}: query_pre_attn_scalar {} is not supported: a gemma3 GGUF file scales queries by "
         "1/sqrt({}) for {} layers", cfg.path(), *s, want_scalar, hp.n_layer);
  const int64_t pattern = cfg.opt_int("sliding_window_pattern").value_or(6);
  if (pattern != 6)
    fail("{}: sliding_window_pattern {} is not supported (gemma3 GGUF files slide on 5 layers of 6)", cfg.path(), pattern);
  if (auto types = cfg.raw().find("layer_types"); types != cfg.raw().end() && types->is_array()) {
    for (size_t l = 0; l < types->size(); ++l) {
      const bool sliding = (*types)[l] == "sliding_attention";
      if (sliding != (l % 6 < 5))
        fail("{}: layer_types[{}] is {}, but gemma3 GGUF files slide on layers l % 6 < 5", cfg.path(), l,
             (*types)[l].dump());
    }
  }
  // The sliding layers' RoPE base: rope_local_base_freq, or transformers 5's per-attention form.
  std::optional<double> local = cfg.opt_float("rope_local_base_freq");
  if (auto rp = cfg.raw().find("rope_parameters"); !local && rp != cfg.raw().end() && rp->is_object())
    if (auto sa = rp->find("sliding_attention"); sa != rp->end() && sa->is_object())
      if (auto t = sa->find("rope_theta"); t != sa->end() && t->is_number()) local = t->get<double>();
  w.set(a + ".context_length", u32(hp.n_ctx));
  w.set(a + ".embedding_length", u32(hp.n_embd));
  w.set(a + ".block_count", u32(hp.n_layer));
  w.set(a + ".feed_forward_length", u32(hp.n_ff));
  w.set(a + ".attention.head_count", u32(hp.n_head));
  w.set(a + ".attention.layer_norm_rms_epsilon", f32(hp.eps));
  w.set(a + ".attention.key_length", u32(hp.head_dim));
  w.set(a + ".attention.value_length", u32(hp.head_dim));
  w.set("general.file_type", GGUFValue::u32(file_type_of(ftype)));
  w.set(a + ".rope.freq_base", f32(r.theta));
  w.set(a + ".attention.sliding_window", u32(cfg.get_int("sliding_window")));
  w.set(a + ".attention.head_count_kv", u32(hp.n_head_kv));
  if (r.type == "linear" && r.factor) {  // the full-attention layers' (4B and larger)
    w.set(a + ".rope.scaling.type", GGUFValue::str("linear"));
    w.set(a + ".rope.scaling.factor", f32(*r.factor));
  }
  // llama.cpp fixes 10,000; slm reads this key, written only where a checkpoint differs.
  if (local && *local != 10000.0) w.set(a + ".rope.freq_base_swa", f32(*local));
}

// The <arch>.* keys, in the order llama.cpp's converter writes them for each architecture.
void add_arch_metadata(GGUFWriter& w, const Hp& hp, const HfConfig& cfg, DType ftype) {
  const std::string a = hp.arch;
  const RopeConfig& r = cfg.rope();
  auto u32 = [](int64_t v) { return GGUFValue::u32(static_cast<uint32_t>(v)); };
  auto f32 = [](double v) { return GGUFValue::f32(static_cast<float>(v)); };
  if (a == "gemma2") {
    w.set(a + ".context_length", u32(hp.n_ctx));
    w.set(a + ".embedding_length", u32(hp.n_embd));
    w.set(a + ".block_count", u32(hp.n_layer));
    w.set(a + ".feed_forward_length", u32(hp.n_ff));
    w.set(a + ".attention.head_count", u32(hp.n_head));
    w.set(a + ".attention.head_count_kv", u32(hp.n_head_kv));
    w.set(a + ".attention.layer_norm_rms_epsilon", f32(hp.eps));
    w.set(a + ".attention.key_length", u32(hp.head_dim));
    w.set(a + ".attention.value_length", u32(hp.head_dim));
    w.set("general.file_type", GGUFValue::u32(file_type_of(ftype)));
    w.set(a + ".attn_logit_softcapping", f32(cfg.get_float("attn_logit_softcapping")));
    w.set(a + ".final_logit_softcapping", f32(cfg.get_float("final_logit_softcapping")));
    w.set(a + ".attention.sliding_window", u32(cfg.get_int("sliding_window")));
    // llama.cpp writes no rope base for Gemma 2 and uses its default, 10000: write it only when
    // a checkpoint differs, so that slm (and llama.cpp) then use the right one.
    if (r.theta != 10000.0) w.set(a + ".rope.freq_base", f32(r.theta));
    // Queries are scaled by 1/sqrt(query_pre_attn_scalar); llama.cpp infers it from the model
    // size (Gemma 2 27B: n_embd / n_head), slm reads it from this key where it differs from
    // the head size.
    if (auto s = cfg.opt_float("query_pre_attn_scalar"); s && *s != static_cast<double>(hp.head_dim))
      w.set(a + ".attention.query_pre_attn_scalar", f32(*s));
    return;
  }
  if (a == "gemma3") {
    add_gemma3_metadata(w, hp, cfg, ftype);
    return;
  }
  if (a == "phi3") {
    const int64_t orig = r.original_max_position_embeddings
                             ? *r.original_max_position_embeddings
                             : cfg.get_int("original_max_position_embeddings");
    w.set(a + ".context_length", u32(hp.n_ctx));
    w.set(a + ".rope.scaling.original_context_length", u32(orig));
    w.set(a + ".embedding_length", u32(hp.n_embd));
    w.set(a + ".feed_forward_length", u32(hp.n_ff));
    w.set(a + ".block_count", u32(hp.n_layer));
    w.set(a + ".attention.head_count", u32(hp.n_head));
    w.set(a + ".attention.head_count_kv", u32(hp.n_head_kv));
    w.set(a + ".attention.layer_norm_rms_epsilon", f32(hp.eps));
    w.set(a + ".rope.dimension_count", u32(phi3_rope_dims(hp, r)));
    w.set(a + ".rope.freq_base", f32(r.theta));
    w.set("general.file_type", GGUFValue::u32(file_type_of(ftype)));
    // 0 when the config has none: llama.cpp tells Phi-4 (no window) apart that way.
    w.set(a + ".attention.sliding_window", u32(cfg.opt_int("sliding_window").value_or(0)));
    if (!r.long_factor.empty()) {
      // LongRoPE's attention factor scales cos/sin; transformers takes the config's
      // attention_factor when given, else sqrt(1 + ln(scale) / ln(original context)).
      const double scale = static_cast<double>(hp.n_ctx) / static_cast<double>(orig);
      double factor = scale > 1.0 ? std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(orig))) : 1.0;
      if (r.attention_factor) factor = *r.attention_factor;
      w.set(a + ".rope.scaling.attn_factor", f32(factor));
    }
    return;
  }
  // llama, qwen2, qwen3: llama.cpp's TextModel.set_gguf_parameters, then LlamaModel's two keys.
  w.set(a + ".block_count", u32(hp.n_layer));
  w.set(a + ".context_length", u32(hp.n_ctx));
  w.set(a + ".embedding_length", u32(hp.n_embd));
  w.set(a + ".feed_forward_length", u32(hp.n_ff));
  w.set(a + ".attention.head_count", u32(hp.n_head));
  w.set(a + ".attention.head_count_kv", u32(hp.n_head_kv));
  if (r.type == "linear" && r.factor) {
    w.set(a + ".rope.scaling.type", GGUFValue::str("linear"));
    w.set(a + ".rope.scaling.factor", f32(*r.factor));
  } else if (r.type == "yarn" && r.factor) {
    w.set(a + ".rope.scaling.type", GGUFValue::str("yarn"));
    w.set(a + ".rope.scaling.factor", f32(*r.factor));
    if (!r.original_max_position_embeddings)
      fail("{}: yarn rope scaling needs original_max_position_embeddings", cfg.path());
    w.set(a + ".rope.scaling.original_context_length", u32(*r.original_max_position_embeddings));
    if (r.extrapolation_factor) w.set(a + ".rope.scaling.yarn_ext_factor", f32(*r.extrapolation_factor));
    if (r.attention_factor) w.set(a + ".rope.scaling.yarn_attn_factor", f32(*r.attention_factor));
    if (r.beta_fast) w.set(a + ".rope.scaling.yarn_beta_fast", f32(*r.beta_fast));
    if (r.beta_slow) w.set(a + ".rope.scaling.yarn_beta_slow", f32(*r.beta_slow));
  }
  w.set(a + ".rope.freq_base", f32(r.theta));
  w.set(a + ".attention.layer_norm_rms_epsilon", f32(hp.eps));
  if (hp.head_dim_given) {
    w.set(a + ".attention.key_length", u32(hp.head_dim));
    w.set(a + ".attention.value_length", u32(hp.head_dim));
  }
  w.set("general.file_type", GGUFValue::u32(file_type_of(ftype)));
  if (a == "llama") {
    w.set(a + ".vocab_size", u32(hp.n_vocab));
    w.set(a + ".rope.dimension_count", u32(hp.head_dim));
  }
}

// Checkpoint tensors that carry nothing a GGUF file needs (precomputed buffers).
bool ignorable(const std::string& n) {
  auto ends = [&](std::string_view s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
  return ends(".rotary_emb.inv_freq") || ends(".attention.masked_bias") || ends(".attention.bias");
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// Matches the checkpoint's tensors to the plan: every checkpoint tensor must have a place in
// it (an unknown one means a variant this converter does not understand: refusing beats
// silently dropping weights), every required entry must be there, shapes must agree with
// config.json, and the data must be F32, F16 or BF16.
void bind_checkpoint(std::vector<Entry>& entries, const Checkpoint& cp, const Hp& hp, const std::string& dir) {
  std::map<std::string, Entry*> by_hf;
  for (Entry& e : entries)
    if (!e.hf_name.empty()) by_hf[e.hf_name] = &e;
  for (const StTensor* t : cp.tensors()) {
    if (ignorable(t->name)) continue;
    // Tied embeddings: some checkpoints store lm_head anyway, as a copy of embed_tokens.
    if (hp.tied && t->name == "lm_head.weight") continue;
    auto it = by_hf.find(t->name);
    if (it == by_hf.end())
      fail("{}: tensor {} (in {}) has no place in a {} model as slm converts it", dir, t->name,
           fs::path(t->file->path()).filename().string(), hp.hf_arch);
    Entry& e = *it->second;
    if (!t->is_float())
      fail("{}: tensor {} has dtype {}; only F32, F16 and BF16 weights can be converted", t->file->path(),
           t->name, t->dtype);
    if (t->shape != e.hf_shape)
      fail("{}: tensor {} has shape {}, but config.json implies {}", t->file->path(), t->name,
           shape_str(t->shape), shape_str(e.hf_shape));
    e.src = t;
  }
  for (const Entry& e : entries)
    if (e.required && e.constant.empty() && !e.src)
      fail("{}: the checkpoint has no tensor {} (a {} model needs it)", dir, e.hf_name, hp.hf_arch);
  std::erase_if(entries, [](const Entry& e) { return e.constant.empty() && !e.src; });
  for (const Entry& e : entries) {
    if (e.xform != Xform::PermuteHeads) continue;
    const int64_t rows = e.hf_shape[0];
    if (rows % e.perm_heads != 0 || (rows / e.perm_heads) % 2 != 0)
      fail("{}: tensor {}: {} rows do not split into {} heads of an even size", dir, e.hf_name, rows, e.perm_heads);
  }
}

// llama.cpp's choice of each tensor's type: 1-D tensors, norms and anything not named
// *.weight stay F32; matrices take the output type, except that Q8_0 needs rows that are a
// multiple of its 32-value blocks (F16 otherwise, as llama.cpp falls back).
DType tensor_type(const Entry& e, DType ftype) {
  const std::string& n = e.name;
  auto ends = [&](std::string_view s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
  if (e.hf_shape.size() <= 1 || ends("_norm.weight") || !ends(".weight")) return DType::F32;
  if (ftype == DType::Q8_0 && e.hf_shape.back() % type_traits(DType::Q8_0).block_size != 0) return DType::F16;
  return ftype;
}

DType parse_outtype(const std::string& s, const Checkpoint* cp, std::string& name) {
  name = s;
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  if (s == "q8_0") return DType::Q8_0;
  if (s == "auto") {
    // llama.cpp: the dtype of the first matrix (configs' torch_dtype sometimes lies); bf16
    // stays bf16, anything else (f16, f32) becomes f16.
    if (cp)
      for (const StTensor* t : cp->tensors())
        if (t->shape.size() >= 2) {
          if (t->dtype == "BF16") { name = "bf16"; return DType::BF16; }
          break;
        }
    name = "f16";
    return DType::F16;
  }
  fail("--outtype '{}' is not supported (use f32, f16, bf16, q8_0 or auto)", s);
}

// Decodes n values of F32/F16/BF16 bytes at any alignment (a tensor's data in a safetensors
// file need not be aligned) into floats: exact for every type.
void decode(const uint8_t* src, const std::string& dtype, int64_t n, float* dst) {
  if (dtype == "F32") {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
  } else if (dtype == "F16") {
    const auto simd = kern::active().fp16_to_f32;  // F16C / AVX-512, exact like the scalar
    if (simd && reinterpret_cast<uintptr_t>(src) % 2 == 0) {
      simd(reinterpret_cast<const uint16_t*>(src), dst, n);
      return;
    }
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      dst[i] = fp16_to_fp32(h);
    }
  } else {
    // BF16 is the upper half of a float; the compiler vectorizes this loop.
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      const uint32_t w = static_cast<uint32_t>(h) << 16;
      std::memcpy(dst + i, &w, 4);
    }
  }
}

// Encodes n floats as `type`: F16 through the SIMD kernel (the scalar rounding bit for bit but
// for NaN payloads), anything else through the type's reference encoder (Q8_0: ggml's
// quantize_row_q8_0_ref, as llama.cpp's converter rounds).
void encode(DType type, const float* src, uint8_t* dst, int64_t n) {
  if (type == DType::F16)
    if (const auto simd = kern::active().f32_to_fp16) {
      simd(src, reinterpret_cast<uint16_t*>(dst), n);
      return;
    }
  type_traits(type).from_float(src, dst, n);
}

// Fills `dst` with units [r0, r0 + n) of the entry's values (a unit is e.unit() values), with
// its transformation applied, as float32. `src` holds the source's units from `src_unit` on.
void fetch(const Entry& e, const uint8_t* src, int64_t src_unit, int64_t r0, int64_t n, float* dst) {
  const int64_t L = e.unit();
  if (!e.src) {
    std::copy(e.constant.begin() + r0 * L, e.constant.begin() + (r0 + n) * L, dst);
    return;
  }
  const size_t unit_bytes = static_cast<size_t>(L) * e.src->elem_size;
  if (e.xform == Xform::PermuteHeads) {
    const int64_t rows = e.hf_shape[0];
    for (int64_t j = 0; j < n; ++j)
      decode(src + static_cast<size_t>(permuted_source_row(r0 + j, rows, e.perm_heads) - src_unit) * unit_bytes,
             e.src->dtype, L, dst + j * L);
  } else {
    decode(src + static_cast<size_t>(r0 - src_unit) * unit_bytes, e.src->dtype, n * L, dst);
  }
  if (e.xform == Xform::AddOne)
    for (int64_t i = 0; i < n * L; ++i) dst[i] += 1.0f;
}

bool same_dtype(const StTensor& t, DType type) {
  return (t.dtype == "F32" && type == DType::F32) || (t.dtype == "F16" && type == DType::F16) ||
         (t.dtype == "BF16" && type == DType::BF16);
}

}  // namespace

std::string hf_architecture_names() {
  std::string s;
  for (const ArchName& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.hf);
  return s;
}

ConvertReport convert_hf(const ConvertOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!fs::is_directory(o.dir)) fail("{}: not a folder", o.dir);
  ConvertReport rep;
  parse_outtype(o.outtype, nullptr, rep.outtype);  // a bad --outtype fails before any work

  // config.json: required for a model, optional for --vocab-only (a tokenizer folder).
  std::optional<HfConfig> cfg;
  if (!o.vocab_only || fs::exists(fs::path(o.dir) / "config.json")) cfg = HfConfig::read(o.dir);
  std::optional<Hp> hp;
  if (cfg) {
    for (const ArchName& a : kArchs)
      if (cfg->architecture() == a.hf) hp = read_hp(*cfg, a.gguf);
    if (!hp)
      fail("{}: architecture '{}' is not supported (slm convert knows {})", cfg->path(), cfg->architecture(),
           hf_architecture_names());
    rep.hf_arch = hp->hf_arch;
    rep.arch = hp->arch;
    if (hp->arch == "gemma2") check_rope_type(*cfg, *hp, {"default"});
    else if (hp->arch == "phi3") check_rope_type(*cfg, *hp, {"default", "longrope", "su"});
    else if (hp->arch == "qwen2" || hp->arch == "qwen3") check_rope_type(*cfg, *hp, {"default", "linear", "yarn"});
    else if (hp->arch == "gemma3") check_rope_type(*cfg, *hp, {"default", "linear"});
    else check_rope_type(*cfg, *hp, {"default", "llama3", "linear", "yarn"});
  }

  // The tokenizer first: it is the quickest to fail on, before any tensor is read.
  const HfVocab vocab = read_hf_vocab(o.dir, hp ? hp->n_vocab : 0);
  rep.n_vocab = static_cast<int64_t>(vocab.tokens.size());
  rep.pre = vocab.pre;

  std::optional<Checkpoint> cp;
  std::vector<Entry> entries;
  if (!o.vocab_only) {
    cp = Checkpoint::open_dir(o.dir);
    Hp& h = *hp;
    // Tied when the config says so; a config that does not say is tied exactly when the
    // checkpoint has no lm_head (transformers' defaults differ between architectures).
    h.tied = cfg->opt_bool("tie_word_embeddings").value_or(cp->find("lm_head.weight") == nullptr);
    Planner p;
    if (h.arch == "gemma2" || h.arch == "gemma3") plan_gemma(p, h);
    else if (h.arch == "phi3") plan_phi3(p, h, *cfg);
    else plan_llama_like(p, h, *cfg);
    entries = std::move(p.entries());
    bind_checkpoint(entries, *cp, h, o.dir);
  }
  const DType ftype = parse_outtype(o.outtype, cp ? &*cp : nullptr, rep.outtype);

  GGUFWriter w;
  if (hp) w.set("general.architecture", GGUFValue::str(hp->arch));
  w.set("general.type", GGUFValue::str("model"));
  std::string name = fs::path(o.dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(o.dir).lexically_normal().parent_path().filename().string();
  w.set("general.name", GGUFValue::str(name));
  if (hp) add_arch_metadata(w, *hp, *cfg, ftype);
  w.set("general.quantization_version", GGUFValue::u32(2));
  add_vocab_metadata(w, vocab);

  uint64_t total = 0;
  for (Entry& e : entries) {
    e.type = tensor_type(e, ftype);
    w.add_tensor_info(e.name, e.type, e.ne());
    total += static_cast<uint64_t>(e.nelements());
    rep.n_params += e.nelements();
    if (e.src) rep.bytes_read += e.src->nbytes;
  }
  rep.n_tensors = entries.size();

  ThreadPool pool(std::max(1, o.n_threads));
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));
  // Values per chunk of work (whole units) and per write: small enough to stay in cache and
  // bound memory, large enough that thread hand-offs cost nothing.
  constexpr int64_t kChunkValues = int64_t{1} << 16, kBatchValues = int64_t{4} << 20;
  Progress progress(o.vocab_only ? "writing vocabulary" : "converting", std::max<uint64_t>(total, 1), o.progress);
  // Per tensor: read a batch of the checkpoint's bytes (pread: copying out of the page cache
  // beats mapping pages on the team's VMs, see core/mmap_file.h), decode, transform and encode
  // it on all threads, then write it on a second thread while the next batch is prepared, so
  // that the disk is kept busy.
  // The batch buffers live across tensors: fresh multi-MB allocations are fresh pages, which
  // the kernel zeroes and (on the team's VMs, with free page reporting) the host faults in again.
  std::vector<uint8_t> out[2], raw;
  w.write_streamed(o.out_path, [&](size_t ti, const GGUFWriter::Sink& sink) {
    const Entry& e = entries[ti];
    const StTensor* st = e.src;
    std::future<void> pending;
    int cur = 0;
    auto write_async = [&](size_t nbytes, uint64_t values) {
      if (pending.valid()) pending.get();  // the other buffer's write, before reusing it
      const uint8_t* p = out[cur].data();
      pending = std::async(std::launch::async, [&sink, &progress, &e, p, nbytes, values] {
        sink(p, nbytes);
        progress.advance(values, e.name);
      });
      cur ^= 1;
    };
    // Same type in and out, nothing to change: the checkpoint's bytes are the GGUF's (what
    // decoding and re-encoding would give bit for bit). A bf16 checkpoint converted with
    // --outtype auto or bf16 is then a copy, made in the kernel as `cp` makes it.
    if (st && e.xform == Xform::None && same_dtype(*st, e.type)) {
      const uint64_t step = uint64_t{64} << 20;  // per progress update
      for (uint64_t off = 0; off < st->nbytes; off += step) {
        const uint64_t n = std::min(step, st->nbytes - off);
        sink.copy_range(st->file->fd(), st->file_offset + off, static_cast<size_t>(n));
        progress.advance(n / st->elem_size, e.name);
      }
      return;
    }
    const int64_t L = e.unit(), units = e.nelements() / L;
    const size_t unit_bytes = st ? static_cast<size_t>(L) * st->elem_size : 0;
    // A chunk is whole units and, for Q8_0, whole 32-value blocks (L is a multiple of 32 then,
    // or the unit is a whole 1-D tensor, which stays F32).
    const int64_t chunk_units = std::max<int64_t>(1, kChunkValues / L);
    const int64_t batch_units = chunk_units * std::max<int64_t>(1, kBatchValues / (chunk_units * L));
    // Permuted rows come from anywhere in their head: such tensors (attention q/k, at most
    // n_embd^2 values) are read whole; others a batch at a time.
    const bool whole = st && e.xform == Xform::PermuteHeads;
    if (whole) {
      raw.resize(static_cast<size_t>(st->nbytes));
      st->file->read_at(st->file_offset, raw.data(), raw.size());
    }
    for (int64_t u0 = 0; u0 < units; u0 += batch_units) {
      const int64_t n = std::min(batch_units, units - u0);
      if (st && !whole) {
        raw.resize(static_cast<size_t>(n) * unit_bytes);
        st->file->read_at(st->file_offset + static_cast<uint64_t>(u0) * unit_bytes, raw.data(), raw.size());
      }
      const int64_t src_unit = whole ? 0 : u0;
      out[cur].resize(row_size(e.type, n * L));
      uint8_t* dst = out[cur].data();
      const int64_t n_chunks = (n + chunk_units - 1) / chunk_units;
      pool.parallel_for(n_chunks, [&](int64_t b, int64_t end, int th) {
        std::vector<float>& f = scratch[static_cast<size_t>(th)];
        f.resize(static_cast<size_t>(chunk_units * L));
        for (int64_t c = b; c < end; ++c) {
          const int64_t first = c * chunk_units, k = std::min(chunk_units, n - first);
          fetch(e, raw.data(), src_unit, u0 + first, k, f.data());
          encode(e.type, f.data(), dst + row_size(e.type, first * L), k * L);
        }
      });
      write_async(row_size(e.type, n * L), static_cast<uint64_t>(n * L));
    }
    if (pending.valid()) pending.get();
  });
  progress.finish();
  std::error_code ec;
  rep.file_bytes = fs::file_size(o.out_path, ec);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace slm::convert
