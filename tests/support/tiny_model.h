// A tiny but complete llama model built in memory: random weights (fixed seed), a small
// SentencePiece vocabulary (<unk>, <s>, </s>, the 256 byte tokens and a few words), and the
// metadata `slm run` needs. Tests change its metadata or tensors, then serialize it with
// GGUFWriter (to_bytes) to get a file that differs from a valid one only where they chose.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/gguf.h"

namespace slm::test {

struct TinyModelOptions {
  int64_t n_embd = 32;
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_head_kv = 2;
  int64_t n_ff = 64;
  int64_t n_ctx = 64;
  bool q8_0_ffn_down = true;   // blk.*.ffn_down.weight as Q8_0 (else F32)
  bool f16_output = true;      // an untied output.weight in F16 (else tied embeddings)
  uint32_t seed = 1234;
};

struct TinyTensor {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> ne;
  std::vector<uint8_t> data;
};

// A model as plain lists (copyable, unlike GGUFWriter, whose tensors point into itself).
struct TinyModel {
  std::vector<std::pair<std::string, GGUFValue>> kv;
  std::vector<TinyTensor> tensors;
  uint32_t alignment = 32;

  // Replaces the value of an existing key in place, or appends the key.
  void set(const std::string& key, GGUFValue v) {
    for (auto& [k, old] : kv)
      if (k == key) { old = std::move(v); return; }
    kv.emplace_back(key, std::move(v));
  }
  void remove(const std::string& key) {
    std::erase_if(kv, [&](const auto& p) { return p.first == key; });
  }
  GGUFValue* find(const std::string& key) {
    for (auto& [k, v] : kv)
      if (k == key) return &v;
    return nullptr;
  }
  TinyTensor* tensor(const std::string& name) {
    for (TinyTensor& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  void remove_tensor(const std::string& name) {
    std::erase_if(tensors, [&](const TinyTensor& t) { return t.name == name; });
  }
  std::vector<uint8_t> to_bytes() const {
    GGUFWriter w;
    w.set_alignment(alignment);
    for (const auto& [k, v] : kv) w.set(k, v);
    for (const TinyTensor& t : tensors)
      w.add_tensor(t.name, t.type, t.ne, t.data.data(), t.data.size(), /*copy=*/false);
    return w.to_bytes();
  }
};

namespace tiny_detail {

inline float next_uniform(uint32_t& state) {  // xorshift32 -> [-1, 1)
  state ^= state << 13;
  state ^= state >> 17;
  state ^= state << 5;
  return static_cast<float>(state >> 8) / static_cast<float>(1u << 23) - 1.0f;
}

inline TinyTensor make_tensor(const std::string& name, DType type, std::vector<int64_t> ne,
                              const std::vector<float>& values) {
  TinyTensor t{name, type, std::move(ne), {}};
  int64_t n = 1;
  for (int64_t d : t.ne) n *= d;
  if (static_cast<int64_t>(values.size()) != n) throw std::logic_error("tiny model: value count");
  const TypeTraits& tt = type_traits(type);
  if (!tt.from_float) throw std::logic_error("tiny model: cannot encode " + dtype_name(type));
  t.data.resize(row_size(type, t.ne[0]) * static_cast<size_t>(n / t.ne[0]));
  tt.from_float(values.data(), t.data.data(), n);
  return t;
}

inline TinyTensor random_matrix(const std::string& name, DType type, int64_t n_in, int64_t n_out,
                                float scale, uint32_t& state) {
  std::vector<float> v(static_cast<size_t>(n_in * n_out));
  for (float& x : v) x = scale * next_uniform(state);
  return make_tensor(name, type, {n_in, n_out}, v);
}

inline TinyTensor ones(const std::string& name, int64_t n) {
  return make_tensor(name, DType::F32, {n}, std::vector<float>(static_cast<size_t>(n), 1.0f));
}

}  // namespace tiny_detail

// The SentencePiece vocabulary: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then words.
inline void add_tiny_spm_vocab(TinyModel& m) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0.0f, 0.0f, 0.0f};
  std::vector<int32_t> types = {2, 3, 3};  // UNKNOWN, CONTROL, CONTROL
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    scores.push_back(0.0f);
    types.push_back(6);  // BYTE
  }
  const std::string sp = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  const std::vector<std::string> words = {
      sp, "h", "i", "e", "l", "o", "t", "a", "n", "s", "w", "r", "d",
      sp + "h", sp + "hi", "he", "ll", "llo", sp + "hello", sp + "t", "th", sp + "the",
      sp + "a", sp + "an", sp + "and", "in", sp + "w", sp + "wor", sp + "world", "er", "on"};
  float score = -1.0f;
  for (const std::string& w : words) {
    tokens.push_back(w);
    scores.push_back(score);
    score -= 1.0f;
    types.push_back(1);  // NORMAL
  }
  m.set("tokenizer.ggml.model", GGUFValue::str("llama"));
  m.set("tokenizer.ggml.tokens", GGUFValue::strings(tokens));
  m.set("tokenizer.ggml.scores", GGUFValue::f32s(scores));
  m.set("tokenizer.ggml.token_type", GGUFValue::i32s(types));
  m.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(1));
  m.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(2));
  m.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(0));
  m.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(true));
  m.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(false));
}

inline TinyModel make_tiny_llama(const TinyModelOptions& o = {}) {
  using namespace tiny_detail;
  TinyModel m;
  m.set("general.architecture", GGUFValue::str("llama"));
  m.set("general.name", GGUFValue::str("tiny-llama"));
  m.set("llama.context_length", GGUFValue::u32(static_cast<uint32_t>(o.n_ctx)));
  m.set("llama.embedding_length", GGUFValue::u32(static_cast<uint32_t>(o.n_embd)));
  m.set("llama.block_count", GGUFValue::u32(static_cast<uint32_t>(o.n_layer)));
  m.set("llama.feed_forward_length", GGUFValue::u32(static_cast<uint32_t>(o.n_ff)));
  m.set("llama.attention.head_count", GGUFValue::u32(static_cast<uint32_t>(o.n_head)));
  m.set("llama.attention.head_count_kv", GGUFValue::u32(static_cast<uint32_t>(o.n_head_kv)));
  m.set("llama.attention.layer_norm_rms_epsilon", GGUFValue::f32(1e-5f));
  m.set("llama.rope.freq_base", GGUFValue::f32(10000.0f));
  add_tiny_spm_vocab(m);
  const int64_t n_vocab =
      static_cast<int64_t>(m.find("tokenizer.ggml.tokens")->array_size());

  uint32_t st = o.seed ? o.seed : 1;
  const int64_t E = o.n_embd, F = o.n_ff;
  const int64_t head_dim = E / o.n_head;
  const int64_t kv_dim = o.n_head_kv * head_dim;
  const float s = 0.2f;
  m.tensors.push_back(random_matrix("token_embd.weight", DType::F32, E, n_vocab, 1.0f, st));
  m.tensors.push_back(ones("output_norm.weight", E));
  if (o.f16_output)
    m.tensors.push_back(random_matrix("output.weight", DType::F16, E, n_vocab, s, st));
  for (int64_t l = 0; l < o.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.tensors.push_back(ones(p + "attn_norm.weight", E));
    m.tensors.push_back(random_matrix(p + "attn_q.weight", DType::F32, E, E, s, st));
    m.tensors.push_back(random_matrix(p + "attn_k.weight", DType::F32, E, kv_dim, s, st));
    m.tensors.push_back(random_matrix(p + "attn_v.weight", DType::F32, E, kv_dim, s, st));
    m.tensors.push_back(random_matrix(p + "attn_output.weight", DType::F32, E, E, s, st));
    m.tensors.push_back(ones(p + "ffn_norm.weight", E));
    m.tensors.push_back(random_matrix(p + "ffn_gate.weight", DType::F32, E, F, s, st));
    m.tensors.push_back(random_matrix(p + "ffn_up.weight", DType::F32, E, F, s, st));
    m.tensors.push_back(random_matrix(p + "ffn_down.weight",
                                      o.q8_0_ffn_down ? DType::Q8_0 : DType::F32, F, E, s, st));
  }
  return m;
}

}  // namespace slm::test
