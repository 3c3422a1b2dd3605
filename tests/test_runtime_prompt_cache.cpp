// Prompt cache files (Session::save_state / load_state, KVCache::save_seq / restore_seq, and
// llama-cli's --prompt-cache, --prompt-cache-all, --prompt-cache-ro on slm run): a session
// loaded from a file continues exactly as the one that wrote it; a file for another model or
// settings, or a damaged one, is refused with what is wrong and leaves the session as it was.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/whole_file.h"
#include "models/model.h"
#include "runtime/session.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/tiny_gemma2.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using slm::DType;
using slm::KVTypes;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("slm-test-prompt-cache-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

slm::SessionOptions options(KVTypes types, int n_ctx = 256, int n_batch = 16) {
  slm::SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_threads = 2;
  so.n_batch = n_batch;
  so.kv_types = types;
  return so;
}

std::vector<int32_t> tokens_of(int n, int n_vocab, int seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + seed) % n_vocab);
  return t;
}

// A prompt evaluated and saved; a new session loads it and evaluates what follows: its logits
// are exactly those of the session that never stopped, token by token, and it evaluated only
// the rest.
void expect_round_trip(const slm::Model& model, const slm::SessionOptions& so, int n_prompt, const fs::path& file,
                       const std::string& what) {
  const int n_vocab = static_cast<int>(model.hparams().n_vocab);
  const std::vector<int32_t> prompt = tokens_of(n_prompt, n_vocab, 13), next = tokens_of(12, n_vocab, 101);
  slm::Session first(model, so);
  first.eval(prompt);
  first.save_state(file.string());
  std::vector<float> want;
  for (int32_t t : next) {
    const auto& l = first.eval(std::span<const int32_t>(&t, 1));
    want.insert(want.end(), l.begin(), l.begin() + n_vocab);
  }
  slm::Session second(model, so);
  second.load_state(file.string());
  EXPECT_EQ(second.tokens(), prompt) << what;
  std::vector<float> got;
  for (int32_t t : next) {
    const auto& l = second.eval(std::span<const int32_t>(&t, 1));
    got.insert(got.end(), l.begin(), l.begin() + n_vocab);
  }
  EXPECT_EQ(got, want) << what;
}

// stories260K's heads are 8 wide: an F16 cache keeps keys in blocks and values head by head, a
// q8_0 one keeps rows (quantized heads narrower than a block); both round-trip.
TEST(PromptCache, ALoadedSessionContinuesExactlyAsTheOneThatSavedIt) {
  SLM_REQUIRE_FIXTURE(model_path, "models/stories260K.gguf");
  auto model = slm::Model::load(model_path.string());
  TempDir dir;
  for (const KVTypes types : {KVTypes(DType::F16), KVTypes(DType::Q8_0), KVTypes(DType::F32, DType::Q8_0)})
    expect_round_trip(*model, options(types), 37, dir.path / "p.cache", slm::kv_types_name(types));
}

// tiny-gemma2 has sliding-window layers (window 8): after 40 positions their rings have
// wrapped, so the file holds them whole, and only a cache of the same capacity takes them
// back (a longer context and the same batch do: the rings' capacity comes from the window
// and the batch). Another batch size, a context too short, other cache types, another model:
// each refused, naming what differs, the session left empty.
TEST(PromptCache, WrappedRingsRoundTripAndOtherSettingsAreRefused) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-bert-bge.gguf");
  SLM_REQUIRE_FIXTURE(stories_path, "models/stories260K.gguf");
  TempDir dir;
  std::string error;
  const std::string gemma = slm::test::synth_tiny_gemma2(vocab, dir.path, &error);
  ASSERT_FALSE(gemma.empty()) << error;
  auto model = slm::Model::load(gemma);
  const fs::path file = dir.path / "g.cache";
  expect_round_trip(*model, options(DType::F16), 40, file, "tiny-gemma2 f16");
  expect_round_trip(*model, options(DType::Q4_0), 40, file, "tiny-gemma2 q4_0");
  expect_round_trip(*model, options(DType::F16, 512), 40, file, "tiny-gemma2, context 512");

  auto refused = [&](const slm::Model& m, const slm::SessionOptions& so, const std::string& expect) {
    slm::Session s(m, so);
    try {
      s.load_state(file.string());
      ADD_FAILURE() << "loaded; expected an error with \"" << expect << "\"";
    } catch (const slm::Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
    }
    EXPECT_EQ(s.n_past(), 0);
  };
  slm::Session writer(*model, options(DType::F16));
  writer.eval(tokens_of(40, static_cast<int>(model->hparams().n_vocab), 13));
  writer.save_state(file.string());
  refused(*model, options(DType::F16, 256, 4), "ring of");         // the rings' capacity differs
  refused(*model, options(DType::F16, 32), "context of 32");       // 40 positions
  refused(*model, options(DType::Q8_0), "another model or settings");
  auto stories = slm::Model::load(stories_path.string());
  refused(*stories, options(DType::F16), "another model or settings");

  // Damaged files: not one, cut short anywhere, bytes past the end.
  const std::string good = slm::read_whole_file(file.string(), "test");
  auto write = [&](const std::string& bytes) {
    std::ofstream(file, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  write("GGUF" + good.substr(4));
  refused(*model, options(DType::F16), "not a prompt cache file");
  for (size_t cut : {size_t{0}, size_t{5}, size_t{12}, good.size() / 3, good.size() / 2, good.size() - 1}) {
    write(good.substr(0, cut));
    refused(*model, options(DType::F16), "cut short");
  }
  write(good + "xyz");
  refused(*model, options(DType::F16), "past its end");
  write(good);
  slm::Session fine(*model, options(DType::F16));
  fine.load_state(file.string());
  EXPECT_EQ(fine.n_past(), 40);
}

// What a llama-cli user types: the second run with the same prompt prints the same text (greedy)
// and says it reused the prompt; a longer prompt reuses the common part; --prompt-cache-ro
// never writes; a file for other cache types is reported and replaced.
TEST(PromptCache, CommandLineReusesThePromptAcrossRuns) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  TempDir dir;
  const std::string file = (dir.path / "run.cache").string();
  const std::string prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"run", "-m", model.string(), "-p", prompt, "-n", "24", "--temp", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = slm::test::run_cli(args, 120);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r;
  };
  const auto plain = run({});
  const auto ro_missing = run({"--prompt-cache", file, "--prompt-cache-ro"});
  EXPECT_FALSE(fs::exists(file));
  EXPECT_NE(ro_missing.err.find("does not exist"), std::string::npos) << ro_missing.err;
  const auto first = run({"--prompt-cache", file});
  ASSERT_TRUE(fs::exists(file));
  const auto second = run({"--prompt-cache", file});
  EXPECT_EQ(first.out, plain.out);
  EXPECT_EQ(second.out, plain.out);
  EXPECT_NE(second.err.find("reused"), std::string::npos) << second.err;
  EXPECT_EQ(first.err.find("reused"), std::string::npos) << first.err;
  // The whole run's state with --prompt-cache-all: more tokens held than the prompt's.
  const auto all = run({"--prompt-cache", file, "--prompt-cache-all"});
  const auto after_all = run({"--prompt-cache", file, "--prompt-cache-ro"});
  EXPECT_EQ(after_all.out, plain.out);
  EXPECT_NE(after_all.err.find("tokens held"), std::string::npos) << after_all.err;
  const auto size_all = fs::file_size(file);
  run({"--prompt-cache", file});  // back to the prompt alone
  EXPECT_LT(fs::file_size(file), size_all);
  // Another cache type: reported, evaluated anew, the file replaced.
  const auto other = run({"--prompt-cache", file, "-ctk", "q8_0"});
  EXPECT_EQ(other.out, run({"-ctk", "q8_0"}).out);
  EXPECT_NE(other.err.find("another model or settings"), std::string::npos) << other.err;
  const auto again = run({"--prompt-cache", file, "-ctk", "q8_0"});
  EXPECT_NE(again.err.find("reused"), std::string::npos) << again.err;
}

}  // namespace
