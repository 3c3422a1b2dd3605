// llama.cpp's K-shift (KVCache::shift, what --context-shift does to the cache): positions after a
// dropped run move down, their keys rotated to their new positions, their values as they are.
// The cache's part is checked in every storage type and both layouts (keys in blocks, rows),
// against RoPE applied at the new position directly; the model's part (Model::key_rotation: the
// architecture's RoPE variant, frequency factors and base) on one-layer models of each family,
// where a layer's cached keys and values depend only on their own token and position, so that
// a shifted cache must give the logits of a fresh pass over what stayed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/gguf.h"
#include "models/model.h"
#include "ops/compute.h"
#include "ops/ops.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"
#include "runtime/generate.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "sampling/sampler.h"
#include "support/fixtures.h"
#include "support/rel_l2.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using slm::DType;

constexpr int kCtx = 96;

slm::RopeParams rope_params(slm::RopeMode mode, int n_rot) {
  slm::RopeParams p;
  p.mode = mode;
  p.n_rot = n_rot;
  p.freq_base = 10000.0f;
  return p;
}

// How far a key stored in `type` and rotated may be from the key computed at its new position:
// the rounding of the type, twice (it was encoded, decoded, rotated and encoded again).
double key_budget(DType type) {
  switch (type) {
    case DType::F32: return 1e-5;  // angles of ~90 radians in float
    case DType::F16: return 2e-3;
    case DType::BF16: return 1.5e-2;
    case DType::Q8_0: return 2e-2;
    default: return 0.2;  // the 4- and 5-bit types
  }
}

struct Stored {
  std::vector<std::vector<float>> k_raw, v;  // per position: the key before RoPE, the value
};

// Fills positions 0..n-1 of every layer of `seq` with random keys (RoPE at their position) and
// values; returns what was stored.
Stored fill(slm::RingKVCache& cache, const slm::KVShape& shape, int seq, int n, const slm::RopeParams& rope,
            uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Stored s;
  const int64_t hd = shape.k_dim / shape.n_head_kv;
  for (int p = 0; p < n; ++p) {
    std::vector<float> k(static_cast<size_t>(shape.k_dim)), v(static_cast<size_t>(shape.v_dim));
    for (float& x : k) x = normal(rng);
    for (float& x : v) x = normal(rng);
    s.k_raw.push_back(k);
    s.v.push_back(v);
    slm::rope(k.data(), shape.n_head_kv, hd, p, rope);
    for (int l = 0; l < shape.n_layer; ++l) cache.store(l, seq, p, k.data(), v.data());
  }
  return s;
}

std::vector<float> key_at(const slm::RingKVCache& c, const slm::KVShape& shape, int layer, int seq, int pos) {
  std::vector<float> k(static_cast<size_t>(shape.k_dim));
  c.read_key(layer, seq, pos, k.data());
  return k;
}
std::vector<float> value_at(const slm::RingKVCache& c, const slm::KVShape& shape, int layer, int seq, int pos) {
  std::vector<float> v(static_cast<size_t>(shape.v_dim));
  c.read_value(layer, seq, pos, v.data());
  return v;
}

// Shifts sequence 1 of a two-sequence cache (from 5, by 37) and checks every position of both.
void expect_shift_moves_and_rotates(slm::KVTypes types, const slm::KVShape& shape, slm::RopeMode mode,
                                    const std::string& what) {
  const int64_t hd = shape.k_dim / shape.n_head_kv;
  const slm::RopeParams rope = rope_params(mode, static_cast<int>(hd));
  slm::RingKVCache cache(shape, std::vector<int32_t>(static_cast<size_t>(shape.n_layer), 0), kCtx, 2, 1, types);
  constexpr int n = 90, from = 5, delta = 37;
  fill(cache, shape, 0, 60, rope, 7);
  const Stored s = fill(cache, shape, 1, n, rope, 11);
  // Before: what each position reads back as (the other sequence, the kept prefix, the values).
  std::vector<std::vector<float>> keys0, values0, keys1, values1;
  for (int p = 0; p < 60; ++p) keys0.push_back(key_at(cache, shape, 1, 0, p)), values0.push_back(value_at(cache, shape, 1, 0, p));
  for (int p = 0; p < n; ++p) keys1.push_back(key_at(cache, shape, 1, 1, p)), values1.push_back(value_at(cache, shape, 1, 1, p));

  int calls = 0;
  const slm::KVCache::KeyRotation rotate = [&](int, float* keys, int64_t rows, int32_t d) {
    ++calls;
    EXPECT_EQ(d, delta);
    slm::rope(keys, rows * shape.n_head_kv, hd, -d, rope);
  };
  ASSERT_TRUE(cache.shift(1, from, delta, rotate)) << what;
  EXPECT_EQ(calls, shape.n_layer) << what;  // one chunk per layer
  EXPECT_EQ(cache.seq_length(1), n - delta) << what;
  EXPECT_EQ(cache.seq_length(0), 60) << what;

  double worst = 0;
  for (int l = 0; l < shape.n_layer; ++l) {
    for (int p = 0; p < 60; ++p) {
      EXPECT_EQ(key_at(cache, shape, l, 0, p), keys0[static_cast<size_t>(p)]) << what << ": seq 0 pos " << p;
      EXPECT_EQ(value_at(cache, shape, l, 0, p), values0[static_cast<size_t>(p)]) << what << ": seq 0 pos " << p;
    }
    for (int p = 0; p < from; ++p) {
      EXPECT_EQ(key_at(cache, shape, l, 1, p), keys1[static_cast<size_t>(p)]) << what << ": kept pos " << p;
      EXPECT_EQ(value_at(cache, shape, l, 1, p), values1[static_cast<size_t>(p)]) << what << ": kept pos " << p;
    }
    for (int p = from; p < n - delta; ++p) {
      std::vector<float> want = s.k_raw[static_cast<size_t>(p + delta)];
      slm::rope(want.data(), shape.n_head_kv, hd, p, rope);
      const double err = slm::test::rel_l2(want, key_at(cache, shape, l, 1, p));
      worst = std::max(worst, err);
      EXPECT_LT(err, key_budget(types.k)) << what << ": layer " << l << " key at new position " << p;
      EXPECT_EQ(value_at(cache, shape, l, 1, p), values1[static_cast<size_t>(p + delta)])
          << what << ": layer " << l << " value at new position " << p;
    }
  }
  // The keys were rotated: had they only moved, they would be far from the new position's.
  std::vector<float> moved = s.k_raw[from + delta];
  slm::rope(moved.data(), shape.n_head_kv, hd, from + delta, rope);
  std::vector<float> want = s.k_raw[from + delta];
  slm::rope(want.data(), shape.n_head_kv, hd, from, rope);
  EXPECT_GT(slm::test::rel_l2(want, moved), 0.5) << what;
  std::printf("%-34s worst key error %.2e (budget %.0e)\n", what.c_str(), worst, key_budget(types.k));
}

TEST(KVCacheShift, EveryTypeInBlocksMovesValuesAndRotatesKeys) {
  const slm::KVShape shape{2, 2 * 64, 2 * 64, 2};  // heads of 64: whole blocks of every type
  for (const slm::KvCacheType& t : slm::kv_cache_types()) {
    expect_shift_moves_and_rotates(t.type, shape, slm::RopeMode::Normal, slm::dtype_name(t.type) + " (normal rope)");
    expect_shift_moves_and_rotates(t.type, shape, slm::RopeMode::Neox, slm::dtype_name(t.type) + " (neox rope)");
  }
  // Keys and values of their own types.
  expect_shift_moves_and_rotates({DType::Q8_0, DType::F16}, shape, slm::RopeMode::Neox, "q8_0 keys, f16 values");
  expect_shift_moves_and_rotates({DType::F16, DType::Q4_0}, shape, slm::RopeMode::Normal, "f16 keys, q4_0 values");
}

// A wrapped ring whose new window lies past the dropped run moves: each position of that window
// holds the key of the position delta later, rotated (within the type's budget of RoPE applied
// at the new position directly), and its value bit for bit; the full-attention layer moves as
// before; the other sequence is untouched.
TEST(KVCacheShift, AWrappedRingMovesItsWindow) {
  for (const auto& [types, shape, what] :
       {std::tuple{slm::KVTypes{DType::F16, DType::F16}, slm::KVShape{2, 64, 64, 2}, "f16 blocks"},
        std::tuple{slm::KVTypes{DType::Q8_0, DType::Q4_0}, slm::KVShape{2, 64, 64, 2}, "q8_0 keys, q4_0 values"},
        std::tuple{slm::KVTypes{DType::F32, DType::F32}, slm::KVShape{2, 64, 64, 2}, "f32 blocks"},
        std::tuple{slm::KVTypes{DType::Q8_0, DType::Q8_0}, slm::KVShape{2, 32, 32, 2}, "rows of q8_0"}}) {
    const int64_t hd = shape.k_dim / shape.n_head_kv;
    const slm::RopeParams rope = rope_params(slm::RopeMode::Neox, static_cast<int>(hd));
    // Layer 1 slides with a window of 8; batches of 4: a ring of 11 positions.
    slm::RingKVCache cache(shape, {0, 8}, kCtx, 2, 4, types);
    fill(cache, shape, 0, 30, rope, 5);
    const Stored s = fill(cache, shape, 1, 70, rope, 6);
    std::vector<std::vector<float>> other_keys;
    for (int p = 0; p < 30; ++p) other_keys.push_back(key_at(cache, shape, 1, 0, p));
    const int from = 3, delta = 33, n = 70;  // 37 stay; the ring's new window is 26..36
    auto first_of = [&](int layer) { return layer == 0 ? from : n - delta - 11; };
    std::vector<std::vector<std::vector<float>>> values_before(2);
    for (int layer = 0; layer < 2; ++layer)
      for (int p = first_of(layer); p < n - delta; ++p) values_before[layer].push_back(value_at(cache, shape, layer, 1, p + delta));
    ASSERT_TRUE(cache.shift(1, from, delta, [&](int, float* k, int64_t rows, int32_t d) {
      slm::rope(k, rows * shape.n_head_kv, hd, -d, rope);
    })) << what;
    ASSERT_EQ(cache.seq_length(1), n - delta);
    for (int layer = 0; layer < 2; ++layer) {
      const int first = first_of(layer);
      for (int p = first; p < n - delta; ++p) {
        std::vector<float> want = s.k_raw[static_cast<size_t>(p + delta)];
        slm::rope(want.data(), shape.n_head_kv, hd, p, rope);
        EXPECT_LT(slm::test::rel_l2(want, key_at(cache, shape, layer, 1, p)), key_budget(types.k))
            << what << " layer " << layer << " key at new position " << p;
        // Values are the same bytes: what the old position read back as.
        EXPECT_EQ(value_at(cache, shape, layer, 1, p), values_before[layer][static_cast<size_t>(p - first)])
            << what << " value, layer " << layer << " position " << p;
      }
    }
    for (int p = 0; p < 30; ++p) EXPECT_EQ(key_at(cache, shape, 1, 0, p), other_keys[static_cast<size_t>(p)]) << what;
  }
}

TEST(KVCacheShift, RowsMoveAndRotateToo) {
  // Heads of 16 cannot hold 32-value blocks: such caches keep whole rows.
  const slm::KVShape shape{2, 2 * 16, 2 * 16, 2};
  expect_shift_moves_and_rotates({DType::Q8_0, DType::Q8_0}, shape, slm::RopeMode::Normal, "rows of q8_0");
  expect_shift_moves_and_rotates({DType::F16, DType::Q4_0}, shape, slm::RopeMode::Neox, "rows: f16 keys, q4_0 values");
}

// A ring that has wrapped keeps only its last positions: a shift whose new window would reach
// back into the kept prefix (positions the ring evicted) is refused and changes nothing.
TEST(KVCacheShift, AWrappedRingRefusesWhatItNoLongerHolds) {
  const slm::KVShape shape{2, 64, 64, 2};
  const slm::RopeParams rope = rope_params(slm::RopeMode::Neox, 32);
  auto no_call = [](int, float*, int64_t, int32_t) { ADD_FAILURE() << "a refused shift rotated keys"; };
  {
    // Layer 1 has a window of 8 (one-token batches: a ring of 8), wrapped at 40. Keeping 20 and
    // dropping 10 leaves 30, whose window (22..29) would need kept positions 22..19: gone.
    slm::RingKVCache cache(shape, {0, 8}, kCtx, 1, 1, DType::F16);
    fill(cache, shape, 0, 40, rope, 3);
    std::vector<std::vector<float>> before;
    for (int p = 0; p < 40; ++p) before.push_back(key_at(cache, shape, 0, 0, p));
    EXPECT_FALSE(cache.shift(0, 24, 10, no_call));
    EXPECT_EQ(cache.seq_length(0), 40);
    for (int p = 0; p < 40; ++p) EXPECT_EQ(key_at(cache, shape, 0, 0, p), before[static_cast<size_t>(p)]) << p;
  }
  {
    // A ring that has not wrapped yet holds every position in its own slot: it moves.
    slm::RingKVCache cache(shape, {0, 8}, kCtx, 1, 1, DType::F16);
    fill(cache, shape, 0, 14, rope, 3);
    EXPECT_TRUE(cache.shift(0, 2, 5, [&](int, float* k, int64_t rows, int32_t d) { slm::rope(k, rows * 2, 32, -d, rope); }));
    EXPECT_EQ(cache.seq_length(0), 9);
  }
  slm::RingKVCache cache(shape, {0, 0}, kCtx, 1, 1, DType::F16);
  fill(cache, shape, 0, 10, rope, 3);
  EXPECT_THROW(cache.shift(0, 4, 7, no_call), slm::Error);  // past the 10 held
  EXPECT_THROW(cache.shift(0, 4, 0, no_call), slm::Error);
  EXPECT_THROW(cache.shift(1, 0, 1, no_call), slm::Error);  // no such sequence
}

// ---- The model's part: one-layer models of each family ----------------------------------------

struct Family {
  const char* shape;
  const char* arch;
};

// 80 tokens; 31 of them dropped after the first 4; the token evaluated after the shift.
struct ShiftCase {
  std::vector<int32_t> tokens, kept;
  int n_keep = 4, n_discard = 31;
  int32_t next = 1234;
  ShiftCase() {
    for (int i = 0; i < 80; ++i) tokens.push_back(100 + (i * 37) % 1900);
    kept.assign(tokens.begin(), tokens.begin() + n_keep);
    kept.insert(kept.end(), tokens.begin() + n_keep + n_discard, tokens.end());
  }
};

// `slm synth --like SHAPE` (f32), opened with one layer: every cached key and value then
// depends only on its token and position.
std::unique_ptr<slm::Model> one_layer_model(const Family& f, const fs::path& vocab, const fs::path& dir) {
  const std::string path = (dir / (std::string(f.shape) + ".gguf")).string();
  if (!fs::exists(path)) {
    const auto r = slm::test::run_cli({"synth", "--like", f.shape, "--vocab", vocab.string(), "--type", "f32", "-o", path, "-q"}, 120);
    if (r.exit_code != 0) throw std::runtime_error("synth " + std::string(f.shape) + ": " + r.err);
  }
  return slm::Model::load(slm::GGUFFile::open(path, {std::string(f.arch) + ".block_count=int:1"}));
}

// The logits of `next` after `tokens` with positions 0.. on a fresh cache of `types`.
std::vector<float> fresh_logits(const slm::Model& m, std::vector<int32_t> tokens, int32_t next, slm::KVTypes types) {
  auto cache = m.make_cache(kCtx, 1, kCtx, types);
  slm::ComputeContext ctx(2);
  slm::Batch b;
  tokens.push_back(next);
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, i + 1 == tokens.size());
  std::vector<float> logits(static_cast<size_t>(m.hparams().n_vocab));
  m.forward(ctx, b, *cache, logits.data());
  return logits;
}

// The logits of `next` after `tokens`, n_discard of them dropped from n_keep on by a shift with
// `rotate` (null: the model's own).
std::vector<float> shifted_logits(const slm::Model& m, const std::vector<int32_t>& tokens, int n_keep, int n_discard,
                                  int32_t next, slm::KVTypes types, slm::KVCache::KeyRotation rotate = nullptr) {
  auto cache = m.make_cache(kCtx, 1, kCtx, types);
  slm::ComputeContext ctx(2);
  slm::Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int32_t>(i), 0, false);
  std::vector<float> logits(static_cast<size_t>(m.hparams().n_vocab));
  m.forward(ctx, b, *cache, logits.data());
  if (!rotate) rotate = m.key_rotation(kCtx);
  if (!cache->shift(0, n_keep, n_discard, rotate)) throw std::runtime_error("the cache refused the shift");
  b.clear();
  b.add(next, static_cast<int32_t>(tokens.size()) - n_discard, 0, true);
  m.forward(ctx, b, *cache, logits.data());
  return logits;
}

TEST(KVCacheShift, OneLayerModelsGiveAFreshPassLogits) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-bert-bge.gguf");
  static const slm::test::ProgramTempDir dir("kv-shift");
  // tiny-llama has Llama 3's frequency factors, qwen2 and gemma2 NEOX RoPE, phi3 NEOX with a
  // sliding window (a ring as long as the context here), gemma2 a ring of 8 that does not wrap
  // in a context this short with batches this long; qwen3 and gemma3 normalize keys before RoPE
  // (gemma3's one layer slides, with RoPE base 10,000 where the file says 1e6).
  const Family families[] = {{"tiny-llama", "llama"}, {"tiny-qwen2", "qwen2"}, {"tiny-qwen3", "qwen3"},
                             {"tiny-gemma2", "gemma2"}, {"tiny-gemma3", "gemma3"}, {"tiny-phi3", "phi3"}};
  for (const Family& f : families) {
    std::unique_ptr<slm::Model> m;
    ASSERT_NO_THROW(m = one_layer_model(f, vocab, dir.path())) << f.shape;
    ASSERT_EQ(m->hparams().n_layer, 1);
    const ShiftCase c;
    const auto& [tokens, kept, n_keep, n_discard, next] = c;
    for (const DType type : {DType::F32, DType::F16, DType::Q8_0}) {
      const std::string what = std::string(f.shape) + ", " + slm::dtype_name(type) + " cache";
      const std::vector<float> want = fresh_logits(*m, kept, next, type);
      const double err = slm::test::rel_l2(want, shifted_logits(*m, tokens, n_keep, n_discard, next, type));
      // The keys only moved, not rotated: what a shift that forgot RoPE would give.
      const double unrotated = slm::test::rel_l2(
          want, shifted_logits(*m, tokens, n_keep, n_discard, next, type, [](int, float*, int64_t, int32_t) {}));
      std::printf("%-28s shifted %.2e, moved without rotating %.2e\n", what.c_str(), err, unrotated);
      // Keys normalized per head (qwen3, gemma3) give scores of several units where synth's
      // 0.02-wide weights give nearly uniform attention, so q8_0's second rounding of a rotated
      // key shows 5x more in the logits (measured 2.9e-3 and 9.6e-3; unrotated: 0.24 and 1.06).
      const bool sharp = std::string(f.arch) == "qwen3" || std::string(f.arch) == "gemma3";
      EXPECT_LT(err, type == DType::F32 ? 1e-5 : type == DType::Q8_0 && sharp ? 2e-2 : 2e-3) << what;
      EXPECT_GT(unrotated, 20 * err) << what << ": the check must see a missing rotation";
    }
  }
}

// Sliding-window layers past their ring (Gemma 2 and 3 in a long chat, batches of 8 here): the
// ring's window moves with its keys rotated, and the next token's logits are a fresh pass's
// over what stays (one layer: every cached row depends only on its token and position).
TEST(KVCacheShift, WrappedSlidingRingsGiveAFreshPassLogits) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-bert-bge.gguf");
  static const slm::test::ProgramTempDir dir("kv-shift-wrapped");
  constexpr int kBatch = 8;
  for (const Family& f : {Family{"tiny-gemma2", "gemma2"}, Family{"tiny-gemma3", "gemma3"}}) {
    std::unique_ptr<slm::Model> m;
    ASSERT_NO_THROW(m = one_layer_model(f, vocab, dir.path())) << f.shape;
    const ShiftCase c;
    const auto& [tokens, kept, n_keep, n_discard, next] = c;
    slm::ComputeContext ctx(2);
    std::vector<float> logits(static_cast<size_t>(m->hparams().n_vocab));
    // Evaluates `toks` in batches of kBatch from position 0 on.
    auto eval = [&](slm::KVCache& cache, const std::vector<int32_t>& toks) {
      for (size_t i = 0; i < toks.size(); i += kBatch) {
        slm::Batch b;
        for (size_t j = i; j < std::min(toks.size(), i + kBatch); ++j) b.add(toks[j], static_cast<int32_t>(j), 0, false);
        m->forward(ctx, b, cache, logits.data());
      }
    };
    auto next_logits = [&](slm::KVCache& cache, int32_t pos) {
      slm::Batch b;
      b.add(next, pos, 0, true);
      m->forward(ctx, b, cache, logits.data());
      return logits;
    };
    for (const DType type : {DType::F32, DType::F16}) {
      const std::string what = std::string(f.shape) + ", " + slm::dtype_name(type) + " cache";
      auto fresh = m->make_cache(kCtx, 1, kBatch, type);
      eval(*fresh, kept);
      const std::vector<float> want = next_logits(*fresh, static_cast<int32_t>(kept.size()));
      auto shifted = m->make_cache(kCtx, 1, kBatch, type);
      eval(*shifted, tokens);
      ASSERT_TRUE(shifted->shift(0, n_keep, n_discard, m->key_rotation(kCtx))) << what << ": the wrapped ring refused";
      const double err = slm::test::rel_l2(want, next_logits(*shifted, static_cast<int32_t>(kept.size())));
      std::printf("%-28s wrapped ring shifted %.2e\n", what.c_str(), err);
      EXPECT_LT(err, type == DType::F32 ? 1e-5 : 2e-3) << what;
    }
  }
}

// Session::shift drops the tokens and keeps the cache in step; a wrapped ring refuses.
TEST(KVCacheShift, SessionDropsTheTokens) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto model = slm::Model::load(path.string());
  slm::SessionOptions so;
  so.n_ctx = 64;
  so.n_threads = 2;
  slm::Session s(*model, so);
  std::vector<int32_t> tokens{1};
  for (int i = 1; i < 50; ++i) tokens.push_back(10 + i);
  s.eval(tokens);
  ASSERT_TRUE(s.shift(3, 20));
  std::vector<int32_t> want(tokens.begin(), tokens.begin() + 3);
  want.insert(want.end(), tokens.begin() + 23, tokens.end());
  EXPECT_EQ(s.tokens(), want);
  EXPECT_NO_THROW(s.eval(std::vector<int32_t>{42}));
  EXPECT_THROW(s.shift(20, 40), slm::Error);
  // Rows after the shift's start saw the dropped tokens: not what a fresh pass gives, so they
  // are not to be reused for another prompt; truncating back to exact rows makes all exact.
  EXPECT_EQ(s.n_exact(), 3);
  s.truncate(10);
  EXPECT_EQ(s.n_exact(), 3);
  s.truncate(3);
  EXPECT_EQ(s.n_exact(), 3);
  s.eval(std::vector<int32_t>{7, 8, 9});
  EXPECT_EQ(s.n_exact(), 6);
}

// A prompt that is exactly a shifted sequence is evaluated again past the rows that are still
// exact: generate() gives a fresh session's logits (the prefix it may reuse stops at n_keep).
TEST(KVCacheShift, ShiftedRowsAreNotReusedForAnotherPrompt) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto model = slm::Model::load(path.string());
  auto tok = slm::Tokenizer::from_gguf(model->gguf());
  slm::SessionOptions so;
  so.n_ctx = 48;
  so.n_threads = 2;
  slm::SamplerParams greedy;
  greedy.temperature = 0.0f;
  for (int32_t id : tok->eog_ids()) greedy.logit_bias.emplace_back(id, -std::numeric_limits<float>::infinity());
  const auto prompt = tok->encode("Once upon a time", true, false);
  slm::Session s(*model, so);
  slm::Sampler sampler(greedy, static_cast<int32_t>(model->hparams().n_vocab));
  const auto r = slm::generate(s, *tok, sampler, prompt, 60, [](const std::string&) { return true; }, {true, 3});
  ASSERT_GE(r.context_shifts, 1);
  EXPECT_EQ(s.n_exact(), 3);
  std::vector<int32_t> again = s.tokens();
  again.push_back(r.tokens.back());
  auto follow = [&](slm::Session& session) {
    slm::Sampler sm(greedy, static_cast<int32_t>(model->hparams().n_vocab));
    return slm::generate(session, *tok, sm, again, 5, [](const std::string&) { return true; }).tokens;
  };
  slm::Session fresh(*model, so);
  EXPECT_EQ(follow(s), follow(fresh));
  EXPECT_EQ(s.n_exact(), s.n_past());

  // The server's slots: a finished request's shifted rows are cut off, so the next request with
  // that text reuses only its first n_keep tokens.
  slm::SchedulerOptions opts;
  opts.n_parallel = 1;
  opts.n_ctx = 48;
  opts.n_threads = 2;
  opts.context_shift = true;
  slm::BatchScheduler sched(*model, *tok, opts);
  auto run = [&](const std::vector<int32_t>& p, int n) {
    slm::GenerationRequest req;
    req.prompt = p;
    req.max_tokens = n;
    req.sampling = greedy;
    req.n_keep = 2;  // with BOS: 3
    auto h = std::make_shared<slm::RequestHandle>();
    EXPECT_EQ(sched.submit(std::move(req), h), slm::Scheduler::Submit::Accepted);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      slm::RequestEvents ev = h->wait(std::chrono::milliseconds(100));
      if (ev.finished) return ev;
    }
    ADD_FAILURE() << "the request did not finish";
    return slm::RequestEvents{};
  };
  const auto first = run(prompt, 60);
  EXPECT_EQ(first.completion_tokens, 60);
  EXPECT_GE(sched.stats().context_shifts, 1u);
  const auto second = run(again, 2);
  EXPECT_EQ(second.cached_tokens, 3) << "reused past the rows a shift left exact";
  const auto third = run(again, 2);
  EXPECT_EQ(third.cached_tokens, static_cast<int>(again.size()) - 1) << "exact rows are reused as before";
}

}  // namespace
