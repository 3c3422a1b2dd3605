// BERT (bge-small/base-en, all-MiniLM, e5), as llama.cpp's llm_build_bert computes it: token +
// token-type (always type 0, "sentence A") + position embeddings, LayerNorm; then per layer a
// post-LN block with biases everywhere:
//   x = LN(x + Wo·attn(x) + bo);  x = LN(x + Wdown·GELU(Wup·x + bup) + bdown)
// Attention is bidirectional within each sequence (no mask, no RoPE, no cache). GELU is the tanh
// form through ggml's fp16 table. Q/K/V as separate matrices or one fused attn_qkv.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/ref/attention.h"
#include "models/blocks.h"
#include "models/encoder.h"
#include "models/registry.h"

namespace slm {

const char* pooling_name(Pooling p) {
  switch (p) {
    case Pooling::None: return "none";
    case Pooling::Mean: return "mean";
    case Pooling::Cls: return "cls";
    case Pooling::Last: return "last";
  }
  return "?";
}

std::optional<Pooling> parse_pooling(const std::string& name) {
  for (Pooling p : {Pooling::None, Pooling::Mean, Pooling::Cls, Pooling::Last})
    if (name == pooling_name(p)) return p;
  return std::nullopt;
}

void EncoderModel::forward(ComputeContext&, const Batch&, KVCache&, float*) const {
  fail("{}: architecture '{}' is an embedding model (an encoder without an output head): it "
       "makes embeddings (slm embed), not text", file_->path(), hp_.arch);
}

namespace {

class BertModel : public EncoderModel {
 public:
  explicit BertModel(std::unique_ptr<GGUFFile> file) : EncoderModel(std::move(file)) {
    read_hparams();
    bind_tensors();
  }

  void encode(ComputeContext& ctx, const Batch& b, float* hidden) const override;

 private:
  struct Layer {
    Weight wq, wk, wv, wqkv, wo, up, down;
    std::vector<float> bq, bk, bv, bqkv, bo, b_up, b_down;
    std::vector<float> attn_norm_w, attn_norm_b, out_norm_w, out_norm_b;
  };

  // Step 1.
  void read_hparams() {
    read_common_hparams();
    const auto eps = file_->opt_float(hp_.arch + ".attention.layer_norm_epsilon");
    if (!eps) fail("{}: missing metadata key {}.attention.layer_norm_epsilon", file_->path(), hp_.arch);
    hp_.norm_eps = static_cast<float>(*eps);
    if (hp_.n_head_kv != hp_.n_head || hp_.head_dim_k * hp_.n_head != hp_.n_embd ||
        hp_.head_dim_v != hp_.head_dim_k)
      fail("{}: a BERT model's heads must split the embedding evenly ({} heads of {} for {}, "
           "{} KV heads)", file_->path(), hp_.n_head, hp_.head_dim_k, hp_.n_embd, hp_.n_head_kv);
    causal_ = file_->opt_bool(hp_.arch + ".attention.causal").value_or(false);
    const int64_t pooling = key_int("pooling_type", 0);
    if (pooling == 4) fail("{}: pooling type 4 (rank: a reranker's classifier head) is not supported", file_->path());
    if (pooling < 0 || pooling > 3) fail("{}: {}.pooling_type {} is not a known pooling type (0-3)", file_->path(), hp_.arch, pooling);
    pooling_ = static_cast<Pooling>(pooling);
  }

  // Step 2.
  void bind_tensors() {
    const int64_t E = hp_.n_embd, F = hp_.n_ff, V = hp_.n_vocab;
    token_embd_ = bind("token_embd.weight", E, V);
    pos_embd_ = bind("position_embd.weight", E, hp_.n_ctx_train);
    if (const TensorInfo* t = file_->find_tensor("token_types.weight")) {
      const int64_t n_types = t->ne.size() > 1 ? t->ne[1] : 1;
      token_types_ = bind("token_types.weight", E, n_types);
    }
    tok_norm_w_ = bind_vector("token_embd_norm.weight", E);
    tok_norm_b_ = bind_vector("token_embd_norm.bias", E);
    layers_.resize(hp_.n_layer);
    for (int64_t l = 0; l < hp_.n_layer; ++l) {
      Layer& L = layers_[l];
      L.wqkv = bind(layer_name(l, "attn_qkv.weight"), E, 3 * E, /*required=*/false);
      if (L.wqkv) {
        L.bqkv = bind_vector(layer_name(l, "attn_qkv.bias"), 3 * E, /*required=*/false);
      } else {
        L.wq = bind(layer_name(l, "attn_q.weight"), E, E);
        L.wk = bind(layer_name(l, "attn_k.weight"), E, E);
        L.wv = bind(layer_name(l, "attn_v.weight"), E, E);
        L.bq = bind_vector(layer_name(l, "attn_q.bias"), E);
        L.bk = bind_vector(layer_name(l, "attn_k.bias"), E);
        L.bv = bind_vector(layer_name(l, "attn_v.bias"), E);
      }
      L.wo = bind(layer_name(l, "attn_output.weight"), E, E);
      L.bo = bind_vector(layer_name(l, "attn_output.bias"), E);
      L.attn_norm_w = bind_vector(layer_name(l, "attn_output_norm.weight"), E);
      L.attn_norm_b = bind_vector(layer_name(l, "attn_output_norm.bias"), E);
      L.up = bind(layer_name(l, "ffn_up.weight"), E, F);
      L.b_up = bind_vector(layer_name(l, "ffn_up.bias"), F);
      L.down = bind(layer_name(l, "ffn_down.weight"), F, E);
      L.b_down = bind_vector(layer_name(l, "ffn_down.bias"), E);
      L.out_norm_w = bind_vector(layer_name(l, "layer_output_norm.weight"), E);
      L.out_norm_b = bind_vector(layer_name(l, "layer_output_norm.bias"), E);
    }
  }

  // Groups the batch's tokens by sequence, each sequence in position order (int_scratch
  // kOrder: order[i] is the batch index of sorted token i; kSegStart: sequence s occupies
  // sorted tokens [seg[s], seg[s + 1])). The layers run on the sorted rows: every sequence is
  // then one block of rows, and attention takes several queries of a head at a time.
  void group_sequences(ComputeContext& ctx, const Batch& b) const;
  // Self-attention of the sorted rows q, k, v [T][n_embd] (biases added) into out.
  void attention(ComputeContext& ctx, const float* q, const float* k, const float* v, float* out,
                 int64_t T) const;

  Weight token_embd_, pos_embd_, token_types_;
  std::vector<float> tok_norm_w_, tok_norm_b_;
  std::vector<Layer> layers_;
};

// int_scratch slots of this file (0 and 1 are blocks::attend's; an encoder never calls it). encode()
// asks for the last one first: asking may grow the list of slots, which would move the vectors
// that references taken earlier point into.
constexpr int kOrder = 1, kSegStart = 2, kSortedIds = 3, kSortedPos = 4, kTileRow = 5, kTileSeq = 6;
constexpr int kLastSlot = kTileSeq;

// Queries of one head that attend together (kern::AttendFn's n_q): enough independent
// accumulators to keep the FMA units busy (one query alone was latency-bound: attention took
// 27% of a bge-small pass).
constexpr int64_t kQueryTile = 8;

// y[t] = (y[t] + bias) + res[t] (res may be null) for T rows of n, rows shared among the
// threads: serial, these adds were a tenth of a pass's time, spent with one core waiting.
void add_bias_residual(ComputeContext& ctx, float* y, const float* bias, const float* res, int64_t T, int64_t n) {
  ctx.pool().parallel_for(T, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      float* yr = y + r * n;
      if (res) {
        const float* rr = res + r * n;
        for (int64_t i = 0; i < n; ++i) yr[i] = (yr[i] + bias[i]) + rr[i];
      } else {
        for (int64_t i = 0; i < n; ++i) yr[i] += bias[i];
      }
    }
  }, 4);
}

void BertModel::group_sequences(ComputeContext& ctx, const Batch& b) const {
  const int64_t T = b.size();
  std::vector<int32_t>& seg = ctx.int_scratch(kSegStart);
  std::vector<int32_t>& order = ctx.int_scratch(kOrder);
  order.resize(static_cast<size_t>(T));
  std::iota(order.begin(), order.end(), 0);
  // Batches built by the Embedder are already in this order: skip the sort then.
  auto before = [&b](int32_t x, int32_t y) {
    return b.seq[x] != b.seq[y] ? b.seq[x] < b.seq[y] : b.pos[x] < b.pos[y];
  };
  if (!std::is_sorted(order.begin(), order.end(), before)) std::stable_sort(order.begin(), order.end(), before);
  seg.clear();
  for (int64_t i = 0; i < T; ++i) {
    const int32_t t = order[i];
    if (i > 0 && b.seq[order[i - 1]] == b.seq[t]) {
      if (b.pos[order[i - 1]] == b.pos[t])
        fail("batch tokens {} and {} of sequence {} have the same position {}", order[i - 1], t, b.seq[t], b.pos[t]);
      continue;
    }
    seg.push_back(static_cast<int32_t>(i));
  }
  seg.push_back(static_cast<int32_t>(T));
}

void BertModel::attention(ComputeContext& ctx, const float* q, const float* k, const float* v,
                          float* out, int64_t T) const {
  using namespace blocks;
  const std::vector<int32_t>& seg = ctx.int_scratch(kSegStart);
  const int64_t n_seg = static_cast<int64_t>(seg.size()) - 1;
  const int64_t H = hp_.n_head, d = hp_.head_dim_k, E = H * d;
  // Each sequence's keys transposed, as the attention kernels read them: kt[s0 * E + c * n + j]
  // is dimension c of its j-th token (s0 its first row, n its length).
  float* kt = ctx.buffer(kKeysF32, T * E);
  int64_t n_max = 0;
  for (int64_t s = 0; s < n_seg; ++s) n_max = std::max<int64_t>(n_max, seg[s + 1] - seg[s]);
  ctx.pool().parallel_for(T, [&](int64_t i0, int64_t i1, int) {
    int64_t s = std::upper_bound(seg.begin(), seg.end(), static_cast<int32_t>(i0)) - seg.begin() - 1;
    for (int64_t i = i0; i < i1; ++i) {
      while (i >= seg[s + 1]) ++s;
      const int64_t s0 = seg[s], n = seg[s + 1] - s0, j = i - s0;
      const float* kr = k + i * E;
      float* kts = kt + s0 * E;
      for (int64_t c = 0; c < E; ++c) kts[c * n + j] = kr[c];
    }
  }, 4);

  // Jobs: (tile of up to kQueryTile queries of one sequence, head); causal attention takes one
  // query at a time (each sees a different number of keys).
  const int64_t tile = causal_ ? 1 : kQueryTile;
  std::vector<int32_t>& tiles = ctx.int_scratch(kTileRow);    // first row of each tile
  std::vector<int32_t>& tile_seg = ctx.int_scratch(kTileSeq);  // its sequence
  tiles.clear();
  tile_seg.clear();
  for (int64_t s = 0; s < n_seg; ++s)
    for (int64_t i = seg[s]; i < seg[s + 1]; i += tile) {
      tiles.push_back(static_cast<int32_t>(i));
      tile_seg.push_back(static_cast<int32_t>(s));
    }
  const int64_t n_tiles = static_cast<int64_t>(tiles.size());

  const kern::AttendFn kernel = kern::active().attend && d % 16 == 0 ? kern::active().attend : &ref::attend_group;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const bool causal = causal_;
  const size_t scratch_floats = static_cast<size_t>(tile * (n_max + 32));
  ctx.reserve_thread_scratch(scratch_floats);
  // Dealt out dynamically: a tile costs as much as its sequence is long.
  const int64_t n_jobs = n_tiles * H;
  const int64_t chunk = std::max<int64_t>(1, n_jobs / (8 * static_cast<int64_t>(ctx.n_threads())));
  ctx.pool().parallel_for_dynamic(n_jobs, [&](int64_t b0, int64_t b1, int thread) {
    float* scores = ctx.thread_scratch(thread, scratch_floats);
    for (int64_t job = b0; job < b1; ++job) {
      const int64_t ti = job / H, h = job % H;
      const int64_t s = tile_seg[ti], s0 = seg[s], n = seg[s + 1] - s0, i = tiles[ti];
      const int64_t nq = std::min<int64_t>(tile, seg[s + 1] - i);
      const int64_t visible = causal ? i - s0 + 1 : n;
      kernel(q + i * E + h * d, static_cast<int>(nq), E, kt + s0 * E + h * d * n, n, v + s0 * E + h * d, E,
             visible, static_cast<int>(d), static_cast<int>(d), scale, 0.0f, scores, out + i * E + h * d, E);
    }
  }, chunk);
}

void BertModel::encode(ComputeContext& ctx, const Batch& b, float* hidden) const {
  using namespace blocks;
  if (b.tokens.size() != b.pos.size() || b.tokens.size() != b.seq.size())
    fail("batch arrays have different lengths");
  const int64_t T = b.size(), E = hp_.n_embd, F = hp_.n_ff;
  if (T == 0) return;
  for (int64_t t = 0; t < T; ++t) {
    if (b.tokens[t] < 0 || b.tokens[t] >= hp_.n_vocab)
      fail("batch token {} has id {} outside the vocabulary (0..{})", t, b.tokens[t], hp_.n_vocab - 1);
    if (b.pos[t] < 0 || b.pos[t] >= hp_.n_ctx_train)
      fail("position {} is beyond the model's context of {} tokens", b.pos[t], hp_.n_ctx_train);
    if (b.seq[t] < 0) fail("batch token {} has a negative sequence id {}", t, b.seq[t]);
  }
  ctx.int_scratch(kLastSlot);
  group_sequences(ctx, b);
  const std::vector<int32_t>& order = ctx.int_scratch(kOrder);
  std::vector<int32_t>& ids = ctx.int_scratch(kSortedIds);
  std::vector<int32_t>& pos = ctx.int_scratch(kSortedPos);
  ids.resize(static_cast<size_t>(T));
  pos.resize(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    ids[i] = b.tokens[order[i]];
    pos[i] = b.pos[order[i]];
  }

  float* x = ctx.buffer(kResidual, T * E);
  float* h = ctx.buffer(kNormed, T * E);
  float* q = ctx.buffer(kQ, T * E);
  float* k = ctx.buffer(kK, T * E);
  float* v = ctx.buffer(kV, T * E);
  float* attn = ctx.buffer(kAttnOut, T * E);
  float* proj = ctx.buffer(kProj, T * E);
  float* up = ctx.buffer(kUp, T * F);

  // Embeddings: (token + type 0) + position, then LayerNorm.
  get_rows(token_embd_, ids.data(), T, x);
  if (token_types_) {
    const int32_t type0 = 0;
    get_rows(token_types_, &type0, 1, h);
    for (int64_t t = 0; t < T; ++t) add_inplace(x + t * E, h, E);
  }
  get_rows(pos_embd_, pos.data(), T, h);
  add_inplace(x, h, T * E);
  layer_norm(ctx, x, tok_norm_w_.data(), tok_norm_b_.data(), T, E, hp_.norm_eps, x);

  for (const Layer& L : layers_) {
    if (L.wqkv) {
      float* qkv = ctx.buffer(kQKV, T * 3 * E);
      matmul(ctx, L.wqkv, x, T, qkv);
      if (!L.bqkv.empty()) add_bias_residual(ctx, qkv, L.bqkv.data(), nullptr, T, 3 * E);
      split_qkv(qkv, T, E, E, E, q, k, v);
    } else {
      matmul(ctx, L.wq, x, T, q);
      matmul(ctx, L.wk, x, T, k);
      matmul(ctx, L.wv, x, T, v);
      add_bias_residual(ctx, q, L.bq.data(), nullptr, T, E);
      add_bias_residual(ctx, k, L.bk.data(), nullptr, T, E);
      add_bias_residual(ctx, v, L.bv.data(), nullptr, T, E);
    }
    attention(ctx, q, k, v, attn, T);
    matmul(ctx, L.wo, attn, T, proj);
    add_bias_residual(ctx, proj, L.bo.data(), x, T, E);
    layer_norm(ctx, proj, L.attn_norm_w.data(), L.attn_norm_b.data(), T, E, hp_.norm_eps, x);

    matmul(ctx, L.up, x, T, up);
    add_bias_residual(ctx, up, L.b_up.data(), nullptr, T, F);
    gelu_fp16_table_inplace(ctx, up, T * F);
    matmul(ctx, L.down, up, T, proj);
    add_bias_residual(ctx, proj, L.b_down.data(), x, T, E);
    layer_norm(ctx, proj, L.out_norm_w.data(), L.out_norm_b.data(), T, E, hp_.norm_eps, x);
  }
  // Back to batch order.
  for (int64_t i = 0; i < T; ++i)
    std::memcpy(hidden + static_cast<int64_t>(order[i]) * E, x + i * E, static_cast<size_t>(E) * sizeof(float));
}

}  // namespace

std::unique_ptr<Model> make_bert(std::unique_ptr<GGUFFile> file) {
  return std::make_unique<BertModel>(std::move(file));
}

}  // namespace slm
