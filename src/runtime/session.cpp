#include "runtime/session.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "runtime/prompt_state.h"

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

std::string Session::state_identity() const {
  std::vector<float> scales;
  if (opts_.lora) scales = opts_.lora->scales;
  return prompt_state_identity(model_, opts_.lora.get(), scales, cache_->types());
}

void Session::save_state(const std::string& path) const {
  write_prompt_state(path, PromptState{state_identity(), tokens_, cache_->save_seq(0)});
}

void Session::load_state(const std::string& path) {
  PromptState st = read_prompt_state(path, state_identity(), model_.hparams().n_vocab);
  try {
    tokens_ = restore_prompt_state(*cache_, 0, std::move(st), path);
    exact_ = std::numeric_limits<int32_t>::max();  // a file holds only exact rows (its writer cut the rest)
  } catch (const Error&) {
    tokens_.resize(static_cast<size_t>(cache_->seq_length(0)));  // as it was, or emptied with the rows
    throw;
  }
}

bool Session::shift(int32_t from, int32_t n) {
  if (from < 0 || n <= 0 || int64_t{from} + n > n_past())
    fail("context shift: tokens {}..{} are not within the {} held", from, int64_t{from} + n - 1, n_past());
  if (!rotate_keys_) rotate_keys_ = model_.key_rotation(n_ctx());
  if (!cache_->shift(0, from, n, rotate_keys_)) return false;
  tokens_.erase(tokens_.begin() + from, tokens_.begin() + from + n);
  exact_ = std::min(exact_, from);
  return true;
}

void Session::truncate(int32_t n) {
  n = std::clamp<int32_t>(n, 0, n_past());
  n = cache_->truncate(0, n);
  tokens_.resize(n);
  if (n <= exact_) exact_ = std::numeric_limits<int32_t>::max();  // what follows is computed from exact rows
}

}  // namespace slm
