// slm finetune: train a LoRA adapter on a text file (src/train/finetune.h).
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "train/finetune.h"

namespace slm::cli {

namespace {

std::string duration(double s) {
  const int t = static_cast<int>(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, t / 60 % 60) : fmt::format("{}m{:02}s", t / 60, t % 60);
}

}  // namespace

Runner add_finetune(CLI::App& app) {
  auto o = std::make_shared<train::FinetuneOptions>();
  auto outtype = std::make_shared<std::string>("f32");
  app.add_option("-m,--model", o->model_path, "base model (GGUF: F32, F16, BF16 or quantized; its weights stay frozen)")
      ->required();
  app.add_option("--train", o->train_path, "training text (UTF-8)")->required();
  app.add_option("--eval", o->eval_path, "text whose perplexity is measured before and after training");
  app.add_option("-o,--output", o->out_path, "the LoRA adapter to write (GGUF, loads with --lora here and in llama.cpp)")
      ->required();
  app.add_option("--rank", o->rank, "LoRA rank (default 8)");
  app.add_option("--alpha", o->alpha, "LoRA alpha: the adapter is scaled by alpha / rank (default 16)");
  app.add_option("--targets", o->targets, "projections to adapt: q,k,v,o,gate,up,down (default all seven)");
  app.add_option("--lr", o->lr, "AdamW learning rate (default 1e-3, constant)");
  app.add_option("--weight-decay", o->weight_decay, "AdamW weight decay (default 0)");
  app.add_option("--steps", o->steps, "optimizer steps in all (a resumed run counts the steps already done)");
  app.add_option("--batch", o->batch, "windows per step (default 4)");
  app.add_option("--ctx", o->ctx, "tokens per window (default 256)");
  app.add_option("--seed", o->seed, "seed of the adapter's initial values and of the window sampler");
  app.add_option("-t,--threads", o->n_threads, "threads (default: all cores)");
  app.add_option("--checkpoint-every", o->checkpoint_every, "write a checkpoint every N steps (0: off)");
  app.add_option("--checkpoint", o->checkpoint_path, "checkpoint file (default: OUTPUT.ckpt)");
  app.add_option("--resume", o->resume_path, "continue from a checkpoint (same settings; same threads give the same bits)");
  app.add_option("--eval-ctx", o->eval_ctx, "tokens per perplexity chunk for --eval (default 512)");
  app.add_option("--eval-chunks", o->eval_chunks, "score at most this many chunks of --eval (default: all)");
  app.add_option("--outtype", *outtype, "adapter tensor type: f32 (default), f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  return [o, outtype]() {
    if (o->n_threads <= 0) o->n_threads = default_threads();
    o->out_type = *outtype == "f16" ? DType::F16 : *outtype == "bf16" ? DType::BF16 : DType::F32;
    const bool tty = ::isatty(STDERR_FILENO);
    train::FinetuneCallbacks cb;
    cb.log = [](const std::string& s) { fmt::print(stderr, "slm: {}\n", s); };
    cb.on_step = [tty](const train::StepInfo& s) {
      fmt::print(stderr, "{}step {:>4}/{}  loss {:.4f}  {:.0f} tok/s  ETA {}{}", tty ? "\r" : "", s.step, s.steps,
                 s.loss, s.tokens_per_s, duration(s.eta_s), tty && s.step < s.steps ? "   " : "\n");
      std::fflush(stderr);
    };
    const train::FinetuneReport r = train::finetune(*o, cb);
    struct rusage ru {};
    ::getrusage(RUSAGE_SELF, &ru);
    fmt::print(stderr, "slm: {} steps in {} ({:.0f} tok/s); loss {:.4f} -> {:.4f}; peak RSS {:.1f} MiB\n",
               o->steps - r.first_step, duration(r.seconds), r.tokens_per_s, r.first_loss, r.last_loss,
               ru.ru_maxrss / 1024.0);
    return 0;
  };
}

}  // namespace slm::cli
