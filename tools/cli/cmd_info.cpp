// slm info: what a GGUF file holds.
#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <map>
#include <utility>

#include "commands.h"
#include "core/error.h"
#include "core/gguf.h"
#include "kernels/isa.h"
#include "models/encoder.h"
#include "models/decoder_view.h"
#include "models/model.h"
#include "runtime/session.h"

namespace slm::cli {

namespace {

// The shape of a model slm could not load, as its metadata states it (nothing checked): what a
// user needs to see which model this is. A value of an unexpected type shows as "?".
void print_metadata_hparams(const GGUFFile& f) {
  const std::string arch = [&]() -> std::string {
    const GGUFValue* v = f.find("general.architecture");
    return !v ? "(none)" : v->type == GGUFType::STRING ? v->as_string() : "?";
  }();
  fmt::print("architecture:  {}\n", arch);
  const GGUFValue* toks = f.find("tokenizer.ggml.tokens");
  fmt::print("n_vocab:       {}\n", toks && toks->is_array() ? std::to_string(toks->array_size()) : "(no tokens)");
  auto number = [&](const std::string& key) -> std::string {
    const GGUFValue* v = f.find(arch + "." + key);
    if (!v) return "";
    try {
      return std::to_string(v->as_int());
    } catch (const Error&) {
      return "?";
    }
  };
  for (const auto& [label, key] : {std::pair{"n_ctx_train:", "context_length"}, {"n_embd:", "embedding_length"},
                                   {"n_layer:", "block_count"}, {"n_head:", "attention.head_count"},
                                   {"n_head_kv:", "attention.head_count_kv"}, {"n_ff:", "feed_forward_length"}})
    if (const std::string n = number(key); !n.empty()) fmt::print("{:<15}{}\n", label, n);
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto model_path = std::make_shared<std::string>();
  app.add_option("-m,--model", *model_path, "GGUF file")->required();
  return [model_path]() {
    // A vocabulary-only file (slm convert --vocab-only, llama.cpp's ggml-vocab-*.gguf) has no
    // tensors to build a model from: show what it does hold.
    // A file that declares no tensors but carries data after its header is damaged (its tensor
    // count, most likely): that goes to Model::load, which names what is missing.
    auto file = GGUFFile::open(*model_path);
    const bool vocab_only = file->tensors().empty() && file->file_size() <= file->data_offset();
    auto print_header = [](const GGUFFile& f) {
      fmt::print("file:          {}\n", f.path());
      fmt::print("file size:     {} bytes ({:.2f} MiB)\n", f.file_size(), f.file_size() / 1048576.0);
      if (const auto parts = f.parts(); parts.size() > 1) {
        fmt::print("split into:    {} files\n", parts.size());
        for (const GGUFFile::Part& p : parts)
          fmt::print("  {} ({} tensors, {} bytes)\n", p.file->path(), p.n_tensors, p.file->size());
      }
      fmt::print("gguf version:  {}\n", f.version());
      fmt::print("isa:           {}\n", kern::isa_name(kern::active_isa()));
      fmt::print("amx:           {}\n", kern::amx_status_text());
      if (auto name = f.opt_string("general.name")) fmt::print("name:          {}\n", *name);
    };
    // Read from the metadata as stored (no tokenizer is built): a value of an unexpected type
    // shows as "?" here; the tokenizer itself reports such files when it is loaded.
    auto print_tokenizer = [](const GGUFFile& f) {
      auto text = [&](const char* key) -> std::string {
        const GGUFValue* v = f.find(key);
        return !v ? "" : v->type == GGUFType::STRING ? v->as_string() : "?";
      };
      const std::string model_type = text("tokenizer.ggml.model"), pre = text("tokenizer.ggml.pre");
      if (!model_type.empty())
        fmt::print("tokenizer:     {}{}\n", model_type, pre.empty() ? "" : " (pre-tokenizer " + pre + ")");
    };
    if (vocab_only) {
      print_header(*file);
      print_metadata_hparams(*file);
      print_tokenizer(*file);
      fmt::print("tensors:       0 (vocabulary only)\n");
      return 0;
    }
    // A file slm cannot run (an unknown architecture, a weight type without kernels, a missing
    // tensor, data cut short) is still described as far as its header goes, as llama.cpp's
    // gguf-dump would, and then refused with the loader's message and exit status 1.
    std::unique_ptr<Model> model;
    std::exception_ptr load_error;
    try {
      model = Model::load(std::move(file));
    } catch (const Error&) {
      load_error = std::current_exception();
      file = GGUFFile::open(*model_path);
    }
    const GGUFFile& f = model ? model->gguf() : *file;
    print_header(f);
    if (model) {
      const HParams& hp = model->hparams();
      fmt::print("architecture:  {}\n", hp.arch);
      fmt::print("n_vocab:       {}\n", hp.n_vocab);
      print_tokenizer(f);
      fmt::print("n_ctx_train:   {}\n", hp.n_ctx_train);
      fmt::print("n_embd:        {}\n", hp.n_embd);
      fmt::print("n_layer:       {}\n", hp.n_layer);
      fmt::print("n_head:        {}\n", hp.n_head);
      fmt::print("n_head_kv:     {}\n", hp.n_head_kv);
      fmt::print("head_dim:      {} (k) {} (v)\n", hp.head_dim_k, hp.head_dim_v);
      fmt::print("n_ff:          {}\n", hp.n_ff);
      fmt::print("norm_eps:      {:g}\n", hp.norm_eps);
      fmt::print("rope:          {} n_rot {} base {:g} scale {:g}\n",
                 hp.rope.mode == RopeMode::Neox ? "neox" : "normal", hp.rope.n_rot,
                 hp.rope.freq_base, hp.rope.freq_scale);
      if (hp.sliding_window) {
        // Which layers slide, and their own RoPE where they have one (Gemma 3).
        const DecoderView d = model->decoder_view(static_cast<int>(hp.n_ctx_train));
        int sliding = 0;
        const RopeParams* local = nullptr;
        for (const DecoderLayerView& L : d.layers) {
          sliding += L.window > 0;
          if (L.window > 0 && L.rope) local = L.rope;
        }
        fmt::print("sliding_window: {} on {} of {} layers", hp.sliding_window, sliding, d.layers.size());
        if (local) fmt::print(" (rope base {:g} scale {:g} there)", local->freq_base, local->freq_scale);
        fmt::print("\n");
      }
      if (hp.attn_softcap > 0) fmt::print("attn_softcap:  {:g}\n", hp.attn_softcap);
      if (hp.final_softcap > 0) fmt::print("final_softcap: {:g}\n", hp.final_softcap);
      // What the cache of a default context will take, as llama.cpp prints at load: a cache's
      // pages appear only as rows are written, so making one here costs nothing. Encoders
      // (embedding models) keep no cache.
      if (!dynamic_cast<const EncoderModel*>(model.get())) {
        const int ctx = context_size(*model, -1);
        auto mib = [&](DType t) -> std::string {
          try {
            return fmt::format("{} {:.1f} MiB", dtype_name(t), model->make_cache(ctx, 1, 512, t)->bytes() / 1048576.0);
          } catch (const Error&) {
            return fmt::format("{} not for this model", dtype_name(t));
          }
        };
        fmt::print("kv cache:      {}, {}, {} at {} positions (the default -c), one sequence\n", mib(DType::F16),
                   mib(DType::Q8_0), mib(DType::Q4_0), ctx);
      }
    } else {
      print_metadata_hparams(f);
      print_tokenizer(f);
    }
    std::map<std::string, std::pair<int, uint64_t>> types;
    int64_t params = 0;
    for (const TensorInfo& t : f.tensors()) {
      auto& e = types[dtype_name(t.type)];
      e.first++;
      e.second += t.nbytes;
      params += t.nelements;
    }
    fmt::print("parameters:    {} ({:.3f} B)\n", params, params / 1e9);
    fmt::print("tensors:       {}\n", f.tensors().size());
    for (const auto& [name, e] : types)
      fmt::print("  {:8} {:5} tensors {:12} bytes\n", name, e.first, e.second);
    if (load_error) {
      fmt::print("runs in slm:   no (the reason follows on stderr)\n");
      std::fflush(stdout);
      std::rethrow_exception(load_error);
    }
    return 0;
  };
}

}  // namespace slm::cli
