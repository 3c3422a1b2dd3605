// The slm subcommands. Each registers its options on a CLI11 subcommand and returns the
// function that runs it; logs go to stderr, results to stdout.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace slm::cli {

using Runner = std::function<int()>;

Runner add_info(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_logits(CLI::App& app);
Runner add_run(CLI::App& app);
Runner add_chat(CLI::App& app);
Runner add_infill(CLI::App& app);
Runner add_chat_template(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_gguf_split(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_convert_lora(CLI::App& app);
Runner add_export_lora(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_finetune(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_embed(CLI::App& app);
Runner add_index(CLI::App& app);
Runner add_search(CLI::App& app);
Runner add_eval_retrieval(CLI::App& app);
Runner add_ask(CLI::App& app);

// Default worker threads: the machine's cores (at least 1).
int default_threads();

}  // namespace slm::cli
