#include "runtime/embedder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace slm {

void normalize_l2(std::span<float> v) {
  double sum = 0.0;
  for (float x : v) sum += static_cast<double>(x) * x;
  const double norm = std::sqrt(sum);
  const float inv = norm > 0.0 ? static_cast<float>(1.0 / norm) : 0.0f;
  for (float& x : v) x *= inv;
}

Embedder::Embedder(const Model& model, const EmbedderOptions& opts)
    : model_(model), encoder_(dynamic_cast<const EncoderModel*>(&model)), opts_(opts),
      ctx_(std::max(1, opts.n_threads)) {
  if (opts_.n_batch <= 0) fail("batch size {} must be positive", opts_.n_batch);
  // A decoder (llama, qwen2, gemma2, phi3) embeds with its final normalized hidden state:
  // the last token's by default, as llama.cpp's --pooling last.
  pooling_ = opts_.pooling.value_or(encoder_ ? encoder_->pooling() : Pooling::Last);
  tok_ = Tokenizer::from_gguf(model.gguf());
}

std::vector<int32_t> Embedder::tokenize(std::string_view text) const {
  return tok_->encode(text, /*add_special=*/true, /*parse_special=*/false);
}

std::vector<std::vector<float>> Embedder::embed_texts(const std::vector<std::string>& texts, bool normalize) {
  std::vector<std::vector<int32_t>> seqs;
  seqs.reserve(texts.size());
  for (const std::string& t : texts) seqs.push_back(tokenize(t));
  return embed(seqs, normalize);
}

std::vector<std::vector<float>> Embedder::embed(const std::vector<std::vector<int32_t>>& seqs, bool normalize) {
  const int64_t n_vocab = model_.hparams().n_vocab;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].empty()) fail("sequence {} to embed is empty", i);
    if (static_cast<int64_t>(seqs[i].size()) > max_tokens())
      fail("sequence {} has {} tokens, more than the model's context of {} tokens", i, seqs[i].size(), max_tokens());
    for (int32_t id : seqs[i])
      if (id < 0 || id >= n_vocab) fail("sequence {} has token id {} outside the vocabulary (0..{})", i, id, n_vocab - 1);
  }
  std::vector<std::vector<float>> out(seqs.size());
  // Whole sequences, in input order, until the next would overflow the budget.
  size_t first = 0;
  while (first < seqs.size()) {
    size_t last = first;
    int64_t tokens = 0;
    while (last < seqs.size() &&
           (last == first || tokens + static_cast<int64_t>(seqs[last].size()) <= opts_.n_batch))
      tokens += static_cast<int64_t>(seqs[last++].size());
    run_pass(seqs, first, last, normalize, out);
    first = last;
  }
  return out;
}

void Embedder::run_pass(const std::vector<std::vector<int32_t>>& seqs, size_t first, size_t last,
                        bool normalize, std::vector<std::vector<float>>& out) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t E = dim();
  batch_.clear();
  for (size_t s = first; s < last; ++s)
    for (size_t p = 0; p < seqs[s].size(); ++p)
      batch_.add(seqs[s][p], static_cast<int32_t>(p), static_cast<int32_t>(s - first), true);
  const int64_t T = batch_.size();
  hidden_.resize(static_cast<size_t>(T * E));
  if (encoder_) {
    encoder_->encode(ctx_, batch_, hidden_.data());
  } else {
    // A decoder pass: causal attention within each sequence (its own cache sequence), every
    // token's hidden state out (pooling picks from them as for an encoder).
    int64_t longest = 0;
    for (size_t s = first; s < last; ++s) longest = std::max<int64_t>(longest, static_cast<int64_t>(seqs[s].size()));
    auto cache = model_.make_cache(static_cast<int>(longest), static_cast<int>(last - first), static_cast<int>(T), DType::F32);
    ctx_.hidden_out = hidden_.data();
    try {
      model_.forward(ctx_, batch_, *cache, nullptr);
    } catch (...) {
      ctx_.hidden_out = nullptr;
      throw;
    }
    ctx_.hidden_out = nullptr;
  }

  // The sequences lie one after another in the batch.
  int64_t row0 = 0;
  for (size_t s = first; s < last; ++s) {
    const int64_t n = static_cast<int64_t>(seqs[s].size());
    const float* h = hidden_.data() + row0 * E;
    std::vector<float>& v = out[s];
    switch (pooling_) {
      case Pooling::None:
        v.assign(h, h + n * E);
        if (normalize)
          for (int64_t r = 0; r < n; ++r) normalize_l2(std::span<float>(v.data() + r * E, static_cast<size_t>(E)));
        break;
      case Pooling::Mean: {
        // llama.cpp multiplies by a matrix of 1/n; a sum in double then one division is at
        // least as exact.
        std::vector<double> sum(static_cast<size_t>(E), 0.0);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t c = 0; c < E; ++c) sum[c] += h[r * E + c];
        v.resize(static_cast<size_t>(E));
        for (int64_t c = 0; c < E; ++c) v[c] = static_cast<float>(sum[c] / static_cast<double>(n));
        break;
      }
      case Pooling::Cls: v.assign(h, h + E); break;
      case Pooling::Last: v.assign(h + (n - 1) * E, h + n * E); break;
    }
    if (normalize && pooling_ != Pooling::None) normalize_l2(v);
    row0 += n;
  }
  stats_.sequences += static_cast<int64_t>(last - first);
  stats_.tokens += T;
  stats_.passes += 1;
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace slm
