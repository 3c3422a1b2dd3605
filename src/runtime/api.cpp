// The public API (include/slm/slm.h): thin wrappers that catch errors at the boundary and
// turn them into a Status.
#include <slm/slm.h>

#include <mutex>
#include <new>
#include <thread>

#include "core/error.h"
#include "models/model.h"
#include "runtime/generate.h"
#include "runtime/infill.h"
#include "runtime/grammar_vocab.h"
#include "sampling/grammar.h"
#include "sampling/json_schema.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::api {

namespace {
template <class F>
Status guarded(F&& f) {
  try {
    f();
    return Status::success();
  } catch (const slm::Error& e) {
    return Status::error(e.what());
  } catch (const std::bad_alloc&) {
    return Status::error("out of memory");
  } catch (const std::exception& e) {
    return Status::error(e.what());
  }
}
}  // namespace

struct Model::Impl {
  std::unique_ptr<slm::Model> model;
  std::unique_ptr<slm::Tokenizer> tokenizer;
  // The vocabulary for constrained output, built by the first generate() that asks for it.
  mutable std::once_flag grammar_vocab_once;
  mutable std::shared_ptr<const GrammarVocab> grammar_vocab;
};

Model::Model() = default;
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Status Model::load(const std::string& path, Model* out) {
  return guarded([&] {
    auto impl = std::make_unique<Impl>();
    impl->model = slm::Model::load(path);
    impl->tokenizer = slm::Tokenizer::from_gguf(impl->model->gguf());
    out->impl_ = std::move(impl);
  });
}

ModelInfo Model::info() const {
  ModelInfo i;
  if (!impl_) return i;
  const HParams& hp = impl_->model->hparams();
  i.architecture = hp.arch;
  i.name = impl_->model->gguf().opt_string("general.name").value_or("");
  i.n_vocab = hp.n_vocab;
  i.n_ctx_train = hp.n_ctx_train;
  i.n_embd = hp.n_embd;
  i.n_layer = hp.n_layer;
  i.n_head = hp.n_head;
  i.n_head_kv = hp.n_head_kv;
  i.file_size = impl_->model->gguf().file_size();
  return i;
}

Status Model::tokenize(std::string_view text, bool add_bos, std::vector<int32_t>* out) const {
  if (!impl_) return Status::error("no model loaded");
  return guarded([&] { *out = impl_->tokenizer->encode(text, add_bos, false); });
}

std::string Model::detokenize(const std::vector<int32_t>& ids) const {
  return impl_ ? impl_->tokenizer->decode(ids) : std::string();
}

bool Model::can_infill() const { return impl_ && infill_unsupported(*impl_->tokenizer).empty(); }

std::string Model::chat_template() const {
  return impl_ ? impl_->model->gguf().opt_string("tokenizer.chat_template").value_or("") : "";
}

struct Session::Impl {
  const Model::Impl* model = nullptr;
  std::unique_ptr<slm::Session> session;
};

Session::Session(const Model& model, const SessionParams& params) : impl_(std::make_unique<Impl>()) {
  if (!model.loaded()) {
    init_error_ = Status::error("session on a model that is not loaded");
    return;
  }
  impl_->model = &model.impl();
  init_error_ = guarded([&] {
    SessionOptions so;
    so.n_ctx = params.n_ctx;
    const unsigned hw = std::thread::hardware_concurrency();
    so.n_threads = params.n_threads > 0 ? params.n_threads : static_cast<int>(hw ? hw : 1);
    const auto dtype = [](KvType t) {
      switch (t) {
        case KvType::F32: return DType::F32;
        case KvType::BF16: return DType::BF16;
        case KvType::Q8_0: return DType::Q8_0;
        case KvType::Q4_0: return DType::Q4_0;
        case KvType::Q4_1: return DType::Q4_1;
        case KvType::Q5_0: return DType::Q5_0;
        case KvType::Q5_1: return DType::Q5_1;
        case KvType::IQ4_NL: return DType::IQ4_NL;
        case KvType::F16: break;
      }
      return DType::F16;
    };
    const DType both = params.kv_f32 ? DType::F32 : dtype(params.kv_type);
    so.kv_types = KVTypes(params.kv_type_k ? dtype(*params.kv_type_k) : both,
                          params.kv_type_v ? dtype(*params.kv_type_v) : both);
    impl_->session = std::make_unique<slm::Session>(*impl_->model->model, so);
  });
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

namespace {

// The sampler GenerateParams ask for, grammar included. Throws slm::Error.
Sampler make_sampler(const Model::Impl& m, const GenerateParams& p) {
  const slm::Tokenizer& tok = *m.tokenizer;
  SamplerParams sp;
  sp.temperature = p.temperature;
  sp.top_k = p.top_k;
  sp.top_p = p.top_p;
  sp.min_p = p.min_p;
  sp.repeat_penalty = p.repeat_penalty;
  sp.typical_p = p.typical_p;
  sp.top_n_sigma = p.top_n_sigma;
  sp.xtc_probability = p.xtc_probability;
  sp.xtc_threshold = p.xtc_threshold;
  sp.mirostat = p.mirostat;
  sp.mirostat_tau = p.mirostat_tau;
  sp.mirostat_eta = p.mirostat_eta;
  sp.dry_multiplier = p.dry_multiplier;
  sp.dry_base = p.dry_base;
  sp.dry_allowed_length = p.dry_allowed_length;
  sp.dry_penalty_last_n = p.dry_penalty_last_n;
  resolve_dry_breakers(sp, tok);
  sp.seed = p.seed;
  sp.logit_bias = p.logit_bias;
  Sampler sampler(sp, static_cast<int32_t>(m.model->hparams().n_vocab));
  if (!p.grammar.empty() && !p.json_schema.empty()) fail("GenerateParams: give a grammar or a json_schema, not both");
  std::shared_ptr<const Grammar> g;
  if (!p.grammar.empty()) g = Grammar::parse(p.grammar);
  if (!p.json_schema.empty()) {
    try {
      g = json_schema_grammar(std::string_view(p.json_schema));
    } catch (const Error& e) {
      fail("GenerateParams.json_schema: {}", e.what());
    }
  }
  if (g) {
    std::call_once(m.grammar_vocab_once, [&] { m.grammar_vocab = make_grammar_vocab(tok); });
    sampler.set_grammar({g, m.grammar_vocab});
  }
  return sampler;
}

}  // namespace

Status Session::generate(std::string_view prompt, const GenerateParams& p,
                         const std::function<bool(std::string_view)>& on_text, bool parse_special) {
  if (!init_error_.ok) return init_error_;
  return guarded([&] {
    const slm::Tokenizer& tok = *impl_->model->tokenizer;
    Sampler sampler = make_sampler(*impl_->model, p);
    const std::vector<int32_t> ids = tok.encode(prompt, true, parse_special);
    slm::generate(*impl_->session, tok, sampler, ids, p.n_predict, [&](const std::string& s) { return on_text(s); },
                  {p.context_shift, resolve_n_keep(ids, tok, p.n_keep), p.context_shift_reevaluate});
  });
}

Status Session::infill(std::string_view prefix, std::string_view suffix, const GenerateParams& p,
                       const std::function<bool(std::string_view)>& on_text) {
  if (!init_error_.ok) return init_error_;
  return guarded([&] {
    const slm::Tokenizer& tok = *impl_->model->tokenizer;
    Sampler sampler = make_sampler(*impl_->model, p);
    InfillInput in;
    in.prefix = prefix;
    in.suffix = suffix;
    const InfillPrompt prompt = infill_prompt(tok, in, InfillBudget::for_reply(impl_->session->n_ctx(), p.n_predict));
    slm::generate(*impl_->session, tok, sampler, prompt.tokens, p.n_predict,
                  [&](const std::string& s) { return on_text(s); });
  });
}

Status Session::eval(const std::vector<int32_t>& tokens, std::vector<float>* logits_out) {
  if (!init_error_.ok) return init_error_;
  return guarded([&] {
    const auto& l = impl_->session->eval(tokens, true);
    logits_out->assign(l.begin(), l.begin() + tokens.size() * impl_->model->model->hparams().n_vocab);
  });
}

void Session::reset() {
  if (impl_->session) impl_->session->reset();
}

int32_t Session::n_past() const { return impl_->session ? impl_->session->n_past() : 0; }

}  // namespace slm::api
