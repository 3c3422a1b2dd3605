// slm convert-lora: a PEFT LoRA adapter to llama.cpp's GGUF adapter format.
// slm export-lora: a base model with LoRA adapters merged in, as one GGUF model.
#include <fmt/format.h>

#include "commands.h"
#include "convert/lora_convert.h"
#include "convert/lora_merge.h"
#include "models/lora.h"

namespace slm::cli {

Runner add_convert_lora(CLI::App& app) {
  struct Opts { std::string dir, base, out, outtype = "f32"; bool quiet = false; };
  auto o = std::make_shared<Opts>();
  app.add_option("dir", o->dir, "PEFT adapter folder (adapter_config.json, adapter_model.safetensors)")->required();
  app.add_option("--base", o->base,
                 "the base model: a GGUF file, or the Hugging Face folder it was converted from; "
                 "architectures: LlamaForCausalLM, Qwen2ForCausalLM, Gemma2ForCausalLM, Phi3ForCausalLM")
      ->required();
  app.add_option("-o,--outfile", o->out, "GGUF adapter file to write")->required();
  app.add_option("--outtype", o->outtype, "tensor type: f32 (default), f16 or bf16");
  app.add_flag("-q,--quiet", o->quiet, "no summary");
  return [o]() {
    convert::LoraConvertOptions co;
    co.peft_dir = o->dir;
    co.base = o->base;
    co.out_path = o->out;
    co.outtype = o->outtype;
    const convert::LoraConvertReport r = convert::convert_lora(co);
    if (!o->quiet)
      fmt::print(stderr, "wrote {}: {} tensors ({} pairs, {} parameters), rank {}, alpha {}, arch {} ({} base), {}, "
                 "{:.2f} MiB\n", o->out, 2 * r.n_pairs, r.n_pairs, r.n_params, r.rank, r.alpha, r.arch, r.base_kind,
                 o->outtype, r.file_bytes / 1048576.0);
    return 0;
  };
}

Runner add_export_lora(CLI::App& app) {
  struct Opts { std::string model, out; std::vector<std::string> loras; int threads = 0; bool quiet = false; };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "base GGUF model (any type; quantized matrices are re-quantized)")->required();
  app.add_option("--lora", o->loras, "LoRA adapter, FILE or FILE:SCALE (scale 1 by default); repeatable")
      ->required();
  app.add_option("-o,--outfile", o->out, "GGUF model to write")->required();
  app.add_option("-t,--threads", o->threads, "threads (default: all cores)");
  app.add_flag("-q,--quiet", o->quiet, "no progress bar or summary");
  return [o]() {
    convert::LoraMergeOptions mo;
    mo.base_path = o->model;
    mo.out_path = o->out;
    for (const std::string& a : o->loras) mo.adapters.push_back(parse_lora_arg(a));
    mo.n_threads = o->threads > 0 ? o->threads : default_threads();
    mo.progress = !o->quiet;
    const convert::LoraMergeReport r = convert::merge_lora(mo);
    if (!o->quiet)
      fmt::print(stderr, "wrote {}: {} ({} tensors), {} merged from {} adapter(s); {:.2f} MiB in {:.2f}s\n", o->out,
                 r.arch, r.n_tensors, r.n_merged, r.n_adapters, r.file_bytes / 1048576.0, r.seconds);
    return 0;
  };
}

}  // namespace slm::cli
