// Building blocks shared by the architectures: embedding lookup, attention against the KV
// cache, gated feed-forward networks and the output head. Each architecture's forward pass
// is a short composition of these.
#pragma once
#include <cstdint>
#include <vector>

#include "models/model.h"

namespace slm::blocks {

// Scratch buffer slots in ComputeContext::buffer().
enum Slot : int {
  kResidual = 0, kNormed, kQ, kK, kV, kQKV, kAttnOut, kProj, kGate, kUp, kFFOut, kOutRows,
  kKeysF32, kValuesF32, kLora,
  kSlotCount
};

// y = W x for a projection, plus the corrections of the LoRA adapters the context applies
// (ComputeContext::lora, models/lora.h) to W.
void linear(ComputeContext& ctx, const Weight& w, const float* x, int64_t n_tokens, float* y);

// x[t] = embedding row of batch token t.
void embed(const Weight& token_embd, const Batch& b, float* x);

struct AttentionSpec {
  int64_t n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
  float scale = 1.0f;    // applied to q.k
  float softcap = 0.0f;  // 0: off; else s = tanh(s / cap) * cap
  RopeParams rope;
};

// The activations of one forward pass, [T][dim] each, from the context's reusable buffers.
struct LayerBuffers {
  float* x;     // residual stream [T][n_embd]
  float* h;     // normalized input of a block [T][n_embd]
  float* q;     // [T][n_head * head_dim_k]
  float* k;     // [T][n_head_kv * head_dim_k]
  float* v;     // [T][n_head_kv * head_dim_v]
  float* attn;  // attention output [T][n_head * head_dim_v]
  float* proj;  // block output [T][n_embd]
};
LayerBuffers layer_buffers(ComputeContext& ctx, const HParams& hp, int64_t n_tokens);

// Head counts and sizes, RoPE and soft-capping from the hyperparameters (scale 1/sqrt(hdk)
// unless hp.attn_scale is set).
AttentionSpec attention_spec(const HParams& hp);

// q: [T][n_head*hdk], k: [T][n_head_kv*hdk], v: [T][n_head_kv*hdv] (projections, biases
// added). Applies RoPE to q and k, stores k and v in the cache for `layer`, then writes
// softmax(q.K^T) V for every head into out [T][n_head*hdv].
void attend(ComputeContext& ctx, const Batch& b, KVCache& cache, int layer,
            const AttentionSpec& spec, float* q, float* k, const float* v, float* out);

// Qwen3 / Gemma 3: each head of q [T][n_head*hdk] and k [T][n_head_kv*hdk] RMS-normalized and
// scaled by q_norm / k_norm (hdk weights each), in place, before attend() applies RoPE.
void head_norms(ComputeContext& ctx, const HParams& hp, int64_t n_tokens, const std::vector<float>& q_norm,
                const std::vector<float>& k_norm, float* q, float* k);

// Split fused rows [T][q_dim + k_dim + v_dim] into three [T][dim] arrays.
void split_qkv(const float* qkv, int64_t n_tokens, int64_t q_dim, int64_t k_dim, int64_t v_dim,
               float* q, float* k, float* v);

enum class Activation { SiLU, GeluTanh, GeluTanhFp16Table };
float activate(Activation act, float x);
// out = down(act(gate(h)) * up(h)), h [T][n_embd].
void ffn_glu(ComputeContext& ctx, const Weight& gate, const Weight& up, const Weight& down,
             Activation act, const float* h, int64_t n_tokens, float* out);
// Same with gate and up fused in one matrix whose rows are [gate (n_ff) | up (n_ff)].
void ffn_glu_fused(ComputeContext& ctx, const Weight& gate_up, const Weight& down,
                   Activation act, const float* h, int64_t n_tokens, float* out);

// x += y over n values.
void add_inplace(float* x, const float* y, int64_t n);

// Final norm and output projection for the tokens that asked for logits.
void output_head(ComputeContext& ctx, const Batch& b, const float* x, int64_t n_embd,
                 const std::vector<float>& norm, float eps, const Weight& output,
                 float final_softcap, float* logits);

// Checks a batch against the cache before any work: ids in the vocabulary, positions in
// the context, sequences known. Throws slm::Error naming the offending entry.
void validate_batch(const Batch& b, const KVCache& cache, int64_t n_vocab);

}  // namespace slm::blocks
