#include "models/blocks.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/ref/attention.h"
#include "models/lora.h"

namespace slm::blocks {

void linear(ComputeContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y) {
  matmul(ctx, w, x, n_tokens, y);
  if (ctx.lora) apply_lora(ctx, w, x, n_tokens, y);
}

void embed(const Weight& token_embd, const Batch& b, float* x) {
  get_rows(token_embd, b.tokens.data(), b.size(), x);
}

LayerBuffers layer_buffers(ComputeContext& ctx, const HParams& hp, int64_t T) {
  LayerBuffers b;
  b.x = ctx.buffer(kResidual, T * hp.n_embd);
  b.h = ctx.buffer(kNormed, T * hp.n_embd);
  b.q = ctx.buffer(kQ, T * hp.n_head * hp.head_dim_k);
  b.k = ctx.buffer(kK, T * hp.n_head_kv * hp.head_dim_k);
  b.v = ctx.buffer(kV, T * hp.n_head_kv * hp.head_dim_v);
  b.attn = ctx.buffer(kAttnOut, T * hp.n_head * hp.head_dim_v);
  b.proj = ctx.buffer(kProj, T * hp.n_embd);
  return b;
}

AttentionSpec attention_spec(const HParams& hp) {
  AttentionSpec spec;
  spec.n_head = hp.n_head;
  spec.n_head_kv = hp.n_head_kv;
  spec.head_dim_k = hp.head_dim_k;
  spec.head_dim_v = hp.head_dim_v;
  spec.scale = hp.attn_scale > 0.0f ? hp.attn_scale : 1.0f / std::sqrt(static_cast<float>(hp.head_dim_k));
  spec.softcap = hp.attn_softcap;
  spec.rope = hp.rope;
  return spec;
}

void head_norms(ComputeContext& ctx, const HParams& hp, int64_t n_tokens, const std::vector<float>& q_norm,
                const std::vector<float>& k_norm, float* q, float* k) {
  rms_norm(ctx, q, q_norm.data(), n_tokens * hp.n_head, hp.head_dim_k, hp.norm_eps, q);
  rms_norm(ctx, k, k_norm.data(), n_tokens * hp.n_head_kv, hp.head_dim_k, hp.norm_eps, k);
}

void split_qkv(const float* qkv, int64_t n_tokens, int64_t q_dim, int64_t k_dim, int64_t v_dim,
               float* q, float* k, float* v) {
  const int64_t row = q_dim + k_dim + v_dim;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* r = qkv + t * row;
    std::memcpy(q + t * q_dim, r, q_dim * sizeof(float));
    std::memcpy(k + t * k_dim, r + q_dim, k_dim * sizeof(float));
    std::memcpy(v + t * v_dim, r + q_dim + k_dim, v_dim * sizeof(float));
  }
}

namespace {

// SIMD attention kernels need whole vectors of head dimensions; the scalar twins take any.
bool simd_head_dims(const AttentionSpec& spec) {
  return spec.head_dim_k % 16 == 0 && spec.head_dim_v % 16 == 0;
}

// One job per (token of `seq`, KV head g) on the pool, the group's query heads sharing the
// keys and values: job(g, first, n, q_g, out_g, scores) with the first visible position and
// the count of visible keys, the group's queries and outputs, and the thread's scratch of
// scratch_floats floats. Jobs go KV head by KV head, as in attend_blocks below.
template <class Job>
void for_each_kv_head_job(ComputeContext& ctx, const Batch& b, const KVCache& cache, int layer,
                          const AttentionSpec& spec, int32_t seq, const float* q, float* out,
                          size_t scratch_floats, const Job& job) {
  const int64_t hdk = spec.head_dim_k, hdv = spec.head_dim_v;
  const int64_t q_dim = spec.n_head * hdk, group = spec.n_head / spec.n_head_kv;
  ctx.reserve_thread_scratch(scratch_floats);
  ctx.pool().parallel_for(b.size() * spec.n_head_kv, [&](int64_t begin, int64_t end, int thread) {
    float* scores = ctx.thread_scratch(thread, scratch_floats);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = i / b.size(), t = i % b.size();
      if (b.seq[t] != seq) continue;
      const int32_t first = cache.first_visible(layer, b.pos[t]);
      job(g, first, int64_t{b.pos[t] - first + 1}, q + t * q_dim + g * group * hdk,
          out + t * spec.n_head * hdv + g * group * hdv, scores);
    }
  });
}

// int_scratch slots of attend(): the batch's sequences, and the runs of tokens that attend
// together. attend() asks for the last one first: asking may grow the list of slots, which
// would move the vectors that references taken earlier point into.
constexpr int kSeqs = 0, kTokenRuns = 1;

// Query rows per F16 kernel call: a run of consecutive tokens, whole KV groups each, to about
// eight rows, so that each key and value converted serves that many rows (a KV group of one
// head, Phi-3's, otherwise paid a key load for every product).
constexpr int64_t kRowsPerCall = 8;
// Runs of tokens of a batch from which a quantized cache's keys and values are decoded once per
// head rather than read as stored in every call (attend_blocks): two threads then decode each
// head at most twice where they would have decoded it once per run.
constexpr int64_t kRunsPerDecode = 4;

// Attention over a cache that keeps keys in blocks (KVCache::key_blocks): the kernel reads
// the cache as stored, a wrapped ring's visible keys and values in two runs (its end, then its
// start). Tokens of `seq` at consecutive positions whose first visible key is the same (a
// prompt's) or moves on one position with each (past a sliding window) go to the kernel
// together, up to kRowsPerCall query rows, their queries gathered into one block of rows and
// their outputs scattered back. Jobs go KV head by KV head: a thread's consecutive jobs read
// the same keys and values (256 KiB each at 2048 positions and 64 dimensions), which then stay
// in L2, and each thread gets whole heads, so the causal mask's uneven rows (late tokens see
// more keys) are shared out evenly. Token-major order streamed every head's keys from L3 and
// gave the late tokens of a prompt batch, three times the work of the early ones, to one thread.
// Keys and values each in any cache type (kern::AttendCacheFn has one body per pair).
void attend_blocks(ComputeContext& ctx, const Batch& b, const KVCache& cache, int layer,
                   const AttentionSpec& spec, int32_t seq, const float* q, float* out) {
  constexpr int B = kern::kKeyBlock;
  const int64_t hdk = spec.head_dim_k, hdv = spec.head_dim_v;
  const int64_t q_dim = spec.n_head * hdk, o_dim = spec.n_head * hdv;
  const int64_t group = spec.n_head / spec.n_head_kv;
  const int64_t stride = cache.key_block_stride();
  const int32_t capacity = cache.ring_capacity(layer);
  const kern::AttendCacheFn kernel =
      kern::active().attend_cache && simd_head_dims(spec) ? kern::active().attend_cache : &ref::attend_group_cache;
  // The cache refused other types when it was made.
  const kern::CacheFormat key_format = find_kv_cache_type(cache.types().k)->format;
  const kern::CacheFormat value_format = find_kv_cache_type(cache.types().v)->format;
  const int64_t ldv = cache.value_row_bytes();
  // Runs of tokens (first token, count, slide: 1 where the first visible key moves on with
  // each token), flattened.
  const int64_t max_tok = std::max<int64_t>(1, kRowsPerCall / group);
  std::vector<int32_t>& runs = ctx.int_scratch(kTokenRuns);
  runs.clear();
  int64_t n_max = 0;
  int32_t seen_lo = INT32_MAX, seen_hi = -1;  // the positions any token of seq sees
  for (int64_t t = 0; t < b.size(); ++t) {
    if (b.seq[t] != seq) continue;
    const int32_t first = cache.first_visible(layer, b.pos[t]);
    seen_lo = std::min(seen_lo, first);
    seen_hi = std::max(seen_hi, b.pos[t]);
    const size_t last = runs.size();
    if (last > 0) {
      const int32_t t0 = runs[last - 3], count = runs[last - 2], slide = runs[last - 1];
      const int32_t tl = t0 + count - 1, moved = first - cache.first_visible(layer, b.pos[tl]);
      if (count < max_tok && tl == t - 1 && b.pos[tl] + 1 == b.pos[t] &&
          (moved == 0 || moved == 1) && (count == 1 || moved == slide)) {
        runs[last - 2] = count + 1;
        runs[last - 1] = moved;
        n_max = std::max<int64_t>(n_max, b.pos[t] - cache.first_visible(layer, b.pos[t0]) + 1);
        continue;
      }
    }
    runs.insert(runs.end(), {static_cast<int32_t>(t), 1, 0});
    n_max = std::max<int64_t>(n_max, b.pos[t] - first + 1);
  }
  const int64_t n_runs = static_cast<int64_t>(runs.size() / 3);
  const int64_t rows = max_tok * group;
  const size_t score_floats = static_cast<size_t>(rows * (n_max + 32));
  size_t scratch_floats = score_floats + static_cast<size_t>(rows * (hdk + hdv));
  // Keys or values of a quantized type cost a decoding per kernel call, that is per run of a
  // few tokens; where a thread gets several runs of a head (a prompt), it decodes the positions
  // the batch sees once per head into floats (the F32 format: the same floats the kernel
  // would compute) and the kernel reads those. The span starts at a block boundary, so that
  // lanes keep their places, and covers at most the ring, so that it does not wrap there.
  const bool decode_k = kern::cache_key_group_bytes(key_format) > 0;  // quantized (float formats: 0)
  const bool decode_v = kern::cache_key_group_bytes(value_format) > 0;
  const int32_t span_lo = seen_lo - seen_lo % B;
  const int64_t span_blocks = (seen_hi - span_lo) / B + 1;
  const bool span_fits = capacity == cache.n_ctx() || span_blocks * B <= capacity;  // else it would wrap
  const bool decode = (decode_k || decode_v) && n_runs >= kRunsPerDecode && span_fits;
  const size_t key_floats = decode_k ? static_cast<size_t>(span_blocks * B * hdk) : 0;
  const size_t value_floats = decode_v ? static_cast<size_t>(span_blocks * B * hdv) : 0;
  const size_t call_floats = scratch_floats;
  if (decode) scratch_floats += key_floats + value_floats;
  const auto decode_keys = kern::active().decode_cache_keys ? kern::active().decode_cache_keys : &ref::decode_cache_keys;
  const auto decode_values =
      kern::active().decode_cache_values ? kern::active().decode_cache_values : &ref::decode_cache_values;
  ctx.reserve_thread_scratch(scratch_floats);
  ctx.pool().parallel_for(n_runs * spec.n_head_kv, [&](int64_t begin, int64_t end, int thread) {
    float* scores = ctx.thread_scratch(thread, scratch_floats);
    float* q_rows = scores + score_floats;  // the run's queries, row after row
    float* o_rows = q_rows + rows * hdk;
    float* keys_f32 = scores + call_floats;  // the decoded span of head decoded_head
    float* values_f32 = keys_f32 + key_floats;
    int64_t decoded_head = -1;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = i / n_runs, run = i % n_runs;
      const int64_t t0 = runs[3 * run], count = runs[3 * run + 1], tl = t0 + count - 1;
      const int slide = runs[3 * run + 2];
      const int32_t first = cache.first_visible(layer, b.pos[t0]);
      const int64_t n = b.pos[tl] - first + 1;  // from the run's first token's first key to its last token
      const int32_t slot = first % capacity;
      kern::CacheKeysValues kv;
      kv.keys = key_format;
      kv.values = value_format;
      const uint8_t* k_head = cache.key_blocks(layer, seq, static_cast<int>(g));
      kv.kb = k_head + (slot / B) * stride;
      kv.kblock_stride = stride;
      kv.lane0 = slot % B;
      const uint8_t* v_head = cache.value_head(layer, seq, static_cast<int>(g));
      kv.v = v_head + slot * ldv;
      kv.ldv = ldv;
      kv.n = n;
      kv.n_first = std::min<int64_t>(n, capacity - slot);
      if (kv.n_first < n) {  // the rest from the ring's first slot on
        kv.kb_wrap = k_head;
        kv.v_wrap = v_head;
      }
      if (decode) {
        if (g != decoded_head) {
          // Block by block in position order (a wrapped ring's blocks come from its start).
          for (int64_t k = 0; k < span_blocks; ++k) {
            const int32_t s0 = static_cast<int32_t>((span_lo + k * B) % capacity);
            const int64_t rows_here = std::min<int64_t>(B, seen_hi - (span_lo + k * B) + 1);
            if (decode_k) decode_keys(key_format, k_head + (s0 / B) * stride, stride, 1, static_cast<int>(hdk),
                                      keys_f32 + k * B * hdk);
            if (decode_v) decode_values(value_format, v_head + s0 * ldv, ldv, rows_here, static_cast<int>(hdv),
                                        values_f32 + k * B * hdv);
          }
          decoded_head = g;
        }
        const int64_t at = first - span_lo;  // the run's first key in the span
        if (decode_k) {
          kv.keys = kern::CacheFormat::F32;
          kv.kb = reinterpret_cast<const uint8_t*>(keys_f32 + (at / B) * B * hdk);
          kv.kblock_stride = B * hdk * static_cast<int64_t>(sizeof(float));
        }
        if (decode_v) {
          kv.values = kern::CacheFormat::F32;
          kv.v = reinterpret_cast<const uint8_t*>(values_f32 + at * hdv);
          kv.ldv = hdv * static_cast<int64_t>(sizeof(float));
        }
        if (decode_k && decode_v) {
          kv.n_first = n;  // one run in the span
        } else if (kv.n_first < n) {
          // One side decoded in position order, the other wrapped in the ring: the kernel
          // takes both in two runs at the same split, the decoded one continuing its span.
          if (decode_k) kv.kb_wrap = reinterpret_cast<const uint8_t*>(keys_f32 + ((at + kv.n_first) / B) * B * hdk);
          if (decode_v) kv.v_wrap = reinterpret_cast<const uint8_t*>(values_f32 + (at + kv.n_first) * hdv);
        }
      }
      const int n_q = static_cast<int>(count * group);
      if (count == 1) {  // one token: its group's rows are already one block
        kernel(q + t0 * q_dim + g * group * hdk, n_q, 1, 0, hdk, kv, static_cast<int>(hdk), static_cast<int>(hdv),
               spec.scale, spec.softcap, scores, out + t0 * o_dim + g * group * hdv, hdv);
        continue;
      }
      for (int64_t r = 0; r < count; ++r)
        std::memcpy(q_rows + r * group * hdk, q + (t0 + r) * q_dim + g * group * hdk,
                    static_cast<size_t>(group * hdk) * sizeof(float));
      kernel(q_rows, n_q, static_cast<int>(count), slide, hdk, kv, static_cast<int>(hdk), static_cast<int>(hdv),
             spec.scale, spec.softcap, scores, o_rows, hdv);
      for (int64_t r = 0; r < count; ++r)
        std::memcpy(out + (t0 + r) * o_dim + g * group * hdv, o_rows + r * group * hdv,
                    static_cast<size_t>(group * hdv) * sizeof(float));
    }
  });
}

}  // namespace

void attend(ComputeContext& ctx, const Batch& b, KVCache& cache, int layer,
            const AttentionSpec& spec, float* q, float* k, const float* v, float* out) {
  const int64_t T = b.size();
  const int64_t hdk = spec.head_dim_k, hdv = spec.head_dim_v;
  const int64_t q_dim = spec.n_head * hdk, k_dim = spec.n_head_kv * hdk, v_dim = spec.n_head_kv * hdv;
  for (int64_t t = 0; t < T; ++t) {
    rope(q + t * q_dim, spec.n_head, hdk, b.pos[t], spec.rope);
    rope(k + t * k_dim, spec.n_head_kv, hdk, b.pos[t], spec.rope);
    cache.store(layer, b.seq[t], b.pos[t], k + t * k_dim, v + t * v_dim);
  }
  const int64_t group = spec.n_head / spec.n_head_kv;
  const KVTypes kv_types = cache.types();

  // Tokens of one sequence at a time (a batch usually holds one). A cache that stores keys as
  // rows (quantized heads narrower than a block) has the keys and values the batch can see decoded
  // to floats once per layer, not once per query and head.
  ctx.int_scratch(kTokenRuns);
  std::vector<int32_t>& seqs = ctx.int_scratch(kSeqs);
  seqs.assign(b.seq.begin(), b.seq.end());
  std::sort(seqs.begin(), seqs.end());
  seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
  for (const int32_t seq : seqs) {
    if (cache.key_blocks(layer, seq, 0)) {
      attend_blocks(ctx, b, cache, layer, spec, seq, q, out);
      continue;
    }
    int32_t lo = INT32_MAX, hi = -1;
    for (int64_t t = 0; t < T; ++t)
      if (b.seq[t] == seq) {
        lo = std::min(lo, cache.first_visible(layer, b.pos[t]));
        hi = std::max(hi, b.pos[t]);
      }
    const int64_t n_rows = hi - lo + 1;
    // Keys transposed (dimension-major: kt[c * n_rows + r] is dimension c of row r), as the
    // attention kernels read them; values as rows.
    float* kt = ctx.buffer(kKeysF32, n_rows * k_dim);
    float* vf = ctx.buffer(kValuesF32, n_rows * v_dim);
    ctx.reserve_thread_scratch(static_cast<size_t>(k_dim));
    ctx.pool().parallel_for(n_rows, [&](int64_t r0, int64_t r1, int thread) {
      float* row = ctx.thread_scratch(thread, static_cast<size_t>(k_dim));
      for (int64_t r = r0; r < r1; ++r) {
        kv_row_to_floats(kv_types.k, cache.k_row(layer, seq, lo + static_cast<int32_t>(r)), row, k_dim);
        for (int64_t c = 0; c < k_dim; ++c) kt[c * n_rows + r] = row[c];
        kv_row_to_floats(kv_types.v, cache.v_row(layer, seq, lo + static_cast<int32_t>(r)), vf + r * v_dim, v_dim);
      }
    }, 16);

    const kern::AttendFn kernel = kern::active().attend && simd_head_dims(spec) ? kern::active().attend
                                                                                 : &ref::attend_group;
    for_each_kv_head_job(ctx, b, cache, layer, spec, seq, q, out, static_cast<size_t>(group * (n_rows + 32)),
                         [&](int64_t g, int32_t first, int64_t n, const float* qg, float* og, float* scores) {
      kernel(qg, static_cast<int>(group), hdk, kt + g * hdk * n_rows + (first - lo), n_rows,
             vf + (first - lo) * v_dim + g * hdv, v_dim, n, static_cast<int>(hdk), static_cast<int>(hdv),
             spec.scale, spec.softcap, scores, og, hdv);
    });
  }
}

float activate(Activation act, float x) {
  switch (act) {
    case Activation::SiLU: return silu(x);
    case Activation::GeluTanh: return gelu_tanh(x);
    case Activation::GeluTanhFp16Table: return gelu_tanh_fp16_table(x);
  }
  return x;
}

namespace {
void glu_combine(Activation act, float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = activate(act, gate[i]) * up[i];
}
}  // namespace

void ffn_glu(ComputeContext& ctx, const Weight& gate, const Weight& up, const Weight& down,
             Activation act, const float* h, int64_t n_tokens, float* out) {
  const int64_t n_ff = gate.n_out;
  float* g = ctx.buffer(kGate, n_tokens * n_ff);
  float* u = ctx.buffer(kUp, n_tokens * n_ff);
  linear(ctx, gate, h, n_tokens, g);
  linear(ctx, up, h, n_tokens, u);
  if (const auto swiglu = kern::active().swiglu; swiglu && act == Activation::SiLU) {
    ctx.pool().parallel_for(n_tokens * n_ff, [&](int64_t b, int64_t e, int) {
      swiglu(g + b, u + b, g + b, e - b);
    }, 4096);
  } else if (act == Activation::GeluTanhFp16Table) {
    // Gemma: GELU from the 64K-entry table (the same values gelu_tanh_fp16_table computes one
    // tanh at a time, which was half of a Gemma 3 1B prompt) times up, in one pass on every thread.
    gelu_fp16_table_inplace(ctx, g, n_tokens * n_ff, u);
  } else {
    glu_combine(act, g, u, n_tokens * n_ff);
  }
  linear(ctx, down, g, n_tokens, out);
}

void ffn_glu_fused(ComputeContext& ctx, const Weight& gate_up, const Weight& down,
                   Activation act, const float* h, int64_t n_tokens, float* out) {
  const int64_t n_ff = gate_up.n_out / 2;
  float* gu = ctx.buffer(kUp, n_tokens * 2 * n_ff);
  float* g = ctx.buffer(kGate, n_tokens * n_ff);
  linear(ctx, gate_up, h, n_tokens, gu);
  const auto swiglu = act == Activation::SiLU ? kern::active().swiglu : nullptr;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* row = gu + t * 2 * n_ff;
    float* gr = g + t * n_ff;
    if (swiglu) swiglu(row, row + n_ff, gr, n_ff);
    else for (int64_t i = 0; i < n_ff; ++i) gr[i] = activate(act, row[i]) * row[n_ff + i];
  }
  linear(ctx, down, g, n_tokens, out);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void output_head(ComputeContext& ctx, const Batch& b, const float* x, int64_t n_embd,
                 const std::vector<float>& norm, float eps, const Weight& output,
                 float final_softcap, float* logits) {
  const int64_t n_out = b.n_outputs();
  if (n_out == 0) return;
  float* rows = ctx.buffer(kOutRows, n_out * n_embd);
  int64_t r = 0;
  for (int64_t t = 0; t < b.size(); ++t)
    if (b.logits[t]) std::memcpy(rows + (r++) * n_embd, x + t * n_embd, n_embd * sizeof(float));
  rms_norm(ctx, rows, norm.data(), n_out, n_embd, eps, rows);
  if (ctx.hidden_out) {
    std::memcpy(ctx.hidden_out, rows, static_cast<size_t>(n_out * n_embd) * sizeof(float));
    return;
  }
  matmul(ctx, output, rows, n_out, logits);
  if (final_softcap > 0.0f) {
    const int64_t n = n_out * output.n_out;
    if (const auto cap = kern::active().softcap) cap(logits, n, final_softcap);
    else for (int64_t i = 0; i < n; ++i) logits[i] = std::tanh(logits[i] / final_softcap) * final_softcap;
  }
}

void validate_batch(const Batch& b, const KVCache& cache, int64_t n_vocab) {
  if (b.tokens.size() != b.pos.size() || b.tokens.size() != b.seq.size() ||
      b.tokens.size() != b.logits.size())
    fail("batch arrays have different lengths");
  for (int64_t t = 0; t < b.size(); ++t) {
    if (b.tokens[t] < 0 || b.tokens[t] >= n_vocab)
      fail("batch token {} has id {} outside the vocabulary (0..{})", t, b.tokens[t], n_vocab - 1);
    if (b.seq[t] < 0 || b.seq[t] >= cache.n_seq())
      fail("batch token {} belongs to sequence {}, but the cache holds {} sequences", t, b.seq[t],
           cache.n_seq());
    if (b.pos[t] < 0 || b.pos[t] >= cache.n_ctx())
      fail("position {} is beyond the context size {}: the prompt and generated text must fit "
           "in the context (raise --ctx-size)", b.pos[t], cache.n_ctx());
  }
}

}  // namespace slm::blocks
