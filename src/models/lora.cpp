#include "models/lora.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/gguf.h"
#include "kernels/kernels.h"
#include "models/blocks.h"
#include "models/model.h"
#include "ops/compute.h"
#include "ops/gemm.h"
#include "ops/tensor.h"

namespace slm {

namespace {

constexpr const char* kSuffixA = ".lora_a";
constexpr const char* kSuffixB = ".lora_b";

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

}  // namespace

std::shared_ptr<LoraAdapter> LoraAdapter::load(const std::string& path, const Model& base) {
  auto file = GGUFFile::open(path);
  const auto type = file->opt_string("general.type");
  if (type && *type != "adapter")
    fail("{}: general.type is '{}', not 'adapter': this is not a LoRA adapter (pass models with -m)", path, *type);
  const auto adapter_type = file->opt_string("adapter.type");
  if (!adapter_type)
    fail("{}: no adapter.type key: not a LoRA adapter in llama.cpp's GGUF format (convert PEFT adapters "
         "with `slm convert-lora`)", path);
  if (*adapter_type != "lora") fail("{}: adapter.type is '{}'; slm applies only 'lora' adapters", path, *adapter_type);

  auto ad = std::make_shared<LoraAdapter>();
  ad->path = path;
  ad->arch = file->opt_string("general.architecture").value_or("");
  ad->alpha = static_cast<float>(file->opt_float("adapter.lora.alpha").value_or(0.0));
  // Pair up name.lora_a / name.lora_b.
  std::unordered_map<std::string, std::pair<const TensorInfo*, const TensorInfo*>> pairs;
  std::vector<std::string> order;
  for (const TensorInfo& t : file->tensors()) {
    std::string base_name;
    bool is_a = false;
    if (ends_with(t.name, kSuffixA)) { base_name = t.name.substr(0, t.name.size() - 7); is_a = true; }
    else if (ends_with(t.name, kSuffixB)) base_name = t.name.substr(0, t.name.size() - 7);
    else fail("{}: tensor {} is neither a .lora_a nor a .lora_b tensor", path, t.name);
    auto [it, fresh] = pairs.try_emplace(base_name, nullptr, nullptr);
    if (fresh) order.push_back(base_name);
    (is_a ? it->second.first : it->second.second) = &t;
  }
  if (order.empty()) fail("{}: the adapter holds no tensors", path);
  for (const std::string& name : order) {
    const auto [a, b] = pairs[name];
    if (!a || !b) fail("{}: {} has a {} tensor but no {}", path, name, a ? "lora_a" : "lora_b", a ? "lora_b" : "lora_a");
    if (a->ne.size() != 2 || b->ne.size() != 2)
      fail("{}: {} lora tensors must be 2-D (lora_a is {}, lora_b is {})", path, name, fmt::join(a->ne, " x "),
           fmt::join(b->ne, " x "));
    // llama.cpp's layout: lora_a [n_in, r], lora_b [r, n_out] (ggml order).
    if (a->ne[1] != b->ne[0])
      fail("{}: {}: lora_a is {} and lora_b is {}; expected lora_a [n_in, r] and lora_b [r, n_out] "
           "(adapters from llama.cpp's old finetune example are not supported)",
           path, name, fmt::join(a->ne, " x "), fmt::join(b->ne, " x "));
    LoraTensor& t = ad->add(name, a->ne[0], b->ne[1], a->ne[1]);
    t.a = tensor_to_floats(*a);  // throws for a type it cannot decode
    t.b = tensor_to_floats(*b);
  }
  ad->check_against(base);
  return ad;
}

void LoraAdapter::check_against(const Model& base) const {
  const std::string& where = path.empty() ? std::string("adapter") : path;
  const std::string& base_arch = base.hparams().arch;
  if (!arch.empty() && arch != base_arch)
    fail("{}: the adapter is for a {} model, but the base model {} is {}", where, arch, base.gguf().path(), base_arch);
  for (const LoraTensor& t : tensors) {
    const TensorInfo* w = base.gguf().find_tensor(t.base);
    if (!w) fail("{}: the adapter changes {}, which the base model {} does not have", where, t.base, base.gguf().path());
    const int64_t n_out = w->ne.size() > 1 ? w->ne[1] : 1;
    if (w->ne.size() > 2 || w->ne[0] != t.n_in || n_out != t.n_out)
      fail("{}: {} is {} x {} in the adapter (n_in x n_out) but {} in the base model {}", where, t.base, t.n_in,
           t.n_out, fmt::join(w->ne, " x "), base.gguf().path());
    if (t.rank <= 0) fail("{}: {} has rank {}", where, t.base, t.rank);
  }
}

void LoraAdapter::save(const std::string& out, DType type) const {
  if (type != DType::F32 && type != DType::F16 && type != DType::BF16)
    fail("LoRA adapter tensors are written as f32, f16 or bf16, not {}", dtype_name(type));
  GGUFWriter wr;
  wr.set("general.architecture", GGUFValue::str(arch));
  wr.set("general.type", GGUFValue::str("adapter"));
  wr.set("adapter.type", GGUFValue::str("lora"));
  wr.set("adapter.lora.alpha", GGUFValue::f32(alpha));
  for (const auto& [k, v] : notes) wr.set(k, GGUFValue::str(v));
  const FromFloatFn enc = type_traits(type).from_float;
  for (const LoraTensor& t : tensors) {
    auto put = [&](const std::string& name, const std::vector<float>& v, int64_t ne0, int64_t ne1) {
      const size_t bytes = row_size(type, ne0) * static_cast<size_t>(ne1);
      if (type == DType::F32) {
        wr.add_tensor(name, type, {ne0, ne1}, v.data(), bytes);
      } else {
        std::vector<uint8_t> buf(bytes);
        enc(v.data(), buf.data(), static_cast<int64_t>(v.size()));
        wr.add_tensor(name, type, {ne0, ne1}, buf.data(), bytes);
      }
    };
    put(t.base + kSuffixA, t.a, t.n_in, t.rank);
    put(t.base + kSuffixB, t.b, t.rank, t.n_out);
  }
  wr.write(out);
}

const LoraTensor* LoraAdapter::find(const std::string& base_name) const {
  auto it = index_.find(base_name);
  return it == index_.end() ? nullptr : &tensors[it->second];
}
LoraTensor* LoraAdapter::find(const std::string& base_name) {
  auto it = index_.find(base_name);
  return it == index_.end() ? nullptr : &tensors[it->second];
}

LoraTensor& LoraAdapter::add(const std::string& base_name, int64_t n_in, int64_t n_out, int64_t rank) {
  if (find(base_name)) fail("LoRA adapter: {} appears twice", base_name);
  if (n_in <= 0 || n_out <= 0 || rank <= 0)
    fail("LoRA adapter: {} has shape n_in {} n_out {} rank {}", base_name, n_in, n_out, rank);
  index_[base_name] = tensors.size();
  LoraTensor& t = tensors.emplace_back();
  t.base = base_name;
  t.n_in = n_in;
  t.n_out = n_out;
  t.rank = rank;
  t.a.assign(static_cast<size_t>(rank * n_in), 0.0f);
  t.b.assign(static_cast<size_t>(n_out * rank), 0.0f);
  return t;
}

int64_t LoraAdapter::n_params() const {
  int64_t n = 0;
  for (const LoraTensor& t : tensors) n += t.rank * (t.n_in + t.n_out);
  return n;
}

std::shared_ptr<LoraSet> load_lora_set(const std::vector<std::string>& specs, const Model& base) {
  if (specs.empty()) return nullptr;
  auto set = std::make_shared<LoraSet>();
  for (const std::string& spec : specs) {
    auto [path, scale] = parse_lora_arg(spec);
    set->adapters.push_back(LoraAdapter::load(path, base));
    set->scales.push_back(scale);
  }
  return set;
}

std::pair<std::string, float> parse_lora_arg(const std::string& arg) {
  // FILE:SCALE, where SCALE parses as a number; otherwise the whole argument is the path
  // (paths may hold colons).
  const size_t colon = arg.rfind(':');
  if (colon != std::string::npos && colon + 1 < arg.size()) {
    const std::string s = arg.substr(colon + 1);
    char* end = nullptr;
    const float v = std::strtof(s.c_str(), &end);
    if (end && *end == '\0' && std::isfinite(v)) return {arg.substr(0, colon), v};
  }
  if (arg.empty()) fail("--lora needs a file name (FILE or FILE:SCALE)");
  return {arg, 1.0f};
}

namespace {

// Decoding (a token or a few): sgemm's packing would copy all of A and B for every token, and
// its per-call set-up costs as much as the products; straight dot products and row updates,
// threads over the rank's rows and then over the output rows, read each value once.
constexpr int64_t kFewTokens = 4;

void apply_few(ComputeContext& ctx, const LoraTensor& t, float s, const float* token_scales, size_t n_ad, size_t k,
               const float* x, int64_t T, float* y) {
  const int64_t r = t.rank, in = t.n_in, out = t.n_out;
  const auto& fk = kern::active().flt[static_cast<int>(DType::F32)];
  const bool simd = fk.gemv && in % 32 == 0;
  float u[kFewTokens * 64];
  float* uu = r <= 64 ? u : ctx.buffer(blocks::kLora, static_cast<size_t>(T * r));
  for (int64_t i = 0; i < T; ++i) {
    const float* xi = x + i * in;
    float* ui = uu + i * r;
    ctx.pool().parallel_for(r, [&](int64_t j0, int64_t j1, int) {
      if (simd) {
        fk.gemv(reinterpret_cast<const uint8_t*>(t.a.data()), static_cast<size_t>(in) * sizeof(float), j0, j1, in, xi,
                ui);  // y is indexed by row: writes ui[j0..j1)
        return;
      }
      for (int64_t j = j0; j < j1; ++j) {
        double d = 0;
        for (int64_t c = 0; c < in; ++c) d += static_cast<double>(xi[c]) * t.a[j * in + c];
        ui[j] = static_cast<float>(d);
      }
    });
    const float si = s * (token_scales ? token_scales[i * n_ad + k] : 1.0f);
    for (int64_t j = 0; j < r; ++j) ui[j] *= si;
  }
  ctx.pool().parallel_for(out, [&](int64_t o0, int64_t o1, int) {
    for (int64_t i = 0; i < T; ++i) {
      const float* ui = uu + i * r;
      float* yi = y + i * out;
      for (int64_t o = o0; o < o1; ++o) {
        const float* b = t.b.data() + o * r;
        float acc = 0.0f;
        for (int64_t j = 0; j < r; ++j) acc += b[j] * ui[j];
        yi[o] += acc;
      }
    }
  }, 64);
}

}  // namespace

void apply_lora(ComputeContext& ctx, const Weight& w, const float* x, int64_t T, float* y) {
  const LoraSet* set = ctx.lora;
  if (!set || set->empty() || T == 0) return;
  const size_t n_ad = set->adapters.size();
  for (size_t k = 0; k < n_ad; ++k) {
    const LoraTensor* t = set->adapters[k]->find(w.name);
    if (!t) continue;
    const float s = set->adapters[k]->scale_for(*t, set->scales[k]);
    const int64_t r = t->rank;
    if (T <= kFewTokens) {
      apply_few(ctx, *t, s, set->token_scales, n_ad, k, x, T, y);
      continue;
    }
    // u = x A^T [T][r], scaled per token; y += u B^T.
    float* u = ctx.buffer(blocks::kLora, static_cast<size_t>(T * r));
    sgemm(ctx.pool(), false, true, T, r, t->n_in, s, x, t->n_in, t->a.data(), t->n_in, 0.0f, u, r);
    if (set->token_scales)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < r; ++j) u[i * r + j] *= set->token_scales[i * n_ad + k];
    sgemm(ctx.pool(), false, true, T, t->n_out, r, 1.0f, u, r, t->b.data(), r, 1.0f, y, t->n_out);
  }
}

}  // namespace slm
