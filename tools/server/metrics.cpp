#include "metrics.h"

#include <fmt/format.h>

namespace slm::server {

void Histogram::observe(double v) {
  std::lock_guard lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  std::lock_guard lock(mu_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
}

Metrics::Metrics()
    : ttft_({0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      itl_({0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5}) {}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

std::string Metrics::render(const SchedulerStats& s, bool ready) const {
  std::string out;
  out += "# HELP slm_requests_total HTTP requests by route and status.\n# TYPE slm_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, n] : requests_)
      out += fmt::format("slm_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  }
  auto metric = [&](const char* name, const char* type, const char* help, uint64_t v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  metric("slm_prompt_tokens_total", "counter", "Prompt tokens of admitted requests (cached ones included).", s.prompt_tokens);
  metric("slm_prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's cache instead of evaluated.",
         s.cached_tokens);
  metric("slm_generated_tokens_total", "counter", "Tokens generated.", s.generated_tokens);
  metric("slm_batch_steps_total", "counter", "Forward passes run by the scheduler.", s.steps);
  metric("slm_draft_tokens_total", "counter", "Tokens the draft model proposed (speculative decoding).", s.drafted_tokens);
  metric("slm_draft_tokens_accepted_total", "counter", "Proposed tokens the model kept.", s.accepted_tokens);
  metric("slm_context_shifts_total", "counter", "Times a request's text filled the context and half of it was dropped "
         "(--context-shift).", s.context_shifts);
  metric("slm_queue_depth", "gauge", "Requests waiting for a slot.", static_cast<uint64_t>(s.queue_depth));
  metric("slm_slots_busy", "gauge", "Slots serving a request.", static_cast<uint64_t>(s.slots_busy));
  metric("slm_slots_total", "gauge", "Slots (--parallel).", static_cast<uint64_t>(s.slots_total));
  metric("slm_model_loaded", "gauge", "1 once the model serves requests.", ready ? 1 : 0);
  ttft_.render(out, "slm_time_to_first_token_seconds", "Time from a request's arrival to its first generated token.");
  itl_.render(out, "slm_inter_token_latency_seconds", "Time between two generated tokens of a request.");
  return out;
}

}  // namespace slm::server
