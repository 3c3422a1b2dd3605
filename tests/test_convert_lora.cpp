// slm convert-lora: the real PEFT adapter lora-sqlite-r8 (for slm-docs-19m) converted against
// the Hugging Face folder and against an F32 GGUF of it gives the same file, with llama.cpp's
// metadata and shapes and Llama's q/k row permutation applied to lora_B (checked row by row
// against the safetensors and against the base conversion's own permutation); synthetic
// adapters for Qwen2, Gemma 2 and Phi-3 (fused qkv / gate_up); every refused PEFT setting is
// named in a one-line error with no file left. (export-lora: test_convert_lora_export.cpp.)
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
#include "support/lora_files.h"
#include "support/run_cli.h"
#include "support/tiny_model.h"

namespace {

using namespace slm::test::lora;
using slm::DType;

// ---- convert-lora ------------------------------------------------------------------------------

TEST(ConvertLora, RealAdapterSameFileFromHfFolderAndGguf) {
  SLM_REQUIRE_FIXTURE(peft, "models/hf/lora-sqlite-r8");
  SLM_REQUIRE_FIXTURE(hf, "models/hf/slm-docs-19m");
  const std::string a = slm::test::read_text_file(real_adapter("hf"));
  const std::string b = slm::test::read_text_file(real_adapter("gguf"));
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "--base HF folder and --base GGUF give different files";

  auto f = slm::GGUFFile::open(real_adapter("hf").string());
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_string("general.type"), "adapter");
  EXPECT_EQ(f->get_string("adapter.type"), "lora");
  ASSERT_NE(f->find("adapter.lora.alpha"), nullptr);
  EXPECT_EQ(f->find("adapter.lora.alpha")->type, slm::GGUFType::FLOAT32);
  EXPECT_EQ(f->get_float("adapter.lora.alpha"), 16.0);
  ASSERT_EQ(f->tensors().size(), 112u);  // 8 layers x 7 projections x (A, B)
  // [n_in, n_out] of each projection: hidden 384, q 6 x 64, kv 2 x 64, ffn 1024.
  const std::map<std::string, std::pair<int64_t, int64_t>> dims = {
      {"attn_q", {384, 384}},      {"attn_k", {384, 128}},    {"attn_v", {384, 128}}, {"attn_output", {384, 384}},
      {"ffn_gate", {384, 1024}},   {"ffn_up", {384, 1024}},   {"ffn_down", {1024, 384}}};
  for (int l = 0; l < 8; ++l)
    for (const auto& [name, d] : dims) {
      const std::string base = "blk." + std::to_string(l) + "." + name + ".weight";
      const slm::TensorInfo* ta = f->find_tensor(base + ".lora_a");
      const slm::TensorInfo* tb = f->find_tensor(base + ".lora_b");
      ASSERT_TRUE(ta && tb) << base;
      EXPECT_EQ(ta->ne, (std::vector<int64_t>{d.first, 8})) << base;
      EXPECT_EQ(tb->ne, (std::vector<int64_t>{8, d.second})) << base;
      EXPECT_EQ(ta->type, DType::F32);
      EXPECT_EQ(tb->type, DType::F32);
    }

  // It loads against the F32 base as a PEFT adapter runs: scale alpha / r = 2 at user scale 1.
  auto model = slm::Model::load(f32_base().string());
  auto ad = slm::LoraAdapter::load(real_adapter("hf").string(), *model);
  ASSERT_EQ(ad->tensors.size(), 56u);
  EXPECT_FLOAT_EQ(ad->scale_for(ad->tensors[0], 1.0f), 2.0f);
}

TEST(ConvertLora, QAndKRowsOfLoraBPermutedAsTheBaseIs) {
  SLM_REQUIRE_FIXTURE(peft, "models/hf/lora-sqlite-r8");
  SLM_REQUIRE_FIXTURE(hf, "models/hf/slm-docs-19m");
  auto f = slm::GGUFFile::open(real_adapter("hf").string());
  const auto st = slm::convert::SafetensorsFile::open((peft / "adapter_model.safetensors").string());
  auto peft_tensor = [&](const std::string& n) -> std::vector<float> {
    for (const auto& t : st->tensors())
      if (t.name == "base_model.model.model.layers.3." + n) return st_floats(t);
    ADD_FAILURE() << "no PEFT tensor " << n;
    return {};
  };
  // PEFT's lora_B is [n_out][8]; GGUF's lora_b (ne [8, n_out]) the same rows, permuted for q, k.
  const std::vector<float> qb = peft_tensor("self_attn.q_proj.lora_B.weight");
  const std::vector<float> kb = peft_tensor("self_attn.k_proj.lora_B.weight");
  const std::vector<float> vb = peft_tensor("self_attn.v_proj.lora_B.weight");
  const std::vector<float> qa = peft_tensor("self_attn.q_proj.lora_A.weight");
  ASSERT_EQ(qb.size(), 384u * 8);
  const float* gq = f32_data(f->find_tensor("blk.3.attn_q.weight.lora_b"));
  const float* gk = f32_data(f->find_tensor("blk.3.attn_k.weight.lora_b"));
  const float* gv = f32_data(f->find_tensor("blk.3.attn_v.weight.lora_b"));
  const float* ga = f32_data(f->find_tensor("blk.3.attn_q.weight.lora_a"));
  auto row_eq = [](const float* g, int64_t j, const std::vector<float>& p, int64_t src) {
    return std::memcmp(g + j * 8, p.data() + src * 8, 8 * sizeof(float)) == 0;
  };
  // Explicit rows of head 0 and head 1 (head size 64): 1 <- 32, 2 <- 1, 67 <- 97, 64 <- 64.
  EXPECT_TRUE(row_eq(gq, 1, qb, 32));
  EXPECT_TRUE(row_eq(gq, 2, qb, 1));
  EXPECT_TRUE(row_eq(gq, 67, qb, 97));
  EXPECT_TRUE(row_eq(gq, 64, qb, 64));
  EXPECT_FALSE(row_eq(gq, 1, qb, 1)) << "lora_B of attn_q was not permuted";
  for (int64_t j = 0; j < 384; ++j) ASSERT_TRUE(row_eq(gq, j, qb, hf_row(j, 64))) << "q row " << j;
  for (int64_t j = 0; j < 128; ++j) ASSERT_TRUE(row_eq(gk, j, kb, hf_row(j, 64))) << "k row " << j;
  for (int64_t j = 0; j < 128; ++j) ASSERT_TRUE(row_eq(gv, j, vb, j)) << "v row " << j;  // v is not permuted
  EXPECT_EQ(std::memcmp(ga, qa.data(), qa.size() * sizeof(float)), 0) << "lora_A must be PEFT's as stored";

  // The same mapping as the base conversion's: attn_q's rows of the F32 base are the
  // checkpoint's q_proj rows through hf_row.
  auto base = slm::GGUFFile::open(f32_base().string());
  const auto cp = slm::convert::Checkpoint::open_dir(hf.string());
  const std::vector<float> w = st_floats(*cp.find("model.layers.3.self_attn.q_proj.weight"));
  const float* gw = f32_data(base->find_tensor("blk.3.attn_q.weight"));
  for (int64_t j = 0; j < 384; ++j)
    ASSERT_EQ(std::memcmp(gw + j * 384, w.data() + hf_row(j, 64) * 384, 384 * sizeof(float)), 0) << j;
}

TEST(ConvertLora, F16OutputType) {
  SLM_REQUIRE_FIXTURE(peft, "models/hf/lora-sqlite-r8");
  SLM_REQUIRE_FIXTURE(hf, "models/hf/slm-docs-19m");
  const fs::path out = temp_dir() / "lora-f16.gguf";
  const auto r = slm::test::run_cli({"convert-lora", peft.string(), "--base", hf.string(), "-o", out.string(), "--outtype", "f16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto f16 = slm::GGUFFile::open(out.string());
  auto f32 = slm::GGUFFile::open(real_adapter("hf").string());
  ASSERT_EQ(f16->tensors().size(), 112u);
  const slm::TensorInfo* t = f16->find_tensor("blk.5.ffn_down.weight.lora_a");
  ASSERT_EQ(t->type, DType::F16);
  std::vector<float> got(static_cast<size_t>(t->nelements));
  slm::type_traits(DType::F16).to_float(t->data, got.data(), t->nelements);
  const float* want = f32_data(f32->find_tensor("blk.5.ffn_down.weight.lora_a"));
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], std::fabs(want[i]) * 1e-3 + 1e-7) << i;
}

// ---- other families -----------------------------------------------------------------------------

// A PEFT folder written here: for each (module path, n_out, n_in), layers 0 and 1 get lora_A
// [r][n_in] and lora_B [n_out][r] of distinct values (F32 safetensors). Returns the values.
std::map<std::string, std::vector<float>> write_peft(const fs::path& dir, const std::vector<std::tuple<std::string, int64_t, int64_t>>& mods,
                                                     int64_t r, double alpha, const json& targets) {
  fs::create_directories(dir);
  json cfg = {{"peft_type", "LORA"}, {"r", r}, {"lora_alpha", alpha}, {"target_modules", targets},
              {"bias", "none"}, {"fan_in_fan_out", false}, {"use_dora", false}, {"use_rslora", false},
              {"rank_pattern", json::object()}, {"alpha_pattern", json::object()}, {"task_type", "CAUSAL_LM"}};
  write_text(dir / "adapter_config.json", cfg.dump(2));
  std::map<std::string, std::vector<float>> values;
  json header = {{"__metadata__", {{"format", "pt"}}}};
  std::string data;
  float v = 0.001f;
  for (int layer = 0; layer < 2; ++layer)
    for (const auto& [m, n_out, n_in] : mods)
      for (const auto& [suffix, rows, cols] : {std::tuple{"lora_A", r, n_in}, std::tuple{"lora_B", n_out, r}}) {
        const std::string name = "base_model.model.model.layers." + std::to_string(layer) + "." + m + "." + suffix + ".weight";
        std::vector<float>& x = values[name];
        for (int64_t i = 0; i < rows * cols; ++i) x.push_back(v += 0.001f);
        header[name] = {{"dtype", "F32"}, {"shape", {rows, cols}}, {"data_offsets", {data.size(), data.size() + x.size() * 4}}};
        data.append(reinterpret_cast<const char*>(x.data()), x.size() * 4);
      }
  const std::string hs = header.dump();
  const uint64_t n = hs.size();
  write_text(dir / "adapter_model.safetensors", std::string(reinterpret_cast<const char*>(&n), 8) + hs + data);
  return values;
}

// Qwen2, Gemma 2 (same projection names, no permutation) and Phi-3 (fused qkv_proj and
// gate_up_proj): the same file from the HF folder and from its GGUF, B's rows as PEFT's.
TEST(ConvertLora, QwenGemmaPhiFromSyntheticAdapters) {
  struct Fam {
    std::string model, arch;
    std::vector<std::tuple<std::string, int64_t, int64_t>> mods;
    json targets;
    std::vector<std::pair<std::string, std::string>> names;  // PEFT module -> GGUF name checked
  };
  const std::vector<Fam> fams = {
      {"tiny-qwen2", "qwen2", {{"self_attn.q_proj", 64, 64}, {"self_attn.v_proj", 32, 64}, {"mlp.down_proj", 64, 160}},
       json::array({"q_proj", "v_proj", "down_proj"}),
       {{"self_attn.q_proj", "attn_q"}, {"self_attn.v_proj", "attn_v"}, {"mlp.down_proj", "ffn_down"}}},
      {"tiny-gemma2", "gemma2", {{"self_attn.k_proj", 32, 64}, {"self_attn.o_proj", 64, 64}, {"mlp.gate_proj", 128, 64}},
       "all-linear", {{"self_attn.k_proj", "attn_k"}, {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}}},
      {"tiny-phi3", "phi3",
       {{"self_attn.qkv_proj", 192, 64}, {"self_attn.o_proj", 64, 64}, {"mlp.gate_up_proj", 320, 64}, {"mlp.down_proj", 64, 160}},
       json::array({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
       {{"self_attn.qkv_proj", "attn_qkv"}, {"mlp.gate_up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"}}},
  };
  for (const Fam& f : fams) {
    SLM_REQUIRE_FIXTURE(hf, "models/hf/" + f.model);
    const fs::path peft = temp_dir() / ("peft-" + f.model);
    const auto values = write_peft(peft, f.mods, 4, 8.0, f.targets);
    const fs::path gguf = temp_dir() / (f.model + "-f32.gguf");
    auto r = slm::test::run_cli({"convert", hf.string(), "-o", gguf.string(), "--outtype", "f32", "-q"}, 120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const fs::path from_hf = temp_dir() / ("lora-" + f.model + "-hf.gguf"), from_gguf = temp_dir() / ("lora-" + f.model + "-gguf.gguf");
    r = slm::test::run_cli({"convert-lora", peft.string(), "--base", hf.string(), "-o", from_hf.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("arch " + f.arch), std::string::npos) << r.err;
    r = slm::test::run_cli({"convert-lora", peft.string(), "--base", gguf.string(), "-o", from_gguf.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(slm::test::read_text_file(from_hf) == slm::test::read_text_file(from_gguf)) << f.model;
    auto out = slm::GGUFFile::open(from_hf.string());
    EXPECT_EQ(out->get_string("general.architecture"), f.arch);
    EXPECT_EQ(out->get_float("adapter.lora.alpha"), 8.0);
    EXPECT_EQ(out->tensors().size(), 2 * 2 * f.mods.size()) << f.model;
    for (const auto& [m, g] : f.names)
      for (const char* ab : {"A", "B"}) {
        const std::string gname = "blk.1." + g + ".weight.lora_" + (ab[0] == 'A' ? "a" : "b");
        const slm::TensorInfo* t = out->find_tensor(gname);
        ASSERT_NE(t, nullptr) << f.model << " " << gname;
        const std::vector<float>& want = values.at("base_model.model.model.layers.1." + m + ".lora_" + ab + ".weight");
        ASSERT_EQ(static_cast<size_t>(t->nelements), want.size()) << gname;
        EXPECT_EQ(std::memcmp(f32_data(t), want.data(), want.size() * 4), 0) << f.model << " " << gname << " must be PEFT's as stored";
      }
    auto model = slm::Model::load(gguf.string());
    EXPECT_NO_THROW(slm::LoraAdapter::load(from_hf.string(), *model)) << f.model;
  }
}

// ---- refused input -----------------------------------------------------------------------------

void edit_config(const fs::path& dir, const std::function<void(json&)>& edit) {
  json c = read_json(dir / "adapter_config.json");
  edit(c);
  write_text(dir / "adapter_config.json", c.dump());
}
// Renames a tensor in a safetensors header (the data stay where they are).
void rename_tensor(const fs::path& p, const std::string& from, const std::string& to) {
  const std::string bytes = slm::test::read_text_file(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  json h = json::parse(bytes.substr(8, n));
  h[to] = h[from];
  h.erase(from);
  const std::string hs = h.dump();
  const uint64_t m = hs.size();
  write_text(p, std::string(reinterpret_cast<const char*>(&m), 8) + hs + bytes.substr(8 + n));
}

// A base for the cases below: a folder with slm-docs-19m's config.json edited (an HF base
// needs nothing else), or the tiny llama of tests/support as a GGUF file.
fs::path edited_hf_base(const std::string& name, const std::function<void(json&)>& edit) {
  const fs::path d = temp_dir() / "bases" / name;
  fs::create_directories(d);
  json c = read_json(hf_base() / "config.json");
  edit(c);
  write_text(d / "config.json", c.dump());
  return d;
}

struct Bad {
  std::string name;
  std::function<void(const fs::path& peft)> apply;
  std::string expect;                     // a part of the error message
  std::function<std::string()> base = {};  // default: the HF folder
  std::vector<std::string> extra = {};      // more arguments
};

std::vector<Bad> bad_cases() {
  const std::string st = "adapter_model.safetensors";
  const std::string q_a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  auto cfg = [](std::function<void(json&)> e) { return [e](const fs::path& d) { edit_config(d, e); }; };
  return {
      {"config_missing", [](const fs::path& d) { fs::remove(d / "adapter_config.json"); }, "adapter_config.json: missing"},
      {"weights_missing", [st](const fs::path& d) { fs::remove(d / st); }, "adapter_model.safetensors: missing"},
      {"not_lora", cfg([](json& c) { c["peft_type"] = "IA3"; }), "peft_type is 'IA3'"},
      {"dora", cfg([](json& c) { c["use_dora"] = true; }), "use_dora is true: DoRA adapters are not supported"},
      {"rslora", cfg([](json& c) { c["use_rslora"] = true; }), "use_rslora is true"},
      {"fan_in_fan_out", cfg([](json& c) { c["fan_in_fan_out"] = true; }), "fan_in_fan_out is true"},
      {"bias", cfg([](json& c) { c["bias"] = "lora_only"; }), "bias is \"lora_only\""},
      {"rank_pattern", cfg([](json& c) { c["rank_pattern"] = {{"q_proj", 4}}; }), "rank_pattern is set"},
      {"alpha_pattern", cfg([](json& c) { c["alpha_pattern"] = {{"q_proj", 32}}; }), "alpha_pattern is set"},
      {"target_lm_head", cfg([](json& c) { c["target_modules"].push_back("lm_head"); }),
       "target module 'lm_head' cannot be mapped"},
      {"r_against_shapes", cfg([](json& c) { c["r"] = 4; }), "has rank 8, but"},
      {"tensor_unmappable",
       [=](const fs::path& d) {
         fs::remove(d / st);
         fs::copy_file(peft_dir() / st, d / st);
         rename_tensor(d / st, q_a, "base_model.model.model.layers.0.self_attn.rotary_proj.lora_A.weight");
       },
       "adapts 'self_attn.rotary_proj', which slm cannot map"},
      {"embedding_adapter",
       [=](const fs::path& d) {
         fs::remove(d / st);
         fs::copy_file(peft_dir() / st, d / st);
         rename_tensor(d / st, q_a, "base_model.model.model.embed_tokens.lora_embedding_A");
       },
       "lora_embedding_A is not a lora_A / lora_B weight"},
      {"shape_against_hf_base", [](const fs::path&) {}, "in the adapter, but blk.0.ffn_gate.weight is 512 x 384",
       [] { return edited_hf_base("ff512", [](json& c) { c["intermediate_size"] = 512; }).string(); }},
      {"shape_against_gguf_base", [](const fs::path&) {}, "is 32 x 32 in the base",
       [] { return tiny_gguf("tiny-base").string(); }},
      {"base_architecture", [](const fs::path&) {}, "'MambaForCausalLM' is not supported by convert-lora",
       [] { return edited_hf_base("mamba", [](json& c) { c["architectures"] = {"MambaForCausalLM"}; }).string(); }},
      {"base_missing", [](const fs::path&) {}, "base model not found",
       [] { return (temp_dir() / "no-such-model.gguf").string(); }},
      {"outtype", [](const fs::path&) {}, "--outtype 'q8_0'", {}, {"--outtype", "q8_0"}},
  };
}

void PrintTo(const Bad& b, std::ostream* os) { *os << b.name; }

class ConvertLoraBadInput : public testing::TestWithParam<Bad> {};

TEST_P(ConvertLoraBadInput, OneLineErrorAndNoFile) {
  const Bad& bad = GetParam();
  SLM_REQUIRE_FIXTURE(peft, "models/hf/lora-sqlite-r8");
  SLM_REQUIRE_FIXTURE(hf, "models/hf/slm-docs-19m");
  // A copy of the adapter folder: the config copied (to be edited), the weights linked.
  const fs::path dir = temp_dir() / "bad" / bad.name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(peft / "adapter_config.json", dir / "adapter_config.json");
  fs::create_symlink(peft / "adapter_model.safetensors", dir / "adapter_model.safetensors");
  bad.apply(dir);
  const fs::path out = temp_dir() / "bad" / (bad.name + ".gguf");
  std::vector<std::string> args = {"convert-lora", dir.string(), "--base", bad.base ? bad.base() : hf.string(),
                                   "-o", out.string()};
  args.insert(args.end(), bad.extra.begin(), bad.extra.end());
  const auto r = slm::test::run_cli(args, 120);
  EXPECT_EQ(r.signal, 0) << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("slm: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(bad.expect), std::string::npos) << "expected '" << bad.expect << "' in: " << r.err;
  EXPECT_FALSE(fs::exists(out)) << "an output file was left behind";
  std::printf("  %s: %s", bad.name.c_str(), r.err.c_str());
}

INSTANTIATE_TEST_SUITE_P(Cases, ConvertLoraBadInput, testing::ValuesIn(bad_cases()),
                         [](const testing::TestParamInfo<Bad>& info) { return info.param.name; });

}  // namespace
