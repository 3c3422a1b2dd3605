// slm embed: sentence embeddings from an embedding model (architecture bert: bge, all-MiniLM,
// e5) or a decoder (its last token's final hidden state). Every text is its own sequence; all of them go through the model in batched passes.
// Output: one vector per line (space-separated floats, shortest exact decimal form), or with
// --json an array of {"text", "tokens" (the ids embedded), "embedding"}. With pooling none each
// text gives one vector per token: one line each, texts separated by an empty line (JSON: an
// array of vectors).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/whole_file.h"
#include "models/model.h"
#include "runtime/embedder.h"

namespace slm::cli {

namespace {

struct Input {
  std::string text;
  std::string where;  // for messages: "-p 2", "FILE line 7"
};

// One text per line; a final newline ends the last line, "\r\n" counts as a newline.
std::vector<Input> read_lines(const std::string& path) {
  std::string data;
  if (path == "-") data.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  else data = read_whole_file(path, "input file");
  const std::string name = path == "-" ? "standard input" : path;
  std::vector<Input> out;
  size_t start = 0, line = 1;
  while (start < data.size()) {
    size_t end = data.find('\n', start);
    if (end == std::string::npos) end = data.size();
    std::string text = data.substr(start, end - start);
    if (!text.empty() && text.back() == '\r') text.pop_back();
    out.push_back({std::move(text), fmt::format("{} line {}", name, line)});
    start = end + 1;
    ++line;
  }
  if (out.empty()) fail("{} has no text to embed (one text per line)", name);
  return out;
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n\v\f") == std::string::npos;
}

void print_vector(std::string& buf, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (i) buf += ' ';
    fmt::format_to(std::back_inserter(buf), "{}", v[i]);
  }
  buf += '\n';
}

void print_json_vector(std::string& buf, const float* v, int64_t n) {
  buf += '[';
  for (int64_t i = 0; i < n; ++i) {
    if (i) buf += ", ";
    fmt::format_to(std::back_inserter(buf), "{}", v[i]);
  }
  buf += ']';
}

}  // namespace

Runner add_embed(CLI::App& app) {
  struct Opts {
    std::string model, file, pooling;
    std::vector<std::string> prompts;
    bool json = false, no_normalize = false, timings = false;
    int threads = 0, n_batch = 512, repeat = 1;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model: an embedding model (bert) or a decoder (last-token pooling)")->required();
  auto* p = app.add_option("-p,--prompt", o->prompts, "a text to embed (repeat -p for more texts)")->allow_extra_args(false);
  auto* f = app.add_option("--file", o->file, "file with one text per line to embed (- : standard input)");
  p->excludes(f);
  app.add_flag("--json", o->json, "print a JSON array of {text, tokens, embedding}");
  app.add_flag("--no-normalize", o->no_normalize, "print the pooled vectors as they are (default: L2-normalized)");
  app.add_option("--pooling", o->pooling, "override the model's pooling: mean, cls, last or none")
      ->check(CLI::IsMember({"mean", "cls", "last", "none"}));
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  app.add_option("-b,--batch-size", o->n_batch, "tokens per forward pass (whole texts; default 512)");
  app.add_flag("--timings", o->timings, "print the time taken and tokens/s to stderr");
  app.add_option("--repeat", o->repeat, "embed everything this many times (for benchmarks with --timings; output once)")
      ->check(CLI::PositiveNumber);
  return [o, p, f]() {
    if (!p->count() && !f->count()) fail("embed needs -p TEXT or --file FILE");
    const auto t_start = std::chrono::steady_clock::now();
    std::vector<Input> inputs;
    if (f->count()) {
      inputs = read_lines(o->file);
    } else {
      for (size_t i = 0; i < o->prompts.size(); ++i)
        inputs.push_back({o->prompts[i], o->prompts.size() == 1 ? "-p" : fmt::format("-p {}", i + 1)});
    }
    for (const Input& in : inputs)
      if (blank(in.text)) fail("{} is empty: there is nothing to embed", in.where);

    auto model = Model::load(o->model);
    EmbedderOptions eo;
    eo.n_threads = o->threads > 0 ? o->threads : default_threads();
    eo.n_batch = o->n_batch;
    if (!o->pooling.empty()) eo.pooling = parse_pooling(o->pooling);
    Embedder emb(*model, eo);
    const auto t_loaded = std::chrono::steady_clock::now();

    std::vector<std::vector<int32_t>> seqs;
    seqs.reserve(inputs.size());
    for (const Input& in : inputs) {
      seqs.push_back(emb.tokenize(in.text));
      if (static_cast<int64_t>(seqs.back().size()) > emb.max_tokens())
        fail("{} is {} tokens long, more than the model's context of {} tokens", in.where,
             seqs.back().size(), emb.max_tokens());
    }
    const auto t_tokenized = std::chrono::steady_clock::now();
    std::vector<std::vector<float>> vecs;
    for (int r = 0; r < o->repeat; ++r) {
      const double before = emb.stats().seconds;
      vecs = emb.embed(seqs, !o->no_normalize);
      if (o->timings && o->repeat > 1) {
        int64_t n_tok = 0;
        for (const auto& s : seqs) n_tok += static_cast<int64_t>(s.size());
        const double s = emb.stats().seconds - before;
        fmt::print(stderr, "embed: run {}: {} tokens in {:.1f} ms, {:.1f} tokens/s\n", r + 1, n_tok, s * 1e3, n_tok / s);
      }
    }

    const int64_t E = emb.dim();
    std::string buf;
    if (o->json) buf += "[\n";
    for (size_t i = 0; i < inputs.size(); ++i) {
      const std::vector<float>& v = vecs[i];
      const int64_t rows = static_cast<int64_t>(v.size()) / E;
      if (o->json) {
        buf += "{\"text\": ";
        buf += nlohmann::json(inputs[i].text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        buf += fmt::format(", \"tokens\": [{}], \"embedding\": ", fmt::join(seqs[i], ", "));
        if (emb.pooling() == Pooling::None) {
          buf += '[';
          for (int64_t r = 0; r < rows; ++r) {
            if (r) buf += ", ";
            print_json_vector(buf, v.data() + r * E, E);
          }
          buf += ']';
        } else {
          print_json_vector(buf, v.data(), E);
        }
        buf += i + 1 < inputs.size() ? "},\n" : "}\n";
      } else {
        if (emb.pooling() == Pooling::None && i > 0) buf += '\n';
        for (int64_t r = 0; r < rows; ++r) print_vector(buf, v.data() + r * E, E);
      }
      if (buf.size() > (1u << 20)) {
        std::fwrite(buf.data(), 1, buf.size(), stdout);
        buf.clear();
      }
    }
    if (o->json) buf += "]\n";
    std::fwrite(buf.data(), 1, buf.size(), stdout);
    std::fflush(stdout);

    if (o->timings) {
      const EmbedStats& st = emb.stats();
      auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
      fmt::print(stderr,
                 "embed: {} texts, {} tokens, {} passes of up to {} tokens, {} threads, pooling {}\n"
                 "embed: load {:.1f} ms, tokenize {:.1f} ms, embed {:.1f} ms: {:.1f} tokens/s, {:.1f} texts/s\n",
                 inputs.size(), st.tokens / o->repeat, st.passes / o->repeat, o->n_batch, eo.n_threads,
                 pooling_name(emb.pooling()), ms(t_start, t_loaded), ms(t_loaded, t_tokenized),
                 st.seconds * 1e3 / o->repeat, st.tokens / st.seconds, st.sequences / st.seconds);
    }
    return 0;
  };
}

}  // namespace slm::cli
