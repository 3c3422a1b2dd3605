// slm export-lora. On a tiny model with adapters built here: W + s B A to 1e-6 in F32, Q8_0 and
// F16 matrices re-encoded to their own type within its rounding, everything else and the
// metadata byte for byte, scale 0 giving the base back, the result loadable and quantizable.
// On the real adapter: the merged matrices equal the checkpoint's W + 2 B A with the base
// conversion's permutation, and the merged model's logits PEFT's. (The logits of adapters
// applied at run time are the runtime LoRA tests' business.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "convert/safetensors.h"
#include "core/gguf.h"
#include "models/lora.h"
#include "models/model.h"
#include "support/fixtures.h"
#include "support/logits_file.h"
#include "support/lora_files.h"
#include "support/run_cli.h"
#include "support/tiny_model.h"

namespace {

using namespace slm::test::lora;
using slm::DType;

// ---- export-lora -------------------------------------------------------------------------------

uint32_t g_rng = 99;
float uniform() { return slm::test::tiny_detail::next_uniform(g_rng); }

slm::LoraTensor& random_pair(slm::LoraAdapter& ad, const std::string& name, int64_t n_in, int64_t n_out, int64_t rank) {
  slm::LoraTensor& t = ad.add(name, n_in, n_out, rank);
  for (float& x : t.a) x = 0.3f * uniform();
  for (float& x : t.b) x = 0.3f * uniform();
  return t;
}

std::vector<float> decode(const slm::TensorInfo* t) {
  std::vector<float> v(static_cast<size_t>(t->nelements));
  slm::type_traits(t->type).to_float(t->data, v.data(), t->nelements);
  return v;
}

// W + sum s B A, in double, for a base tensor [n_out][n_in].
std::vector<double> reference_merge(const std::vector<float>& w, int64_t n_in,
                                    const std::vector<std::pair<const slm::LoraTensor*, double>>& terms) {
  std::vector<double> out(w.begin(), w.end());
  for (const auto& [t, s] : terms)
    for (int64_t o = 0; o < t->n_out; ++o)
      for (int64_t k = 0; k < t->rank; ++k)
        for (int64_t i = 0; i < n_in; ++i)
          out[o * n_in + i] += s * t->b[o * t->rank + k] * static_cast<double>(t->a[k * n_in + i]);
  return out;
}

TEST(ExportLora, TinyModelMergedPerType) {
  // attn_q F32, ffn_down Q8_0, output F16.
  const fs::path base = tiny_gguf("export-base");
  auto model = slm::Model::load(base.string());
  const int64_t E = 32, F = 64, V = model->hparams().n_vocab;
  slm::LoraAdapter a1;
  a1.arch = "llama";
  a1.alpha = 8.0f;  // rank 4, user scale 0.5: s = 0.5 * 8 / 4 = 1
  random_pair(a1, "blk.0.attn_q.weight", E, E, 4);
  random_pair(a1, "blk.1.ffn_down.weight", F, E, 4);
  random_pair(a1, "output.weight", E, V, 4);
  const slm::LoraTensor &q1 = *a1.find("blk.0.attn_q.weight"), &d1 = *a1.find("blk.1.ffn_down.weight"),
                        &o1 = *a1.find("output.weight");
  slm::LoraAdapter a2;  // alpha 0: the user scale itself, 1
  a2.arch = "llama";
  random_pair(a2, "blk.0.attn_q.weight", E, E, 2);
  random_pair(a2, "blk.1.attn_v.weight", E, 16, 2);
  const fs::path p1 = temp_dir() / "export-a1.gguf", p2 = temp_dir() / "export-a2.gguf";
  a1.save(p1.string());
  a2.save(p2.string(), DType::F16);
  // a2 as the runtime reads it back (F16-rounded).
  auto a2_read = slm::LoraAdapter::load(p2.string(), *model);

  const fs::path out = temp_dir() / "export-merged.gguf";
  const auto r = slm::test::run_cli({"export-lora", "-m", base.string(), "--lora", p1.string() + ":0.5", "--lora",
                                     p2.string(), "-o", out.string(), "-t", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("4 merged from 2 adapter(s)"), std::string::npos) << r.err;

  auto in = slm::GGUFFile::open(base.string());
  auto merged = slm::GGUFFile::open(out.string());
  EXPECT_TRUE(merged->metadata() == in->metadata()) << "metadata must be the base's";
  ASSERT_EQ(merged->tensors().size(), in->tensors().size());
  const std::set<std::string> changed = {"blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output.weight",
                                         "blk.1.attn_v.weight"};
  for (size_t i = 0; i < in->tensors().size(); ++i) {
    const slm::TensorInfo &a = in->tensors()[i], &b = merged->tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type) << a.name;
    EXPECT_EQ(a.ne, b.ne) << a.name;
    if (!changed.count(a.name)) {
      EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << a.name << " must be copied unchanged";
    }
  }
  const slm::LoraTensor& q2r = *a2_read->find("blk.0.attn_q.weight");
  const slm::LoraTensor& v2r = *a2_read->find("blk.1.attn_v.weight");
  // F32: W + s B A to 1e-6.
  for (const auto& [name, terms] : std::vector<std::pair<std::string, std::vector<std::pair<const slm::LoraTensor*, double>>>>{
           {"blk.0.attn_q.weight", {{&q1, 1.0}, {&q2r, 1.0}}}, {"blk.1.attn_v.weight", {{&v2r, 1.0}}}}) {
    const std::vector<float> w = decode(in->find_tensor(name)), got = decode(merged->find_tensor(name));
    const std::vector<double> want = reference_merge(w, E, terms);
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
    EXPECT_LE(worst, 1e-6) << name;
    EXPECT_GT(std::fabs(got[0] - w[0]) + std::fabs(got[1] - w[1]), 1e-3) << name << " was not changed";
  }
  // Q8_0 stays Q8_0, within its rounding of the F32 merge of the decoded base: per block of 32,
  // half a step (amax / 127) plus the step's own rounding to fp16 (127 x 2^-11 steps at most).
  {
    const std::vector<float> w = decode(in->find_tensor("blk.1.ffn_down.weight"));
    const std::vector<float> got = decode(merged->find_tensor("blk.1.ffn_down.weight"));
    const std::vector<double> want = reference_merge(w, F, {{&d1, 1.0}});
    for (size_t b0 = 0; b0 < want.size(); b0 += 32) {
      double amax = 0;
      for (size_t i = b0; i < b0 + 32; ++i) amax = std::max(amax, std::fabs(want[i]));
      for (size_t i = b0; i < b0 + 32; ++i)
        ASSERT_LE(std::fabs(got[i] - want[i]), 0.57 * amax / 127 + 1e-6) << "ffn_down value " << i;
    }
    EXPECT_EQ(merged->find_tensor("blk.1.ffn_down.weight")->type, DType::Q8_0);
  }
  // F16 stays F16, within half an fp16 ulp (relative 2^-11) of the F32 merge.
  {
    const std::vector<float> w = decode(in->find_tensor("output.weight"));
    const std::vector<float> got = decode(merged->find_tensor("output.weight"));
    const std::vector<double> want = reference_merge(w, E, {{&o1, 1.0}});
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_LE(std::fabs(got[i] - want[i]), std::fabs(want[i]) / 2048 + 1e-7) << "output value " << i;
  }
  // The merged file is a model: it loads and computes logits.
  EXPECT_NO_THROW(slm::Model::load(out.string()));
  const fs::path logits = temp_dir() / "export-merged.logits";
  const auto lr = slm::test::run_cli({"logits", "-m", out.string(), "--tokens", "1 260 270 280", "-o", logits.string()});
  EXPECT_EQ(lr.exit_code, 0) << lr.err;
  EXPECT_TRUE(fs::exists(logits));
}

TEST(ExportLora, ScaleZeroGivesTheBaseBackAndTheResultQuantizes) {
  slm::test::TinyModelOptions o;
  o.q8_0_ffn_down = false;
  o.f16_output = false;
  const fs::path base = tiny_gguf("export-f32-base", o);
  slm::LoraAdapter ad;
  ad.arch = "llama";
  ad.alpha = 4.0f;
  random_pair(ad, "blk.1.ffn_gate.weight", 32, 64, 4);
  const fs::path p = temp_dir() / "export-f32-a.gguf";
  ad.save(p.string());
  const fs::path zero = temp_dir() / "export-zero.gguf", one = temp_dir() / "export-one.gguf";
  auto r = slm::test::run_cli({"export-lora", "-m", base.string(), "--lora", p.string() + ":0", "-o", zero.string(), "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(slm::test::read_text_file(zero) == slm::test::read_text_file(base)) << "scale 0 must give the base back";
  r = slm::test::run_cli({"export-lora", "-m", base.string(), "--lora", p.string(), "-o", one.string(), "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path q = temp_dir() / "export-one-q8_0.gguf";
  r = slm::test::run_cli({"quantize", one.string(), q.string(), "Q8_0", "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NO_THROW(slm::Model::load(q.string()));
}

TEST(ExportLora, BadInputIsOneLineErrorAndNoFile) {
  const fs::path base = tiny_gguf("export-bad-base");
  auto write_adapter = [](const std::string& name, const std::string& arch, int64_t n_in) {
    slm::LoraAdapter ad;
    ad.arch = arch;
    ad.alpha = 1.0f;
    random_pair(ad, "blk.0.attn_q.weight", n_in, 32, 2);
    const fs::path p = temp_dir() / (name + ".gguf");
    ad.save(p.string());
    return p.string();
  };
  const fs::path out = temp_dir() / "export-bad-out.gguf";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--lora", write_adapter("qwen-adapter", "qwen2", 32)}, "the adapter is for a qwen2 model"},
      {{"--lora", write_adapter("narrow-adapter", "llama", 16)}, "blk.0.attn_q.weight is 16 x 32 in the adapter"},
      {{"--lora", base.string()}, "not a LoRA adapter"},
      {{"--lora", (temp_dir() / "missing.gguf").string()}, "missing.gguf"},
  };
  for (const auto& [extra, expect] : cases) {
    std::vector<std::string> args = {"export-lora", "-m", base.string(), "-o", out.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = slm::test::run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << "expected '" << expect << "' in: " << r.err;
    EXPECT_FALSE(fs::exists(out)) << expect;
  }
  // The output over the base it reads.
  const auto r = slm::test::run_cli({"export-lora", "-m", base.string(), "--lora", write_adapter("ok", "llama", 32),
                                     "-o", base.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("must differ from the inputs"), std::string::npos) << r.err;
  EXPECT_NO_THROW(slm::Model::load(base.string()));
}

// The real adapter merged into the F32 base: attn_q is the checkpoint's W + 2 B A (alpha / r
// = 2) permuted as the base conversion permutes W, ffn_down the same without permutation.
TEST(ExportLora, RealAdapterMergesAsPeftDoes) {
  SLM_REQUIRE_FIXTURE(peft, "models/hf/lora-sqlite-r8");
  SLM_REQUIRE_FIXTURE(hf, "models/hf/slm-docs-19m");
  const fs::path out = temp_dir() / "slm-docs-19m-sqlite-merged.gguf";
  const auto r = slm::test::run_cli({"export-lora", "-m", f32_base().string(), "--lora", real_adapter("gguf").string(),
                                     "-o", out.string(), "-t", "2"}, 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("56 merged from 1 adapter(s)"), std::string::npos) << r.err;
  auto merged = slm::GGUFFile::open(out.string());
  const auto cp = slm::convert::Checkpoint::open_dir(hf.string());
  const auto st = slm::convert::SafetensorsFile::open((peft / "adapter_model.safetensors").string());
  auto peft_tensor = [&](const std::string& n) {
    for (const auto& t : st->tensors())
      if (t.name == "base_model.model." + n) return st_floats(t);
    ADD_FAILURE() << n;
    return std::vector<float>{};
  };
  for (const auto& [hf_name, gguf_name, n_in, n_out, permuted] :
       std::vector<std::tuple<std::string, std::string, int64_t, int64_t, bool>>{
           {"model.layers.2.self_attn.q_proj", "blk.2.attn_q.weight", 384, 384, true},
           {"model.layers.6.self_attn.k_proj", "blk.6.attn_k.weight", 384, 128, true},
           {"model.layers.2.mlp.down_proj", "blk.2.ffn_down.weight", 1024, 384, false}}) {
    const std::vector<float> w = st_floats(*cp.find(hf_name + ".weight"));
    const std::vector<float> a = peft_tensor(hf_name + ".lora_A.weight"), b = peft_tensor(hf_name + ".lora_B.weight");
    const float* got = f32_data(merged->find_tensor(gguf_name));
    double worst = 0;
    for (int64_t j = 0; j < n_out; ++j) {
      const int64_t src = permuted ? hf_row(j, 64) : j;
      for (int64_t i = 0; i < n_in; ++i) {
        double d = 0;
        for (int64_t k = 0; k < 8; ++k) d += static_cast<double>(b[src * 8 + k]) * a[k * n_in + i];
        worst = std::max(worst, std::fabs(got[j * n_in + i] - (w[src * n_in + i] + 2.0 * d)));
      }
    }
    EXPECT_LE(worst, 1e-6) << gguf_name;
  }
  // The merged model computes what PEFT does with the adapter (transformers' float32 logits;
  // the README's bound for a LoRA on an F32 base, 1e-3; measured ~8e-7).
  for (const char* prompt : {"prompt0", "prompt1"}) {
    SLM_REQUIRE_FIXTURE(ref_path, std::string("fixtures/hf/lora-sqlite-r8.") + prompt + ".logits");
    const slm::test::LogitsFile ref = slm::test::read_logits_file(ref_path);
    std::string ids;
    for (int32_t t : ref.tokens) ids += (ids.empty() ? "" : " ") + std::to_string(t);
    const fs::path logits = temp_dir() / (std::string("merged-") + prompt + ".logits");
    const auto lr = slm::test::run_cli({"logits", "-m", out.string(), "--tokens", ids, "-o", logits.string()});
    ASSERT_EQ(lr.exit_code, 0) << lr.err;
    const slm::test::LogitsFile got = slm::test::read_logits_file(logits);
    ASSERT_EQ(got.n_tokens, ref.n_tokens);
    ASSERT_EQ(got.n_vocab, ref.n_vocab);
    double worst = 0;
    for (int i = 0; i < ref.n_tokens; ++i)
      worst = std::max(worst, slm::test::relative_l2(got.row(i), ref.row(i), ref.n_vocab));
    EXPECT_LE(worst, 1e-3) << prompt;
    std::printf("  merged model vs PEFT, %s: worst relative L2 %.3g\n", prompt, worst);
  }
}

}  // namespace

