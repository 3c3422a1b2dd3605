#include "train/finetune.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "core/error.h"
#include "core/gguf.h"
#include "core/whole_file.h"
#include "models/model.h"
#include "runtime/perplexity.h"
#include "tokenizer/tokenizer.h"
#include "train/lora_trainer.h"

namespace slm::train {

namespace {

// Fails now, before any work, if `path` cannot be written (and leaves nothing behind).
void check_writable(const std::string& path, const char* what) {
  const bool existed = ::access(path.c_str(), F_OK) == 0;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  if (fd < 0) fail("cannot write the {} {}: {}", what, path, std::strerror(errno));
  ::close(fd);
  if (!existed) ::unlink(path.c_str());
}

// AdamW moments and step count, in the adapter's tensor order (a then b per tensor).
struct AdamState {
  std::vector<std::vector<float>> m, v;  // 2 per tensor: [2i] for a, [2i+1] for b
  int step = 0;
};

void adamw_update(const FinetuneOptions& o, LoraAdapter& ad, const LoraGrads& g, AdamState& st) {
  st.step += 1;
  const double bc1 = 1.0 - std::pow(static_cast<double>(o.beta1), st.step);
  const double bc2 = 1.0 - std::pow(static_cast<double>(o.beta2), st.step);
  const float step_size = static_cast<float>(o.lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  auto update = [&](std::vector<float>& p, const std::vector<float>& grad, std::vector<float>& m, std::vector<float>& v) {
    for (size_t i = 0; i < p.size(); ++i) {
      if (o.weight_decay != 0.0f) p[i] *= 1.0f - o.lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1.0f - o.beta1) * grad[i];
      v[i] = o.beta2 * v[i] + (1.0f - o.beta2) * grad[i] * grad[i];
      // PyTorch: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
      p[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + o.adam_eps);
    }
  };
  for (size_t i = 0; i < ad.tensors.size(); ++i) {
    update(ad.tensors[i].a, g.a[i], st.m[2 * i], st.v[2 * i]);
    update(ad.tensors[i].b, g.b[i], st.m[2 * i + 1], st.v[2 * i + 1]);
  }
}

// The settings a checkpoint must share with the run that resumes it.
std::vector<std::pair<std::string, std::string>> run_keys(const FinetuneOptions& o, const Model& m,
                                                          int64_t n_train_tokens) {
  return {
      {"slm.finetune.base_size", std::to_string(m.gguf().file_size())},
      {"slm.finetune.train_tokens", std::to_string(n_train_tokens)},
      {"slm.finetune.rank", std::to_string(o.rank)},
      {"slm.finetune.alpha", fmt::format("{}", o.alpha)},
      {"slm.finetune.targets", LoraTargets::parse(o.targets).str()},
      {"slm.finetune.lr", fmt::format("{}", o.lr)},
      {"slm.finetune.betas", fmt::format("{},{},{}", o.beta1, o.beta2, o.adam_eps)},
      {"slm.finetune.weight_decay", fmt::format("{}", o.weight_decay)},
      {"slm.finetune.batch", std::to_string(o.batch)},
      {"slm.finetune.ctx", std::to_string(o.ctx)},
      {"slm.finetune.seed", std::to_string(o.seed)},
  };
}

void save_checkpoint(const std::string& path, const LoraAdapter& ad, const AdamState& st,
                     const std::vector<std::pair<std::string, std::string>>& keys) {
  GGUFWriter wr;
  wr.set("general.architecture", GGUFValue::str(ad.arch));
  wr.set("general.type", GGUFValue::str("slm-finetune-checkpoint"));
  wr.set("adapter.lora.alpha", GGUFValue::f32(ad.alpha));
  wr.set("slm.finetune.step", GGUFValue::u32(static_cast<uint32_t>(st.step)));
  for (const auto& [k, v] : keys) wr.set(k, GGUFValue::str(v));
  for (size_t i = 0; i < ad.tensors.size(); ++i) {
    const LoraTensor& t = ad.tensors[i];
    auto put = [&](const std::string& name, const std::vector<float>& v, int64_t ne0, int64_t ne1) {
      wr.add_tensor(name, DType::F32, {ne0, ne1}, v.data(), v.size() * sizeof(float));
    };
    put(t.base + ".lora_a", t.a, t.n_in, t.rank);
    put(t.base + ".lora_b", t.b, t.rank, t.n_out);
    put(t.base + ".lora_a.adam_m", st.m[2 * i], t.n_in, t.rank);
    put(t.base + ".lora_a.adam_v", st.v[2 * i], t.n_in, t.rank);
    put(t.base + ".lora_b.adam_m", st.m[2 * i + 1], t.rank, t.n_out);
    put(t.base + ".lora_b.adam_v", st.v[2 * i + 1], t.rank, t.n_out);
  }
  // Write beside and rename: a crash mid-write keeps the previous checkpoint.
  const std::string tmp = path + ".tmp";
  wr.write(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename {} to {}", tmp, path);
}

void load_checkpoint(const std::string& path, LoraAdapter& ad, AdamState& st,
                     const std::vector<std::pair<std::string, std::string>>& keys) {
  auto f = GGUFFile::open(path);
  if (f->opt_string("general.type").value_or("") != "slm-finetune-checkpoint")
    fail("{} is not an slm finetune checkpoint (general.type is not slm-finetune-checkpoint)", path);
  for (const auto& [k, v] : keys) {
    const std::string got = f->opt_string(k).value_or("(missing)");
    if (got != v)
      fail("{}: the checkpoint was made with {} = {}, this run has {}: resume with the same settings", path,
           k.substr(std::string("slm.finetune.").size()), got, v);
  }
  st.step = static_cast<int>(f->get_int("slm.finetune.step"));
  auto read = [&](const std::string& name, std::vector<float>& dst) {
    const TensorInfo* t = f->find_tensor(name);
    if (!t || t->type != DType::F32 || static_cast<size_t>(t->nelements) != dst.size())
      fail("{}: tensor {} is missing or has the wrong shape", path, name);
    std::memcpy(dst.data(), t->data, dst.size() * sizeof(float));
  };
  for (size_t i = 0; i < ad.tensors.size(); ++i) {
    LoraTensor& t = ad.tensors[i];
    read(t.base + ".lora_a", t.a);
    read(t.base + ".lora_b", t.b);
    read(t.base + ".lora_a.adam_m", st.m[2 * i]);
    read(t.base + ".lora_a.adam_v", st.v[2 * i]);
    read(t.base + ".lora_b.adam_m", st.m[2 * i + 1]);
    read(t.base + ".lora_b.adam_v", st.v[2 * i + 1]);
  }
}

// The windows of one step: `batch` rows of `ctx` tokens.
void sample_windows(const std::vector<int32_t>& text, bool bos_first, int32_t bos, int batch, int ctx,
                    uint64_t seed, int step, std::vector<int32_t>& out) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) + 1);
  out.resize(static_cast<size_t>(batch) * ctx);
  // With BOS first, a window is BOS + ctx - 1 text tokens taken after the text's own BOS.
  const int64_t take = bos_first ? ctx - 1 : ctx;
  const int64_t lo = bos_first ? 1 : 0;
  const uint64_t range = static_cast<uint64_t>(static_cast<int64_t>(text.size()) - lo - take + 1);
  for (int b = 0; b < batch; ++b) {
    const int64_t start = lo + static_cast<int64_t>(rng() % range);
    int32_t* row = out.data() + static_cast<size_t>(b) * ctx;
    int64_t i = 0;
    if (bos_first) row[i++] = bos;
    for (int64_t j = 0; j < take; ++j) row[i++] = text[start + j];
  }
}

double eval_ppl(const Model& model, const Tokenizer& tok, const std::string& text, const FinetuneOptions& o,
                std::shared_ptr<const LoraSet> lora) {
  PerplexityOptions po;
  po.n_ctx = o.eval_ctx;
  po.n_batch = o.eval_ctx;
  po.n_chunks = o.eval_chunks;
  po.n_threads = o.n_threads;
  po.kv_types = DType::F32;
  po.lora = std::move(lora);
  return perplexity(model, tok, text, po).ppl;
}

}  // namespace

FinetuneReport finetune(const FinetuneOptions& o, const FinetuneCallbacks& cb) {
  auto log = [&](const std::string& s) { if (cb.log) cb.log(s); };
  // Settings first, then files: every error before any work.
  if (o.rank <= 0) fail("--rank must be at least 1 (got {})", o.rank);
  if (o.steps <= 0) fail("--steps must be at least 1 (got {})", o.steps);
  if (o.batch <= 0) fail("--batch must be at least 1 (got {})", o.batch);
  if (o.ctx < 2) fail("--ctx must be at least 2 (got {})", o.ctx);
  if (!(o.lr > 0.0f)) fail("--lr must be positive (got {})", o.lr);
  if (o.checkpoint_every < 0) fail("--checkpoint-every must be 0 (off) or positive (got {})", o.checkpoint_every);
  if (o.out_path.empty()) fail("an output file is needed (-o ADAPTER.gguf)");
  const LoraTargets targets = LoraTargets::parse(o.targets);
  const std::string train_text = read_whole_file(o.train_path, "training file");
  if (train_text.empty()) fail("the training file {} is empty", o.train_path);
  const std::string eval_text = o.eval_path.empty() ? std::string() : read_whole_file(o.eval_path, "evaluation file");
  check_writable(o.out_path, "output adapter");
  const std::string ckpt_path = o.checkpoint_path.empty() ? o.out_path + ".ckpt" : o.checkpoint_path;
  if (o.checkpoint_every > 0) check_writable(ckpt_path, "checkpoint");

  auto model = Model::load(o.model_path);
  const HParams& hp = model->hparams();
  if (o.ctx > hp.n_ctx_train)
    fail("--ctx {} is larger than the model's context ({} tokens)", o.ctx, hp.n_ctx_train);
  auto tok = Tokenizer::from_gguf(model->gguf());
  const std::vector<int32_t> text = tok->encode(train_text, /*add_special=*/true, /*parse_special=*/false);
  const bool bos_first = tok->add_bos() && !text.empty() && text[0] == tok->bos();
  const int64_t need = o.ctx + (bos_first ? 1 : 0);
  if (static_cast<int64_t>(text.size()) < need)
    fail("the training file {} holds {} tokens, fewer than one window of --ctx {} needs ({}): give more text or "
         "a smaller --ctx", o.train_path, text.size(), o.ctx, need);

  auto adapter = make_adapter(*model, targets, o.rank, o.alpha, o.seed);
  const auto keys = run_keys(o, *model, static_cast<int64_t>(text.size()));
  AdamState st;
  for (const LoraTensor& t : adapter->tensors) {
    st.m.emplace_back(t.a.size(), 0.0f), st.v.emplace_back(t.a.size(), 0.0f);
    st.m.emplace_back(t.b.size(), 0.0f), st.v.emplace_back(t.b.size(), 0.0f);
  }
  if (!o.resume_path.empty()) {
    load_checkpoint(o.resume_path, *adapter, st, keys);
    if (st.step >= o.steps)
      fail("{} is at step {} already; --steps {} leaves nothing to do", o.resume_path, st.step, o.steps);
    log(fmt::format("resuming {} at step {}", o.resume_path, st.step));
  }

  TrainerOptions to;
  to.n_threads = o.n_threads;
  to.batch = o.batch;
  to.seq_len = o.ctx;
  to.force_recompute = o.force_recompute;
  LoraTrainer trainer(*model, *adapter, to);

  FinetuneReport rep;
  rep.train_tokens = static_cast<int64_t>(text.size());
  rep.first_step = st.step;
  rep.recompute = trainer.recomputes();
  rep.activation_bytes = trainer.activation_bytes();
  rep.n_params = adapter->n_params();
  rep.state_bytes = static_cast<size_t>(rep.n_params) * 4 * 4;  // params, grads, two moments
  log(fmt::format("model {} ({}, {} layers), {} training tokens; LoRA rank {} alpha {:g} on {}: {} parameters",
                  o.model_path, hp.arch, hp.n_layer, text.size(), o.rank, o.alpha, targets.str(), rep.n_params));
  log(fmt::format("memory: model file {:.1f} MiB (mapped), adapter + gradients + AdamW {:.1f} MiB, activations "
                  "{:.1f} MiB for {} x {} tokens ({})",
                  model->gguf().file_size() / 1048576.0, rep.state_bytes / 1048576.0,
                  rep.activation_bytes / 1048576.0, o.batch, o.ctx,
                  rep.recompute ? "layers recomputed in the backward pass" : "all layers kept"));

  if (!eval_text.empty()) {
    rep.eval_ppl_before = eval_ppl(*model, *tok, eval_text, o, nullptr);
    log(fmt::format("eval perplexity before: {:.4f}", rep.eval_ppl_before));
  }

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  std::vector<int32_t> windows;
  LoraGrads grads;
  const int64_t tokens_per_step = static_cast<int64_t>(o.batch) * o.ctx;
  for (int step = st.step; step < o.steps; ++step) {
    const auto ts = clock::now();
    sample_windows(text, bos_first, tok->bos(), o.batch, o.ctx, o.seed, step, windows);
    const double loss = trainer.forward_backward(windows.data(), &grads);
    if (!std::isfinite(loss)) fail("step {}: the loss is {} (try a smaller --lr)", step + 1, loss);
    adamw_update(o, *adapter, grads, st);
    if (step == rep.first_step) rep.first_loss = loss;
    rep.last_loss = loss;
    const double dt = std::chrono::duration<double>(clock::now() - ts).count();
    const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    const int done = step + 1 - rep.first_step;
    if (cb.on_step) {
      StepInfo si;
      si.step = step + 1;
      si.steps = o.steps;
      si.loss = loss;
      si.tokens_per_s = tokens_per_step / dt;
      si.eta_s = elapsed / done * (o.steps - step - 1);
      cb.on_step(si);
    }
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < o.steps)
      save_checkpoint(ckpt_path, *adapter, st, keys);
  }
  rep.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  rep.tokens_per_s = rep.seconds > 0 ? tokens_per_step * (o.steps - rep.first_step) / rep.seconds : 0;
  if (o.checkpoint_every > 0) save_checkpoint(ckpt_path, *adapter, st, keys);

  adapter->notes = keys;
  adapter->notes.emplace_back("slm.finetune.steps", std::to_string(o.steps));
  adapter->save(o.out_path, o.out_type);
  log(fmt::format("wrote {} ({} matrices, rank {}, alpha {:g})", o.out_path, adapter->tensors.size(), o.rank,
                  o.alpha));
  if (!eval_text.empty()) {
    auto set = std::make_shared<LoraSet>();
    set->adapters.push_back(adapter);
    set->scales.push_back(1.0f);
    rep.eval_ppl_after = eval_ppl(*model, *tok, eval_text, o, set);
    log(fmt::format("eval perplexity after: {:.4f} (before: {:.4f})", rep.eval_ppl_after, rep.eval_ppl_before));
  }
  return rep;
}

}  // namespace slm::train
