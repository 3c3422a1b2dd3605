// Port of llama.cpp's per-tensor type choice (src/llama-quant.cpp: tensor_allows_quantization,
// llama_tensor_get_type_impl, tensor_type_fallback), restricted to the mixes we offer and to
// quantizing without an importance matrix. The branches keep llama.cpp's order: it is an
// if/else chain where the first matching rule wins, and the attn_v / ffn_down counters advance
// only inside their branches, so reordering would change which layers get more bits.
#include "convert/quant_mix.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "core/error.h"

namespace slm::convert {

namespace {

// llama.cpp's enum llama_ftype (include/llama.h).
enum Ftype : uint32_t {
  kAllF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7, kQ5_0 = 8, kQ5_1 = 9, kQ2_K = 10,
  kQ3_K_S = 11, kQ3_K_M = 12, kQ3_K_L = 13, kQ4_K_S = 14, kQ4_K_M = 15, kQ5_K_S = 16,
  kQ5_K_M = 17, kQ6_K = 18, kIQ4_NL = 25, kIQ4_XS = 30, kBF16 = 32,
};

bool is_quantized(DType t) { return type_traits(t).block_size > 1; }

int64_t block_size(DType t) { return type_traits(t).block_size; }

enum class Category {
  TokenEmbd, AttnQ, AttnV, AttnK, AttnQKV, AttnKVB, AttnOutput, FfnUp, FfnGate, FfnDown, Output, Other,
};

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

Category category_of(const std::string& name) {
  if (name == "output.weight") return Category::Output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::TokenEmbd;
  if (contains(name, "attn_qkv.weight")) return Category::AttnQKV;
  if (contains(name, "attn_kv_b.weight")) return Category::AttnKVB;
  if (contains(name, "attn_v.weight")) return Category::AttnV;
  if (contains(name, "attn_k.weight")) return Category::AttnK;
  if (contains(name, "attn_q.weight")) return Category::AttnQ;
  if (contains(name, "attn_output.weight")) return Category::AttnOutput;
  if (contains(name, "ffn_up")) return Category::FfnUp;
  if (contains(name, "ffn_gate")) return Category::FfnGate;
  if (contains(name, "ffn_down")) return Category::FfnDown;
  return Category::Other;
}

// attn_v-like tensors are the most sensitive to quantization; fused QKV counts as one.
bool is_attn_v_like(Category c) {
  return c == Category::AttnV || c == Category::AttnQKV || c == Category::AttnKVB;
}

// ggml_n_dims: trailing dimensions of 1 do not count.
int n_dims(const std::vector<int64_t>& ne) {
  int n = 1;
  for (size_t i = 1; i < ne.size(); ++i)
    if (ne[i] > 1) n = static_cast<int>(i) + 1;
  return n;
}

// "blk.N." -> N, else -1 (llama.cpp uses sscanf("blk.%d.")).
int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  int v = -1;
  const char* b = name.data() + 4;
  const char* e = name.data() + name.size();
  if (b < e && *b == '+') ++b;
  if (std::from_chars(b, e, v).ec != std::errc()) return -1;
  return v;
}

struct State {
  const MixModelInfo& info;
  uint32_t ftype;
  bool tied;  // no output.weight: token_embd is also the output matrix
  int n_attention_wv = 0, i_attention_wv = 0;
  int64_t n_ffn_down = 0, i_ffn_down = 0;
};

bool use_more_bits(int64_t i_layer, int64_t n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// llama_tensor_get_type_impl for the ftypes in quant_mixes().
DType mix_rule(State& qs, DType new_type, const TensorDesc& t, Category cat) {
  const uint32_t ftype = qs.ftype;
  const bool falcon = qs.info.arch == "falcon";
  const int64_t n_expert = std::max<int64_t>(1, qs.info.n_expert);
  // The layer of an FFN tensor: its position among them, except in MoE models where experts
  // are not consecutive and llama.cpp parses the name instead.
  auto ffn_layer = [&](int64_t counter) -> int64_t {
    if (n_expert <= 1) return counter;
    const int l = layer_of(t.name);
    if (l < 0 || l >= qs.info.n_layer) fail("cannot tell the layer of tensor {}", t.name);
    return l;
  };

  if (cat == Category::Output || (qs.tied && cat == Category::TokenEmbd)) {
    // The output matrix (or the tied embeddings that serve as it) gets 6 bits, or 8 when its
    // rows do not fit the mix's blocks.
    const int64_t nx = t.ne[0];
    if (falcon || nx % block_size(new_type) != 0) new_type = DType::Q8_0;
    else if (new_type != DType::Q8_0) new_type = DType::Q6_K;
  } else if (cat == Category::TokenEmbd) {
    // Untied embeddings keep the mix's type (llama.cpp changes it only for IQ1/IQ2/IQ3 mixes).
  } else if (is_attn_v_like(cat)) {
    const int64_t gqa = qs.info.n_gqa();
    if (ftype == kQ2_K) new_type = gqa >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (ftype == kQ3_K_M) new_type = qs.i_attention_wv < 2 ? DType::Q5_K : DType::Q4_K;
    else if (ftype == kQ3_K_L) new_type = DType::Q5_K;
    else if ((ftype == kIQ4_NL || ftype == kIQ4_XS) && gqa >= 4) new_type = DType::Q5_K;
    else if ((ftype == kQ4_K_M || ftype == kQ5_K_M) &&
             use_more_bits(qs.i_attention_wv, qs.n_attention_wv))
      new_type = DType::Q6_K;
    else if (ftype == kQ4_K_S && qs.i_attention_wv < 4) new_type = DType::Q5_K;
    // 70B: 8 query heads share each V head, so attn_v is small and more bits are cheap.
    if (qs.info.is_70b && (new_type == DType::Q3_K || new_type == DType::Q4_K)) new_type = DType::Q5_K;
    if (qs.info.n_expert == 8) new_type = DType::Q8_0;
    ++qs.i_attention_wv;
  } else if (cat == Category::AttnK) {
    if (qs.info.n_expert == 8) new_type = DType::Q8_0;
  } else if (cat == Category::AttnQ) {
    // Only the IQ3 mixes change attn_q.
  } else if (cat == Category::FfnDown) {
    const int64_t i_layer = ffn_layer(qs.i_ffn_down), n_layer = qs.n_ffn_down;
    if (ftype == kQ2_K) new_type = DType::Q3_K;
    else if (ftype == kQ3_K_M)
      new_type = i_layer < n_layer / 16 ? DType::Q5_K
                 : !falcon || use_more_bits(i_layer, n_layer) ? DType::Q4_K : DType::Q3_K;
    else if (ftype == kQ3_K_L) new_type = falcon ? DType::Q4_K : DType::Q5_K;
    else if (ftype == kQ4_K_M) {
      if (falcon)
        new_type = i_layer < n_layer / 16 ? DType::Q6_K
                   : use_more_bits(i_layer, n_layer) ? DType::Q5_K : DType::Q4_K;
      else if (use_more_bits(i_layer, n_layer)) new_type = DType::Q6_K;
    } else if (i_layer < n_layer / 8 && (ftype == kIQ4_NL || ftype == kIQ4_XS)) {
      new_type = DType::Q5_K;  // llama.cpp does this only without an imatrix, as here
    } else if (ftype == kQ5_K_M && use_more_bits(i_layer, n_layer)) new_type = DType::Q6_K;
    else if (ftype == kQ4_K_S && !falcon && i_layer < n_layer / 8) new_type = DType::Q5_K;
    ++qs.i_ffn_down;
  } else if (cat == Category::AttnOutput) {
    if (!falcon) {
      if (qs.info.n_expert == 8) {
        if (ftype == kQ2_K || ftype == kQ3_K_S || ftype == kQ3_K_M || ftype == kIQ4_NL ||
            ftype == kQ4_K_S || ftype == kQ4_K_M || ftype == kIQ4_XS)
          new_type = DType::Q5_K;
      } else {
        if (ftype == kQ2_K) new_type = DType::Q3_K;
        else if (ftype == kQ3_K_M) new_type = DType::Q4_K;
        else if (ftype == kQ3_K_L) new_type = DType::Q5_K;
      }
    } else if (ftype == kQ3_K_L) {
      new_type = DType::Q4_K;
    }
  }
  // ffn_gate / ffn_up change only in the IQ3_XS mix.
  return new_type;
}

// tensor_type_fallback: rows that are not a whole number of blocks get a type with smaller
// blocks. Where llama.cpp has no fallback (it would stop), we use F16 rather than fail.
DType fallback_type(DType target, int64_t ncols, bool& fell_back) {
  if (ncols % block_size(target) == 0) return target;
  fell_back = true;
  DType r = DType::F16;
  switch (target) {
    case DType::IQ4_XS: r = DType::IQ4_NL; break;
    case DType::Q2_K:
    case DType::Q3_K: r = DType::Q4_0; break;
    case DType::Q4_K: r = DType::Q5_0; break;
    case DType::Q5_K: r = DType::Q5_1; break;
    case DType::Q6_K: r = DType::Q8_0; break;
    default: break;
  }
  return ncols % block_size(r) == 0 ? r : DType::F16;
}

}  // namespace

const std::vector<QuantMix>& quant_mixes() {
  static const std::vector<QuantMix> mixes = {
      {"Q4_0", kQ4_0, DType::Q4_0, "4.5 bpw, 32-value blocks"},
      {"Q4_1", kQ4_1, DType::Q4_1, "5.0 bpw, 32-value blocks with offset"},
      {"Q5_0", kQ5_0, DType::Q5_0, "5.5 bpw"},
      {"Q5_1", kQ5_1, DType::Q5_1, "6.0 bpw"},
      {"Q2_K", kQ2_K, DType::Q2_K, "2.6 bpw K-quant mix"},
      {"Q3_K_S", kQ3_K_S, DType::Q3_K, "3.4 bpw K-quant mix"},
      {"Q3_K_M", kQ3_K_M, DType::Q3_K, "3.9 bpw K-quant mix"},
      {"Q3_K_L", kQ3_K_L, DType::Q3_K, "4.3 bpw K-quant mix"},
      {"IQ4_NL", kIQ4_NL, DType::IQ4_NL, "4.5 bpw non-linear"},
      {"IQ4_XS", kIQ4_XS, DType::IQ4_XS, "4.25 bpw non-linear"},
      {"Q4_K_S", kQ4_K_S, DType::Q4_K, "4.6 bpw K-quant mix"},
      {"Q4_K_M", kQ4_K_M, DType::Q4_K, "4.9 bpw K-quant mix"},
      {"Q5_K_S", kQ5_K_S, DType::Q5_K, "5.5 bpw K-quant mix"},
      {"Q5_K_M", kQ5_K_M, DType::Q5_K, "5.7 bpw K-quant mix"},
      {"Q6_K", kQ6_K, DType::Q6_K, "6.6 bpw"},
      {"Q8_0", kQ8_0, DType::Q8_0, "8.5 bpw"},
      {"F16", kF16, DType::F16, "16-bit float"},
      {"BF16", kBF16, DType::BF16, "16-bit bfloat"},
      {"F32", kAllF32, DType::F32, "32-bit float"},
  };
  return mixes;
}

const QuantMix* find_quant_mix(std::string_view name) {
  std::string up(name);
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "Q3_K") up = "Q3_K_M";
  else if (up == "Q4_K") up = "Q4_K_M";
  else if (up == "Q5_K") up = "Q5_K_M";
  for (const QuantMix& m : quant_mixes())
    if (up == m.name) return &m;
  return nullptr;
}

std::string quant_mix_names() {
  std::string s;
  for (const QuantMix& m : quant_mixes()) {
    if (!s.empty()) s += ", ";
    s += m.name;
  }
  return s;
}

MixModelInfo MixModelInfo::from_gguf(const GGUFFile& f) {
  MixModelInfo info;
  info.arch = f.opt_string("general.architecture").value_or("");
  // Per-layer values may be arrays; the rules use layer 0's, as llama.cpp's n_gqa() does.
  auto first_int = [&](const std::string& key) -> int64_t {
    const GGUFValue* v = f.find(info.arch + "." + key);
    if (!v) return 0;
    if (v->is_array()) {
      const std::vector<int64_t> a = v->as_ints();
      return a.empty() ? 0 : a[0];
    }
    return v->as_int();
  };
  info.n_layer = first_int("block_count");
  info.n_head = first_int("attention.head_count");
  info.n_head_kv = f.has(info.arch + ".attention.head_count_kv") ? first_int("attention.head_count_kv")
                                                                 : info.n_head;
  info.n_expert = first_int("expert_count");
  info.is_70b = info.arch == "llama" && info.n_layer == 80 && info.n_head != info.n_head_kv;
  return info;
}

std::vector<size_t> llama_tensor_order(const std::vector<std::string>& names) {
  std::vector<size_t> idx(names.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::vector<int> layer(names.size());
  for (size_t i = 0; i < names.size(); ++i) layer[i] = layer_of(names[i]);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    if (layer[a] != layer[b]) return layer[a] < layer[b];
    return names[a] < names[b];
  });
  return idx;
}

bool tensor_allows_quantization(const TensorDesc& t) {
  if (n_dims(t.ne) < 2) return false;
  const std::string& name = t.name;
  if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) return false;
  static const char* const kKeep[] = {
      "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
      "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
      "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight",
      "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
      "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
      "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
      "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
      ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
      ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"};
  for (const char* k : kKeep)
    if (contains(name, k)) return false;
  return name != "position_embd.weight" && name != "token_types.weight";
}

std::vector<TypeChoice> choose_tensor_types(const std::vector<TensorDesc>& tensors,
                                            const QuantMix& mix, const MixModelInfo& info) {
  State qs{info, mix.ftype, true};
  for (const TensorDesc& t : tensors) {
    const Category c = category_of(t.name);
    if (is_attn_v_like(c)) ++qs.n_attention_wv;
    if (c == Category::Output) qs.tied = false;
  }
  qs.n_ffn_down = info.n_layer;

  std::vector<TypeChoice> out;
  out.reserve(tensors.size());
  for (const TensorDesc& t : tensors) {
    TypeChoice ch{t.type, false};
    if (tensor_allows_quantization(t)) {
      ch.type = mix.default_type;
      if (is_quantized(mix.default_type)) {
        ch.type = mix_rule(qs, ch.type, t, category_of(t.name));
        ch.type = fallback_type(ch.type, t.ne[0], ch.fallback);
      }
    }
    out.push_back(ch);
  }
  return out;
}

}  // namespace slm::convert
