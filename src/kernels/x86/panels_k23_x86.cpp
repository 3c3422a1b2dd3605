// Panel kernels for the low-bit K-quants Q2_K and Q3_K (the bulk of Q2_K and Q3_K_S/M/L files):
// 256-value super-blocks of sixteen 16-value sub-blocks, two-bit quants (Q3_K: plus a high bit
// from a separate mask). Layout as in panels_x86.cpp: lane r of group g holds four quant bytes
// of row r. The quant bytes of both types cover 128 values per 32 bytes: byte l of half n
// holds, at bits 2j..2j+1, value 128n + 32j + l (l < 32), which is in sub-block 8n + 2j + l / 16.
// So a group (four bytes) serves four sub-blocks, one per shift; each sub-block's integer sum
// is scaled by its integer scale (VPMULLD) and the super-block's total converted once.
#include "kernels/x86/panel_driver.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

constexpr size_t kQ2_KBytes = 84, kQ3_KBytes = 110;

inline const uint8_t* grp(const uint8_t* act, int64_t g, int t) { return act + (g * kTile + t) * 4; }

// Q3_K super-block in a panel (offsets in units of kLanes bytes):
//   0     qs: 16 groups, group g holds qs bytes 4g.. (half g / 8)
//   64    hmask: 8 groups, group g holds hmask bytes 4g..; bit 4n + j of byte l is the high
//         bit of value 128n + 32j + l
//   96    scales: 16 x kLanes signed bytes (the six-bit scale - 32), sub-block s at s * kLanes
//   112   d: kLanes fp16, then 2 x kLanes of padding
// A value is (two bits | high bit << 2) - 4: fed as the unsigned three bits, with -4 * sum(a)
// per sub-block in corr.
struct Q3_K {
  static constexpr Corr kCorr = Corr::Q3_K;
  static constexpr int kMaxT = kTile;
  static constexpr size_t kHm = 64, kSc = 96, kD = 112;
  static constexpr size_t kSb = 116 * kLanes;
  static constexpr int kBlockVals = 256, kCorrPerBlock = 16, kActBytes = 1;
  static constexpr size_t kBlockBytes = kSb;
  static size_t panel_bytes(int64_t n_in) { return static_cast<size_t>(n_in / 256) * kSb; }
  // Scale j (0..15) of the 12 packed bytes: low four bits from bytes 0..7 (j >= 8: their high
  // nibbles), high two bits from bytes 8..11.
  static int scale(const uint8_t* s, int j) {
    const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
  }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    const int64_t nsb = n_in / 256;
    if (n_rows < kLanes) std::memset(p, 0, panel_bytes(n_in));
    for (int64_t sb = 0; sb < nsb; ++sb) std::memset(p + sb * kSb + (kD + 2) * kLanes, 0, 2 * kLanes);
    for (int r = 0; r < n_rows; ++r) {
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const uint8_t* x = w + r * row_bytes + sb * kQ3_KBytes;  // hmask[32] qs[64] scales[12] d
        uint8_t* o = p + sb * kSb;
        for (int g = 0; g < 16; ++g) std::memcpy(o + (g * kLanes + r) * 4, x + 32 + 4 * g, 4);
        for (int g = 0; g < 8; ++g) std::memcpy(o + kHm * kLanes + (g * kLanes + r) * 4, x + 4 * g, 4);
        for (int j = 0; j < 16; ++j)
          o[kSc * kLanes + j * kLanes + r] = static_cast<uint8_t>(static_cast<int8_t>(scale(x + 96, j)));
        std::memcpy(o + kD * kLanes + 2 * r, x + 108, 2);
      }
    }
  }
  template <int T, int S>
  static inline void sub_block(const uint8_t* o, const uint8_t* a, const uint8_t* corr, VI* sacc) {
    constexpr int n = S / 8, j = (S / 2) % 4, h = S % 2;
    const VI m3 = set8(0x03), b2 = set8(0x04);
    VI acc_s[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc_s[t] = bcast32(corr + (S * kTile + t) * 4);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const VI v = load(o + (8 * n + 4 * h + i) * 4 * kLanes);
      const VI hm = load(o + kHm * kLanes + (4 * h + i) * 4 * kLanes);
      const VI wv = or_(and_(srl16(v, 2 * j), m3), and_(move_bit<4 * n + j, 2>(hm), b2));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) acc_s[t] = dot4(acc_s[t], wv, bcast32(grp(a, 32 * n + 8 * j + 4 * h + i, t)));
    }
    const VI sc = load_i8x(o + kSc * kLanes + S * kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) sacc[t] = add32(sacc[t], mul32(acc_s[t], sc));
  }
  template <int T, int... S>
  static inline void sub_blocks(const uint8_t* o, const uint8_t* a, const uint8_t* corr, VI* sacc, Seq<S...>) {
    (sub_block<T, S>(o, a, corr, sacc), ...);
  }
  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    scaled_super_blocks<Q3_K, T>(p, n_in, act, l, acc);
  }
};

// Q2_K super-block in a panel (offsets in units of kLanes bytes):
//   0     qs: 16 groups, as Q3_K's
//   64    scales: 8 x kLanes byte pairs (the file's bytes of sub-blocks 2c, 2c + 1: scale in the
//         low nibble, min in the high one), pair c at 2c * kLanes
//   80    d, then dmin: kLanes fp16 each
// A value is d * scale * q - dmin * min: the q are fed as they are, the mins (as int16 pairs,
// the same bytes shifted) meet corr's pairs of 16-value sums on VPMADDWD.
struct Q2_K {
  static constexpr Corr kCorr = Corr::Q2_K;
  static constexpr int kMaxT = kTile;
  static constexpr size_t kSc = 64, kD = 80;
  static constexpr size_t kSb = 84 * kLanes;
  static constexpr int kBlockVals = 256, kCorrPerBlock = 16, kActBytes = 1;
  static constexpr size_t kBlockBytes = kSb;
  static size_t panel_bytes(int64_t n_in) { return static_cast<size_t>(n_in / 256) * kSb; }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    const int64_t nsb = n_in / 256;
    if (n_rows < kLanes) std::memset(p, 0, panel_bytes(n_in));  // full panels: every byte written
    for (int r = 0; r < n_rows; ++r) {
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const uint8_t* x = w + r * row_bytes + sb * kQ2_KBytes;  // scales[16] qs[64] d dmin
        uint8_t* o = p + sb * kSb;
        for (int g = 0; g < 16; ++g) std::memcpy(o + (g * kLanes + r) * 4, x + 16 + 4 * g, 4);
        for (int c = 0; c < 8; ++c) std::memcpy(o + kSc * kLanes + c * 2 * kLanes + 2 * r, x + 2 * c, 2);
        std::memcpy(o + kD * kLanes + 2 * r, x + 80, 2);
        std::memcpy(o + (kD + 2) * kLanes + 2 * r, x + 82, 2);
      }
    }
  }
  // Sub-blocks 2C and 2C + 1 (the same half and shift, the two 16-byte halves of its groups).
  template <int T, int C>
  static inline void pair(const uint8_t* o, const uint8_t* a, const uint8_t* corr, VI* sacc, VI* macc) {
    constexpr int n = C / 4, j = C % 4;
    const VI m3 = set8(0x03), m4 = set32(0x0F);
    const VI pr = load_u8w(o + kSc * kLanes + C * 2 * kLanes);  // int32 lane r: byte 2C | byte 2C+1 << 16
    const VI mn = srl16(pr, 4);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) macc[t] = dot2w16(macc[t], mn, bcast32(corr + (C * kTile + t) * 4));
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      VI acc_s[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) acc_s[t] = vzero();
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        const VI v = load(o + (8 * n + 4 * h + i) * 4 * kLanes);
        const VI wv = and_(srl16(v, 2 * j), m3);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) acc_s[t] = dot4(acc_s[t], wv, bcast32(grp(a, 32 * n + 8 * j + 4 * h + i, t)));
      }
      const VI sc = and_(h ? srl32(pr, 16) : pr, m4);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) sacc[t] = add32(sacc[t], mul32(acc_s[t], sc));
    }
  }
  template <int T, int... C>
  static inline void pairs(const uint8_t* o, const uint8_t* a, const uint8_t* corr, VI* sacc, VI* macc, Seq<C...>) {
    (pair<T, C>(o, a, corr, sacc, macc), ...);
  }
  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    const int64_t nsb = n_in / 256;
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* o = p + sb * kSb;
      const uint8_t* a = act + sb * 64 * kTile * 4;
      prefetch_ahead<T>(o, kSb, l);
      VI sacc[T], macc[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) sacc[t] = macc[t] = vzero();
      pairs<T>(o, a, act + l.c_off + sb * 16 * kTile * 4, sacc, macc, Seq<0, 1, 2, 3, 4, 5, 6, 7>{});
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

}  // namespace

void register_panels_k23(Kernels& k) {
  k.panel[10] = panel_kernels<Q2_K>();  // Q2_K
  k.panel[11] = panel_kernels<Q3_K>();  // Q3_K
}

}  // namespace slm::kern::SLM_ISA_NS
