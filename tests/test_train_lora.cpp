// LoRA training passes (src/train/): the training forward pass against the inference one with
// the adapter applied at run time, every adapter gradient against central finite differences
// on a tiny model of each family, and resumed runs against straight ones.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "convert/hf_convert.h"
#include "models/lora.h"
#include "models/model.h"
#include "runtime/session.h"
#include "support/fixtures.h"
#include "support/temp_dir.h"
#include "train/finetune.h"
#include "train/lora_trainer.h"

namespace {

namespace fs = std::filesystem;
using slm::LoraAdapter;
using slm::Model;
using slm::train::LoraGrads;
using slm::train::LoraTrainer;
using slm::train::TrainerOptions;

slm::test::ProgramTempDir g_temp("train");
const fs::path& temp_dir() { return g_temp.path(); }

// A model of the family as an F32 GGUF: the shared tiny Hugging Face checkpoints (random
// weights, perturbed norms and biases) converted here, stories260K for llama, and the
// project's own miniatures for qwen3 and gemma3 (tests/data/arch, perturbed q/k norms).
fs::path family_model(const std::string& family) {
  if (family == "llama") return slm::test::shared_dir() / "models/stories260K.gguf";
  if (family == "qwen3" || family == "gemma3")
    return fs::path(SLM_SOURCE_DIR) / "tests/data/arch" / ("tiny-" + family + ".gguf");
  const fs::path out = temp_dir() / (family + "-f32.gguf");
  if (!fs::exists(out)) {
    slm::convert::ConvertOptions o;
    o.dir = (slm::test::shared_dir() / "models/hf" / ("tiny-" + family)).string();
    o.out_path = out.string();
    o.outtype = "f32";
    o.progress = false;
    slm::convert::convert_hf(o);
  }
  return out;
}

fs::path family_source(const std::string& family) {
  if (family == "qwen3" || family == "gemma3") return family_model(family);
  return family == "llama" ? slm::test::shared_dir() / "models/stories260K.gguf"
                           : slm::test::shared_dir() / "models/hf" / ("tiny-" + family);
}

// An adapter on every projection with random A and B (B = 0 would make dA vanish).
std::shared_ptr<LoraAdapter> random_adapter(const Model& m, int rank, uint64_t seed) {
  auto ad = slm::train::make_adapter(m, slm::train::LoraTargets{}, rank, 2.0f * rank, seed);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& t : ad->tensors) {
    const float sa = 1.0f / std::sqrt(static_cast<float>(t.n_in)), sb = 0.05f / std::sqrt(static_cast<float>(rank));
    for (float& v : t.a) v = nd(rng) * sa;
    for (float& v : t.b) v = nd(rng) * sb;
  }
  return ad;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& v : t) v = static_cast<int32_t>(rng() % vocab);
  return t;
}

class TrainFamilies : public ::testing::TestWithParam<std::string> {};

// The training forward pass computes what inference computes: its loss equals the
// cross-entropy of the logits a Session gives with the same adapter applied at run time.
TEST_P(TrainFamilies, ForwardLossEqualsInferenceWithTheAdapterAtRunTime) {
  const std::string family = GetParam();
  SLM_REQUIRE_FIXTURE(src, family_source(family));
  auto model = Model::load(family_model(family).string());
  auto ad = random_adapter(*model, 4, 7);
  const int B = 2, T = 24;
  const auto tokens = random_tokens(B * T, model->hparams().n_vocab, 3);
  TrainerOptions to;
  to.batch = B, to.seq_len = T, to.n_threads = 2;
  LoraTrainer trainer(*model, *ad, to);
  const double loss = trainer.loss(tokens.data());

  auto set = std::make_shared<slm::LoraSet>();
  set->adapters.push_back(ad);
  set->scales.push_back(1.0f);
  slm::SessionOptions so;
  so.n_ctx = T, so.n_batch = T, so.kv_types = slm::DType::F32, so.n_threads = 2, so.lora = set;
  const int64_t V = model->hparams().n_vocab;
  double total = 0;
  for (int b = 0; b < B; ++b) {
    slm::Session s(*model, so);
    const auto& lg = s.eval(std::span<const int32_t>(tokens.data() + b * T, T), true);
    for (int t = 0; t + 1 < T; ++t) {
      const float* row = lg.data() + t * V;
      double mx = -INFINITY, sum = 0;
      for (int64_t c = 0; c < V; ++c) mx = std::max<double>(mx, row[c]);
      for (int64_t c = 0; c < V; ++c) sum += std::exp(row[c] - mx);
      total += mx + std::log(sum) - row[tokens[b * T + t + 1]];
    }
  }
  const double ref = total / (B * (T - 1));
  // Gemma's inference computes GELU through llama.cpp's fp16 table; training exactly. (Gemma 3's
  // miniature lands at 3e-6; its sliding layers trained with the file's RoPE base at 3e-4.)
  const double tol = family == "gemma2" ? 2e-3 : family == "gemma3" ? 5e-5 : 1e-5;
  EXPECT_NEAR(loss, ref, tol * std::abs(ref)) << family;
  std::cout << family << ": training loss " << loss << ", inference " << ref << "\n";
}

// d(loss)/d(A) and d(loss)/d(B) of every adapter tensor against central differences.
//
// F32 forward passes round the loss by ~1e-8 (absolute, on a loss of ~10), so single elements
// with small gradients cannot be checked to 1e-3 by differences. Each tensor is checked along
// directions where the derivative is large: d1 = g / |g| (the derivative is |g|) and d2 = g
// restricted to a random half of its elements (normalized); both catch a wrong gradient
// element in proportion to its size. The step is chosen per direction so that the loss moves
// by ~2e-3 (below); the differences at h and h/2 are extrapolated (Richardson:
// (4 D(h/2) - D(h)) / 3) to cancel the h^2 term, and the extrapolation's relative error must be
// <= 1e-3 (the worst measured is ~5e-4). The adapter's B is small (std 0.05 / sqrt(r), as after
// some training): with a large random B the loss is so curved along A that no step is both
// above rounding and inside the region where the loss is close to its Taylor polynomial.
// With and without recomputed layers the gradients are the same bits.
TEST_P(TrainFamilies, LoraGradientsMatchFiniteDifferences) {
  const std::string family = GetParam();
  SLM_REQUIRE_FIXTURE(src, family_source(family));
  auto model = Model::load(family_model(family).string());
  auto ad = random_adapter(*model, 4, 11);
  // 2 windows of 20 tokens: past Gemma's sliding window of 8.
  const int B = 2, T = 20;
  const auto tokens = random_tokens(B * T, model->hparams().n_vocab, 5);
  for (int recompute : {0, 1}) {
    TrainerOptions to;
    to.batch = B, to.seq_len = T, to.n_threads = 2, to.force_recompute = recompute;
    LoraTrainer trainer(*model, *ad, to);
    LoraGrads g;
    trainer.forward_backward(tokens.data(), &g);
    if (recompute == 1) {  // same gradients with the layers recomputed
      LoraTrainer kept(*model, *ad, TrainerOptions{2, B, T, size_t{1} << 30, 0});
      LoraGrads g2;
      kept.forward_backward(tokens.data(), &g2);
      for (size_t i = 0; i < g.a.size(); ++i) {
        ASSERT_EQ(g.a[i], g2.a[i]) << ad->tensors[i].base;
        ASSERT_EQ(g.b[i], g2.b[i]) << ad->tensors[i].base;
      }
      continue;
    }
    std::mt19937 rng(17);
    double worst = 0;
    for (size_t i = 0; i < ad->tensors.size(); ++i) {
      for (int which = 0; which < 2; ++which) {
        std::vector<float>& p = which == 0 ? ad->tensors[i].a : ad->tensors[i].b;
        const std::vector<float>& grad = which == 0 ? g.a[i] : g.b[i];
        for (int dir = 0; dir < 2; ++dir) {
          std::vector<double> d(grad.begin(), grad.end());
          if (dir == 1)
            for (double& v : d) if (rng() & 1) v = 0;
          double norm = 0;
          for (double v : d) norm += v * v;
          norm = std::sqrt(norm);
          ASSERT_GT(norm, 0) << ad->tensors[i].base << (which ? " B" : " A") << ": zero gradient";
          double analytic = 0;
          for (size_t k = 0; k < d.size(); ++k) analytic += (d[k] /= norm) * grad[k];
          const std::vector<float> saved = p;
          auto loss_at = [&](double h) {
            for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<float>(saved[k] + h * d[k]);
            const double l = trainer.loss(tokens.data());
            p = saved;
            return l;
          };
          // Central differences at h and h/2, and their Richardson extrapolation (4 D(h/2) -
          // D(h)) / 3, which cancels the h^2 term of the truncation error.
          // Steps that move the loss by ~2e-3 either way (the derivative along d is `analytic`):
          // rounding then costs ~1e-8 / 2e-3 = 5e-6 relative, and the step stays where the loss
          // is close to its Taylor polynomial.
          const double h = std::min(0.05, 2e-3 / std::abs(analytic));
          const double d1 = (loss_at(h) - loss_at(-h)) / (2 * h);
          const double d2 = (loss_at(h / 2) - loss_at(-h / 2)) / h;
          const double rich = (4 * d2 - d1) / 3;
          const double e = std::abs(rich - analytic) / std::abs(analytic);
          worst = std::max(worst, e);
          EXPECT_LE(e, 1e-3) << family << " " << ad->tensors[i].base << (which ? " B" : " A") << " direction "
                             << dir << ": derivative " << analytic << ", differences " << d1 << " (h " << h << "), "
                             << d2 << " (h/2), extrapolated " << rich;
        }
      }
    }
    std::cout << family << ": " << ad->tensors.size() << " adapted matrices, worst relative error " << worst << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(Families, TrainFamilies, ::testing::Values("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"),
                         [](const auto& info) { return info.param; });

// Fine-tuning cut in two resumed pieces writes the same adapter, bit for bit, as one run.
TEST(Finetune, ResumedRunEqualsAStraightOne) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const fs::path text = temp_dir() / "train.txt";
  {
    std::ofstream f(text);
    for (int i = 0; i < 200; ++i) f << "Once upon a time there was a little girl named Lily. She liked to play. ";
  }
  slm::train::FinetuneOptions o;
  o.model_path = model.string();
  o.train_path = text.string();
  o.rank = 4, o.alpha = 8, o.ctx = 32, o.batch = 2, o.steps = 6, o.n_threads = 2, o.lr = 1e-2f;
  o.out_path = (temp_dir() / "straight.gguf").string();
  slm::train::finetune(o, {});
  o.out_path = (temp_dir() / "pieces.gguf").string();
  o.steps = 3;
  o.checkpoint_every = 3;
  slm::train::finetune(o, {});
  o.steps = 6;
  o.resume_path = o.out_path + ".ckpt";
  const auto r = slm::train::finetune(o, {});
  EXPECT_EQ(r.first_step, 3);
  const std::string a = slm::test::read_text_file(temp_dir() / "straight.gguf");
  const std::string b = slm::test::read_text_file(temp_dir() / "pieces.gguf");
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "the resumed adapter differs from the straight run's";
}

}  // namespace
