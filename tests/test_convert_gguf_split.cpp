// Split models (llama.cpp's gguf-split; `slm gguf-split`): a model written as parts loads from
// any part with the same metadata, tensors and logits as the whole file; merging the parts gives
// the original file back byte for byte; a missing, foreign, renamed or damaged part is an error
// that names the part and what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "convert/gguf_split.h"
#include "convert/quantize.h"
#include "core/error.h"
#include "core/gguf.h"
#include "models/model.h"
#include "runtime/session.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using slm::GGUFFile;
using slm::GGUFType;
using slm::convert::SplitOptions;

const slm::test::ProgramTempDir& temp() {
  static const slm::test::ProgramTempDir dir("gguf-split");
  return dir;
}

// A fresh folder for one test (parts are refused where older ones exist).
fs::path fresh_dir(const std::string& name) {
  const fs::path d = temp().path() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<std::string> split(const std::string& in, const fs::path& prefix, const SplitOptions& opts) {
  auto f = GGUFFile::open(in);
  const auto parts = slm::convert::plan_split(*f, prefix.string(), opts);
  slm::convert::write_split(*f, parts, false);
  std::vector<std::string> paths;
  for (const auto& p : parts) {
    EXPECT_EQ(fs::file_size(p.path), p.bytes) << p.path << ": the plan's size is the file's";
    paths.push_back(p.path);
  }
  return paths;
}

// `model` in parts of max_tensors tensors, as DIR/st-0000i-of-0000n.gguf in a fresh folder DIR.
std::vector<std::string> split_by_tensors(const fs::path& model, const std::string& dir_name, int max_tensors) {
  SplitOptions opts;
  opts.max_tensors = max_tensors;
  return split(model.string(), fresh_dir(dir_name) / "st", opts);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const slm::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Logits of every position of a 40-token prompt (long enough for the repacked panel kernels).
std::vector<float> prompt_logits(const std::string& path) {
  auto model = slm::Model::load(path);
  slm::SessionOptions so;
  so.n_ctx = 64;
  so.n_threads = 2;
  slm::Session s(*model, so);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back(1 + (i * 37) % 500);
  return s.eval(tokens, true);
}

TEST(GgufSplit, PartsLoadAsTheWholeFileFromAnyPart) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto paths = split_by_tensors(model, "by-tensors", 20);
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(fs::path(paths[0]).filename(), "st-00001-of-00003.gguf");
  EXPECT_EQ(fs::path(paths[2]).filename(), "st-00003-of-00003.gguf");

  auto whole = GGUFFile::open(model.string());
  for (const std::string& from : paths) {
    auto f = GGUFFile::open(from);
    EXPECT_EQ(f->path(), paths[0]) << "opened from " << from;
    const auto parts = f->parts();
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_EQ(parts[0].n_tensors, 20u);
    EXPECT_EQ(parts[1].n_tensors, 20u);
    EXPECT_EQ(parts[2].n_tensors, 8u);
    uint64_t sizes = 0;
    for (const std::string& p : paths) sizes += fs::file_size(p);
    EXPECT_EQ(f->file_size(), sizes);
    // The original metadata in its order, then the three split keys with gguf-split's types.
    const auto& kv = f->metadata();
    ASSERT_EQ(kv.size(), whole->metadata().size() + 3);
    for (size_t i = 0; i < whole->metadata().size(); ++i) EXPECT_EQ(kv[i], whole->metadata()[i]) << kv[i].first;
    const size_t n = whole->metadata().size();
    EXPECT_EQ(kv[n].first, "split.no");
    EXPECT_EQ(kv[n].second.type, GGUFType::UINT16);
    EXPECT_EQ(kv[n].second.as_int(), 0);
    EXPECT_EQ(kv[n + 1].first, "split.count");
    EXPECT_EQ(kv[n + 1].second.type, GGUFType::UINT16);
    EXPECT_EQ(kv[n + 1].second.as_int(), 3);
    EXPECT_EQ(kv[n + 2].first, "split.tensors.count");
    EXPECT_EQ(kv[n + 2].second.type, GGUFType::INT32);
    EXPECT_EQ(kv[n + 2].second.as_int(), 48);
    // Every tensor, in order, with the same bytes, read from the part it lies in.
    ASSERT_EQ(f->tensors().size(), whole->tensors().size());
    for (size_t i = 0; i < whole->tensors().size(); ++i) {
      const auto &a = whole->tensors()[i], &b = f->tensors()[i];
      EXPECT_EQ(a.name, b.name);
      EXPECT_EQ(a.ne, b.ne);
      ASSERT_EQ(a.nbytes, b.nbytes);
      EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << a.name;
      EXPECT_EQ(b.file->path(), paths[i < 20 ? 0 : i < 40 ? 1 : 2]) << a.name;
    }
  }
  EXPECT_EQ(prompt_logits(paths[1]), prompt_logits(model.string()));
}

TEST(GgufSplit, QuantizedPartsGiveTheWholeFilesLogitsAndQuantizeAsIt) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const fs::path dir = fresh_dir("q8");
  const fs::path q8 = dir / "q8.gguf";
  slm::convert::QuantizeOptions qo;
  qo.n_threads = 2;
  qo.progress = false;
  slm::convert::quantize_file(model.string(), q8.string(), "Q8_0", qo);
  SplitOptions opts;
  opts.max_tensors = 7;
  const auto paths = split(q8.string(), dir / "q8-split", opts);
  EXPECT_EQ(paths.size(), 7u);  // 48 tensors, 7 a part
  // Repacked weights are read from each tensor's own part (pread), not the first file.
  EXPECT_EQ(prompt_logits(paths[0]), prompt_logits(q8.string()));
  // A split input quantizes to what the whole file does: no split keys carried over.
  const auto f32_paths = split(model.string(), dir / "f32-split", opts);
  const fs::path from_parts = dir / "from-parts.gguf";
  slm::convert::quantize_file(f32_paths[3], from_parts.string(), "Q8_0", qo);
  EXPECT_TRUE(slm::test::read_text_file(from_parts.string()) == slm::test::read_text_file(q8.string())) << "files differ";
}

TEST(GgufSplit, BySizeEveryPartHoldsAtLeastOneTensorAndFirstPartMayHoldNone) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  auto whole = GGUFFile::open(model.string());
  SplitOptions opts;
  opts.max_bytes = 300000;
  auto f = GGUFFile::open(model.string());
  const auto plan = slm::convert::plan_split(*f, "x", opts);
  size_t total = 0;
  for (const auto& p : plan) {
    ASSERT_FALSE(p.tensors.empty()) << p.path;
    uint64_t data = 0;
    for (size_t i : p.tensors) data += (whole->tensors()[i].nbytes + 31) / 32 * 32;
    EXPECT_TRUE(data <= opts.max_bytes || p.tensors.size() == 1) << p.path << " holds " << data << " bytes";
    total += p.tensors.size();
  }
  EXPECT_EQ(total, whole->tensors().size());
  EXPECT_GT(plan.size(), 3u);

  opts.max_bytes = 1;  // every tensor over the limit: one part each, none empty
  EXPECT_EQ(slm::convert::plan_split(*f, "x", opts).size(), whole->tensors().size());

  const fs::path dir = fresh_dir("meta-first");
  SplitOptions meta_first;
  meta_first.max_tensors = 100;
  meta_first.no_tensor_first_split = true;
  const auto paths = split(model.string(), dir / "m", meta_first);
  ASSERT_EQ(paths.size(), 2u);
  auto g = GGUFFile::open(paths[0]);
  EXPECT_EQ(g->parts()[0].n_tensors, 0u);
  EXPECT_EQ(g->parts()[1].n_tensors, 48u);
  EXPECT_EQ(prompt_logits(paths[0]), prompt_logits(model.string()));
}

TEST(GgufSplit, MergingThePartsGivesTheOriginalFileBack) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto paths = split_by_tensors(model, "merge", 16);
  const fs::path dir = fs::path(paths[0]).parent_path();
  auto f = GGUFFile::open(paths[2]);
  slm::convert::merge_split(*f, (dir / "merged.gguf").string(), false);
  EXPECT_TRUE(slm::test::read_text_file((dir / "merged.gguf").string()) == slm::test::read_text_file(model.string())) << "files differ";
  EXPECT_NE(error_of([&] { slm::convert::merge_split(*f, (dir / "merged.gguf").string(), false); }).find("already exists"),
            std::string::npos);
  auto whole = GGUFFile::open(model.string());
  EXPECT_NE(error_of([&] { slm::convert::merge_split(*whole, (dir / "m2.gguf").string(), false); }).find("not a split model"),
            std::string::npos);
  // Writing parts over existing ones is refused before anything is written.
  SplitOptions opts;
  opts.max_tensors = 16;
  const auto plan = slm::convert::plan_split(*whole, (dir / "st").string(), opts);
  EXPECT_NE(error_of([&] { slm::convert::write_split(*whole, plan, false); }).find("already exists"), std::string::npos);
}

TEST(GgufSplit, MissingForeignRenamedOrDamagedPartsAreNamed) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto paths = split_by_tensors(model, "bad", 20);
  const fs::path dir = fs::path(paths[0]).parent_path();
  auto open_error = [](const std::string& p) { return error_of([&] { GGUFFile::open(p); }); };
  auto expect_has = [](const std::string& msg, const std::vector<std::string>& parts) {
    for (const std::string& s : parts) EXPECT_NE(msg.find(s), std::string::npos) << "'" << s << "' not in: " << msg;
  };

  // A missing part.
  fs::rename(paths[2], dir / "away");
  expect_has(open_error(paths[0]), {"part 3 of 3", "st-00003-of-00003.gguf", "is missing", "--merge"});
  fs::rename(dir / "away", paths[2]);

  // Part 3's file under part 2's name: it says it is another part.
  fs::rename(paths[1], dir / "away");
  fs::copy_file(paths[2], paths[1]);
  expect_has(open_error(paths[0]), {"st-00002-of-00003.gguf", "expected part 2 of 3", "split.no = 2"});
  fs::remove(paths[1]);

  // Part 2 of another split of the same model (its tensors differ): counted and named.
  {
    const auto other_paths = split_by_tensors(model, "bad-other", 17);
    ASSERT_EQ(other_paths.size(), 3u);
    fs::copy_file(other_paths[1], paths[1]);
    const std::string msg = open_error(paths[0]);
    EXPECT_TRUE(msg.find("also in an earlier part") != std::string::npos ||
                msg.find("says it has 48 tensors") != std::string::npos)
        << msg;
    fs::remove(paths[1]);
  }
  fs::rename(dir / "away", paths[1]);

  // A renamed first part: the other parts cannot be found from its name.
  fs::copy_file(paths[0], dir / "model.gguf");
  expect_has(open_error((dir / "model.gguf").string()), {"model.gguf", "-00001-of-00003.gguf", "cannot be found"});
  fs::copy_file(paths[1], dir / "second.gguf");
  expect_has(open_error((dir / "second.gguf").string()), {"part 2 of", "open the first part"});

  // A truncated part: the reader's own message, naming that part.
  const std::string bytes = slm::test::read_text_file(paths[1]);
  {
    std::ofstream(paths[1], std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  expect_has(open_error(paths[0]), {"st-00002-of-00003.gguf", "truncated"});
  {
    std::ofstream(paths[1], std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  EXPECT_EQ(open_error(paths[0]), "(no error)");
}

TEST(GgufSplitCli, SplitsRunsAndMergesAsLlamaGgufSplit) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const fs::path dir = fresh_dir("cli");
  auto r = slm::test::run_cli({"gguf-split", "--split-max-size", "1M", model.string(), (dir / "st").string(), "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("n_split: 2"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "st-00001-of-00002.gguf"));
  r = slm::test::run_cli({"gguf-split", "-q", "--split-max-size", "1M", model.string(), (dir / "st").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir / "st-00002-of-00002.gguf"));

  const std::vector<std::string> gen = {"-p", "Once upon a time", "-n", "24", "--temp", "0"};
  auto run = [&](const std::string& m) {
    std::vector<std::string> args = {"run", "-m", m};
    args.insert(args.end(), gen.begin(), gen.end());
    return slm::test::run_cli(args);
  };
  const auto a = run(model.string()), b = run((dir / "st-00001-of-00002.gguf").string());
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);

  r = slm::test::run_cli({"info", "-m", (dir / "st-00001-of-00002.gguf").string()});
  EXPECT_NE(r.out.find("split into:    2 files"), std::string::npos) << r.out;

  r = slm::test::run_cli({"gguf-split", "--merge", "-q", (dir / "st-00001-of-00002.gguf").string(), (dir / "one.gguf").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(slm::test::read_text_file((dir / "one.gguf").string()) == slm::test::read_text_file(model.string())) << "files differ";

  r = slm::test::run_cli({"gguf-split", "--split-max-size", "1.5G", model.string(), (dir / "x").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("whole number followed by M"), std::string::npos) << r.err;
  r = slm::test::run_cli({"gguf-split", "--split-max-tensors", "0", model.string(), (dir / "x").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("at least 1"), std::string::npos) << r.err;
}

// llama-quantize --keep-split: a split input quantizes into parts holding the same tensors as
// the input's, named after the output without .gguf; merged, they are the file quantizing the
// whole model gives.
TEST(GgufSplitCli, QuantizeKeepSplitWritesTheInputsParts) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const fs::path dir = fresh_dir("keep-split");
  const auto in_parts = split_by_tensors(model, "keep-split-in", 20);
  ASSERT_EQ(in_parts.size(), 3u);
  auto r = slm::test::run_cli({"quantize", "-q", "--keep-split", in_parts[1], (dir / "q8.gguf").string(), "Q8_0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(dir / "q8.gguf"));
  EXPECT_FALSE(fs::exists(dir / "q8.keep-split-tmp.gguf")) << "the whole file written first is removed";
  std::vector<std::string> out_parts;
  for (int p = 1; p <= 3; ++p) out_parts.push_back((dir / ("q8-0000" + std::to_string(p) + "-of-00003.gguf")).string());
  for (const std::string& p : out_parts) ASSERT_TRUE(fs::exists(p)) << p;
  auto in = GGUFFile::open(in_parts[0]);
  auto out = GGUFFile::open(out_parts[0]);
  ASSERT_EQ(out->tensors().size(), in->tensors().size());
  for (size_t i = 0; i < in->tensors().size(); ++i) {
    EXPECT_EQ(out->tensors()[i].name, in->tensors()[i].name);
    EXPECT_EQ(fs::path(out->tensors()[i].file->path()).filename().string().substr(3),
              fs::path(in->tensors()[i].file->path()).filename().string().substr(3))
        << in->tensors()[i].name << " is in the same part";
  }
  // The parts hold what quantizing the whole file gives: its metadata and each tensor's bytes
  // (in the input's order, as llama-quantize --keep-split writes them).
  slm::convert::QuantizeOptions qo;
  qo.n_threads = 2;
  qo.progress = false;
  slm::convert::quantize_file(model.string(), (dir / "whole.gguf").string(), "Q8_0", qo);
  r = slm::test::run_cli({"gguf-split", "--merge", "-q", out_parts[2], (dir / "merged.gguf").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto merged = GGUFFile::open((dir / "merged.gguf").string());
  auto whole = GGUFFile::open((dir / "whole.gguf").string());
  EXPECT_EQ(merged->metadata(), whole->metadata());
  ASSERT_EQ(merged->tensors().size(), whole->tensors().size());
  for (const slm::TensorInfo& t : whole->tensors()) {
    const slm::TensorInfo* m = merged->find_tensor(t.name);
    ASSERT_NE(m, nullptr) << t.name;
    EXPECT_EQ(m->type, t.type) << t.name;
    ASSERT_EQ(m->nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(m->data, t.data, t.nbytes), 0) << t.name;
  }
  EXPECT_EQ(prompt_logits(out_parts[0]), prompt_logits((dir / "whole.gguf").string()));
  // Parts already there are refused before any work; a one-file input writes one file.
  r = slm::test::run_cli({"quantize", "-q", "--keep-split", in_parts[0], (dir / "q8.gguf").string(), "Q8_0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("q8-00001-of-00003.gguf: already exists"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "q8.keep-split-tmp.gguf"));
  r = slm::test::run_cli({"quantize", "-q", "--keep-split", model.string(), (dir / "one.gguf").string(), "Q8_0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("is one file"), std::string::npos) << r.err;
  EXPECT_TRUE(slm::test::read_text_file((dir / "one.gguf").string()) ==
              slm::test::read_text_file((dir / "whole.gguf").string()));
}

// convert_hf_to_gguf.py's --split-max-tensors / --split-max-size: the converted model in parts,
// which merge into the file a plain conversion writes; a model that fits one part is one file.
TEST(GgufSplitCli, ConvertWritesParts) {
  SLM_REQUIRE_FIXTURE(hf, "models/hf/tiny-qwen2/config.json");
  const fs::path src = hf.parent_path();
  const fs::path dir = fresh_dir("convert-split");
  auto r = slm::test::run_cli({"convert", src.string(), "-o", (dir / "plain.gguf").string(), "--outtype", "f32", "-q"}, 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const size_t n_tensors = GGUFFile::open((dir / "plain.gguf").string())->tensors().size();
  r = slm::test::run_cli({"convert", src.string(), "-o", (dir / "qw.gguf").string(), "--outtype", "f32",
                          "--split-max-tensors", "10"}, 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int n_parts = static_cast<int>((n_tensors + 9) / 10);
  ASSERT_GE(n_parts, 2);
  EXPECT_NE(r.err.find("written as " + std::to_string(n_parts) + " parts"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "qw.gguf"));
  EXPECT_FALSE(fs::exists(dir / "qw.split-tmp.gguf"));
  const std::string first = slm::gguf_split_path((dir / "qw").string(), 0, n_parts);
  auto f = GGUFFile::open(first);
  EXPECT_EQ(f->parts().size(), static_cast<size_t>(n_parts));
  r = slm::test::run_cli({"gguf-split", "--merge", "-q", first, (dir / "merged.gguf").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(slm::test::read_text_file((dir / "merged.gguf").string()) ==
              slm::test::read_text_file((dir / "plain.gguf").string()))
      << "files differ";
  r = slm::test::run_cli({"convert", src.string(), "-o", (dir / "big.gguf").string(), "--outtype", "f32", "-q",
                          "--split-max-size", "50G"}, 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(slm::test::read_text_file((dir / "big.gguf").string()) ==
              slm::test::read_text_file((dir / "plain.gguf").string()))
      << "one part: the plain file";
  EXPECT_FALSE(fs::exists(dir / "big.split-tmp.gguf"));
  r = slm::test::run_cli({"convert", src.string(), "-o", (dir / "x.gguf").string(), "--split-max-size", "2T"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("whole number followed by M"), std::string::npos) << r.err;
}

}  // namespace
