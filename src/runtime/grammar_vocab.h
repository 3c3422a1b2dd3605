// The tokenizer's vocabulary in the form grammar-constrained sampling walks
// (sampling/grammar.h): each token's bytes as llama.cpp's grammar sees them (control and
// unknown tokens as no text) and the end-of-generation ids. Built once per model, on the first
// request that has a grammar (128k pieces take ~30 ms), and shared by every such request.
#pragma once
#include <memory>

#include "sampling/grammar.h"
#include "tokenizer/tokenizer.h"

namespace slm {

std::shared_ptr<const GrammarVocab> make_grammar_vocab(const Tokenizer& tok);

}  // namespace slm
