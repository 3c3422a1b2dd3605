// Panel kernels for the 32-value block types (Q4_0, Q8_0) and IQ4_XS.
//
// Each panel interleaves kLanes weight rows four bytes at a time: the dword in lane r of
// "group" g is bytes 4g..4g+3 of row r's quants, so one load yields, for every row, the four
// weights that pair with four activation bytes broadcast to all lanes (VPDPBUSD), and the
// int32 lane r accumulates row r's dot product directly: no horizontal sums, and each
// unpacked weight vector serves every token of the tile.
#include "kernels/x86/panel_driver.h"

namespace slm::kern::SLM_ISA_NS {

namespace {

constexpr size_t kQ4_0Bytes = 18, kQ8_0Bytes = 34, kIQ4_XSBytes = 136;

// Packing writes every byte of a full panel except the padding past `written`: clear that, or
// the whole panel when rows are missing (zero rows contribute nothing).
inline void clear_unwritten(uint8_t* p, size_t bytes, int n_rows, size_t written) {
  if (n_rows < kLanes) std::memset(p, 0, bytes);
  else std::memset(p + written, 0, bytes - written);
}

// Address of token t's four bytes of group g in an activation tile.
inline const uint8_t* grp(const uint8_t* act, int64_t g, int t) { return act + (g * kTile + t) * 4; }

// ---- Q4_0: value = (nibble - 8) * d; fed as the unsigned nibble, -8 * sum(a) in corr -------
// Panel: per block b, 4 groups of kLanes dwords (bytes 4j..4j+3 of the 16 quant bytes: low
// nibbles are values 4j.., high nibbles values 16+4j..), then the block's kLanes fp16 scales.
// Scales sit next to their quants so that decoding reads one sequential stream: two streams
// per panel (all quants, then all scales) measured 25% less bandwidth.
struct Q4_0 {
  static constexpr Corr kCorr = Corr::Q4_0;
  static constexpr int kMaxT = kTile;
  static constexpr size_t kBlk = 18 * kLanes;
  static constexpr int kBlockVals = 32, kCorrPerBlock = 1, kActBytes = 1;
  static constexpr size_t kBlockBytes = kBlk;
  static size_t panel_bytes(int64_t n_in) { return round_up(static_cast<size_t>(n_in / 32) * kBlk, 64); }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    const int64_t nb = n_in / 32;
    clear_unwritten(p, panel_bytes(n_in), n_rows, nb * kBlk);
    for (int r = 0; r < n_rows; ++r) {
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = w + r * row_bytes + b * kQ4_0Bytes;
        uint8_t* o = p + b * kBlk;
        std::memcpy(o + 16 * kLanes + r * 2, blk, 2);
        for (int j = 0; j < 4; ++j) std::memcpy(o + (j * kLanes + r) * 4, blk + 2 + 4 * j, 4);
      }
    }
  }
  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    const int64_t nb = n_in / 32;
    const VI m4 = set8(0x0F);
    for (int64_t b = 0; b < nb; ++b) {
      // Few tokens: split each block's chain of dependent VPDPBUSDs in two.
      constexpr int C = T <= 2 ? 2 : 1;
      VI s[T], s2[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        s[t] = bcast32(act + l.c_off + (b * kTile + t) * 4);
        s2[t] = vzero();
      }
      const uint8_t* q = p + b * kBlk;
      const uint8_t* a = act + b * 8 * kTile * 4;
      prefetch_ahead<T>(q, kBlk, l);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const VI v = load(q + j * 4 * kLanes);
        const VI lo = and_(v, m4), hi = and_(srl16(v, 4), m4);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) s[t] = dot4(s[t], lo, bcast32(grp(a, j, t)));
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          if constexpr (C == 2) s2[t] = dot4(s2[t], hi, bcast32(grp(a, 4 + j, t)));
          else s[t] = dot4(s[t], hi, bcast32(grp(a, 4 + j, t)));
        }
      }
      if constexpr (C == 2)
        for (int t = 0; t < T; ++t) s[t] = add32(s[t], s2[t]);
      const VF dw = load_h(q + 16 * kLanes);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = fmadd(cvt(s[t]), mul(dw, bcastf_at(act + l.d_off + (b * kTile + t) * 4)), acc[t]);
    }
  }
};

// ---- Q8_0: fed as u = q + 128 (q ^ 0x80), -128 * sum(a) in corr (VNNI) ----------------------
// Panel: per block, 8 groups of kLanes dwords, then the block's kLanes fp16 scales.
struct Q8_0 {
  static constexpr Corr kCorr = Corr::Q8_0;
  // Without VNNI the quants go in signed instead (dot4s: |q| against a with q's sign, exact
  // even for q = -128), with no correction: dot4w on q + 128 costs twice the instructions.
  static constexpr bool kSigned = !kVnni;
  static constexpr int kMaxT = kTile;
  static constexpr size_t kBlk = 34 * kLanes;
  static constexpr int kBlockVals = 32, kCorrPerBlock = 1, kActBytes = 1;
  static constexpr size_t kBlockBytes = kBlk;
  static size_t panel_bytes(int64_t n_in) { return round_up(static_cast<size_t>(n_in / 32) * kBlk, 64); }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    const int64_t nb = n_in / 32;
    clear_unwritten(p, panel_bytes(n_in), n_rows, nb * kBlk);
    for (int r = 0; r < n_rows; ++r) {
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = w + r * row_bytes + b * kQ8_0Bytes;
        uint8_t* o = p + b * kBlk;
        std::memcpy(o + 32 * kLanes + r * 2, blk, 2);
        for (int j = 0; j < 32; ++j) o[(j / 4 * kLanes + r) * 4 + j % 4] = kSigned ? blk[2 + j] : blk[2 + j] ^ 0x80;
      }
    }
  }
  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    const int64_t nb = n_in / 32;
    for (int64_t b = 0; b < nb; ++b) {
      constexpr int C = T <= 2 ? 2 : 1;  // as in Q4_0
      VI s[T], s2[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        s[t] = kSigned ? vzero() : bcast32(act + l.c_off + (b * kTile + t) * 4);
        s2[t] = vzero();
      }
      const uint8_t* q = p + b * kBlk;
      const uint8_t* a = act + b * 8 * kTile * 4;
      prefetch_ahead<T>(q, kBlk, l);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const VI w = load(q + j * 4 * kLanes);
        if constexpr (kSigned) {
          const VI w_abs = abs8(w);
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            if (C == 2 && j % 2) s2[t] = dot4s(s2[t], w_abs, w, bcast32(grp(a, j, t)));
            else s[t] = dot4s(s[t], w_abs, w, bcast32(grp(a, j, t)));
          }
          continue;
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          if (C == 2 && j % 2) s2[t] = dot4w(s2[t], w, bcast32(grp(a, j, t)));
          else s[t] = dot4w(s[t], w, bcast32(grp(a, j, t)));
        }
      }
      if constexpr (C == 2)
        for (int t = 0; t < T; ++t) s[t] = add32(s[t], s2[t]);
      const VF dw = load_h(q + 32 * kLanes);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = fmadd(cvt(s[t]), mul(dw, bcastf_at(act + l.d_off + (b * kTile + t) * 4)), acc[t]);
    }
  }
};

// ---- IQ4_XS: 256-value super-blocks of eight 32-value blocks, 4-bit indices into a table of
// 16 levels with six-bit block scales. The levels are fed as u = level + 128 through a byte
// shuffle; -128 * sum(a) per block in corr. Per super-block: 32 groups (like Q4_0's, 4 per
// block), 8 x kLanes signed scales (ls - 32), kLanes fp16 d.
struct IQ4_XS {
  static constexpr Corr kCorr = Corr::IQ4_XS;
  // Without VNNI the levels go in signed (dot4s, no correction), as IQ4_NL's
  // (panels_b32_x86.cpp): dot4w on the unsigned bytes costs twice the instructions.
  static constexpr bool kSigned = !kVnni;
  static constexpr int kMaxT = kTile;
  static constexpr size_t kSb = 140 * kLanes;  // 128 + 8 + 2, rounded to whole vectors
  static constexpr int kBlockVals = 256, kCorrPerBlock = 16, kActBytes = 1;
  static constexpr size_t kBlockBytes = kSb;
  static size_t panel_bytes(int64_t n_in) { return static_cast<size_t>(n_in / 256) * kSb; }
  static void pack(const uint8_t* w, size_t row_bytes, int n_rows, int64_t n_in, uint8_t* p) {
    const int64_t nsb = n_in / 256;
    if (n_rows < kLanes) std::memset(p, 0, panel_bytes(n_in));
    for (int64_t sb = 0; sb < nsb; ++sb) std::memset(p + sb * kSb + 138 * kLanes, 0, 2 * kLanes);
    for (int r = 0; r < n_rows; ++r) {
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const uint8_t* x = w + r * row_bytes + sb * kIQ4_XSBytes;
        uint8_t* o = p + sb * kSb;
        const uint16_t h = rd_u16(x + 2);
        for (int ib = 0; ib < 8; ++ib) {
          const int ls = ((x[4 + ib / 2] >> 4 * (ib % 2)) & 0xF) | (((h >> 2 * ib) & 3) << 4);
          o[128 * kLanes + ib * kLanes + r] = static_cast<uint8_t>(static_cast<int8_t>(ls - 32));
          for (int j = 0; j < 4; ++j) std::memcpy(o + ((ib * 4 + j) * kLanes + r) * 4, x + 8 + 16 * ib + 4 * j, 4);
        }
        std::memcpy(o + 136 * kLanes + 2 * r, x, 2);
      }
    }
  }
  template <int T>
  static void tile(const uint8_t* p, int64_t n_in, const uint8_t* act, const TileLayout& l, VF* acc) {
    const int64_t nsb = n_in / 256;
    const VI m4 = set8(0x0F);
    const VI lut = kSigned ? table16(kIQ4Levels) : table16(kIQ4LevelsU);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* o = p + sb * kSb;
      const uint8_t* a = act + sb * 64 * kTile * 4;
      prefetch_ahead<T>(o, kSb, l);
      VI sacc[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) sacc[t] = vzero();
      for (int ib = 0; ib < 8; ++ib) {
        constexpr bool kSplit = T <= 2;  // two chains for few tokens, as in Q4_0
        VI s[T], s2[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          s[t] = kSigned ? vzero() : bcast32(act + l.c_off + ((sb * 16 + ib) * kTile + t) * 4);
          s2[t] = vzero();
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const VI v = load(o + (ib * 4 + j) * 4 * kLanes);
          const VI lo = lut16(lut, and_(v, m4)), hi = lut16(lut, and_(srl16(v, 4), m4));
          if constexpr (kSigned) {
            const VI lo_abs = abs8(lo), hi_abs = abs8(hi);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) s[t] = dot4s(s[t], lo_abs, lo, bcast32(grp(a, ib * 8 + j, t)));
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
              if constexpr (kSplit) s2[t] = dot4s(s2[t], hi_abs, hi, bcast32(grp(a, ib * 8 + 4 + j, t)));
              else s[t] = dot4s(s[t], hi_abs, hi, bcast32(grp(a, ib * 8 + 4 + j, t)));
            }
            continue;
          }
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) s[t] = dot4w(s[t], lo, bcast32(grp(a, ib * 8 + j, t)));
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            if constexpr (kSplit) s2[t] = dot4w(s2[t], hi, bcast32(grp(a, ib * 8 + 4 + j, t)));
            else s[t] = dot4w(s[t], hi, bcast32(grp(a, ib * 8 + 4 + j, t)));
          }
        }
        if constexpr (kSplit)
          for (int t = 0; t < T; ++t) s[t] = add32(s[t], s2[t]);
        const VI sc = load_i8x(o + 128 * kLanes + ib * kLanes);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) sacc[t] = add32(sacc[t], mul32(s[t], sc));
      }
      const VF dw = load_h(o + 136 * kLanes);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = fmadd(cvt(sacc[t]), mul(dw, bcastf_at(act + l.d_off + (sb * kTile + t) * 4)), acc[t]);
    }
  }
};

}  // namespace

void register_panels_basic(Kernels& k) {
  k.panel[2] = panel_kernels<Q4_0>();     // Q4_0
  k.panel[8] = panel_kernels<Q8_0>();     // Q8_0
  k.panel[23] = panel_kernels<IQ4_XS>();  // IQ4_XS
}

}  // namespace slm::kern::SLM_ISA_NS
