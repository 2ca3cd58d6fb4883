// The GEMM over one sorted block: the core that stage 1, stage 2 and 1stage share.
//
// A sorted block is block_m consecutive rows of sorted_ids with one expert
// (sorted_expert_ids[b]); its valid rows (token < T) are the block's M rows. For one
// block and one set of B rows (an N tile: weight rows brow[0..np)), BlockGemm computes
//
//   acc[m][p] += sum over K tiles kt in [kt0, kt1) of  sum_{k in tile} A[arow[m]][k] * B[brow[p]][k]
//
// with A and B dequantized exactly to fp32 by the row loaders (load.h): the block's A rows
// once per work item into a panel [BM][round_up(K, BK)], B rows per (N tile, K tile) into
// a tile [BN][BK]. K tails (K % BK, K % 32) are zero-filled in both, never read past K.
//
// Summation order (fixed; independent of thread count, of BM/BN and of which rows share a
// micro-kernel call, so 1stage == stage2(stage1) bit for bit): within a K tile, 8 lanes
// s_j = sum of a[k]*b[k] over k = j mod 8 in increasing k, then
// ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)) is added to acc; K tiles in increasing order.
#pragma once
#include "mxforge/cpu/base.h"
#include "mxforge/cpu/load.h"

namespace mxf {
namespace cpu {

// ---- routing: the sorted rows of a launch -------------------------------------------------

struct BlockRow {
  int64_t sorted;  // index into sorted_ids / sorted_weights
  int64_t token;
  int64_t slot;
};

struct Routing {
  const int32_t* ids = nullptr;
  const int32_t* experts = nullptr;
  int64_t T = 0, topk = 0, E = 0, block_m = 0;
  int64_t rows = 0;    // num_valid_ids[0], clamped to the sort capacity
  int64_t blocks = 0;  // sorted blocks to visit

  Routing(const MoeGemmArgs& a, int64_t bm)
      : ids(a.sorted_ids), experts(a.sorted_expert_ids), T(a.T), topk(a.topk), E(a.E),
        block_m(bm) {
    // (direct routing: a block per route, moe.h's DirectRoutes)
    const int64_t capacity = a.direct_routes ? a.T * a.topk * bm : a.T * a.topk + a.E * bm - a.topk;
    rows = a.num_valid_ids[0];
    rows = rows < 0 ? 0 : (rows > capacity ? capacity : rows);
    blocks = cdiv(rows, bm);
    if (a.max_blocks > 0 && blocks > a.max_blocks) blocks = a.max_blocks;
  }
  // Expert of block b, or -1 (unused block / id out of range: skipped).
  int64_t expert(int64_t b) const {
    const int64_t e = experts[b];
    return e >= 0 && e < E ? e : -1;
  }
  // The valid rows of block b in sorted order; returns how many (<= block_m).
  int rows_of(int64_t b, BlockRow* out) const {
    int n = 0;
    const int64_t end = (b + 1) * block_m < rows ? (b + 1) * block_m : rows;
    for (int64_t r = b * block_m; r < end; ++r) {
      const int64_t id = ids[r];
      const int64_t t = id & kTokenMask, s = (id >> kTokenBits) & 0xff;
      if (id < 0 || t >= T || s >= topk) continue;  // sentinel / padding
      out[n++] = BlockRow{r, t, s};
    }
    return n;
  }
};

// ---- the block GEMM --------------------------------------------------------------------

inline float lane_sum(const float* s) {
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

template <class ATag, class BTag, int BM, int BN, int BK>
struct BlockGemm {
  static_assert(BK % 32 == 0, "block_k is a multiple of the 32-element scale block");
  static constexpr int kLanes = 8;

  int64_t K, lda;
  explicit BlockGemm(int64_t k) : K(k), lda(round_up(k, BK)) {}

  int64_t k_tiles() const { return cdiv(K, BK); }
  // Scratch per thread: A panel, B tile, accumulators.
  size_t scratch_floats() const { return size_t(BM) * lda + size_t(BN) * BK + size_t(BM) * BN; }
  float* panel(float* scratch) const { return scratch; }
  float* btile(float* scratch) const { return scratch + size_t(BM) * lda; }
  float* acc(float* scratch) const { return scratch + size_t(BM) * lda + size_t(BN) * BK; }

  // Dequantize K tiles [kt0, kt1) of A rows arow[0..mv) into the panel.
  template <class AView>
  void load_a(const AView& a, const int64_t* arow, int mv, int64_t kt0, int64_t kt1,
              float* panel) const {
    for (int m = 0; m < mv; ++m)
      for (int64_t kt = kt0; kt < kt1; ++kt) {
        const int64_t k0 = kt * BK, kn = K - k0 < BK ? K - k0 : BK;
        load_row<ATag, kLanes>(a, arow[m], k0, kn, panel + m * lda + k0);
      }
  }

  // acc[m * BN + p] += A(panel rows 0..mv) . B(brow[p]) over K tiles [kt0, kt1).
  template <class BView>
  void run(const BView& b, const int64_t* brow, int np, const float* panel, int mv, int64_t kt0,
           int64_t kt1, float* btile, float* acc) const {
    for (int64_t kt = kt0; kt < kt1; ++kt) {
      const int64_t k0 = kt * BK, kn = K - k0 < BK ? K - k0 : BK;
      for (int p = 0; p < np; ++p) load_row<BTag, kLanes>(b, brow[p], k0, kn, btile + p * BK);
      micro(panel + k0, mv, btile, np, int(round_up(kn, kLanes)), acc);
    }
  }

  // One K tile: acc[m][p] += lane_sum(a_m . b_p) over kn (a multiple of 8) elements.
  void micro(const float* __restrict a, int mv, const float* __restrict bt, int np, int kn,
             float* __restrict acc) const {
    for (int p = 0; p < np; ++p) {
      const float* __restrict b = bt + p * BK;
      int m = 0;
      for (; m + 4 <= mv; m += 4) {
        const float* a0 = a + (m + 0) * lda;
        const float* a1 = a + (m + 1) * lda;
        const float* a2 = a + (m + 2) * lda;
        const float* a3 = a + (m + 3) * lda;
        float s0[kLanes] = {}, s1[kLanes] = {}, s2[kLanes] = {}, s3[kLanes] = {};
        for (int k = 0; k < kn; k += kLanes)
          for (int j = 0; j < kLanes; ++j) {
            const float bv = b[k + j];
            s0[j] += a0[k + j] * bv;
            s1[j] += a1[k + j] * bv;
            s2[j] += a2[k + j] * bv;
            s3[j] += a3[k + j] * bv;
          }
        acc[(m + 0) * BN + p] += lane_sum(s0);
        acc[(m + 1) * BN + p] += lane_sum(s1);
        acc[(m + 2) * BN + p] += lane_sum(s2);
        acc[(m + 3) * BN + p] += lane_sum(s3);
      }
      for (; m < mv; ++m) {
        const float* a0 = a + m * lda;
        float s0[kLanes] = {};
        for (int k = 0; k < kn; k += kLanes)
          for (int j = 0; j < kLanes; ++j) s0[j] += a0[k + j] * b[k + j];
        acc[m * BN + p] += lane_sum(s0);
      }
    }
  }
};

}  // namespace cpu
}  // namespace mxf
