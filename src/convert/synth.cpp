#include "convert/synth.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numbers>

#include <fmt/format.h>

#include "convert/progress.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace slm::convert {

namespace {

// The real models' hyperparameters, from their Hugging Face config.json files as llama.cpp's
// convert_hf_to_gguf.py writes them into GGUF.
//   name, arch, display, hidden, layers, embd, ff, heads, kv heads, head dim, vocab, hint,
//   ctx, rope base, eps, tied, qkv bias, llama3 rope, sliding window, softcaps
const std::vector<SynthShape> kShapes = {
    {"llama-3.2-1b", "llama", "Llama 3.2 1B", false, 16, 2048, 8192, 32, 8, 64, 128256,
     "ggml-vocab-llama-bpe.gguf", 131072, 500000.0f, 1e-5f, true, false, true, 0, 0, 0},
    {"llama-3.2-3b", "llama", "Llama 3.2 3B", false, 28, 3072, 8192, 24, 8, 128, 128256,
     "ggml-vocab-llama-bpe.gguf", 131072, 500000.0f, 1e-5f, true, false, true, 0, 0, 0},
    {"qwen2.5-0.5b", "qwen2", "Qwen2.5 0.5B", false, 24, 896, 4864, 14, 2, 64, 151936,
     "ggml-vocab-qwen2.gguf", 32768, 1000000.0f, 1e-6f, true, true, false, 0, 0, 0},
    {"qwen2.5-1.5b", "qwen2", "Qwen2.5 1.5B", false, 28, 1536, 8960, 12, 2, 128, 151936,
     "ggml-vocab-qwen2.gguf", 32768, 1000000.0f, 1e-6f, true, true, false, 0, 0, 0},
    {"gemma-2-2b", "gemma2", "Gemma 2 2B", false, 26, 2304, 9216, 8, 4, 256, 256000,
     "a vocab file made from Gemma 2's tokenizer", 8192, 10000.0f, 1e-6f, true, false, false, 4096,
     50.0f, 30.0f},
    {"qwen3-0.6b", "qwen3", "Qwen3 0.6B", false, 28, 1024, 3072, 16, 8, 128, 151936,
     "ggml-vocab-qwen2.gguf", 40960, 1000000.0f, 1e-6f, true, false, false, 0, 0, 0},
    {"qwen3-1.7b", "qwen3", "Qwen3 1.7B", false, 28, 2048, 6144, 16, 8, 128, 151936,
     "ggml-vocab-qwen2.gguf", 40960, 1000000.0f, 1e-6f, true, false, false, 0, 0, 0},
    {"gemma-3-1b", "gemma3", "Gemma 3 1B", false, 26, 1152, 6912, 4, 1, 256, 262144,
     "a vocab file made from Gemma 3's tokenizer", 32768, 1000000.0f, 1e-6f, true, false, false, 512,
     0, 0},
    {"phi-3-mini", "phi3", "Phi-3 mini 4k", false, 32, 3072, 8192, 32, 32, 96, 32064,
     "ggml-vocab-phi-3.gguf", 4096, 10000.0f, 1e-5f, false, false, false, 2047, 0, 0},
    // BERT encoder (embeddings): bias everywhere, LayerNorm, no RoPE; written with CLS pooling
    // as bge's files are (add_common_keys).
    {"bge-small-en-v1.5", "bert", "bge-small-en-v1.5", false, 12, 384, 1536, 12, 12, 32, 30522,
     "ggml-vocab-bert-bge.gguf", 512, 0.0f, 1e-12f, true, false, false, 0, 0, 0},
    // Miniatures of each architecture for tests: same tensors and metadata, tiny sizes, and
    // whatever vocabulary they are given.
    {"tiny-llama", "llama", "tiny llama (tests)", true, 2, 64, 128, 4, 2, 16, 0, "", 512,
     500000.0f, 1e-5f, true, false, true, 0, 0, 0},
    {"tiny-qwen2", "qwen2", "tiny qwen2 (tests)", true, 2, 64, 160, 4, 2, 16, 0, "", 512,
     1000000.0f, 1e-6f, true, true, false, 0, 0, 0},
    {"tiny-gemma2", "gemma2", "tiny gemma2 (tests)", true, 2, 64, 128, 4, 2, 32, 0, "", 512,
     10000.0f, 1e-6f, true, false, false, 8, 50.0f, 30.0f},
    {"tiny-qwen3", "qwen3", "tiny qwen3 (tests)", true, 2, 64, 160, 4, 2, 32, 0, "", 512,
     1000000.0f, 1e-6f, true, false, false, 0, 0, 0},
    {"tiny-gemma3", "gemma3", "tiny gemma3 (tests)", true, 7, 64, 128, 4, 2, 32, 0, "", 512,
     1000000.0f, 1e-6f, true, false, false, 8, 0, 0},
    {"tiny-phi3", "phi3", "tiny phi3 (tests)", true, 2, 64, 128, 4, 4, 16, 0, "", 512,
     10000.0f, 1e-5f, false, false, false, 2047, 0, 0},
    {"tiny-bert", "bert", "tiny bert (tests)", true, 2, 64, 128, 4, 4, 16, 0, "", 512,
     0.0f, 1e-12f, true, false, false, 0, 0, 0},
};

// Llama 3.x rope scaling (config.json "rope_scaling": llama3).
constexpr float kL3Factor = 32.0f, kL3Low = 1.0f, kL3High = 4.0f;
constexpr int64_t kL3OrigCtx = 8192;

constexpr float kWeightStd = 0.02f;

// splitmix64: turns (seed, tensor, chunk) into independent xoshiro states.
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// xoshiro256+: fast, and its high bits (all we use) are of full quality.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& v : s_) v = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t r = s_[0] + s_[3];
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = (s_[3] << 45) | (s_[3] >> 19);
    return r;
  }
  // Uniform in (-1, 1), 24 random bits each, from one 64-bit draw for two values.
  void two_uniform(float& a, float& b) {
    const uint64_t r = next();
    constexpr float k = 1.0f / 8388608.0f;  // 2^-23
    a = static_cast<float>(r >> 40) * k - 1.0f;
    b = static_cast<float>((r >> 16) & 0xFFFFFF) * k - 1.0f;
  }
  // Marsaglia's polar method: two N(0, 1) values per accepted pair, no trigonometry.
  void two_normal(float& x, float& y) {
    for (;;) {
      float u, v;
      two_uniform(u, v);
      const float s = u * u + v * v;
      if (s >= 1.0f || s == 0.0f) continue;
      const float m = std::sqrt(-2.0f * std::log(s) / s);
      x = u * m;
      y = v * m;
      return;
    }
  }

 private:
  uint64_t s_[4];
};

// Values generated per PRNG stream: a fixed number of whole rows, so the file depends only on
// the seed, never on how chunks are spread over threads.
constexpr int64_t kChunkValues = int64_t{1} << 16;
// Values per write batch: bounds memory (one batch's encoded bytes plus a chunk of floats per
// thread) for the largest tensors (Llama's 128256 x 2048 embeddings).
constexpr int64_t kBatchValues = int64_t{16} << 20;

void fill_chunk(const SynthTensor& t, uint64_t seed, size_t tensor_index, int64_t chunk,
                const std::vector<float>& rope, float* dst, int64_t n) {
  switch (t.init) {
    case SynthInit::Ones: std::fill(dst, dst + n, 1.0f); return;
    case SynthInit::Zeros: std::fill(dst, dst + n, 0.0f); return;
    case SynthInit::RopeFreqs: std::copy(rope.begin(), rope.begin() + n, dst); return;
    case SynthInit::Normal: break;
  }
  uint64_t s = seed;
  const uint64_t a = splitmix64(s);
  uint64_t mix = a ^ (static_cast<uint64_t>(tensor_index) * 0xD1B54A32D192ED03ull) ^
                 (static_cast<uint64_t>(chunk) * 0x8CB92BA72F3D8DD7ull);
  Rng rng(splitmix64(mix));
  int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    float x, y;
    rng.two_normal(x, y);
    dst[i] = x * kWeightStd;
    dst[i + 1] = y * kWeightStd;
  }
  if (i < n) {
    float x, y;
    rng.two_normal(x, y);
    dst[i] = x * kWeightStd;
  }
}

void add_common_keys(GGUFWriter& w, const SynthShape& s, int64_t n_vocab, uint32_t file_type,
                     uint64_t seed) {
  const std::string a = s.arch;
  auto u32 = [](int64_t v) { return GGUFValue::u32(static_cast<uint32_t>(v)); };
  w.set("general.architecture", GGUFValue::str(a));
  w.set("general.type", GGUFValue::str("model"));
  w.set("general.name", GGUFValue::str(std::string(s.display) + " (random weights)"));
  w.set("general.description",
        GGUFValue::str(fmt::format("RANDOM weights N(0, {}) seed {}, norms 1: the shape of {}, "
                                   "made by slm synth for benchmarks; it generates noise",
                                   kWeightStd, seed, s.display)));
  // Keys in the order convert_hf_to_gguf.py writes them for each architecture.
  if (a == "phi3") {
    w.set(a + ".context_length", u32(s.n_ctx));
    w.set(a + ".rope.scaling.original_context_length", u32(s.n_ctx));
    w.set(a + ".embedding_length", u32(s.n_embd));
    w.set(a + ".feed_forward_length", u32(s.n_ff));
    w.set(a + ".block_count", u32(s.n_layer));
    w.set(a + ".attention.head_count", u32(s.n_head));
    w.set(a + ".attention.head_count_kv", u32(s.n_head_kv));
    w.set(a + ".attention.layer_norm_rms_epsilon", GGUFValue::f32(s.norm_eps));
    w.set(a + ".rope.dimension_count", u32(s.head_dim));
    w.set(a + ".rope.freq_base", GGUFValue::f32(s.rope_base));
    w.set("general.file_type", GGUFValue::u32(file_type));
    if (s.sliding_window > 0) w.set(a + ".attention.sliding_window", u32(s.sliding_window));
    return;
  }
  if (a == "bert") {
    w.set(a + ".context_length", u32(s.n_ctx));
    w.set(a + ".embedding_length", u32(s.n_embd));
    w.set(a + ".feed_forward_length", u32(s.n_ff));
    w.set(a + ".block_count", u32(s.n_layer));
    w.set(a + ".attention.head_count", u32(s.n_head));
    w.set(a + ".attention.layer_norm_epsilon", GGUFValue::f32(s.norm_eps));
    w.set("general.file_type", GGUFValue::u32(file_type));
    w.set(a + ".attention.causal", GGUFValue::boolean(false));
    w.set(a + ".pooling_type", u32(2));  // CLS, as bge's config (1_Pooling) says
    return;
  }
  w.set(a + ".context_length", u32(s.n_ctx));
  w.set(a + ".embedding_length", u32(s.n_embd));
  w.set(a + ".block_count", u32(s.n_layer));
  w.set(a + ".feed_forward_length", u32(s.n_ff));
  w.set(a + ".attention.head_count", u32(s.n_head));
  w.set(a + ".attention.head_count_kv", u32(s.n_head_kv));
  if (a != "gemma2") w.set(a + ".rope.freq_base", GGUFValue::f32(s.rope_base));
  w.set(a + ".attention.layer_norm_rms_epsilon", GGUFValue::f32(s.norm_eps));
  // Written when the head size is not n_embd / n_head or config.json states it (Llama 3.2,
  // Gemma, Qwen3).
  if (a == "llama" || a == "gemma2" || a == "gemma3" || a == "qwen3" || s.head_dim * s.n_head != s.n_embd) {
    w.set(a + ".attention.key_length", u32(s.head_dim));
    w.set(a + ".attention.value_length", u32(s.head_dim));
  }
  w.set("general.file_type", GGUFValue::u32(file_type));
  if (a == "llama") {
    w.set(a + ".vocab_size", u32(n_vocab));
    w.set(a + ".rope.dimension_count", u32(s.head_dim));
  }
  if (a == "gemma2") {
    w.set(a + ".attn_logit_softcapping", GGUFValue::f32(s.attn_softcap));
    w.set(a + ".final_logit_softcapping", GGUFValue::f32(s.final_softcap));
    w.set(a + ".attention.sliding_window", u32(s.sliding_window));
  }
  if (a == "gemma3") w.set(a + ".attention.sliding_window", u32(s.sliding_window));
}

uint32_t llama_file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;   // LLAMA_FTYPE_ALL_F32
    case DType::F16: return 1;   // LLAMA_FTYPE_MOSTLY_F16
    case DType::BF16: return 32; // LLAMA_FTYPE_MOSTLY_BF16
    default: fail("synth: type {} is not supported (use f16, f32 or bf16)", dtype_name(t));
  }
}

}  // namespace

const std::vector<SynthShape>& synth_shapes() { return kShapes; }

const SynthShape* find_synth_shape(const std::string& name) {
  for (const SynthShape& s : kShapes)
    if (name == s.name) return &s;
  return nullptr;
}

std::string synth_shape_names() {
  std::string r;
  for (const SynthShape& s : kShapes) {
    if (s.hidden) continue;
    if (!r.empty()) r += ", ";
    r += s.name;
  }
  return r;
}

std::vector<float> llama3_rope_factors(int64_t head_dim, float base, float factor, float low_freq,
                                       float high_freq, int64_t original_ctx) {
  // Float32 arithmetic step by step, as the converter's torch code computes it.
  const float low_wavelen = static_cast<float>(original_ctx) / low_freq;
  const float high_wavelen = static_cast<float>(original_ctx) / high_freq;
  std::vector<float> r;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const float freq = 1.0f / std::pow(base, static_cast<float>(i) / static_cast<float>(head_dim));
    const float wavelen = static_cast<float>(2.0 * std::numbers::pi) / freq;
    if (wavelen < high_wavelen) {
      r.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      r.push_back(factor);
    } else {
      const float smooth = (static_cast<float>(original_ctx) / wavelen - low_freq) / (high_freq - low_freq);
      r.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return r;
}

std::vector<SynthTensor> synth_plan(const SynthShape& s, int64_t n_vocab, DType type) {
  const int64_t E = s.n_embd, F = s.n_ff, V = n_vocab;
  const int64_t q_dim = s.n_head * s.head_dim, kv_dim = s.n_head_kv * s.head_dim;
  const std::string arch = s.arch;
  const bool gemma = arch == "gemma2" || arch == "gemma3", qk_norm = arch == "qwen3" || arch == "gemma3";
  std::vector<SynthTensor> t;
  auto mat = [&](std::string name, int64_t n_in, int64_t n_out) {
    t.push_back({std::move(name), {n_in, n_out}, type, SynthInit::Normal});
  };
  auto vec = [&](std::string name, int64_t n, SynthInit init) {
    t.push_back({std::move(name), {n}, DType::F32, init});
  };
  if (arch == "bert") {
    // convert_hf_to_gguf's order and types: position and token-type embeddings stay F32.
    auto mat32 = [&](std::string name, int64_t n_in, int64_t n_out) {
      t.push_back({std::move(name), {n_in, n_out}, DType::F32, SynthInit::Normal});
    };
    mat("token_embd.weight", E, V);
    mat32("token_types.weight", E, 2);
    mat32("position_embd.weight", E, s.n_ctx);
    vec("token_embd_norm.weight", E, SynthInit::Ones);
    vec("token_embd_norm.bias", E, SynthInit::Zeros);
    for (int64_t l = 0; l < s.n_layer; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
        mat(p + m + ".weight", E, E);
        vec(p + m + ".bias", E, SynthInit::Zeros);
      }
      vec(p + "attn_output_norm.weight", E, SynthInit::Ones);
      vec(p + "attn_output_norm.bias", E, SynthInit::Zeros);
      mat(p + "ffn_up.weight", E, F);
      vec(p + "ffn_up.bias", F, SynthInit::Zeros);
      mat(p + "ffn_down.weight", F, E);
      vec(p + "ffn_down.bias", E, SynthInit::Zeros);
      vec(p + "layer_output_norm.weight", E, SynthInit::Ones);
      vec(p + "layer_output_norm.bias", E, SynthInit::Zeros);
    }
    return t;
  }
  mat("token_embd.weight", E, V);
  if (s.llama3_rope) vec("rope_freqs.weight", s.head_dim / 2, SynthInit::RopeFreqs);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vec(p + "attn_norm.weight", E, SynthInit::Ones);
    if (arch == "phi3") {
      mat(p + "attn_qkv.weight", E, q_dim + 2 * kv_dim);  // rows [Q | K | V]
    } else {
      mat(p + "attn_q.weight", E, q_dim);
      if (s.qkv_bias) vec(p + "attn_q.bias", q_dim, SynthInit::Zeros);
      mat(p + "attn_k.weight", E, kv_dim);
      if (s.qkv_bias) vec(p + "attn_k.bias", kv_dim, SynthInit::Zeros);
      mat(p + "attn_v.weight", E, kv_dim);
      if (s.qkv_bias) vec(p + "attn_v.bias", kv_dim, SynthInit::Zeros);
    }
    if (qk_norm) {
      vec(p + "attn_q_norm.weight", s.head_dim, SynthInit::Ones);
      vec(p + "attn_k_norm.weight", s.head_dim, SynthInit::Ones);
    }
    mat(p + "attn_output.weight", q_dim, E);
    if (gemma) vec(p + "post_attention_norm.weight", E, SynthInit::Ones);
    vec(p + "ffn_norm.weight", E, SynthInit::Ones);
    if (arch == "phi3") {
      mat(p + "ffn_up.weight", E, 2 * F);  // rows [gate | up]
    } else {
      mat(p + "ffn_gate.weight", E, F);
      mat(p + "ffn_up.weight", E, F);
    }
    mat(p + "ffn_down.weight", F, E);
    if (gemma) vec(p + "post_ffw_norm.weight", E, SynthInit::Ones);
  }
  vec("output_norm.weight", E, SynthInit::Ones);
  if (!s.tied) mat("output.weight", E, V);
  return t;
}

SynthReport synth_model(const SynthOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const SynthShape* shape = find_synth_shape(o.like);
  if (!shape) fail("unknown model shape '{}' (valid: {})", o.like, synth_shape_names());
  const uint32_t file_type = llama_file_type(o.type);

  auto vocab = GGUFFile::open(o.vocab_path);
  const GGUFValue* tokens = vocab->find("tokenizer.ggml.tokens");
  if (!tokens || !tokens->is_array() || tokens->array_size() == 0)
    fail("{}: no tokenizer.ggml.tokens (not a vocabulary file?)", o.vocab_path);
  const int64_t n_vocab = static_cast<int64_t>(tokens->array_size());
  if (shape->n_vocab != 0 && shape->n_vocab != n_vocab)
    fail("{}: has {} tokens, but {} has a {}-token vocabulary: use {}", o.vocab_path, n_vocab,
         shape->display, shape->n_vocab, shape->vocab_hint);

  SynthReport rep;
  rep.n_vocab = n_vocab;
  const std::vector<SynthTensor> plan = synth_plan(*shape, n_vocab, o.type);
  const std::vector<float> rope =
      shape->llama3_rope ? llama3_rope_factors(shape->head_dim, shape->rope_base, kL3Factor, kL3Low,
                                               kL3High, kL3OrigCtx)
                         : std::vector<float>{};

  GGUFWriter w;
  add_common_keys(w, *shape, n_vocab, file_type, o.seed);
  for (const auto& [k, v] : vocab->metadata())
    if (k.rfind("tokenizer.", 0) == 0) w.set(k, v);
  w.set("general.quantization_version", GGUFValue::u32(2));
  uint64_t total = 0;
  for (const SynthTensor& t : plan) {
    w.add_tensor_info(t.name, t.type, t.ne);
    total += static_cast<uint64_t>(t.nelements());
    rep.n_params += t.nelements();
  }

  ThreadPool pool(std::max(1, o.n_threads));
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));
  Progress progress(std::string("synthesizing ") + shape->name, total, o.progress);
  w.write_streamed(o.out_path, [&](size_t ti, const GGUFWriter::Sink& sink) {
    const SynthTensor& t = plan[ti];
    const int64_t ne0 = t.ne[0], nrows = t.nelements() / ne0;
    const size_t out_row = row_size(t.type, ne0);
    const FromFloatFn encode = type_traits(t.type).from_float;
    const int64_t chunk_rows = std::max<int64_t>(1, kChunkValues / ne0);
    const int64_t batch_rows = chunk_rows * std::max<int64_t>(1, kBatchValues / (chunk_rows * ne0));
    std::vector<uint8_t> out(static_cast<size_t>(std::min(batch_rows, nrows)) * out_row);
    for (int64_t r0 = 0; r0 < nrows; r0 += batch_rows) {
      const int64_t n = std::min(batch_rows, nrows - r0);
      const int64_t n_chunks = (n + chunk_rows - 1) / chunk_rows;
      pool.parallel_for(n_chunks, [&](int64_t b, int64_t e, int th) {
        std::vector<float>& f = scratch[static_cast<size_t>(th)];
        f.resize(static_cast<size_t>(chunk_rows * ne0));
        for (int64_t c = b; c < e; ++c) {
          const int64_t row = c * chunk_rows, rows = std::min(chunk_rows, n - row);
          fill_chunk(t, o.seed, ti, (r0 + row) / chunk_rows, rope, f.data(), rows * ne0);
          encode(f.data(), out.data() + static_cast<size_t>(row) * out_row, rows * ne0);
        }
      });
      sink(out.data(), static_cast<size_t>(n) * out_row);
      progress.advance(static_cast<uint64_t>(n * ne0), t.name);
    }
  });
  progress.finish();
  std::error_code ec;
  rep.file_bytes = std::filesystem::file_size(o.out_path, ec);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace slm::convert
