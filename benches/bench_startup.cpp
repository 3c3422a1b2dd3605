// Start-up of the shipped program, as a user sees it: from spawning `slm run` on a model to the
// first byte of generated text on its stdout (greedy, a one-word prompt, one token). Reported
// in milliseconds. Needs a model file:
//   SLM_BENCH_MODEL=llama-1b-Q4_0.gguf ./slm_benches --benchmark_filter=FirstToken
// Run it twice and keep the second figure: the first run warms the page cache (and, read
// through slm's huge-page mapping, leaves the file there in 2 MiB folios).
#include <benchmark/benchmark.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

extern char** environ;

namespace {

// Milliseconds from posix_spawn to the first byte the child writes to stdout, or -1.
double first_output_ms(const std::vector<std::string>& args) {
  int out[2];
  if (pipe(out) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  double ms = -1;
  char c;
  if (rc == 0 && read(out[0], &c, 1) == 1)
    ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  while (read(out[0], &c, 1) > 0) {}
  close(out[0]);
  int status = 0;
  if (rc == 0) waitpid(pid, &status, 0);
  return rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ms : -1;
}

void BM_FirstToken(benchmark::State& state) {
  const char* model = std::getenv("SLM_BENCH_MODEL");
  if (!model || !*model) {
    state.SkipWithError("set SLM_BENCH_MODEL to a GGUF model file");
    return;
  }
  const std::vector<std::string> args = {SLM_CLI_PATH, "run", "-m", model, "-p", "Hello", "-n", "1", "--temp", "0"};
  if (first_output_ms(args) < 0) {  // warm-up, and a check that the command works
    state.SkipWithError("slm run failed on SLM_BENCH_MODEL");
    return;
  }
  for (auto _ : state) {
    const double ms = first_output_ms(args);
    if (ms < 0) {
      state.SkipWithError("slm run failed");
      return;
    }
    state.SetIterationTime(ms / 1000.0);
  }
}
// Fifteen single runs: the VM's noise makes the median the figure to quote.
BENCHMARK(BM_FirstToken)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(15)
    ->ReportAggregatesOnly(true);

}  // namespace
