// A progress bar on stderr for long conversions. On a terminal it redraws one line; when
// stderr is a file or pipe (tests, CI logs) it prints a line every 10% instead, so logs stay
// short and free of carriage returns.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace slm::convert {

class Progress {
 public:
  // total: units of work (bytes); label: what is being done, e.g. "quantizing".
  Progress(std::string label, uint64_t total, bool enabled = true);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void advance(uint64_t units, const std::string& item = {});
  void finish();  // draws 100% and ends the line (idempotent)

 private:
  void draw(const std::string& item, bool force);
  std::string label_;
  uint64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  int last_permille_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace slm::convert
