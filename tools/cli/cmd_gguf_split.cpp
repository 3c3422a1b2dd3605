// slm gguf-split: llama-gguf-split's command line. Splits a GGUF model into parts
// (PREFIX-00001-of-0000N.gguf, ...) that slm and llama.cpp load from the first, or merges such
// parts back into one file.
#include <fmt/format.h>

#include "commands.h"
#include "convert/gguf_split.h"
#include "core/error.h"
#include "core/gguf.h"

namespace slm::cli {

Runner add_gguf_split(CLI::App& app) {
  struct Opts {
    std::string in, out, max_size;
    int max_tensors = 128;
    bool split = false, merge = false, no_tensor_first_split = false, dry_run = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("input", o->in, "GGUF model to split, or (--merge) any part of a split model")->required();
  app.add_option("output", o->out, "prefix of the parts (PREFIX-00001-of-0000N.gguf), or (--merge) the file to write")
      ->required();
  auto* split = app.add_flag("--split", o->split, "split the model (the default)");
  app.add_flag("--merge", o->merge, "merge a split model's parts into one file")->excludes(split);
  auto* tensors = app.add_option("--split-max-tensors", o->max_tensors, "tensors per part (default 128)");
  app.add_option("--split-max-size", o->max_size, "tensor data per part instead: N followed by M or G, e.g. 2G")
      ->excludes(tensors);
  app.add_flag("--no-tensor-first-split", o->no_tensor_first_split, "put only the metadata in the first part");
  app.add_flag("--dry-run", o->dry_run, "print the parts that would be written, write nothing");
  app.add_flag("-q,--quiet", o->quiet, "no progress bar");
  return [o]() {
    auto in = GGUFFile::open(o->in);
    if (o->merge) {
      if (!o->dry_run) convert::merge_split(*in, o->out, !o->quiet);
      fmt::print("{}: {} parts, {} tensors{}\n", o->out, in->parts().size(), in->tensors().size(),
                 o->dry_run ? " (dry run: nothing written)" : " merged");
      return 0;
    }
    convert::SplitOptions so;
    so.max_tensors = o->max_tensors;
    if (!o->max_size.empty()) so.max_bytes = convert::parse_split_size(o->max_size);
    so.no_tensor_first_split = o->no_tensor_first_split;
    const std::vector<convert::SplitPart> parts = convert::plan_split(*in, o->out, so);
    fmt::print("n_split: {}\n", parts.size());
    for (const convert::SplitPart& p : parts)
      fmt::print("{}: {} tensors, {} bytes ({:.0f}M)\n", p.path, p.tensors.size(), p.bytes, p.bytes / 1e6);
    if (o->dry_run) {
      fmt::print("dry run: nothing written\n");
      return 0;
    }
    convert::write_split(*in, parts, !o->quiet);
    fmt::print("{} parts written with {} tensors in all; load the model from {}\n", parts.size(),
               in->tensors().size(), parts.front().path);
    return 0;
  };
}

}  // namespace slm::cli
