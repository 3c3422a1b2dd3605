// slm bench: prompt processing (ppN) and token generation (tgN) speed, like llama-bench:
// pp evaluates N prompt tokens in one batch from an empty cache; tg generates N tokens one
// at a time from an empty cache; pgP,N (-pg) does both in one timed run. Each test runs once to
// warm up, then -r times. With -d D (llama-bench's --n-depth) the cache first holds D tokens,
// evaluated once and not timed, and each run starts from them ("pp512 @ d2048"): what attention
// costs at a long context. As in llama-bench, -p, -n, -d, -t, -b, -ctk and -ctv take
// comma-separated lists, and every combination is measured; -o picks the output (md, csv, json,
// jsonl).
#include <cctype>
#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "kv_options.h"
#include "lora_options.h"
#include "core/error.h"
#include "models/model.h"
#include "runtime/session.h"

namespace slm::cli {

namespace {

struct TestResult {
  std::string name;
  int n_prompt = 0, n_gen = 0, n_depth = 0, threads = 0, n_batch = 0;
  KVTypes kv;
  size_t kv_bytes = 0;
  std::vector<double> samples_ts;
  double mean() const {
    return std::accumulate(samples_ts.begin(), samples_ts.end(), 0.0) / samples_ts.size();
  }
  double stddev() const {
    if (samples_ts.size() < 2) return 0.0;
    const double m = mean();
    double s = 0;
    for (double v : samples_ts) s += (v - m) * (v - m);
    return std::sqrt(s / (samples_ts.size() - 1));
  }
};

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

// "512", "128,512" or ranges as llama-bench takes them: "FIRST-LAST" (every value), with
// "+STEP" or "*FACTOR" after it ("128-1024*2": 128, 256, 512, 1024), mixed in a list. Throws
// slm::Error naming the option.
std::vector<int> int_list(const std::string& s, const char* option, int lowest) {
  std::vector<int> out;
  size_t start = 0;
  auto number = [&](const std::string& item, const std::string& text) {
    size_t used = 0;
    long long v = -1;
    if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0]))) {
      try {
        v = std::stoll(text, &used);
      } catch (const std::exception&) {
        used = 0;
      }
    }
    if (text.empty() || used != text.size() || v > (1 << 30))
      fail("{} '{}': '{}' is not a whole number or a range (FIRST-LAST, FIRST-LAST+STEP, FIRST-LAST*FACTOR)",
           option, s, item);
    return static_cast<int>(v);
  };
  while (start <= s.size()) {
    const size_t end = std::min(s.find(',', start), s.size());
    const std::string item = s.substr(start, end - start);
    start = end + 1;
    const size_t dash = item.find('-', 1);
    if (dash == std::string::npos) {
      const int v = number(item, item);
      if (v < lowest) fail("{} '{}': {} is below {}", option, s, v, lowest);
      out.push_back(v);
      continue;
    }
    const size_t op = item.find_first_of("+*", dash);
    const int first = number(item, item.substr(0, dash));
    const int last = number(item, item.substr(dash + 1, op == std::string::npos ? std::string::npos : op - dash - 1));
    const int by = op == std::string::npos ? 1 : number(item, item.substr(op + 1));
    const bool times = op != std::string::npos && item[op] == '*';
    if (first < lowest) fail("{} '{}': {} is below {}", option, s, first, lowest);
    if (last < first) fail("{} '{}': the range {} ends before it starts", option, s, item);
    if (times ? by < 2 || first == 0 : by < 1)
      fail("{} '{}': the range {} would not end ({} must be at least {}{})", option, s, item, times ? "a factor" : "a step",
           times ? 2 : 1, times && first == 0 ? ", and a range multiplied must start above 0" : "");
    for (long long v = first; v <= last; v = times ? v * by : v + by) {
      out.push_back(static_cast<int>(v));
      if (out.size() > 4096) fail("{} '{}': more than 4096 values", option, s);
    }
  }
  return out;
}

// A CSV field: in quotes, quotes inside doubled.
std::string csv_quoted(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::vector<std::string> word_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(',', start), s.size());
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

Runner add_bench(CLI::App& app) {
  struct Opts {
    std::string model;
    std::string threads = "0", n_prompt = "512", n_gen = "128", depth = "0", n_batch = "0";
    std::string kv_type = "f16", type_k, type_v, pg, output = "md";
    int reps = 3;
    bool json = false;
    LoraOptions lora;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model")->required();
  app.add_option("-t,--threads", o->threads, "threads, or a list: 1,2 (default: all cores)");
  app.add_option("-p,--n-prompt", o->n_prompt, "prompt tokens for the pp test, or a list (0: skip)");
  app.add_option("-n,--n-gen", o->n_gen, "generated tokens for the tg test, or a list (0: skip)");
  app.add_option("--pg", o->pg, "a prompt of P tokens then N generated, timed together: P,N (llama-bench's -pg)");
  app.add_option("-d,--n-depth", o->depth, "tokens already in the cache when each test starts, or a list (default 0)");
  app.add_option("-b,--batch-size", o->n_batch, "prompt tokens per forward pass, or a list (default: the session's)");
  app.add_option("-r,--repetitions", o->reps, "repetitions of each test");
  app.add_option("--kv-type", o->kv_type, "KV cache type of keys and values (f16, q8_0, ...; see slm run --help)");
  app.add_option("--cache-type-k", o->type_k, "KV cache type of the keys, or a list: f16,q8_0 (llama.cpp's -ctk)");
  app.add_option("--cache-type-v", o->type_v, "KV cache type of the values, or a list (llama.cpp's -ctv)");
  o->lora.add_to(app);
  app.add_option("-o,--output", o->output, "md (default), csv, json (one array) or jsonl (one object a line)")
      ->check(CLI::IsMember({"md", "csv", "json", "jsonl"}));
  app.add_flag("--json", o->json, "the same as -o jsonl");
  return [o]() {
    if (o->reps < 1) fail("--repetitions must be at least 1");
    const std::vector<int> prompts = int_list(o->n_prompt, "-p", 0), gens = int_list(o->n_gen, "-n", 0),
                           depths = int_list(o->depth, "-d", 0), thread_counts = int_list(o->threads, "-t", 0),
                           batches = int_list(o->n_batch, "-b", 0);
    int pg_prompt = 0, pg_gen = 0;
    if (!o->pg.empty()) {
      const std::vector<int> pg = int_list(o->pg, "-pg", 1);
      if (pg.size() != 2) fail("-pg '{}': give the prompt and generated tokens as P,N (e.g. 512,128)", o->pg);
      pg_prompt = pg[0];
      pg_gen = pg[1];
    }
    const DType both = parse_kv_type(o->kv_type, "--kv-type");
    std::vector<DType> types_k, types_v;
    for (const std::string& t : o->type_k.empty() ? std::vector<std::string>{} : word_list(o->type_k))
      types_k.push_back(parse_kv_type(t, "--cache-type-k"));
    for (const std::string& t : o->type_v.empty() ? std::vector<std::string>{} : word_list(o->type_v))
      types_v.push_back(parse_kv_type(t, "--cache-type-v"));
    if (types_k.empty()) types_k.push_back(both);
    if (types_v.empty()) types_v.push_back(both);
    const std::string output = o->json ? "jsonl" : o->output;

    auto model = Model::load(o->model);
    const HParams& hp = model->hparams();
    const GGUFFile& f = model->gguf();
    int64_t params = 0;
    for (const TensorInfo& t : f.tensors()) params += t.nelements;
    const std::string model_name = hp.arch + " " + f.opt_string("general.name").value_or("");
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(hp.n_vocab - 1));
    using clock = std::chrono::steady_clock;
    int longest = std::max(pg_prompt + pg_gen, 0);
    for (int p : prompts) longest = std::max(longest, p);
    for (int n : gens) longest = std::max(longest, n);

    // Tests in llama-bench's order: per threads, batch and cache types, each depth, then the
    // pp, tg and pg tests at it. A new session for each setting (its cache and batch size).
    std::vector<TestResult> results;
    const auto lora = o->lora.load(*model);  // once: every setting shares the adapters
    for (const int t : thread_counts)
      for (const int b : batches)
        for (const DType tk : types_k)
          for (const DType tv : types_v)
            for (const int depth : depths) {
              SessionOptions so;
              so.n_threads = t > 0 ? t : default_threads();
              so.n_ctx = depth + longest + 1;
              if (b > 0) so.n_batch = b;
              so.kv_types = KVTypes(tk, tv);
              so.lora = lora;
              Session session(*model, so);
              // The depth's tokens go in once; each run truncates the cache back to them.
              std::vector<int32_t> context(depth);
              for (int32_t& tok : context) tok = pick(rng);
              if (depth > 0) session.eval(context);
              const std::string at_depth = depth > 0 ? fmt::format(" @ d{}", depth) : "";
              auto generate = [&](int n) {
                int32_t tok = pick(rng);
                for (int i = 0; i < n; ++i) {
                  session.eval(std::span<const int32_t>(&tok, 1));
                  tok = pick(rng);
                }
              };
              auto run_test = [&](const std::string& name, int n_prompt, int n_gen, auto&& body) {
                TestResult r{name, n_prompt, n_gen, depth, so.n_threads, so.n_batch, so.kv_types, 0, {}};
                for (int rep = 0; rep <= o->reps; ++rep) {  // rep 0 warms up
                  session.truncate(depth);
                  const auto t0 = clock::now();
                  body();
                  const double s = std::chrono::duration<double>(clock::now() - t0).count();
                  if (rep > 0) r.samples_ts.push_back((n_prompt + n_gen) / s);
                }
                r.kv_bytes = session.kv_bytes();
                results.push_back(std::move(r));
              };
              for (const int p : prompts) {
                if (p == 0) continue;
                std::vector<int32_t> prompt(p);
                for (int32_t& tok : prompt) tok = pick(rng);
                run_test(fmt::format("pp{}{}", p, at_depth), p, 0, [&] { session.eval(prompt); });
              }
              for (const int n : gens)
                if (n > 0) run_test(fmt::format("tg{}{}", n, at_depth), 0, n, [&] { generate(n); });
              if (pg_prompt > 0) {
                std::vector<int32_t> prompt(pg_prompt);
                for (int32_t& tok : prompt) tok = pick(rng);
                run_test(fmt::format("pp{}+tg{}{}", pg_prompt, pg_gen, at_depth), pg_prompt, pg_gen, [&] {
                  session.eval(prompt);
                  generate(pg_gen);
                });
              }
            }

    const double rss = peak_rss_mib();
    auto json_of = [&](const TestResult& r) {
      return fmt::format("{{\"model\": {}, \"size\": {}, \"n_params\": {}, \"n_threads\": {}, \"n_batch\": {}, "
                         "\"test\": \"{}\", \"n_prompt\": {}, \"n_gen\": {}, \"n_depth\": {}, \"avg_ts\": {:.3f}, "
                         "\"stddev_ts\": {:.3f}, \"samples_ts\": [{:.3f}], \"type_k\": \"{}\", \"type_v\": \"{}\", "
                         "\"kv_bytes\": {}, \"peak_rss_mib\": {:.1f}}}",
                         nlohmann::json(o->model).dump(), f.file_size(), params, r.threads, r.n_batch, r.name, r.n_prompt, r.n_gen, r.n_depth,
                         r.mean(), r.stddev(), fmt::join(r.samples_ts, ", "), dtype_name(r.kv.k), dtype_name(r.kv.v),
                         r.kv_bytes, rss);
    };
    if (output == "jsonl") {
      for (const TestResult& r : results) fmt::print("{}\n", json_of(r));
    } else if (output == "json") {
      fmt::print("[\n");
      for (size_t i = 0; i < results.size(); ++i) fmt::print("  {}{}\n", json_of(results[i]), i + 1 < results.size() ? "," : "");
      fmt::print("]\n");
    } else if (output == "csv") {
      fmt::print("model,size,n_params,n_threads,n_batch,type_k,type_v,test,n_prompt,n_gen,n_depth,avg_ts,stddev_ts\n");
      for (const TestResult& r : results)
        fmt::print("{},{},{},{},{},{},{},\"{}\",{},{},{},{:.3f},{:.3f}\n", csv_quoted(model_name), f.file_size(), params, r.threads,
                   r.n_batch, dtype_name(r.kv.k), dtype_name(r.kv.v), r.name, r.n_prompt, r.n_gen, r.n_depth, r.mean(),
                   r.stddev());
    } else {
      // The cache types get columns when they are not the default (as llama-bench shows what differs).
      bool types_shown = false;
      for (const TestResult& r : results) types_shown = types_shown || !(r.kv == KVTypes(DType::F16));
      std::string head = fmt::format("| {:<30} | {:>10} | {:>8} | {:>7} |", "model", "size", "params", "threads");
      std::string rule = fmt::format("| {:-<30} | {:->10} | {:->8} | {:->7} |", "", "", "", "");
      if (types_shown) {
        head += fmt::format(" {:>6} | {:>6} |", "type_k", "type_v");
        rule += fmt::format(" {:->6} | {:->6} |", "", "");
      }
      fmt::print("{} {:>14} | {:>20} |\n{} {:->14} | {:->20} |\n", head, "test", "t/s", rule, "", "");
      for (const TestResult& r : results) {
        std::string row = fmt::format("| {:<30} | {:>6.2f} GiB | {:>6.2f} B | {:>7} |", model_name,
                                      f.file_size() / 1073741824.0, params / 1e9, r.threads);
        if (types_shown) row += fmt::format(" {:>6} | {:>6} |", dtype_name(r.kv.k), dtype_name(r.kv.v));
        fmt::print("{} {:>14} | {:>11.2f} ± {:>6.2f} |\n", row, r.name, r.mean(), r.stddev());
      }
      if (!results.empty())
        fmt::print("\npeak RSS {:.1f} MiB (file {:.1f} MiB, KV cache {:.1f} MiB, {})\n", rss, f.file_size() / 1048576.0,
                   results.back().kv_bytes / 1048576.0, kv_types_name(results.back().kv));
    }
    return 0;
  };
}

}  // namespace slm::cli
