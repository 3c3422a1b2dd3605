#include "convert/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace slm::convert {

Progress::Progress(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)), total_(std::max<uint64_t>(total, 1)), enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
  // An exception is unwinding (finish() was not reached): end the bar's line so that the error
  // message starts on a line of its own.
  if (enabled_ && tty_ && !finished_ && last_permille_ >= 0) std::fputc('\n', stderr);
}

void Progress::advance(uint64_t units, const std::string& item) {
  done_ = std::min(total_, done_ + units);
  draw(item, false);
}

void Progress::finish() {
  if (finished_) return;
  done_ = total_;
  draw({}, true);
  finished_ = true;
}

void Progress::draw(const std::string& item, bool force) {
  if (!enabled_ || finished_) return;
  const int permille = static_cast<int>(done_ * 1000 / total_);
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(now - start_).count();
  if (tty_) {
    // Redraw at most 10 times a second.
    if (!force && permille == last_permille_) return;
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    constexpr int kWidth = 30;
    const int filled = permille * kWidth / 1000;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < kWidth) bar += '>';
    bar.resize(kWidth, ' ');
    std::string shown = item.size() > 32 ? item.substr(0, 32) : item;
    fmt::print(stderr, "\r{} [{}] {:5.1f}% {:6.1f}s {:<32}", label_, bar, permille / 10.0, secs, shown);
    if (done_ == total_ && force) std::fputc('\n', stderr);
    std::fflush(stderr);
  } else {
    const int decile = permille / 100;
    if (!force && decile == last_permille_ / 100) return;
    if (force && last_permille_ == 1000) return;
    fmt::print(stderr, "{}: {:3d}% ({:.1f}s)\n", label_, decile * 10, secs);
  }
  last_permille_ = permille;
  last_draw_ = now;
}

}  // namespace slm::convert
