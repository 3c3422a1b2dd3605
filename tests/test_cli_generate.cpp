// The slm program end to end: greedy text from stories260K equals llama.cpp's reference text
// (shared/models/stories260K.greedy.json), tokenize/logits/info behave, and bad requests fail
// with a one-line error.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "models/model.h"
#include "runtime/session.h"
#include "support/fixtures.h"
#include "support/forced_isa.h"
#include "support/logits_file.h"
#include "support/run_cli.h"

namespace {

using slm::test::run_cli;

TEST(CliRun, Stories260KGreedyMatchesLlamaCpp) {
  SLM_REQUIRE_FORCED_ISA();  // ctest runs it under each SLM_FORCE_ISA level
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  SLM_REQUIRE_FIXTURE(ref_path, "models/stories260K.greedy.json");
  const auto ref = nlohmann::json::parse(slm::test::read_text_file(ref_path));
  ASSERT_GE(ref["cases"].size(), 3u);
  for (const auto& c : ref["cases"]) {
    const std::string prompt = c["prompt"];
    const auto r = run_cli({"run", "-m", model.string(), "-p", prompt, "-n",
                            std::to_string(c["n_predict"].get<int>()), "--temp", "0", "--kv-type", "f32"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, c["text"].get<std::string>()) << "prompt: " << prompt;
  }
}

TEST(CliRun, F16CacheAlsoGeneratesText) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto r = run_cli({"run", "-m", model.string(), "-p", "Once upon a time", "-n", "30", "--temp", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(", there was a little girl named Lily.", 0), 0u) << r.out;
}

// A command copied from llama.cpp with its GPU layer count or flash-attention switch runs,
// saying they are ignored (CLI11 alone read "-ngl 99" as "-n gl" and failed on a repeated -n,
// and "-fa" as "-f a", a prompt file "a").
TEST(CliRun, GpuLayersAndFlashAttentionFromLlamaCppAreIgnoredWithAWarning) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  for (const std::vector<std::string>& ngl : {std::vector<std::string>{"-ngl", "99"},
                                              std::vector<std::string>{"--n-gpu-layers", "33"},
                                              std::vector<std::string>{"--gpu-layers=99"},
                                              std::vector<std::string>{"-fa"},
                                              std::vector<std::string>{"-fa", "on"},
                                              std::vector<std::string>{"--flash-attn", "auto"}}) {
    std::vector<std::string> args = {"run", "-m", model.string(), "-p", "Once upon a time", "-n", "30", "--temp", "0"};
    args.insert(args.begin() + 3, ngl.begin(), ngl.end());
    const auto r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << ngl[0] << ": " << r.err;
    EXPECT_EQ(r.out.rfind(", there was a little girl named Lily.", 0), 0u) << r.out;
    EXPECT_NE(r.err.find(ngl[0]), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(" ignored: slm"), std::string::npos) << r.err;
  }
}

TEST(CliRun, SamplingIsReproducibleWithASeed) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  std::vector<std::string> args = {"run", "-m", model.string(), "-p", "Lily and Ben", "-n", "40",
                                   "--temp", "1.0", "--top-k", "20", "--seed", "1234"};
  const auto a = run_cli(args), b = run_cli(args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  args.back() = "4321";
  const auto c = run_cli(args);
  EXPECT_NE(a.out, c.out);
}

// llama.cpp's other sampling options, spelled as there: -s for the seed; XTC at probability 1
// and typical sampling at 0.5 turn greedy text away from the likeliest tokens (top-n-sigma
// keeps it); mirostat 1 and 2 sample reproducibly with a seed; a bad value is a usage error.
TEST(CliRun, LlamaCppSamplingOptions) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"run", "-m", model.string(), "-p", "Once upon a time", "-n", "40"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  };
  const auto greedy = run({"--temp", "0"});
  ASSERT_EQ(greedy.exit_code, 0) << greedy.err;
  for (const std::vector<std::string>& changes : {std::vector<std::string>{"--xtc-probability", "1", "--xtc-threshold", "0.1"},
                                                  std::vector<std::string>{"--typical", "0.5"}}) {
    std::vector<std::string> a = {"--temp", "0"};
    a.insert(a.end(), changes.begin(), changes.end());
    const auto r = run(a);
    ASSERT_EQ(r.exit_code, 0) << changes[0] << ": " << r.err;
    EXPECT_NE(r.out, greedy.out) << changes[0];
  }
  const auto sigma = run({"--temp", "0", "--top-nsigma", "1"});
  EXPECT_EQ(sigma.out, greedy.out);
  for (const char* m : {"1", "2"}) {
    const auto a = run({"--temp", "1", "-s", "7", "--mirostat", m, "--mirostat-ent", "3", "--mirostat-lr", "0.2"});
    const auto b = run({"--temp", "1", "--seed", "7", "--mirostat", m, "--mirostat-ent", "3", "--mirostat-lr", "0.2"});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.out, b.out) << "mirostat " << m;
    EXPECT_GT(a.out.size(), 40u) << "mirostat " << m;
  }
  // DRY: the greedy story says "Lily was sad and didn't know what to do." twice in 200 tokens;
  // with DRY the second time goes another way.
  auto run200 = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"run", "-m", model.string(), "-p", "Once upon a time", "-n", "200", "--temp", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  };
  const auto long_greedy = run200({});
  const auto dry = run200({"--dry-multiplier", "0.8"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  const std::string sad = "Lily was sad and didn't know what to do.";
  const size_t first = long_greedy.out.find(sad);
  ASSERT_NE(first, std::string::npos) << long_greedy.out;
  ASSERT_NE(long_greedy.out.find(sad, first + 1), std::string::npos) << long_greedy.out;
  EXPECT_NE(dry.out, long_greedy.out);
  const size_t dry_first = dry.out.find(sad);
  EXPECT_TRUE(dry_first == std::string::npos || dry.out.find(sad, dry_first + 1) == std::string::npos) << dry.out;
  EXPECT_EQ(run200({"--dry-multiplier", "0.8", "--dry-sequence-breaker", "none"}).exit_code, 0);
  // --samplers / --sampling-seq: top-k 1 makes sampling at temperature 1 greedy, unless the
  // list leaves top-k out; a list in another order than llama.cpp's default is refused.
  const auto top1 = run({"--temp", "1", "-s", "3", "--top-k", "1"});
  EXPECT_EQ(top1.out, greedy.out);
  EXPECT_EQ(run({"--temp", "1", "-s", "3", "--top-k", "1", "--samplers", "top_k;temperature"}).out, greedy.out);
  EXPECT_EQ(run({"--temp", "1", "-s", "3", "--top-k", "1", "--sampling-seq", "kt"}).out, greedy.out);
  const auto no_k = run({"--temp", "1", "-s", "3", "--top-k", "1", "--samplers", "top_p;min_p;temperature"});
  ASSERT_EQ(no_k.exit_code, 0) << no_k.err;
  EXPECT_NE(no_k.out, greedy.out);
  const auto reordered = run({"--samplers", "temperature;top_k"});
  EXPECT_NE(reordered.exit_code, 0);
  EXPECT_NE(reordered.err.find("default order"), std::string::npos) << reordered.err;
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--mirostat", "3"},
                                              std::vector<std::string>{"--dry-base", "0.5", "--dry-multiplier", "1"},
                                              std::vector<std::string>{"--typical", "0"},
                                              std::vector<std::string>{"--xtc-probability", "2"}}) {
    const auto r = run(bad);
    EXPECT_NE(r.exit_code, 0) << bad[0];
    EXPECT_FALSE(r.err.empty()) << bad[0];
  }
}

// A llama-cli command line runs as written: batch sizes (-b, -ub), -tb (warned about when it
// differs from -t), llama.cpp's flags for what slm does anyway (--no-warmup,
// --no-display-prompt, -no-cnv), --mlock / --no-mmap (ignored with a warning); escapes in -p as
// llama.cpp reads them (-e, the default; --no-escape keeps the text); -r stops after its text;
// --ignore-eos bans the end-of-generation token (here favoured by a logit bias: without it the
// story ends at once).
TEST(CliRun, LlamaCppRunOptions) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  auto run = [&](const std::string& prompt, std::vector<std::string> extra) {
    std::vector<std::string> args = {"run", "-m", model.string(), "-p", prompt, "--temp", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  };
  const auto plain = run("Once upon a time", {"-n", "60"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto copied = run("Once upon a time", {"-n", "60", "-b", "64", "-ub", "32", "-t", "2", "-tb", "2", "--no-warmup",
                                               "--no-display-prompt", "-no-cnv", "-e"});
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  EXPECT_EQ(copied.out, plain.out);
  EXPECT_EQ(copied.err, "");
  const auto warned = run("Once upon a time", {"-n", "8", "-t", "2", "-tb", "1", "--mlock", "--no-mmap"});
  ASSERT_EQ(warned.exit_code, 0) << warned.err;
  for (const char* w : {"--threads-batch 1 ignored", "--no-mmap ignored"})
    EXPECT_NE(warned.err.find(w), std::string::npos) << w << ": " << warned.err;
  EXPECT_EQ(warned.err.find("--mlock"), std::string::npos) << warned.err;  // taken (test_core_memory_lock.cpp)
  // "\\n" typed in the prompt is a newline, as with llama.cpp; --no-escape keeps it as typed.
  const auto newline = run("Lily\\nBen", {"-n", "30"}), real = run("Lily\nBen", {"-n", "30"}),
             verbatim = run("Lily\\nBen", {"-n", "30", "--no-escape"});
  EXPECT_EQ(newline.out, real.out);
  EXPECT_NE(verbatim.out, real.out);
  // -r: up to and including the first "park." of the greedy story.
  const auto stopped = run("Once upon a time", {"-n", "60", "-r", "park."});
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  const size_t at = plain.out.find("park.");
  ASSERT_NE(at, std::string::npos) << plain.out;
  EXPECT_EQ(stopped.out, plain.out.substr(0, at + 5));
  // --ignore-eos.
  const auto ends = run("Once upon a time", {"-n", "10", "-l", "2+100"});
  const auto goes_on = run("Once upon a time", {"-n", "10", "-l", "2+100", "--ignore-eos"});
  ASSERT_EQ(goes_on.exit_code, 0) << goes_on.err;
  EXPECT_EQ(ends.out, "");
  EXPECT_EQ(goes_on.out, plain.out.substr(0, goes_on.out.size()));
  EXPECT_GT(goes_on.out.size(), 20u);
}

// slm bench as llama-bench is used: comma-separated lists and ranges (every combination
// measured, in llama-bench's order), -pg for a prompt and generation timed together, -o jsonl /
// json / csv.
TEST(CliBench, ListsAndOutputsLikeLlamaBench) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto r = run_cli({"bench", "-m", model.string(), "-p", "16,32", "-n", "4", "-t", "1,2", "-r", "1", "-pg", "8,4",
                          "-ctk", "f16,q8_0", "-o", "jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<nlohmann::json> rows;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size(), 2u * 2u * 4u);  // threads x key types x (pp16, pp32, tg4, pp8+tg4)
  const char* tests[] = {"pp16", "pp32", "tg4", "pp8+tg4"};
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i]["test"], tests[i % 4]) << i;
    EXPECT_EQ(rows[i]["n_threads"], i < 8 ? 1 : 2) << i;
    EXPECT_EQ(rows[i]["type_k"], (i / 4) % 2 ? "q8_0" : "f16") << i;
    EXPECT_GT(rows[i]["avg_ts"].get<double>(), 0.0) << i;
  }
  EXPECT_EQ(rows[3]["n_prompt"], 8);
  EXPECT_EQ(rows[3]["n_gen"], 4);
  const auto json = run_cli({"bench", "-m", model.string(), "-p", "16", "-n", "0", "-r", "1", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto arr = nlohmann::json::parse(json.out);
  ASSERT_TRUE(arr.is_array());
  EXPECT_EQ(arr.size(), 1u);
  const auto csv = run_cli({"bench", "-m", model.string(), "-p", "16", "-n", "4", "-r", "1", "-o", "csv"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_EQ(csv.out.rfind("model,size,n_params,n_threads,n_batch,type_k,type_v,test,", 0), 0u) << csv.out;
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 3);
  // llama-bench's ranges: FIRST-LAST*FACTOR, FIRST-LAST+STEP, mixed with plain values.
  const auto ranges = run_cli({"bench", "-m", model.string(), "-p", "8-32*2,5,40-48+4", "-n", "0", "-r", "1", "-o", "jsonl"});
  ASSERT_EQ(ranges.exit_code, 0) << ranges.err;
  std::vector<int> prompts;
  std::istringstream range_lines(ranges.out);
  for (std::string line; std::getline(range_lines, line);) prompts.push_back(nlohmann::json::parse(line)["n_prompt"]);
  EXPECT_EQ(prompts, (std::vector<int>{8, 16, 32, 5, 40, 44, 48}));
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"-p", "16,x"}, std::vector<std::string>{"-pg", "8"},
                                              std::vector<std::string>{"-t", "-1"}, std::vector<std::string>{"-o", "xml"},
                                              std::vector<std::string>{"-p", "32-8"}, std::vector<std::string>{"-p", "8-32*1"},
                                              std::vector<std::string>{"-p", "8-32+0"}}) {
    std::vector<std::string> args = {"bench", "-m", model.string(), "-r", "1"};
    args.insert(args.end(), bad.begin(), bad.end());
    const auto e = run_cli(args);
    EXPECT_NE(e.exit_code, 0) << bad[0] << " " << bad[1];
    EXPECT_FALSE(e.err.empty()) << bad[0];
  }
}

// --logit-bias TOKEN_ID(+/-)BIAS, llama.cpp's syntax: banning the greedy first token (432,
// ",") changes the text; a large bias makes a token the pick; a bad form or id is an error.
TEST(CliRun, LogitBiasBansAndFavoursTokens) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::vector<std::string> base = {"run", "-m", model.string(), "-p", "Once upon a time", "-n", "6", "--temp", "0"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return run_cli(a);
  };
  const auto plain = with({});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(plain.out.rfind(",", 0), 0u) << plain.out;
  const auto banned = with({"--logit-bias", "432-inf"});
  ASSERT_EQ(banned.exit_code, 0) << banned.err;
  EXPECT_NE(banned.out.rfind(",", 0), 0u) << banned.out;
  EXPECT_EQ(with({"-l", "261+100"}).out, " a a a a a a");
  for (const char* bad : {"432", "x+1", "432+y", "-3+1"}) {
    const auto r = with({"-l", bad});
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.err.find("TOKEN_ID+BIAS"), std::string::npos) << r.err;
  }
  const auto outside = with({"-l", "99999+1"});
  EXPECT_EQ(outside.exit_code, 1);
  EXPECT_NE(outside.err.find("outside the vocabulary"), std::string::npos) << outside.err;
}

// -f FILE / -f - (standard input): the same text as -p; neither, both, or an empty file are
// clear errors.
TEST(CliRun, PromptFromAFileOrStandardInput) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::vector<std::string> gen = {"-n", "12", "--temp", "0"};
  auto args = [&](std::vector<std::string> a) {
    a.insert(a.begin(), {"run", "-m", model.string()});
    a.insert(a.end(), gen.begin(), gen.end());
    return a;
  };
  const auto p = run_cli(args({"-p", "Once upon a time"}));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const std::string text = "Once upon a time";
  const auto piped = run_cli(args({"-f", "-"}), 60.0, &text);
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, p.out);
  const auto tmp = std::filesystem::temp_directory_path() / ("slm-prompt-" + std::to_string(::getpid()) + ".txt");
  std::ofstream(tmp) << text;
  const auto file = run_cli(args({"-f", tmp.string()}));
  EXPECT_EQ(file.out, p.out);
  std::ofstream(tmp, std::ios::trunc).close();
  const auto empty = run_cli(args({"-f", tmp.string()}));
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_NE(empty.err.find("is empty"), std::string::npos) << empty.err;
  std::filesystem::remove(tmp);
  EXPECT_NE(run_cli(args({})).exit_code, 0);
  EXPECT_NE(run_cli(args({"-p", "x", "-f", "-"})).exit_code, 0);
}

TEST(CliRun, PromptLongerThanContextIsAClearError) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto r = run_cli({"run", "-m", model.string(), "-p", "Once upon a time there was a dog", "-c", "4"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("context"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

// A context past the model's training context works but says so (as llama.cpp warns).
TEST(CliRun, ContextPastTheTrainingContextIsWarnedAbout) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");  // trained on 2048 positions
  auto r = run_cli({"run", "-m", model.string(), "-p", "Once upon a time", "-n", "4", "--temp", "0", "-c", "4096"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("slm: warning: the context (4096 tokens) is longer than the 2048 tokens this model was trained on"),
            std::string::npos) << r.err;
  r = run_cli({"run", "-m", model.string(), "-p", "Once upon a time", "-n", "4", "--temp", "0", "-c", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
}

TEST(CliRun, StopsAtTheContextEnd) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto r = run_cli({"run", "-m", model.string(), "-p", "Once upon a time", "-c", "16", "--temp", "0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_NE(r.err.find("full"), std::string::npos) << r.err;
}

TEST(CliRun, MissingFileIsAClearError) {
  const auto r = run_cli({"run", "-m", "/nonexistent/model.gguf", "-p", "hi"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("slm: error: /nonexistent/model.gguf: cannot open", 0), 0u) << r.err;
}

// A directory where a file belongs opens as a stream and reads as nothing: that used to give a
// BOS-only tokenization, an empty chat template or an "empty" text instead of an error.
TEST(CliRun, DirectoryGivenForAFileIsAClearError) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::string dir = model.parent_path().string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"tokenize", "-m", model.string(), "--file", dir}, "cannot read the file " + dir + ": is a directory"},
      {{"perplexity", "-m", model.string(), "-f", dir}, "cannot read the text file " + dir + ": is a directory"},
      {{"chat", "-m", model.string(), "--chat-template", dir},
       "cannot read the chat template file " + dir + ": is a directory"},
  };
  for (const auto& [args, want] : cases) {
    const auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find(want), std::string::npos) << args[0] << ": " << r.err;
    EXPECT_EQ(r.out, "") << args[0];
  }
}

TEST(CliTokenize, ReadsTextFromAPipe) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::string text = "Once upon a time";
  const auto r = run_cli({"tokenize", "-m", model.string(), "--file", "/dev/stdin"}, 60.0, &text);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1 403 407 261 378\n");
}

// llama-tokenize's spellings: -f, --stdin, --ids (a list), --pieces (its ID -> 'piece' lines),
// --show-count, and --no-parse-special / --log-disable accepted.
TEST(CliTokenize, LlamaTokenizeOptions) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const std::string text = "Once upon a time";
  auto r = run_cli({"tokenize", "-m", model.string(), "--stdin", "--ids", "--show-count", "--no-parse-special",
                    "--log-disable"},
                   60.0, &text);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[1, 403, 407, 261, 378]\nTotal number of tokens: 5\n");
  r = run_cli({"tokenize", "-m", model.string(), "-p", text, "--pieces"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "     1 -> '<s>'\n   403 -> ' Once'\n   407 -> ' upon'\n   261 -> ' a'\n   378 -> ' time'\n");
  r = run_cli({"tokenize", "-m", model.string(), "-f", "/dev/stdin", "--no-bos"}, 60.0, &text);
  EXPECT_EQ(r.out, "403 407 261 378\n");
  r = run_cli({"tokenize", "-m", model.string(), "-p", text, "--ids", "--pieces"});
  EXPECT_NE(r.exit_code, 0);
}

// Asking for the amx level where the CPU or the kernel cannot give it is a clear error, and
// `slm info` says which.
TEST(CliRun, ForcedAmxWithoutAmxIsAClearError) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto info = run_cli({"info", "-m", model.string()});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const size_t at = info.out.find("\namx:");
  ASSERT_NE(at, std::string::npos) << info.out;
  const std::string line = info.out.substr(at + 1, info.out.find('\n', at + 1) - at - 1);
  if (line.find("ready") != std::string::npos) GTEST_SKIP() << "this CPU has AMX: " << line;
  const char* old = std::getenv("SLM_FORCE_ISA");
  const std::string saved = old ? old : "";
  setenv("SLM_FORCE_ISA", "amx", 1);
  const auto r = run_cli({"run", "-m", model.string(), "-p", "hi", "-n", "2"});
  if (old) setenv("SLM_FORCE_ISA", saved.c_str(), 1);
  else unsetenv("SLM_FORCE_ISA");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("SLM_FORCE_ISA=amx: AMX is "), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliTokenize, MatchesReferenceIds) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  auto r = run_cli({"tokenize", "-m", model.string(), "-p", "Once upon a time"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1 403 407 261 378\n");
  r = run_cli({"tokenize", "-m", model.string(), "-p", "Once upon a time", "--no-bos"});
  EXPECT_EQ(r.out, "403 407 261 378\n");
}

TEST(CliTokenize, WorksOnVocabularyOnlyFilesAndTakesTextVerbatim) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-llama-bpe.gguf");
  // "<|eot_id|>" is a special token's text; with special tokens not parsed it is plain text,
  // and "\n" in the argument is a backslash and an n, not a newline.
  const auto r = run_cli({"tokenize", "-m", vocab.string(), "-p", "Hello<|eot_id|>\\n", "--no-bos"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("128009"), std::string::npos) << r.out;
  EXPECT_NE(r.out, "");
}

TEST(CliLogits, WritesTheFixtureFormat) {
  SLM_REQUIRE_FORCED_ISA();
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  SLM_REQUIRE_FIXTURE(ref_path, "models/stories260K.batch.logits");
  const auto ref = slm::test::read_logits_file(ref_path);
  // Per process: ctest runs this test under several SLM_FORCE_ISA levels at once.
  const std::string out = testing::TempDir() + "/stories." + std::to_string(getpid()) + ".logits";
  std::string ids;
  for (int32_t t : ref.tokens) ids += std::to_string(t) + " ";
  for (const char* mode : {"batch", "seq"}) {
    std::vector<std::string> args = {"logits", "-m", model.string(), "--tokens", ids, "-o", out};
    if (std::string(mode) == "seq") args.push_back("--seq");
    const auto r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto ours = slm::test::read_logits_file(out);
    ASSERT_EQ(ours.tokens, ref.tokens);
    for (int i = 0; i < ref.n_tokens; ++i)
      EXPECT_LE(slm::test::relative_l2(ours.row(i), ref.row(i), ref.n_vocab), 1e-4) << mode << " position " << i;
  }
  // -p tokenizes the way the fixture was made (BOS, special tokens not parsed).
  const auto r = run_cli({"logits", "-m", model.string(), "-p", "Once upon a time, there was a little girl named Lily.", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(slm::test::read_logits_file(out).tokens, ref.tokens);
  std::filesystem::remove(out);
}

TEST(CliInfo, DescribesTheModel) {
  SLM_REQUIRE_FIXTURE(model, "fixtures/kquants/kq-llama-L2-E256-Q4_K_M.gguf");
  const auto r = run_cli({"info", "-m", model.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* s : {"architecture:  llama", "n_layer:       2", "n_embd:        256", "q4_K", "q6_K", "file size:"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  // The cache a default context takes: 2 layers x (k_dim + v_dim) values per position, in fp16
  // and in q8_0 (34 bytes per 32 values) and q4_0 (18); keys rounded up to whole 16-position
  // blocks.
  auto model_info = slm::Model::load(model.string());
  const slm::KVShape kv = model_info->kv_shape();
  const int ctx = slm::context_size(*model_info, -1);
  const double f16 = 2.0 * kv.n_layer * (kv.k_dim + kv.v_dim) * ((ctx + 15) / 16 * 16) / 1048576.0;
  const double q8 = f16 * 34.0 / 64.0;
  const double q4 = f16 * 18.0 / 64.0;
  const std::string want =
      fmt::format("kv cache:      f16 {:.1f} MiB, q8_0 {:.1f} MiB, q4_0 {:.1f} MiB at {} positions", f16, q8, q4, ctx);
  EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
}

}  // namespace
