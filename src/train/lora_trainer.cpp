#include "train/lora_trainer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

#include "core/error.h"
#include "ops/gemm.h"
#include "ops/ops.h"

namespace slm::train {

// ---- targets and a fresh adapter ---------------------------------------------------------------

LoraTargets LoraTargets::parse(const std::string& s) {
  LoraTargets t{false, false, false, false, false, false, false};
  std::stringstream in(s);
  std::string part;
  bool any = false;
  while (std::getline(in, part, ',')) {
    part.erase(0, part.find_first_not_of(' '));
    part.erase(part.find_last_not_of(' ') + 1);
    if (part.empty()) continue;
    any = true;
    if (part == "all") t = LoraTargets{};
    else if (part == "q") t.q = true;
    else if (part == "k") t.k = true;
    else if (part == "v") t.v = true;
    else if (part == "o") t.o = true;
    else if (part == "gate") t.gate = true;
    else if (part == "up") t.up = true;
    else if (part == "down") t.down = true;
    else fail("--targets: unknown projection '{}' (choose from q,k,v,o,gate,up,down or all)", part);
  }
  if (!any) fail("--targets: no projection given (choose from q,k,v,o,gate,up,down or all)");
  return t;
}

std::string LoraTargets::str() const {
  std::string s;
  auto add = [&](bool on, const char* n) {
    if (!on) return;
    if (!s.empty()) s += ',';
    s += n;
  };
  add(q, "q"), add(k, "k"), add(v, "v"), add(o, "o"), add(gate, "gate"), add(up, "up"), add(down, "down");
  return s;
}

namespace {

// The adapted matrices of a layer, by target.
std::vector<const Weight*> target_weights(const DecoderLayerView& L, const LoraTargets& t) {
  std::vector<const Weight*> w;
  if (L.wqkv) {
    if (t.q || t.k || t.v) w.push_back(L.wqkv);
  } else {
    if (t.q) w.push_back(L.wq);
    if (t.k) w.push_back(L.wk);
    if (t.v) w.push_back(L.wv);
  }
  if (t.o) w.push_back(L.wo);
  if (L.gate_up) {
    if (t.gate || t.up) w.push_back(L.gate_up);
  } else {
    if (t.gate) w.push_back(L.gate);
    if (t.up) w.push_back(L.up);
  }
  if (t.down) w.push_back(L.down);
  return w;
}

}  // namespace

std::shared_ptr<LoraAdapter> make_adapter(const Model& model, const LoraTargets& targets, int rank,
                                          float alpha, uint64_t seed) {
  if (rank <= 0) fail("the LoRA rank must be at least 1 (got {})", rank);
  const DecoderView view = model.decoder_view(static_cast<int>(model.hparams().n_ctx_train));
  auto ad = std::make_shared<LoraAdapter>();
  ad->arch = model.hparams().arch;
  ad->alpha = alpha;
  std::mt19937_64 rng(seed);
  for (const DecoderLayerView& L : view.layers)
    for (const Weight* w : target_weights(L, targets)) {
      if (rank > std::min(w->n_in, w->n_out))
        fail("LoRA rank {} is larger than {} ({} x {})", rank, w->name, w->n_in, w->n_out);
      LoraTensor& t = ad->add(w->name, w->n_in, w->n_out, rank);
      const double bound = 1.0 / std::sqrt(static_cast<double>(w->n_in));
      // 53-bit uniform in [0, 1) from the raw generator: the same numbers on every platform
      // (std::uniform_real_distribution's algorithm is the library's choice).
      for (float& a : t.a) a = static_cast<float>((2.0 * ((rng() >> 11) * 0x1.0p-53) - 1.0) * bound);
    }
  return ad;
}

void LoraGrads::zero_like(const LoraAdapter& ad) {
  a.resize(ad.tensors.size());
  b.resize(ad.tensors.size());
  for (size_t i = 0; i < ad.tensors.size(); ++i) {
    a[i].assign(ad.tensors[i].a.size(), 0.0f);
    b[i].assign(ad.tensors[i].b.size(), 0.0f);
  }
}

// ---- the passes ----------------------------------------------------------------------------------

namespace {

using Vec = std::vector<float>;

// One projection of a layer: the frozen weight, its bias and adapter (either may be absent).
struct Linear {
  const Weight* w = nullptr;
  const std::vector<float>* bias = nullptr;
  LoraTensor* lora = nullptr;
  int index = -1;     // of the adapter tensor (gradients)
  float scale = 0.0f; // alpha / rank
};

enum Proj { kPQ, kPK, kPV, kPQKV, kPO, kPGate, kPUp, kPGateUp, kPDown, kProjCount };

// A layer's intermediates for one batch.
struct LayerActs {
  Vec x;            // layer input [N][E]
  Vec inv1, h1;     // attention norm: 1/rms per row, normed input [N][E]
  Vec q, k, v;      // after RoPE (q, k) [N][dim]
  Vec q_in, k_in;   // Qwen3 / Gemma 3: q and k before their per-head norms [N][dim]
  Vec inv_q, inv_k; // and those norms' 1/rms per head [N][heads]
  Vec att;          // attention output [N][H * hdv]
  Vec o, inv_pa;    // output projection [N][E] (Gemma: before its post-norm) and that norm's 1/rms
  Vec x2;           // residual after attention [N][E]
  Vec inv2, h2;     // FFN norm
  Vec g, u, a;      // gate and up projections [N][F], act(g) * u
  Vec d, inv_pf;    // down projection [N][E] (Gemma: before its post-norm)
  Vec lu[kProjCount];  // A x of each adapted projection [N][rank]
};

float act_fn(blocks::Activation act, float x) {
  if (act == blocks::Activation::SiLU) return x / (1.0f + std::exp(-x));
  const float c = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
}

float act_grad(blocks::Activation act, float x) {
  if (act == blocks::Activation::SiLU) {
    const float s = 1.0f / (1.0f + std::exp(-x));
    return s * (1.0f + x * (1.0f - s));
  }
  const float c = 0.7978845608028654f;
  const float t = std::tanh(c * (x + 0.044715f * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * x * x);
}

}  // namespace

struct LoraTrainer::Impl {
  const Model& model;
  LoraAdapter& adapter;
  DecoderView view;
  TrainerOptions opts;
  int64_t B = 0, T = 0, N = 0, E = 0, F = 0, H = 0, Hkv = 0, hdk = 0, hdv = 0;
  int64_t qd = 0, kd = 0, vd = 0, ad = 0;
  std::vector<std::array<Linear, kProjCount>> lin;  // per layer
  std::vector<LayerActs> acts;                        // one per layer, or one reused (recompute)
  std::vector<Vec> inputs;                            // per layer input when recomputing
  Vec x_final, inv_final;
  // Backward scratch.
  Vec dx, dh, dtmp, dq, dk, dv, datt, dgu, du_lora, logits;
  std::vector<ThreadPool*> solo;  // one single-thread pool per worker (attention jobs)
  std::vector<std::unique_ptr<ThreadPool>> solo_owned;

  Impl(const Model& m, LoraAdapter& a, const TrainerOptions& o) : model(m), adapter(a), opts(o) {}

  LayerActs& acts_for(int64_t l) { return acts.size() == 1 ? acts[0] : acts[l]; }

  // ---- elementwise helpers ----

  // out = x * inv * w per row of n values (inv = 1/sqrt(mean(x^2) + eps), kept), over the N
  // token rows or, for per-head norms, n_rows rows.
  void norm_fwd(ComputeContext& ctx, const float* x, const Vec& w, float* inv, float* out, int64_t n,
                int64_t n_rows = 0) {
    const float eps = view.hp.norm_eps;
    ctx.pool().parallel_for(n_rows ? n_rows : N, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * n;
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const float iv = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
        inv[r] = iv;
        float* o = out + r * n;
        for (int64_t i = 0; i < n; ++i) o[i] = xr[i] * iv * w[i];
      }
    }, 8);
  }

  // dx (+)= d(norm)/dx . dy: with g = dy * w, dx = inv * g - x * inv^3 * mean(g * x). dx may
  // be dy (each element reads only its own after the row's sum).
  void norm_bwd(ComputeContext& ctx, const float* x, const Vec& w, const float* inv, const float* dy,
                float* dx, int64_t n, bool accumulate, int64_t n_rows = 0) {
    ctx.pool().parallel_for(n_rows ? n_rows : N, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * n;
        const float* dr = dy + r * n;
        double dot = 0;
        for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(dr[i]) * w[i] * xr[i];
        const float iv = inv[r];
        const float c = static_cast<float>(dot / n) * iv * iv * iv;
        float* o = dx + r * n;
        if (accumulate) for (int64_t i = 0; i < n; ++i) o[i] += iv * dr[i] * w[i] - xr[i] * c;
        else for (int64_t i = 0; i < n; ++i) o[i] = iv * dr[i] * w[i] - xr[i] * c;
      }
    }, 8);
  }

  // RoPE of layer L (Gemma 3's sliding layers have their own) at each row's position.
  void rope_rows(const DecoderLayerView& L, float* x, int64_t heads, int64_t dim, int sign) {
    const RopeParams& p = L.rope ? *L.rope : view.attn.rope;
    const int64_t row = heads * dim;
    for (int64_t r = 0; r < N; ++r) rope(x + r * row, heads, dim, static_cast<int32_t>(sign * (r % T)), p);
  }

  // ---- projections ----

  // y [N][out] = x W^T + bias + s (x A^T) B^T, keeping x A^T in lu.
  void lin_fwd(ComputeContext& ctx, const Linear& L, const float* x, float* y, Vec& lu) {
    matmul(ctx, *L.w, x, N, y);
    if (L.bias && !L.bias->empty()) add_bias(y, L.bias->data(), N, L.w->n_out);
    if (!L.lora) return;
    const int64_t r = L.lora->rank, in = L.w->n_in, out = L.w->n_out;
    lu.resize(static_cast<size_t>(N * r));
    sgemm(ctx.pool(), false, true, N, r, in, 1.0f, x, in, L.lora->a.data(), in, 0.0f, lu.data(), r);
    sgemm(ctx.pool(), false, true, N, out, r, L.scale, lu.data(), r, L.lora->b.data(), r, 1.0f, y, out);
  }

  // dx (+)= dy W + s (dy B) A; the adapter's gradients accumulate into grads.
  void lin_bwd(ComputeContext& ctx, const Linear& L, const float* x, const Vec& lu, const float* dy, float* dx,
               bool accumulate, LoraGrads* grads) {
    matmul_transposed(ctx, *L.w, dy, N, dx, accumulate);
    if (!L.lora) return;
    const int64_t r = L.lora->rank, in = L.w->n_in, out = L.w->n_out;
    du_lora.resize(static_cast<size_t>(N * r));
    if (grads) {
      // dB += s dy^T (x A^T)
      sgemm(ctx.pool(), true, false, out, r, N, L.scale, dy, out, lu.data(), r, 1.0f, grads->b[L.index].data(), r);
    }
    // du = s dy B
    sgemm(ctx.pool(), false, false, N, r, out, L.scale, dy, out, L.lora->b.data(), r, 0.0f, du_lora.data(), r);
    if (grads) {
      // dA += du^T x
      sgemm(ctx.pool(), true, false, r, in, N, 1.0f, du_lora.data(), r, x, in, 1.0f, grads->a[L.index].data(), in);
    }
    sgemm(ctx.pool(), false, false, N, in, r, 1.0f, du_lora.data(), r, L.lora->a.data(), in, 1.0f, dx, in);
  }

  // ---- attention ----

  // Scores of head h of window b: S = scale q k^T, masked (causal, window), soft-capped, then
  // softmax in place; `capped` receives tanh(s / cap) when soft-capping (for the backward).
  void head_probs(ThreadPool& pool, const LayerActs& A, int64_t b, int64_t h, int32_t window, float* p, float* capped) {
    const int64_t g = h / (H / Hkv);
    const float* qh = A.q.data() + b * T * qd + h * hdk;
    const float* kg = A.k.data() + b * T * kd + g * hdk;
    sgemm(pool, false, true, T, T, hdk, view.attn.scale, qh, qd, kg, kd, 0.0f, p, T);
    const float cap = view.attn.softcap;
    for (int64_t i = 0; i < T; ++i) {
      float* row = p + i * T;
      const int64_t lo = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
      float mx = -INFINITY;
      for (int64_t j = lo; j <= i; ++j) {
        if (cap > 0.0f) {
          const float t = std::tanh(row[j] / cap);
          if (capped) capped[i * T + j] = t;
          row[j] = cap * t;
        }
        mx = std::max(mx, row[j]);
      }
      double sum = 0;
      for (int64_t j = lo; j <= i; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += row[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < T; ++j) row[j] = (j >= lo && j <= i) ? row[j] * inv : 0.0f;
    }
  }

  void attention_fwd(ComputeContext& ctx, LayerActs& A, int32_t window) {
    const size_t tt = static_cast<size_t>(T * T);
    ctx.reserve_thread_scratch(tt);
    ctx.pool().parallel_for(B * H, [&](int64_t j0, int64_t j1, int thread) {
      float* p = ctx.thread_scratch(thread, tt);
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t b = j / H, h = j % H, g = h / (H / Hkv);
        head_probs(*solo[thread], A, b, h, window, p, nullptr);
        sgemm(*solo[thread], false, false, T, hdv, T, 1.0f, p, T, A.v.data() + b * T * vd + g * hdv, vd, 0.0f,
              A.att.data() + b * T * ad + h * hdv, ad);
      }
    });
  }

  // From datt: dq (overwritten), dk and dv (accumulated over the heads of a group, zeroed
  // here). Jobs are whole KV groups, so no two threads write the same dk/dv rows.
  void attention_bwd(ComputeContext& ctx, const LayerActs& A, int32_t window) {
    const size_t tt = static_cast<size_t>(T * T);
    std::fill(dk.begin(), dk.end(), 0.0f);
    std::fill(dv.begin(), dv.end(), 0.0f);
    const int64_t group = H / Hkv;
    const float cap = view.attn.softcap;
    ctx.reserve_thread_scratch(3 * tt);
    ctx.pool().parallel_for(B * Hkv, [&](int64_t j0, int64_t j1, int thread) {
      float* p = ctx.thread_scratch(thread, 3 * tt);
      float* dp = p + tt;
      float* capped = p + 2 * tt;
      ThreadPool& pool = *solo[thread];
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t b = j / Hkv, g = j % Hkv;
        const float* kg = A.k.data() + b * T * kd + g * hdk;
        const float* vg = A.v.data() + b * T * vd + g * hdv;
        float* dkg = dk.data() + b * T * kd + g * hdk;
        float* dvg = dv.data() + b * T * vd + g * hdv;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          head_probs(pool, A, b, h, window, p, cap > 0.0f ? capped : nullptr);
          const float* doh = datt.data() + b * T * ad + h * hdv;
          // dP = dO V^T; dV += P^T dO
          sgemm(pool, false, true, T, T, hdv, 1.0f, doh, ad, vg, vd, 0.0f, dp, T);
          sgemm(pool, true, false, T, hdv, T, 1.0f, p, T, doh, ad, 1.0f, dvg, vd);
          // dS = P * (dP - sum_j P dP), then through the soft-cap: d(cap tanh(s/cap)) = 1 - tanh^2.
          for (int64_t i = 0; i < T; ++i) {
            float* pr = p + i * T;
            float* dr = dp + i * T;
            double dot = 0;
            for (int64_t c = 0; c <= i; ++c) dot += static_cast<double>(pr[c]) * dr[c];
            const float fdot = static_cast<float>(dot);
            for (int64_t c = 0; c < T; ++c) {
              float ds = c <= i ? pr[c] * (dr[c] - fdot) : 0.0f;
              if (cap > 0.0f && ds != 0.0f) ds *= 1.0f - capped[i * T + c] * capped[i * T + c];
              dr[c] = ds;
            }
          }
          const float* qh = A.q.data() + b * T * qd + h * hdk;
          // dQ = scale dS K; dK += scale dS^T Q
          sgemm(pool, false, false, T, hdk, T, view.attn.scale, dp, T, kg, kd, 0.0f, dq.data() + b * T * qd + h * hdk, qd);
          sgemm(pool, true, false, T, hdk, T, view.attn.scale, dp, T, qh, qd, 1.0f, dkg, kd);
        }
      }
    });
  }

  // ---- one layer ----

  // The layer's intermediates into A and, unless null, its output (x2 + d, Gemma: x2 + norm(d))
  // into out.
  void layer_fwd(ComputeContext& ctx, int64_t l, LayerActs& A, float* out) {
    const DecoderLayerView& L = view.layers[l];
    auto& P = lin[l];
    norm_fwd(ctx, A.x.data(), *L.attn_norm, A.inv1.data(), A.h1.data(), E);
    if (L.wqkv) {
      lin_fwd(ctx, P[kPQKV], A.h1.data(), dtmp.data(), A.lu[kPQKV]);
      blocks::split_qkv(dtmp.data(), N, qd, kd, vd, A.q.data(), A.k.data(), A.v.data());
    } else {
      lin_fwd(ctx, P[kPQ], A.h1.data(), A.q.data(), A.lu[kPQ]);
      lin_fwd(ctx, P[kPK], A.h1.data(), A.k.data(), A.lu[kPK]);
      lin_fwd(ctx, P[kPV], A.h1.data(), A.v.data(), A.lu[kPV]);
    }
    if (L.q_norm) {  // each head normalized before RoPE (its input and 1/rms kept)
      A.q_in = A.q;
      A.k_in = A.k;
      norm_fwd(ctx, A.q_in.data(), *L.q_norm, A.inv_q.data(), A.q.data(), hdk, N * H);
      norm_fwd(ctx, A.k_in.data(), *L.k_norm, A.inv_k.data(), A.k.data(), hdk, N * Hkv);
    }
    rope_rows(L, A.q.data(), H, hdk, 1);
    rope_rows(L, A.k.data(), Hkv, hdk, 1);
    attention_fwd(ctx, A, L.window);
    lin_fwd(ctx, P[kPO], A.att.data(), A.o.data(), A.lu[kPO]);
    A.x2 = A.x;
    if (L.post_attn_norm) {
      norm_fwd(ctx, A.o.data(), *L.post_attn_norm, A.inv_pa.data(), dtmp.data(), E);
      blocks::add_inplace(A.x2.data(), dtmp.data(), N * E);
    } else {
      blocks::add_inplace(A.x2.data(), A.o.data(), N * E);
    }
    norm_fwd(ctx, A.x2.data(), *L.ffn_norm, A.inv2.data(), A.h2.data(), E);
    if (L.gate_up) {
      lin_fwd(ctx, P[kPGateUp], A.h2.data(), dtmp.data(), A.lu[kPGateUp]);
      for (int64_t t = 0; t < N; ++t) {
        std::memcpy(A.g.data() + t * F, dtmp.data() + t * 2 * F, F * sizeof(float));
        std::memcpy(A.u.data() + t * F, dtmp.data() + t * 2 * F + F, F * sizeof(float));
      }
    } else {
      lin_fwd(ctx, P[kPGate], A.h2.data(), A.g.data(), A.lu[kPGate]);
      lin_fwd(ctx, P[kPUp], A.h2.data(), A.u.data(), A.lu[kPUp]);
    }
    const blocks::Activation act = view.act;
    ctx.pool().parallel_for(N * F, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) A.a[i] = act_fn(act, A.g[i]) * A.u[i];
    }, 4096);
    lin_fwd(ctx, P[kPDown], A.a.data(), A.d.data(), A.lu[kPDown]);
    // Gemma's post-FFN norm (its 1/rms is kept for the backward pass, recomputed layers too).
    if (L.post_ffw_norm) norm_fwd(ctx, A.d.data(), *L.post_ffw_norm, A.inv_pf.data(), dtmp.data(), E);
    if (!out) return;  // a layer recomputed in the backward pass: its output is not needed
    std::memcpy(out, A.x2.data(), static_cast<size_t>(N * E) * sizeof(float));
    blocks::add_inplace(out, L.post_ffw_norm ? dtmp.data() : A.d.data(), N * E);
  }

  // dx holds d(loss)/d(layer output) on entry and d(loss)/d(layer input) on return.
  void layer_bwd(ComputeContext& ctx, int64_t l, LayerActs& A, LoraGrads* grads) {
    const DecoderLayerView& L = view.layers[l];
    auto& P = lin[l];
    // FFN: dd from the output gradient (through the post-norm for Gemma).
    Vec& dd = dh;  // [N][E]
    if (L.post_ffw_norm) norm_bwd(ctx, A.d.data(), *L.post_ffw_norm, A.inv_pf.data(), dx.data(), dd.data(), E, false);
    else std::memcpy(dd.data(), dx.data(), static_cast<size_t>(N * E) * sizeof(float));
    // da = dd Wd (+ LoRA); into datt-sized? use dgu's first half as da.
    float* da = dgu.data();  // [N][F]
    lin_bwd(ctx, P[kPDown], A.a.data(), A.lu[kPDown], dd.data(), da, false, grads);
    // Gate and up gradients, laid out [N][2F] as the fused matrix's rows ([gate | up]).
    float* dg = dgu.data() + N * F;  // scratch after da
    const blocks::Activation act = view.act;
    ctx.pool().parallel_for(N, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t i = 0; i < F; ++i) {
          const int64_t k = t * F + i;
          const float g = A.g[k];
          dg[t * 2 * F + i] = da[k] * A.u[k] * act_grad(act, g);
          dg[t * 2 * F + F + i] = da[k] * act_fn(act, g);
        }
    }, 8);
    float* dh2 = dtmp.data();  // [N][E]
    if (L.gate_up) {
      lin_bwd(ctx, P[kPGateUp], A.h2.data(), A.lu[kPGateUp], dg, dh2, false, grads);
    } else {
      // Split into contiguous [N][F] blocks for the two products.
      float* dgate = da;  // da is no longer needed
      Vec& dup = dq;      // big enough? sized max(N*qd, N*F) at set-up
      for (int64_t t = 0; t < N; ++t) {
        std::memcpy(dgate + t * F, dg + t * 2 * F, F * sizeof(float));
        std::memcpy(dup.data() + t * F, dg + t * 2 * F + F, F * sizeof(float));
      }
      lin_bwd(ctx, P[kPGate], A.h2.data(), A.lu[kPGate], dgate, dh2, false, grads);
      lin_bwd(ctx, P[kPUp], A.h2.data(), A.lu[kPUp], dup.data(), dh2, true, grads);
    }
    // dx2 = dx (residual) + norm backward of dh2.
    norm_bwd(ctx, A.x2.data(), *L.ffn_norm, A.inv2.data(), dh2, dx.data(), E, true);
    // Attention block: do from dx2 (through the post-norm for Gemma).
    float* dO = dd.data();
    if (L.post_attn_norm) norm_bwd(ctx, A.o.data(), *L.post_attn_norm, A.inv_pa.data(), dx.data(), dO, E, false);
    else std::memcpy(dO, dx.data(), static_cast<size_t>(N * E) * sizeof(float));
    lin_bwd(ctx, P[kPO], A.att.data(), A.lu[kPO], dO, datt.data(), false, grads);
    attention_bwd(ctx, A, L.window);
    rope_rows(L, dq.data(), H, hdk, -1);  // RoPE's transpose is the rotation by -angle
    rope_rows(L, dk.data(), Hkv, hdk, -1);
    if (L.q_norm) {
      norm_bwd(ctx, A.q_in.data(), *L.q_norm, A.inv_q.data(), dq.data(), dq.data(), hdk, false, N * H);
      norm_bwd(ctx, A.k_in.data(), *L.k_norm, A.inv_k.data(), dk.data(), dk.data(), hdk, false, N * Hkv);
    }
    float* dh1 = dtmp.data();
    if (L.wqkv) {
      Vec& fused = dgu;  // [N][qd + kd + vd] fits in [N][2F]? sized at set-up to the max
      for (int64_t t = 0; t < N; ++t) {
        float* r = fused.data() + t * (qd + kd + vd);
        std::memcpy(r, dq.data() + t * qd, qd * sizeof(float));
        std::memcpy(r + qd, dk.data() + t * kd, kd * sizeof(float));
        std::memcpy(r + qd + kd, dv.data() + t * vd, vd * sizeof(float));
      }
      lin_bwd(ctx, P[kPQKV], A.h1.data(), A.lu[kPQKV], fused.data(), dh1, false, grads);
    } else {
      lin_bwd(ctx, P[kPQ], A.h1.data(), A.lu[kPQ], dq.data(), dh1, false, grads);
      lin_bwd(ctx, P[kPK], A.h1.data(), A.lu[kPK], dk.data(), dh1, true, grads);
      lin_bwd(ctx, P[kPV], A.h1.data(), A.lu[kPV], dv.data(), dh1, true, grads);
    }
    norm_bwd(ctx, A.x.data(), *L.attn_norm, A.inv1.data(), dh1, dx.data(), E, true);
  }

  void alloc_acts(LayerActs& A) {
    auto sz = [](Vec& v, int64_t n) { v.assign(static_cast<size_t>(n), 0.0f); };
    sz(A.x, N * E), sz(A.inv1, N), sz(A.h1, N * E), sz(A.q, N * qd), sz(A.k, N * kd), sz(A.v, N * vd);
    sz(A.att, N * ad), sz(A.o, N * E), sz(A.inv_pa, N), sz(A.x2, N * E), sz(A.inv2, N), sz(A.h2, N * E);
    sz(A.g, N * F), sz(A.u, N * F), sz(A.a, N * F), sz(A.d, N * E), sz(A.inv_pf, N);
    if (view.layers[0].q_norm) sz(A.q_in, N * qd), sz(A.k_in, N * kd), sz(A.inv_q, N * H), sz(A.inv_k, N * Hkv);
  }

  size_t layer_bytes() const {
    const int64_t r = adapter.tensors.empty() ? 0 : adapter.tensors[0].rank;
    const int64_t head_norms = view.layers[0].q_norm ? qd + kd + H + Hkv : 0;
    return static_cast<size_t>(4 * (N * (6 * E + qd + kd + vd + ad + 3 * F + 4 + head_norms) + kProjCount * N * r));
  }
};

LoraTrainer::LoraTrainer(const Model& model, LoraAdapter& adapter, const TrainerOptions& opts)
    : impl_(std::make_unique<Impl>(model, adapter, opts)), ctx_(std::max(1, opts.n_threads)) {
  Impl& I = *impl_;
  if (opts.batch <= 0) fail("batch size must be at least 1 (got {})", opts.batch);
  if (opts.seq_len < 2) fail("the training context must be at least 2 tokens (got {})", opts.seq_len);
  if (opts.seq_len > model.hparams().n_ctx_train)
    fail("a training context of {} tokens is longer than the model's ({} tokens)", opts.seq_len,
         model.hparams().n_ctx_train);
  I.view = model.decoder_view(opts.seq_len);
  adapter.check_against(model);
  const HParams& hp = I.view.hp;
  I.B = opts.batch, I.T = opts.seq_len, I.N = I.B * I.T;
  I.E = hp.n_embd, I.F = hp.n_ff, I.H = hp.n_head, I.Hkv = hp.n_head_kv;
  I.hdk = hp.head_dim_k, I.hdv = hp.head_dim_v;
  I.qd = I.H * I.hdk, I.kd = I.Hkv * I.hdk, I.vd = I.Hkv * I.hdv, I.ad = I.H * I.hdv;
  // Bind each projection to its adapter tensor.
  std::vector<bool> used(adapter.tensors.size(), false);
  I.lin.resize(I.view.layers.size());
  for (size_t l = 0; l < I.view.layers.size(); ++l) {
    const DecoderLayerView& L = I.view.layers[l];
    auto& P = I.lin[l];
    auto bind = [&](Proj p, const Weight* w, const std::vector<float>* bias) {
      if (!w || !*w) return;
      P[p].w = w;
      P[p].bias = bias;
      if (LoraTensor* t = adapter.find(w->name)) {
        P[p].lora = t;
        P[p].index = static_cast<int>(t - adapter.tensors.data());
        P[p].scale = adapter.scale_for(*t, 1.0f);
        used[P[p].index] = true;
      }
    };
    if (L.wqkv) bind(kPQKV, L.wqkv, nullptr);
    else bind(kPQ, L.wq, L.bq), bind(kPK, L.wk, L.bk), bind(kPV, L.wv, L.bv);
    bind(kPO, L.wo, nullptr);
    if (L.gate_up) bind(kPGateUp, L.gate_up, nullptr);
    else bind(kPGate, L.gate, nullptr), bind(kPUp, L.up, nullptr);
    bind(kPDown, L.down, nullptr);
  }
  for (size_t i = 0; i < used.size(); ++i)
    if (!used[i])
      fail("the adapter changes {}, which is not one of the projections slm trains", adapter.tensors[i].base);

  const size_t per_layer = I.layer_bytes();
  const size_t n_layer = I.view.layers.size();
  recompute_ = opts.force_recompute == 1 ||
               (opts.force_recompute != 0 && per_layer * n_layer > opts.keep_budget_bytes);
  I.acts.resize(recompute_ ? 1 : n_layer);
  for (LayerActs& A : I.acts) I.alloc_acts(A);
  if (recompute_) I.inputs.assign(n_layer, Vec(static_cast<size_t>(I.N * I.E)));
  const int64_t N = I.N;
  auto sz = [](Vec& v, int64_t n) { v.assign(static_cast<size_t>(n), 0.0f); };
  sz(I.x_final, N * I.E), sz(I.inv_final, N), sz(I.dx, N * I.E), sz(I.dh, N * I.E);
  sz(I.dtmp, N * std::max({I.E, I.qd + I.kd + I.vd, 2 * I.F}));
  sz(I.dq, N * std::max(I.qd, I.F)), sz(I.dk, N * I.kd), sz(I.dv, N * I.vd), sz(I.datt, N * I.ad);
  sz(I.dgu, N * std::max(3 * I.F, I.qd + I.kd + I.vd));
  for (int t = 0; t < ctx_.n_threads(); ++t) {
    I.solo_owned.push_back(std::make_unique<ThreadPool>(1));
    I.solo.push_back(I.solo_owned.back().get());
  }
  act_bytes_ = per_layer * I.acts.size() + (recompute_ ? n_layer * N * I.E * 4 : 0) +
               4 * static_cast<size_t>(I.dtmp.size() + I.dq.size() + I.dk.size() + I.dv.size() + I.datt.size() +
                                       I.dgu.size() + 3 * N * I.E) +
               static_cast<size_t>(ctx_.n_threads()) * 3 * I.T * I.T * 4;
}

LoraTrainer::~LoraTrainer() = default;

double LoraTrainer::forward_backward(const int32_t* tokens, LoraGrads* grads) {
  Impl& I = *impl_;
  ComputeContext& ctx = ctx_;
  const int64_t N = I.N, E = I.E, V = I.view.hp.n_vocab;
  for (int64_t i = 0; i < N; ++i)
    if (tokens[i] < 0 || tokens[i] >= V) fail("training token {} has id {} outside the vocabulary (0..{})", i, tokens[i], V - 1);
  if (grads) grads->zero_like(I.adapter);

  // Forward.
  const size_t n_layer = I.view.layers.size();
  Vec* x = &I.acts_for(0).x;
  get_rows(*I.view.token_embd, tokens, N, x->data());
  if (I.view.embd_scale != 1.0f)
    for (float& v : *x) v *= I.view.embd_scale;
  for (size_t l = 0; l < n_layer; ++l) {
    LayerActs& A = I.acts_for(static_cast<int64_t>(l));
    if (recompute_) I.inputs[l] = A.x;
    if (l + 1 == n_layer) {
      I.layer_fwd(ctx, static_cast<int64_t>(l), A, I.x_final.data());
    } else if (!recompute_) {
      I.layer_fwd(ctx, static_cast<int64_t>(l), A, I.acts[l + 1].x.data());
    } else {  // the next layer's input replaces this one's in the one set of activations
      I.layer_fwd(ctx, static_cast<int64_t>(l), A, I.dh.data());
      std::swap(A.x, I.dh);
    }
  }

  // Output head and loss, a chunk of rows at a time (logits of a 128k vocabulary for a whole
  // batch would not fit).
  Vec hf(static_cast<size_t>(N * E));
  I.norm_fwd(ctx, I.x_final.data(), *I.view.output_norm, I.inv_final.data(), hf.data(), E);
  const Weight& out_w = *I.view.output;
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, (int64_t{64} << 20) / (4 * V)));
  I.logits.resize(static_cast<size_t>(chunk * V));
  Vec dhf(grads ? static_cast<size_t>(N * E) : 0);
  const int64_t n_pred = I.B * (I.T - 1);
  const float cap = I.view.hp.final_softcap;
  double total = 0;
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t n = std::min(chunk, N - r0);
    float* lg = I.logits.data();
    matmul(ctx, out_w, hf.data() + r0 * E, n, lg);
    if (I.view.output_bias) add_bias(lg, I.view.output_bias->data(), n, V);
    std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
    ctx.pool().parallel_for(n, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) {
        float* row = lg + i * V;
        const int64_t t = r0 + i;
        const bool has_target = (t % I.T) != I.T - 1;
        if (cap > 0.0f)
          for (int64_t c = 0; c < V; ++c) row[c] = cap * std::tanh(row[c] / cap);
        if (!has_target) {
          std::fill(row, row + V, 0.0f);
          continue;
        }
        const int32_t target = tokens[t + 1];
        float mx = -INFINITY;
        for (int64_t c = 0; c < V; ++c) mx = std::max(mx, row[c]);
        double sum = 0;
        for (int64_t c = 0; c < V; ++c) sum += std::exp(static_cast<double>(row[c] - mx));
        const double lse = mx + std::log(sum);
        row_loss[i] = lse - row[target];
        // d(loss)/d(logit) = (softmax - onehot) / n_pred, through the soft-cap.
        const double inv_sum = 1.0 / sum;
        for (int64_t c = 0; c < V; ++c) {
          float g = static_cast<float>(std::exp(static_cast<double>(row[c] - mx)) * inv_sum);
          if (c == target) g -= 1.0f;
          g /= static_cast<float>(n_pred);
          if (cap > 0.0f) {
            const float th = row[c] / cap;
            g *= 1.0f - th * th;
          }
          row[c] = g;
        }
      }
    }, 1);
    for (double v : row_loss) total += v;
    if (grads) matmul_transposed(ctx, out_w, lg, n, dhf.data() + r0 * E, false);
  }
  const double loss = total / static_cast<double>(n_pred);
  if (!grads) return loss;

  // Backward.
  I.norm_bwd(ctx, I.x_final.data(), *I.view.output_norm, I.inv_final.data(), dhf.data(), I.dx.data(), E, false);
  for (size_t li = n_layer; li-- > 0;) {
    LayerActs& A = I.acts_for(static_cast<int64_t>(li));
    if (recompute_ && li + 1 < n_layer) {  // the last layer's are still there
      A.x = I.inputs[li];
      I.layer_fwd(ctx, static_cast<int64_t>(li), A, nullptr);
    }
    I.layer_bwd(ctx, static_cast<int64_t>(li), A, grads);
  }
  return loss;
}

}  // namespace slm::train
