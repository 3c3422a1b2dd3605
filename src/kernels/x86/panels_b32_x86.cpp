// Panel kernels for the other 32-value block types: Q4_1, Q5_0, Q5_1 and IQ4_NL. They are in
// the files people have even when they never asked for them: llama-quantize falls back to
// Q5_0 / Q5_1 / IQ4_NL for the tensors of a K-quant mix whose rows are not whole 256-value
// super-blocks (Qwen2.5 0.5B's 896-wide rows: 132 of its Q4_K_M file's 169 matrices are Q5_0).
//
// Layout as in panels_x86.cpp: lane r of group g holds four quant bytes of row r. Per block:
// 4 groups of nibble bytes (group j: bytes 4j..4j+3, low nibbles values 4j.., high nibbles
// values 16+4j..), for the five-bit types one group of high bits, then the kLanes fp16 scales
// and, for the types with an offset (value = q * d + m), the kLanes fp16 offsets.
#include "kernels/x86/panel_driver.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

inline const uint8_t* grp(const uint8_t* act, int64_t g, int t) { return act + (g * kTile + t) * 4; }

enum class B32Fmt { Q4_1, Q5_0, Q5_1, IQ4_NL };

// The five-bit types' high bits are repacked so that each group's are one shift away: byte k
// of the high-bit dword holds, at bit 2j + h, the fifth bit of value 16h + 4j + k (the value
// that nibble k of group j's low (h = 0) or high (h = 1) half stands for).
// Bits 0, 4, 8, 12 of t moved to bits 0, 2, 4, 6 (t has no others).
inline uint32_t spread_even(uint32_t t) { return (t & 1u) | ((t >> 2) & 4u) | ((t >> 4) & 16u) | ((t >> 6) & 64u); }

template <B32Fmt F>
struct B32 {
  static constexpr bool kFive = F == B32Fmt::Q5_0 || F == B32Fmt::Q5_1;
  static constexpr bool kMin = F == B32Fmt::Q4_1 || F == B32Fmt::Q5_1;
  static constexpr bool kLut = F == B32Fmt::IQ4_NL;
  // Without VNNI, IQ4_NL's levels go in signed (dot4s, no correction): dot4w on the unsigned
  // bytes costs twice the instructions (avx2, 512 tokens: 50 -> 113 GOP/s on one Zen 4 core).
  static constexpr bool kSigned = kLut && !kVnni;
  // Weights are fed unsigned: Q4_1 / Q5_1 as q (their m times the activations' s in corr),
  // Q5_0 as q with -16 * sum(a), IQ4_NL as level + 128 with -128 * sum(a).
  static constexpr Corr kCorr = kMin ? Corr::Q8_1 : kFive ? Corr::Q5_0 : Corr::Q8_0;
  // The file's block: d, [m], [qh], qs.
  static constexpr size_t kSrc = F == B32Fmt::Q4_1 ? 20 : F == B32Fmt::Q5_0 ? 22 : F == B32Fmt::Q5_1 ? 24 : 18;
  static constexpr size_t kSrcQh = kMin ? 4 : 2, kSrcQs = 2 + (kMin ? 2 : 0) + (kFive ? 4 : 0);
  // The panel's block, in units of kLanes bytes: qs, [qh], d, [m].
  static constexpr size_t kQh = 16, kD = kFive ? 20 : 16, kM = kD + 2;
  static constexpr size_t kBlk = (kD + 2 + (kMin ? 2 : 0)) * kLanes;
  static constexpr int kMaxT = kTile;
  static constexpr int kBlockVals = 32, kCorrPerBlock = 1, kActBytes = 1;
  static constexpr size_t kBlockBytes = kBlk;

  static size_t panel_bytes(int64_t n_in) { return round_up(static_cast<size_t>(n_in / 32) * kBlk, 64); }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    const int64_t nb = n_in / 32;
    const size_t bytes = panel_bytes(n_in), written = static_cast<size_t>(nb) * kBlk;
    if (n_rows < kLanes) std::memset(p, 0, bytes);
    else std::memset(p + written, 0, bytes - written);
    for (int r = 0; r < n_rows; ++r) {
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = w + r * row_bytes + b * kSrc;
        uint8_t* o = p + b * kBlk;
        std::memcpy(o + kD * kLanes + 2 * r, blk, 2);
        if constexpr (kMin) std::memcpy(o + kM * kLanes + 2 * r, blk + 2, 2);
        for (int j = 0; j < 4; ++j) std::memcpy(o + (j * kLanes + r) * 4, blk + kSrcQs + 4 * j, 4);
        if constexpr (kFive) {
          uint32_t qh;
          std::memcpy(&qh, blk + kSrcQh, 4);
          uint8_t hb[4];
          for (int k = 0; k < 4; ++k) {
            // Value 16h + 4j + k's bit, for j < 4, sits at bit 4j of x (h = 0) or of x >> 16.
            const uint32_t x = (qh >> k) & 0x11111111u;
            hb[k] = static_cast<uint8_t>(spread_even(x & 0xFFFF) | (spread_even(x >> 16) << 1));
          }
          std::memcpy(o + kQh * kLanes + 4 * r, hb, 4);
        }
      }
    }
  }

  // The unsigned weights of group j's low (H = 0) or high (H = 1) nibbles.
  template <int J, int H>
  static inline VI weights(VI v, VI hbits) {
    const VI m4 = set8(0x0F);
    const VI nib = H ? and_(srl16(v, 4), m4) : and_(v, m4);
    if constexpr (kSigned) return lut16(table16(kIQ4Levels), nib);
    else if constexpr (kLut) return lut16(table16(kIQ4LevelsU), nib);
    else if constexpr (kFive) return or_(nib, and_(move_bit<2 * J + H, 4>(hbits), set8(0x10)));
    else return nib;
  }
  // q < 32 for the plain types: VPMADDUBSW's pairs cannot saturate (dot4); IQ4_NL's levels + 128
  // can (dot4w).
  static inline VI dot(VI acc, VI u, VI a) { return kLut ? dot4w(acc, u, a) : dot4(acc, u, a); }

  template <int T, int J>
  static inline void group(const uint8_t* q, const uint8_t* a, VI hbits, VI* s, VI* s2) {
    constexpr bool kSplit = T <= 2;  // few tokens: two chains of VPDPBUSD per block, as in Q4_0
    const VI v = load(q + J * 4 * kLanes);
    const VI lo = weights<J, 0>(v, hbits), hi = weights<J, 1>(v, hbits);
    if constexpr (kSigned) {
      const VI lo_abs = abs8(lo), hi_abs = abs8(hi);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) s[t] = dot4s(s[t], lo_abs, lo, bcast32(grp(a, J, t)));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        if constexpr (kSplit) s2[t] = dot4s(s2[t], hi_abs, hi, bcast32(grp(a, 4 + J, t)));
        else s[t] = dot4s(s[t], hi_abs, hi, bcast32(grp(a, 4 + J, t)));
      }
      return;
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) s[t] = dot(s[t], lo, bcast32(grp(a, J, t)));
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if constexpr (kSplit) s2[t] = dot(s2[t], hi, bcast32(grp(a, 4 + J, t)));
      else s[t] = dot(s[t], hi, bcast32(grp(a, 4 + J, t)));
    }
  }

  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    const int64_t nb = n_in / 32;
    for (int64_t b = 0; b < nb; ++b) {
      VI s[T], s2[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        s[t] = kMin || kSigned ? vzero() : bcast32(act + l.c_off + (b * kTile + t) * 4);
        s2[t] = vzero();
      }
      const uint8_t* q = p + b * kBlk;
      const uint8_t* a = act + b * 8 * kTile * 4;
      prefetch_ahead<T>(q, kBlk, l);
      const VI hbits = kFive ? load(q + kQh * kLanes) : vzero();
      group<T, 0>(q, a, hbits, s, s2);
      group<T, 1>(q, a, hbits, s, s2);
      group<T, 2>(q, a, hbits, s, s2);
      group<T, 3>(q, a, hbits, s, s2);
      if constexpr (T <= 2)
        for (int t = 0; t < T; ++t) s[t] = add32(s[t], s2[t]);
      const VF dw = load_h(q + kD * kLanes);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = fmadd(cvt(s[t]), mul(dw, bcastf_at(act + l.d_off + (b * kTile + t) * 4)), acc[t]);
      if constexpr (kMin) {
        const VF mw = load_h(q + kM * kLanes);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) acc[t] = fmadd(mw, bcastf_at(act + l.c_off + (b * kTile + t) * 4), acc[t]);
      }
    }
  }
};

}  // namespace

void register_panels_b32(Kernels& k) {
  k.panel[3] = panel_kernels<B32<B32Fmt::Q4_1>>();     // Q4_1
  k.panel[6] = panel_kernels<B32<B32Fmt::Q5_0>>();     // Q5_0
  k.panel[7] = panel_kernels<B32<B32Fmt::Q5_1>>();     // Q5_1
  k.panel[20] = panel_kernels<B32<B32Fmt::IQ4_NL>>();  // IQ4_NL
}

}  // namespace slm::kern::SLM_ISA_NS
