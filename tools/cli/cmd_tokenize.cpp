// slm tokenize: token ids of a text taken verbatim (no escapes), space-separated, or as
// llama-tokenize prints them (--ids: a list; --pieces: ID -> 'piece' lines). Special-token text such as
// "<|im_start|>" is plain text unless --parse-special is given (off by default so that ids of
// arbitrary text never change; llama.cpp's llama-tokenize parses by default, and Hugging Face
// tokenizers do too).
#include <fmt/format.h>

#include "commands.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/whole_file.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {

Runner add_tokenize(CLI::App& app) {
  struct Opts {
    std::string model, prompt, file;
    bool no_bos = false, parse_special = false, stdin_text = false, ids_list = false, pieces = false, show_count = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF file (a vocabulary-only file is enough)")->required();
  auto* p = app.add_option("-p,--prompt", o->prompt, "text to tokenize");
  auto* f = app.add_option("-f,--file", o->file, "file whose bytes are tokenized");
  auto* in = app.add_flag("--stdin", o->stdin_text, "tokenize standard input (llama-tokenize's --stdin)");
  p->excludes(f);
  p->excludes(in);
  f->excludes(in);
  app.add_flag("--ids", o->ids_list, "print the ids as a list, [1, 2, 3] (llama-tokenize's --ids)");
  app.add_flag("--pieces", o->pieces, "print one token a line, ID -> 'piece' (llama-tokenize's default look)");
  app.add_flag("--show-count", o->show_count, "then print the number of tokens");
  app.add_flag("--no-parse-special", [](int64_t) {}, "accepted for llama-tokenize's command lines (slm's default)");
  app.add_flag("--log-disable", [](int64_t) {}, "accepted for llama-tokenize's command lines (slm logs nothing here)");
  app.add_flag("--no-bos", o->no_bos, "do not add the BOS token");
  app.add_flag("--parse-special", o->parse_special,
               "parse the text of special tokens (e.g. <|im_start|>) as those tokens, as Hugging Face "
               "and llama-tokenize do; off by default: such text is tokenized as plain text");
  return [o, p, f]() {
    if (!p->count() && !f->count() && !o->stdin_text) fail("tokenize needs -p TEXT, --file FILE or --stdin");
    if (o->ids_list && o->pieces) fail("--ids and --pieces are two ways to print: give one");
    const std::string text = o->stdin_text ? read_whole_file("/dev/stdin", "standard input")
                             : f->count() ? read_whole_file(o->file, "file")
                                          : o->prompt;
    auto gguf = GGUFFile::open(o->model);
    auto tok = Tokenizer::from_gguf(*gguf);
    const std::vector<int32_t> ids = tok->encode(text, !o->no_bos, o->parse_special);
    if (o->ids_list) {
      fmt::print("[{}]\n", fmt::join(ids, ", "));
    } else if (o->pieces) {
      for (const int32_t id : ids) fmt::print("{:6} -> '{}'\n", id, tok->token_to_piece(id, /*render_special=*/true));
    } else {
      fmt::print("{}\n", fmt::join(ids, " "));
    }
    if (o->show_count) fmt::print("Total number of tokens: {}\n", ids.size());
    return 0;
  };
}

}  // namespace slm::cli
