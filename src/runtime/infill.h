// Fill-in-the-middle (FIM): the prompt a code model completes at a cursor, between the text
// before it (prefix) and after it (suffix), as llama.cpp's server builds it for /infill
// (format_infill) so that editor plugins written for it (llama.vim, llama.vscode) get the same
// layout here:
//
//   [FIM_REP]myproject\n               repository header (models with a FIM_REP token)
//   [FIM_SEP]name\n text ...           one per extra file (no FIM_SEP: "\n\n--- snippet ---\n\n")
//   [FIM_SEP]filename\n                the file being edited (models with a FIM_SEP token)
//   [BOS] [FIM_PRE] prefix middle [FIM_SUF] suffix [FIM_MID]      (PSM order)
//   [BOS] [FIM_SUF] suffix [FIM_PRE] prefix middle [FIM_MID]      (SPM order, --spm)
//
// "middle" is what was already typed at the cursor (llama.cpp's "prompt" field). What does not
// fit is cut where it matters least: the prefix loses its beginning, the suffix its end, the
// extra files their beginning. Unlike llama.cpp, whose budget can exceed a small context, the
// cut always leaves `n_generate` tokens free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace slm {

struct InfillFile {
  std::string name = "tmp";  // llama.cpp's default for a chunk without a filename
  std::string text;
};

struct InfillInput {
  std::string prefix, suffix;
  std::string middle;             // text already typed at the cursor, kept whole
  std::vector<InfillFile> extra;  // other files for context (repo-level FIM)
  std::string repo = "myproject";  // llama.cpp's fixed names for these two
  std::string filename = "filename";
  bool spm = false;               // suffix-prefix-middle order
};

struct InfillBudget {
  int64_t n_ctx = 0;       // the context the prompt and the fill share
  int64_t n_generate = 0;  // tokens kept free for the fill
  // Most prefix + suffix tokens, shared 3:1 as llama.cpp does with its batch size (2048); a
  // side that needs less leaves the rest to the other, then to the extra files.
  int64_t window = 2048;

  // The budget for a fill of n_predict tokens (<= 0: unbounded, so a quarter of the context, at
  // most 256, is kept free) in a context of n_ctx.
  static InfillBudget for_reply(int64_t n_ctx, int64_t n_predict) {
    InfillBudget b;
    b.n_ctx = n_ctx;
    b.n_generate = n_predict > 0 ? n_predict : (n_ctx / 4 < 256 ? n_ctx / 4 : 256);
    return b;
  }
};

struct InfillPrompt {
  std::vector<int32_t> tokens;
  int64_t prefix_tokens = 0, suffix_tokens = 0, extra_tokens = 0;  // kept
  int64_t prefix_cut = 0, suffix_cut = 0, extra_cut = 0;           // dropped to fit
  bool truncated() const { return prefix_cut + suffix_cut + extra_cut > 0; }
};

// "" when the vocabulary has the prefix, suffix and middle tokens; otherwise a sentence naming
// the missing ones and what to use instead.
std::string infill_unsupported(const Tokenizer& tok);

// The prompt's tokens. All text is tokenized as plain text (the code being edited may well
// contain a special token's spelling). Throws slm::Error when the model has no FIM tokens or
// when the special tokens and `middle` alone leave no room for n_generate tokens.
InfillPrompt infill_prompt(const Tokenizer& tok, const InfillInput& in, const InfillBudget& budget);

}  // namespace slm
