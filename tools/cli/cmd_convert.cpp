// slm convert: a Hugging Face model folder to GGUF, in C++ (no Python, no PyTorch).
#include <fmt/format.h>

#include "commands.h"
#include "convert/hf_convert.h"

namespace slm::cli {

Runner add_convert(CLI::App& app) {
  struct Opts {
    std::string dir, out, outtype = "f16";
    bool vocab_only = false, quiet = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("dir", o->dir, "Hugging Face model folder (config.json, *.safetensors, tokenizer.json or a BPE-type SentencePiece "
                                    "tokenizer.model); architectures: " +
                                    convert::hf_architecture_names())
      ->required();
  app.add_option("-o,--outfile", o->out, "GGUF file to write")->required();
  app.add_option("--outtype", o->outtype,
                 "matrix type: f32, f16 (default, as llama.cpp), bf16, q8_0, or auto (bf16 for a bf16 "
                 "checkpoint, else f16); norms, biases and rope factors stay f32");
  app.add_flag("--vocab-only", o->vocab_only, "write only the tokenizer (config.json optional, no weights read)");
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  app.add_flag("-q,--quiet", o->quiet, "no progress bar or summary");
  return [o]() {
    convert::ConvertOptions co;
    co.dir = o->dir;
    co.out_path = o->out;
    co.outtype = o->outtype;
    co.vocab_only = o->vocab_only;
    co.n_threads = o->threads > 0 ? o->threads : default_threads();
    co.progress = !o->quiet;
    const convert::ConvertReport r = convert::convert_hf(co);
    if (!o->quiet) {
      const double mb_s = r.seconds > 0 ? r.bytes_read / 1e6 / r.seconds : 0.0;
      if (o->vocab_only)
        fmt::print(stderr, "wrote {}: vocabulary only, {} tokens (pre-tokenizer {}), {:.2f} MiB in {:.2f}s\n", o->out,
                   r.n_vocab, r.pre, r.file_bytes / 1048576.0, r.seconds);
      else
        fmt::print(stderr,
                   "wrote {}: {} ({}), {} tensors, {} parameters ({:.1f} M), {}, vocab {} ({}); {:.2f} MiB "
                   "in {:.2f}s, read {:.1f} MB at {:.0f} MB/s\n",
                   o->out, r.hf_arch, r.arch, r.n_tensors, r.n_params, r.n_params / 1e6, r.outtype, r.n_vocab,
                   r.pre, r.file_bytes / 1048576.0, r.seconds, r.bytes_read / 1e6, mb_s);
    }
    return 0;
  };
}

}  // namespace slm::cli
