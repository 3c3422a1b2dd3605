// Constrained output: a GBNF grammar (llama.cpp's grammar format) that the sampled text must
// follow, so that a model asked for JSON writes JSON and nothing else.
//
//   root   ::= "{" ws pair ("," ws pair)* "}"     # rules, "literals", [classes], (groups)
//   pair   ::= [a-z]+ ":" ws [0-9]{1,3}           # * + ? {m} {m,} {m,n}, alternatives with |
//   ws     ::= [ \t\n]*                           # [^...] negated classes, . any character
//
// Grammar is the parsed, immutable form (shared between requests); GrammarState is where one
// generation stands in it: llama.cpp's set of pushdown stacks (each the elements still to
// match, innermost on top; duplicates merged), advanced one Unicode code point at a time, with
// a character split across tokens held as a partial UTF-8 sequence. A state with no stack left
// has failed; a state with an empty stack may end there. Text must be valid UTF-8 (overlong
// forms, surrogates and bytes past U+10FFFF are refused, whatever the grammar says).
//
// GrammarVocab is the tokenizer's vocabulary as byte strings in a trie, so that the tokens a
// state allows are found by walking the trie once and dropping whole subtrees at the first
// byte the grammar refuses (tokens sharing a prefix share the work).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

struct GrammarElement {
  enum Type : uint8_t {
    End,       // end of an alternative, and of the rule's last one
    Alt,       // start of the next alternative of the rule
    RuleRef,   // value: the rule id
    Char,      // value: a code point; a class continues with CharAlt / CharRangeUpper
    CharNot,   // a negated class; value: its first code point
    CharRangeUpper,  // value: the upper bound of the range the previous element began
    CharAlt,   // value: another code point (or range start) of the same class
    CharAny,   // any code point (".")
  };
  Type type;
  uint32_t value;
};

class Grammar {
 public:
  // Parses GBNF text. Throws slm::Error with the line and column of the problem: a syntax
  // error, a rule used but never defined, no `root` rule (or `start_rule`), or a left-recursive
  // rule (which would expand forever).
  static std::shared_ptr<const Grammar> parse(std::string_view text, std::string_view start_rule = "root");

  // Rules by id; each is alternatives of elements ending with End.
  const std::vector<std::vector<GrammarElement>>& rules() const { return rules_; }
  const std::vector<std::string>& rule_names() const { return names_; }
  uint32_t start() const { return start_; }

 private:
  std::vector<std::vector<GrammarElement>> rules_;
  std::vector<std::string> names_;
  uint32_t start_ = 0;
  friend class GrammarParser;
};

// Where a text stands in a grammar, without ownership of it: the stacks, one after another in
// one array (so copying a cursor, which the vocabulary walk does at every trie node, allocates
// nothing once its arrays have grown), and a code point still being read.
struct GrammarCursor {
  std::vector<const GrammarElement*> elems;  // every stack, bottom to top
  std::vector<uint32_t> ends;                // where each stack ends in elems
  uint32_t partial_value = 0;                // bits of the code point read so far
  int partial_left = 0;                      // continuation bytes still expected
  int partial_len = 0;                       // bytes of that sequence seen

  size_t n_stacks() const { return ends.size(); }
  bool stack_empty(size_t i) const { return ends[i] == (i ? ends[i - 1] : 0); }
  const GrammarElement* top(size_t i) const { return elems[ends[i] - 1]; }
  // The whole state as bytes (out is replaced): two cursors of one grammar with the same key
  // accept the same continuations.
  void key(std::string& out) const;
};

class GrammarState {
 public:
  explicit GrammarState(std::shared_ptr<const Grammar> g);

  // Feeds bytes of output (any split of UTF-8 text). Returns false, leaving the state
  // unchanged, when the grammar refuses them.
  bool advance(std::string_view bytes);
  // Whether the text so far is a complete sentence of the grammar (it may also go on).
  bool can_end() const;
  // Whether nothing more can follow (every way through the grammar has ended).
  bool must_end() const;

  const Grammar& grammar() const { return *g_; }
  const GrammarCursor& cursor() const { return c_; }

  // One byte on a cursor of grammar g; false (cursor untouched) when refused.
  static bool push_byte(const Grammar& g, GrammarCursor& c, uint8_t b);

 private:
  std::shared_ptr<const Grammar> g_;
  GrammarCursor c_;
};
// The vocabulary as byte strings (Tokenizer::token_to_piece with specials rendered as empty:
// a control token carries no text) plus the end-of-generation ids.
class GrammarVocab {
 public:
  GrammarVocab(const std::vector<std::string>& pieces, const std::vector<int32_t>& eog_ids);
  int32_t n_vocab() const { return static_cast<int32_t>(pieces_.size()); }
  const std::string& piece(int32_t id) const { return pieces_[static_cast<size_t>(id)]; }
  bool is_eog(int32_t id) const;

  // allowed[id] = 1 when the state accepts token id (an end-of-generation token only when the
  // text may end there; a token with no text never, as it would not move the grammar on).
  void allowed(const GrammarState& s, std::vector<uint8_t>& allowed) const;
  // The same for one token.
  bool allows(const GrammarState& s, int32_t id) const;

 private:
  struct Node {
    uint32_t first_child = 0;  // children are contiguous: [first_child, first_child + n_children)
    uint16_t n_children = 0;
    uint8_t byte = 0;
    std::vector<int32_t> tokens;  // tokens whose piece ends here
  };
  void walk(const Grammar& g, uint32_t node, size_t depth, std::vector<GrammarCursor>& levels,
            std::vector<uint8_t>& allowed) const;

  std::vector<std::string> pieces_;
  std::vector<int32_t> eog_;  // ascending
  std::vector<Node> nodes_;   // nodes_[0]: the root (empty prefix)
};

// A grammar applied to sampling: Sampler::set_grammar.
struct GrammarConstraint {
  std::shared_ptr<const Grammar> grammar;
  std::shared_ptr<const GrammarVocab> vocab;
};

}  // namespace slm
