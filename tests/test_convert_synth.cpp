// slm synth: random-weight models with real models' shapes. The real shapes are checked through
// their planned tensor lists (parameter counts as published); the tiny-* shapes are written,
// loaded and run.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "convert/synth.h"
#include "core/fp16.h"
#include "core/gguf.h"
#include "models/model.h"
#include "runtime/session.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using slm::DType;
using slm::convert::find_synth_shape;
using slm::convert::synth_plan;

// Removed when the program ends.
const slm::test::ProgramTempDir g_temp("synth");

fs::path temp_path(const std::string& name) { return g_temp.path() / name; }

std::vector<char> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

int64_t param_count(const std::string& like, int64_t n_vocab) {
  const slm::convert::SynthShape* s = find_synth_shape(like);
  EXPECT_NE(s, nullptr) << like;
  if (!s) return 0;
  int64_t n = 0;
  for (const auto& t : synth_plan(*s, n_vocab, DType::F16)) n += t.nelements();
  return n;
}

TEST(SynthPlan, Llama32_1BHasItsRealTensorsAndParameterCount) {
  const auto* s = find_synth_shape("llama-3.2-1b");
  ASSERT_NE(s, nullptr);
  const auto plan = synth_plan(*s, 128256, DType::F16);
  int64_t params = 0;
  uint64_t bytes = 0;
  for (const auto& t : plan) {
    params += t.nelements();
    bytes += slm::row_size(t.type, t.ne[0]) * static_cast<uint64_t>(t.nelements() / t.ne[0]);
  }
  EXPECT_EQ(plan.size(), 2u + 16u * 9u + 1u);  // embeddings, rope_freqs, 16 layers, output_norm
  EXPECT_EQ(params, 1235814432);               // 1.236 B, tied embeddings counted once
  EXPECT_NEAR(params / 1e9, 1.236, 0.0005);
  EXPECT_NEAR(bytes / 1073741824.0, 2.30, 0.01);  // llama.cpp's F16 file: 2.30 GiB
  EXPECT_EQ(plan[0].name, "token_embd.weight");
  EXPECT_EQ(plan[0].ne, (std::vector<int64_t>{2048, 128256}));
  EXPECT_EQ(plan[1].name, "rope_freqs.weight");
  EXPECT_EQ(plan[1].ne, std::vector<int64_t>{32});
  for (const auto& t : plan) {
    if (t.name == "blk.0.attn_k.weight") {
      EXPECT_EQ(t.ne, (std::vector<int64_t>{2048, 512}));
    }
    if (t.name == "blk.15.ffn_down.weight") {
      EXPECT_EQ(t.ne, (std::vector<int64_t>{8192, 2048}));
    }
    if (t.ne.size() == 1) {
      EXPECT_EQ(t.type, DType::F32) << t.name;
    }
    EXPECT_NE(t.name, "output.weight");  // tied
  }
}

TEST(SynthPlan, OtherShapesMatchThePublishedParameterCounts) {
  // Hugging Face's counts (tied embeddings once; Qwen's q/k/v biases included).
  EXPECT_EQ(param_count("qwen2.5-0.5b", 151936), 494032768);
  EXPECT_EQ(param_count("qwen2.5-1.5b", 151936), 1543714304);
  EXPECT_EQ(param_count("gemma-2-2b", 256000), 2614341888);
  EXPECT_EQ(param_count("phi-3-mini", 32064), 3821079552);
  EXPECT_EQ(param_count("qwen3-0.6b", 151936), 596049920);
  EXPECT_EQ(param_count("gemma-3-1b", 262144), 999885952);
  EXPECT_NEAR(param_count("llama-3.2-3b", 128256) / 1e9, 3.213, 0.001);
}

TEST(SynthPlan, Llama3RopeFactorsMatchTheConverters) {
  SLM_REQUIRE_FIXTURE(path, "fixtures/kquants/kq-llama-L2-E256-F16.gguf");
  // That fixture was converted with Llama 3's rope scaling at base 500000, head size 64.
  auto f = slm::GGUFFile::open(path.string());
  const slm::TensorInfo* t = f->find_tensor("rope_freqs.weight");
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->type, DType::F32);
  const std::vector<float> ours = slm::convert::llama3_rope_factors(64, 500000.0f, 32.0f, 1.0f, 4.0f, 8192);
  ASSERT_EQ(static_cast<int64_t>(ours.size()), t->nelements);
  for (size_t i = 0; i < ours.size(); ++i) {
    float theirs;
    std::memcpy(&theirs, t->data + 4 * i, 4);
    EXPECT_NEAR(ours[i], theirs, 1e-6 * std::abs(theirs)) << i;
  }
}

class TinyShapes : public testing::TestWithParam<const char*> {};

TEST_P(TinyShapes, WritesAModelThatLoadsAndRuns) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-llama-spm.gguf");
  const std::string like = GetParam();
  const fs::path out = temp_path(like + ".gguf");
  auto r = slm::test::run_cli({"synth", "--like", like, "--vocab", vocab.string(), "-o", out.string(), "--seed", "7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto model = slm::Model::load(out.string());
  const auto* shape = find_synth_shape(like);
  ASSERT_NE(shape, nullptr);
  EXPECT_EQ(model->hparams().arch, shape->arch);
  EXPECT_EQ(model->hparams().n_vocab, 32000);
  EXPECT_EQ(model->hparams().n_layer, shape->n_layer);
  EXPECT_EQ(model->hparams().head_dim_k, shape->head_dim);
  const slm::GGUFFile& f = model->gguf();
  EXPECT_EQ(f.get_int("general.file_type"), 1);  // LLAMA_FTYPE_MOSTLY_F16

  // Every tokenizer key of the vocab file, copied as is.
  auto v = slm::GGUFFile::open(vocab.string());
  int copied = 0;
  for (const auto& [k, val] : v->metadata()) {
    if (k.rfind("tokenizer.", 0) != 0) continue;
    const slm::GGUFValue* got = f.find(k);
    ASSERT_NE(got, nullptr) << k;
    EXPECT_EQ(got->type, val.type) << k;
    EXPECT_EQ(got->scalar, val.scalar) << k;
    EXPECT_EQ(got->raw, val.raw) << k;
    EXPECT_EQ(got->str_ends, val.str_ends) << k;
    EXPECT_EQ(got->str_blob, val.str_blob) << k;
    ++copied;
  }
  EXPECT_GE(copied, 5);

  // Weights look like N(0, 0.02); norms are 1.
  const slm::TensorInfo* wq = f.find_tensor(like == "tiny-phi3" ? "blk.1.attn_qkv.weight" : "blk.1.attn_q.weight");
  ASSERT_NE(wq, nullptr);
  double sum = 0, sum2 = 0;
  for (int64_t i = 0; i < wq->nelements; ++i) {
    uint16_t h;
    std::memcpy(&h, wq->data + 2 * i, 2);
    const double x = slm::fp16_to_fp32(h);
    sum += x;
    sum2 += x * x;
  }
  const double mean = sum / wq->nelements, sd = std::sqrt(sum2 / wq->nelements - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(sd, 0.02, 0.001);
  const slm::TensorInfo* norm = f.find_tensor("blk.0.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  float one;
  std::memcpy(&one, norm->data, 4);
  EXPECT_EQ(one, 1.0f);

  // A forward pass gives finite logits that differ between positions.
  slm::SessionOptions so;
  so.n_ctx = 16;
  so.n_threads = 2;
  slm::Session s(*model, so);
  const std::vector<int32_t> toks = {1, 450, 7483, 310, 3444};
  const auto& l = s.eval(toks, true);
  const int64_t n_vocab = model->hparams().n_vocab;
  for (int64_t i = 0; i < 5 * n_vocab; ++i) ASSERT_TRUE(std::isfinite(l[i])) << i;
  EXPECT_NE(std::vector<float>(l.begin(), l.begin() + n_vocab),
            std::vector<float>(l.begin() + 4 * n_vocab, l.begin() + 5 * n_vocab));
  fs::remove(out);
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, TinyShapes,
                         testing::Values("tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2",
                                         "tiny-gemma3", "tiny-phi3"));

TEST(SynthCli, SameSeedSameFileWhateverTheThreadsAndClearErrors) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-llama-spm.gguf");
  const fs::path a = temp_path("a.gguf"), b = temp_path("b.gguf"), c = temp_path("c.gguf");
  const std::string vs = vocab.string();
  ASSERT_EQ(slm::test::run_cli({"synth", "--like", "tiny-llama", "--vocab", vs, "-o", a.string(), "-t", "1"}).exit_code, 0);
  ASSERT_EQ(slm::test::run_cli({"synth", "--like", "tiny-llama", "--vocab", vs, "-o", b.string(), "-t", "3"}).exit_code, 0);
  ASSERT_EQ(slm::test::run_cli({"synth", "--like", "tiny-llama", "--vocab", vs, "-o", c.string(), "--seed", "5",
                                "--type", "bf16"}).exit_code, 0);
  EXPECT_EQ(read_bytes(a), read_bytes(b));
  EXPECT_NE(read_bytes(a), read_bytes(c));
  EXPECT_EQ(slm::GGUFFile::open(c.string())->get_int("general.file_type"), 32);  // BF16

  // The real shapes need their own vocabulary size.
  auto r = slm::test::run_cli({"synth", "--like", "llama-3.2-1b", "--vocab", vs, "-o", temp_path("x.gguf").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("128256"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ggml-vocab-llama-bpe.gguf"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(temp_path("x.gguf")));

  r = slm::test::run_cli({"synth", "--like", "llama-9b", "--vocab", vs, "-o", temp_path("x.gguf").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("llama-3.2-1b"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("tiny-llama"), std::string::npos) << r.err;  // hidden

  r = slm::test::run_cli({"synth", "--like", "tiny-llama", "--vocab", vs, "-o", temp_path("x.gguf").string(), "--type", "q4_0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("f16, f32 or bf16"), std::string::npos) << r.err;

  r = slm::test::run_cli({"synth", "--like", "tiny-llama", "--vocab", vs, "-o", "/nonexistent-dir/x.gguf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot open for writing"), std::string::npos) << r.err;
  fs::remove_all(a.parent_path());
}

}  // namespace
