#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <cstring>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "core/error.h"
#include "core/fp16.h"
#include "core/memory_lock.h"
#include "kernels/kernels.h"

namespace slm {

Weight Weight::from(const TensorInfo& t) {
  for (size_t d = 2; d < t.ne.size(); ++d)
    if (t.ne[d] != 1)
      fail("tensor {}: expected a 2-D matrix, found dimensions {}", t.name, fmt::join(t.ne, " x "));
  Weight w;
  w.name = t.name;
  w.type = t.type;
  w.n_in = t.ne[0];
  w.n_out = t.ne.size() > 1 ? t.ne[1] : 1;
  w.data = t.data;
  w.row_bytes = row_size(t.type, t.ne[0]);
  w.file = t.file;
  w.file_offset = t.file_offset;
  w.packed = std::make_shared<PackedSlot>();  // a model's weight: one repacked copy per model
  return w;
}

std::vector<float> tensor_to_floats(const TensorInfo& t) {
  const TypeTraits& tt = type_traits(t.type);
  if (!tt.to_float) fail("tensor {}: cannot decode type {}", t.name, dtype_name(t.type));
  std::vector<float> out(static_cast<size_t>(t.nelements));
  tt.to_float(t.data, out.data(), t.nelements);
  return out;
}

// ---- matmul ------------------------------------------------------------------------------------
// Three paths, best first: the SIMD panel kernels of quantized types (weights repacked once per
// context), the SIMD float kernels (F32/F16/BF16 as mapped), and the scalar reference path
// (any type with a vec_dot; also everything under SLM_FORCE_ISA=scalar). Each runs the threads
// over bands of output rows, so every weight byte is read once per call.
namespace {

// Repacked weights get their own anonymous mapping, advised onto transparent huge pages:
// decoding streams all of them for every token, and 2 MiB pages save the TLB a miss per 4 KiB
// (and packing a page fault per 4 KiB). Only whole 2 MiB extents are advised, so a small
// matrix does not take a whole huge page.
std::shared_ptr<uint8_t> alloc_packed(size_t bytes) {
#ifdef __linux__
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t len = bytes + kHuge;  // room to align the start
  void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) fail("cannot allocate {} bytes for repacked weights", bytes);
  const auto addr = reinterpret_cast<uintptr_t>(base);
  auto* data = reinterpret_cast<uint8_t*>((addr + kHuge - 1) / kHuge * kHuge);
  if (bytes >= kHuge) madvise(data, bytes / kHuge * kHuge, MADV_HUGEPAGE);  // a hint only
  // --mlock: the copy that replaces a weight's mapped pages is kept in RAM as they were.
  const bool locked = lock_memory(data, bytes, "repacked weights") && memory_lock_enabled();
  return std::shared_ptr<uint8_t>(data, [base, len, data, bytes, locked](uint8_t*) {
    if (locked) unlock_memory(data, bytes);
    munmap(base, len);
  });
#else
  auto* raw = new uint8_t[bytes + 64];
  const auto addr = reinterpret_cast<uintptr_t>(raw);
  return std::shared_ptr<uint8_t>(raw + (64 - addr % 64) % 64, [raw](uint8_t*) { delete[] raw; });
#endif
}

// Packs w into dst. A weight from a file is read with MappedFile::read_at (pread) into a
// per-thread bounce buffer, about 1 MiB of whole panels at a time, not through the mapping: its
// mapped pages can then be released before the copy is made (packed_weight), so the repacked
// copy replaces the file's bytes in our resident memory instead of adding to them, and packing
// skips the page faults a mapping can cost (on the team's VM, touching a 728 MiB mapping held in
// 4 KiB page-cache folios takes ~300 ms, pread of the same bytes ~65 ms on two threads).
void pack_into(ComputeContext& ctx, const kern::PanelKernels& pk, const Weight& w, uint8_t* dst) {
  const int64_t n_panels = (w.n_out + pk.rows - 1) / pk.rows;
  const size_t pb = pk.panel_bytes(w.n_in);
  const size_t src_panel = static_cast<size_t>(pk.rows) * w.row_bytes;
  const int64_t group = std::max<int64_t>(1, static_cast<int64_t>((size_t{1} << 20) / src_panel));
  const size_t bounce_floats = (static_cast<size_t>(group) * src_panel + 63) / sizeof(float) + 16;
  if (w.file) ctx.reserve_thread_scratch(bounce_floats);
  ctx.pool().parallel_for(n_panels, [&](int64_t b, int64_t e, int thread) {
    uint8_t* bounce = w.file ? reinterpret_cast<uint8_t*>(ctx.thread_scratch(thread, bounce_floats)) : nullptr;
    for (int64_t g0 = b; g0 < e; g0 += group) {
      const int64_t g1 = std::min(e, g0 + group);
      const int64_t r0 = g0 * pk.rows, r1 = std::min<int64_t>(w.n_out, g1 * pk.rows);
      const uint8_t* src = w.row(r0);
      if (bounce) {
        w.file->read_at(w.file_offset + static_cast<uint64_t>(r0) * w.row_bytes, bounce,
                        static_cast<size_t>(r1 - r0) * w.row_bytes);
        src = bounce;
      }
      for (int64_t i = g0; i < g1; ++i) {
        const int rows = static_cast<int>(std::min<int64_t>(pk.rows, w.n_out - i * pk.rows));
        pk.pack(src + static_cast<size_t>(i - g0) * src_panel, w.row_bytes, rows, w.n_in, dst + i * pb);
      }
    }
  });
}

// The repacked copy of w for table k, built on first use. Returned as an owning pointer: a
// matmul keeps it alive even if another thread repacks the slot for another instruction set.
std::shared_ptr<uint8_t> packed_weight(ComputeContext& ctx, const kern::Kernels& k,
                                       const kern::PanelKernels& pk, const Weight& w) {
  const size_t bytes = pk.panel_bytes(w.n_in) * ((w.n_out + pk.rows - 1) / pk.rows);
  if (w.packed) {  // a model's weight: one copy per model, whichever session packs it first
    PackedSlot& slot = *w.packed;
    std::lock_guard<std::mutex> lock(slot.mu);
    if (slot.packed.tag != &k) {
      // Only the repacked copy is used from now on (packing reads the file with pread), so the
      // matrix's mapped pages can leave our memory before the copy is made: resident memory
      // then never holds both.
      if (w.file) w.file->release(w.file_offset, static_cast<size_t>(w.n_out) * w.row_bytes);
      slot.packed.mem = alloc_packed(bytes);
      slot.packed.data = slot.packed.mem.get();
      slot.packed.bytes = bytes;
      pack_into(ctx, pk, w, slot.packed.data);
      slot.packed.tag = &k;
      slot.ready.store(&k, std::memory_order_release);
    }
    return slot.packed.mem;
  }
  if (const auto* p = ctx.find_packed(w.data, &k)) return p->mem;
  ComputeContext::Packed& p = ctx.new_packed(w.data, &k, alloc_packed(bytes), bytes);
  pack_into(ctx, pk, w, p.data);
  return p.mem;
}

// The state of one product, shared by its parallel regions. (These structs date from when the
// pool took a std::function, which allocated for closures over 16 bytes; its FunctionRef never
// allocates, so they are kept for brevity only.)
struct PanelJob {
  // The panel kernels' short-batch entry points, or their long-batch ones (PanelKernels).
  decltype(kern::PanelKernels::prepare) prepare_fn;
  decltype(kern::PanelKernels::gemm) gemm_fn;
  const uint8_t* panels;
  const float* x;
  float* y;
  uint8_t* tiles;
  int64_t n_in, n_out, n_tokens, tt;
  size_t tb;
  void prepare(int64_t g) const {
    prepare_fn(x + g * tt * n_in, static_cast<int>(std::min(tt, n_tokens - g * tt)), n_in, tiles + g * tb);
  }
};

// Whether w already has its repacked copy for table k (then the panels serve every product).
bool is_packed(ComputeContext& ctx, const kern::Kernels& k, const Weight& w) {
  if (w.packed) return w.packed->ready.load(std::memory_order_acquire) == &k;
  return ctx.find_packed(w.data, &k) != nullptr;
}

// Chunk size for a dynamic split of n units into about per_thread chunks per thread: enough to
// even out unequal threads without an atomic hand-off per unit.
int64_t dynamic_chunk(ComputeContext& ctx, int64_t n, int64_t per_thread = 8) {
  return std::max<int64_t>(1, n / (per_thread * static_cast<int64_t>(ctx.pool().size())));
}

// A few tokens on the file's own rows (kern::RowKernels): no repacked copy needed.
void matmul_rows(ComputeContext& ctx, const kern::RowKernels& rk, const Weight& w, const float* x,
                 int64_t n_tokens, float* y) {
  const size_t ab = (rk.act_bytes(w.n_in) + 63) / 64 * 64;
  uint8_t* act = ctx.act_scratch(ab * static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) rk.prepare(x + t * w.n_in, w.n_in, act + t * ab);
  struct Job {
    const kern::RowKernels& rk;
    const Weight& w;
    const uint8_t* act;
    size_t ab;
    int n_tok;
    float* y;
  } job{rk, w, act, ab, static_cast<int>(n_tokens), y};
  const int64_t rows16 = (w.n_out + 15) / 16;
  ctx.pool().parallel_for_dynamic(w.n_out, [&job](int64_t b, int64_t e, int) {
    job.rk.gemv(job.w.data, job.w.row_bytes, b, e, job.w.n_in, job.act, job.ab, job.n_tok, job.y, job.w.n_out);
  }, 16 * dynamic_chunk(ctx, rows16));
}

void matmul_panels(ComputeContext& ctx, const kern::Kernels& k, const kern::PanelKernels& pk,
                   const Weight& w, const float* x, int64_t n_tokens, float* y) {
  const bool long_batch = pk.long_gemm && n_tokens >= pk.long_min_tokens;
  const int64_t tt = long_batch ? pk.long_tile_tokens : pk.tile_tokens;
  const int64_t n_tiles = (n_tokens + tt - 1) / tt;
  const size_t tb = long_batch ? pk.long_tile_bytes(w.n_in) : pk.tile_bytes(w.n_in);
  const std::shared_ptr<uint8_t> panels = packed_weight(ctx, k, pk, w);
  const PanelJob job{long_batch ? pk.long_prepare : pk.prepare, long_batch ? pk.long_gemm : pk.gemm,
                     panels.get(), x, y, ctx.act_scratch(tb * n_tiles), w.n_in, w.n_out, n_tokens, tt, tb};
  if (n_tiles == 1) {
    job.prepare(0);  // decoding: not worth waking the pool
  } else {
    ctx.pool().parallel_for(n_tiles, [&job](int64_t b, int64_t e, int) {
      for (int64_t g = b; g < e; ++g) job.prepare(g);
    });
  }
  const int64_t n_panels = (w.n_out + pk.rows - 1) / pk.rows;
  auto run = [&job](int64_t b, int64_t e, int) {
    job.gemm_fn(job.panels, b, e, job.n_out, job.n_in, job.tiles, job.n_tokens, job.y, job.n_out);
  };
  // The panels are dealt out in chunks to whichever thread is free: the two cores of a VM
  // rarely run at the same speed, and with fixed halves one waited for the other (6% of
  // prompt time). One tile streams each panel once, so its chunks can be small; more tiles
  // reuse the activations across a call's panels, so theirs are larger (four per thread:
  // pp512 +1.5-2% over halves, F16 and Q4_0).
  const int64_t chunk = dynamic_chunk(ctx, n_panels, n_tiles == 1 ? 8 : 4);
  ctx.pool().parallel_for_dynamic(n_panels, run, chunk);
}

struct FloatJob {
  ComputeContext& ctx;
  const kern::FloatKernels& fk;
  const Weight& w;
  const float* x;
  float* y;
  int64_t n_tokens;
  int act_kind;
  uint8_t* a;          // converted activations (act_kind != kActF32)
  size_t scratch_floats;
  void convert(int64_t b, int64_t e) const {
    const int64_t n_in = w.n_in;
    if (act_kind == kern::kActBF16)
      fk.to_bf16(x + b * n_in, reinterpret_cast<uint16_t*>(a) + b * n_in, (e - b) * n_in);
    else if (act_kind == kern::kActBF16R)
      fk.to_bf16r(x + b * n_in, reinterpret_cast<float*>(a) + b * n_in, (e - b) * n_in);
    else
      fk.to_f16r(x + b * n_in, reinterpret_cast<float*>(a) + b * n_in, (e - b) * n_in);
  }
  const void* act() const { return act_kind == kern::kActF32 ? static_cast<const void*>(x) : a; }
};

void matmul_float(ComputeContext& ctx, const kern::FloatKernels& fk, const Weight& w,
                  const float* x, int64_t n_tokens, float* y) {
  const int64_t n_in = w.n_in, n_out = w.n_out;
  const int act_kind = n_tokens == 1 ? fk.gemv_act : fk.gemm_act;
  const size_t elem = act_kind == kern::kActBF16 ? sizeof(uint16_t) : sizeof(float);
  uint8_t* a = act_kind == kern::kActF32 ? nullptr : ctx.act_scratch(n_tokens * n_in * elem);
  const size_t scratch_floats = fk.scratch_bytes(n_in) / sizeof(float) + 16;
  if (n_tokens > 1) ctx.reserve_thread_scratch(scratch_floats);
  const FloatJob job{ctx, fk, w, x, y, n_tokens, act_kind, a, scratch_floats};
  if (act_kind != kern::kActF32) {
    if (n_tokens == 1) job.convert(0, 1);
    else ctx.pool().parallel_for(n_tokens, [&job](int64_t b, int64_t e, int) { job.convert(b, e); });
  }
  if (n_tokens == 1) {
    ctx.pool().parallel_for(n_out, [&job](int64_t b, int64_t e, int) {
      job.fk.gemv(job.w.data, job.w.row_bytes, b, e, job.w.n_in, static_cast<const float*>(job.act()), job.y);
    }, 16);
    return;
  }
  // A long batch on the amx level's tile unit where the table has it (same activations).
  const auto gemm = fk.long_gemm && n_tokens >= fk.long_min_tokens ? fk.long_gemm : fk.gemm;
  ctx.pool().parallel_for(n_out, [&job, gemm](int64_t b, int64_t e, int thread) {
    gemm(job.w.data, job.w.row_bytes, b, e, job.w.n_in, job.act(), job.n_tokens, job.y, job.w.n_out,
         job.ctx.thread_scratch(thread, job.scratch_floats));
  }, 16);
}

void matmul_ref(ComputeContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y) {
  const TypeTraits& wt = type_traits(w.type);
  const TypeTraits& at = type_traits(wt.vec_dot_type);
  const int64_t n_in = w.n_in, n_out = w.n_out;
  const void* xq = x;
  size_t xq_row = n_in * sizeof(float);
  if (wt.vec_dot_type != DType::F32) {
    if (!at.from_float_act) fail("matmul with {}: cannot encode activations as {}", w.name, at.name);
    xq_row = row_size(wt.vec_dot_type, n_in);
    uint8_t* buf = ctx.act_scratch(xq_row * n_tokens);
    ctx.pool().parallel_for(n_tokens, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) at.from_float_act(x + t * n_in, buf + t * xq_row, n_in);
    });
    xq = buf;
  }
  const auto* xb = static_cast<const uint8_t*>(xq);
  // Each thread takes a band of output rows; tokens are the inner loop so a weight row is
  // read from memory once per call and reused from cache for every token.
  ctx.pool().parallel_for(n_out, [&](int64_t b, int64_t e, int) {
    for (int64_t o = b; o < e; ++o) {
      const uint8_t* wr = w.row(o);
      for (int64_t t = 0; t < n_tokens; ++t)
        y[t * n_out + o] = wt.vec_dot(n_in, wr, xb + t * xq_row);
    }
  }, 4);
}

}  // namespace

void matmul(ComputeContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y) {
  const TypeTraits& wt = type_traits(w.type);
  if (!wt.vec_dot) fail("matmul with {}: no dot product for type {}", w.name, wt.name);
  if (n_tokens <= 0) return;
  const kern::Kernels& k = kern::active();
  const auto id = static_cast<uint32_t>(w.type);
  if (id < static_cast<uint32_t>(kern::kTypeSlots)) {
    if (const kern::PanelKernels& pk = k.panel[id]; pk.rows > 0) {
      // Until a longer batch makes repacking worth its cost (a copy of the matrix in fresh
      // memory), a few tokens go through the row kernels on the file's blocks; once repacked,
      // the panels serve everything.
      const kern::RowKernels& rk = k.row[id];
      if (rk.gemv && ctx.row_kernels() && n_tokens <= kern::kRowMaxTokens && w.n_in % rk.block_vals == 0 &&
          !is_packed(ctx, k, w)) {
        matmul_rows(ctx, rk, w, x, n_tokens, y);
        return;
      }
      matmul_panels(ctx, k, pk, w, x, n_tokens, y);
      return;
    }
    if (const kern::FloatKernels& fk = k.flt[id]; fk.gemv && w.n_in % 32 == 0) {
      matmul_float(ctx, fk, w, x, n_tokens, y);
      return;
    }
  }
  matmul_ref(ctx, w, x, n_tokens, y);
}

void get_rows(const Weight& w, const int32_t* ids, int64_t n, float* out) {
  const TypeTraits& tt = type_traits(w.type);
  if (!tt.to_float) fail("embedding lookup in {}: cannot decode type {}", w.name, tt.name);
  // Rows of a file's matrix are read with pread a few KiB at a time rather than through the
  // mapping: with tied embeddings the matrix also serves as the (repacked) output head, and
  // mapping the looked-up rows would bring its file pages back into our resident memory (the
  // kernel maps 64 KiB around each fault), duplicating what the repacked copy holds.
  constexpr size_t kChunk = 16384;
  alignas(64) uint8_t buf[kChunk];
  const int64_t blocks_per_chunk = std::max<int64_t>(1, static_cast<int64_t>(kChunk / tt.type_size));
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= w.n_out)
      fail("token id {} is outside the vocabulary (0..{})", ids[i], w.n_out - 1);
    float* dst = out + i * w.n_in;
    if (!w.file || tt.type_size > kChunk) {
      tt.to_float(w.row(ids[i]), dst, w.n_in);
      continue;
    }
    const uint64_t row_off = w.file_offset + static_cast<uint64_t>(ids[i]) * w.row_bytes;
    const int64_t n_blocks = w.n_in / tt.block_size;
    for (int64_t b0 = 0; b0 < n_blocks; b0 += blocks_per_chunk) {
      const int64_t nb = std::min(blocks_per_chunk, n_blocks - b0);
      w.file->read_at(row_off + static_cast<uint64_t>(b0) * tt.type_size, buf, static_cast<size_t>(nb) * tt.type_size);
      tt.to_float(buf, dst + b0 * tt.block_size, nb * tt.block_size);
    }
  }
}

void rms_norm(const float* x, const float* weight, int64_t n_rows, int64_t n, float eps,
              float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = out + r * n;
    // ggml accumulates in double. Eight chains, not one: a serial chain of n double adds per row
    // was 2.3% of a Qwen3 prompt (its per-head norms: 24 rows of 128 per token and layer); the
    // order changes the sums by ~1e-16.
    double s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int c = 0; c < 8; ++c) s8[c] += static_cast<double>(xr[i + c]) * xr[i + c];
    for (; i < n; ++i) s8[0] += static_cast<double>(xr[i]) * xr[i];
    const double sum = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
    const float mean = static_cast<float>(sum / n);
    const float scale = 1.0f / std::sqrt(mean + eps);
    if (weight)
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * weight[i];
    else
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale;
  }
}

void rms_norm(ComputeContext& ctx, const float* x, const float* weight, int64_t n_rows, int64_t n,
              float eps, float* out) {
  if (n_rows < 16) {
    rms_norm(x, weight, n_rows, n, eps, out);
    return;
  }
  struct Job {
    const float *x, *weight;
    int64_t n;
    float eps;
    float* out;
  } job{x, weight, n, eps, out};
  ctx.pool().parallel_for(n_rows, [&job](int64_t b, int64_t e, int) {
    rms_norm(job.x + b * job.n, job.weight, e - b, job.n, job.eps, job.out + b * job.n);
  }, 8);
}

void layer_norm(const float* x, const float* weight, const float* bias, int64_t n_rows, int64_t n,
                float eps, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = out + r * n;
    // Sums in double like ggml, in four chains rather than one (a serial chain of n double
    // adds per row was 5% of a bge-small pass; the order changes the sums by ~1e-16).
    double s4[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int c = 0; c < 4; ++c) s4[c] += xr[i + c];
    for (; i < n; ++i) s4[0] += xr[i];
    const float mean = static_cast<float>((s4[0] + s4[1] + s4[2] + s4[3]) / n);
    double q4[4] = {0, 0, 0, 0};
    for (i = 0; i + 4 <= n; i += 4)
      for (int c = 0; c < 4; ++c) {
        const float v = xr[i + c] - mean;
        yr[i + c] = v;
        q4[c] += static_cast<double>(v * v);
      }
    for (; i < n; ++i) {
      const float v = xr[i] - mean;
      yr[i] = v;
      q4[0] += static_cast<double>(v * v);
    }
    const float variance = static_cast<float>((q4[0] + q4[1] + q4[2] + q4[3]) / n);
    const float scale = 1.0f / std::sqrt(variance + eps);
    if (weight && bias) {
      for (i = 0; i < n; ++i) yr[i] = yr[i] * scale * weight[i] + bias[i];
    } else {
      for (i = 0; i < n; ++i) {
        float y = yr[i] * scale;
        if (weight) y *= weight[i];
        if (bias) y += bias[i];
        yr[i] = y;
      }
    }
  }
}

void layer_norm(ComputeContext& ctx, const float* x, const float* weight, const float* bias,
                int64_t n_rows, int64_t n, float eps, float* out) {
  if (n_rows < 16) {
    layer_norm(x, weight, bias, n_rows, n, eps, out);
    return;
  }
  ctx.pool().parallel_for(n_rows, [&](int64_t b, int64_t e, int) {
    layer_norm(x + b * n, weight, bias, e - b, n, eps, out + b * n);
  }, 8);
}

void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < n; ++i) x[r * n + i] += bias[i];
}

std::pair<float, float> yarn_corr_dims(int n_rot, int64_t n_ctx_orig, float freq_base, float beta_fast, float beta_slow) {
  auto corr_dim = [&](float rotations) {
    return static_cast<float>(n_rot) * std::log(static_cast<float>(n_ctx_orig) / (rotations * 2.0f * std::numbers::pi_v<float>)) /
           (2.0f * std::log(freq_base));
  };
  const float start = std::floor(corr_dim(beta_fast)), end = std::ceil(corr_dim(beta_slow));
  return {std::max(0.0f, start), std::min(static_cast<float>(n_rot - 1), end)};
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int32_t pos, const RopeParams& p) {
  const int64_t n_rot = p.n_rot;
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(n_rot));
  // ggml builds the angles by repeated multiplication in float; do the same so the
  // rounding matches.
  float cache_cos[512], cache_sin[512];
  if (n_rot / 2 > 512) fail("rope: {} rotated dimensions is more than slm supports (1024)", n_rot);
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const float ff = p.freq_factors ? p.freq_factors[i] : 1.0f;
    const float extrap = theta / ff;
    float angle = p.freq_scale * extrap;
    if (p.ext_factor != 0.0f) {  // YaRN: ggml's rope_yarn_ramp
      const float y = (static_cast<float>(i) - p.yarn_low) / std::max(0.001f, p.yarn_high - p.yarn_low);
      const float mix = (1.0f - std::min(1.0f, std::max(0.0f, y))) * p.ext_factor;
      angle = angle * (1.0f - mix) + extrap * mix;
    }
    cache_cos[i] = std::cos(angle) * p.attn_factor;
    cache_sin[i] = std::sin(angle) * p.attn_factor;
    theta *= theta_scale;
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    if (p.mode == RopeMode::Normal) {
      for (int64_t i = 0; i < n_rot / 2; ++i) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * cache_cos[i] - x1 * cache_sin[i];
        v[2 * i + 1] = x0 * cache_sin[i] + x1 * cache_cos[i];
      }
    } else {
      const int64_t half = n_rot / 2;
      for (int64_t i = 0; i < half; ++i) {
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cache_cos[i] - x1 * cache_sin[i];
        v[i + half] = x0 * cache_sin[i] + x1 * cache_cos[i];
      }
    }
  }
}

void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = (x[i] == -INFINITY) ? 0.0f : std::exp(x[i] - mx);
    x[i] = e;
    sum += e;
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x)));
}

float gelu_tanh_fp16_table(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  const float xr = fp16_to_fp32(fp32_to_fp16(x));
  return fp16_to_fp32(fp32_to_fp16(gelu_tanh(xr)));
}

namespace {
// gelu_tanh_fp16_table of every fp16 value, widened to float (ggml_table_gelu_f16 holds the
// fp16 bits; floats save the conversion back, 256 KiB stay in L2).
const float* gelu_fp16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h)
      t[h] = fp16_to_fp32(fp32_to_fp16(gelu_tanh(fp16_to_fp32(static_cast<uint16_t>(h)))));
    return t;
  }();
  return table.data();
}
}  // namespace

void gelu_fp16_table_inplace(ComputeContext& ctx, float* x, int64_t n, const float* times) {
  const float* table = gelu_fp16_table();
  const kern::Kernels& k = kern::active();
  ctx.pool().parallel_for(n, [&](int64_t b, int64_t e, int) {
    uint16_t h[256];
    for (int64_t i0 = b; i0 < e; i0 += 256) {
      const int64_t m = std::min<int64_t>(256, e - i0);
      float* xs = x + i0;
      if (k.f32_to_fp16) k.f32_to_fp16(xs, h, m);
      else for (int64_t i = 0; i < m; ++i) h[i] = fp32_to_fp16(xs[i]);
      for (int64_t i = 0; i < m; ++i) {
        // ggml: exact outside [-10, 10] (the table would saturate there).
        const float v = xs[i], g = table[h[i]];
        xs[i] = v <= -10.0f ? 0.0f : v >= 10.0f ? v : g;
        if (times) xs[i] *= times[i0 + i];
      }
    }
  }, 256);
}

}  // namespace slm
