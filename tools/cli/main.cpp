// slm: run small language models from GGUF files on the CPU.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "core/memory_lock.h"
#include "core/dtype.h"
#include "core/error.h"

namespace slm::cli {

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace slm::cli

namespace {
// malloc settings for a program that allocates tens of MiB once and then little: fresh memory
// is expensive here (a 4 KiB page fault took ~10 us on the team's VM, and loading a
// vocabulary touches thousands of pages), so memory that is freed is kept for reuse instead of
// going back to the kernel, blocks up to 32 MiB come from the heap rather than from a fresh
// mapping each, the heap grows 64 MiB of address space at a time (pages still appear only when
// touched), and every thread shares one arena instead of mapping its own on first use.
// Measured: slm run's first token on the 1B Q4_0 file, 258 -> 227 ms (median of 15).
void tune_malloc() {
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
}
}  // namespace

int main(int argc, char** argv) {
  tune_malloc();
  // llama.cpp's multi-letter short options, which CLI11 cannot declare, as our long ones; and
  // options commands copied from llama.cpp often carry that mean nothing here, dropped with a
  // warning as a CPU build of llama.cpp drops its GPU layer count (CLI11 would read "-ngl 99"
  // as "-n gl 99" and "-fa" as "-f a", a prompt file "a").
  struct Ignored {
    std::vector<std::string> names;     // each also as NAME=VALUE
    bool (*takes)(const char* next);    // whether the next argument is the option's value
    const char* why;
  };
  static const Ignored kIgnored[] = {
      {{"-ngl", "--n-gpu-layers", "--gpu-layers"}, [](const char*) { return true; },
       "slm runs on the CPU (no GPU offload)"},
      // llama.cpp's -fa takes on/off/auto (older versions: no value).
      {{"-fa", "--flash-attn"},
       [](const char* next) {
         return std::strcmp(next, "on") == 0 || std::strcmp(next, "off") == 0 || std::strcmp(next, "auto") == 0;
       },
       "slm's attention is fused already (a few query rows at a time over the cache as stored)"},
      {{"--no-mmap"}, [](const char*) { return false; },
       "slm maps the file and reads all of it in at load, as --no-mmap would (weights it repacks replace their "
       "mapped pages)"}};
  // llama.cpp's multi-letter short options, as slm's long ones.
  static const std::pair<const char*, const char*> kShort[] = {{"-ctk", "--cache-type-k"}, {"-ctv", "--cache-type-v"},
                                                               {"-ub", "--ubatch-size"},   {"-tb", "--threads-batch"},
                                                               {"-no-cnv", "--no-conversation"}, {"-sys", "--system"},
                                                               {"-np", "--parallel"},     {"-cb", "--cont-batching"},
                                                               {"-pg", "--pg"}};
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    const Ignored* ignored = nullptr;
    bool inline_value = false;
    for (const Ignored& ig : kIgnored)
      for (const std::string& name : ig.names)
        if (a == name || a.rfind(name + "=", 0) == 0) {
          ignored = &ig;
          inline_value = a != name;
        }
    if (ignored) {
      const bool has_value = !inline_value && i + 1 < argc && ignored->takes(argv[i + 1]);
      std::fprintf(stderr, "slm: warning: %s%s%s ignored: %s\n", a.c_str(), has_value ? " " : "",
                   has_value ? argv[i + 1] : "", ignored->why);
      if (has_value) ++i;
      continue;
    }
    if (a == "--mlock") {  // llama.cpp's, anywhere on the line: keep the model in RAM (core/memory_lock.h)
      slm::enable_memory_lock();
      continue;
    }
    std::string arg = a;
    for (const auto& [short_name, long_name] : kShort)
      if (a == short_name) arg = long_name;
    args.push_back(arg);
  }
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  CLI::App app{"slm: run small language models from GGUF files on the CPU"};
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, slm::cli::Runner>> commands;
  auto add = [&](slm::cli::Runner (*fn)(CLI::App&), const char* name, const char* desc) {
    CLI::App* sub = app.add_subcommand(name, desc);
    commands.emplace_back(sub, fn(*sub));
  };
  add(&slm::cli::add_run, "run", "generate text from a prompt");
  add(&slm::cli::add_chat, "chat", "interactive chat using the model's chat template");
  add(&slm::cli::add_infill, "infill", "fill in code between a prefix and a suffix (fill-in-the-middle, code models)");
  add(&slm::cli::add_tokenize, "tokenize", "print the token ids of a text");
  add(&slm::cli::add_logits, "logits", "write the logits of every prompt position to a file");
  add(&slm::cli::add_info, "info", "describe a GGUF model file");
  add(&slm::cli::add_chat_template, "chat-template", "render a chat template with a JSON context");
  add(&slm::cli::add_bench, "bench", "measure prompt processing and generation speed");
  add(&slm::cli::add_quantize, "quantize", "quantize an F32/F16/BF16 model (Q4_0, Q4_K_M, Q8_0, ...)");
  add(&slm::cli::add_gguf_split, "gguf-split", "split a GGUF model into parts, or merge parts into one file (llama-gguf-split)");
  add(&slm::cli::add_synth, "synth", "write a random-weight model with a real model's shape");
  add(&slm::cli::add_convert, "convert", "convert a Hugging Face model folder to GGUF");
  add(&slm::cli::add_convert_lora, "convert-lora", "convert a PEFT LoRA adapter to a GGUF adapter");
  add(&slm::cli::add_export_lora, "export-lora", "merge LoRA adapters into a base model, as one GGUF file");
  add(&slm::cli::add_finetune, "finetune", "train a LoRA adapter on a text file, on the CPU");
  add(&slm::cli::add_perplexity, "perplexity", "perplexity of a model on a text, as llama-perplexity computes it");
  add(&slm::cli::add_serve, "serve", "serve a model over an OpenAI-compatible HTTP API with a web chat page");
  add(&slm::cli::add_embed, "embed", "embed texts with an embedding model (bert) or a decoder: one vector per text");
  add(&slm::cli::add_index, "index", "index documents for search and answers: add, sync, list, stats, remove");
  add(&slm::cli::add_search, "search", "search an index: BM25, vector or hybrid");
  add(&slm::cli::add_eval_retrieval, "eval-retrieval", "recall@k and MRR of an index on a query file");
  add(&slm::cli::add_ask, "ask", "answer a question from an index, citing the sources (chat model or --extractive)");
  try {
    app.parse(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const slm::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "slm: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "slm: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "slm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
