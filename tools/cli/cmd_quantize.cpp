// slm quantize: an F32/F16/BF16 model to llama-quantize's mixes, file-compatible with them.
#include <fmt/format.h>

#include <map>

#include "commands.h"
#include "convert/quantize.h"

namespace slm::cli {

Runner add_quantize(CLI::App& app) {
  struct Opts { std::string in, out, type; int threads = 0; bool quiet = false; };
  auto o = std::make_shared<Opts>();
  std::string types;
  for (const convert::QuantMix& m : convert::quant_mixes())
    types += fmt::format("\n  {:7} {}", m.name, m.summary);
  app.add_option("input", o->in, "F32, F16 or BF16 GGUF model")->required();
  app.add_option("output", o->out, "GGUF file to write")->required();
  app.add_option("type", o->type, "quantization mix, as llama-quantize names it:" + types)->required();
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  app.add_flag("-q,--quiet", o->quiet, "no progress bar or summary");
  return [o]() {
    convert::QuantizeOptions qo;
    qo.n_threads = o->threads > 0 ? o->threads : default_threads();
    qo.progress = !o->quiet;
    const convert::QuantizeReport r = convert::quantize_file(o->in, o->out, o->type, qo);
    if (!o->quiet) {
      std::map<std::string, int> counts;
      for (const convert::PlannedTensor& p : r.plan.tensors) counts[dtype_name(p.to)]++;
      std::string mix;
      for (const auto& [name, n] : counts) mix += fmt::format(" {}:{}", name, n);
      fmt::print(stderr, "{}: {} ({:.2f} MiB) -> {} ({:.2f} MiB) in {:.1f}s; tensors{}\n",
                 r.plan.mix->name, o->in, r.in_file_bytes / 1048576.0, o->out,
                 r.out_file_bytes / 1048576.0, r.seconds, mix);
      if (r.plan.n_fallback > 0)
        fmt::print(stderr, "{} tensor(s) had rows that do not fit the mix's blocks and use a fallback type\n",
                   r.plan.n_fallback);
    }
    return 0;
  };
}

}  // namespace slm::cli
