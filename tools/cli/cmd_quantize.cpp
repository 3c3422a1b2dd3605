// slm quantize: an F32/F16/BF16 model to llama-quantize's mixes, file-compatible with them.
#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <memory>

#include "commands.h"
#include "convert/gguf_split.h"
#include "convert/quantize.h"
#include "core/error.h"
#include "core/gguf.h"

namespace slm::cli {

namespace {

template <class Opts>
void write_report(const convert::QuantizeReport& r, const Opts& o, const std::string& written) {
  if (o.quiet) return;
  std::map<std::string, int> counts;
  for (const convert::PlannedTensor& p : r.plan.tensors) counts[dtype_name(p.to)]++;
  std::string mix;
  for (const auto& [name, n] : counts) mix += fmt::format(" {}:{}", name, n);
  fmt::print(stderr, "{}: {} ({:.2f} MiB) -> {} ({:.2f} MiB) in {:.1f}s; tensors{}\n", r.plan.mix->name, o.in,
             r.in_file_bytes / 1048576.0, written, r.out_file_bytes / 1048576.0, r.seconds, mix);
  if (r.plan.n_fallback > 0)
    fmt::print(stderr, "{} tensor(s) had rows that do not fit the mix's blocks and use a fallback type\n",
               r.plan.n_fallback);
}

}  // namespace

Runner add_quantize(CLI::App& app) {
  struct Opts { std::string in, out, type; int threads = 0; bool quiet = false, keep_split = false; };
  auto o = std::make_shared<Opts>();
  std::string types;
  for (const convert::QuantMix& m : convert::quant_mixes())
    types += fmt::format("\n  {:7} {}", m.name, m.summary);
  app.add_option("input", o->in, "F32, F16 or BF16 GGUF model")->required();
  app.add_option("output", o->out, "GGUF file to write")->required();
  app.add_option("type", o->type, "quantization mix, as llama-quantize names it:" + types)->required();
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  app.add_flag("-q,--quiet", o->quiet, "no progress bar or summary");
  app.add_flag("--keep-split", o->keep_split,
               "for a split input: write the output in the same parts (OUTPUT without .gguf, then -00001-of-0000N.gguf)");
  return [o]() {
    convert::QuantizeOptions qo;
    qo.n_threads = o->threads > 0 ? o->threads : default_threads();
    qo.progress = !o->quiet;
    std::unique_ptr<GGUFFile> split_in;
    if (o->keep_split) {
      split_in = GGUFFile::open(o->in);
      if (split_in->parts().size() < 2) {
        fmt::print(stderr, "slm: {} is one file: --keep-split writes one file\n", o->in);
        split_in.reset();
      }
    }
    if (!split_in) {
      write_report(convert::quantize_file(o->in, o->out, o->type, qo), *o, o->out);
      return 0;
    }
    // As llama-quantize --keep-split: the quantized tensors in the parts the input's lie in. The
    // whole model is written first, then copied into its parts inside the kernel and removed.
    const std::string prefix = convert::split_prefix_of(o->out);
    const int n_parts = static_cast<int>(split_in->parts().size());
    for (int p = 0; p < n_parts; ++p)
      if (const std::string path = gguf_split_path(prefix, p, n_parts); std::filesystem::exists(path))
        fail("{}: already exists; remove it first (parts of an older split beside new ones would be read as one model)",
             path);
    const std::string tmp = prefix + ".keep-split-tmp.gguf";
    convert::QuantizeReport r = convert::quantize_file(o->in, tmp, o->type, qo);
    const auto parts = convert::split_written_model(
        tmp, o->out, [&](const GGUFFile& q) { return convert::plan_split_like(q, *split_in, prefix); }, qo.progress);
    r.out_file_bytes = 0;
    for (const convert::SplitPart& p : parts) r.out_file_bytes += p.bytes;
    write_report(r, *o, fmt::format("{} parts ({} ...)", parts.size(), parts.front().path));
    return 0;
  };
}

}  // namespace slm::cli
