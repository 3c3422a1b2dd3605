// Embedding models (architecture bert) against llama.cpp's llama-embedding (build de3ff81, see
// shared/fixtures/embeddings/README.md): token ids exact, pooled vectors with and without L2
// normalization within the README's tolerances, one sentence at a time and all 16 in one
// batch; the Embedder's batching, pooling and errors; and `slm embed` end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "convert/synth.h"
#include "core/error.h"
#include "core/gguf.h"
#include "kernels/isa.h"
#include "models/encoder.h"
#include "runtime/embedder.h"
#include "runtime/session.h"
#include "support/fixtures.h"
#include "support/forced_isa.h"
#include "support/rel_l2.h"
#include "support/run_cli.h"

namespace {

using slm::test::rel_l2;
using slm::test::run_cli;
using Vecs = std::vector<std::vector<float>>;

struct Case {
  const char* stem;        // under shared/fixtures/embeddings/, without .gguf
  double max_rel_l2;       // per sentence
  double min_cosine;       // per sentence
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.stem; }

const Case kCases[] = {
    {"bert-L2-E64-mean-F32", 1e-4, 0.0},
    {"bert-L3-E96-cls-F32", 1e-4, 0.0},
    {"bert-L2-E64-mean-Q8_0", 2e-2, 0.999},
};

std::string fixture(const std::string& stem, const char* ext) {
  return "fixtures/embeddings/" + stem + ext;
}

struct Reference {
  std::vector<std::string> sentences;
  std::vector<std::vector<int32_t>> tokens;
  Vecs normalized, raw;
};

Reference read_reference(const std::filesystem::path& p) {
  const auto j = nlohmann::json::parse(slm::test::read_text_file(p));
  Reference r;
  r.sentences = j["sentences"].get<std::vector<std::string>>();
  r.tokens = j["tokens"].get<std::vector<std::vector<int32_t>>>();
  r.normalized = j["normalize_l2"].get<Vecs>();
  r.raw = j["raw"].get<Vecs>();
  return r;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

// Every vector of `ours` against `ref` within the case's bounds; returns the worst error.
double expect_close(const Case& c, const Vecs& ref, const Vecs& ours, const char* what) {
  EXPECT_EQ(ours.size(), ref.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < std::min(ref.size(), ours.size()); ++i) {
    EXPECT_EQ(ours[i].size(), ref[i].size()) << what << " sentence " << i;
    if (ours[i].size() != ref[i].size()) continue;
    const double e = rel_l2(ref[i], ours[i]);
    worst = std::max(worst, e);
    EXPECT_LE(e, c.max_rel_l2) << c.stem << " " << what << " sentence " << i;
    if (c.min_cosine > 0) {
      EXPECT_GE(cosine(ref[i], ours[i]), c.min_cosine) << c.stem << " " << what << " sentence " << i;
    }
  }
  return worst;
}

class FixtureEmbeddings : public testing::TestWithParam<Case> {};

TEST_P(FixtureEmbeddings, TokensMatchLlamaCpp) {
  const Case& c = GetParam();
  SLM_REQUIRE_FIXTURE(model_path, fixture(c.stem, ".gguf"));
  SLM_REQUIRE_FIXTURE(ref_path, fixture(c.stem, ".embeddings.json"));
  const Reference ref = read_reference(ref_path);
  ASSERT_EQ(ref.sentences.size(), 16u);
  auto model = slm::Model::load(model_path.string());
  slm::Embedder emb(*model, 1);
  for (size_t i = 0; i < ref.sentences.size(); ++i)
    EXPECT_EQ(emb.tokenize(ref.sentences[i]), ref.tokens[i]) << "sentence " << i << ": " << ref.sentences[i];
}

TEST_P(FixtureEmbeddings, OneSentenceAtATime) {
  SLM_REQUIRE_FORCED_ISA();
  const Case& c = GetParam();
  SLM_REQUIRE_FIXTURE(model_path, fixture(c.stem, ".gguf"));
  SLM_REQUIRE_FIXTURE(ref_path, fixture(c.stem, ".embeddings.json"));
  const Reference ref = read_reference(ref_path);
  auto model = slm::Model::load(model_path.string());
  slm::Embedder emb(*model, 2);
  Vecs norm, raw;
  for (const std::string& s : ref.sentences) {
    norm.push_back(emb.embed_texts({s}, true).at(0));
    raw.push_back(emb.embed_texts({s}, false).at(0));
  }
  const double wn = expect_close(c, ref.normalized, norm, "normalized");
  const double wr = expect_close(c, ref.raw, raw, "raw");
  EXPECT_EQ(emb.stats().passes, 32);
  std::printf("  %s (one at a time, %s kernels): worst relative L2 normalized %.3g, raw %.3g\n", c.stem,
              slm::kern::isa_name(slm::kern::active_isa()), wn, wr);
}

TEST_P(FixtureEmbeddings, AllSixteenInOneBatch) {
  SLM_REQUIRE_FORCED_ISA();
  const Case& c = GetParam();
  SLM_REQUIRE_FIXTURE(model_path, fixture(c.stem, ".gguf"));
  SLM_REQUIRE_FIXTURE(ref_path, fixture(c.stem, ".embeddings.json"));
  const Reference ref = read_reference(ref_path);
  auto model = slm::Model::load(model_path.string());
  slm::Embedder emb(*model, 2);
  const Vecs norm = emb.embed(ref.tokens, true);
  EXPECT_EQ(emb.stats().passes, 1);  // 495 tokens in one pass of up to 512
  const Vecs raw = emb.embed(ref.tokens, false);
  const double wn = expect_close(c, ref.normalized, norm, "normalized");
  const double wr = expect_close(c, ref.raw, raw, "raw");
  std::printf("  %s (one batch, %s kernels): worst relative L2 normalized %.3g, raw %.3g\n", c.stem,
              slm::kern::isa_name(slm::kern::active_isa()), wn, wr);

  // The same vectors one at a time: batching changes nothing but rounding (llama.cpp: 9e-7).
  for (size_t i = 0; i < ref.tokens.size(); ++i)
    EXPECT_LE(rel_l2(raw[i], emb.embed({ref.tokens[i]}, false).at(0)), 1e-5) << "sentence " << i;
}

INSTANTIATE_TEST_SUITE_P(Models, FixtureEmbeddings, testing::ValuesIn(kCases),
                         [](const testing::TestParamInfo<Case>& info) {
                           std::string s = info.param.stem;
                           std::replace_if(s.begin(), s.end(), [](char ch) { return !isalnum(static_cast<unsigned char>(ch)); }, '_');
                           return s;
                         });

// ---- The Embedder and the encoder without reference files ------------------------------------

struct Loaded {
  std::unique_ptr<slm::Model> model;
  Reference ref;
};

#define SLM_LOAD_MEAN_MODEL(var)                                                             \
  SLM_REQUIRE_FIXTURE(var##_path, fixture("bert-L2-E64-mean-F32", ".gguf"));                 \
  SLM_REQUIRE_FIXTURE(var##_ref, fixture("bert-L2-E64-mean-F32", ".embeddings.json"));      \
  Loaded var{slm::Model::load(var##_path.string()), read_reference(var##_ref)};

TEST(Embedder, ReadsTheFilesPoolingAndShape) {
  SLM_LOAD_MEAN_MODEL(m);
  const auto* enc = dynamic_cast<const slm::EncoderModel*>(m.model.get());
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(enc->pooling(), slm::Pooling::Mean);
  EXPECT_FALSE(enc->causal());
  slm::Embedder emb(*m.model, 1);
  EXPECT_EQ(emb.dim(), 64);
  EXPECT_EQ(emb.max_tokens(), 512);
  EXPECT_EQ(emb.pooling(), slm::Pooling::Mean);
}

TEST(Embedder, SmallTokenBudgetGivesTheSameVectors) {
  SLM_LOAD_MEAN_MODEL(m);
  slm::Embedder one(*m.model, 2);
  slm::EmbedderOptions o;
  o.n_threads = 2;
  o.n_batch = 40;  // several sentences per pass, and the long ones alone
  slm::Embedder small(*m.model, o);
  const Vecs a = one.embed(m.ref.tokens, false), b = small.embed(m.ref.tokens, false);
  EXPECT_GT(small.stats().passes, 4);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(rel_l2(a[i], b[i]), 1e-5) << "sentence " << i;
}

TEST(Embedder, PoolingsAgreeWithThePerTokenStates) {
  SLM_LOAD_MEAN_MODEL(m);
  auto with = [&](slm::Pooling p) {
    slm::EmbedderOptions o;
    o.n_threads = 2;
    o.pooling = p;
    return slm::Embedder(*m.model, o).embed(m.ref.tokens, false);
  };
  const Vecs none = with(slm::Pooling::None), mean = with(slm::Pooling::Mean);
  const Vecs cls = with(slm::Pooling::Cls), last = with(slm::Pooling::Last);
  const size_t E = 64;
  for (size_t i = 0; i < none.size(); ++i) {
    const size_t n = m.ref.tokens[i].size();
    ASSERT_EQ(none[i].size(), n * E);
    std::vector<float> avg(E, 0.0f), first(none[i].begin(), none[i].begin() + E), end(none[i].end() - E, none[i].end());
    for (size_t r = 0; r < n; ++r)
      for (size_t c = 0; c < E; ++c) avg[c] += none[i][r * E + c] / static_cast<float>(n);
    EXPECT_LE(rel_l2(mean[i], avg), 1e-5);
    EXPECT_EQ(cls[i], first);
    EXPECT_EQ(last[i], end);
  }
  // Pooling none normalizes every token's row.
  slm::EmbedderOptions o;
  o.pooling = slm::Pooling::None;
  const Vecs rows = slm::Embedder(*m.model, o).embed({m.ref.tokens[1]}, true);
  for (size_t r = 0; r < m.ref.tokens[1].size(); ++r) {
    double s = 0;
    for (size_t c = 0; c < E; ++c) s += rows[0][r * E + c] * rows[0][r * E + c];
    EXPECT_NEAR(s, 1.0, 1e-5);
  }
}

// A batch built by hand with two sequences interleaved and out of position order encodes each
// sequence as if it were alone.
TEST(Embedder, InterleavedSequencesStayApart) {
  SLM_LOAD_MEAN_MODEL(m);
  const auto& enc = dynamic_cast<const slm::EncoderModel&>(*m.model);
  const std::vector<int32_t>& a = m.ref.tokens[2];  // 12 tokens
  const std::vector<int32_t>& b = m.ref.tokens[3];  // 9 tokens
  slm::ComputeContext ctx(2);
  auto alone = [&](const std::vector<int32_t>& s) {
    slm::Batch batch;
    for (size_t p = 0; p < s.size(); ++p) batch.add(s[p], static_cast<int32_t>(p), 0, true);
    std::vector<float> h(s.size() * 64);
    enc.encode(ctx, batch, h.data());
    return h;
  };
  const std::vector<float> ha = alone(a), hb = alone(b);
  slm::Batch mixed;
  std::vector<std::pair<int, size_t>> where;  // (sequence, position) of each batch token
  for (size_t p = 0; p < std::max(a.size(), b.size()); ++p) {
    const size_t pa = a.size() - 1 - p;  // a backwards
    if (p < a.size()) { mixed.add(a[pa], static_cast<int32_t>(pa), 7, true); where.push_back({7, pa}); }
    if (p < b.size()) { mixed.add(b[p], static_cast<int32_t>(p), 3, true); where.push_back({3, p}); }
  }
  std::vector<float> h(where.size() * 64);
  enc.encode(ctx, mixed, h.data());
  for (size_t t = 0; t < where.size(); ++t) {
    const std::vector<float>& ref = where[t].first == 7 ? ha : hb;
    const std::vector<float> got(h.begin() + t * 64, h.begin() + (t + 1) * 64);
    const std::vector<float> want(ref.begin() + where[t].second * 64, ref.begin() + (where[t].second + 1) * 64);
    EXPECT_LE(rel_l2(want, got), 1e-5) << "batch token " << t;
  }
}

// A copy of a fixture with Q/K/V fused into attn_qkv (rows [Q | K | V], as llama.cpp accepts)
// and/or with bert.attention.causal set.
std::filesystem::path rewrite_fixture(const std::filesystem::path& src, const std::string& name, bool fuse,
                                      bool causal) {
  auto f = slm::GGUFFile::open(src.string());
  slm::GGUFWriter w;
  for (const auto& [k, v] : f->metadata()) w.set(k, v);
  if (causal) w.set("bert.attention.causal", slm::GGUFValue::boolean(true));
  for (const slm::TensorInfo& t : f->tensors()) {
    const auto dot = t.name.find(".attn_");
    if (fuse && dot != std::string::npos) {
      const std::string layer = t.name.substr(0, dot), what = t.name.substr(dot + 6);  // "q.weight"
      if (what == "k.weight" || what == "v.weight" || what == "k.bias" || what == "v.bias") continue;
      if (what == "q.weight" || what == "q.bias") {
        const std::string suffix = what.substr(1);  // ".weight" / ".bias"
        std::vector<uint8_t> fused;
        for (const char* m : {"q", "k", "v"}) {
          const slm::TensorInfo* part = f->find_tensor(layer + ".attn_" + m + suffix);
          fused.insert(fused.end(), part->data, part->data + part->nbytes);
        }
        std::vector<int64_t> ne = t.ne;
        ne.back() *= 3;
        w.add_tensor(layer + ".attn_qkv" + suffix, t.type, ne, fused.data(), fused.size());
        continue;
      }
    }
    w.add_tensor(t.name, t.type, t.ne, t.data, t.nbytes, /*copy=*/false);
  }
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() / (name + "_" + std::to_string(getpid()) + ".gguf");
  w.write(out.string());
  return out;
}

TEST(Embedder, FusedQkvGivesTheSameVectors) {
  SLM_LOAD_MEAN_MODEL(m);
  const auto fused_path = rewrite_fixture(m_path, "slm_bert_fused", true, false);
  auto fused = slm::Model::load(fused_path.string());
  ASSERT_NE(fused->gguf().find_tensor("blk.1.attn_qkv.weight"), nullptr);
  ASSERT_EQ(fused->gguf().find_tensor("blk.1.attn_q.weight"), nullptr);
  const Vecs a = slm::Embedder(*m.model, 2).embed(m.ref.tokens, false);
  const Vecs b = slm::Embedder(*fused, 2).embed(m.ref.tokens, false);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(rel_l2(a[i], b[i]), 1e-6) << "sentence " << i;
  std::filesystem::remove(fused_path);
}

// With bert.attention.causal a token sees only its own and earlier positions: the first token
// of any text then ends where the text "[CLS]" alone ends, and the last token differs from the
// bidirectional model's.
TEST(Embedder, CausalAttentionSeesOnlyEarlierPositions) {
  SLM_LOAD_MEAN_MODEL(m);
  const auto causal_path = rewrite_fixture(m_path, "slm_bert_causal", false, true);
  auto causal = slm::Model::load(causal_path.string());
  ASSERT_TRUE(dynamic_cast<const slm::EncoderModel&>(*causal).causal());
  slm::EmbedderOptions o;
  o.n_threads = 2;
  o.pooling = slm::Pooling::None;
  slm::Embedder bidi(*m.model, o), caus(*causal, o);
  const Vecs alone = bidi.embed({{101}}, false);
  const Vecs rows = caus.embed(m.ref.tokens, false);
  const Vecs rows_bidi = bidi.embed(m.ref.tokens, false);
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t n = m.ref.tokens[i].size();
    EXPECT_LE(rel_l2(alone[0], std::vector<float>(rows[i].begin(), rows[i].begin() + 64)), 1e-6) << i;
    if (n > 1) {
      const std::vector<float> last(rows[i].end() - 64, rows[i].end()), last_bidi(rows_bidi[i].end() - 64, rows_bidi[i].end());
      EXPECT_GT(rel_l2(last_bidi, last), 1e-4) << i;  // numerical noise is ~1e-7
    }
    // Token p of a causal pass equals the last token of the text cut after p.
    if (n > 4) {
      const std::vector<int32_t> prefix(m.ref.tokens[i].begin(), m.ref.tokens[i].begin() + 4);
      const Vecs cut = caus.embed({prefix}, false);
      EXPECT_LE(rel_l2(std::vector<float>(cut[0].end() - 64, cut[0].end()),
                       std::vector<float>(rows[i].begin() + 3 * 64, rows[i].begin() + 4 * 64)), 1e-5) << i;
    }
  }
  std::filesystem::remove(causal_path);
}

TEST(Embedder, BadInputIsAClearError) {
  SLM_LOAD_MEAN_MODEL(m);
  slm::Embedder emb(*m.model, 1);
  auto message = [&](const std::vector<std::vector<int32_t>>& seqs) -> std::string {
    try {
      emb.embed(seqs);
    } catch (const slm::Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message({{101, 102}, {}}).find("sequence 1 to embed is empty"), std::string::npos);
  const std::string too_long = message({std::vector<int32_t>(513, 1037)});
  EXPECT_NE(too_long.find("513 tokens"), std::string::npos) << too_long;
  EXPECT_NE(too_long.find("512"), std::string::npos) << too_long;
  EXPECT_NE(message({{101, 40000, 102}}).find("outside the vocabulary"), std::string::npos);
  EXPECT_TRUE(emb.embed({}).empty());
  EXPECT_EQ(emb.embed({std::vector<int32_t>(512, 1037)}).at(0).size(), 64u);  // the whole context fits

  // The encoder has no output head: generating text with it is an error, not garbage.
  slm::SessionOptions so;
  so.n_ctx = 16;
  slm::Session session(*m.model, so);
  const std::vector<int32_t> toks = {101, 102};
  try {
    session.eval(toks);
    ADD_FAILURE() << "no error";
  } catch (const slm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("embedding model"), std::string::npos) << e.what();
  }
}

// A decoder's embedding is its final normalized hidden state (llama.cpp's --pooling last): the
// vector that the output matrix turns into that token's logits. Checked through the logits the
// model computes itself, on each decoder family's F32 fixture.
TEST(Embedder, DecoderEmbeddingIsTheStateTheLogitsComeFrom) {
  for (const char* rel : {"fixtures/logits/llama-L2-E64-F32.gguf", "fixtures/logits/qwen2-L2-E64-F32.gguf",
                          "fixtures/logits/gemma2-L4-E64-F32.gguf", "fixtures/logits/phi3-L3-E64-F32.gguf"}) {
    SCOPED_TRACE(rel);
    SLM_REQUIRE_FIXTURE(path, rel);
    auto model = slm::Model::load(path.string());
    const auto& hp = model->hparams();
    slm::Embedder emb(*model, 2);
    EXPECT_EQ(emb.pooling(), slm::Pooling::Last);
    const std::vector<std::vector<int32_t>> seqs = {{1, 5, 9, 13, 40}, {2, 7}, {3, 11, 19}};
    const Vecs h = emb.embed(seqs, false);
    const Vecs unit = emb.embed(seqs, true);
    const slm::TensorInfo* w = model->gguf().find_tensor("output.weight");
    if (!w) w = model->gguf().find_tensor("token_embd.weight");
    ASSERT_TRUE(w && w->type == slm::DType::F32);
    const float* W = reinterpret_cast<const float*>(w->data);
    const int64_t E = hp.n_embd, V = hp.n_vocab;
    for (size_t i = 0; i < seqs.size(); ++i) {
      ASSERT_EQ(h[i].size(), static_cast<size_t>(E));
      // The same sequence alone through the model, logits of its last token.
      auto cache = model->make_cache(16, 1, 16, slm::DType::F32);
      slm::Batch b;
      for (size_t p = 0; p < seqs[i].size(); ++p) b.add(seqs[i][p], static_cast<int32_t>(p), 0, p + 1 == seqs[i].size());
      std::vector<float> logits(static_cast<size_t>(V));
      slm::ComputeContext ctx(1);
      model->forward(ctx, b, *cache, logits.data());
      std::vector<float> mine(static_cast<size_t>(V));
      for (int64_t v = 0; v < V; ++v) {
        double d = 0;
        for (int64_t e = 0; e < E; ++e) d += static_cast<double>(h[i][e]) * W[v * E + e];
        mine[v] = hp.final_softcap > 0 ? std::tanh(static_cast<float>(d) / hp.final_softcap) * hp.final_softcap : static_cast<float>(d);
      }
      EXPECT_LE(rel_l2(logits, mine), 1e-4) << "sequence " << i;
      double n2 = 0;
      for (float x : unit[i]) n2 += static_cast<double>(x) * x;
      EXPECT_NEAR(n2, 1.0, 1e-5);
    }
  }
}

TEST(Embedder, NormalizeL2) {
  std::vector<float> v = {3, 4};
  slm::normalize_l2(v);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  EXPECT_FLOAT_EQ(v[1], 0.8f);
  std::vector<float> z = {0, 0, 0};
  slm::normalize_l2(z);
  EXPECT_EQ(z, std::vector<float>(3, 0.0f));
}

// ---- slm embed ----------------------------------------------------------------------------------

std::vector<float> parse_floats(const std::string& line) {
  std::istringstream ss(line);
  std::vector<float> v;
  float x;
  while (ss >> x) v.push_back(x);
  return v;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream ss(s);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

bool one_line_error(const slm::test::RunResult& r) {
  return r.exit_code == 1 && r.out.empty() && r.err.rfind("slm: error: ", 0) == 0 &&
         r.err.find('\n') == r.err.size() - 1;
}

TEST(CliEmbed, PromptsGiveOneNormalizedVectorPerLine) {
  SLM_LOAD_MEAN_MODEL(m);
  const auto r = run_cli({"embed", "-m", m_path.string(), "-t", "2", "-p", m.ref.sentences[1], "-p", m.ref.sentences[5]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_LE(rel_l2(m.ref.normalized[1], parse_floats(lines[0])), 1e-4);
  EXPECT_LE(rel_l2(m.ref.normalized[5], parse_floats(lines[1])), 1e-4);
}

TEST(CliEmbed, FileOfSixteenLinesRawAndJson) {
  SLM_LOAD_MEAN_MODEL(m);
  const std::filesystem::path file = std::filesystem::temp_directory_path() / ("slm_embed_" + std::to_string(getpid()) + ".txt");
  {
    std::ofstream f(file, std::ios::binary);
    for (const std::string& s : m.ref.sentences) f << s << "\n";
  }
  auto r = run_cli({"embed", "-m", m_path.string(), "-t", "2", "--file", file.string(), "--no-normalize"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 16u);
  for (size_t i = 0; i < 16; ++i) EXPECT_LE(rel_l2(m.ref.raw[i], parse_floats(lines[i])), 1e-4) << "line " << i + 1;

  r = run_cli({"embed", "-m", m_path.string(), "-t", "2", "--file", file.string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 16u);
  for (size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(j[i]["text"].get<std::string>(), m.ref.sentences[i]);
    EXPECT_EQ(j[i]["tokens"].get<std::vector<int32_t>>(), m.ref.tokens[i]);
    EXPECT_LE(rel_l2(m.ref.normalized[i], j[i]["embedding"].get<std::vector<float>>()), 1e-4) << "text " << i;
  }
  std::filesystem::remove(file);
}

TEST(CliEmbed, BadRequestsFailWithOneLine) {
  SLM_LOAD_MEAN_MODEL(m);
  const std::string model = m_path.string();
  auto r = run_cli({"embed", "-m", model});
  EXPECT_TRUE(one_line_error(r)) << r.err;
  EXPECT_NE(r.err.find("-p TEXT or --file"), std::string::npos) << r.err;

  r = run_cli({"embed", "-m", model, "-p", "fine", "-p", ""});
  EXPECT_TRUE(one_line_error(r)) << r.err;
  EXPECT_NE(r.err.find("-p 2 is empty"), std::string::npos) << r.err;

  const std::filesystem::path file = std::filesystem::temp_directory_path() / ("slm_embed_bad_" + std::to_string(getpid()) + ".txt");
  { std::ofstream(file) << "one\n\nthree\n"; }
  r = run_cli({"embed", "-m", model, "--file", file.string()});
  EXPECT_TRUE(one_line_error(r)) << r.err;
  EXPECT_NE(r.err.find("line 2 is empty"), std::string::npos) << r.err;
  { std::ofstream(file) << ""; }
  r = run_cli({"embed", "-m", model, "--file", file.string()});
  EXPECT_TRUE(one_line_error(r)) << r.err;
  EXPECT_NE(r.err.find("no text to embed"), std::string::npos) << r.err;
  std::filesystem::remove(file);

  std::string long_text;
  for (int i = 0; i < 600; ++i) long_text += "a ";
  r = run_cli({"embed", "-m", model, "-p", long_text});
  EXPECT_TRUE(one_line_error(r)) << r.err;
  EXPECT_NE(r.err.find("602 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("context of 512"), std::string::npos) << r.err;

  r = run_cli({"run", "-m", model, "-p", "hello", "-n", "4"});
  EXPECT_TRUE(one_line_error(r)) << r.err;
  EXPECT_NE(r.err.find("embedding model"), std::string::npos) << r.err;
}

TEST(CliEmbed, DecoderModelEmbedsWithItsLastToken) {
  SLM_REQUIRE_FIXTURE(model, "fixtures/logits/llama-L2-E64-F32.gguf");
  const auto r = run_cli({"embed", "-m", model.string(), "--json", "-p", "Once upon a time", "-p", "the end"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["embedding"].size(), 64u);
  EXPECT_NE(j[0]["embedding"], j[1]["embedding"]);
}

// ---- slm synth's BERT shapes ----------------------------------------------------------------

TEST(SynthBert, BgeSmallHasItsRealTensorsAndParameterCount) {
  const auto* s = slm::convert::find_synth_shape("bge-small-en-v1.5");
  ASSERT_NE(s, nullptr);
  const auto plan = slm::convert::synth_plan(*s, 30522, slm::DType::F16);
  int64_t params = 0;
  for (const auto& t : plan) {
    params += t.nelements();
    if (t.ne.size() == 1 || t.name == "position_embd.weight" || t.name == "token_types.weight") {
      EXPECT_EQ(t.type, slm::DType::F32) << t.name;
    } else {
      EXPECT_EQ(t.type, slm::DType::F16) << t.name;
    }
  }
  EXPECT_EQ(plan.size(), 5u + 12u * 16u);
  // Hugging Face's 33,360,000 less BERT's pooler (384 x 384 + 384), which the converter drops.
  EXPECT_EQ(params, 33360000 - 147840);
}

TEST(SynthBert, TinyBertWritesAModelThatEmbeds) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-bert-bge.gguf");
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() / ("slm_tiny_bert_" + std::to_string(getpid()) + ".gguf");
  auto r = run_cli({"synth", "--like", "tiny-bert", "--vocab", vocab.string(), "-o", out.string(), "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto model = slm::Model::load(out.string());
  const auto* enc = dynamic_cast<const slm::EncoderModel*>(model.get());
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(enc->pooling(), slm::Pooling::Cls);
  EXPECT_EQ(model->hparams().n_vocab, 30522);
  slm::Embedder emb(*model, 2);
  const Vecs v = emb.embed_texts({"hello world", "a different sentence"});
  ASSERT_EQ(v.size(), 2u);
  ASSERT_EQ(v[0].size(), 64u);
  for (float x : v[0]) ASSERT_TRUE(std::isfinite(x));
  EXPECT_NE(v[0], v[1]);
  r = run_cli({"embed", "-m", out.string(), "-p", "hello world", "-t", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(rel_l2(v[0], parse_floats(r.out)), 1e-6);
  std::filesystem::remove(out);
}

}  // namespace
