#include "convert/lora_convert.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "convert/hf_config.h"
#include "convert/hf_convert.h"
#include "convert/json_file.h"
#include "convert/safetensors.h"
#include "core/error.h"
#include "models/model.h"

namespace slm::convert {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The dimensions of a projection, [n_out, n_in] in terms of the config's sizes (E hidden,
// F intermediate, Q = heads x head_dim, KV = kv heads x head_dim).
enum class Dims { Q_E, KV_E, E_Q, F_E, E_F, QKV_E, F2_E };
// Which heads Llama's RoPE permutation splits the rows into (none for the other families).
enum class Perm { None, Heads, KvHeads };

// One projection of a decoder layer that an adapter may change.
struct Module {
  const char* hf;    // its path under model.layers.N
  const char* gguf;  // blk.N.<gguf>.weight
  Dims dims;
  Perm perm = Perm::None;
};

struct Family {
  const char* hf_arch;
  const char* arch;  // general.architecture
  std::vector<Module> modules;  // in the order the output lists them within a layer
};

std::vector<Module> llama_like(bool permute) {
  const Perm q = permute ? Perm::Heads : Perm::None, k = permute ? Perm::KvHeads : Perm::None;
  return {{"self_attn.q_proj", "attn_q", Dims::Q_E, q},     {"self_attn.k_proj", "attn_k", Dims::KV_E, k},
          {"self_attn.v_proj", "attn_v", Dims::KV_E},       {"self_attn.o_proj", "attn_output", Dims::E_Q},
          {"mlp.gate_proj", "ffn_gate", Dims::F_E},         {"mlp.up_proj", "ffn_up", Dims::F_E},
          {"mlp.down_proj", "ffn_down", Dims::E_F}};
}

// Only Llama permutes: Qwen2 and Gemma 2 use NEOX RoPE (HF's own layout), and Phi-3's fused
// qkv is not permuted by the base conversion either (hf_convert.cpp).
const std::vector<Family>& families() {
  static const std::vector<Family> f = {
      {"LlamaForCausalLM", "llama", llama_like(true)},
      {"Qwen2ForCausalLM", "qwen2", llama_like(false)},
      {"Gemma2ForCausalLM", "gemma2", llama_like(false)},
      {"Phi3ForCausalLM", "phi3",
       {{"self_attn.qkv_proj", "attn_qkv", Dims::QKV_E},
        {"self_attn.o_proj", "attn_output", Dims::E_Q},
        {"mlp.gate_up_proj", "ffn_up", Dims::F2_E},
        {"mlp.down_proj", "ffn_down", Dims::E_F}}},
  };
  return f;
}

std::string last_component(const std::string& s) {
  const size_t dot = s.rfind('.');
  return dot == std::string::npos ? s : s.substr(dot + 1);
}

std::string module_names(const Family& f) {
  std::string s;
  for (const Module& m : f.modules) s += (s.empty() ? "" : ", ") + last_component(m.hf);
  return s;
}

// What the conversion needs of the base: the family, the layer count, the head counts of the
// permutation and each projection's shape (from the GGUF file's tensors, or from config.json).
struct Base {
  std::string path, kind;
  const Family* family = nullptr;
  int64_t n_layer = 0, n_head = 0, n_head_kv = 0;
  int64_t E = 0, F = 0, Q = 0, KV = 0;  // HF bases
  std::unique_ptr<Model> model;         // GGUF bases

  // [n_out, n_in] of the module in layer l, or nullopt when the base has no such matrix.
  std::optional<std::array<int64_t, 2>> shape(int64_t l, const Module& m) const {
    if (model) {
      const TensorInfo* t = model->gguf().find_tensor(fmt::format("blk.{}.{}.weight", l, m.gguf));
      if (!t || t->ne.size() != 2) return std::nullopt;
      return std::array<int64_t, 2>{t->ne[1], t->ne[0]};
    }
    if (l < 0 || l >= n_layer) return std::nullopt;
    switch (m.dims) {
      case Dims::Q_E: return std::array<int64_t, 2>{Q, E};
      case Dims::KV_E: return std::array<int64_t, 2>{KV, E};
      case Dims::E_Q: return std::array<int64_t, 2>{E, Q};
      case Dims::F_E: return std::array<int64_t, 2>{F, E};
      case Dims::E_F: return std::array<int64_t, 2>{E, F};
      case Dims::QKV_E: return std::array<int64_t, 2>{Q + 2 * KV, E};
      case Dims::F2_E: return std::array<int64_t, 2>{2 * F, E};
    }
    return std::nullopt;
  }
};

std::string family_list() {
  std::string s;
  for (const Family& f : families()) s += fmt::format("{}{} ({})", s.empty() ? "" : ", ", f.arch, f.hf_arch);
  return s;
}

Base open_base(const std::string& path) {
  Base b;
  b.path = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    b.kind = "hf";
    const HfConfig cfg = HfConfig::read(path);
    for (const Family& f : families())
      if (cfg.architecture() == f.hf_arch) b.family = &f;
    if (!b.family)
      fail("{}: architecture '{}' is not supported by convert-lora (supported: {})", cfg.path(), cfg.architecture(),
           family_list());
    b.n_layer = cfg.get_int("num_hidden_layers");
    b.E = cfg.get_int("hidden_size");
    b.F = cfg.get_int("intermediate_size");
    b.n_head = cfg.get_int("num_attention_heads");
    b.n_head_kv = cfg.opt_int("num_key_value_heads").value_or(b.n_head);
    if (b.n_layer <= 0 || b.E <= 0 || b.F <= 0 || b.n_head <= 0 || b.n_head_kv <= 0)
      fail("{}: layer, size and head counts must be positive", cfg.path());
    // head_dim when the config states it (Gemma 2), else hidden_size / heads, as slm convert.
    const int64_t head_dim = cfg.opt_int("head_dim").value_or(b.E / b.n_head);
    b.Q = b.n_head * head_dim;
    b.KV = b.n_head_kv * head_dim;
    return b;
  }
  if (!fs::exists(path, ec)) fail("{}: base model not found (give a .gguf file or a Hugging Face folder)", path);
  b.kind = "gguf";
  b.model = Model::load(path);
  const HParams& hp = b.model->hparams();
  for (const Family& f : families())
    if (hp.arch == f.arch) b.family = &f;
  if (!b.family)
    fail("{}: architecture '{}' is not supported by convert-lora (supported: {})", path, hp.arch, family_list());
  b.n_layer = hp.n_layer;
  b.n_head = hp.n_head;
  b.n_head_kv = hp.n_head_kv;
  return b;
}

// adapter_config.json: only plain LoRA (W + alpha/r B A on weights) fits the GGUF format;
// every PEFT option that changes that formula or adds other weights is refused by name.
struct PeftConfig {
  std::string path;
  int64_t r = 0;
  double alpha = 0;
};

bool truthy(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

bool non_empty(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  return !(it->is_object() || it->is_array() || it->is_string()) || !it->empty();
}

PeftConfig read_peft_config(const std::string& dir, const Family& fam) {
  PeftConfig c;
  c.path = (fs::path(dir) / "adapter_config.json").string();
  const json j = read_json_file(c.path, " (not a PEFT adapter folder?)");
  if (!j.is_object()) fail("{}: not a JSON object", c.path);
  const auto pt = j.find("peft_type");
  if (pt == j.end() || !pt->is_string()) fail("{}: no peft_type (not a PEFT adapter config?)", c.path);
  if (pt->get<std::string>() != "LORA")
    fail("{}: peft_type is '{}'; only LORA adapters can be converted", c.path, pt->get<std::string>());
  if (truthy(j, "use_dora"))
    fail("{}: use_dora is true: DoRA adapters are not supported (the GGUF LoRA format has no magnitude vectors)",
         c.path);
  if (truthy(j, "use_rslora"))
    fail("{}: use_rslora is true: rank-stabilized LoRA (scale alpha / sqrt(r)) is not supported", c.path);
  if (truthy(j, "fan_in_fan_out"))
    fail("{}: fan_in_fan_out is true (weights stored transposed, as GPT-2's Conv1D): not supported", c.path);
  if (const auto b = j.find("bias"); b != j.end() && !b->is_null() && *b != "none")
    fail("{}: bias is {}: adapters that train biases are not supported (only \"none\")", c.path, b->dump());
  if (truthy(j, "lora_bias")) fail("{}: lora_bias is true: LoRA biases are not supported", c.path);
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    if (non_empty(j, k))
      fail("{}: {} is set ({}): per-module ranks and alphas are not supported (one r and lora_alpha for all)",
           c.path, k, j[k].dump());
  if (non_empty(j, "modules_to_save"))
    fail("{}: modules_to_save is set ({}): fully trained modules cannot go into a LoRA adapter", c.path,
         j["modules_to_save"].dump());
  const auto r = j.find("r");
  if (r == j.end() || !r->is_number_integer() || r->get<int64_t>() <= 0)
    fail("{}: r must be a positive integer", c.path);
  c.r = r->get<int64_t>();
  const auto a = j.find("lora_alpha");
  if (a == j.end() || !a->is_number() || !std::isfinite(a->get<double>()) || a->get<double>() <= 0)
    // 0 would also be ambiguous: llama.cpp reads adapter.lora.alpha 0 as "scale 1".
    fail("{}: lora_alpha must be a positive number", c.path);
  c.alpha = a->get<double>();
  // A list names modules by their last components; a string is PEFT's regular expression
  // (or "all-linear"): then the tensors alone say which modules are adapted.
  if (const auto t = j.find("target_modules"); t != j.end() && t->is_array())
    for (const json& e : *t) {
      if (!e.is_string()) fail("{}: target_modules must hold names, found {}", c.path, e.dump());
      const std::string name = last_component(e.get<std::string>());
      const bool known = std::any_of(fam.modules.begin(), fam.modules.end(),
                                     [&](const Module& m) { return last_component(m.hf) == name; });
      if (!known)
        fail("{}: target module '{}' cannot be mapped to a {} tensor (slm converts LoRA for {})", c.path,
             e.get<std::string>(), fam.arch, module_names(fam));
    }
  return c;
}

// A PEFT tensor name: base_model.model.model.layers.<N>.<module>.lora_{A,B}.weight.
struct PeftName {
  int64_t layer = -1;
  size_t module = 0;  // in the family's list
  bool is_a = false;
};

PeftName parse_peft_name(const std::string& name, const Family& fam, const std::string& file) {
  static const std::string kRoot = "base_model.model.", kLayers = "model.layers.";
  static const std::string kA = ".lora_A.weight", kB = ".lora_B.weight";
  auto ends = [&](const std::string& s) {
    return name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  PeftName p;
  if (name.rfind(kRoot, 0) != 0) fail("{}: tensor {} is not named as PEFT names LoRA weights", file, name);
  if (!ends(kA) && !ends(kB))
    fail("{}: tensor {} is not a lora_A / lora_B weight (DoRA magnitudes, LoRA biases, embedding adapters and "
         "saved modules are not supported)", file, name);
  p.is_a = ends(kA);
  const std::string path = name.substr(kRoot.size(), name.size() - kRoot.size() - kA.size());
  auto unmapped = [&](const std::string& module) {
    return Error(fmt::format("{}: tensor {} adapts '{}', which slm cannot map to a {} tensor (slm converts LoRA for {})",
                             file, name, module, fam.arch, module_names(fam)));
  };
  if (path.rfind(kLayers, 0) != 0) throw unmapped(path);
  const size_t dot = path.find('.', kLayers.size());
  const std::string num = path.substr(kLayers.size(), dot == std::string::npos ? std::string::npos : dot - kLayers.size());
  if (dot == std::string::npos || num.empty() || num.size() > 6 ||
      !std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw unmapped(path);
  p.layer = std::stoll(num);
  const std::string module = path.substr(dot + 1);
  for (size_t i = 0; i < fam.modules.size(); ++i)
    if (module == fam.modules[i].hf) {
      p.module = i;
      return p;
    }
  throw unmapped(module);
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

DType parse_outtype(const std::string& s) {
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  fail("--outtype '{}' is not supported for adapters (use f32, f16 or bf16)", s);
}

}  // namespace

LoraAdapter build_lora_from_peft(const std::string& peft_dir, const std::string& base_path,
                                 LoraConvertReport* report) {
  // The adapter's files first: a missing one should not wait for a big base to load.
  std::error_code ec;
  if (!fs::is_directory(peft_dir, ec)) fail("{}: not a folder (give the PEFT adapter folder)", peft_dir);
  const fs::path cfg_path = fs::path(peft_dir) / "adapter_config.json";
  if (!fs::exists(cfg_path, ec)) fail("{}: missing (not a PEFT adapter folder?)", cfg_path.string());
  const fs::path st_path = fs::path(peft_dir) / "adapter_model.safetensors";
  if (!fs::exists(st_path, ec)) {
    if (fs::exists(fs::path(peft_dir) / "adapter_model.bin", ec))
      fail("{}: missing; the folder has adapter_model.bin, a PyTorch pickle slm does not read (save the adapter "
           "with safe_serialization=True)", st_path.string());
    fail("{}: missing (the adapter's weights)", st_path.string());
  }
  const Base base = open_base(base_path);
  const Family& fam = *base.family;
  const PeftConfig cfg = read_peft_config(peft_dir, fam);
  const auto st = SafetensorsFile::open(st_path.string());

  // Pair lora_A with lora_B per (layer, module); the map's order (layer, then the family's
  // module order) is the output's, whatever order the file has.
  std::map<std::pair<int64_t, size_t>, std::pair<const StTensor*, const StTensor*>> pairs;
  for (const StTensor& t : st->tensors()) {
    const PeftName p = parse_peft_name(t.name, fam, st->path());
    auto& slot = pairs[{p.layer, p.module}];
    const StTensor*& dst = p.is_a ? slot.first : slot.second;
    if (dst) fail("{}: tensor {} appears twice", st->path(), t.name);
    dst = &t;
  }
  if (pairs.empty()) fail("{}: the adapter holds no tensors", st->path());

  LoraAdapter ad;
  ad.arch = fam.arch;
  ad.alpha = static_cast<float>(cfg.alpha);
  for (const auto& [key, ab] : pairs) {
    const auto [layer, mi] = key;
    const Module& m = fam.modules[mi];
    const std::string what = fmt::format("model.layers.{}.{}", layer, m.hf);
    const auto [a, b] = ab;
    if (!a || !b)
      fail("{}: {} has a lora_{} weight but no lora_{}", st->path(), what, a ? "A" : "B", a ? "B" : "A");
    for (const StTensor* t : {a, b}) {
      if (t->shape.size() != 2) fail("{}: tensor {} has shape {}; LoRA weights are 2-D", st->path(), t->name, shape_str(t->shape));
      if (!t->is_float())
        fail("{}: tensor {} has dtype {}; only F32, F16 and BF16 weights can be converted", st->path(), t->name, t->dtype);
    }
    // lora_A [r][n_in], lora_B [n_out][r].
    const int64_t rank = a->shape[0], n_in = a->shape[1], n_out = b->shape[0];
    if (b->shape[1] != rank)
      fail("{}: {}: lora_A is {} and lora_B is {}; their ranks differ", st->path(), what, shape_str(a->shape),
           shape_str(b->shape));
    if (rank != cfg.r)
      fail("{}: {} has rank {}, but {} says r = {}", st->path(), what, rank, cfg.path, cfg.r);
    const std::string gguf_name = fmt::format("blk.{}.{}.weight", layer, m.gguf);
    const auto want = base.shape(layer, m);
    if (!want)
      fail("{}: the adapter changes {} ({}), which the base {} does not have", st->path(), what, gguf_name, base.path);
    if ((*want)[0] != n_out || (*want)[1] != n_in)
      fail("{}: {} is {} x {} (n_out x n_in) in the adapter, but {} is {} x {} in the base {}: the adapter is not "
           "for this model", st->path(), what, n_out, n_in, gguf_name, (*want)[0], (*want)[1], base.path);

    LoraTensor& t = ad.add(gguf_name, n_in, n_out, rank);
    st_read_floats(*a, 0, a->nelements(), t.a.data());
    if (m.perm == Perm::None) {
      st_read_floats(*b, 0, b->nelements(), t.b.data());
    } else {
      // B A's row j is B's row j times A: permuting the product's rows (what the base
      // conversion does to W) is permuting B's rows; A stays as it is.
      const int64_t heads = m.perm == Perm::Heads ? base.n_head : base.n_head_kv;
      if (n_out % heads != 0 || (n_out / heads) % 2 != 0)
        fail("{}: {}: {} rows do not split into {} heads of an even size", st->path(), what, n_out, heads);
      for (int64_t j = 0; j < n_out; ++j)
        st_read_floats(*b, permuted_source_row(j, n_out, heads) * rank, rank, t.b.data() + j * rank);
    }
  }
  if (base.model) ad.check_against(*base.model);
  if (report) {
    report->arch = ad.arch;
    report->base_kind = base.kind;
    report->n_pairs = ad.tensors.size();
    report->rank = cfg.r;
    report->alpha = ad.alpha;
    report->n_params = ad.n_params();
  }
  return ad;
}

LoraConvertReport convert_lora(const LoraConvertOptions& o) {
  const DType type = parse_outtype(o.outtype);  // a typo fails before any reading
  // Writing over an input would truncate a file that is mapped (SIGBUS) or lose it.
  std::error_code ec;
  if (fs::exists(o.out_path, ec))
    for (const fs::path& in : {fs::path(o.base), fs::path(o.peft_dir) / "adapter_model.safetensors"})
      if (fs::equivalent(in, o.out_path, ec)) fail("{}: the output file must differ from the inputs", o.out_path);
  LoraConvertReport rep;
  const LoraAdapter ad = build_lora_from_peft(o.peft_dir, o.base, &rep);
  ad.save(o.out_path, type);
  rep.file_bytes = fs::file_size(o.out_path, ec);
  return rep;
}

}  // namespace slm::convert
