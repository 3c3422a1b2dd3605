// slm bench: prompt processing (ppN) and token generation (tgN) speed, like llama-bench:
// pp evaluates N prompt tokens in one batch from an empty cache; tg generates N tokens one
// at a time from an empty cache. Each test runs once to warm up, then -r times. With -d D
// (llama-bench's --n-depth) the cache first holds D tokens, evaluated once and not timed, and
// each run starts from them ("pp512 @ d2048"): what attention costs at a long context.
#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

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
  int n_tokens = 0;
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

}  // namespace

Runner add_bench(CLI::App& app) {
  struct Opts {
    std::string model;
    KvCacheOptions kv;
    int threads = 0, n_prompt = 512, n_gen = 128, reps = 3, n_batch = 0, depth = 0;
    bool json = false;
    LoraOptions lora;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model")->required();
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  app.add_option("-p,--n-prompt", o->n_prompt, "prompt tokens for the pp test (0: skip)");
  app.add_option("-n,--n-gen", o->n_gen, "generated tokens for the tg test (0: skip)");
  app.add_option("-d,--n-depth", o->depth, "tokens already in the cache when each test starts (default 0)");
  app.add_option("-b,--batch-size", o->n_batch, "prompt tokens per forward pass (default: the session's)");
  app.add_option("-r,--repetitions", o->reps, "repetitions of each test");
  o->kv.add_to(app);
  o->lora.add_to(app);
  app.add_flag("--json", o->json, "one JSON object per test on stdout");
  return [o]() {
    if (o->reps < 1) fail("--repetitions must be at least 1");
    if (o->n_prompt < 0 || o->n_gen < 0 || o->depth < 0) fail("-p, -n and -d must not be negative");
    auto model = Model::load(o->model);
    const HParams& hp = model->hparams();
    const int threads = o->threads > 0 ? o->threads : default_threads();
    SessionOptions so;
    so.n_threads = threads;
    so.n_ctx = o->depth + std::max(o->n_prompt, o->n_gen) + 1;
    if (o->n_batch < 0) fail("--batch-size must not be negative");
    if (o->n_batch > 0) so.n_batch = o->n_batch;
    so.kv_types = o->kv.types();
    so.lora = o->lora.load(*model);
    Session session(*model, so);
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(hp.n_vocab - 1));
    using clock = std::chrono::steady_clock;
    // The depth's tokens go in once; each run truncates the cache back to them.
    std::vector<int32_t> context(o->depth);
    for (int32_t& t : context) t = pick(rng);
    if (o->depth > 0) session.eval(context);
    const std::string at_depth = o->depth > 0 ? fmt::format(" @ d{}", o->depth) : "";

    std::vector<TestResult> results;
    auto run_test = [&](const std::string& name, int n, auto&& body) {
      TestResult r{name, n, {}};
      for (int rep = 0; rep <= o->reps; ++rep) {  // rep 0 warms up
        session.truncate(o->depth);
        const auto t0 = clock::now();
        body();
        const double s = std::chrono::duration<double>(clock::now() - t0).count();
        if (rep > 0) r.samples_ts.push_back(n / s);
      }
      results.push_back(std::move(r));
    };
    if (o->n_prompt > 0) {
      std::vector<int32_t> prompt(o->n_prompt);
      for (int32_t& t : prompt) t = pick(rng);
      run_test(fmt::format("pp{}{}", o->n_prompt, at_depth), o->n_prompt, [&] { session.eval(prompt); });
    }
    if (o->n_gen > 0) {
      run_test(fmt::format("tg{}{}", o->n_gen, at_depth), o->n_gen, [&] {
        int32_t tok = pick(rng);
        for (int i = 0; i < o->n_gen; ++i) {
          session.eval(std::span<const int32_t>(&tok, 1));
          tok = pick(rng);
        }
      });
    }

    const GGUFFile& f = model->gguf();
    int64_t params = 0;
    for (const TensorInfo& t : f.tensors()) params += t.nelements;
    const double rss = peak_rss_mib();
    if (o->json) {
      for (const TestResult& r : results)
        fmt::print("{{\"model\": \"{}\", \"size\": {}, \"n_params\": {}, \"n_threads\": {}, \"test\": \"{}\", "
                   "\"n_prompt\": {}, \"n_gen\": {}, \"n_depth\": {}, \"avg_ts\": {:.3f}, \"stddev_ts\": {:.3f}, "
                   "\"samples_ts\": [{:.3f}], \"type_k\": \"{}\", \"type_v\": \"{}\", \"kv_bytes\": {}, "
                   "\"peak_rss_mib\": {:.1f}}}\n",
                   o->model, f.file_size(), params, threads, r.name,
                   r.name.rfind("pp", 0) == 0 ? r.n_tokens : 0, r.name.rfind("tg", 0) == 0 ? r.n_tokens : 0,
                   o->depth, r.mean(), r.stddev(), fmt::join(r.samples_ts, ", "), dtype_name(so.kv_types.k),
                   dtype_name(so.kv_types.v), session.kv_bytes(), rss);
    } else {
      fmt::print("| {:<30} | {:>10} | {:>8} | {:>7} | {:>14} | {:>20} |\n", "model", "size", "params", "threads", "test", "t/s");
      fmt::print("| {:-<30} | {:->10} | {:->8} | {:->7} | {:->14} | {:->20} |\n", "", "", "", "", "", "");
      for (const TestResult& r : results)
        fmt::print("| {:<30} | {:>6.2f} GiB | {:>6.2f} B | {:>7} | {:>14} | {:>11.2f} ± {:>6.2f} |\n",
                   hp.arch + " " + f.opt_string("general.name").value_or(""), f.file_size() / 1073741824.0,
                   params / 1e9, threads, r.name, r.mean(), r.stddev());
      fmt::print("\npeak RSS {:.1f} MiB (file {:.1f} MiB, KV cache {:.1f} MiB, {})\n", rss,
                 f.file_size() / 1048576.0, session.kv_bytes() / 1048576.0, kv_types_name(so.kv_types));
    }
    return 0;
  };
}

}  // namespace slm::cli
