// slm infill: fill in the middle of a code file with a code model (Qwen2.5-Coder, CodeGemma,
// StarCoder2, ...): the text before and after a cursor in, the text that belongs between them
// out (streamed to stdout). The prompt is laid out as llama.cpp's /infill does
// (runtime/infill.h).
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/error.h"
#include "core/whole_file.h"
#include "generation_options.h"
#include "models/model.h"
#include "runtime/generate.h"
#include "runtime/grammar_vocab.h"
#include "runtime/infill.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {

namespace {

struct InfillOptions {
  std::string prefix, suffix, prefix_file, suffix_file, file, at, typed;
  std::vector<std::string> extra;
  bool spm = false, print_prompt = false;
};

// Byte offset of LINE:COLUMN (both from 1; the column counts bytes) in `text`.
size_t cursor_offset(const std::string& text, const std::string& at, const std::string& file) {
  const size_t colon = at.find(':');
  long line = 0, col = 0;
  try {
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    size_t used = 0;
    line = std::stol(at.substr(0, colon), &used);
    if (used != colon) throw std::invalid_argument("line");
    const std::string c = at.substr(colon + 1);
    col = std::stol(c, &used);
    if (used != c.size()) throw std::invalid_argument("column");
  } catch (const std::exception&) {
    fail("--at '{}': give the cursor as LINE:COLUMN, both counted from 1 (e.g. --at 12:5)", at);
  }
  if (line < 1 || col < 1) fail("--at '{}': the line and the column count from 1", at);
  size_t pos = 0;
  for (long l = 1; l < line; ++l) {
    const size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) fail("--at {}: {} has only {} lines", at, file, l);
    pos = nl + 1;
  }
  const size_t end = std::min(text.find('\n', pos), text.size());
  if (static_cast<size_t>(col - 1) > end - pos)
    fail("--at {}: line {} of {} has {} bytes; the column can be at most {}", at, line, file, end - pos, end - pos + 1);
  return pos + static_cast<size_t>(col - 1);
}

InfillInput read_input(const InfillOptions& o) {
  InfillInput in;
  const bool split = !o.file.empty();
  if (split && (!o.prefix.empty() || !o.suffix.empty() || !o.prefix_file.empty() || !o.suffix_file.empty()))
    fail("--file/--at take the prefix and suffix from the file: leave out --prefix, --suffix, --prefix-file and --suffix-file");
  if (split) {
    if (o.at.empty()) fail("--file needs --at LINE:COLUMN, the cursor to fill at");
    const std::string text = read_whole_file(o.file, "file to fill in");
    const size_t cut = cursor_offset(text, o.at, o.file);
    in.prefix = text.substr(0, cut);
    in.suffix = text.substr(cut);
    in.filename = std::filesystem::path(o.file).filename().string();
  } else {
    if (!o.at.empty()) fail("--at needs --file");
    if (!o.prefix.empty() && !o.prefix_file.empty()) fail("give --prefix or --prefix-file, not both");
    if (!o.suffix.empty() && !o.suffix_file.empty()) fail("give --suffix or --suffix-file, not both");
    in.prefix = o.prefix_file.empty() ? o.prefix : read_whole_file(o.prefix_file, "prefix file");
    in.suffix = o.suffix_file.empty() ? o.suffix : read_whole_file(o.suffix_file, "suffix file");
    if (in.prefix.empty() && in.suffix.empty())
      fail("nothing to fill in: give the code before the cursor (--prefix or --prefix-file) and after it (--suffix or "
           "--suffix-file), or --file F --at LINE:COLUMN");
  }
  in.middle = o.typed;
  in.spm = o.spm;
  for (const std::string& path : o.extra)
    in.extra.push_back({std::filesystem::path(path).filename().string(), read_whole_file(path, "--extra file")});
  return in;
}

}  // namespace

Runner add_infill(CLI::App& app) {
  auto g = std::make_shared<GenerationOptions>();
  auto o = std::make_shared<InfillOptions>();
  g->add_to(app);
  app.add_option("--prefix", o->prefix, "the code before the cursor");
  app.add_option("--suffix", o->suffix, "the code after the cursor");
  app.add_option("--prefix-file", o->prefix_file, "file holding the code before the cursor");
  app.add_option("--suffix-file", o->suffix_file, "file holding the code after the cursor");
  app.add_option("--file", o->file, "a file to fill in at --at (its name is shown to the model)");
  app.add_option("--at", o->at, "the cursor in --file: LINE:COLUMN, from 1 (the column counts bytes)");
  app.add_option("-p,--prompt", o->typed, "text already typed at the cursor, which the fill continues");
  app.add_option("--extra", o->extra, "another file of the project for context (repeat for several)");
  app.add_flag("--spm", o->spm, "suffix-prefix-middle order (for models trained that way)");
  app.add_flag("--print-prompt", o->print_prompt, "print the prompt, special tokens shown, to stderr first");
  return [g, o]() {
    auto model = g->load_model();
    auto tok = Tokenizer::from_gguf(model->gguf());
    if (const std::string why = infill_unsupported(*tok); !why.empty()) fail("{}", why);
    const InfillInput in = read_input(*o);
    Session session(*model, g->session_options(*model));
    const InfillPrompt p = infill_prompt(*tok, in, InfillBudget::for_reply(session.n_ctx(), g->n_predict));
    if (p.truncated())
      fmt::print(stderr, "slm: warning: the context ({} tokens) holds only part of the input: {} prefix, {} suffix, {} "
                 "extra tokens left out (raise -c)\n", session.n_ctx(), p.prefix_cut, p.suffix_cut, p.extra_cut);
    if (o->print_prompt) fmt::print(stderr, "{}\n", tok->decode(p.tokens, /*render_special=*/true));
    Sampler sampler(g->sampler_params(*tok), static_cast<int32_t>(model->hparams().n_vocab));
    if (auto gr = g->load_grammar()) sampler.set_grammar({gr, make_grammar_vocab(*tok)});
    Generator gen(*g, *tok, session);
    const GenerateResult r = gen(sampler, p.tokens, [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    if (r.context_full) fmt::print(stderr, "\nslm: stopped: the context ({} tokens) is full\n", session.n_ctx());
    return 0;
  };
}

}  // namespace slm::cli
