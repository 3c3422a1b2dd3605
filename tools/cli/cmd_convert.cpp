// slm convert: a Hugging Face model folder to GGUF, in C++ (no Python, no PyTorch).
#include <fmt/format.h>

#include "commands.h"
#include "convert/gguf_split.h"
#include "convert/hf_convert.h"
#include "core/error.h"
#include "core/gguf.h"

namespace slm::cli {

Runner add_convert(CLI::App& app) {
  struct Opts {
    std::string dir, out, outtype = "f16", split_max_size;
    bool vocab_only = false, quiet = false, no_tensor_first_split = false;
    int threads = 0, split_max_tensors = 0;
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
  auto* tensors = app.add_option("--split-max-tensors", o->split_max_tensors,
                                 "write the model in parts of at most N tensors (OUTFILE without .gguf, then "
                                 "-00001-of-0000N.gguf; convert_hf_to_gguf.py's option)");
  app.add_option("--split-max-size", o->split_max_size, "write the model in parts of at most N M or G of tensor data")
      ->excludes(tensors);
  app.add_flag("--no-tensor-first-split", o->no_tensor_first_split, "with a split: the first part holds the metadata only");
  return [o]() {
    convert::SplitOptions split;
    split.max_tensors = o->split_max_tensors;
    if (!o->split_max_size.empty()) split.max_bytes = convert::parse_split_size(o->split_max_size);
    split.no_tensor_first_split = o->no_tensor_first_split;
    if (o->split_max_tensors < 0) fail("--split-max-tensors must be at least 1 (got {})", o->split_max_tensors);
    const bool splitting = (split.max_tensors > 0 || split.max_bytes > 0) && !o->vocab_only;
    const std::string prefix = convert::split_prefix_of(o->out);
    convert::ConvertOptions co;
    co.dir = o->dir;
    // A split is written whole first, then copied into its parts inside the kernel and removed.
    co.out_path = splitting ? prefix + ".split-tmp.gguf" : o->out;
    co.outtype = o->outtype;
    co.vocab_only = o->vocab_only;
    co.n_threads = o->threads > 0 ? o->threads : default_threads();
    co.progress = !o->quiet;
    const convert::ConvertReport r = convert::convert_hf(co);
    std::vector<convert::SplitPart> parts;
    if (splitting)
      parts = convert::split_written_model(
          co.out_path, o->out, [&](const GGUFFile& whole) { return convert::plan_split(whole, prefix, split); },
          co.progress);
    if (!o->quiet) {
      const std::string shown = parts.empty() ? o->out : fmt::format("{} (in {} parts)", prefix, parts.size());
      const double mb_s = r.seconds > 0 ? r.bytes_read / 1e6 / r.seconds : 0.0;
      if (o->vocab_only)
        fmt::print(stderr, "wrote {}: vocabulary only, {} tokens (pre-tokenizer {}), {:.2f} MiB in {:.2f}s\n", o->out,
                   r.n_vocab, r.pre, r.file_bytes / 1048576.0, r.seconds);
      else
        fmt::print(stderr,
                   "wrote {}: {} ({}), {} tensors, {} parameters ({:.1f} M), {}, vocab {} ({}); {:.2f} MiB "
                   "in {:.2f}s, read {:.1f} MB at {:.0f} MB/s\n",
                   shown, r.hf_arch, r.arch, r.n_tensors, r.n_params, r.n_params / 1e6, r.outtype, r.n_vocab,
                   r.pre, r.file_bytes / 1048576.0, r.seconds, r.bytes_read / 1e6, mb_s);
      if (!parts.empty())
        fmt::print(stderr, "written as {} parts: {} ... {}; load the model from the first\n", parts.size(),
                   parts.front().path, parts.back().path);
    }
    return 0;
  };
}

}  // namespace slm::cli
