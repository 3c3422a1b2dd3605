// Panel kernels for the K-quants Q4_K, Q5_K and Q6_K (256-value super-blocks with integer
// sub-block scales). Layout as in panels_x86.cpp: groups of kLanes dwords, lane r holding four
// quant bytes of row r. Within a super-block the sub-block sums are scaled in integers
// (VPMULLD by the six- or eight-bit scales) and converted to float once per super-block.
#include "kernels/x86/panel_driver.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

constexpr size_t kQ4_KBytes = 144, kQ5_KBytes = 176, kQ6_KBytes = 210;

inline const uint8_t* grp(const uint8_t* act, int64_t g, int t) { return act + (g * kTile + t) * 4; }

// Six-bit scale and min j of the 12 packed bytes (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K / Q5_K super-block in a panel (offsets in units of kLanes bytes):
//   0     qs: 32 groups; group 8c + g holds bytes 32c + 4g.. of the 128 nibble bytes, whose low
//         nibbles are values 64c + 4g.. (sub-block 2c), high nibbles 64c + 32 + 4g.. (2c + 1)
//   128   Q5_K only, qh: 8 groups, group g holds qh bytes 4g..; bit s is the fifth bit of
//         value 4g.. of sub-block s
//   +0    scales: 8 x kLanes bytes, sub-block s at s * kLanes
//   +8    mins: 4 x kLanes byte pairs (min 2c, min 2c + 1), for VPMADDWD with corr's pairs
//   +16   d, then dmin: kLanes fp16 each
template <bool kFive>
struct QK45 {
  static constexpr Corr kCorr = Corr::Q4_K;
  // Three accumulators per token: Q4_K runs faster in two passes of half a tile; Q5_K, whose
  // weight unpacking costs more, does not (measured, avx512vnni).
  static constexpr int kMaxT = kFive ? kTile : kTile / 2;
  static constexpr size_t kQh = 128, kSc = kFive ? 160 : 128, kMn = kSc + 8, kD = kSc + 16;
  static constexpr size_t kSb = (kD + 4) * kLanes;
  static constexpr size_t kSrc = kFive ? kQ5_KBytes : kQ4_KBytes;
  static constexpr int kBlockVals = 256, kCorrPerBlock = 16, kActBytes = 1;
  static constexpr size_t kBlockBytes = kSb;
  static size_t panel_bytes(int64_t n_in) { return static_cast<size_t>(n_in / 256) * kSb; }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    const int64_t nsb = n_in / 256;
    if (n_rows < kLanes) std::memset(p, 0, panel_bytes(n_in));  // full panels: every byte written
    for (int r = 0; r < n_rows; ++r) {
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const uint8_t* x = w + r * row_bytes + sb * kSrc;
        uint8_t* o = p + sb * kSb;
        const uint8_t* qs = x + (kFive ? 48 : 16);
        for (int g = 0; g < 32; ++g) std::memcpy(o + (g * kLanes + r) * 4, qs + 4 * g, 4);
        if (kFive)
          for (int g = 0; g < 8; ++g) std::memcpy(o + kQh * kLanes + (g * kLanes + r) * 4, x + 16 + 4 * g, 4);
        for (int j = 0; j < 8; ++j) {
          uint8_t sc, mn;
          scale_min_k4(j, x + 4, &sc, &mn);
          o[kSc * kLanes + j * kLanes + r] = sc;
          o[kMn * kLanes + (j / 2) * 2 * kLanes + 2 * r + j % 2] = mn;
        }
        std::memcpy(o + kD * kLanes + 2 * r, x, 2);
        std::memcpy(o + (kD + 2) * kLanes + 2 * r, x + 2, 2);
      }
    }
  }
  // Adds sub-block S's integer dot products, times its scales, to sacc.
  template <int T, int S>
  static inline void sub_block(const uint8_t* o, const uint8_t* a, VI* sacc) {
    constexpr int c = S / 2, hi = S % 2;
    const VI m4 = set8(0x0F), one = set8(1);
    // Few tokens: two independent chains of VPDPBUSD (odd and even groups), as in Q4_0.
    constexpr bool kSplit = T <= 2;
    VI acc_s[T], acc_2[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc_s[t] = acc_2[t] = vzero();
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const VI v = load(o + (8 * c + g) * 4 * kLanes);
      VI wv = hi ? and_(srl16(v, 4), m4) : and_(v, m4);
      if constexpr (kFive) {
        const VI h = load(o + kQh * kLanes + g * 4 * kLanes);
        wv = or_(wv, sll16(and_(srl16(h, S), one), 4));
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        if (kSplit && g % 2) acc_2[t] = dot4(acc_2[t], wv, bcast32(grp(a, 16 * c + 8 * hi + g, t)));
        else acc_s[t] = dot4(acc_s[t], wv, bcast32(grp(a, 16 * c + 8 * hi + g, t)));
      }
    }
    if constexpr (kSplit)
      for (int t = 0; t < T; ++t) acc_s[t] = add32(acc_s[t], acc_2[t]);
    const VI sc = load_u8x(o + kSc * kLanes + S * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sacc[t] = add32(sacc[t], mul32(acc_s[t], sc));
  }
  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    const int64_t nsb = n_in / 256;
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* o = p + sb * kSb;
      const uint8_t* a = act + sb * 64 * kTile * 4;
      prefetch_ahead<T>(o, kSb, l);
      VI sacc[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) sacc[t] = vzero();
      sub_block<T, 0>(o, a, sacc);
      sub_block<T, 1>(o, a, sacc);
      sub_block<T, 2>(o, a, sacc);
      sub_block<T, 3>(o, a, sacc);
      sub_block<T, 4>(o, a, sacc);
      sub_block<T, 5>(o, a, sacc);
      sub_block<T, 6>(o, a, sacc);
      sub_block<T, 7>(o, a, sacc);
      VI macc[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) macc[t] = vzero();
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const VI mn = load_u8w(o + kMn * kLanes + c * 2 * kLanes);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          macc[t] = dot2w16(macc[t], mn, bcast32(act + l.c_off + ((sb * 16 + c) * kTile + t) * 4));
      }
      const VF d = load_h(o + kD * kLanes), dmin = load_h(o + (kD + 2) * kLanes);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const VF da = bcastf_at(act + l.d_off + (sb * kTile + t) * 4);
        acc[t] = fmadd(cvt(sacc[t]), mul(d, da), acc[t]);
        acc[t] = fnmadd(cvt(macc[t]), mul(dmin, da), acc[t]);
      }
    }
  }
};

// Q6_K super-block in a panel (offsets in units of kLanes bytes):
//   0     ql: 32 groups; group 16n + 8h + g holds ql bytes 64n + 32h + 4g..
//   128   qh: 16 groups; group 8n + g holds qh bytes 32n + 4g..
//   192   scales: 16 x kLanes signed bytes
//   208   d: kLanes fp16 (then 2 x kLanes of padding to whole vectors)
// Value 128n + 32q + l (l < 32) is ql nibble (q & 1 picks the +32 half, q >= 2 the high
// nibble) with qh bits 2q..2q+1 above it, minus 32 (-32 * sum(a) per 16 values in corr).
struct Q6_K {
  static constexpr Corr kCorr = Corr::Q6_K;
  static constexpr int kMaxT = kTile;
  static constexpr size_t kD = 208, kSb = 212 * kLanes;
  static constexpr int kBlockVals = 256, kCorrPerBlock = 16, kActBytes = 1;
  static constexpr size_t kBlockBytes = kSb;
  static size_t panel_bytes(int64_t n_in) { return static_cast<size_t>(n_in / 256) * kSb; }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    const int64_t nsb = n_in / 256;
    if (n_rows < kLanes) std::memset(p, 0, panel_bytes(n_in));
    for (int64_t sb = 0; sb < nsb; ++sb) std::memset(p + sb * kSb + 210 * kLanes, 0, 2 * kLanes);
    for (int r = 0; r < n_rows; ++r) {
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const uint8_t* x = w + r * row_bytes + sb * kQ6_KBytes;
        uint8_t* o = p + sb * kSb;
        for (int g = 0; g < 32; ++g) std::memcpy(o + (g * kLanes + r) * 4, x + 4 * g, 4);
        for (int g = 0; g < 16; ++g) std::memcpy(o + 128 * kLanes + (g * kLanes + r) * 4, x + 128 + 4 * g, 4);
        for (int j = 0; j < 16; ++j) o[192 * kLanes + j * kLanes + r] = x[192 + j];
        std::memcpy(o + kD * kLanes + 2 * r, x + 208, 2);
      }
    }
  }
  // Adds 16-value sub-block SUB's integer dot products (offset by corr), times its scales.
  template <int T, int SUB>
  static inline void sub_block(const uint8_t* o, const uint8_t* a, const uint8_t* corr, VI* sacc) {
    constexpr int n = SUB / 8, q = (SUB / 2) % 4, h = SUB % 2;
    const VI m4 = set8(0x0F), m30 = set8(0x30);
    VI acc_s[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc_s[t] = bcast32(corr + (SUB * kTile + t) * 4);
#pragma GCC unroll 4
    for (int g = 4 * h; g < 4 * h + 4; ++g) {
      const VI v = load(o + (16 * n + 8 * (q & 1) + g) * 4 * kLanes);
      const VI hb = load(o + 128 * kLanes + (8 * n + g) * 4 * kLanes);
      const VI lo = q < 2 ? and_(v, m4) : and_(srl16(v, 4), m4);
      const VI up = q == 0 ? sll16(hb, 4) : q == 1 ? sll16(hb, 2) : q == 2 ? hb : srl16(hb, 2);
      const VI wv = or_(lo, and_(up, m30));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) acc_s[t] = dot4(acc_s[t], wv, bcast32(grp(a, 32 * n + 8 * q + g, t)));
    }
    const VI sc = load_i8x(o + 192 * kLanes + SUB * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sacc[t] = add32(sacc[t], mul32(acc_s[t], sc));
  }
  template <int T, int... SUB>
  static inline void sub_blocks(const uint8_t* o, const uint8_t* a, const uint8_t* corr, VI* sacc,
                                Seq<SUB...>) {
    (sub_block<T, SUB>(o, a, corr, sacc), ...);
  }
  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    scaled_super_blocks<Q6_K, T>(p, n_in, act, l, acc);
  }
};

}  // namespace

void register_panels_k(Kernels& k) {
  k.panel[12] = panel_kernels<QK45<false>>();  // Q4_K
  k.panel[13] = panel_kernels<QK45<true>>();   // Q5_K
  k.panel[14] = panel_kernels<Q6_K>();         // Q6_K
}

}  // namespace slm::kern::SLM_ISA_NS
