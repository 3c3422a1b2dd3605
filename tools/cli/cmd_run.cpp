// slm run: generate a continuation of a prompt, streamed to stdout.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <utility>
#include <string_view>

#include "commands.h"
#include "core/error.h"
#include "core/memory_lock.h"
#include "generation_options.h"
#include "models/model.h"
#include "core/whole_file.h"
#include "runtime/generate.h"
#include "runtime/grammar_vocab.h"
#include "runtime/speculative.h"
#include "sampling/json_schema.h"
#include "sampling/sampler_stages.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {

void GenerationOptions::add_to(CLI::App& app, bool model_required) {
  auto* m = app.add_option("-m,--model", model, "GGUF model");
  if (model_required) m->required();
  app.add_option("-n,--n-predict", n_predict, "tokens to generate (-1: until end of generation)");
  app.add_option("--temp", sampling.temperature, "temperature (0: greedy)");
  app.add_option("--top-k", sampling.top_k, "top-k (0: off)");
  app.add_option("--top-p", sampling.top_p, "top-p (1: off)");
  app.add_option("--min-p", sampling.min_p, "min-p (0: off)");
  app.add_option("--repeat-penalty", sampling.repeat_penalty, "repetition penalty (1: off)");
  app.add_option("--repeat-last-n", sampling.repeat_last_n, "tokens the penalties look back on");
  app.add_option("--presence-penalty", sampling.presence_penalty, "presence penalty (0: off)");
  app.add_option("--frequency-penalty", sampling.frequency_penalty, "frequency penalty (0: off)");
  app.add_option("--dry-multiplier", sampling.dry_multiplier, "DRY: penalty on tokens that would repeat a sequence (0: off)");
  app.add_option("--dry-base", sampling.dry_base, "DRY: the penalty's growth per token of repeat (default 1.75)");
  app.add_option("--dry-allowed-length", sampling.dry_allowed_length, "DRY: repeats this long go unpenalised (default 2)");
  app.add_option("--dry-penalty-last-n", sampling.dry_penalty_last_n, "DRY: tokens of history looked at (-1: all, 0: off)");
  app.add_option("--dry-sequence-breaker", dry_breakers,
                 "DRY: a repeat does not reach back past this text (repeatable, replaces the default \\n : \" *; 'none': no "
                 "breakers)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--typical", sampling.typical_p, "locally typical sampling, p (1: off)");
  app.add_option("--top-nsigma,--top-n-sigma", sampling.top_n_sigma,
                 "keep the tokens within N standard deviations of the best logit (<= 0: off)");
  app.add_option("--xtc-probability", sampling.xtc_probability,
                 "XTC: how often to drop the likeliest tokens but the last above --xtc-threshold (0: off)");
  app.add_option("--xtc-threshold", sampling.xtc_threshold, "XTC: the probability a token must reach to be dropped (default 0.1)");
  app.add_option("--mirostat", sampling.mirostat, "mirostat sampling: 0 off, 1 mirostat, 2 mirostat 2.0 (replaces top-k, top-p, min-p, typical, XTC)")
      ->check(CLI::Range(0, 2));
  app.add_option("--mirostat-ent", sampling.mirostat_tau, "mirostat's target entropy, tau (default 5)");
  app.add_option("--mirostat-lr", sampling.mirostat_eta, "mirostat's learning rate, eta (default 0.1)");
  app.add_option("-s,--seed", sampling.seed, "random seed (same seed, same text)");
  app.add_option("--samplers", samplers,
                 "the stages to run, ';'-separated, in llama.cpp's default order (penalties;dry;top_n_sigma;top_k;typ_p;"
                 "top_p;min_p;xtc;temperature): the others are off");
  app.add_option("--sampling-seq,--sampler-seq", sampling_seq, "--samplers as llama.cpp's letters (default edskypmxt)");
  app.add_option("-l,--logit-bias", logit_bias,
                 "TOKEN_ID(+/-)BIAS added to that token's logit, as llama.cpp's: 15043+1, 15043-0.5, 15043-inf bans it "
                 "(repeatable)")
      ->each([this](const std::string& v) {
        try {
          sampling.logit_bias.push_back(parse_logit_bias(v));
        } catch (const Error& e) {
          throw CLI::ValidationError(e.what());  // reported as a usage error, like CLI11's own
        }
      });
  app.add_option("-t,--threads", threads, "threads (default: all cores)");
  app.add_option("--threads-batch", threads_batch, "llama.cpp's -tb: slm uses --threads for prompts too (another count is warned about)");
  app.add_option("-c,--ctx-size", n_ctx, "context size (0: the model's training context)");
  app.add_option("-b,--batch-size", n_batch, "prompt tokens per forward pass (default 128)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--ubatch-size", n_ubatch, "llama.cpp's -ub: the physical batch; the smaller of -b and -ub is used")
      ->check(CLI::Range(1, 1 << 20));
  app.add_flag("--ignore-eos", ignore_eos, "do not stop at end-of-generation tokens (they are banned; -n sets the length)");
  app.add_flag("--no-warmup", no_warmup, "accepted for llama.cpp's command lines (slm runs no warm-up pass)");
  app.add_flag("--no-display-prompt", no_display_prompt, "accepted for llama.cpp's command lines (the prompt is not echoed)");
  app.add_flag("--no-conversation", no_conversation, "llama.cpp's -no-cnv, accepted (slm chat is the conversation mode)");
  app.add_flag("--context-shift,!--no-context-shift", context_shift,
               "when the text fills the context, drop half of it after the --keep tokens and go on (default: stop)");
  app.add_option("--keep", n_keep, "with --context-shift: tokens of the prompt that always stay (-1: all of it; default 0)")
      ->check(CLI::Range(-1, 1 << 30));
  app.add_flag("--context-shift-reeval", context_shift_reeval,
               "--context-shift that evaluates what stays again (a pause of seconds at a long context) instead of "
               "rotating its cached keys: the logits of a fresh run on those tokens");
  kv.add_to(app);
  lora.add_to(app);
  app.add_option("--grammar", grammar, "GBNF grammar the output must follow (llama.cpp's format)");
  app.add_option("--grammar-file", grammar_file, "file holding a GBNF grammar");
  app.add_option("-j,--json-schema", json_schema, "JSON schema the output must be an instance of");
  app.add_option("--json-schema-file", json_schema_file, "file holding a JSON schema");
  app.add_flag("--json", json, "output a JSON object (any)");
  app.add_option("--draft-model", draft_model,
                 "a small model with the same tokenizer that proposes tokens for this one to check (speculative decoding)");
  app.add_option("--draft-max", speculative.n_draft, "most tokens the draft (or --lookup) proposes at a time")
      ->check(CLI::Range(1, 256));
  auto* lk = app.add_flag("--lookup", lookup,
                          "prompt lookup decoding: propose what followed the last words' earlier occurrence in the "
                          "prompt or the text (pays where the output repeats its input: quotes, code edits)");
  app.add_option("--lookup-ngram", lookup_params.ngram_max, "longest n-gram --lookup matches (default 3)")
      ->check(CLI::Range(2, 16));
  lk->excludes("--draft-model");
  app.add_option("--draft-p-min", speculative.p_min, "the draft stops proposing below this probability of its own pick")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--override-kv", override_kv,
                 "replace a metadata value the file gets wrong: KEY=TYPE:VALUE, TYPE int, float, bool or str (repeatable)");
  rope.add_to(app);
}

std::pair<int32_t, float> parse_logit_bias(const std::string& v) {
  const size_t sign = v.find_first_of("+-");
  if (sign == 0 || sign == std::string::npos) fail("--logit-bias '{}': write TOKEN_ID+BIAS or TOKEN_ID-BIAS (e.g. 15043-inf)", v);
  size_t used = 0;
  int64_t id = -1;
  float bias = 0;
  try {
    id = std::stoll(v.substr(0, sign), &used);
    if (used != sign) throw std::invalid_argument("id");
    const std::string b = v.substr(sign);
    bias = b == "-inf" ? -std::numeric_limits<float>::infinity() : std::stof(b, &used);
    if (b != "-inf" && used != b.size()) throw std::invalid_argument("bias");
  } catch (const std::exception&) {
    fail("--logit-bias '{}': write TOKEN_ID+BIAS or TOKEN_ID-BIAS (e.g. 15043-inf)", v);
  }
  if (id < 0 || id > INT32_MAX) fail("--logit-bias '{}': {} is not a token id", v, id);
  return {static_cast<int32_t>(id), bias};
}


SamplerParams GenerationOptions::sampler_params(const Tokenizer& tok) const {
  SamplerParams p = sampling;
  if (!samplers.empty() && !sampling_seq.empty()) fail("--samplers and --sampling-seq say the same thing: give one");
  if (!samplers.empty()) keep_only_stages(p, parse_sampler_stages(split_sampler_names(samplers), "--samplers"));
  if (!sampling_seq.empty()) keep_only_stages(p, parse_sampler_letters(sampling_seq, "--sampling-seq"));
  if (!dry_breakers.empty()) {
    p.dry_sequence_breakers.clear();
    for (const std::string& b : dry_breakers)
      if (b != "none") p.dry_sequence_breakers.push_back(process_escapes(b));
  }
  resolve_dry_breakers(p, tok);
  if (ignore_eos)
    for (const int32_t id : tok.eog_ids()) p.logit_bias.emplace_back(id, -std::numeric_limits<float>::infinity());
  return p;
}

std::string process_escapes(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[i + 1];
    switch (c) {
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case 'x':
        if (i + 3 < s.size() && hex(s[i + 2]) >= 0 && hex(s[i + 3]) >= 0) {
          out += static_cast<char>(hex(s[i + 2]) * 16 + hex(s[i + 3]));
          i += 2;
          break;
        }
        [[fallthrough]];
      default:  // not an escape: the backslash and the character as written
        out += '\\';
        out += c;
    }
    ++i;
  }
  return out;
}

std::unique_ptr<Model> GenerationOptions::load_model() const {
  return Model::load(GGUFFile::open(model, rope.overrides(model, override_kv)));
}

Generator::Generator(const GenerationOptions& o, const Tokenizer& tok, Session& session)
    : o_(o), tok_(tok), session_(session) {
  if (o.draft_model.empty()) return;
  draft_model_ = Model::load(o.draft_model);
  draft_tok_ = Tokenizer::from_gguf(draft_model_->gguf());
  check_draft_vocab(tok, *draft_tok_);
  SessionOptions dso = session.options();
  dso.lora = nullptr;      // adapters belong to the target
  dso.row_kernels = true;  // the draft decodes one token at a time
  draft_session_ = std::make_unique<Session>(*draft_model_, dso);
}

Generator::~Generator() = default;

GenerateResult Generator::operator()(Sampler& sampler, std::span<const int32_t> prompt,
                                     const std::function<bool(const std::string&)>& on_text) {
  if (o_.shifts_context() && speculative())
    fail("--context-shift works with plain generation only, not with --draft-model or --lookup");
  if (o_.lookup) {
    LookupParams lp = o_.lookup_params;
    lp.n_draft = o_.speculative.n_draft;
    return generate_lookup(session_, tok_, sampler, prompt, o_.n_predict, lp, on_text, &stats_);
  }
  if (!draft_session_) {
    const ContextShift shift{o_.shifts_context(), resolve_n_keep(prompt, tok_, o_.n_keep), o_.context_shift_reeval};
    return generate(session_, tok_, sampler, prompt, o_.n_predict, on_text, shift);
  }
  return generate_speculative(session_, *draft_session_, tok_, sampler, prompt, o_.n_predict, o_.speculative, on_text,
                              &stats_);
}

std::shared_ptr<const Grammar> GenerationOptions::load_grammar() const {
  const int given = !grammar.empty() + !grammar_file.empty() + !json_schema.empty() + !json_schema_file.empty() + json;
  if (given == 0) return nullptr;
  if (given > 1) fail("--grammar, --grammar-file, --json-schema, --json-schema-file and --json exclude each other: give one");
  auto schema_grammar = [](const std::string& text, const std::string& what) {
    try {
      return json_schema_grammar(std::string_view(text));
    } catch (const Error& e) {
      fail("{}: {}", what, e.what());
    }
  };
  if (json) return Grammar::parse(json_object_grammar());
  if (!json_schema.empty()) return schema_grammar(json_schema, "--json-schema");
  if (!json_schema_file.empty())
    return schema_grammar(read_whole_file(json_schema_file, "JSON schema file"), "--json-schema-file " + json_schema_file);
  if (!grammar.empty()) return Grammar::parse(grammar);
  const std::string text = read_whole_file(grammar_file, "grammar file");
  try {
    return Grammar::parse(text);
  } catch (const Error& e) {
    fail("--grammar-file {}: {}", grammar_file, e.what());
  }
}

SessionOptions GenerationOptions::session_options(const Model& m) const {
  SessionOptions so;
  so.n_threads = threads > 0 ? threads : default_threads();
  so.n_ctx = context_size(m, n_ctx);
  if (const std::string w = context_warning(m, so.n_ctx); !w.empty()) fmt::print(stderr, "slm: warning: {}\n", w);
  if (threads_batch > 0 && threads_batch != so.n_threads)
    fmt::print(stderr, "slm: warning: --threads-batch {} ignored: slm runs prompts and generation on the same {} threads (-t)\n",
               threads_batch, so.n_threads);
  const int batch = n_batch > 0 && n_ubatch > 0 ? std::min(n_batch, n_ubatch) : std::max(n_batch, n_ubatch);
  if (batch > 0) so.n_batch = batch;
  so.kv_types = kv.types();
  so.lora = lora.load(m);
  so.row_kernels = draft_model.empty() && !lookup;  // a speculative target's passes are all several tokens
  return so;
}

namespace {

// llama-cli's --prompt-cache, --prompt-cache-all and --prompt-cache-ro.
struct PromptCacheOptions {
  std::string path;
  bool all = false, read_only = false;

  // The file's state into the session, if there is a file and it fits: generation then starts
  // from the prompt's common prefix with it. A file for another model or settings, or a broken
  // one, is reported and the prompt evaluated anew (and the file replaced, unless read-only).
  void load(Session& session, const std::vector<int32_t>& prompt) const {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      if (read_only) fmt::print(stderr, "slm: warning: prompt cache {} does not exist (--prompt-cache-ro: not made)\n", path);
      return;
    }
    try {
      session.load_state(path);
    } catch (const Error& e) {
      fmt::print(stderr, "slm: warning: {}; evaluating the prompt anew\n", e.what());
      return;
    }
    const auto& have = session.tokens();
    size_t common = 0;
    while (common < have.size() && common < prompt.size() && have[common] == prompt[common]) ++common;
    // generate() evaluates at least the prompt's last token, for its logits.
    const size_t reused = std::min(common, prompt.empty() ? 0 : prompt.size() - 1);
    fmt::print(stderr, "slm: prompt cache {}: {} tokens held, {} of the prompt's {} reused\n", path, have.size(), reused,
               prompt.size());
  }

  // The session's state to the file: the prompt's (all: the generated text's too).
  void save(Session& session, const std::vector<int32_t>& prompt) const {
    if (read_only) return;
    // Only rows a fresh pass would give are kept (after a context shift that rotated keys, those
    // before the dropped tokens); and after a shift the prompt is no longer whole.
    if (!all) session.truncate(static_cast<int32_t>(std::min(prompt.size(), session.tokens().size())));
    session.truncate(session.n_exact());
    session.save_state(path);
  }
};

}  // namespace

Runner add_run(CLI::App& app) {
  auto o = std::make_shared<GenerationOptions>();
  auto prompt = std::make_shared<std::string>();
  auto prompt_file = std::make_shared<std::string>();
  o->add_to(app);
  auto* p_opt = app.add_option("-p,--prompt", *prompt, "prompt text");
  auto* f_opt = app.add_option("-f,--file", *prompt_file, "read the prompt from this file (- : standard input)");
  p_opt->excludes(f_opt);
  f_opt->excludes(p_opt);
  app.callback([p_opt, f_opt] {
    if (p_opt->count() == 0 && f_opt->count() == 0) throw CLI::RequiredError("--prompt or --file");
  });
  auto timings = std::make_shared<bool>(false);
  app.add_flag("--timings", *timings, "print where the time went to stderr (load, tokenizer, first token)");
  auto escape = std::make_shared<bool>(true);
  app.add_flag("-e,--escape,!--no-escape", *escape,
               "process escapes (\\n, \\t, \\xHH, ...) in -p, as llama.cpp does (default; --no-escape: the text as given)");
  auto stops = std::make_shared<std::vector<std::string>>();
  app.add_option("-r,--reverse-prompt", *stops, "stop once the generated text contains this (repeatable; printed, as llama.cpp prints it)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  auto cache = std::make_shared<PromptCacheOptions>();
  app.add_option("--prompt-cache", cache->path,
                 "keep the prompt's evaluated state in this file: a later run whose prompt starts the same way "
                 "evaluates only the rest (llama.cpp's option; the file is made for this model, adapters and -ctk/-ctv)");
  app.add_flag("--prompt-cache-all", cache->all, "with --prompt-cache: keep the generated text's state too");
  app.add_flag("--prompt-cache-ro", cache->read_only, "with --prompt-cache: read the file, never write it");
  return [o, prompt, prompt_file, timings, escape, stops, cache]() {
    if (!prompt_file->empty()) {
      *prompt = read_whole_file(*prompt_file == "-" ? "/dev/stdin" : *prompt_file, "prompt file");
      if (prompt->empty()) fail("the prompt file {} is empty", *prompt_file);
    } else if (*escape) {
      *prompt = process_escapes(*prompt);
    }
    for (const std::string& r : *stops)
      if (r.empty()) fail("--reverse-prompt must not be empty");
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto ms = [&t0](clock::time_point t) { return std::chrono::duration<double, std::milli>(t - t0).count(); };
    auto model = o->load_model();
    const auto t_model = clock::now();
    auto tok = Tokenizer::from_gguf(model->gguf());
    const auto t_tok = clock::now();
    Session session(*model, o->session_options(*model));
    Sampler sampler(o->sampler_params(*tok), static_cast<int32_t>(model->hparams().n_vocab));
    if (auto g = o->load_grammar()) sampler.set_grammar({g, make_grammar_vocab(*tok)});
    const std::vector<int32_t> ids = tok->encode(*prompt, /*add_special=*/true, /*parse_special=*/false);
    if (!cache->path.empty()) cache->load(session, ids);
    clock::time_point t_first{};
    // -r: the text so far is searched for each stop text (from where a match could begin); at
    // one, the text up to its end is printed and generation stops.
    std::string so_far;
    size_t printed = 0;
    auto print = [&](const std::string& s) {
      if (t_first == clock::time_point{}) t_first = clock::now();
      size_t end = std::string::npos;
      if (!stops->empty()) {
        const size_t from = so_far.size();
        so_far += s;
        for (const std::string& r : *stops) {
          const size_t at = so_far.find(r, from >= r.size() ? from - r.size() + 1 : 0);
          if (at != std::string::npos) end = std::min(end, at + r.size());
        }
      }
      const std::string_view out = end == std::string::npos ? std::string_view(s) : std::string_view(so_far).substr(printed, end - printed);
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
      printed += out.size();
      return end == std::string::npos;
    };
    Generator gen(*o, *tok, session);
    GenerateResult r = gen(sampler, ids, print);
    const auto t_end = clock::now();
    if (t_first == clock::time_point{}) t_first = t_end;  // nothing printed (an end-of-generation token first)
    if (!cache->path.empty()) cache->save(session, ids);
    if (r.context_full)
      fmt::print(stderr, "\nslm: stopped: the context ({} tokens) is full{}\n", session.n_ctx(),
                 o->shifts_context() ? " with the kept tokens (--keep)" : " (--context-shift goes on past it; -c raises it)");
    if (r.context_shifts > 0)
      fmt::print(stderr, "\nslm: the context ({} tokens) filled {} time{}: each time half of the text after the "
                 "kept tokens (--keep) was dropped (--context-shift)\n",
                 session.n_ctx(), r.context_shifts, r.context_shifts == 1 ? "" : "s");
    if (sampler.has_grammar() && !r.stopped_at_eog && !sampler.grammar_state()->can_end())
      fmt::print(stderr, "\nslm: warning: stopped after {} tokens, before the text the grammar asks for was complete "
                 "(raise -n)\n", r.tokens.size());
    if (*timings) {
      const size_t n = r.tokens.size();
      // From the start of the command (a few ms after exec: benches/bench_startup.cpp measures
      // from the spawn).
      fmt::print(stderr, "\nslm: timings: model {:.1f} ms, tokenizer {:.1f} ms, prompt of {} tokens + first token "
                 "at {:.1f} ms; {} tokens at {:.2f} tok/s after it\n",
                 ms(t_model), ms(t_tok) - ms(t_model), ids.size(), ms(t_first), n,
                 n > 1 ? (n - 1) / std::chrono::duration<double>(t_end - t_first).count() : 0.0);
      if (memory_lock_enabled())
        fmt::print(stderr, "slm: timings: --mlock: {:.1f} MiB locked in memory{}\n",
                   static_cast<double>(memory_locked_bytes()) / (1 << 20),
                   memory_lock_failures() ? " (the system refused the rest)" : "");
      if (gen.speculative())
        fmt::print(stderr, "slm: timings: speculative: {} target passes, {} tokens drafted, {} accepted ({:.0f}%)\n",
                   gen.stats().rounds, gen.stats().drafted, gen.stats().accepted,
                   gen.stats().drafted ? 100.0 * gen.stats().accepted / gen.stats().drafted : 0.0);
      if (sampler.has_grammar())
        fmt::print(stderr, "slm: timings: grammar: the model's first choice was refused at {} of {} tokens (the "
                   "whole vocabulary checked at {} of them, a state's earlier mask reused at the rest)\n",
                   sampler.grammar_redraws(), n + r.stopped_at_eog,
                   sampler.grammar_redraws() - sampler.grammar_mask_reuses());
    }
    return 0;
  };
}

}  // namespace slm::cli
