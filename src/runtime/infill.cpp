#include "runtime/infill.h"

#include <algorithm>

#include "core/error.h"

namespace slm {

std::string infill_unsupported(const Tokenizer& tok) {
  std::string missing;
  auto need = [&](int32_t id, const char* what) {
    if (id >= 0) return;
    if (!missing.empty()) missing += ", ";
    missing += what;
  };
  need(tok.fim_pre(), "prefix");
  need(tok.fim_suf(), "suffix");
  need(tok.fim_mid(), "middle");
  if (missing.empty()) return {};
  return "this model cannot fill in the middle: its vocabulary has no FIM " + missing +
         " token (tokenizer.ggml.fim_*_token_id, or a token such as <|fim_prefix|>); use a code model trained for it, "
         "such as Qwen2.5-Coder, CodeGemma or StarCoder2";
}

InfillPrompt infill_prompt(const Tokenizer& tok, const InfillInput& in, const InfillBudget& budget) {
  if (const std::string why = infill_unsupported(tok); !why.empty()) fail("{}", why);
  auto text = [&](const std::string& s) { return tok.encode(s, /*add_special=*/false, /*parse_special=*/false); };
  const std::vector<int32_t> prefix = text(in.prefix), suffix = text(in.suffix), middle = text(in.middle);

  // The repo-level context, built whole and then cut from the front.
  std::vector<int32_t> extra;
  auto append = [&extra](const std::vector<int32_t>& t) { extra.insert(extra.end(), t.begin(), t.end()); };
  if (tok.fim_rep() >= 0) {
    extra.push_back(tok.fim_rep());
    append(text(in.repo + "\n"));
  }
  for (const InfillFile& f : in.extra) {
    if (tok.fim_sep() >= 0) {
      extra.push_back(tok.fim_sep());
      append(text(f.name + "\n"));
    } else {
      append(text("\n\n--- snippet ---\n\n"));  // llama.cpp's separator where there is no FIM_SEP
    }
    append(text(f.text));
  }
  if (tok.fim_sep() >= 0) {
    extra.push_back(tok.fim_sep());
    append(text(in.filename + "\n"));
  }

  const int64_t n_special = 3 + (tok.add_bos() && tok.bos() >= 0);
  const int64_t room = budget.n_ctx - budget.n_generate - n_special - static_cast<int64_t>(middle.size());
  if (room < 0)
    fail("infill: the text at the cursor ({} tokens) and {} tokens to generate do not fit in a context of {} tokens; "
         "shorten it, generate fewer tokens, or use a larger context",
         middle.size(), budget.n_generate, budget.n_ctx);
  const int64_t n_pre = static_cast<int64_t>(prefix.size()), n_suf = static_cast<int64_t>(suffix.size());
  const int64_t window = std::min(budget.window, room);
  InfillPrompt out;
  out.prefix_tokens = std::min(n_pre, std::max(3 * window / 4, window - n_suf));
  out.suffix_tokens = std::min(n_suf, window - out.prefix_tokens);
  out.extra_tokens = std::min(static_cast<int64_t>(extra.size()), room - out.prefix_tokens - out.suffix_tokens);
  out.prefix_cut = n_pre - out.prefix_tokens;
  out.suffix_cut = n_suf - out.suffix_tokens;
  out.extra_cut = static_cast<int64_t>(extra.size()) - out.extra_tokens;

  // Prefix: its end (nearest the cursor) and what was typed; suffix: its beginning.
  std::vector<int32_t> pre = {tok.fim_pre()};
  pre.insert(pre.end(), prefix.end() - out.prefix_tokens, prefix.end());
  pre.insert(pre.end(), middle.begin(), middle.end());
  std::vector<int32_t> suf = {tok.fim_suf()};
  suf.insert(suf.end(), suffix.begin(), suffix.begin() + out.suffix_tokens);

  std::vector<int32_t>& t = out.tokens;
  t.assign(extra.end() - out.extra_tokens, extra.end());
  if (tok.add_bos() && tok.bos() >= 0) t.push_back(tok.bos());
  const auto& first = in.spm ? suf : pre;
  const auto& second = in.spm ? pre : suf;
  t.insert(t.end(), first.begin(), first.end());
  t.insert(t.end(), second.begin(), second.end());
  t.push_back(tok.fim_mid());
  return out;
}

}  // namespace slm
