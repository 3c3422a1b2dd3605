// slm perplexity: llama-perplexity's number for a model and a text (see runtime/perplexity.h).
#include <fmt/format.h>

#include <cstdio>

#include "commands.h"
#include "rope_options.h"
#include "kv_options.h"
#include "lora_options.h"
#include "core/error.h"
#include "core/whole_file.h"
#include "models/model.h"
#include "runtime/perplexity.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {

Runner add_perplexity(CLI::App& app) {
  struct Opts {
    std::string model, file, kl_base;
    KvCacheOptions kv;
    int ctx = 512, batch = 512, chunks = -1, threads = 0;
    bool kl = false;
    LoraOptions lora;
    RopeOptions rope;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model")->required();
  app.add_option("-f,--file", o->file, "text file (tokenized whole, with BOS as the vocabulary says)")->required();
  app.add_option("-c,--ctx-size", o->ctx, "tokens per chunk (default 512, as llama-perplexity)");
  app.add_option("-b,--batch-size", o->batch, "tokens per forward pass (default 512, at most the chunk)");
  app.add_option("--chunks", o->chunks, "score at most this many chunks (default: all)");
  o->kv.add_to(app);
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  o->lora.add_to(app);
  o->rope.add_to(app);
  app.add_option("--kl-divergence-base", o->kl_base,
                 "file of the full-precision model's log-probabilities: written by this run, or with "
                 "--kl-divergence read and compared with (2 bytes per vocabulary entry per scored token)");
  app.add_flag("--kl-divergence", o->kl,
               "compare with --kl-divergence-base: mean KL divergence, its percentiles, top-token "
               "agreement and PPL ratio, as llama-perplexity prints them");
  return [o]() {
    if (o->kl && o->kl_base.empty()) fail("--kl-divergence needs --kl-divergence-base FILE");
    const std::string text = read_whole_file(o->file, "text file");
    auto model = Model::load(GGUFFile::open(o->model, o->rope.overrides(o->model)));
    auto tok = Tokenizer::from_gguf(model->gguf());
    PerplexityOptions po;
    po.n_ctx = o->ctx;
    if (const std::string w = context_warning(*model, po.n_ctx); !w.empty()) fmt::print(stderr, "slm: warning: {}\n", w);
    po.n_batch = o->batch;
    po.n_chunks = o->chunks;
    po.lora = o->lora.load(*model);
    po.n_threads = o->threads > 0 ? o->threads : default_threads();
    po.kv_types = o->kv.types();
    (o->kl ? po.kl_base_in : po.kl_base_out) = o->kl_base;
    // Running values as llama-perplexity prints them: [chunk]ppl, on one line.
    po.on_chunk = [](int c, int, double ppl) {
      fmt::print("[{}]{:.4f},", c + 1, ppl);
      std::fflush(stdout);
    };
    const PerplexityResult r = perplexity(*model, *tok, text, po);
    fmt::print("\nFinal estimate: PPL = {:.4f} +/- {:.5f}\n", r.ppl, r.ppl_error);
    if (r.has_kl) {
      const KlStats& k = r.kl;
      fmt::print("\n====== Perplexity statistics ======\n");
      fmt::print("Mean PPL(Q)                   : {:10.6f} +/- {:.6f}\n", r.ppl, r.ppl_error);
      fmt::print("Mean PPL(base)                : {:10.6f}\n", k.base_ppl);
      fmt::print("Mean PPL(Q)/PPL(base)         : {:10.6f}\n", k.ppl_ratio);
      fmt::print("\n====== KL divergence statistics ======\n");
      fmt::print("Mean    KLD: {:10.6f} +/- {:.6f}\n", k.kld_mean, k.kld_error);
      fmt::print("Maximum KLD: {:10.6f}\n", k.kld_max);
      fmt::print("99.9%   KLD: {:10.6f}\n", k.kld_p999);
      fmt::print("99.0%   KLD: {:10.6f}\n", k.kld_p99);
      fmt::print("Median  KLD: {:10.6f}\n", k.kld_median);
      fmt::print("\n====== Token probability statistics ======\n");
      fmt::print("Same top p: {:6.3f} +/- {:.3f} %\n", 100 * k.same_top, 100 * k.same_top_error);
    }
    std::fflush(stdout);
    fmt::print(stderr, "{} tokens, {} chunks of {}, {} scored; {:.1f}s ({:.0f} tokens/s)\n", r.n_tokens, r.n_chunks,
               o->ctx, r.n_scored, r.seconds, r.seconds > 0 ? r.n_chunks * o->ctx / r.seconds : 0.0);
    return 0;
  };
}

}  // namespace slm::cli
