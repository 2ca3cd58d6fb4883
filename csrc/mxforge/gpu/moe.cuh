// MoE GEMM kernels: moe_stage1, moe_stage2, moe_1stage (docs/ops.md), built from the tile
// layer in gemm.cuh. One kernel template per op; every dtype pair, tile, activation and
// flag is a template parameter of MoeSpec, so there is one piece of code per idea.
//
// Grid: x = (sorted block, N tile) pairs, the N tile fastest (GridTile), z = K split; the
// blocks are min(T * topk, max_blocks) (grid_blocks).
// A CTA whose block starts at or past num_valid_ids[0] (or whose expert is -1) exits at
// once; rows whose token is >= T (sentinels) are never read (zero A rows) nor written.
//
// Stage 1 puts gate and up of one output column next to each other: B tile row 2i is
// w1 row gate_row(j0 + i), row 2i + 1 is up_row(j0 + i) (activation.h), so a CTA with
// block_n columns computes block_n / 2 output columns j0.. and the epilogue finds gate and
// up of column j at staging columns 2(j - j0) and 2(j - j0) + 1, for concatenated (rows
// I apart) and interleaved weights alike.
//
// Workspaces (MoeGemmArgs::workspace):
//   moe_stage1 with split_k > 1: fp32 partial sums [T*topk, N] = 4 * T * topk * N bytes,
//     zeroed by the instance (cudaMemsetAsync) before the GEMM, summed by atomics, then
//     read by a second (epilogue) kernel.
//   moe_stage2 with split_k > 1 and a bf16 output: fp32 sums [T, N] = 4 * T * N bytes,
//     zeroed by the instance, summed by atomics (every expert and split of a token), then
//     added into out by a second kernel, so out is rounded once per launch as without
//     split-K (fp32 outputs take the partial sums directly, no workspace).
//   split_k == 1 and the other ops: none.
//   moe_1stage: none; the intermediate rows live in dynamic shared memory,
//     2 * block_m * (round_up(I, 16) + 8) bytes on top of the tile's own (so I is limited
//     to what fits in Arch::kMaxSmem: 227 KB on sm90, where I = 2880 works up to block_m =
//     32 with block_n = block_k = 128; 64 KiB on gfx942, 160 KiB on gfx950; larger shapes
//     get a clear error).
#pragma once
#include <stdint.h>

#include "mxforge/activation.h"
#include "mxforge/gpu/common.cuh"
#include "mxforge/gpu/gemm.cuh"
#include "mxforge/gpu/mx.cuh"
#include "mxforge/layout.h"

namespace mxf {
namespace gpu {

// ---- operands --------------------------------------------------------------------------
// A (activations): rows a_stride elements (16-bit) or bytes (MX) apart; MX scales
// a_scale_stride bytes apart. Elements at or past kend read as zero.
template <class AT>
struct ActRows {
  MXF_DEV static GatherRows make(const MoeGemmArgs& a) {
    const int64_t pitch = Operand<AT>::kMx ? a.a_stride : 2 * a.a_stride;
    return GatherRows{static_cast<const uint8_t*>(a.a), pitch, a.a_scales, a.a_scale_stride};
  }
  MXF_DEV static int64_t kend(int64_t K) { return Operand<AT>::kMx ? round_up(K, 32) : K; }
};

// B (weights) of expert e, [N, K]: pk_fp4 in any layout, fp8 (MXFP8) and bf16 plain.
template <class BT, class Layout>
struct WeightRows;
template <class Layout>
struct WeightRows<Fp4Mx, Layout> {
  using Rows = LayoutRows<Layout>;
  MXF_DEV static Rows make(const void* b, const uint8_t* s, int64_t e, int64_t N, int64_t K) {
    return Rows{static_cast<const uint8_t*>(b) + e * Layout::w_bytes(N, K),
                s + e * Layout::s_bytes(N, K), N, K};
  }
  MXF_DEV static int64_t kend(int64_t K) { return round_up(K, 32); }
};
template <class Layout>
struct WeightRows<Fp8Mx, Layout> {
  static_assert(IsSame<Layout, LayoutPlain>::value, "fp8 weights exist in the plain layout only");
  using Rows = GatherRows;
  MXF_DEV static Rows make(const void* b, const uint8_t* s, int64_t e, int64_t N, int64_t K) {
    const int64_t kp = round_up(K, 32);
    return Rows{static_cast<const uint8_t*>(b) + e * N * kp, kp, s + e * N * (kp / 32), kp / 32};
  }
  MXF_DEV static int64_t kend(int64_t K) { return round_up(K, 32); }
};
template <class Layout>
struct WeightRows<Bf16, Layout> {
  static_assert(IsSame<Layout, LayoutPlain>::value, "bf16 weights exist in the plain layout only");
  using Rows = GatherRows;
  MXF_DEV static Rows make(const void* b, const uint8_t*, int64_t e, int64_t N, int64_t K) {
    return Rows{static_cast<const uint8_t*>(b) + e * N * K * 2, 2 * K, nullptr, 0};
  }
  MXF_DEV static int64_t kend(int64_t K) { return K; }
};

// How an instance's pk_fp4 weights reach the MMAs (schema field b_path of moe_stage1/2):
// through shared memory (kSmem), as register fragments (kRegs: gemm.cuh, RegFragB), through
// the warpgroup-MMA ring (kWgmma: WgmmaTile), as the 16-row operand of the swapped decode
// tile (kSwap: SwapTile) or as the register A operand of warpgroup MMAs (kWgmmaRegs:
// WgmmaRegsTile).
enum class BPath { kSmem, kRegs, kWgmma, kSwap, kWgmmaRegs };

// Everything an instance fixes at compile time. WARPS_K: warp groups per k-tile (GemmTile);
// an instance states 1, and its launcher runs Decode (the same instance with the arch's
// kDecodeWarpsK groups on block_m <= 32 tiles) when the launch has few CTAs.
// CLUSTER_K: CTAs of a thread block cluster that share one output tile's K range (schema
// field cluster_k; the swapped tile on sm90): each multiplies its part of K, the partial
// sums meet in the cluster's shared memory (cluster_reduce) and the CTA of rank 0 runs the
// epilogue on the whole sum. Unlike split_k nothing leaves the kernel before the sum is
// complete (no workspace, no second kernel, the epilogue and any re-quantization as with
// one CTA), so it is allowed with pk_fp4 activations.
// N_TILES: output tiles of its block that a stage-2 CTA computes one after another (schema
// field n_tiles; the swapped tile with one warp group, stage2_swap_tiles).
template <class Arch_, class A_, class B_, class Out_, int BM_, int BN_, int BK_, int SPLITK_,
          Act ACT_, bool INTERLEAVED_, bool BIAS_, Rw RW_, class Layout_, int WARPS_K_ = 1,
          BPath B_PATH_ = BPath::kSmem, int CLUSTER_K_ = 1, int N_TILES_ = 1>
struct MoeSpec {
  using Arch = Arch_;
  using AT = A_;
  using BT = B_;
  using OutT = Out_;
  using Layout = Layout_;
  static constexpr int BM = BM_, BN = BN_, BK = BK_, kSplitK = SPLITK_, kClusterK = CLUSTER_K_;
  // K parts of one output tile: CTAs along grid z (split-K's splits or a cluster's CTAs)
  static constexpr int kKParts = SPLITK_ * CLUSTER_K_;
  static constexpr Act kAct = ACT_;
  static constexpr bool kInterleaved = INTERLEAVED_, kBias = BIAS_;
  static constexpr Rw kRw = RW_;
  // MMA input (device layer, per arch): a 16-bit type both operands are dequantized into
  // (fp16 activations keep fp16, else bf16), or MX codes + scales for native MX MMAs.
  using InT = typename dev::MmaInput<Arch, AT, BT>::type;
  // pk_fp4 weights as register fragments (gemm.cuh, RegFragB): the arch must have that
  // path, and the tile one warp row (block_m <= 32) and whole 128-wide k groups (codegen's
  // b_path constraint says the same); its warp groups then split a k-tile's groups, so
  // there are at most block_k / 128 of them. The swapped tile loads its weights the same
  // way, so it needs the same of the arch and the types.
  static constexpr bool kRegB = B_PATH_ == BPath::kRegs, kSwap = B_PATH_ == BPath::kSwap;
  // Direct routing (MoeGemmArgs::direct_routes: a block per route, no sort launch) on the
  // decode tiles only: its out-of-line call made seven prefill tiles (b_path smem and
  // wgmma) spill a register (ptxas, session 35), and decode is where it is used.
  static constexpr bool kDirectRoutes = kRegB || kSwap;
  static_assert(!(kRegB || kSwap) || (Arch::kRegFragB && IsSame<BT, Fp4Mx>::value && IsSame<InT, Bf16>::value &&
                                      BM <= 32 && BK % 128 == 0),
                "b_path regs / swap: sm90, pk_fp4 weights, bf16 MMA input, block_m <= 32, block_k % 128 == 0");
  static_assert(!kSwap || IsSame<AT, Fp4Mx>::value || IsSame<AT, Bf16>::value,
                "b_path swap: pk_fp4 or bf16 activations (the ones run on a GPU; codegen says the same)");
  static_assert(CLUSTER_K_ == 1 || (Arch::kClusters && kSwap && SPLITK_ == 1 &&
                                    (CLUSTER_K_ == 2 || CLUSTER_K_ == 4)),
                "cluster_k 2 or 4: sm90, b_path swap, split_k 1 (codegen says the same)");
  static constexpr int kWarpsK = kRegB ? cmin(WARPS_K_, BK / 128) : WARPS_K_;
  // The warpgroup-MMA main loop: sm90, pk_fp4 weights with pk_fp4, bf16 or fp8 activations
  // (the pairs run on a GPU), block_m 64 / 128, block_k a multiple of 64; codegen's b_path
  // constraint says the same (block_k 64 there: the ring's shared memory).
  static constexpr bool kWgmma = B_PATH_ == BPath::kWgmma;
  static_assert(!kWgmma || (Arch::kWgmma && IsSame<BT, Fp4Mx>::value &&
                            !IsSame<AT, Fp16>::value && (BM == 64 || BM == 128) && BK % 64 == 0),
                "b_path wgmma: sm90, pk_fp4 weights, a in pk_fp4/bf16/fp8, block_m 64 or 128, "
                "block_k a multiple of 64");
  // The swapped warpgroup-MMA main loop: sm90, pk_fp4 weights with pk_fp4 or bf16
  // activations, block_m 16 / 32 / 64 / 128, block_n 128, block_k 128 (codegen says the same).
  static constexpr bool kWgmmaRegs = B_PATH_ == BPath::kWgmmaRegs;
  static_assert(!kWgmmaRegs || (Arch::kWgmma && IsSame<BT, Fp4Mx>::value &&
                                (IsSame<AT, Fp4Mx>::value || IsSame<AT, Bf16>::value) &&
                                (BM == 16 || BM == 32 || BM == 64 || BM == 128) && BN == 128 && BK == 128),
                "b_path wgmma_regs: sm90, pk_fp4 weights, a in pk_fp4/bf16, block_m 16, 32, 64 or 128, "
                "block_n 128, block_k 128");
  // (weight stages in flight per lane: 10 registers each; block_m 16 ... 64 have room for
  // one at two CTAs per SM: two spilled, ~1 KB at block_m 64, 216-408 bytes at 16 / 32)
  static constexpr int kWgmmaRegsStages = BM_ <= 64 ? 1 : 2;
  using Tile = typename Cond<
      kWgmma, WgmmaTile<Arch, AT, BT, InT, BM, BN, BK, (N_TILES_ > 1)>,
      typename Cond<kWgmmaRegs, WgmmaRegsTile<Arch, AT, BM, BN, BK, kWgmmaRegsStages>,
                    typename Cond<kSwap, SwapTile<Arch, BM, BN, BK>,
                                  GemmTile<Arch, BM, BN, BK, kWarpsK, kRegB>>::type>::type>::type;
  using Mma = typename Cond<
      kWgmma, WarpgroupMma<Tile, InT>,
      typename Cond<kWgmmaRegs, WgmmaRegsMma<Tile>,
                    typename Cond<kSwap, SwapMma<Tile>, WarpMma<Tile, InT>>::type>::type>::type;
  // The wgmma tile's K order: PairK where both operands are converted (a4w4, a8w4).
  using WgmmaOrder = typename Cond<Operand<AT>::kMx && Operand<BT>::kMx, PairK, NaturalK>::type;
  // (the swapped tile is its own decode variant: launch_gemm then launches one kernel)
  using Decode = MoeSpec<Arch_, A_, B_, Out_, BM_, BN_, BK_, SPLITK_, ACT_, INTERLEAVED_, BIAS_,
                         RW_, Layout_, (BM_ <= 32 ? Arch_::kDecodeWarpsK : 1), B_PATH_, CLUSTER_K_, N_TILES_>;
  // Stage 2 on the swapped tile with one warp group and one K part: its accumulators go to
  // the output as pairs straight from registers (SwapMma::for_each_pair), and a CTA may
  // walk several N tiles (stage2_swap_tiles).
  static constexpr int kNTiles = N_TILES_;
  // (one warp group: block_n = the swapped tile's 8 warps x swap_warp_rows)
  static constexpr bool kStage2Pairs = kSwap && BN == 8 * swap_warp_rows(BM) && kKParts == 1;
  // Stage 2 on the warpgroup-MMA ring tile may walk N tiles too (stage2_wgmma_tiles): the
  // activations resident for the whole K, the sums leaving as bf16 rows (rows16_epilogue).
  static constexpr bool kWgmmaNLoop = kWgmma && kNTiles > 1;
  static_assert(kNTiles == 1 || kStage2Pairs || (kWgmmaNLoop && kKParts == 1 && IsSame<Out_, Bf16>::value),
                "n_tiles > 1: b_path swap with block_n = 8 warps x their rows, or b_path wgmma with a "
                "bf16 out; split_k 1, cluster_k 1 (codegen says the same)");
  static constexpr int NT = Tile::kThreads;
  using BRows = WeightRows<BT, Layout>;
  using ALoader = typename Cond<
      kWgmma, RingOperand<AT, InT, BM, BK, NT, GatherRows, WgmmaOrder>,
      TileLoader<AT, typename dev::SmemOf<InT, AT>::type, BM, BK, NT, GatherRows,
                 typename Cond<kRegB, RegK, NaturalK>::type>>::type;
  // The swapped tile's weights: rows g, g + 8 of each of a warp's m16 atoms per lane
  // (swap_warp_rows / 8 rows), whole k-tiles, two stages (SwapTile::kCtasPerSm).
  static constexpr int kSwapGpw = BK >= 128 ? BK / 128 : 1;
  using BLoader = typename Cond<
      kWgmma, RingOperand<BT, InT, BN, BK, NT, typename BRows::Rows, WgmmaOrder>,
      typename Cond<kRegB, RegFragB<Tile, typename BRows::Rows>,
      typename Cond<kWgmmaRegs, RegFragRows<2, 1, 1, typename BRows::Rows, kWgmmaRegsStages, true, true>,
                    typename Cond<kSwap, RegFragRows<swap_warp_rows(BM) / 8, kSwapGpw, 1, typename BRows::Rows, 2, true, true>,
                                  TileLoader<BT, typename dev::SmemOf<InT, BT>::type, BN, BK, NT,
                                             typename BRows::Rows>>::type>::type>::type>::type;
  // The one-stage kernel's second GEMM: bf16 intermediate x the same weight type.
  using B2Loader = TileLoader<BT, Bf16, BN, BK, NT, typename BRows::Rows>;
  static_assert(!(kSplitK > 1 && IsSame<AT, Fp4Mx>::value), "split-K never takes fp4 activations");
  // moe_stage2 with split_k > 1 and a bf16 output sums into the fp32 workspace.
  static constexpr bool kStage2Ws = kSplitK > 1 && IsSame<OutT, Bf16>::value;
  // moe_stage2 may reduce by route rows (MoeGemmArgs::slots; slots_epilogue, and
  // pairs_epilogue on the swapped tile's N loop): one K part (a split or a cluster's partial
  // sums would need adding), a bf16 output, block_n a multiple of 8 (the 16-byte stores).
  // dispatch.slots_supported says the same.
  static constexpr bool kStage2Slots = kKParts == 1 && BN % 8 == 0 && IsSame<OutT, Bf16>::value;
  static_assert(!IsSame<OutT, Fp4Mx>::value || BN >= 64, "re-quantized output needs block_n >= 64");
};

// ---- per-block prologue ----------------------------------------------------------------
// Which row of A a sorted row reads and which row of the output it writes.
enum class RowIs { kToken, kRoute };  // t, or t * topk + slot

struct BlockRows {
  int* arow;   // [BM] A row, -1 for sentinel rows
  int* orow;   // [BM] output row, -1 for sentinel rows
  float* w;    // [BM] routed weight
};

// The (sorted block, N tile) of this CTA. Grid x runs over the N tiles of a block before
// the next block, so the CTAs resident at one time share their A rows in L2 (with the
// block fastest, the order before 2026-11-29, they each gathered other rows) and the N
// tile count is not bounded by grid y. Measured at T = 8192 on an H200: the stage timings
// moved within -2 .. +1 % in 9 of 10 cases (ncu had shown DRAM at 5 % of its peak before:
// HBM was not the limit); docs/sm90.md.
struct GridTile {
  int block, ntile;
  // (32-bit arithmetic: ntiles <= 65535 and the grid < 2^31, both checked at launch)
  MXF_DEV explicit GridTile(int64_t ntiles)
      : block(int(unsigned(dev::block_x()) / unsigned(ntiles))),
        ntile(int(unsigned(dev::block_x()) % unsigned(ntiles))) {}
};

// Reads the sorted rows of block bx. False (uniformly for the CTA) when the block is past
// num_valid_ids[0] or has no expert; the caller then returns before any barrier.
// All of the block's metadata is read in one round trip: the loads do not wait for the
// checks (every index is in bounds: block x < max_blocks entries of sorted_expert_ids, rows
// below the sorter's capacity T * topk + E * block_m - topk), which at decode, where a
// CTA's time is a chain of memory latencies, saves two of them.
// Under direct routing (a.direct_routes; kDirect: the instance's MoeSpec::kDirectRoutes)
// block bx is route bx alone: direct_block_rows.
template <int BM, int NT>
MXF_DEV_NOINLINE int direct_block_rows(const int32_t* topk_ids, const float* topk_weights,
                                       const int32_t* expert_mask, int64_t E, int topk, int bx, bool a_route,
                                       bool out_route, int* arow, int* orow, float* wrow);
template <int BM, int NT, bool kDirect>
MXF_DEV bool block_rows(const MoeGemmArgs& a, int bx, RowIs a_is, RowIs out_is, const BlockRows& rows,
                        int& expert) {
  if constexpr (kDirect) {
    if (a.direct_routes) {
      expert = direct_block_rows<BM, NT>(a.topk_ids, a.topk_weights, a.expert_mask, a.E, int(a.topk), bx,
                                         a_is == RowIs::kRoute, out_is == RowIs::kRoute, rows.arow, rows.orow,
                                         rows.w);
      return expert >= 0;
    }
  }
  constexpr int PER = (BM + NT - 1) / NT;  // rows per thread (1: NT >= BM for every tile)
  const int64_t first = int64_t(bx) * BM;
  const int64_t capacity = a.T * a.topk + a.E * BM - a.topk;
  const int nvalid = a.num_valid_ids[0];
  expert = a.sorted_expert_ids[bx];
  int id[PER];
  float w[PER];
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int r = dev::thread_x() + j * NT;
    const bool in = r < BM && first + r < capacity;
    id[j] = in ? a.sorted_ids[first + r] : int(kTokenMask);  // (a token >= T: no row)
    w[j] = in ? a.sorted_weights[first + r] : 0.0f;
  }
  if (first >= int64_t(nvalid) || expert < 0 || expert >= a.E) return false;
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int r = dev::thread_x() + j * NT;
    if (r >= BM) continue;
    const int t = id[j] & kTokenMask, slot = id[j] >> kTokenBits;
    const bool ok = t < a.T;
    const int route = int(t * a.topk + slot);
    rows.arow[r] = ok ? (a_is == RowIs::kRoute ? route : t) : -1;
    rows.orow[r] = ok ? (out_is == RowIs::kRoute ? route : t) : -1;
    rows.w[r] = ok ? w[j] : 0.0f;
  }
  return true;
}

// Direct routing (a.direct_routes): block bx holds route bx (= t * topk + slot) alone, its
// expert topk_ids[bx], so a CTA reads its block in one round trip of two loads, as from a
// sort, with no sort launch before it and nothing to compute. An expert with several
// routes gets a block per route (its weights read once per route: decode, where experts
// rarely share a route); each route's row is the same as from the sorted block, bit for
// bit (an output row depends on its own A row only). A dropped route (masked expert, id
// outside [0, E)) has no work: -1 (else the expert), the same for the whole CTA. Out of
// line, with scalar arguments: inlined, its few instructions made register-tight tiles
// of the sorted path spill (a4w4 block_m 16 stage 1 with cluster_k 2 and 4, ptxas).
template <int BM, int NT>
MXF_DEV_NOINLINE int direct_block_rows(const int32_t* topk_ids, const float* topk_weights,
                                       const int32_t* expert_mask, int64_t E, int topk, int bx, bool a_route,
                                       bool out_route, int* arow, int* orow, float* wrow) {
  const int expert = topk_ids[bx];
  const float w = topk_weights[bx];
  if (!route_kept(expert, E, expert_mask)) return -1;
  const int t = bx / topk;
  for (int r = dev::thread_x(); r < BM; r += NT) {
    arow[r] = r > 0 ? -1 : a_route ? bx : t;
    orow[r] = r > 0 ? -1 : out_route ? bx : t;
    wrow[r] = r > 0 ? 0.0f : w;
  }
  return expert;
}

// Stage 1 zeroes MoeGemmArgs::zero_buf (the layer's out, which stage 2 then adds into)
// where no sort launch does: every thread of the grid a stride of it. Out of line: no
// registers or instructions of the main path for it.
MXF_DEV_NOINLINE void zero_buf_stripe(void* buf, int64_t bytes) {
  const int64_t ctas = int64_t(dev::grid_dim_x()) * dev::grid_dim_z();
  const int64_t cta = int64_t(dev::block_z()) * dev::grid_dim_x() + dev::block_x();
  zero_span(buf, bytes, cta * dev::block_dim_x() + dev::thread_x(), ctas * dev::block_dim_x());
}

// B tile rows of stage 1 for output columns [j0, j0 + BN/2): gate/up pairs.
template <int BN, int NT, bool kInterleaved>
MXF_DEV void gate_up_rows(int* brow, int64_t j0, int64_t I) {
  for (int c = dev::thread_x(); c < BN; c += NT) {
    const int64_t j = j0 + c / 2;
    brow[c] = j < I ? int((c & 1) ? up_row(kInterleaved, j, I) : gate_row(kInterleaved, j, I)) : -1;
  }
}
// B tile rows of a plain GEMM for output columns [n0, n0 + BN).
template <int BN, int NT>
MXF_DEV void plain_rows(int* brow, int64_t n0, int64_t N) {
  for (int c = dev::thread_x(); c < BN; c += NT) brow[c] = PlainRows{n0, N}[c];
}

// K tiles per split (the last split may have fewer).
template <int BK>
MXF_HD int split_tiles(int64_t K, int splits) {
  return (int(cdiv(K, BK)) + splits - 1) / splits;
}
// K tiles [kt0, kt1) of split z.
template <int BK>
MXF_DEV void k_range(int64_t K, int splits, int z, int& kt0, int& kt1) {
  const int tiles = int(cdiv(K, BK));
  const int per = split_tiles<BK>(K, splits);
  kt0 = cmin(tiles, z * per);
  kt1 = cmin(tiles, kt0 + per);
}

// ---- epilogues (portable) ------------------------------------------------------------------
// The gated value of staging row r, output column j0 + jj (stage 1 and the one-stage
// kernel), from gate/up at staging columns 2jj, 2jj + 1 (raw sums) plus bias.
template <class S>
MXF_DEV float gated_value(const float* c, int r, int jj, const float* bias_e, const int* brow,
                          float w) {
  float g = c[r * S::Tile::kLdC + 2 * jj], u = c[r * S::Tile::kLdC + 2 * jj + 1];
  if constexpr (S::kBias) {
    g += bias_e[brow[2 * jj]];
    u += bias_e[brow[2 * jj + 1]];
  }
  float v = gated<S::kAct>(g, u);
  if constexpr (S::kRw == Rw::kStage1) v *= w;
  return v;
}

// Stage 1: activation, routed weight, then bf16 or MXFP4 (per 32 output columns,
// args.rounding) at row t*topk + slot. `c` is the staging tile (overwritten).
template <class S>
MXF_DEV void stage1_epilogue(float* c, const MoeGemmArgs& a, int e, int64_t j0,
                             const BlockRows& rows, const int* brow) {
  constexpr int HALF = S::BN / 2, NT = S::NT, LDC = S::Tile::kLdC;
  const int64_t I = a.N / 2;
  const float* bias_e = S::kBias ? a.bias + int64_t(e) * a.N : nullptr;
  for (int idx = dev::thread_x(); idx < S::BM * HALF; idx += NT) {
    const int r = idx / HALF, jj = idx % HALF;
    if (rows.orow[r] < 0 || brow[2 * jj] < 0) continue;
    const float v = gated_value<S>(c, r, jj, bias_e, brow, rows.w[r]);
    if constexpr (IsSame<typename S::OutT, Bf16>::value)
      static_cast<uint16_t*>(a.out)[int64_t(rows.orow[r]) * a.out_stride + j0 + jj] = f32_to_bf16(v);
    else
      c[r * LDC + 2 * jj] = v;  // only this thread reads 2jj / 2jj+1 of row r: in place is safe
  }
  if constexpr (IsSame<typename S::OutT, Fp4Mx>::value) {
    // Re-quantized: each 32-column block of a row by kLanes lanes (mx_encode_lanes: at
    // decode a tile has one or two live rows, and one thread's chain of 32 conversions per
    // block was the epilogue's time). The loop runs warp-uniformly (the shuffles).
    constexpr int kLanes = 8, kPer = 32 / kLanes, kBlocks = S::BM * (HALF / 32);
    dev::sync_threads();
    const int64_t Ip = round_up(I, 32);
    for (int base = dev::thread_x() - dev::lane_id(); base < kBlocks * kLanes; base += NT) {
      const int idx = base + dev::lane_id(), blk = idx / kLanes, part = idx % kLanes;
      const int r = blk / (HALF / 32), g = blk % (HALF / 32);
      const int64_t jb = j0 + 32 * g;  // j0 is a multiple of 32 (block_n >= 64)
      const bool live = blk < kBlocks && rows.orow[r] >= 0 && jb < Ip;
      float v[kPer];
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const int jj = 32 * g + kPer * part + i;
        v[i] = live && j0 + jj < I ? c[r * LDC + 2 * jj] : 0.0f;
      }
      uint8_t s;
      const uint32_t codes = mx_encode_lanes<E2m1, kLanes>(v, Rounding(a.rounding), s);
      if (!live) continue;
      uint8_t* q = static_cast<uint8_t*>(a.out) + int64_t(rows.orow[r]) * a.out_stride + jb / 2 + part * 2;
      q[0] = uint8_t(codes);  // (elements 2i, 2i + 1 in byte i: the lane's 4 codes are 2 bytes)
      q[1] = uint8_t(codes >> 8);
      if (part == 0) a.out_scales[int64_t(rows.orow[r]) * a.out_scale_stride + jb / 32] = s;
    }
  }
}

// Split-K partial sums: staging tile -> atomically into workspace [T*topk, N] at the
// weight row of each column.
template <class S>
MXF_DEV void splitk_accumulate(const float* c, const MoeGemmArgs& a, const BlockRows& rows,
                               const int* brow) {
  float* ws = static_cast<float*>(a.workspace);
  for (int idx = dev::thread_x(); idx < S::BM * S::BN; idx += S::NT) {
    const int r = idx / S::BN, col = idx % S::BN;
    if (rows.orow[r] < 0 || brow[col] < 0) continue;
    dev::atomic_add(ws + int64_t(rows.orow[r]) * a.N + brow[col], c[r * S::Tile::kLdC + col]);
  }
}

// Eight values as eight bf16 in 16 bytes (value i in half i % 2 of word i / 2), and back:
// stage 2's 16-byte adds, slot rows and slot sums.
MXF_DEV dev::Vec16 pack_bf16x8(const float (&v)[8]) {
  return dev::Vec16{dev::pack_bf16x2(v[0], v[1]), dev::pack_bf16x2(v[2], v[3]), dev::pack_bf16x2(v[4], v[5]),
                    dev::pack_bf16x2(v[6], v[7])};
}
MXF_DEV void unpack_bf16x8(const dev::Vec16& p, float (&v)[8]) {
  const uint32_t w[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = bf16_to_f32(uint16_t(w[i / 2] >> (16 * (i % 2))));
}

// Stage 2's value of output columns n, n + 1 (n + 1 where `two`): the sums + the bias where
// add_bias, then x the routed weight w where kWeight.
template <bool kWeight>
MXF_DEV void bias_weight_pair(float& v0, float& v1, bool two, bool add_bias, const float* bias_e, int64_t n,
                              float w) {
  if (add_bias) {
    v0 += bias_e[n];
    if (two) v1 += bias_e[n + 1];
  }
  if constexpr (kWeight) {
    v0 *= w;
    v1 *= w;
  }
}

// out[orow, n] (and n + 1 where `two`) += ((v0, v1) + the bias where add_bias) x w where
// kWeight: bf16 pairs by one bf16x2 atomic add where the output takes them (pairs_ok: even
// row pitch, 4-byte aligned; kDirect: known to, every pair whole: direct_pairs), else
// element by element; fp32 by atomic adds; with kToWs into the fp32 workspace [T, N].
template <class S, bool kWeight, bool kToWs, bool kDirect = false>
MXF_DEV void add_out_pair(const MoeGemmArgs& a, int orow, int64_t n, float v0, float v1, bool two,
                          bool pairs_ok, bool add_bias, const float* bias_e, float w) {
  bias_weight_pair<kWeight>(v0, v1, two, add_bias, bias_e, n, w);
  const int64_t off = int64_t(orow) * a.out_stride + n;
  if constexpr (kToWs) {
    float* ws = static_cast<float*>(a.workspace) + int64_t(orow) * a.N + n;
    dev::atomic_add(ws, v0);
    if (two) dev::atomic_add(ws + 1, v1);
  } else if constexpr (IsSame<typename S::OutT, Bf16>::value) {
    uint16_t* out = static_cast<uint16_t*>(a.out) + off;
    if constexpr (kDirect) {
      dev::atomic_add_bf16x2(out, dev::pack_bf16x2(v0, v1));
    } else if (two && pairs_ok) {
      dev::atomic_add_bf16x2(out, uint32_t(f32_to_bf16(v0)) | (uint32_t(f32_to_bf16(v1)) << 16));
    } else {
      dev::atomic_add_bf16(out, f32_to_bf16(v0));
      if (two) dev::atomic_add_bf16(out + 1, f32_to_bf16(v1));
    }
  } else {
    float* out = static_cast<float*>(a.out) + off;
    dev::atomic_add(out, v0);
    if (two) dev::atomic_add(out + 1, v1);
  }
}

// Stage 2 (and the one-stage kernel's second GEMM): bias, routed weight, then
// out[t, n] += value (bf16 pairs by bf16x2 atomic adds, or fp32 atomic adds), or with
// kToWs (split-K stage 2, bf16 out) workspace[t, n] += value in fp32. Split-K passes the
// bias to split 0 only (bias_e null in the others): (p0 + b) w + p1 w = (p0 + p1 + b) w.
// Tiles of block_m >= 64 (prefill) add a bf16 output 8 columns per thread: one 16-byte
// reduction (atomic_add_bf16x8) where they are whole and aligned, else the pairs above. (At
// T = 8192 MiniMax TP=8's stage 2 adds 2 x 10^8 bf16 values: the adds, not its K = 192 of
// MMAs, set its time. The decode tiles keep the pairs: with the wider code nvcc 13.0 spilled
// registers in 24 of their stage-2 kernels.)
template <class S, bool kBias, bool kWeight, bool kToWs = false>
MXF_DEV void accumulate_epilogue(const float* c, const MoeGemmArgs& a, const float* bias_e,
                                 int64_t n0, int64_t N, const BlockRows& rows) {
  const bool add_bias = kBias && (S::kSplitK == 1 || bias_e != nullptr);
  constexpr int PAIRS = S::BN / 2, LDC = S::Tile::kLdC;
  const bool pairs_ok = a.out_stride % 2 == 0 && (reinterpret_cast<uintptr_t>(a.out) & 3u) == 0;
  if constexpr (IsSame<typename S::OutT, Bf16>::value && !kToWs && S::BM >= 64 && S::BN % 8 == 0 && LDC % 4 == 0) {
    constexpr int OCTS = S::BN / 8;
    const bool octs_ok = a.out_stride % 8 == 0 && (reinterpret_cast<uintptr_t>(a.out) & 15u) == 0;
    for (int idx = dev::thread_x(); idx < S::BM * OCTS; idx += S::NT) {
      const int r = idx / OCTS, co = idx % OCTS;
      const int64_t n = n0 + 8 * co;
      if (rows.orow[r] < 0 || n >= N) continue;
      const float* src = c + r * LDC + 8 * co;
      if (octs_ok && n + 8 <= N) {
        float v[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          v[i] = src[i];
          if (add_bias) v[i] += bias_e[n + i];
          if constexpr (kWeight) v[i] *= rows.w[r];
        }
        dev::atomic_add_bf16x8(static_cast<uint16_t*>(a.out) + int64_t(rows.orow[r]) * a.out_stride + n,
                               pack_bf16x8(v));
      } else {
        for (int p = 0; p < 8 && n + p < N; p += 2) {
          const bool two = n + p + 1 < N;
          add_out_pair<S, kWeight, kToWs>(a, rows.orow[r], n + p, src[p], two ? src[p + 1] : 0.0f, two, pairs_ok,
                                          add_bias, bias_e, rows.w[r]);
        }
      }
    }
  } else {
    for (int idx = dev::thread_x(); idx < S::BM * PAIRS; idx += S::NT) {
      const int r = idx / PAIRS, cp = idx % PAIRS;
      const int64_t n = n0 + 2 * cp;
      if (rows.orow[r] < 0 || n >= N) continue;
      const bool two = n + 1 < N;
      const float v0 = c[r * LDC + 2 * cp], v1 = two ? c[r * LDC + 2 * cp + 1] : 0.0f;
      add_out_pair<S, kWeight, kToWs>(a, rows.orow[r], n, v0, v1, two, pairs_ok, add_bias, bias_e, rows.w[r]);
    }
  }
}

// Stage 2 reducing by route rows (MoeGemmArgs::slots, MoeSpec::kStage2Slots): bias and
// routed weight as in accumulate_epilogue, then each route's row, rounded to bf16, is
// stored at its slot row t * topk + slot (stage 2's A row) of `slots`: plain 16-byte
// stores where 8 columns are whole (slots_stride is a multiple of 8), elements at the end
// of a row; no atomics. moe_stage2_slots_sum_kernel then sums each token's rows.
template <class S, bool kBias, bool kWeight>
MXF_DEV void slots_epilogue(const float* c, const MoeGemmArgs& a, const float* bias_e, int64_t n0,
                            const BlockRows& rows) {
  constexpr int OCTS = S::BN / 8, LDC = S::Tile::kLdC;
  for (int idx = dev::thread_x(); idx < S::BM * OCTS; idx += S::NT) {
    const int r = idx / OCTS, co = idx % OCTS;
    const int64_t n = n0 + 8 * co;
    if (rows.arow[r] < 0 || n >= a.N) continue;
    const int m = int(cmin<int64_t>(8, a.N - n));
    const float* src = c + r * LDC + 8 * co;
    float v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      v[i] = src[i];
      if constexpr (kBias) v[i] += i < m ? bias_e[n + i] : 0.0f;
      if constexpr (kWeight) v[i] *= rows.w[r];
    }
    uint16_t* dst = static_cast<uint16_t*>(a.slots) + int64_t(rows.arow[r]) * a.slots_stride + n;
    if (m == 8) {
      dev::st16(dst, pack_bf16x8(v));
    } else {  // (unrolled with a guard: a loop to m indexed v at run time, in local memory)
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (i < m) dst[i] = f32_to_bf16(v[i]);
    }
  }
}

// A stage-2 CTA's staged tile into the output: the slot rows (MoeGemmArgs::slots, uniform
// for the grid) or the adds (accumulate_epilogue; with split-K's workspace).
template <class S>
MXF_DEV void stage2_epilogue(const float* c, const MoeGemmArgs& a, const float* bias_e, int64_t n0,
                             const BlockRows& rows) {
  if constexpr (S::kStage2Slots) {
    if (a.slots != nullptr) {
      slots_epilogue<S, S::kBias, S::kRw == Rw::kStage2>(c, a, bias_e, n0, rows);
      return;
    }
  }
  accumulate_epilogue<S, S::kBias, S::kRw == Rw::kStage2, S::kStage2Ws>(c, a, bias_e, n0, a.N, rows);
}

// Stage 2 on the warpgroup-MMA tiles (kWgmma, kWgmmaRegs) with one K part and a bf16 output
// where whole 16-byte groups of 8 columns fit (rows16_direct: N a multiple of 8, the output
// rows or the slot rows 16-byte aligned): the sums leave without the fp32 staging tile.
// Each warp rounds its block (bias, then routed weight, as accumulate_epilogue) to bf16
// into its own shared-memory region by stmatrix (Mma::stage16), then reads it back 16
// bytes at a time for the 16-byte adds (or the slot rows' stores). Same values and
// roundings as the staged path; per thread about a quarter of its shared-memory
// instructions and no CTA barrier (stage 2 0.95-1.00x at T = 2048-8192: benchmarks/README.md,
// session 24).
template <class S>
MXF_HD bool rows16_direct(const MoeGemmArgs& a) {
  if constexpr (!((S::kWgmma || S::kWgmmaRegs) && S::kKParts == 1 && IsSame<typename S::OutT, Bf16>::value)) {
    return false;
  } else {
    if (a.N % 8 != 0) return false;
    if (S::kStage2Slots && a.slots != nullptr) return aligned16(a.slots) && a.slots_stride % 8 == 0;
    return aligned16(a.out) && a.out_stride % 8 == 0;
  }
}
// `smem`: room for every warp's region (the tile's shared memory, or the conversion area of
// the ring tile's N loop).
template <class S>
MXF_DEV void rows16_epilogue(const typename S::Mma& mma, const MoeGemmArgs& a, const float* bias_e, int64_t n0,
                             const BlockRows& rows, unsigned char* smem) {
  using Mma = typename S::Mma;
  constexpr int P = Mma::kPitch16, OCTS = Mma::kCols16 / 8;
  static_assert(S::NT / 32 * Mma::kRows16 * P <= S::Tile::kSmem - 1024, "the warps' regions fit the tile's shared memory");
  if constexpr (S::kWgmmaNLoop)
    static_assert(S::NT / 32 * Mma::kRows16 * P <= S::Tile::kLoopConvBytes, "... and the N loop's conversion area");
  unsigned char* const region = smem + dev::warp_id() * (Mma::kRows16 * P);
  mma.stage16(region, [&](int r, int c, float v) {
    if constexpr (S::kBias) v += n0 + c < a.N ? bias_e[n0 + c] : 0.0f;
    if constexpr (S::kRw == Rw::kStage2) v *= rows.w[r];
    return v;
  });
  dev::sync_warp();
  const bool to_slots = S::kStage2Slots && a.slots != nullptr;
  const int r0 = Mma::row16_0();
  const int64_t c0 = n0 + Mma::col16_0();
  for (int it = dev::lane_id(); it < Mma::kRows16 * OCTS; it += 32) {
    const int rr = it / OCTS, r = r0 + rr;
    const int64_t n = c0 + 8 * (it % OCTS);
    const int dst = to_slots ? rows.arow[r] : rows.orow[r];
    if (dst < 0 || n >= a.N) continue;
    const dev::Vec16 v = dev::ld16(region + rr * P + 16 * (it % OCTS));
    if (to_slots) dev::st16(static_cast<uint16_t*>(a.slots) + int64_t(dst) * a.slots_stride + n, v);
    else dev::atomic_add_bf16x8(static_cast<uint16_t*>(a.out) + int64_t(dst) * a.out_stride + n, v);
  }
}

// Stage 2 on the swapped tile (MoeSpec::kStage2Pairs): accumulate_epilogue's bias, routed
// weight and atomic adds, from the accumulators of output columns [n0, n0 + BN) (weight
// rows loaded through PairedRows) without a staging tile. Only where every pair is one
// 32-bit add (direct_pairs): a bf16 output with an even N, an even row pitch and 4-byte
// alignment, or an fp32 output; the others take the staging tile (stage2_swap_tiles).
template <class S>
MXF_HD bool direct_pairs(const MoeGemmArgs& a) {
  return !IsSame<typename S::OutT, Bf16>::value ||
         (a.N % 2 == 0 && a.out_stride % 2 == 0 && (reinterpret_cast<uintptr_t>(a.out) & 3u) == 0);
}
// Stage 2 on the swapped tile (kStage2Pairs) runs the N loop where the activations of the
// whole K fit the tile's shared memory (SwapTile::plan) and the output takes direct pairs;
// elsewhere (block_m 32 beyond K = 1536, an odd N or pitch) each CTA runs one N tile with
// the staged epilogue, whatever the instance's n_tiles. The host sizes the grid by the same
// test. (One tile, not a loop of them: in that loop values hoisted out of it spilled.)
// The ring tile's N loop (kWgmmaNLoop) runs where the activations of the whole K fit its
// resident tiles and the sums leave as bf16 rows (rows16_direct); elsewhere one tile per CTA.
template <class S>
MXF_HD int stage2_tiles_per_cta(const MoeGemmArgs& a) {
  if constexpr (S::kWgmmaNLoop) {
    return cdiv(a.K, S::BK) <= S::Tile::kResKTiles && rows16_direct<S>(a) ? S::kNTiles : 0;
  } else if constexpr (!S::kStage2Pairs) {
    return 1;
  } else {
    const int KT = int(cdiv(a.K, S::BK));
    return KT <= S::Tile::plan(a.T * a.topk, KT).chunk_tiles && direct_pairs<S>(a) ? S::kNTiles : 0;
  }
}
// With MoeGemmArgs::slots (kStage2Slots) each pair goes, rounded to bf16, to its route's
// slot row instead (one 4-byte store: n is even, slots_stride a multiple of 8).
template <class S>
MXF_DEV void pairs_epilogue(const typename S::Mma& mma, const MoeGemmArgs& a, const float* bias_e,
                            int64_t n0, const BlockRows& rows) {
  mma.for_each_pair([&](int r, int col, float v0, float v1) {
    const int64_t n = n0 + col;
    const int orow = rows.orow[r];
    if (orow < 0 || n >= a.N) return;
    if constexpr (S::kStage2Slots) {
      if (a.slots != nullptr) {
        const bool two = n + 1 < a.N;
        bias_weight_pair<S::kRw == Rw::kStage2>(v0, v1, two, S::kBias, bias_e, n, rows.w[r]);
        uint16_t* dst = static_cast<uint16_t*>(a.slots) + int64_t(rows.arow[r]) * a.slots_stride + n;
        if (two) *reinterpret_cast<uint32_t*>(dst) = dev::pack_bf16x2(v0, v1);
        else *dst = f32_to_bf16(v0);
        return;
      }
    }
    add_out_pair<S, S::kRw == Rw::kStage2, false, true>(a, orow, n, v0, v1, n + 1 < a.N, true, S::kBias, bias_e,
                                                        rows.w[r]);
  });
}

// ---- kernels -------------------------------------------------------------------------------
// After a CTA's main loop: dependent grids may launch (device.h), the accumulators go to
// the fp32 staging tile `sc`, a barrier, then the test hook's sleep (after the staging:
// before it, the sleep's registers spilled an accumulator tile).
template <class Mma>
MXF_DEV void stage_after_main_loop(const Mma& mma, float* sc, const MoeGemmArgs& a) {
  dev::launch_dependents();
  mma.stage(sc);
  dev::sync_threads();
  if (a.test_delay_ns) dev::sleep_ns(unsigned(a.test_delay_ns));
}

// cluster_k > 1: the CTAs of the cluster have staged their partial sums of one tile in `c`
// (the fp32 staging tile, at the same offset in each CTA's shared memory); rank 0 adds the
// others' into its own, in rank order (results do not depend on timing). False for the
// other ranks, which are then done (they wait until rank 0 has read their tiles).
template <class S>
MXF_DEV bool cluster_reduce(float* c) {
  if constexpr (S::kClusterK == 1) {
    return true;
  } else {
    dev::cluster_sync();  // every CTA's partial tile is staged
    const bool leader = dev::block_z() == 0;
    if (leader) {
      for (int idx = dev::thread_x(); idx < S::BM * S::BN; idx += S::NT) {
        const int at = (idx / S::BN) * S::Tile::kLdC + idx % S::BN;
        float v = c[at];
#pragma unroll
        for (int q = 1; q < S::kClusterK; ++q) v += dev::cluster_peer(c, q)[at];
        c[at] = v;
      }
    }
    dev::cluster_sync();  // the peers' tiles are read; the sums are visible to rank 0's threads
    return leader;
  }
}

// The GEMM of a stage-1 / stage-2 CTA: A rows s_arow x weight rows s_brow of expert e over
// k-tiles [kt0, kt1), into `mma` (zeroed here), through the tile's main loop.
template <class S>
MXF_DEV void moe_gemm(typename S::Mma& mma, const MoeGemmArgs& a, int e, const int* s_arow,
                      const int* s_brow, uint16_t* sa, uint16_t* sb, int kt0, int kt1) {
  typename S::ALoader al(ActRows<typename S::AT>::make(a), s_arow, ActRows<typename S::AT>::kend(a.K));
  const auto rows = S::BRows::make(a.b, a.b_scales, e, a.N, a.K);
  mma.zero();
  if constexpr (S::kWgmma) {
#if defined(MXF_HAS_WGMMA)
    const typename S::BLoader bl(rows, s_brow, S::BRows::kend(a.K));
    gemm_mainloop_wgmma(mma, al, bl, swizzle_base(sa), kt0, kt1);
#endif
  } else if constexpr (S::kWgmmaRegs) {
#if defined(MXF_HAS_WGMMA)
    const typename S::BLoader wl(rows, s_brow, S::BRows::kend(a.K), S::Mma::warp_row0());
    gemm_mainloop_wgmma_regs<typename S::AT>(mma, ActRows<typename S::AT>::make(a), s_arow,
                                             ActRows<typename S::AT>::kend(a.K), wl, swizzle_base(sa), kt0, kt1);
#endif
  } else if constexpr (S::kSwap) {
    // token atoms that hold a route (a block's routes are at most T * topk: plan.rows)
    const auto plan = S::Tile::plan(a.T * a.topk, split_tiles<S::BK>(a.K, S::kKParts));
    int nat = 0;
    for (int r = 0; r < S::BM; ++r)
      if (s_arow[r] >= 0) nat = r / 8 + 1;
    const typename S::BLoader wl(rows, s_brow, S::BRows::kend(a.K), mma.warp_n() * S::Tile::kWarpRows);
    gemm_mainloop_swap<typename S::AT>(mma, ActRows<typename S::AT>::make(a), s_arow,
                                       ActRows<typename S::AT>::kend(a.K), wl, sa, plan,
                                       cmin(nat, plan.rows / 8), kt0, kt1, a.K);
  } else if constexpr (S::kRegB) {
    const typename S::BLoader bl(rows, s_brow, S::BRows::kend(a.K), mma.warp_n() * S::Tile::WN);
    gemm_mainloop_regb<S::BLoader::kStages>(mma, al, bl, sa, sb, kt0, kt1, a.K);
  } else {
    typename S::BLoader bl(rows, s_brow, S::BRows::kend(a.K));
    gemm_mainloop(mma, al, bl, sa, sb, kt0, kt1, a.K);
  }
}

#define MXF_MOE_SHARED(S)                                                   \
  MXF_TILE_SMEM(smem, S::Tile::kSmem);                                      \
  __shared__ int s_arow[S::BM], s_orow[S::BM], s_brow[S::BN];               \
  __shared__ float s_w[S::BM];                                              \
  const BlockRows rows{s_arow, s_orow, s_w};                                \
  uint16_t* const sa = reinterpret_cast<uint16_t*>(smem);                   \
  uint16_t* const sb = reinterpret_cast<uint16_t*>(smem + S::Tile::kSmemA); \
  float* const sc = reinterpret_cast<float*>(smem)

template <class S>
MXF_KERNEL void MXF_LAUNCH_BOUNDS_MIN(S::NT, S::Tile::kCtasPerSm) moe_stage1_kernel(MoeGemmArgs a) {
  MXF_MOE_SHARED(S);
  const GridTile at(cdiv(a.N, S::BN));
  dev::wait_prior_grids();  // (after the arithmetic above: at the top, a tuned tile spilled)
  if constexpr (S::kDirectRoutes)
    if (a.zero_buf != nullptr) zero_buf_stripe(a.zero_buf, a.zero_bytes);
  int e;
  if (!block_rows<S::BM, S::NT, S::kDirectRoutes>(a, at.block, RowIs::kToken, RowIs::kRoute, rows, e)) return;
  const int64_t I = a.N / 2, j0 = int64_t(at.ntile) * (S::BN / 2);
  gate_up_rows<S::BN, S::NT, S::kInterleaved>(s_brow, j0, I);
  dev::sync_threads();

  typename S::Mma mma;
  int kt0, kt1;
  k_range<S::BK>(a.K, S::kKParts, dev::block_z(), kt0, kt1);
  moe_gemm<S>(mma, a, e, s_arow, s_brow, sa, sb, kt0, kt1);
  stage_after_main_loop(mma, sc, a);
  if (!cluster_reduce<S>(sc)) return;
  if constexpr (S::kSplitK == 1)
    stage1_epilogue<S>(sc, a, e, j0, rows, s_brow);
  else
    splitk_accumulate<S>(sc, a, rows, s_brow);
}

// Split-K stage 1, second kernel: the summed partials -> the stage-1 epilogue.
template <class S>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(S::NT) moe_stage1_splitk_epilogue_kernel(MoeGemmArgs a) {
  MXF_MOE_SHARED(S);
  dev::wait_prior_grids();
  dev::launch_dependents();
  (void)sa;
  (void)sb;
  const GridTile at(cdiv(a.N, S::BN));
  int e;
  if (!block_rows<S::BM, S::NT, S::kDirectRoutes>(a, at.block, RowIs::kToken, RowIs::kRoute, rows, e)) return;
  const int64_t I = a.N / 2, j0 = int64_t(at.ntile) * (S::BN / 2);
  gate_up_rows<S::BN, S::NT, S::kInterleaved>(s_brow, j0, I);
  dev::sync_threads();
  const float* ws = static_cast<const float*>(a.workspace);
  for (int idx = dev::thread_x(); idx < S::BM * S::BN; idx += S::NT) {
    const int r = idx / S::BN, col = idx % S::BN;
    sc[r * S::Tile::kLdC + col] =
        (s_orow[r] >= 0 && s_brow[col] >= 0) ? ws[int64_t(s_orow[r]) * a.N + s_brow[col]] : 0.0f;
  }
  dev::sync_threads();
  stage1_epilogue<S>(sc, a, e, j0, rows, s_brow);
}

// Stage 2 on the swapped tile with one warp group (MoeSpec::kStage2Pairs), CTA of block
// `rows` (expert e). N loop (stage2_tiles_per_cta > 0): output tiles [nt0, nt1) one after
// another, the activations loaded once, the weight loads running ahead across tiles
// (gemm_mainloop_swap_tiles) and each tile's sums going from registers into the output
// (pairs_epilogue). Otherwise the one tile nt0, through the chunked main loop where K needs
// it and the staged epilogue (the activations share shared memory with the staging tile).
template <class S>
MXF_DEV void stage2_swap_tiles(const MoeGemmArgs& a, int e, const BlockRows& rows, uint16_t* sa, float* sc,
                               bool n_loop, int nt0, int nt1) {
  using Tile = typename S::Tile;
  const int KT = int(cdiv(a.K, S::BK));
  const auto plan = Tile::plan(a.T * a.topk, KT);
  int nat = 0;  // token atoms that hold a route
  for (int r = 0; r < S::BM; ++r)
    if (rows.arow[r] >= 0) nat = r / 8 + 1;
  nat = cmin(nat, plan.rows / 8);
  // (the lambdas recompute what they need from the kernel's arguments: kept live across
  // the loop, those values cost registers that the weight stages need)
  const auto loader_of = [&](auto row_map) {
    return typename S::BLoader(S::BRows::make(a.b, a.b_scales, e, a.N, a.K), row_map, S::BRows::kend(a.K),
                               S::Mma::warp_n() * Tile::kWarpRows);
  };
  const auto bias_of = [&] { return S::kBias ? a.bias + int64_t(e) * a.N : nullptr; };
  const GatherRows act = ActRows<typename S::AT>::make(a);
  const int64_t akend = ActRows<typename S::AT>::kend(a.K);
  typename S::Mma mma;
  if (n_loop) {  // (uniform for the grid)
    const auto paired = [&](int i) { return loader_of(PairedRows{int64_t(nt0 + i) * S::BN, a.N}); };
    gemm_mainloop_swap_tiles<typename S::AT, Tile, typename S::BLoader>(
        mma, act, rows.arow, akend, paired, sa, plan, nat, nt1 - nt0, KT, a.K, [&](int i) {
          if (i == 0) {  // (after the first main loop: device.h; the test hook's sleep)
            dev::launch_dependents();
            if (a.test_delay_ns) dev::sleep_ns(unsigned(a.test_delay_ns));
          }
          pairs_epilogue<S>(mma, a, bias_of(), int64_t(nt0 + i) * S::BN, rows);
        });
  } else {
    const int64_t n0 = int64_t(nt0) * S::BN;
    mma.zero();
    gemm_mainloop_swap<typename S::AT>(mma, act, rows.arow, akend, loader_of(PlainRows{n0, a.N}), sa, plan, nat, 0,
                                       KT, a.K);  // (ends with a barrier)
    stage_after_main_loop(mma, sc, a);
    stage2_epilogue<S>(sc, a, bias_of(), n0, rows);
  }
}

#if defined(MXF_HAS_WGMMA)
// Stage 2's N loop on the warpgroup-MMA ring tile (kWgmmaNLoop, stage2_tiles_per_cta > 0):
// output tiles [nt0, nt1) of block `rows` (expert e) one after another, the activations
// copied (and converted) once for all of them, the next tile's weights loading during
// this tile's epilogue (gemm_mainloop_wgmma_tiles), each tile's sums leaving as bf16 rows.
template <class S>
MXF_DEV void stage2_wgmma_tiles(const MoeGemmArgs& a, int e, const BlockRows& rows, unsigned char* smem, int nt0,
                                int nt1) {
  const typename S::ALoader al(ActRows<typename S::AT>::make(a), rows.arow, ActRows<typename S::AT>::kend(a.K));
  const auto wrows = S::BRows::make(a.b, a.b_scales, e, a.N, a.K);
  const int64_t bkend = S::BRows::kend(a.K);
  const auto b_of = [&](int t) {
    return typename S::BLoader(wrows, PlainRows{int64_t(nt0 + t) * S::BN, a.N}, bkend);
  };
  typename S::Mma mma;
  mma.zero();
  gemm_mainloop_wgmma_tiles(mma, al, b_of, smem, int(cdiv(a.K, S::BK)), nt1 - nt0, [&](int t, unsigned char* area) {
    if (t == 0) {  // (after the first tile's main loop: device.h; the test hook's sleep)
      dev::launch_dependents();
      if (a.test_delay_ns) dev::sleep_ns(unsigned(a.test_delay_ns));
    }
    rows16_epilogue<S>(mma, a, S::kBias ? a.bias + int64_t(e) * a.N : nullptr, int64_t(nt0 + t) * S::BN, rows, area);
  });
}
#endif

template <class S>
MXF_KERNEL void MXF_LAUNCH_BOUNDS_MIN(S::NT, S::Tile::kCtasPerSm) moe_stage2_kernel(MoeGemmArgs a) {
  MXF_MOE_SHARED(S);
  const int per_cta = stage2_tiles_per_cta<S>(a);  // (0: one tile, staged)
  const GridTile at(cdiv(cdiv(a.N, S::BN), cmax(per_cta, 1)));
  dev::wait_prior_grids();  // (after the arithmetic above: at the top, a tuned tile spilled)
  int e;
  if (!block_rows<S::BM, S::NT, S::kDirectRoutes>(a, at.block, RowIs::kRoute, RowIs::kToken, rows, e)) return;
  if constexpr (S::kStage2Pairs) {
    (void)sb;
    dev::sync_threads();
    const int nt0 = at.ntile * cmax(per_cta, 1);
    stage2_swap_tiles<S>(a, e, rows, sa, sc, per_cta > 0, nt0, cmin(int(cdiv(a.N, S::BN)), nt0 + per_cta));
  } else {
#if defined(MXF_HAS_WGMMA)
    if constexpr (S::kWgmmaNLoop) {
      if (per_cta > 0) {  // (uniform for the grid)
        dev::sync_threads();
        const int nt0 = at.ntile * per_cta;
        stage2_wgmma_tiles<S>(a, e, rows, swizzle_base(sa), nt0, cmin(int(cdiv(a.N, S::BN)), nt0 + per_cta));
        return;
      }
    }
#endif
    const int64_t n0 = int64_t(at.ntile) * S::BN;
    plain_rows<S::BN, S::NT>(s_brow, n0, a.N);
    dev::sync_threads();

    typename S::Mma mma;
    int kt0 = 0, kt1 = int(cdiv(a.K, S::BK));
    if constexpr (S::kKParts > 1) {
      k_range<S::BK>(a.K, S::kKParts, dev::block_z(), kt0, kt1);
      // (uniform for the CTA; split 0, which adds the bias, never is; a cluster's CTAs all
      // reach its barriers: an empty range stages zeros)
      if (S::kSplitK > 1 && kt0 >= kt1) return;
    }
    moe_gemm<S>(mma, a, e, s_arow, s_brow, sa, sb, kt0, kt1);
#if defined(MXF_HAS_WGMMA)
    if constexpr (S::kWgmma || S::kWgmmaRegs) {
      if (rows16_direct<S>(a)) {  // (uniform for the grid; the main loop ended with a barrier)
        dev::launch_dependents();
        if (a.test_delay_ns) dev::sleep_ns(unsigned(a.test_delay_ns));
        rows16_epilogue<S>(mma, a, S::kBias ? a.bias + int64_t(e) * a.N : nullptr, n0, rows, swizzle_base(sa));
        return;
      }
    }
#endif
    stage_after_main_loop(mma, sc, a);
    if (!cluster_reduce<S>(sc)) return;
    const bool bias_here = S::kBias && (S::kSplitK == 1 || dev::block_z() == 0);
    stage2_epilogue<S>(sc, a, bias_here ? a.bias + int64_t(e) * a.N : nullptr, n0, rows);
  }
}

// Stage 2 by route rows, second kernel: out[t, n] = bf16((out[t, n] if slots_accumulate,
// else 0) + the sum over slots j = 0 .. topk-1 whose route is kept (route_kept) of
// slots[t * topk + j, n]), in fp32 in slot order: deterministic, one rounding. A CTA per
// token (grid-stride), 8 columns per thread: 16-byte loads of the slot rows (each read
// once) and, where out's rows are 16-byte aligned, 16-byte stores.
constexpr int kSlotsSumThreads = 128;
template <class S>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(kSlotsSumThreads) moe_stage2_slots_sum_kernel(MoeGemmArgs a) {
  dev::wait_prior_grids();
  dev::launch_dependents();
  const uint16_t* slots = static_cast<const uint16_t*>(a.slots);
  uint16_t* out = static_cast<uint16_t*>(a.out);
  const bool out16 = a.out_stride % 8 == 0 && (reinterpret_cast<uintptr_t>(a.out) & 15u) == 0;
  const int64_t octs = cdiv(a.N, 8);
  for (int64_t t = dev::block_x(); t < a.T; t += dev::grid_dim_x()) {
    uint16_t* orow = out + t * a.out_stride;
    for (int64_t co = dev::thread_x(); co < octs; co += kSlotsSumThreads) {
      const int64_t n = 8 * co;
      const int m = int(cmin<int64_t>(8, a.N - n));
      float s[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) s[i] = 0.0f;
      if (a.slots_accumulate) {
        if (m == 8 && out16) {
          unpack_bf16x8(dev::ld16(orow + n), s);
        } else {
#pragma unroll
          for (int i = 0; i < 8; ++i)
            if (i < m) s[i] = bf16_to_f32(orow[n + i]);
        }
      }
      for (int j = 0; j < a.topk; ++j) {
        if (!route_kept(a.topk_ids[t * a.topk + j], a.E, a.expert_mask)) continue;
        const uint16_t* src = slots + (t * a.topk + j) * a.slots_stride + n;
        if (m == 8) {
          float v[8];
          unpack_bf16x8(dev::ld16(src), v);
#pragma unroll
          for (int i = 0; i < 8; ++i) s[i] += v[i];
        } else {
#pragma unroll
          for (int i = 0; i < 8; ++i)
            if (i < m) s[i] += bf16_to_f32(src[i]);
        }
      }
      if (m == 8 && out16) {
        dev::st16(orow + n, pack_bf16x8(s));
      } else {  // (the guarded, unrolled form keeps s in registers)
#pragma unroll
        for (int i = 0; i < 8; ++i)
          if (i < m) orow[n + i] = f32_to_bf16(s[i]);
      }
    }
  }
}

// The grids of stage 2's second kernels (split-K's finalize, the slot sums), grid-stride
// loops: a fixed bound (~2 k CTAs fill a GPU of this size class: 132 SMs x 8 to 16), not
// dev::sm_count(), which the AMD host runtime does not define (device_amd.h): a reference
// to it from an AMD instance left the module with an undefined symbol.
constexpr int64_t kSecondKernelMaxCtas = 2048;

// Split-K stage 2 with a bf16 output, second kernel: out[t, n] = bf16(out[t, n] + ws[t, n])
// over every token (a token without routes adds 0, which leaves its bf16 value as it was).
constexpr int kFinalizeThreads = 256;
template <class S>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(kFinalizeThreads) moe_stage2_splitk_finalize_kernel(MoeGemmArgs a) {
  dev::wait_prior_grids();
  dev::launch_dependents();
  const float* ws = static_cast<const float*>(a.workspace);
  uint16_t* out = static_cast<uint16_t*>(a.out);
  const int64_t total = a.T * a.N, step = int64_t(dev::grid_dim_x()) * kFinalizeThreads;
  for (int64_t i = int64_t(dev::block_x()) * kFinalizeThreads + dev::thread_x(); i < total; i += step) {
    uint16_t* o = out + (i / a.N) * a.out_stride + i % a.N;
    *o = f32_to_bf16(bf16_to_f32(*o) + ws[i]);
  }
}

// Shared memory of the one-stage kernel: the bf16 intermediate [BM][pitch], then the tile.
template <class S>
MXF_HD int64_t onestage_inter_pitch(int64_t I) { return round_up(I, 16) + 8; }
template <class S>
MXF_HD int64_t onestage_smem_bytes(int64_t I) {
  return 2 * S::BM * onestage_inter_pitch<S>(I) + S::Tile::kSmem;
}

// (One CTA per SM: the intermediate fills most of shared memory, so registers are free.)
// The one-stage kernel has the shared-memory B path only (moe_1stage has no b_path field):
// its second GEMM reads the intermediate as it lies, in natural K order.
template <class S>
MXF_KERNEL void MXF_LAUNCH_BOUNDS_MIN(S::NT, 1) moe_1stage_kernel(MoeGemmArgs a) {
  static_assert(!S::kRegB && !S::kWgmma && !S::kSwap && !S::kWgmmaRegs, "the one-stage kernel has the mma.sync shared-memory path only");
  MXF_DYNAMIC_SMEM(smem);
  __shared__ int s_arow[S::BM], s_orow[S::BM], s_brow[S::BN];
  __shared__ float s_w[S::BM];
  const BlockRows rows{s_arow, s_orow, s_w};
  dev::wait_prior_grids();
  dev::launch_dependents();
  int e;
  if (!block_rows<S::BM, S::NT, false>(a, dev::block_x(), RowIs::kToken, RowIs::kToken, rows, e)) return;
  const int64_t I = a.N / 2, H = a.N2;
  const int pitch = int(onestage_inter_pitch<S>(I));
  uint16_t* const inter = reinterpret_cast<uint16_t*>(smem);
  unsigned char* const tiles = smem + 2 * S::BM * pitch;
  uint16_t* const sa = reinterpret_cast<uint16_t*>(tiles);
  uint16_t* const sb = reinterpret_cast<uint16_t*>(tiles + S::Tile::kSmemA);
  float* const sc = reinterpret_cast<float*>(tiles);
  // Columns [I, round_up(I, 16)) are read by the last k16 step of the second GEMM.
  const int ipad = int(round_up(I, 16));
  for (int idx = dev::thread_x(); idx < S::BM * (ipad - I); idx += S::NT)
    inter[(idx / (ipad - I)) * pitch + I + idx % (ipad - I)] = 0;

  // 1) intermediate = act(A * w1^T + bias1) (* routed weight), rounded to bf16 exactly as
  //    moe_stage1 writes it, one N tile (block_n / 2 columns) at a time.
  {
    typename S::ALoader al(ActRows<typename S::AT>::make(a), s_arow, ActRows<typename S::AT>::kend(a.K));
    const float* bias_e = S::kBias ? a.bias + int64_t(e) * a.N : nullptr;
    for (int64_t j0 = 0; j0 < I; j0 += S::BN / 2) {
      gate_up_rows<S::BN, S::NT, S::kInterleaved>(s_brow, j0, I);
      dev::sync_threads();
      typename S::BLoader bl(S::BRows::make(a.b, a.b_scales, e, a.N, a.K), s_brow, S::BRows::kend(a.K));
      WarpMma<typename S::Tile, typename S::InT> mma;
      mma.zero();
      gemm_mainloop(mma, al, bl, sa, sb, 0, int(cdiv(a.K, S::BK)), a.K);
      mma.stage(sc);
      dev::sync_threads();
      for (int idx = dev::thread_x(); idx < S::BM * (S::BN / 2); idx += S::NT) {
        const int r = idx / (S::BN / 2), jj = idx % (S::BN / 2);
        if (s_brow[2 * jj] < 0) continue;
        const float v = rows.orow[r] >= 0 ? gated_value<S>(sc, r, jj, bias_e, s_brow, s_w[r]) : 0.0f;
        inter[r * pitch + j0 + jj] = f32_to_bf16(v);
      }
      dev::sync_threads();
    }
  }
  // 2) out[t] += (intermediate * w2^T + bias2) (* routed weight), one N2 tile at a time.
  {
    const ResidentA ra{inter, pitch};
    ResidentA al = ra;
    const float* bias_e = S::kBias ? a.bias2 + int64_t(e) * H : nullptr;
    for (int64_t n0 = 0; n0 < H; n0 += S::BN) {
      plain_rows<S::BN, S::NT>(s_brow, n0, H);
      dev::sync_threads();
      typename S::B2Loader bl(S::BRows::make(a.b2, a.b2_scales, e, H, I), s_brow, S::BRows::kend(I));
      WarpMma<typename S::Tile, Bf16> mma;
      mma.zero();
      gemm_mainloop(mma, al, bl, sa, sb, 0, int(cdiv(I, S::BK)), I);
      mma.stage(sc);
      dev::sync_threads();
      accumulate_epilogue<S, S::kBias, S::kRw == Rw::kStage2>(sc, a, bias_e, n0, H, rows);
      dev::sync_threads();
    }
  }
}

// ---- host launchers ------------------------------------------------------------------------
#if MXF_HOST_LAUNCH
enum class GemmOp { kStage1, kStage2, kOneStage };

// The wgmma ring tile (S::kWgmma) addresses its operands' chunks by 32-bit offsets from row
// 0 (gemm.cuh, RingOperand): data in 16-byte units, scales in bytes. Rows of the
// activations: at most T * topk (stage 2's route rows); its weights are pk_fp4, one
// expert's [N, K] in S::Layout. Other tiles have no such limit.
template <class S>
bool ring_offsets_fit(const MoeGemmArgs& a) {
  if constexpr (!S::kWgmma) {
    return true;
  } else {
    constexpr bool a_mx = Operand<typename S::AT>::kMx;
    const int64_t rows = a.T * a.topk;
    return rows * (a_mx ? a.a_stride : 2 * a.a_stride) < (int64_t(1) << 36) &&
           (!a_mx || rows * a.a_scale_stride < (int64_t(1) << 32)) &&
           S::Layout::w_bytes(a.N, a.K) < (int64_t(1) << 36) && S::Layout::s_bytes(a.N, a.K) < (int64_t(1) << 32);
  }
}

template <class S>
bool gemm_args_bad(const MoeGemmArgs& a, GemmOp op, Check& c) {
  constexpr bool a_mx = Operand<typename S::AT>::kMx, b_mx = Operand<typename S::BT>::kMx;
  if (c.fail(a.T < 0 || a.T > kTokenMask, "T must be in [0, 2^24)") ||
      c.fail(a.topk < 1 || a.topk > 64, "topk must be in [1, 64]") ||
      c.fail(a.E < 1, "E must be >= 1") || c.fail(a.N < 1 || a.K < 1, "N and K must be >= 1") ||
      c.fail(a.max_blocks < 0 || a.max_blocks > 0x7fffffff, "max_blocks out of range") ||
      c.fail(op != GemmOp::kStage2 && a.N % 2 != 0, "N (= 2 * I) must be even") ||
      c.fail(op == GemmOp::kOneStage && a.N2 < 1, "N2 must be >= 1") ||
      c.fail(cdiv(op == GemmOp::kOneStage ? a.N2 : a.N, S::BN) > 65535, "N too large for the grid") ||
      c.fail(cmin<int64_t>(a.max_blocks, a.T * a.topk) * (op == GemmOp::kOneStage ? 1 : cdiv(a.N, S::BN)) >
                 0x7fffffff,
             "too many (block, N tile) pairs for the grid (T * topk x N / block_n >= 2^31)") ||
      c.fail(a.rounding < 0 || a.rounding > 3, "rounding must be 0..3") ||
      c.fail(!ring_offsets_fit<S>(a),
             "operands too large for the wgmma ring tile's 32-bit chunk offsets (the activations' rows, "
             "or one expert's weights, must span below 64 GiB, their scales below 4 GiB)"))
    return true;
  if (c.null(a.a, "a is null") || c.null(a.b, "b (weights) is null") ||
      (a_mx && c.null(a.a_scales, "a_scales is null")) ||
      (b_mx && c.null(a.b_scales, "b_scales is null")) ||
      (S::kBias && c.null(a.bias, "bias is null (instance has bias)")) ||
      c.null(a.out, "out is null"))
    return true;
  if (a.direct_routes
          ? (c.fail(op == GemmOp::kOneStage,
                    "moe_1stage takes sorted routing (its out is zeroed by the sort launch)") ||
             c.fail(!S::kDirectRoutes,
                    "direct routing runs on the decode tiles (b_path regs or swap); this instance reads "
                    "sorted blocks only") ||
             c.fail(a.max_blocks < a.T * a.topk, "direct routing needs max_blocks >= T * topk") ||
             c.null(a.topk_ids, "topk_ids is null (direct routing)") ||
             c.null(a.topk_weights, "topk_weights is null (direct routing)"))
          : (c.null(a.sorted_ids, "sorted_ids is null") || c.null(a.sorted_weights, "sorted_weights is null") ||
             c.null(a.sorted_expert_ids, "sorted_expert_ids is null") ||
             c.null(a.num_valid_ids, "num_valid_ids is null")))
    return true;
  if (c.fail(a.zero_bytes < 0 || (a.zero_bytes > 0 && a.zero_buf == nullptr),
             "zero_buf is null but zero_bytes > 0") ||
      c.fail(a.zero_buf != nullptr && op != GemmOp::kStage1, "zero_buf is moe_stage1's (it zeroes it)") ||
      c.fail(a.zero_buf != nullptr && !S::kDirectRoutes,
             "zero_buf is zeroed by the decode tiles (b_path regs or swap) only; this instance has none"))
    return true;
  if (op == GemmOp::kStage1 && IsSame<typename S::OutT, Fp4Mx>::value &&
      c.null(a.out_scales, "out_scales is null (pk_fp4 output)"))
    return true;
  if (op == GemmOp::kOneStage &&
      (c.null(a.b2, "b2 (w2) is null") || (b_mx && c.null(a.b2_scales, "b2_scales is null")) ||
       (S::kBias && c.null(a.bias2, "bias2 is null (instance has bias)"))))
    return true;
  if (op == GemmOp::kStage1 && S::kSplitK > 1 &&
      (c.null(a.workspace, "workspace is null (split_k > 1)") ||
       c.fail(a.workspace_bytes < 4 * a.T * a.topk * a.N,
              "workspace too small: split_k needs 4 * T * topk * N bytes")))
    return true;
  if (a.slots != nullptr &&
      (c.fail(op != GemmOp::kStage2 || !S::kStage2Slots,
              "slots (stage 2 by route rows) needs a moe_stage2 instance with split_k 1, cluster_k 1, "
              "block_n % 8 == 0 and a bf16 out") ||
       c.null(a.topk_ids, "topk_ids is null (slots)") ||
       c.fail(a.slots_stride < a.N || a.slots_stride % 8 != 0, "slots_stride must be >= N and a multiple of 8") ||
       c.fail((reinterpret_cast<uintptr_t>(a.slots) & 15u) != 0, "slots must be 16-byte aligned")))
    return true;
  if (op == GemmOp::kStage2 && S::kStage2Ws &&
      (c.null(a.workspace, "workspace is null (split_k > 1, bf16 out)") ||
       c.fail(a.workspace_bytes < 4 * a.T * a.N,
              "workspace too small: stage-2 split_k with a bf16 out needs 4 * T * N bytes")))
    return true;
  return false;
}

// CTAs along grid x: the sorted blocks that can hold work. Every block below
// num_valid_ids[0] / block_m holds at least one route (the sorter pads each non-empty
// expert to whole blocks and lays the experts out from block 0), so there are at most
// min(T * topk, max_blocks) of them; the CTAs past that would only read their block and
// exit, and at decode they were most of the grid (T = 1, topk 8, E = 256, block_m 16: 8
// blocks of work, 256 entries in sorted_expert_ids).
inline unsigned grid_blocks(const MoeGemmArgs& a) {
  return unsigned(cmin<int64_t>(a.max_blocks, a.T * a.topk));
}

// The kernel of op OP for spec K, and its dynamic shared memory (the tile's, for the two
// stages).
template <GemmOp OP, class K>
struct MoeKernel;
template <class K>
struct TileSmem {
  static size_t smem(const MoeGemmArgs& a) {
    if constexpr (K::kSwap)  // (the activation rows the launch can need: SwapTile::plan)
      return size_t(K::Tile::plan(a.T * a.topk, split_tiles<K::BK>(a.K, K::kKParts)).smem());
    else
      return dev::tile_smem_at_launch(K::Tile::kSmem);
  }
};
template <class K>
struct MoeKernel<GemmOp::kStage1, K> : TileSmem<K> {
  static auto fn() { return MXF_KERNEL_REF(moe_stage1_kernel, K); }
  static constexpr const char* kWhat = "moe_stage1 launch";
};
template <class K>
struct MoeKernel<GemmOp::kStage2, K> : TileSmem<K> {
  static auto fn() { return MXF_KERNEL_REF(moe_stage2_kernel, K); }
  static constexpr const char* kWhat = "moe_stage2 launch";
};
template <class K>
struct MoeKernel<GemmOp::kOneStage, K> {
  static auto fn() { return MXF_KERNEL_REF(moe_1stage_kernel, K); }
  static size_t smem(const MoeGemmArgs& a) { return size_t(onestage_smem_bytes<K>(a.N / 2)); }
  static constexpr const char* kWhat = "moe_1stage launch";
};

// Launch S, or S::Decode where the grid has at most kFewCtasPerSm CTAs per SM: then the
// GPU is far from full and a CTA's k-tile chain is its time, which the decode variant's
// extra warp groups shorten; with more CTAs the extra threads and the staging reduction
// cost more than they give. Measured on the H100 (2026-11-23, benchmarks/README.md):
// decode warp groups on every block_m <= 32 launch made T <= 8 1.3-1.9x faster but some
// T >= 16 launches (thousands of CTAs) up to 15 % slower.
constexpr int kFewCtasPerSm = 4;
// (A decode variant whose tile is the instance's own, as for a register-B tile with
// block_k 128, which has one k group per k-tile to share, is not a second kernel.)
template <GemmOp OP, class S>
Status launch_gemm(dim3 grid, const MoeGemmArgs& a) {
  using D = typename S::Decode;
  using KS = MoeKernel<OP, S>;
  using KD = MoeKernel<OP, D>;
  if constexpr (S::kClusterK > 1)  // (the swapped tile: no decode variant) clusters along z
    return dev::launch_cluster(KS::fn(), grid, dim3(S::NT), dim3(1, 1, S::kClusterK), KS::smem(a),
                               dev::stream_of(a.stream), KS::kWhat, a);
  if constexpr (!IsSame<typename S::Tile, typename D::Tile>::value) {
    if (int64_t(grid.x) * grid.y * grid.z <= int64_t(kFewCtasPerSm) * dev::sm_count())
      return dev::launch(KD::fn(), grid, dim3(D::NT), KD::smem(a), dev::stream_of(a.stream),
                         KD::kWhat, a);
  }
  return dev::launch(KS::fn(), grid, dim3(S::NT), KS::smem(a), dev::stream_of(a.stream), KS::kWhat, a);
}

template <class S>
Status launch_moe_stage1(const MoeGemmArgs& a) {
  Check c;
  if (gemm_args_bad<S>(a, GemmOp::kStage1, c)) return c.st;
  if (a.T == 0 || a.max_blocks == 0) return Status::ok();
  const dev::Stream st = dev::stream_of(a.stream);
  const dim3 grid(unsigned(grid_blocks(a) * cdiv(a.N, S::BN)), 1, unsigned(S::kKParts));
  if constexpr (S::kSplitK > 1) {
    Status s = dev::memset_async(a.workspace, 4 * a.T * a.topk * a.N, st, "split-K workspace memset");
    if (s.code != 0) return s;
  }
  Status s = launch_gemm<GemmOp::kStage1, S>(grid, a);
  if constexpr (S::kSplitK > 1) {
    if (s.code == 0)
      s = dev::launch(MXF_KERNEL_REF(moe_stage1_splitk_epilogue_kernel, S), dim3(grid.x),
                      dim3(S::NT), dev::tile_smem_at_launch(S::Tile::kSmem), st,
                      "moe_stage1 split-K epilogue launch", a);
  }
  return s;
}

template <class S>
Status launch_moe_stage2(const MoeGemmArgs& a) {
  Check c;
  if (gemm_args_bad<S>(a, GemmOp::kStage2, c)) return c.st;
  if (a.T == 0 || a.max_blocks == 0) return Status::ok();
  const int per_cta = cmax(stage2_tiles_per_cta<S>(a), 1);
  const dim3 grid(unsigned(grid_blocks(a) * cdiv(cdiv(a.N, S::BN), per_cta)), 1, unsigned(S::kKParts));
  if constexpr (S::kStage2Slots) {
    if (a.slots != nullptr) {
      Status s = launch_gemm<GemmOp::kStage2, S>(grid, a);
      const int64_t ctas = cmin<int64_t>(a.T, kSecondKernelMaxCtas);
      if (s.code == 0)
        s = dev::launch(MXF_KERNEL_REF(moe_stage2_slots_sum_kernel, S), dim3(unsigned(ctas)), dim3(kSlotsSumThreads),
                        0, dev::stream_of(a.stream), "moe_stage2 slot sum launch", a);
      return s;
    }
  }
  if constexpr (!S::kStage2Ws) {
    return launch_gemm<GemmOp::kStage2, S>(grid, a);
  } else {
    const dev::Stream st = dev::stream_of(a.stream);
    Status s = dev::memset_async(a.workspace, 4 * a.T * a.N, st, "stage-2 split-K workspace memset");
    if (s.code == 0) s = launch_gemm<GemmOp::kStage2, S>(grid, a);
    // (a grid-stride loop, kSecondKernelMaxCtas)
    const int64_t ctas = cmin<int64_t>(cdiv(a.T * a.N, kFinalizeThreads), kSecondKernelMaxCtas);
    if (s.code == 0)
      s = dev::launch(MXF_KERNEL_REF(moe_stage2_splitk_finalize_kernel, S), dim3(unsigned(ctas)),
                      dim3(kFinalizeThreads), 0, st, "moe_stage2 split-K finalize launch", a);
    return s;
  }
}

template <class S>
Status launch_moe_1stage(const MoeGemmArgs& a) {
  Check c;
  if (gemm_args_bad<S>(a, GemmOp::kOneStage, c)) return c.st;
  if (a.T == 0 || a.max_blocks == 0) return Status::ok();
  const int64_t smem = onestage_smem_bytes<S>(a.N / 2);
  if (smem > S::Arch::kMaxSmem)
    return dev::errorf("moe_1stage: I = %lld needs %lld bytes of shared memory with block_m %d "
                       "(limit %d); use the two-stage path",
                       (long long)(a.N / 2), (long long)smem, S::BM, S::Arch::kMaxSmem);
  return launch_gemm<GemmOp::kOneStage, S>(dim3(grid_blocks(a)), a);
}
#endif

}  // namespace gpu
}  // namespace mxf
