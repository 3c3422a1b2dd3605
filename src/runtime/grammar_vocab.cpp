#include "runtime/grammar_vocab.h"

namespace slm {

std::shared_ptr<const GrammarVocab> make_grammar_vocab(const Tokenizer& tok) {
  std::vector<std::string> pieces(static_cast<size_t>(tok.n_vocab()));
  for (int32_t id = 0; id < tok.n_vocab(); ++id) pieces[static_cast<size_t>(id)] = tok.token_to_piece(id);
  return std::make_shared<const GrammarVocab>(pieces, tok.eog_ids());
}

}  // namespace slm
