// Runs the slm binary (SLM_CLI_PATH) as a user would: arguments, optional standard input,
// captured stdout and stderr, exit status, and a time limit.
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace slm::test {

struct RunResult {
  int exit_code = -1;  // when exited normally
  int signal = 0;      // when killed by a signal
  bool timed_out = false;
  std::string out, err;
};

// The argv of `SLM_CLI_PATH args...` for posix_spawn: the strings and the null-terminated array
// of pointers into them (kept together, so the pointers stay valid).
class CliArgv {
 public:
  explicit CliArgv(const std::vector<std::string>& args) : strings_{SLM_CLI_PATH} {
    strings_.insert(strings_.end(), args.begin(), args.end());
    for (std::string& a : strings_) ptrs_.push_back(a.data());
    ptrs_.push_back(nullptr);
  }
  CliArgv(const CliArgv&) = delete;
  CliArgv& operator=(const CliArgv&) = delete;
  char** get() { return ptrs_.data(); }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> ptrs_;
};

// stdin_data: written to the child's standard input, then closed (nullptr: /dev/null).
inline RunResult run_cli(const std::vector<std::string>& args, double timeout_s = 60.0,
                         const std::string* stdin_data = nullptr) {
  int out_pipe[2], err_pipe[2], in_pipe[2] = {-1, -1};
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe2 failed");
  if (stdin_data && pipe2(in_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (stdin_data) posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  else posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  CliArgv argv(args);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, SLM_CLI_PATH, &fa, nullptr, argv.get(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (stdin_data) close(in_pipe[0]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    if (stdin_data) close(in_pipe[1]);
    throw std::runtime_error(std::string("posix_spawn ") + SLM_CLI_PATH + ": " + std::strerror(rc));
  }
  if (stdin_data) {
    // Small scripted inputs fit in the pipe buffer; a child that exits early closes its end.
    signal(SIGPIPE, SIG_IGN);
    size_t off = 0;
    while (off < stdin_data->size()) {
      const ssize_t n = write(in_pipe[1], stdin_data->data() + off, stdin_data->size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(in_pipe[1]);
  }

  RunResult r;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    const int n = poll(fds, 2, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds)
    if (p.fd >= 0) close(p.fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

}  // namespace slm::test
