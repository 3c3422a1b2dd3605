// See answer.h.
#include "rag/answer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "rag/bm25f.h"
#include "rag/text_util.h"

namespace slm::rag {

QueryTerms query_terms(const Store& store, const std::string& query) {
  QueryTerms q;
  const double n = static_cast<double>(std::max<int64_t>(1, store.chunk_count()));
  std::set<std::string> seen;
  for (const std::string& w : query_words(query, {})) {
    for (const std::string& t : index_terms(w)) {
      if (!seen.insert(t).second) continue;
      const double df = static_cast<double>(store.document_frequency(t));
      q.terms.push_back(t);
      q.idf.push_back(std::log(1.0 + (n - df + 0.5) / (df + 0.5)));
      q.total_idf += q.idf.back();
    }
  }
  return q;
}

namespace {

std::set<std::string> terms_of(std::string_view text) {
  std::vector<std::string> t = index_terms(std::string(text));
  return {t.begin(), t.end()};
}

double covered(const QueryTerms& q, const std::set<std::string>& have) {
  if (q.total_idf <= 0) return 0;
  double got = 0;
  for (size_t i = 0; i < q.terms.size(); ++i)
    if (have.count(q.terms[i])) got += q.idf[i];
  return got / q.total_idf;
}

}  // namespace

double coverage(const Store& store, const QueryTerms& q, const std::string& text) {
  return covered(q, terms_of(text));
}

std::vector<Source> relevant_sources(const Store& store, const QueryTerms& q, const std::vector<SearchHit>& hits,
                                     double min_coverage) {
  std::vector<Source> out;
  for (const SearchHit& h : hits) {
    // Headings count: a passage under "csv.reader" is about csv even where its text does not say so.
    if (coverage(store, q, h.chunk.heading_path + "\n" + h.chunk.text) < min_coverage) continue;
    out.push_back(Source{static_cast<int>(out.size()) + 1, h});
  }
  return out;
}

std::string source_label(const ChunkInfo& c) {
  std::string where = c.page_start > 0
                          ? (c.page_end > c.page_start ? fmt::format("pages {}-{}", c.page_start, c.page_end)
                                                       : fmt::format("page {}", c.page_start))
                          : (c.line_end > c.line_start ? fmt::format("lines {}-{}", c.line_start, c.line_end)
                                                       : fmt::format("line {}", c.line_start));
  if (c.heading_path.empty()) return fmt::format("{}, {}", c.rel_path, where);
  return fmt::format("{} > {}, {}", c.rel_path, c.heading_path, where);
}

nlohmann::ordered_json grounded_messages(const std::string& question, const std::vector<Source>& sources,
                                         const std::function<int(const nlohmann::ordered_json&)>& count_tokens,
                                         int budget_tokens, std::vector<Source>& used) {
  static const char* kRules =
      "Answer the question at the end using only the numbered sources below. Cite every statement "
      "with the number of the source it comes from, in square brackets, like [1] or [2][3]. If the "
      "sources do not contain the answer, say that they do not; never answer from memory.";
  auto build = [&](const std::vector<Source>& list) {
    // The rules go in the user turn, not a system message: some templates drop system messages
    // (Phi-3's) or refuse them (Gemma's).
    std::string user = std::string(kRules) + "\n\nSources:\n\n";
    for (const Source& s : list)
      user += fmt::format("[{}] {}\n{}\n\n", s.number, source_label(s.hit.chunk), s.hit.chunk.text);
    user += "Question: " + question;
    nlohmann::ordered_json m = nlohmann::ordered_json::array();
    m.push_back({{"role", "user"}, {"content", user}});
    return m;
  };
  used.clear();
  for (const Source& s : sources) {
    std::vector<Source> trial = used;
    trial.push_back(s);
    nlohmann::ordered_json m = build(trial);
    const int n = count_tokens(m);
    if (n > budget_tokens) {
      if (used.empty())
        fail("the best source alone needs {} prompt tokens but only {} fit beside the answer; "
             "give a larger context (-c) or fewer answer tokens (-n)", n, budget_tokens);
      continue;  // a shorter one further down may still fit
    }
    used = std::move(trial);
  }
  // Sources keep their numbers from retrieval order only when all fit; renumber what is shown.
  for (size_t i = 0; i < used.size(); ++i) used[i].number = static_cast<int>(i) + 1;
  return build(used);
}

std::vector<QuotedSentence> extract_sentences(const Store& store, const QueryTerms& q, const std::vector<Source>& sources,
                                              int max_sentences) {
  struct Scored {
    double score;
    size_t order;
    QuotedSentence s;
  };
  std::vector<Scored> all;
  std::set<std::string> seen;
  for (const Source& src : sources) {
    const std::set<std::string> head = terms_of(src.hit.chunk.heading_path);
    for (std::string_view sv : sentences_of(src.hit.chunk.text)) {
      std::string text = collapse_whitespace(sv);
      const size_t words = words_of(text).size();
      // Fragments ("3.3", "Added in version 3.8.") and whole code listings answer nothing.
      if (words < 5 || words > 80 || !seen.insert(text).second) continue;
      const std::set<std::string> terms = terms_of(text);
      // A sentence's own words count fully, its section heading's words for a quarter: the
      // heading says what the sentence is about, the sentence must still say something.
      std::set<std::string> with_head = terms;
      with_head.insert(head.begin(), head.end());
      const double score = covered(q, terms) + 0.25 * covered(q, with_head) - 0.02 * (src.number - 1);
      all.push_back(Scored{score, all.size(), QuotedSentence{std::move(text), src.number}});
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const Scored& a, const Scored& b) { return a.score > b.score; });
  std::vector<QuotedSentence> out;
  for (const Scored& s : all) {
    if (static_cast<int>(out.size()) >= max_sentences || s.score <= 0) break;
    out.push_back(s.s);
  }
  return out;
}

std::vector<int> cited_numbers(const std::string& answer, int n_sources) {
  std::vector<int> out;
  for (size_t i = 0; i < answer.size(); ++i) {
    if (answer[i] != '[') continue;
    // "[1]", "[1, 3]", "[1,2]": numbers and commas up to the bracket.
    size_t j = i + 1;
    std::vector<int> nums;
    int cur = -1;
    bool ok = true;
    for (; j < answer.size() && answer[j] != ']'; ++j) {
      const char c = answer[j];
      if (c >= '0' && c <= '9') {
        cur = (cur < 0 ? 0 : cur) * 10 + (c - '0');
        if (cur > 100000) ok = false;
      } else if (c == ',' || c == ' ') {
        if (cur >= 0) nums.push_back(cur);
        cur = -1;
      } else {
        ok = false;
        break;
      }
    }
    if (!ok || j >= answer.size()) continue;
    if (cur >= 0) nums.push_back(cur);
    for (int n : nums)
      if (n >= 1 && n <= n_sources && std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  return out;
}

}  // namespace slm::rag
