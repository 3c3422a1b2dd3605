// The q8_0 KV cache (--kv-type q8_0, llama.cpp's -ctk q8_0 -ctv q8_0): keys and values in
// blocks of 32 with one fp16 scale, half the F16 cache's bytes. Checked against the F32 cache
// on every fixture architecture (full and sliding-window caches); its layout and its cost in
// perplexity are checked with the other types in test_engine_kv_types.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "models/model.h"
#include "runtime/kv_cache.h"
#include "runtime/session.h"
#include "support/cache_logits.h"
#include "support/fixtures.h"
#include "support/logits_file.h"
#include "support/run_cli.h"
#include "support/tiny_gemma2.h"

namespace {

namespace fs = std::filesystem;

using slm::test::logits_with;

class KvQ8 : public testing::TestWithParam<const char*> {};

// Each architecture's fixture (gemma2 with its sliding window ring wrapping many times), a
// prompt in batches and then one token at a time: within 4e-2 relative L2 of the F32 cache at
// every position (8-bit keys and values move these random 64-wide models' logits by 1.5-3%,
// where the F16 cache's move them by <0.5%; a key read from the wrong place moves them by
// O(1)), the same argmax at >= 95% of positions, and 34/64 of the F16 cache's bytes.
TEST_P(KvQ8, AgreesWithTheF32Cache) {
  SLM_REQUIRE_FIXTURE(model_path, std::string("fixtures/logits/") + GetParam() + ".gguf");
  auto model = slm::Model::load(model_path.string());
  const int n_vocab = static_cast<int>(model->hparams().n_vocab), n = 160;  // whole F16 key blocks
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>((i * 7919 + 13) % n_vocab);
  size_t f16_bytes = 0;
  logits_with(*model, tokens, slm::DType::F16, 40, &f16_bytes);
  const std::vector<float> ref = logits_with(*model, tokens, slm::DType::F32, 40);
  // Both q8_0, and each mixed with f16 (-ctk / -ctv): their bytes against the F16 cache's.
  const std::pair<slm::KVTypes, double> pairs[] = {{slm::DType::Q8_0, 34.0 / 64.0},
                                                   {{slm::DType::Q8_0, slm::DType::F16}, 98.0 / 128.0},
                                                   {{slm::DType::F16, slm::DType::Q8_0}, 98.0 / 128.0}};
  for (const auto& [types, ratio] : pairs) {
    size_t q8_bytes = 0;
    for (int n_batch : {40, 1}) {
      const std::vector<float> q8 = logits_with(*model, tokens, types, n_batch, n_batch == 40 ? &q8_bytes : nullptr);
      double worst = 0;
      int agree = 0;
      for (int i = 0; i < n; ++i) {
        const size_t off = static_cast<size_t>(i) * n_vocab;
        const double e = slm::test::relative_l2(q8.data() + off, ref.data() + off, n_vocab);
        EXPECT_LE(e, 4e-2) << GetParam() << " " << slm::kv_types_name(types) << " position " << i << " batch " << n_batch;
        worst = std::max(worst, e);
        agree += slm::test::argmax(q8.data() + off, n_vocab) == slm::test::argmax(ref.data() + off, n_vocab);
      }
      EXPECT_GE(agree, n * 95 / 100) << GetParam() << " " << slm::kv_types_name(types) << " batch " << n_batch;
      std::printf("  %s, %s cache, batches of %d: worst relative L2 %.3g against F32, argmax %d/%d\n", GetParam(),
                  slm::kv_types_name(types).c_str(), n_batch, worst, agree, n);
    }
    EXPECT_NEAR(static_cast<double>(q8_bytes) / static_cast<double>(f16_bytes), ratio, 1e-9)
        << GetParam() << " " << slm::kv_types_name(types);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, KvQ8,
                         testing::Values("llama-L2-E64-F32", "qwen2-L2-E64-F32", "phi3-L3-E64-F32", "gemma2-L4-E64-F32"),
                         [](const testing::TestParamInfo<const char*>& i) {
                           std::string s = i.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// Models whose head dimensions are whole q8_0 blocks keep keys in blocks (KVCache::key_blocks,
// read by kern::AttendCacheFn as stored), q8_0 for both or mixed with f16 (-ctk / -ctv): a synthetic tiny Gemma 2 with 32-wide
// heads and an 8-position sliding window (its rings wrap ~20 times in 160 tokens) and
// slm-docs-19m (64-wide heads, the full cache), prompt batches and one token at a time, against
// the F32 cache: a mean relative L2 under 2e-2 and none over 6e-2 (the trained model's sharper
// logits move more at a few positions: 5.0e-2 at worst, 1.1e-2 for the synthetic one), the
// same argmax at >= 95% of positions.
TEST(KvQ8, BlockLayoutAgreesWithTheF32Cache) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-bert-bge.gguf");
  SLM_REQUIRE_FIXTURE(docs_dir, "models/hf/slm-docs-19m");
  const fs::path dir = fs::temp_directory_path() / ("slm-test-kvq8-blocks-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string docs = (dir / "docs.gguf").string();
  std::string error;
  const std::string gemma = slm::test::synth_tiny_gemma2(vocab, dir, &error);
  ASSERT_FALSE(gemma.empty()) << error;
  const auto r = slm::test::run_cli({"convert", docs_dir.string(), "-o", docs, "--outtype", "f32", "-q"}, 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string& path : {gemma, docs}) {
    auto model = slm::Model::load(path);
    const int n_vocab = static_cast<int>(model->hparams().n_vocab), n = 160;
    std::vector<int32_t> tokens(n);
    for (int i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>((i * 7919 + 13) % n_vocab);
    const std::vector<float> ref = logits_with(*model, tokens, slm::DType::F32, 5);
    for (const slm::KVTypes types : {slm::KVTypes(slm::DType::Q8_0), slm::KVTypes(slm::DType::Q8_0, slm::DType::F16),
                                     slm::KVTypes(slm::DType::F16, slm::DType::Q8_0)})
      for (int n_batch : {5, 1}) {
        const std::vector<float> q8 = logits_with(*model, tokens, types, n_batch);
        const std::string what = path + " " + slm::kv_types_name(types) + " batch " + std::to_string(n_batch);
        double worst = 0, sum = 0;
        int agree = 0;
        for (int i = 0; i < n; ++i) {
          const size_t off = static_cast<size_t>(i) * n_vocab;
          const double e = slm::test::relative_l2(q8.data() + off, ref.data() + off, n_vocab);
          EXPECT_LE(e, 6e-2) << what << " position " << i;
          worst = std::max(worst, e);
          sum += e;
          agree += slm::test::argmax(q8.data() + off, n_vocab) == slm::test::argmax(ref.data() + off, n_vocab);
        }
        EXPECT_LE(sum / n, 2e-2) << what;
        EXPECT_GE(agree, n * 95 / 100) << what;
        std::printf("  %s, %s cache in blocks, batches of %d: relative L2 against F32 mean %.3g worst %.3g, argmax %d/%d\n",
                    fs::path(path).filename().c_str(), slm::kv_types_name(types).c_str(), n_batch, sum / n, worst, agree,
                    n);
      }
  }
  fs::remove_all(dir);
}

// What a user runs: stories260K's greedy story, 80 tokens, is the same with --kv-type q8_0 as
// with f16 (a longer one flips a near tie further on: tests/test_api_public.cpp).
TEST(KvQ8, CliGreedyStoryIsUnchanged) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  // f16; q8_0 for both; llama.cpp's -ctk / -ctv spellings, each type alone and both.
  const std::vector<std::vector<std::string>> caches = {{"--kv-type", "f16"},
                                                        {"--kv-type", "q8_0"},
                                                        {"-ctk", "q8_0"},
                                                        {"--cache-type-v", "q8_0"},
                                                        {"-ctk", "q8_0", "-ctv", "q8_0"},
                                                        {"--kv-type", "q8_0", "-ctv", "f16"}};
  std::vector<std::string> out;
  for (const auto& cache : caches) {
    std::vector<std::string> args = {"run", "-m", model.string(), "-p", "Once upon a time", "-n", "80", "--temp", "0"};
    args.insert(args.end(), cache.begin(), cache.end());
    const auto r = slm::test::run_cli(args, 120);
    ASSERT_EQ(r.exit_code, 0) << cache[0] << " " << cache[1] << ": " << r.err;
    out.push_back(r.out);
    EXPECT_EQ(out.front(), out.back()) << cache[0] << " " << cache[1];
  }
  EXPECT_GT(out[1].size(), 200u);
  for (const char* option : {"--kv-type", "-ctk", "-ctv"}) {
    const auto bad = slm::test::run_cli({"run", "-m", model.string(), "-p", "x", option, "q4_K"}, 60);
    EXPECT_NE(bad.exit_code, 0) << option;
    EXPECT_NE(bad.err.find("q8_0"), std::string::npos) << option << ": " << bad.err;
  }
  // The benchmark says which types it measured.
  const auto bench = slm::test::run_cli({"bench", "-m", model.string(), "-p", "16", "-n", "4", "-r", "1", "-ctk", "q8_0",
                                         "--json"}, 120);
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_NE(bench.out.find("\"type_k\": \"q8_0\", \"type_v\": \"f16\""), std::string::npos) << bench.out;
}

// Where the cache puts each position's q8_0 key and value (rings included) is checked with every
// other type in test_engine_kv_types.cpp (KvTypes.BlocksHoldEachRowWhereTheKernelReadsIt).

// A width that is not whole blocks: said, with what to use instead.
TEST(KvQ8, RefusesRowsThatAreNotWholeBlocks) {
  slm::KVShape shape;
  shape.n_layer = 2;
  shape.k_dim = 48;
  shape.v_dim = 48;
  shape.n_head_kv = 3;
  try {
    slm::make_full_kv_cache(shape, 16, 1, slm::DType::Q8_0);
    FAIL() << "made a q8_0 cache of 48-wide rows";
  } catch (const slm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("whole blocks of 32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--kv-type f16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(slm::make_full_kv_cache(shape, 16, 1, slm::DType::Q4_0), slm::Error);
}

// What the q8_0 cache costs a real model in perplexity (at most 0.5%) is checked with the other
// types in test_engine_kv_types.cpp (KvTypes.PerplexityOfARealModelPerType).

}  // namespace
