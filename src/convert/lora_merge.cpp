#include "convert/lora_merge.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "convert/progress.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/thread_pool.h"
#include "models/lora.h"
#include "models/model.h"

namespace slm::convert {

namespace {

namespace fs = std::filesystem;

// One adapter's correction of a matrix: scale * B A.
struct Term {
  const LoraTensor* t;
  float scale;
};

// Rows merged per batch: bounds a batch's output whatever the matrix's size (as quantize.cpp).
constexpr int64_t kBatchValues = int64_t{16} << 20;

// Decodes, merges and re-encodes one matrix in row batches, handing each batch to `sink`.
void merge_tensor(const TensorInfo& src, const std::vector<Term>& terms, ThreadPool& pool,
                  const GGUFWriter::Sink& sink, Progress& progress) {
  const int64_t n_in = src.ne[0], rows = src.rows();
  const size_t row_bytes = row_size(src.type, n_in);
  const TypeTraits& tt = type_traits(src.type);
  const int64_t batch_rows = std::clamp<int64_t>(kBatchValues / std::max<int64_t>(n_in, 1), 1, std::max<int64_t>(rows, 1));
  std::vector<uint8_t> out(static_cast<size_t>(batch_rows) * row_bytes);
  // Per thread: the row and its correction, kept apart so that the sum over the adapters'
  // ranks is rounded at the correction's magnitude and W + delta is rounded once.
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()), std::vector<float>(static_cast<size_t>(2 * n_in)));
  std::vector<int64_t> bad_row(static_cast<size_t>(pool.size()), -1);
  for (int64_t r0 = 0; r0 < rows; r0 += batch_rows) {
    const int64_t n = std::min(batch_rows, rows - r0);
    pool.parallel_for(n, [&](int64_t b, int64_t e, int th) {
      float* w = scratch[static_cast<size_t>(th)].data();
      float* d = w + n_in;
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r0 + r;
        tt.to_float(src.data + static_cast<size_t>(o) * row_bytes, w, n_in);
        std::fill(d, d + n_in, 0.0f);
        for (const Term& term : terms) {
          const LoraTensor& t = *term.t;
          const float* brow = t.b.data() + o * t.rank;
          for (int64_t k = 0; k < t.rank; ++k) {
            const float c = term.scale * brow[k];
            if (c == 0.0f) continue;
            const float* a = t.a.data() + k * n_in;
            for (int64_t i = 0; i < n_in; ++i) d[i] += c * a[i];
          }
        }
        bool finite = true;
        for (int64_t i = 0; i < n_in; ++i) {
          w[i] += d[i];
          finite = finite && std::isfinite(w[i]);
        }
        // A NaN or infinity would poison every later use of the file; quantizers also misbehave.
        if (!finite) {
          bad_row[static_cast<size_t>(th)] = o;
          return;
        }
        tt.from_float(w, out.data() + static_cast<size_t>(r) * row_bytes, n_in);
      }
    });
    for (int64_t bad : bad_row)
      if (bad >= 0) fail("tensor {}: merged row {} holds a NaN or infinite value", src.name, bad);
    sink(out.data(), static_cast<size_t>(n) * row_bytes);
    progress.advance(static_cast<uint64_t>(n) * row_bytes, src.name);
  }
}

}  // namespace

LoraMergeReport merge_lora(const LoraMergeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.adapters.empty()) fail("export-lora: no adapter given (--lora FILE[:SCALE])");
  // Writing over an input would truncate a file that is mapped (SIGBUS) or lose it.
  std::error_code ec;
  if (fs::exists(o.out_path, ec)) {
    std::vector<std::string> inputs = {o.base_path};
    for (const auto& [path, scale] : o.adapters) inputs.push_back(path);
    for (const std::string& in : inputs)
      if (fs::equivalent(in, o.out_path, ec)) fail("{}: the output file must differ from the inputs ({})", o.out_path, in);
  }

  const std::unique_ptr<Model> model = Model::load(o.base_path);
  const GGUFFile& in = model->gguf();
  std::vector<std::shared_ptr<LoraAdapter>> adapters;
  std::map<std::string, std::vector<Term>> terms;  // base tensor -> its corrections
  for (const auto& [path, scale] : o.adapters) {
    adapters.push_back(LoraAdapter::load(path, *model));  // checks arch and shapes
    for (const LoraTensor& t : adapters.back()->tensors)
      terms[t.base].push_back({&t, adapters.back()->scale_for(t, scale)});
  }

  LoraMergeReport rep;
  rep.arch = model->hparams().arch;
  rep.n_adapters = adapters.size();
  // The base's metadata and tensors in their order; adapted matrices are produced while the
  // file is written, the others are the base's bytes.
  GGUFWriter w;
  for (const auto& [k, v] : in.metadata()) w.set(k, v);
  for (const char* k : kGGUFSplitKeys) w.remove(k);  // a split base is written as one file
  w.set_alignment(static_cast<uint32_t>(in.alignment()));
  std::vector<const std::vector<Term>*> plan(in.tensors().size(), nullptr);
  uint64_t total = 0;
  for (size_t i = 0; i < in.tensors().size(); ++i) {
    const TensorInfo& t = in.tensors()[i];
    auto it = terms.find(t.name);
    if (it == terms.end()) {
      w.add_tensor(t.name, t.type, t.ne, t.data, static_cast<size_t>(t.nbytes), /*copy=*/false);
      continue;
    }
    const TypeTraits& tt = type_traits(t.type);
    if (!tt.to_float || !tt.from_float)
      fail("{}: tensor {} has type {}, which slm cannot re-encode after merging (merge into an F16 or F32 base, "
           "then quantize)", o.base_path, t.name, dtype_name(t.type));
    w.add_tensor_info(t.name, t.type, t.ne);
    plan[i] = &it->second;
    total += t.nbytes;
    rep.n_merged++;
  }
  rep.n_tensors = in.tensors().size();

  ThreadPool pool(std::max(1, o.n_threads));
  Progress progress("merging LoRA", std::max<uint64_t>(total, 1), o.progress);
  w.write_streamed(o.out_path, [&](size_t i, const GGUFWriter::Sink& sink) {
    merge_tensor(in.tensors()[i], *plan[i], pool, sink, progress);
  });
  progress.finish();
  rep.file_bytes = fs::file_size(o.out_path, ec);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace slm::convert
