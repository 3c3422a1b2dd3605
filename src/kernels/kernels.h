// The table of SIMD kernels one instruction-set level provides, and the dispatcher that picks
// the table of the active level (kernels/isa.h) once.
//
// This header is included by the per-ISA translation units (src/kernels/x86/), which are
// compiled with -mavx2 / -mavx512* flags. It must therefore stay free of inline functions and
// of slm headers that have them: the linker keeps one copy of each inline function, and a copy
// compiled with AVX-512 flags could end up called on a CPU without AVX-512. For the same reason
// the structs below are plain aggregates (no member initializers, hence no constructor code):
// value-initialize them with {}.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/isa.h"

namespace slm::kern {

constexpr int kTypeSlots = 40;  // ggml type ids are below this (core/dtype.h, kDTypeIdLimit)

using QuantizeFn = void (*)(const float* x, void* dst, int64_t n);

// Matrix products for a quantized weight type, on weights repacked into panels. A panel holds
// `rows` consecutive rows (one per int32 lane of the vector registers) interleaved four bytes
// at a time, so one vector load feeds a VPDPBUSD for every row at once while four activation
// bytes are broadcast. Activations are quantized exactly like the scalar path's
// (TypeTraits::from_float_act) into tiles of `tile_tokens` tokens, interleaved the same way,
// with each block's scale as a float and the integer corrections the weight type needs (for
// offsets such as Q4_0's -8) precomputed once instead of once per panel.
// F16 has panel kernels too on avx512vnni: int16 panels and activations on VPDPWSSD
// (kernels/x86/panels_f16_x86.cpp). A model's repacked copies replace its mapped weights
// (ops.cpp): they take about the same memory (F16: +6%, the K-quants and IQ4_XS: +2-3%).
struct PanelKernels {
  int rows;         // rows per panel; 0: this type has no panel kernels
  int tile_tokens;  // tokens per activation tile
  size_t (*panel_bytes)(int64_t n_in);
  // Packs n_rows <= rows rows of a row-major matrix (row_bytes apart) into one panel; missing
  // rows are zero.
  void (*pack)(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in,
               uint8_t* panel);
  size_t (*tile_bytes)(int64_t n_in);
  // Quantizes n_tok <= tile_tokens rows of x (n_in floats each) into one tile.
  void (*prepare)(const float* x, int n_tok, int64_t n_in, uint8_t* tile);
  // y[t * ldy + o] for the rows o of panels [p0, p1) that are below n_out, and every token
  // t < n_tok of the activation tiles (which lie tile_bytes apart).
  void (*gemm)(const uint8_t* panels, int64_t p0, int64_t p1, int64_t n_out, int64_t n_in,
               const uint8_t* tiles, int64_t n_tok, float* y, int64_t ldy);
  // Optional (long_gemm null: none): a second product for batches of at least long_min_tokens
  // tokens on the same panels, with activation tiles of its own layout (long_tile_tokens
  // tokens each): the amx level's tile-unit products (kernels/x86_amx/). Same contract as
  // tile_bytes / prepare / gemm above.
  int long_min_tokens;
  int long_tile_tokens;
  size_t (*long_tile_bytes)(int64_t n_in);
  void (*long_prepare)(const float* x, int n_tok, int64_t n_in, uint8_t* tile);
  void (*long_gemm)(const uint8_t* panels, int64_t p0, int64_t p1, int64_t n_out, int64_t n_in,
                    const uint8_t* tiles, int64_t n_tok, float* y, int64_t ldy);
};

// Matrix products for a float weight type (F32, F16, BF16) on the row-major weights as mapped.
// n_in must be a multiple of 32.
enum FloatAct : int {
  kActF32 = 0,   // activations used as they are
  kActF16R = 1,  // rounded through fp16 and kept as f32 (what llama.cpp multiplies F16 with)
  kActBF16 = 2,  // converted to bf16 for VDPBF16PS (multi-token products only)
  kActBF16R = 3, // rounded through bf16 and kept as f32 (llama.cpp's for BF16 weights)
};
struct FloatKernels {
  int gemm_act;  // FloatAct of the multi-token products
  int gemv_act;  // FloatAct of the one-token products (never kActBF16)
  // x (n floats) -> dst in the FloatAct's format.
  void (*to_f16r)(const float* x, float* dst, int64_t n);
  void (*to_bf16r)(const float* x, float* dst, int64_t n);
  void (*to_bf16)(const float* x, uint16_t* dst, int64_t n);
  size_t (*scratch_bytes)(int64_t n_in);  // per thread, for gemm
  // Rows [r0, r1) of W times n_tok activation rows (n_in values each, contiguous).
  void (*gemm)(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in,
               const void* act, int64_t n_tok, float* y, int64_t ldy, void* scratch);
  // Rows [r0, r1) of W times one f32 activation row: y[r] for r in [r0, r1).
  void (*gemv)(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in,
               const float* x, float* y);
  // Optional (null: none): the product of long_min_tokens tokens or more on the amx level's
  // tile unit (kernels/x86_amx/), with gemm's contract and activations.
  int long_min_tokens;
  void (*long_gemm)(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in,
                    const void* act, int64_t n_tok, float* y, int64_t ldy, void* scratch);
};

// Products of up to kRowMaxTokens tokens straight from a matrix's row-major blocks as stored in
// the file (kernels/x86/rows_x86.cpp): how a matrix is used before it is repacked into panels,
// so that the first tokens need no copy of the model (ops.cpp decides when to repack).
// Activations are prepared once per token into act_bytes(n_in) bytes of the kernel's own
// layout. n_in must be a multiple of block_vals.
constexpr int kRowMaxTokens = 8;
struct RowKernels {
  int block_vals;  // 0: this type has no row kernels
  size_t (*act_bytes)(int64_t n_in);
  void (*prepare)(const float* x, int64_t n_in, uint8_t* act);
  // y[t * ldy + r] for rows [r0, r1) and tokens t < n_tok, the activations act_stride apart.
  void (*gemv)(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in,
               const uint8_t* act, size_t act_stride, int n_tok, float* y, int64_t ldy);
};

// Attention of the n_q query heads that share one KV head, over n visible keys. Query i is
// q + i * ldq (d_k floats); the keys are stored transposed, key j's value of dimension d at
// kt[d * ldk + j], so that one vector load holds a dimension of kLanes consecutive keys; value
// row j is v + j * ldv (d_v floats). out + i * ldo receives softmax(s) . V where
// s_j = scale * (q_i . k_j), then cap * tanh(s_j / cap) when softcap > 0 (Gemma 2).
// scratch: at least n_q * (n + 32) floats. ref::attend_group (kernels/ref/attention.h) is
// the scalar twin.
using AttendFn = void (*)(const float* q, int n_q, int64_t ldq, const float* kt, int64_t ldk,
                          const float* v, int64_t ldv, int64_t n, int d_k, int d_v, float scale,
                          float softcap, float* scratch, float* out, int64_t ldo);

// The same over a KV cache as stored (runtime/kv_cache.h), read without a float copy. Keys
// are in blocks of kKeyBlock positions so that one vector load holds a dimension of
// consecutive keys; values are kept head by head, one row per position. Each has a format:
//  - F16 keys: each block dimension-major, [d][kKeyBlock] fp16.
//  - Q8_0 keys (head dimensions whole blocks of 32): for every 32 dimensions of the head, a
//    group of kQ8KeyGroupBytes: the kKeyBlock positions' fp16 scales, then dimension by
//    dimension their kKeyBlock int8 values (key j's dimension d is its group's scale times its
//    int8: a q8_0 block of the key's 32 dimensions, transposed).
//  - F32 keys: as F16, in floats. BF16 keys: as F16, in bf16.
//  - Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL keys (llama.cpp's other -ctk types; head dimensions whole
//    blocks of 32): for every 32 dimensions, a group of kKeyBlock times the type's block bytes
//    (cache_key_group_bytes): the kKeyBlock positions' fp16 scales d; for Q4_1 and Q5_1 then
//    their fp16 minimums m; for Q5_0 and Q5_1 then per dimension two bytes of fifth bits (bit l:
//    lane l's); then per dimension 8 bytes of 4-bit codes, byte b holding lane b in its low
//    and lane b + 8 in its high nibble. Key j's dimension d is its code q (with the fifth bit
//    16 q5 + q4) as the type's block decodes it: d (q - 8), d q + m, d (q - 16), d q + m,
//    d kIQ4NL[q]: the key's block of 32 dimensions, transposed.
//  - Value rows: d_v fp16, floats or bf16, or d_v / 32 blocks of the type in ggml's layout
//    (q8_0 34 bytes, q4_0 18, q4_1 20, q5_0 22, q5_1 24, iq4_nl 18).
// The visible keys start at lane lane0 of block kb (lane0 < kKeyBlock: the first visible
// position inside its block): key j (counted from that block's start) lies in block
// j / kKeyBlock, kblock_stride bytes after kb per block, lane j % kKeyBlock; its value row is
// v + (j - lane0) * ldv bytes. A sliding-window ring that has wrapped holds them in two runs:
// the first n_first keys there, the rest from lane 0 of block kb_wrap and value row v_wrap on
// (lane0 + n_first is then a multiple of kKeyBlock); n_first == n: one run. Whole key blocks
// are read, so the block holding a run's last key must be allocated.
// The n_q query rows may be n_tok consecutive tokens of a prompt, n_q / n_tok heads each
// (token-major, ldq apart throughout), and the keys read once serve them all: token r sees
// keys r * slide .. n - n_tok + r (the causal mask; slide 1 where a sliding window moves its
// first key along with it, 0 otherwise). scratch: at least n_q * (n + 32) floats. The SIMD
// versions need head dimensions that are whole vectors (multiples of 16).
// ref::attend_group_cache is the scalar twin.
constexpr int kKeyBlock = 16;
constexpr int kQ8KeyGroupBytes = 2 * kKeyBlock + 32 * kKeyBlock;
enum class CacheFormat : uint8_t { F16, Q8_0, F32, BF16, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL };
constexpr int kCacheFormats = 9;
// Bytes of one block of a 32-dimension group of kKeyBlock keys of a quantized format (its
// block bytes times kKeyBlock); 0 for the float formats.
constexpr int cache_key_group_bytes(CacheFormat f) {
  switch (f) {
    case CacheFormat::Q8_0: return kQ8KeyGroupBytes;
    case CacheFormat::Q4_0: case CacheFormat::IQ4_NL: return 18 * kKeyBlock;
    case CacheFormat::Q4_1: return 20 * kKeyBlock;
    case CacheFormat::Q5_0: return 22 * kKeyBlock;
    case CacheFormat::Q5_1: return 24 * kKeyBlock;
    default: return 0;
  }
}
struct CacheKeysValues {
  CacheFormat keys = CacheFormat::F16, values = CacheFormat::F16;
  const uint8_t* kb = nullptr;
  int64_t kblock_stride = 0;  // bytes
  int lane0 = 0;
  const uint8_t* v = nullptr;
  int64_t ldv = 0;      // bytes
  int64_t n = 0;        // visible keys
  int64_t n_first = 0;  // of which in the first run
  const uint8_t* kb_wrap = nullptr;
  const uint8_t* v_wrap = nullptr;
};
using AttendCacheFn = void (*)(const float* q, int n_q, int n_tok, int slide, int64_t ldq, const CacheKeysValues& kv,
                               int d_k, int d_v, float scale, float softcap, float* scratch, float* out,
                               int64_t ldo);
// A cache's keys or values decoded to the F32 format, the floats the attention kernel computes
// when it reads format f: n_blocks key blocks (kb, stride bytes apart) into F32 blocks of
// d_k * kKeyBlock floats one after the other at out; n value rows (v, ldv bytes apart) into rows
// of d_v floats. A prompt's attention over a quantized cache decodes each head's visible keys
// and values once per layer this way, where reading them as stored would decode them once per
// call of a few query rows. d_k and d_v multiples of 16. ref::decode_cache_keys and
// ref::decode_cache_values (kernels/ref/attention.h) are the scalar twins.
using DecodeCacheKeysFn = void (*)(CacheFormat f, const uint8_t* kb, int64_t stride, int64_t n_blocks, int d_k,
                                   float* out);
using DecodeCacheValuesFn = void (*)(CacheFormat f, const uint8_t* v, int64_t ldv, int64_t n, int d_v, float* out);

// F32 matrix products on packed panels, driven by ops/gemm.cpp (which does the cache blocking,
// the threads and the transposes). pack lays out an x-extent of nx (<= any) by k values of a
// matrix, element (x, p) at src[x * sx + p * sk], as ceil(nx / width) panels of k * width
// floats, element (x, p) of a panel at p * width + x % width, zero past nx: with width = mr it
// packs a block of op(A) (x: rows), with width = nr a block of op(B) (x: columns), any
// transpose being only a choice of strides. kernel then computes one mr x nr tile of C from
// an A panel and a B panel of k values each: C[i][j] = alpha * sum_p a[p*mr+i] * b[p*nr+j]
// + beta * C[i][j] for i < m, j < n (the rest of the tile is not touched); beta == 0 does not
// read C (it may hold NaN). The sums run over p in order in float (FMA on x86).
// ref::sgemm_kernels() (kernels/ref/sgemm.h) is the scalar twin.
using SgemmPackFn = void (*)(const float* src, int64_t sx, int64_t sk, int64_t nx, int64_t k,
                             float* dst);
struct SgemmKernels {
  int mr, nr;  // tile rows and columns; 0: none (the scalar twin)
  SgemmPackFn pack_a;  // width mr
  SgemmPackFn pack_b;  // width nr
  void (*kernel)(int64_t k, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
                 float alpha, float beta);
};

struct Kernels {
  Isa isa;
  AttendFn attend;           // null: the scalar twin
  AttendCacheFn attend_cache;  // null: the scalar twin
  DecodeCacheKeysFn decode_cache_keys;      // null: the scalar twin
  DecodeCacheValuesFn decode_cache_values;  // null: the scalar twin
  // out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + e^-gate[i]) * up[i] (SwiGLU), with a
  // vectorized exp; null: the scalar loop in models/blocks.cpp. out may equal gate.
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);
  // x[i] = cap * tanh(x[i] / cap) in place (Gemma 2's soft-capped scores and logits), with a
  // vectorized tanh within ~2 ulp of tanhf; null: the scalar loop of models/blocks.cpp.
  void (*softcap)(float* x, int64_t n, float cap);
  // out[i] = the fp16 value x[i] as f32 (F16C / AVX-512 conversion; exact, like the scalar
  // fp16_to_fp32 in core/fp16.h); null: that scalar loop. Decodes F16 KV cache rows.
  void (*fp16_to_f32)(const uint16_t* x, float* out, int64_t n);
  // out[i] = x[i] rounded to fp16, to nearest even (exactly the scalar fp32_to_fp16 but for
  // NaN payloads); null: that scalar loop. Encodes F16 KV cache rows.
  void (*f32_to_fp16)(const float* x, uint16_t* out, int64_t n);
  QuantizeFn quantize_q8_0;  // twin of ref::from_float_q8_0_x86
  QuantizeFn quantize_q8_K;  // twin of ref::from_float_q8_K
  PanelKernels panel[kTypeSlots];      // by ggml type id
  RowKernels row[kTypeSlots];          // by ggml type id
  FloatKernels flt[kTypeSlots];        // by ggml type id; gemv == nullptr: none
  SgemmKernels sgemm;                  // mr == 0: the scalar twin
};

// The amx level's table (for_isa(Isa::Amx)), or, with emulated, the same table with the tile
// instructions replaced by a software model of them (the same layouts, loops and scaling):
// that is how the tests check the AMX code on CPUs without AMX. nullptr where the CPU cannot
// run the choice (emulated needs avx512vnni; the real one needs isa_supported(Isa::Amx)).
const Kernels* amx_kernels(bool emulated);

// The table of the active level (for Scalar: no kernels at all).
const Kernels& active();
// The table of a level, or nullptr if this CPU or build lacks it.
const Kernels* for_isa(Isa isa);

}  // namespace slm::kern
