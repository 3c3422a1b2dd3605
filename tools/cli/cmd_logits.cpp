// slm logits: every position's logits in the fixture format (a reference tool: F32 cache).
#include <fmt/format.h>

#include <cstdio>
#include <sstream>

#include "commands.h"
#include "rope_options.h"
#include "lora_options.h"
#include "core/error.h"
#include "models/model.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {

namespace {
std::vector<int32_t> parse_token_list(const std::string& s) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(word, &used);
    } catch (...) {
      used = 0;
    }
    if (used != word.size() || v < 0 || v > INT32_MAX) fail("--tokens: '{}' is not a token id", word);
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) fail("--tokens: no token ids given");
  return ids;
}

void write_logits(const std::string& path, const std::vector<int32_t>& ids, int32_t n_vocab,
                  const std::vector<float>& logits) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail("{}: cannot open for writing", path);
  const int32_t n = static_cast<int32_t>(ids.size());
  bool ok = std::fwrite(&n, 4, 1, f) == 1 && std::fwrite(&n_vocab, 4, 1, f) == 1 &&
            std::fwrite(ids.data(), 4, ids.size(), f) == ids.size() &&
            std::fwrite(logits.data(), 4, logits.size(), f) == logits.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) fail("{}: write failed", path);
}
}  // namespace

Runner add_logits(CLI::App& app) {
  struct Opts { std::string model, prompt, tokens, out; bool seq = false; int threads = 0; LoraOptions lora; RopeOptions rope; };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model")->required();
  auto* p = app.add_option("-p,--prompt", o->prompt, "text (BOS as the metadata says, special tokens not parsed)");
  auto* t = app.add_option("--tokens", o->tokens, "token ids separated by spaces");
  p->excludes(t);
  app.add_option("-o,--output", o->out, "output file")->required();
  app.add_flag("--seq", o->seq, "evaluate one token at a time instead of one batch");
  o->rope.add_to(app);
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  o->lora.add_to(app);
  return [o, p, t]() {
    if (!p->count() && !t->count()) fail("logits needs -p TEXT or --tokens \"ID ID ...\"");
    auto model = Model::load(GGUFFile::open(o->model, o->rope.overrides(o->model)));
    std::vector<int32_t> ids;
    if (t->count()) {
      ids = parse_token_list(o->tokens);
    } else {
      auto tok = Tokenizer::from_gguf(model->gguf());
      ids = tok->encode(o->prompt, /*add_special=*/true, /*parse_special=*/false);
    }
    const int64_t n_vocab = model->hparams().n_vocab;
    SessionOptions so;
    so.n_ctx = static_cast<int>(ids.size());
    so.n_threads = o->threads > 0 ? o->threads : default_threads();
    so.kv_types = DType::F32;
    so.lora = o->lora.load(*model);
    so.n_batch = o->seq ? 1 : static_cast<int>(ids.size());
    Session session(*model, so);
    std::vector<float> all(ids.size() * n_vocab);
    if (o->seq) {
      for (size_t i = 0; i < ids.size(); ++i) {
        const auto& l = session.eval(std::span<const int32_t>(&ids[i], 1));
        std::copy(l.begin(), l.begin() + n_vocab, all.begin() + i * n_vocab);
      }
    } else {
      const auto& l = session.eval(ids, /*all_logits=*/true);
      std::copy(l.begin(), l.begin() + all.size(), all.begin());
    }
    write_logits(o->out, ids, static_cast<int32_t>(n_vocab), all);
    fmt::print(stderr, "wrote {} x {} logits to {}\n", ids.size(), n_vocab, o->out);
    return 0;
  };
}

}  // namespace slm::cli
