// The scalar references for kern::AttendFn and kern::AttendCacheFn (kernels/kernels.h): attention of the query heads
// that share one KV head, keys stored transposed. The oracle the SIMD versions are tested
// against, and the kernel of SLM_FORCE_ISA=scalar.
#pragma once
#include <cstdint>

#include "kernels/kernels.h"

namespace slm::ref {

void attend_group(const float* q, int n_q, int64_t ldq, const float* kt, int64_t ldk,
                  const float* v, int64_t ldv, int64_t n, int d_k, int d_v, float scale,
                  float softcap, float* scratch, float* out, int64_t ldo);

// Dimension d of the key in lane `lane` of a head's key block in format f (the layouts of
// kern::AttendCacheFn), as a float.
float cache_key(kern::CacheFormat f, const uint8_t* block, int lane, int d);
// A value row of d_v elements in format f (ggml's block layouts for the quantized ones) as floats.
void cache_value_row(kern::CacheFormat f, const uint8_t* row, float* out, int d_v);

// kern::DecodeCacheKeysFn's and kern::DecodeCacheValuesFn's twins, through cache_key and
// cache_value_row.
void decode_cache_keys(kern::CacheFormat f, const uint8_t* kb, int64_t stride, int64_t n_blocks, int d_k, float* out);
void decode_cache_values(kern::CacheFormat f, const uint8_t* v, int64_t ldv, int64_t n, int d_v, float* out);

// kern::AttendCacheFn's twin: the cache's keys and values decoded to floats (both runs of a
// wrapped ring, in order), then attend_group once per token over the keys it sees. Allocates
// its float copies (it is the oracle, not a decoding path).
void attend_group_cache(const float* q, int n_q, int n_tok, int slide, int64_t ldq, const kern::CacheKeysValues& kv,
                        int d_k, int d_v, float scale, float softcap, float* scratch, float* out, int64_t ldo);

}  // namespace slm::ref
