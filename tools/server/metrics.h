// Prometheus text exposition for /metrics: requests by route and status, token counters, queue
// depth, busy slots, and latency histograms (time to first token, inter-token latency).
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/scheduler.h"

namespace slm::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics : public SchedulerObserver {
 public:
  Metrics();
  void on_first_token(double seconds) override { ttft_.observe(seconds); }
  void on_inter_token(double seconds) override { itl_.observe(seconds); }
  void count_request(const std::string& route, int status);
  std::string render(const SchedulerStats& s, bool ready) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  Histogram ttft_, itl_;
};

}  // namespace slm::server
