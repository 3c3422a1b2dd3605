// slm ask: answers a question from an index, citing its sources. With -m, a chat model is
// prompted (through its own chat template) with numbered sources fitted to its context and asked
// to cite them as [n]; its answer streams, then the sources it cited are listed. With
// --extractive, no model: the best-matching sentences are quoted with their citations. When no
// retrieved passage is relevant enough, it says so instead of answering.
#include <fmt/format.h>

#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "generation_options.h"
#include "rag/answer.h"
#include "rag/search.h"
#include "rag/store.h"
#include "rag_common.h"
#include "runtime/chat_prompt.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace slm::cli {

namespace {

struct AskOpts : GenerationOptions {
  std::string db, embed_model, mode, question, template_file;
  int k = 5, embed_threads = 0, sentences = 3;
  double min_coverage = 0.5;
  bool extractive = false, show_prompt = false;
};

void print_sources(const std::vector<rag::Source>& sources, const std::vector<int>& numbers) {
  fmt::print("\nSources:\n");
  for (int n : numbers)
    for (const rag::Source& s : sources)
      if (s.number == n) fmt::print("  [{}] {}\n", n, rag::source_label(s.hit.chunk));
}

}  // namespace

Runner add_ask(CLI::App& app) {
  auto o = std::make_shared<AskOpts>();
  o->n_predict = 512;
  o->add_to(app, /*model_required=*/false);
  app.add_option("question", o->question, "the question")->required();
  app.add_option("--db", o->db, "the index: an SQLite file, or a postgresql:// URL")->required();
  app.add_option("--embed-model", o->embed_model, "the embedding model of the index's vectors (hybrid retrieval)");
  app.add_option("-k", o->k, "passages to retrieve (default 5)")->check(CLI::PositiveNumber);
  add_mode_option(app, o->mode);
  app.add_option("--min-coverage", o->min_coverage,
                 "share of the question's (IDF-weighted) words a passage must hold to count as relevant (default 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--extractive", o->extractive, "answer with the best-matching sentences and their citations; no model");
  app.add_option("--sentences", o->sentences, "sentences an extractive answer quotes (default 3)")->check(CLI::PositiveNumber);
  app.add_option("--chat-template", o->template_file, "Jinja chat template file (default: the model's own)");
  app.add_flag("--show-prompt", o->show_prompt, "print the rendered prompt to stderr between <<<PROMPT and PROMPT>>> lines");
  app.add_option("--embed-threads", o->embed_threads, "threads for embedding the question (default: -t)");
  return [o]() {
    if (!o->extractive && o->model.empty())
      fail("slm ask needs a chat model (-m MODEL) to write the answer, or --extractive to quote the sources without one");
    const rag::SearchMode mode = search_mode(o->mode, o->embed_model);
    const std::unique_ptr<rag::Store> opened = rag::open_store(o->db, false);
    rag::Store& store = *opened;
    LoadedEmbedder emb = load_embedder(o->embed_model, o->embed_threads > 0 ? o->embed_threads : o->threads);
    rag::Searcher searcher(store, emb.embedder.get());
    rag::SearchOptions so;
    so.mode = mode;
    so.k = o->k;
    const std::vector<rag::SearchHit> hits = searcher.search(o->question, so);
    const rag::QueryTerms terms = rag::query_terms(store, o->question);
    const std::vector<rag::Source> sources = rag::relevant_sources(store, terms, hits, o->min_coverage);
    if (sources.empty()) {
      fmt::print("Nothing in the index {} answers this: no passage holds enough of the question's words "
                 "(best of {} retrieved). Try other words, or index the documents that answer it.\n",
                 o->db, hits.size());
      return 1;
    }

    if (o->extractive) {
      const auto quoted = rag::extract_sentences(store, terms, sources, o->sentences);
      if (quoted.empty()) {
        fmt::print("Nothing in the index {} answers this: the retrieved passages have no sentence about it.\n", o->db);
        return 1;
      }
      std::vector<int> cited;
      for (const auto& q : quoted) {
        fmt::print("{} [{}]\n", q.text, q.source);
        if (std::find(cited.begin(), cited.end(), q.source) == cited.end()) cited.push_back(q.source);
      }
      print_sources(sources, cited);
      return 0;
    }

    auto model = Model::load(o->model);
    auto tok = Tokenizer::from_gguf(model->gguf());
    const ChatPrompt chat = ChatPrompt::for_model(*tok, model->gguf(), o->template_file, o->model);
    Session session(*model, o->session_options(*model));
    // Room for the sources: the context less the answer's tokens (a quarter of the context when
    // -n is unlimited).
    const int answer_room = o->n_predict > 0 ? o->n_predict : session.n_ctx() / 4;
    const int budget = session.n_ctx() - answer_room;
    if (budget <= 0)
      fail("-n {} leaves no room for the sources in a context of {} tokens", o->n_predict, session.n_ctx());
    std::vector<rag::Source> used;
    const nlohmann::ordered_json messages = rag::grounded_messages(
        o->question, sources,
        [&](const nlohmann::ordered_json& m) { return static_cast<int>(chat.tokenize(chat.render(m)).size()); }, budget,
        used);
    const std::string prompt = chat.render(messages);
    if (o->show_prompt) fmt::print(stderr, "<<<PROMPT\n{}\nPROMPT>>>\n", prompt);
    const std::vector<int32_t> ids = chat.tokenize(prompt);
    Sampler sampler(o->sampling, static_cast<int32_t>(model->hparams().n_vocab));
    const GenerateResult r = generate(session, *tok, sampler, ids, o->n_predict, [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::fputs("\n", stdout);
    const std::vector<int> cited = rag::cited_numbers(r.text, static_cast<int>(used.size()));
    if (cited.empty()) {
      fmt::print("\n(The answer cites none of its {} sources; they were:)\n", used.size());
      std::vector<int> all;
      for (const auto& s : used) all.push_back(s.number);
      print_sources(used, all);
    } else {
      print_sources(used, cited);
    }
    return 0;
  };
}

}  // namespace slm::cli
