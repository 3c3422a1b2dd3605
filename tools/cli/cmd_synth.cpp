// slm synth: a random-weight model with a real model's shape, for benchmarks.
#include <fmt/format.h>

#include "commands.h"
#include "convert/synth.h"
#include "core/error.h"

namespace slm::cli {

Runner add_synth(CLI::App& app) {
  struct Opts { std::string like, vocab, out, type = "f16"; uint64_t seed = 42; int threads = 0; bool quiet = false; };
  auto o = std::make_shared<Opts>();
  // The tiny-* shapes are for tests (seconds to write, any vocabulary) and stay out of the help.
  app.add_option("--like", o->like, "model shape: " + convert::synth_shape_names())->required();
  app.add_option("--vocab", o->vocab, "GGUF file whose tokenizer.* metadata to copy (its token count must match the model's)")->required();
  app.add_option("-o,--output", o->out, "GGUF file to write")->required();
  app.add_option("--type", o->type, "weight type: f16 (default), f32 or bf16");
  app.add_option("--seed", o->seed, "random seed (default 42)");
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  app.add_flag("-q,--quiet", o->quiet, "no progress bar or summary");
  return [o]() {
    convert::SynthOptions so;
    so.like = o->like;
    so.vocab_path = o->vocab;
    so.out_path = o->out;
    if (o->type == "f16") so.type = DType::F16;
    else if (o->type == "f32") so.type = DType::F32;
    else if (o->type == "bf16") so.type = DType::BF16;
    else fail("--type '{}' is not supported (use f16, f32 or bf16)", o->type);
    so.seed = o->seed;
    so.n_threads = o->threads > 0 ? o->threads : default_threads();
    so.progress = !o->quiet;
    const convert::SynthReport r = convert::synth_model(so);
    if (!o->quiet)
      fmt::print(stderr, "wrote {}: {} parameters ({:.3f} B), vocab {}, {:.2f} MiB in {:.1f}s\n", o->out,
                 r.n_params, r.n_params / 1e9, r.n_vocab, r.file_bytes / 1048576.0, r.seconds);
    return 0;
  };
}

}  // namespace slm::cli
