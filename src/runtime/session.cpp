#include "runtime/session.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/whole_file.h"

namespace slm {

namespace {
int resolve_ctx(const Model& m, int n_ctx) {
  const int64_t train = m.hparams().n_ctx_train;
  if (n_ctx < 0) fail("context size {} must be positive", n_ctx);
  if (n_ctx == 0) return static_cast<int>(std::min<int64_t>(train, 1 << 20));
  return n_ctx;
}
}  // namespace

int context_size(const Model& m, int requested) {
  const int64_t train = m.hparams().n_ctx_train;
  if (requested > 0) return requested;
  if (requested == 0) return static_cast<int>(std::min<int64_t>(train, 1 << 20));
  return static_cast<int>(std::min<int64_t>(train, 4096));
}

std::string context_warning(const Model& m, int64_t n_ctx) {
  const int64_t train = m.hparams().n_ctx_train;
  if (train <= 0 || n_ctx <= train) return {};
  return fmt::format("the context ({} tokens) is longer than the {} tokens this model was trained on: "
                     "text past position {} is likely to degrade", n_ctx, train, train);
}

Session::Session(const Model& model, const SessionOptions& opts)
    : model_(model), opts_(opts),
      cache_(model.make_cache(resolve_ctx(model, opts.n_ctx), 1, std::max(opts.n_batch, 1), opts.kv_types)),
      ctx_(opts.n_threads) {
  if (opts_.n_batch <= 0) fail("batch size {} must be positive", opts_.n_batch);
  ctx_.lora = opts_.lora.get();
  ctx_.set_row_kernels(opts_.row_kernels);
}

const std::vector<float>& Session::eval(std::span<const int32_t> tokens, bool all_logits) {
  const int64_t n_vocab = model_.hparams().n_vocab;
  if (tokens.empty()) fail("nothing to evaluate: empty token list");
  if (tokens_.size() + tokens.size() > static_cast<size_t>(n_ctx()))
    fail("{} tokens do not fit in the context: {} already used of {} (raise the context size "
         "with -c, or shorten the prompt)", tokens.size(), tokens_.size(), n_ctx());
  logits_.resize((all_logits ? tokens.size() : 1) * n_vocab);
  size_t out_row = 0;
  for (size_t start = 0; start < tokens.size(); start += opts_.n_batch) {
    const size_t end = std::min(tokens.size(), start + static_cast<size_t>(opts_.n_batch));
    batch_.clear();
    for (size_t i = start; i < end; ++i)
      batch_.add(tokens[i], static_cast<int32_t>(tokens_.size() + (i - start)), 0,
                 all_logits || i + 1 == tokens.size());
    model_.forward(ctx_, batch_, *cache_, logits_.data() + out_row * n_vocab);
    out_row += batch_.n_outputs();
    tokens_.insert(tokens_.end(), tokens.begin() + start, tokens.begin() + end);
  }
  return logits_;
}

namespace {
constexpr char kStateMagic[8] = {'S', 'L', 'M', 'P', 'C', 'A', 'C', '1'};

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
}  // namespace

std::string Session::state_identity() const {
  const HParams& hp = model_.hparams();
  const GGUFFile& f = model_.gguf();
  // 4 KiB from 8 places of the weights (read from the file, not the mapping, which repacking
  // may have released): a base model and its fine-tune have the same shape and file size.
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&h](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  const auto& tensors = f.tensors();
  if (!tensors.empty() && tensors[0].file) {
    const uint64_t lo = f.data_offset(), span = f.file_size() > lo ? f.file_size() - lo : 0;
    std::vector<uint8_t> buf(4096);
    for (uint64_t i = 0; i < 8 && span > 0; ++i) {
      const uint64_t at = lo + span * i / 8;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), f.file_size() - at));
      tensors[0].file->read_at(at, buf.data(), n);
      mix(buf.data(), n);
    }
  }
  std::string lora = "none";
  if (opts_.lora && !opts_.lora->empty()) {
    lora.clear();
    for (size_t i = 0; i < opts_.lora->adapters.size(); ++i) {
      const LoraAdapter& a = *opts_.lora->adapters[i];
      uint64_t ah = 1469598103934665603ull;
      for (const LoraTensor& t : a.tensors)
        for (size_t j = 0; j < std::min<size_t>(t.a.size(), 64); ++j) {
          uint32_t bits;
          std::memcpy(&bits, &t.a[j], sizeof bits);
          ah = (ah ^ bits) * 1099511628211ull;
        }
      lora += fmt::format("{}{} parameters, alpha {}, {:016x} at {}", i ? "; " : "", a.n_params(), a.alpha, ah,
                          opts_.lora->scales[i]);
    }
  }
  return fmt::format("{} with {} layers, {} embedding, {} tokens; a file of {} bytes and {} tensors, weights {:016x}; "
                     "LoRA {}; cache {}",
                     hp.arch, hp.n_layer, hp.n_embd, hp.n_vocab, f.file_size(), tensors.size(), h, lora,
                     kv_types_name(cache_->types()));
}

void Session::save_state(const std::string& path) const {
  std::string out(kStateMagic, sizeof kStateMagic);
  const std::string identity = state_identity();
  put(out, static_cast<uint32_t>(identity.size()));
  out += identity;
  put(out, static_cast<uint32_t>(tokens_.size()));
  out.append(reinterpret_cast<const char*>(tokens_.data()), tokens_.size() * sizeof(int32_t));
  const std::string record = cache_->save_seq(0);
  put(out, static_cast<uint64_t>(record.size()));
  out += record;
  // Written beside the file and renamed over it, so that a run stopped halfway leaves the old one.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("prompt cache {}: cannot write {}: {}", path, tmp, std::strerror(errno));
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    if (!f.flush()) fail("prompt cache {}: writing {} failed: {}", path, tmp, std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("prompt cache {}: cannot rename {} to it: {}", path, tmp, std::strerror(errno));
}

void Session::load_state(const std::string& path) {
  const std::string in = read_whole_file(path, "prompt cache");
  size_t at = 0;
  auto take = [&](size_t n, const char* what) {
    if (in.size() - at < n) fail("prompt cache {}: cut short inside {} ({} bytes)", path, what, in.size());
    const std::string_view v(in.data() + at, n);
    at += n;
    return v;
  };
  auto get_u32 = [&](const char* what) {
    uint32_t v;
    std::memcpy(&v, take(sizeof v, what).data(), sizeof v);
    return v;
  };
  if (take(sizeof kStateMagic, "its header") != std::string_view(kStateMagic, sizeof kStateMagic))
    fail("prompt cache {}: not a prompt cache file of slm (its first bytes are wrong)", path);
  const std::string_view identity = take(get_u32("its header"), "its header");
  const std::string mine = state_identity();
  if (identity != mine)
    fail("prompt cache {} was made for another model or settings: it says \"{}\", this run is \"{}\"", path, identity,
         mine);
  const uint32_t n_tokens = get_u32("its tokens");
  const std::string_view token_bytes = take(static_cast<size_t>(n_tokens) * sizeof(int32_t), "its tokens");
  std::vector<int32_t> tokens(n_tokens);
  std::memcpy(tokens.data(), token_bytes.data(), token_bytes.size());
  const int64_t n_vocab = model_.hparams().n_vocab;
  for (const int32_t t : tokens)
    if (t < 0 || t >= n_vocab) fail("prompt cache {}: token {} is outside the vocabulary (0..{})", path, t, n_vocab - 1);
  uint64_t record_size;
  std::memcpy(&record_size, take(sizeof record_size, "its cache").data(), sizeof record_size);
  if (record_size > in.size() - at) fail("prompt cache {}: cut short inside its cache ({} bytes)", path, in.size());
  const std::string_view record(in.data() + at, static_cast<size_t>(record_size));
  if (at + record_size != in.size()) fail("prompt cache {}: {} bytes past its end", path, in.size() - at - record_size);
  try {
    cache_->restore_seq(0, record);
  } catch (const Error& e) {
    fail("prompt cache {}: {}", path, e.what());
  }
  if (cache_->seq_length(0) != static_cast<int32_t>(tokens.size())) {
    cache_->truncate(0, 0);
    fail("prompt cache {}: it holds {} tokens and the cache rows of {}", path, tokens.size(), cache_->seq_length(0));
  }
  tokens_ = std::move(tokens);
}

void Session::truncate(int32_t n) {
  n = std::clamp<int32_t>(n, 0, n_past());
  n = cache_->truncate(0, n);
  tokens_.resize(n);
}

}  // namespace slm
