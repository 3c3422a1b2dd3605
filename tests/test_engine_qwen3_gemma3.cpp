// Qwen3 and Gemma 3 beyond the F32 golden cases in test_engine_logits.cpp: a Q8_0 copy (made
// by slm quantize) against the same NumPy reference (scripts/make-arch-fixtures.py),
// Gemma 3's per-layer RoPE in the key rotation of a context shift, and slm convert of Hugging
// Face folders holding the fixtures' weights. (Fine-tuning them: test_train_lora.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/quantize.h"
#include "core/gguf.h"
#include "core/error.h"
#include "models/model.h"
#include "ops/ops.h"
#include "runtime/session.h"
#include "support/fixtures.h"
#include "support/logits_file.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using slm::test::LogitsFile;

fs::path data(const std::string& name) { return fs::path(SLM_SOURCE_DIR) / "tests/data/arch" / name; }

std::vector<float> batch_logits(const slm::Model& model, const LogitsFile& ref) {
  slm::SessionOptions so;
  so.n_ctx = ref.n_tokens;
  so.n_threads = 2;
  so.kv_types = slm::DType::F32;
  so.n_batch = ref.n_tokens;
  slm::Session session(model, so);
  const auto& l = session.eval(ref.tokens, true);
  return {l.begin(), l.begin() + static_cast<size_t>(ref.n_tokens) * ref.n_vocab};
}

// A Q8_0 copy (slm quantize) runs the integer kernels under the new blocks. Against the F32
// reference it carries the quantization's own error, which in these random-weight miniatures is
// 3-6% (llama.cpp's Q8_0 fixtures against their F32 originals: 3.3e-2 to 5.7e-2); a wrong
// block decoder or a norm skipped on the quantized path lands above 0.3.
TEST(Qwen3Gemma3, Q8_0CopiesStayNearTheReference) {
  static const slm::test::ProgramTempDir dir("qwen3-gemma3");
  for (const char* stem : {"tiny-qwen3", "tiny-gemma3"}) {
    const LogitsFile ref = slm::test::read_logits_file(data(std::string(stem) + ".batch.logits"));
    for (const char* type : {"Q8_0"}) {
      const std::string out = (dir.path() / (std::string(stem) + "-" + type + ".gguf")).string();
      slm::convert::QuantizeOptions qo;
      qo.progress = false;
      slm::convert::quantize_file(data(std::string(stem) + ".gguf").string(), out, type, qo);
      auto model = slm::Model::load(out);
      const std::vector<float> ours = batch_logits(*model, ref);
      double worst = 0;
      int agree = 0;
      for (int i = 0; i < ref.n_tokens; ++i) {
        const float* a = ours.data() + static_cast<size_t>(i) * ref.n_vocab;
        worst = std::max(worst, slm::test::relative_l2(a, ref.row(i), ref.n_vocab));
        agree += slm::test::argmax(a, ref.n_vocab) == slm::test::argmax(ref.row(i), ref.n_vocab);
      }
      EXPECT_LE(worst, 0.1) << stem << " " << type;
      EXPECT_GE(agree, 0.85 * ref.n_tokens) << stem << " " << type;
      std::printf("  %s %s: worst relative L2 %.3g, argmax agreement %d/%d\n", stem, type, worst, agree,
                  ref.n_tokens);
    }
  }
}

// A context shift turns each cached key back by RoPE of the layer it is in: Gemma 3's sliding
// layers (0-4, 6 in the 7-layer fixture) with base 10,000 and no scaling, its full-attention
// layer 5 with the file's base 1e6 and linear factor 8.
TEST(Qwen3Gemma3, Gemma3KeyRotationFollowsEachLayersRope) {
  auto model = slm::Model::load(data("tiny-gemma3.gguf").string());
  const auto& hp = model->hparams();
  const auto rotate = model->key_rotation(64);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const int64_t rows = 3, n = rows * hp.n_head_kv * hp.head_dim_k;
  for (int layer = 0; layer < hp.n_layer; ++layer) {
    std::vector<float> keys(n);
    for (float& x : keys) x = nd(rng);
    std::vector<float> want = keys;
    slm::RopeParams p;
    p.mode = slm::RopeMode::Neox;
    p.n_rot = static_cast<int>(hp.head_dim_k);
    const bool full = layer == 5;
    p.freq_base = full ? 1e6f : 1e4f;
    p.freq_scale = full ? 0.125f : 1.0f;
    slm::rope(want.data(), rows * hp.n_head_kv, hp.head_dim_k, -7, p);
    rotate(layer, keys.data(), rows, 7);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(keys[i], want[i], 1e-6) << "layer " << layer << " value " << i;
  }
}

// YaRN's cos/sin carry a magnitude (1 + 0.1 ln 4 here); a context shift's rotation must not add
// it again: a key RoPE'd at p and turned back by delta is the key RoPE'd at p - delta.
TEST(Qwen3Gemma3, YarnKeyRotationKeepsTheMagnitude) {
  auto model = slm::Model::load(data("tiny-qwen3-yarn.gguf").string());
  const auto& hp = model->hparams();
  ASSERT_GT(hp.rope.ext_factor, 0.0f);
  ASSERT_NEAR(hp.rope.attn_factor, 1.0f + 0.1f * std::log(4.0f), 1e-6);
  const auto rotate = model->key_rotation(256);
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  const int64_t n = hp.n_head_kv * hp.head_dim_k;
  for (const int32_t p : {20, 57, 200}) {
    std::vector<float> raw(n);
    for (float& x : raw) x = nd(rng);
    std::vector<float> at_p = raw, want = raw;
    slm::rope(at_p.data(), hp.n_head_kv, hp.head_dim_k, p, hp.rope);
    slm::rope(want.data(), hp.n_head_kv, hp.head_dim_k, p - 13, hp.rope);
    rotate(0, at_p.data(), 1, 13);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(at_p[i], want[i], 1e-4) << "position " << p << " value " << i;
  }
}

// llama.cpp's RoPE options give a file without YaRN metadata the reference's YaRN: the yarn
// fixture's weights written without its rope.scaling keys, then `slm logits --rope-scaling yarn
// --rope-scale 4 --yarn-orig-ctx 8`. Without the options that file computes something else.
TEST(Qwen3Gemma3, RopeScalingOptionsGiveYarn) {
  static const slm::test::ProgramTempDir dir("qwen3-yarn-options");
  auto f = slm::GGUFFile::open(data("tiny-qwen3-yarn.gguf").string());
  slm::GGUFWriter w;
  for (const auto& [k, v] : f->metadata())
    if (k.rfind("qwen3.rope.scaling.", 0) != 0) w.set(k, v);
  for (const slm::TensorInfo& t : f->tensors()) w.add_tensor(t.name, t.type, t.ne, t.data, t.nbytes);
  const std::string plain = (dir.path() / "plain.gguf").string();
  w.write(plain);
  const LogitsFile ref = slm::test::read_logits_file(data("tiny-qwen3-yarn.batch.logits"));
  std::string tokens;
  for (int32_t id : ref.tokens) tokens += std::to_string(id) + " ";
  auto worst_with = [&](std::vector<std::string> extra) {
    const std::string out = (dir.path() / "l.logits").string();
    std::vector<std::string> args = {"logits", "-m", plain, "--tokens", tokens, "-o", out, "-t", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = slm::test::run_cli(args, 60);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const LogitsFile got = slm::test::read_logits_file(out);
    double worst = 0;
    for (int i = 0; i < ref.n_tokens; ++i) worst = std::max(worst, slm::test::relative_l2(got.row(i), ref.row(i), ref.n_vocab));
    return worst;
  };
  EXPECT_LE(worst_with({"--rope-scaling", "yarn", "--rope-scale", "4", "--yarn-orig-ctx", "8"}), 1e-4);
  EXPECT_GT(worst_with({}), 0.1);
  const auto bad = slm::test::run_cli({"logits", "-m", plain, "--tokens", "1 2", "-o", (dir.path() / "x").string(),
                                       "--rope-scale", "4", "--rope-freq-scale", "0.25"}, 60);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--rope-scale and --rope-freq-scale"), std::string::npos) << bad.err;
}

// ---- slm convert -------------------------------------------------------------------------

// The Hugging Face name of a fixture tensor, and whether its values are a Gemma norm (stored in
// GGUF as 1 + w, in the checkpoint as w).
std::pair<std::string, bool> hf_name(const std::string& gguf, bool gemma) {
  if (gguf == "token_embd.weight") return {"model.embed_tokens.weight", false};
  if (gguf == "output_norm.weight") return {"model.norm.weight", gemma};
  const size_t dot = gguf.find('.', 4);
  const std::string layer = gguf.substr(4, dot - 4), what = gguf.substr(dot + 1);
  const std::map<std::string, std::string> names = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_norm.weight", gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"},
      {"post_attention_norm.weight", "post_attention_layernorm.weight"},
      {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  const std::string hf = names.at(what);
  return {"model.layers." + layer + "." + hf, gemma && hf.find("norm") != std::string::npos};
}

// <dir>/<stem>/: config.json as the Hub's Qwen3 / Gemma 3 configs are written, model.safetensors
// (F32) with the fixture's weights under their Hugging Face names, and a byte-level tokenizer
// of 256 tokens cut from tiny-qwen2's (the fixtures' vocabulary size).
fs::path hf_folder(const std::string& stem, const fs::path& dir, const fs::path& tokenizer_from) {
  using nlohmann::json;
  const bool gemma = stem == "tiny-gemma3";
  const fs::path out = dir / stem;
  fs::create_directories(out);
  auto f = slm::GGUFFile::open(data(stem + ".gguf").string());
  json header = json::object();
  std::string blob;
  for (const slm::TensorInfo& t : f->tensors()) {
    const auto [name, norm] = hf_name(t.name, gemma);
    std::vector<float> v(static_cast<size_t>(t.nelements));
    std::memcpy(v.data(), t.data, v.size() * 4);
    if (norm)
      for (float& x : v) x -= 1.0f;  // exact: x is in [0.5, 2]
    std::vector<int64_t> shape(t.ne.rbegin(), t.ne.rend());
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {blob.size(), blob.size() + v.size() * 4}}};
    blob.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  }
  const std::string h = header.dump();
  const uint64_t n = h.size();
  std::ofstream st(out / "model.safetensors", std::ios::binary);
  st.write(reinterpret_cast<const char*>(&n), 8);
  st << h << blob;
  st.close();

  json cfg = {{"hidden_size", 32}, {"intermediate_size", 64}, {"num_attention_heads", 4},
              {"num_key_value_heads", 2}, {"head_dim", 16}, {"max_position_embeddings", 256},
              {"rms_norm_eps", 1e-6}, {"rope_theta", 1e6}, {"tie_word_embeddings", true},
              {"vocab_size", 256}, {"torch_dtype", "float32"}, {"bos_token_id", 0}, {"eos_token_id", 1}};
  if (gemma) {
    cfg["architectures"] = {"Gemma3ForCausalLM"};
    cfg["model_type"] = "gemma3_text";
    cfg["num_hidden_layers"] = 7;
    cfg["sliding_window"] = 8;
    cfg["sliding_window_pattern"] = 6;
    cfg["rope_local_base_freq"] = 10000.0;
    cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
    cfg["query_pre_attn_scalar"] = 16;
    cfg["attn_logit_softcapping"] = nullptr;
    cfg["final_logit_softcapping"] = nullptr;
  } else {
    cfg["architectures"] = {"Qwen3ForCausalLM"};
    cfg["model_type"] = "qwen3";
    cfg["num_hidden_layers"] = 2;
    if (stem == "tiny-qwen3-yarn")
      cfg["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 8}};
  }
  std::ofstream(out / "config.json") << cfg.dump(2);

  json tok = json::parse(slm::test::read_text_file(tokenizer_from / "tokenizer.json"));
  // Ids 0-254 (the special tokens and most bytes), then the first merge ("Ġ" "Ġ") as id 255:
  // the converter wants a BPE model with merges.
  json vocab = json::object();
  for (const auto& [piece, id] : tok["model"]["vocab"].items())
    if (id.get<int>() < 255) vocab[piece] = id;
  const json first = tok["model"]["merges"][0];
  vocab[first[0].get<std::string>() + first[1].get<std::string>()] = 255;
  tok["model"]["vocab"] = vocab;
  tok["model"]["merges"] = json::array({first});
  std::ofstream(out / "tokenizer.json") << tok.dump();
  fs::copy_file(tokenizer_from / "tokenizer_config.json", out / "tokenizer_config.json");
  return out;
}

// The converted file holds the fixture's tensors bit for bit (Gemma norms through w and back to
// 1 + w) and its architecture keys, so it computes the reference's logits.
TEST(Qwen3Gemma3, ConvertFromHuggingFaceGivesTheFixture) {
  SLM_REQUIRE_FIXTURE(tokenizer_from, "models/hf/tiny-qwen2");
  static const slm::test::ProgramTempDir dir("qwen3-gemma3-convert");
  for (const std::string stem : {"tiny-qwen3", "tiny-qwen3-yarn", "tiny-gemma3"}) {
    const fs::path folder = hf_folder(stem, dir.path(), tokenizer_from);
    const fs::path out = dir.path() / (stem + ".gguf");
    const auto r = slm::test::run_cli({"convert", folder.string(), "-o", out.string(), "--outtype", "f32"}, 120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto want = slm::GGUFFile::open(data(stem + ".gguf").string());
    auto got = slm::GGUFFile::open(out.string());
    ASSERT_EQ(got->tensors().size(), want->tensors().size()) << stem;
    for (const slm::TensorInfo& t : want->tensors()) {
      const slm::TensorInfo* g = got->find_tensor(t.name);
      ASSERT_NE(g, nullptr) << stem << ": " << t.name;
      EXPECT_EQ(g->ne, t.ne) << t.name;
      ASSERT_EQ(g->type, slm::DType::F32) << t.name;
      EXPECT_EQ(std::memcmp(g->data, t.data, static_cast<size_t>(t.nelements) * 4), 0) << stem << ": " << t.name;
    }
    const std::string arch = stem == "tiny-gemma3" ? "gemma3" : "qwen3";
    for (const auto& [k, v] : want->metadata()) {
      if (k.rfind(arch + ".", 0) != 0) continue;
      const slm::GGUFValue* g = got->find(k);
      ASSERT_NE(g, nullptr) << stem << ": " << k;
      if (v.type == slm::GGUFType::STRING) EXPECT_EQ(g->as_string(), v.as_string()) << k;
      else EXPECT_DOUBLE_EQ(got->get_float(k), want->get_float(k)) << k;
    }
    const LogitsFile ref = slm::test::read_logits_file(data(stem + ".batch.logits"));
    auto model = slm::Model::load(out.string());
    const std::vector<float> ours = batch_logits(*model, ref);
    for (int i = 0; i < ref.n_tokens; ++i)
      EXPECT_LE(slm::test::relative_l2(ours.data() + static_cast<size_t>(i) * ref.n_vocab, ref.row(i), ref.n_vocab),
                stem == "tiny-gemma3" ? 1e-3 : 1e-4) << stem << " position " << i;
  }
}

// What a gemma3 GGUF file cannot say is refused by name, not converted into another model.
TEST(Qwen3Gemma3, ConvertRefusesGemma3SettingsTheFormatCannotHold) {
  SLM_REQUIRE_FIXTURE(tokenizer_from, "models/hf/tiny-qwen2");
  static const slm::test::ProgramTempDir dir("gemma3-convert-refusals");
  const fs::path folder = hf_folder("tiny-gemma3", dir.path(), tokenizer_from);
  const nlohmann::json base = nlohmann::json::parse(slm::test::read_text_file(folder / "config.json"));
  const std::vector<std::pair<std::string, nlohmann::json>> bad = {
      {"final_logit_softcapping", 30.0}, {"query_pre_attn_scalar", 32}, {"sliding_window_pattern", 4}};
  for (const auto& [key, value] : bad) {
    nlohmann::json cfg = base;
    cfg[key] = value;
    std::ofstream(folder / "config.json") << cfg.dump(2);
    const auto r = slm::test::run_cli({"convert", folder.string(), "-o", (dir.path() / "x.gguf").string()}, 60);
    EXPECT_EQ(r.exit_code, 1) << key;
    EXPECT_NE(r.err.find(key), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir.path() / "x.gguf")) << key;
  }
}

}  // namespace
