#include "convert/quantize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <system_error>

#include "convert/progress.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/thread_pool.h"

namespace slm::convert {

namespace {

bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Rows converted per batch: bounds the memory of a batch (its output and the floats of one
// row per thread) whatever the tensor's size, so a 500 MB embedding matrix costs ~64 MB.
constexpr int64_t kBatchValues = int64_t{16} << 20;

uint64_t padded(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// Converts and encodes one tensor in row batches, handing each batch to `sink`.
void convert_tensor(const TensorInfo& src, const PlannedTensor& p, ThreadPool& pool,
                    const GGUFWriter::Sink& sink, Progress& progress) {
  const int64_t ne0 = p.ne[0];
  const int64_t nrows = src.rows();
  const size_t in_row = row_size(p.from, ne0), out_row = row_size(p.to, ne0);
  const TypeTraits& from = type_traits(p.from);
  const TypeTraits& to = type_traits(p.to);
  if (!from.to_float || !to.from_float)
    fail("tensor {}: cannot convert {} to {}", p.name, dtype_name(p.from), dtype_name(p.to));
  const int64_t batch_rows = std::clamp<int64_t>(kBatchValues / std::max<int64_t>(ne0, 1), 1, std::max<int64_t>(nrows, 1));
  std::vector<uint8_t> out(static_cast<size_t>(batch_rows) * out_row);
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()), std::vector<float>(static_cast<size_t>(ne0)));
  std::vector<int64_t> bad_row(static_cast<size_t>(pool.size()), -1);
  for (int64_t r0 = 0; r0 < nrows; r0 += batch_rows) {
    const int64_t n = std::min(batch_rows, nrows - r0);
    pool.parallel_for(n, [&](int64_t b, int64_t e, int t) {
      float* f = scratch[static_cast<size_t>(t)].data();
      for (int64_t r = b; r < e; ++r) {
        from.to_float(src.data + static_cast<size_t>(r0 + r) * in_row, f, ne0);
        // llama-quantize refuses rows whose encoding would hold NaN/Inf; so do we, but say why.
        for (int64_t i = 0; i < ne0; ++i)
          if (!std::isfinite(f[i])) {
            bad_row[static_cast<size_t>(t)] = r0 + r;
            return;
          }
        to.from_float(f, out.data() + static_cast<size_t>(r) * out_row, ne0);
      }
    });
    for (int64_t bad : bad_row)
      if (bad >= 0) fail("tensor {}: row {} holds a NaN or infinite value", p.name, bad);
    sink(out.data(), static_cast<size_t>(n) * out_row);
    progress.advance(static_cast<uint64_t>(n) * in_row, p.name);
  }
}

}  // namespace

QuantizePlan plan_quantization(const GGUFFile& in, const std::string& type) {
  QuantizePlan plan;
  plan.mix = find_quant_mix(type);
  if (!plan.mix) fail("unknown quantization type '{}' (valid: {})", type, quant_mix_names());
  const std::vector<TensorInfo>& ts = in.tensors();
  for (const TensorInfo& t : ts)
    if (!is_float_type(t.type) && type_traits(t.type).block_size > 1)
      fail("{}: already quantized (tensor {} is {}); quantize from an F32, F16 or BF16 file",
           in.path(), t.name, dtype_name(t.type));

  std::vector<std::string> names;
  for (const TensorInfo& t : ts) names.push_back(t.name);
  const std::vector<size_t> order = llama_tensor_order(names);
  std::vector<TensorDesc> descs;
  for (size_t i : order) descs.push_back({ts[i].name, ts[i].type, ts[i].ne});
  const std::vector<TypeChoice> types = choose_tensor_types(descs, *plan.mix, MixModelInfo::from_gguf(in));
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorInfo& t = ts[order[k]];
    PlannedTensor p{order[k], t.name, t.ne, t.type, types[k].type, types[k].fallback, 0};
    if (p.to != p.from && !is_float_type(p.from))
      fail("{}: tensor {} has type {}, which cannot be quantized", in.path(), t.name, dtype_name(t.type));
    p.out_bytes = p.to == p.from ? t.nbytes : row_size(p.to, t.ne[0]) * static_cast<uint64_t>(t.rows());
    plan.out_data_bytes += padded(p.out_bytes, in.alignment());
    plan.n_fallback += p.fallback;
    plan.tensors.push_back(std::move(p));
  }
  return plan;
}

QuantizeReport quantize_file(const std::string& in_path, const std::string& out_path,
                             const std::string& type, const QuantizeOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  // Check the type before opening anything: a typo should not wait for a big file to map.
  if (!find_quant_mix(type)) fail("unknown quantization type '{}' (valid: {})", type, quant_mix_names());
  auto in = GGUFFile::open(in_path);
  // Writing over the input would truncate the file we are reading through mmap (SIGBUS).
  std::error_code ec;
  if (std::filesystem::exists(out_path, ec) && std::filesystem::equivalent(in_path, out_path, ec))
    fail("{}: the output file must differ from the input file", out_path);

  QuantizeReport report;
  report.plan = plan_quantization(*in, type);
  const QuantizePlan& plan = report.plan;

  // Metadata as llama-quantize writes it: the input's keys in order, then the two keys it sets
  // (gguf_set_val moves an existing key to the end), without split-file keys.
  GGUFWriter w;
  for (const auto& [k, v] : in->metadata()) w.set(k, v);
  for (const char* k : {"general.quantization_version", "general.file_type"}) w.remove(k);
  for (const char* k : kGGUFSplitKeys) w.remove(k);
  w.set("general.quantization_version", GGUFValue::u32(2));
  w.set("general.file_type", GGUFValue::u32(plan.mix->ftype));
  w.set_alignment(static_cast<uint32_t>(in->alignment()));
  for (const PlannedTensor& p : plan.tensors) w.add_tensor_info(p.name, p.to, p.ne);

  uint64_t total = 0;
  for (const PlannedTensor& p : plan.tensors) total += in->tensors()[p.source_index].nbytes;
  ThreadPool pool(std::max(1, opts.n_threads));
  Progress progress("quantizing to " + std::string(plan.mix->name), total, opts.progress);
  w.write_streamed(out_path, [&](size_t i, const GGUFWriter::Sink& sink) {
    const PlannedTensor& p = plan.tensors[i];
    const TensorInfo& src = in->tensors()[p.source_index];
    if (p.to == p.from) {
      sink(src.data, src.nbytes);
      progress.advance(src.nbytes, p.name);
    } else {
      convert_tensor(src, p, pool, sink, progress);
    }
  });
  progress.finish();
  report.in_file_bytes = in->file_size();
  report.out_file_bytes = std::filesystem::file_size(out_path, ec);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace slm::convert
