// slm tokenize: token ids of a text taken verbatim (no escapes). Special-token text such as
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
  struct Opts { std::string model, prompt, file; bool no_bos = false, parse_special = false; };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF file (a vocabulary-only file is enough)")->required();
  auto* p = app.add_option("-p,--prompt", o->prompt, "text to tokenize");
  auto* f = app.add_option("--file", o->file, "file whose bytes are tokenized");
  p->excludes(f);
  app.add_flag("--no-bos", o->no_bos, "do not add the BOS token");
  app.add_flag("--parse-special", o->parse_special,
               "parse the text of special tokens (e.g. <|im_start|>) as those tokens, as Hugging Face "
               "and llama-tokenize do; off by default: such text is tokenized as plain text");
  return [o, p, f]() {
    if (!p->count() && !f->count()) fail("tokenize needs -p TEXT or --file FILE");
    const std::string text = f->count() ? read_whole_file(o->file, "file") : o->prompt;
    auto gguf = GGUFFile::open(o->model);
    auto tok = Tokenizer::from_gguf(*gguf);
    const std::vector<int32_t> ids = tok->encode(text, !o->no_bos, o->parse_special);
    fmt::print("{}\n", fmt::join(ids, " "));
    return 0;
  };
}

}  // namespace slm::cli
