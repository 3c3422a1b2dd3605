// Models ollama has pulled, by name (core/ollama_store.h): a folder laid out as ollama's
// (manifests/HOST/NAMESPACE/MODEL/TAG naming blobs/sha256-HEX) built here around stories260K;
// `-m NAME` in its short and long forms opens the blob and generates what the file does; names
// ollama lacks, broken manifests and missing blobs are errors that say which and where.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/gguf.h"
#include "core/ollama_store.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;

const std::string kDigest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// A manifest at manifests/REL of the models folder `store`.
void write_manifest(const fs::path& store, const fs::path& rel, const std::string& json) {
  fs::create_directories((store / "manifests" / rel).parent_path());
  std::ofstream(store / "manifests" / rel) << json;
}

// ollama's manifest: a config, a template layer, and the model layer naming `digest`.
std::string manifest_for(const std::string& digest) {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",)"
         R"("config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:)" + kDigest + R"(","size":487},)"
         R"("layers":[{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:)" + kDigest + R"(","size":10},)"
         R"({"mediaType":"application/vnd.ollama.image.model","digest":")" + digest + R"(","size":1185664}]})";
}

class OllamaStore : public testing::Test {
 protected:
  void SetUp() override {
    model_ = slm::test::shared_dir() / "models/stories260K.gguf";
    if (!fs::exists(model_)) {
      if (slm::test::running_in_ci()) FAIL() << "missing fixture " << model_;
      GTEST_SKIP() << "missing fixture " << model_;
    }
    store_ = dir_.path() / "models";
    fs::create_directories(store_ / "blobs");
    fs::copy_file(model_, store_ / "blobs" / ("sha256-" + kDigest), fs::copy_options::overwrite_existing);
    write_manifest(store_, "registry.ollama.ai/library/stories/latest", manifest_for("sha256:" + kDigest));
    write_manifest(store_, "registry.ollama.ai/library/stories/260k-f32", manifest_for("sha256:" + kDigest));
    write_manifest(store_, "registry.ollama.ai/someone/tiny/q8", manifest_for("sha256:" + kDigest));
    write_manifest(store_, "hf.co/someone/repo/Q8_0", manifest_for("sha256:" + kDigest));
    setenv("OLLAMA_MODELS", store_.c_str(), 1);
  }
  void TearDown() override { unsetenv("OLLAMA_MODELS"); }

  std::string open_error(const std::string& name) {
    try {
      slm::GGUFFile::open(name);
    } catch (const slm::Error& e) {
      return e.what();
    }
    return "(no error)";
  }

  slm::test::ProgramTempDir dir_{"ollama-store"};
  fs::path model_, store_;
};

TEST_F(OllamaStore, NamesInEachFormOpenTheBlob) {
  const std::string blob = (store_ / "blobs" / ("sha256-" + kDigest)).string();
  for (const std::string name : {"stories", "stories:latest", "stories:260k-f32", "library/stories",
                                 "registry.ollama.ai/library/stories:latest", "someone/tiny:q8", "hf.co/someone/repo:Q8_0"}) {
    const auto found = slm::find_ollama_model(name);
    ASSERT_TRUE(found) << name;
    EXPECT_EQ(*found, blob) << name;
    EXPECT_EQ(slm::GGUFFile::open(name)->tensors().size(), 48u) << name;
  }
  EXPECT_FALSE(slm::find_ollama_model("stories:other"));
  EXPECT_FALSE(slm::find_ollama_model("nobody/stories"));
  for (const std::string path : {"./stories", "/tmp/stories", "stories.gguf", "~/stories", "a/../b", "a b", ""})
    EXPECT_FALSE(slm::looks_like_ollama_name(path)) << path;
}

TEST_F(OllamaStore, WhatIsWrongIsSaid) {
  const std::string none = open_error("llama3.2:1b");
  EXPECT_NE(none.find("no such file, and not a model ollama has pulled"), std::string::npos) << none;
  EXPECT_NE(none.find(store_.string()), std::string::npos) << none;
  // A path that is not a name keeps the file's own error.
  EXPECT_NE(open_error("missing.gguf").find("cannot open"), std::string::npos);

  write_manifest(store_, "registry.ollama.ai/library/broken/latest", "{not json");
  EXPECT_NE(open_error("broken").find("is not JSON"), std::string::npos);
  write_manifest(store_, "registry.ollama.ai/library/nolayer/latest", R"({"layers":[]})");
  EXPECT_NE(open_error("nolayer").find("has no model layer"), std::string::npos);
  write_manifest(store_, "registry.ollama.ai/library/baddigest/latest", manifest_for("md5:1234"));
  EXPECT_NE(open_error("baddigest").find("not a sha256 digest"), std::string::npos);
  const std::string other(64, 'e');
  write_manifest(store_, "registry.ollama.ai/library/gone/latest", manifest_for("sha256:" + other));
  const std::string gone = open_error("gone");
  EXPECT_NE(gone.find("sha256-" + other), std::string::npos) << gone;
  EXPECT_NE(gone.find("is missing"), std::string::npos) << gone;
}

TEST_F(OllamaStore, RunTakesAnOllamaName) {
  const std::vector<std::string> gen = {"-p", "Once upon a time", "-n", "24", "--temp", "0"};
  auto run = [&](const std::string& m) {
    std::vector<std::string> args = {"run", "-m", m};
    args.insert(args.end(), gen.begin(), gen.end());
    return slm::test::run_cli(args);
  };
  const auto by_file = run(model_.string()), by_name = run("stories:260k-f32");
  ASSERT_EQ(by_file.exit_code, 0) << by_file.err;
  ASSERT_EQ(by_name.exit_code, 0) << by_name.err;
  EXPECT_EQ(by_name.out, by_file.out);
  const auto missing = run("qwen2.5:0.5b");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("not a model ollama has pulled"), std::string::npos) << missing.err;
}

}  // namespace
