// slm public C++ API. Everything here reports failure through slm::Status (no exceptions
// cross this boundary), so an application or a server can keep running after bad input.
//
//   slm::api::Model model;
//   if (auto st = slm::api::Model::load("model.gguf", &model); !st.ok) { ... st.message ... }
//   slm::api::Session session(model, {});
//   std::string text;
//   session.generate("Once upon a time", {.n_predict = 64, .temperature = 0}, [&](std::string_view piece) {
//     text += piece; return true; });
//   // Structured output: {.json_schema = R"({"type":"object","properties":{...}})"}
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace slm::api {

struct Status {
  bool ok = true;
  std::string message;  // one line: what went wrong and what to do
  static Status success() { return {}; }
  static Status error(std::string m) { return {false, std::move(m)}; }
};

struct ModelInfo {
  std::string architecture, name;
  int64_t n_vocab = 0, n_ctx_train = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0;
  uint64_t file_size = 0;
};

class Model {
 public:
  Model();
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  static Status load(const std::string& path, Model* out);
  bool loaded() const { return impl_ != nullptr; }
  ModelInfo info() const;
  Status tokenize(std::string_view text, bool add_bos, std::vector<int32_t>* out) const;
  std::string detokenize(const std::vector<int32_t>& ids) const;
  // The model's chat template (tokenizer.chat_template), empty when it has none.
  std::string chat_template() const;
  // Whether the vocabulary has fill-in-the-middle tokens (code models), for Session::infill.
  bool can_infill() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// How the KV cache holds keys and values: fp16 (llama.cpp's default), f32, bf16, or blocks of
// 32 of llama.cpp's other cache types: q8_0 (half the F16 cache's memory, ~0.02% perplexity),
// q4_0, q4_1, q5_0, q5_1, iq4_nl (about 28-38% of it, at some cost in quality; see
// docs/performance.md). The block types need key and value rows in whole blocks of 32.
enum class KvType { F16, F32, Q8_0, BF16, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL };

struct SessionParams {
  int n_ctx = 4096;
  int n_threads = 0;  // 0: all cores
  bool kv_f32 = false;  // kept for older callers: true means kv_type F32
  KvType kv_type = KvType::F16;
  // The keys' and the values' types where they differ from kv_type (llama.cpp's -ctk, -ctv).
  std::optional<KvType> kv_type_k{}, kv_type_v{};
};

struct GenerateParams {
  int n_predict = -1;  // -1: until an end-of-generation token or the context is full
  float temperature = 0.8f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  // llama.cpp's optional stages, off at these values: locally typical sampling (1: off),
  // top-n-sigma (<= 0: off), XTC (probability 0: off; threshold above 0.5: off), mirostat (0:
  // off, 1 or 2; tau the target surprise in bits, eta its learning rate).
  float typical_p = 1.0f;
  float top_n_sigma = -1.0f;
  float xtc_probability = 0.0f;
  float xtc_threshold = 0.1f;
  int mirostat = 0;
  float mirostat_tau = 5.0f;
  float mirostat_eta = 0.1f;
  // DRY (multiplier 0: off): tokens that would extend a repeat of the history longer than
  // dry_allowed_length lose multiplier * base^(length - allowed) (llama.cpp's default breakers:
  // newline, colon, quote, asterisk).
  float dry_multiplier = 0.0f;
  float dry_base = 1.75f;
  int dry_allowed_length = 2;
  int dry_penalty_last_n = -1;
  uint64_t seed = 0xFFFFFFFF;
  // Constrained output (at most one): a GBNF grammar (llama.cpp's format) or a JSON schema
  // (JSON text) the generated text must follow; both empty: free text. A grammar or schema
  // slm cannot parse or enforce is an error Status naming the problem.
  std::string grammar;
  std::string json_schema;
  // Added to those tokens' logits before sampling (-INFINITY bans one), as llama.cpp's
  // --logit-bias and the OpenAI API's logit_bias.
  std::vector<std::pair<int32_t, float>> logit_bias;
  // llama.cpp's --context-shift and --keep: when the text fills the context, the prompt's first
  // n_keep tokens (the BOS token besides; -1: the whole prompt) stay, half of the rest is
  // dropped, and generation goes on; false: it stops there. The cached keys of what stays are
  // rotated to their new positions (llama.cpp's way, milliseconds); with
  // context_shift_reevaluate what stays is evaluated again (a prompt batch per shift, and exactly
  // what a fresh run on those tokens gives).
  bool context_shift = false;
  int n_keep = 0;
  bool context_shift_reevaluate = false;
};

// One conversation on a model (the model must outlive it).
class Session {
 public:
  Session(const Model& model, const SessionParams& params);
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  // Continues `prompt` (the KV cache is reused for the part of it seen before); pieces of
  // complete UTF-8 text go to on_text as they are generated; return false from it to stop.
  Status generate(std::string_view prompt, const GenerateParams& params,
                  const std::function<bool(std::string_view)>& on_text, bool parse_special = false);
  // Fill-in-the-middle (code models: Qwen2.5-Coder, CodeGemma, ...): the text that belongs
  // between `prefix` and `suffix`, prompted as llama.cpp's /infill does; what does not fit the
  // context is cut from the prefix's start and the suffix's end. A model without FIM tokens
  // gives an error Status saying so.
  Status infill(std::string_view prefix, std::string_view suffix, const GenerateParams& params,
                const std::function<bool(std::string_view)>& on_text);
  // Logits of every position of `tokens`, evaluated after what the session already holds.
  Status eval(const std::vector<int32_t>& tokens, std::vector<float>* logits_out);
  void reset();
  int32_t n_past() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Status init_error_;
};

}  // namespace slm::api
