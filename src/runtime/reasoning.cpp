#include "runtime/reasoning.h"

namespace slm {

namespace {

constexpr std::string_view kOpen = "<think>", kClose = "</think>";

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string_view trim_left(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  return s;
}

// Length of the longest end of `s` that `tag` starts with (a tag cut by the stream).
size_t partial_tag_at_end(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

}  // namespace

bool prompt_opens_reasoning(std::string_view p) {
  while (!p.empty() && is_space(p.back())) p.remove_suffix(1);
  return p.size() >= kOpen.size() && p.substr(p.size() - kOpen.size()) == kOpen;
}

ReasoningSplitter::ReasoningSplitter(bool open) : state_(open ? State::Reasoning : State::Start) {}

ReasoningSplitter::Delta ReasoningSplitter::push(std::string_view piece, bool last) {
  Delta d = take(piece);
  if (last) {
    Delta end = finish();
    d.reasoning += end.reasoning;
    d.content += end.content;
  }
  return d;
}

ReasoningSplitter::Delta ReasoningSplitter::take(std::string_view piece) {
  Delta d;
  held_.append(piece);
  for (;;) {
    switch (state_) {
      case State::Start: {
        // Before anything but whitespace: the reply may open its reasoning.
        const std::string_view rest = trim_left(held_);
        if (rest.size() >= kOpen.size() && rest.substr(0, kOpen.size()) == kOpen) {
          held_.erase(0, held_.size() - rest.size() + kOpen.size());
          state_ = State::Reasoning;
          continue;
        }
        if (kOpen.substr(0, rest.size()) == rest) return d;  // maybe a tag still coming
        state_ = State::Content;
        continue;
      }
      case State::Reasoning: {
        if (!reasoning_started_) {
          const size_t lead = held_.size() - trim_left(held_).size();
          held_.erase(0, lead);
          if (held_.empty()) return d;
          reasoning_started_ = true;
        }
        const size_t close = held_.find(kClose);
        if (close != std::string::npos) {
          std::string_view r(held_.data(), close);
          while (!r.empty() && is_space(r.back())) r.remove_suffix(1);
          d.reasoning.append(r);
          held_.erase(0, close + kClose.size());
          state_ = State::AfterReasoning;
          continue;
        }
        // Give out all but a possible cut tag and trailing whitespace (dropped if the tag follows).
        size_t keep = partial_tag_at_end(held_, kClose);
        size_t end = held_.size() - keep;
        while (end > 0 && is_space(held_[end - 1])) --end;
        d.reasoning.append(held_, 0, end);
        held_.erase(0, end);
        return d;
      }
      case State::AfterReasoning: {
        const size_t lead = held_.size() - trim_left(held_).size();
        held_.erase(0, lead);
        if (held_.empty()) return d;
        state_ = State::Content;
        continue;
      }
      case State::Content:
        d.content.append(held_);
        held_.clear();
        return d;
    }
  }
}

ReasoningSplitter::Delta ReasoningSplitter::finish() {
  Delta d;
  switch (state_) {
    case State::Start:
    case State::Content: d.content = std::move(held_); break;
    case State::Reasoning: {
      std::string_view r = held_;
      while (!r.empty() && is_space(r.back())) r.remove_suffix(1);
      d.reasoning = std::string(r);
      break;
    }
    case State::AfterReasoning: break;
  }
  held_.clear();
  return d;
}

ReasoningSplitter::Delta ReasoningSplitter::split(std::string_view reply, bool open) {
  return ReasoningSplitter(open).push(reply, true);
}

}  // namespace slm
