// Reading a whole (small) file into memory: chat templates, training and evaluation text,
// tokenizer and config JSON, API key files. One place that refuses what std::ifstream lets
// through: a directory opens fine as a stream and reads as zero bytes, which used to become
// an empty chat template or a one-token "tokenization" without a word said.
#pragma once
#include <string>
#include <string_view>

namespace slm {

// The bytes of the file at `path`. False, with `why` saying what went wrong ("cannot open:
// No such file or directory", "is a directory", "read failed: ..."), if they cannot be had.
// Anything that reads as a stream of bytes is accepted: regular files, pipes, /dev/stdin.
bool try_read_whole_file(const std::string& path, std::string& out, std::string& why);

// The same, throwing slm::Error "cannot read the <what> <path>: <why>" (what: "chat template
// file", "training file", ...).
std::string read_whole_file(const std::string& path, std::string_view what);

}  // namespace slm
