// moe_stage1, moe_stage2 and moe_1stage on the CPU (docs/ops.md): drivers and epilogues
// over the block GEMM of gemm.h.
//
// An instance passes a Cfg (rendered by templates/cpu/*.cpp.j2, in an anonymous namespace):
//   using A, B, Out, Layout;                    dtype tags (types.h), weight layout (layout.h)
//   kBlockM, kBlockN, kBlockK, kSplitK;         tiles
//   kAct, kInterleaved, kBias;                  stage-1 activation, w1 gate/up rows, biases
//   kWeightStage1, kWeightStage2;               where the routed weight is multiplied
//
// Stage 1 N tile: block_n rows of w1 = block_n/2 intermediate columns j, i.e. the gate and
// the up row of each j (so the activation sees both; block_n/2 >= 32 keeps whole scale
// blocks of a re-quantized output in one tile). Work items (sorted block, split, group of
// N tiles) run in parallel; every output row belongs to one route, so there are no races.
//
// Stage 1 split_k > 1: K tiles are cut into split_k contiguous ranges of cdiv(k_tiles,
// split_k) tiles (the last ranges may be short or empty). Split s writes its fp32 partial
// sums of w1 row n for route t*topk+slot to
//     workspace[(s * T*topk + t*topk + slot) * N + n]          (N = 2I)
// then a second pass sums the split_k slabs in order s = 0, 1, ... and runs the epilogue.
//     workspace_bytes >= split_k * T * topk * N * 4    (checked; not zeroed, not read
//                                                        where no route wrote)
//
// Stage 2: each thread owns a contiguous range of N tiles and walks every sorted block in
// order, so out[t] receives its routes' additions in sorted order: deterministic, no
// atomics. bf16 out accumulates in the bf16 buffer (read, add in fp32, round).
// Stage 2 split_k > 1 (16-bit activations only): the same K ranges as stage 1, run one
// after another per block; the bias joins split 0, the routed weight every split. A bf16
// out sums into workspace [T, N] fp32 (workspace_bytes >= T * N * 4, zeroed here) and is
// added into out once at the end, so out is rounded once as on the GPUs; fp32 out adds
// each split's partial directly.
//
// 1stage: stage 1 into a bf16 [T*topk, I] buffer allocated here (no workspace), then
// stage 2 on it with a bf16 A operand: the same code as the two stages, so the result is
// exactly stage2(stage1) with the same tiles.
#pragma once
#include <vector>

#include "mxforge/cpu/base.h"
#include "mxforge/cpu/gemm.h"
#include "mxforge/cpu/load.h"
#include "mxforge/cpu/quant.h"

namespace mxf {
namespace cpu {

enum class Stage { k1, k2, kOne };

// ---- argument checks ----------------------------------------------------------------------

template <class Tag>
inline bool row_fits(int64_t stride, int64_t K) {  // a row of K elements fits in `stride`
  if constexpr (Tag::kMx) return stride >= round_up(K, 32) / Tag::kElemsPerByte;
  else return stride >= K;
}

template <class Cfg, Stage S>
inline Status check_gemm_args(const MoeGemmArgs& a) {
  using A = typename Cfg::A;
  using B = typename Cfg::B;
  if (a.a == nullptr || a.b == nullptr || a.sorted_ids == nullptr ||
      a.sorted_expert_ids == nullptr || a.num_valid_ids == nullptr || a.out == nullptr)
    return Status::error("a, b, sorted_ids, sorted_expert_ids, num_valid_ids and out are required");
  if (S == Stage::kOne && a.direct_routes)
    return Status::error("moe_1stage takes sorted routing (its out is zeroed by the sort launch)");
  if (a.zero_bytes < 0 || (a.zero_bytes > 0 && a.zero_buf == nullptr))
    return Status::error("zero_buf is null but zero_bytes > 0");
  if (S != Stage::k1 && a.zero_buf != nullptr) return Status::error("zero_buf is moe_stage1's (it zeroes it)");
  if constexpr (A::kMx)
    if (a.a_scales == nullptr) return Status::error("a_scales is required (MX activations)");
  if constexpr (B::kMx)
    if (a.b_scales == nullptr) return Status::error("b_scales is required (MX weights)");
  if (a.T < 0 || a.T > kTokenMask) return Status::error("T must be in [0, 2^24)");
  if (a.topk < 1 || a.topk > 127 || a.E < 1 || a.N < 1 || a.K < 1)
    return Status::error("topk must be in [1, 127]; E, N and K >= 1");
  if (!row_fits<A>(a.a_stride, a.K)) return Status::error("a_stride is smaller than a row of A");
  if (A::kMx && a.a_scale_stride < round_up(a.K, 32) / 32)
    return Status::error("a_scale_stride is smaller than Kp/32");
  if (Cfg::kBias && a.bias == nullptr) return Status::error("bias is required (bias instance)");
  const bool weighted = (S != Stage::k2 && Cfg::kWeightStage1) || (S != Stage::k1 && Cfg::kWeightStage2);
  if (weighted && a.sorted_weights == nullptr)
    return Status::error("sorted_weights is required (routed-weight instance)");
  if (S != Stage::k2 && a.N % 2 != 0) return Status::error("N = 2I must be even");
  const int64_t I = a.N / 2;
  if constexpr (S == Stage::k1) {
    using Out = tag_t<typename Cfg::Out>;
    if (!row_fits<Out>(a.out_stride, I)) return Status::error("out_stride is smaller than a row of I");
    if constexpr (Out::kMx) {
      if (a.out_scales == nullptr) return Status::error("out_scales is required (pk_fp4 output)");
      if (a.out_scale_stride < round_up(I, 32) / 32)
        return Status::error("out_scale_stride is smaller than Ip/32");
      if (a.rounding < kRoundUp || a.rounding > kEven)
        return Status::error("rounding is not a mxf::Rounding value (0..3)");
    }
    if (Cfg::kSplitK > 1) {
      if (a.workspace == nullptr) return Status::error("split_k > 1 needs a workspace");
      if (a.workspace_bytes < int64_t(Cfg::kSplitK) * a.T * a.topk * a.N * 4)
        return Status::error("workspace_bytes < split_k * T * topk * N * 4");
    }
  } else if constexpr (S == Stage::k2) {
    if (a.out_stride < a.N) return Status::error("out_stride is smaller than N");
    if (a.slots != nullptr) {
      if (Cfg::kSplitK > 1 || !std::is_same_v<tag_t<typename Cfg::Out>, Bf16>)
        return Status::error("slots (stage 2 by route rows) needs split_k 1 and a bf16 out");
      if (a.topk_ids == nullptr) return Status::error("topk_ids is required (slots)");
      if (a.slots_stride < a.N) return Status::error("slots_stride is smaller than N");
    }
    if (Cfg::kSplitK > 1 && std::is_same_v<tag_t<typename Cfg::Out>, Bf16>) {
      if (a.workspace == nullptr) return Status::error("split_k > 1 with a bf16 out needs a workspace");
      if (a.workspace_bytes < a.T * a.N * 4) return Status::error("workspace_bytes < T * N * 4");
    }
  } else {
    if (a.b2 == nullptr || (B::kMx && a.b2_scales == nullptr))
      return Status::error("b2 (and b2_scales for MX weights) is required");
    if (Cfg::kBias && a.bias2 == nullptr) return Status::error("bias2 is required (bias instance)");
    if (a.N2 < 1) return Status::error("N2 must be >= 1");
    if (a.out_stride < a.N2) return Status::error("out_stride is smaller than N2");
  }
  return Status::ok();
}

// ---- epilogues ------------------------------------------------------------------------------

// Stage 1, one route row, intermediate columns [j0, j0 + jn): bias, activation, routed
// weight, then bf16 (OutTag dense) or MXFP4 re-quantization (j0 % 32 == 0). tmp: jn floats.
template <class Cfg, class OutTag>
inline void stage1_epilogue(const MoeGemmArgs& a, int64_t e, const BlockRow& row,
                            const float* gate, const float* up, int64_t j0, int jn, float* tmp) {
  const int64_t I = a.N / 2;
  for (int i = 0; i < jn; ++i) {
    float g = gate[i], u = up[i];
    if constexpr (Cfg::kBias) {
      const float* bias = a.bias + e * a.N;
      g += bias[gate_row(Cfg::kInterleaved, j0 + i, I)];
      u += bias[up_row(Cfg::kInterleaved, j0 + i, I)];
    }
    float v = gated<Cfg::kAct>(g, u);
    if constexpr (Cfg::kWeightStage1) v *= a.sorted_weights[row.sorted];
    tmp[i] = v;
  }
  const int64_t route = row.token * a.topk + row.slot;
  if constexpr (OutTag::kMx) {
    static_assert(std::is_same_v<OutTag, Fp4Mx>, "stage 1 re-quantizes to pk_fp4");
    quantize_row<Fp32, Fp4Mx>(tmp, jn, Rounding(a.rounding),
                              static_cast<uint8_t*>(a.out) + route * a.out_stride + j0 / 2,
                              a.out_scales + route * a.out_scale_stride + j0 / 32);
  } else {
    auto* o = static_cast<typename OutTag::storage*>(a.out) + route * a.out_stride + j0;
    for (int i = 0; i < jn; ++i) o[i] = OutTag::from_f32(tmp[i]);
  }
}

// Stage 2, one route row, columns [n0, n0 + nn): bias (if `bias`), routed weight, then
// out[t] += , or ws[t] += in fp32 where ws (split-K, bf16 out) is given, or (a.slots) the
// route's slot row = the value rounded to bf16 (slots_sum adds them up).
template <class Cfg, class OutTag>
inline void stage2_epilogue(const MoeGemmArgs& a, int64_t e, const BlockRow& row,
                            const float* acc, int64_t n0, int nn, bool bias = true,
                            float* ws = nullptr) {
  const float w = Cfg::kWeightStage2 ? a.sorted_weights[row.sorted] : 1.0f;
  auto* o = static_cast<typename OutTag::storage*>(a.out) + row.token * a.out_stride + n0;
  float* wrow = ws != nullptr ? ws + row.token * a.N + n0 : nullptr;
  uint16_t* srow = a.slots != nullptr
                       ? static_cast<uint16_t*>(a.slots) + (row.token * a.topk + row.slot) * a.slots_stride + n0
                       : nullptr;
  for (int i = 0; i < nn; ++i) {
    float v = acc[i];
    if constexpr (Cfg::kBias) if (bias) v += a.bias[e * a.N + n0 + i];
    if constexpr (Cfg::kWeightStage2) v *= w;
    if (wrow != nullptr) wrow[i] += v;
    else if (srow != nullptr) srow[i] = f32_to_bf16(v);
    else o[i] = OutTag::from_f32(OutTag::to_f32(o[i]) + v);
  }
}

// Stage 2 by route rows, the sum (the GPUs' moe_stage2_slots_sum_kernel, docs/ops.md): out[t]
// = (out[t] if slots_accumulate, else 0) + the kept routes' slot rows of t, in fp32 in slot
// order, rounded once.
inline void slots_sum(const MoeGemmArgs& a) {
  const auto* slots = static_cast<const uint16_t*>(a.slots);
#pragma omp parallel for num_threads(max_threads()) schedule(static)
  for (int64_t t = 0; t < a.T; ++t) {
    uint16_t* o = static_cast<uint16_t*>(a.out) + t * a.out_stride;
    for (int64_t n = 0; n < a.N; ++n) {
      float s = a.slots_accumulate ? bf16_to_f32(o[n]) : 0.0f;
      for (int64_t j = 0; j < a.topk; ++j)
        if (route_kept(a.topk_ids[t * a.topk + j], a.E, a.expert_mask))
          s += bf16_to_f32(slots[(t * a.topk + j) * a.slots_stride + n]);
      o[n] = f32_to_bf16(s);
    }
  }
}

// ---- stage 1 --------------------------------------------------------------------------------

template <class Cfg, class OutTag>
inline Status run_stage1(const MoeGemmArgs& a) {
  using A = typename Cfg::A;
  using B = typename Cfg::B;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, BK = Cfg::kBlockK, SK = Cfg::kSplitK;
  constexpr int HALF = BN / 2;
  static_assert(!OutTag::kMx || HALF % 32 == 0, "re-quantized output needs block_n >= 64");
  static_assert(SK == 1 || !std::is_same_v<A, Fp4Mx>, "split_k is never used with pk_fp4 activations");
  using Gemm = BlockGemm<A, B, BM, BN, BK>;

  const Routing R(a, BM);
  const Gemm gemm(a.K);
  const int64_t I = a.N / 2, ntiles = cdiv(I, HALF), ktiles = gemm.k_tiles();
  const int64_t per_split = cdiv(ktiles, SK), routes = a.T * a.topk;
  const int nth = max_threads();
  int64_t chunks = cdiv(4 * int64_t(nth), R.blocks * SK > 0 ? R.blocks * SK : 1);
  chunks = chunks < 1 ? 1 : (chunks > ntiles ? ntiles : chunks);
  const int64_t items = R.blocks * SK * chunks;
  if (items == 0) return Status::ok();
  Scratch scratch;
  if (!scratch.allocate(nth, gemm.scratch_floats() + HALF))
    return Status::error("out of host memory (stage 1 scratch)");

  const StridedRows<A> av{static_cast<const typename A::storage*>(a.a), a.a_stride, a.a_scales,
                          a.a_scale_stride};
  const Weights<B, typename Cfg::Layout> w{a.b, a.b_scales, a.N, a.K};
  float* ws = static_cast<float*>(a.workspace);

#pragma omp parallel num_threads(nth)
  {
    float* scr = scratch.get(thread_id());
    float *panel = gemm.panel(scr), *btile = gemm.btile(scr), *acc = gemm.acc(scr);
    float* tmp = scr + gemm.scratch_floats();
    BlockRow rows[BM];
    int64_t arow[BM], brow[BN];
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t b = it / (SK * chunks), s = (it / chunks) % SK, ch = it % chunks;
      const int64_t e = R.expert(b);
      if (e < 0) continue;
      const int mv = R.rows_of(b, rows);
      if (mv == 0) continue;
      const int64_t kt0 = s * per_split < ktiles ? s * per_split : ktiles;
      const int64_t kt1 = kt0 + per_split < ktiles ? kt0 + per_split : ktiles;
      for (int m = 0; m < mv; ++m) arow[m] = rows[m].token;
      gemm.load_a(av, arow, mv, kt0, kt1, panel);
      const auto bv = w.expert(e);
      for (int64_t tile = ch * ntiles / chunks; tile < (ch + 1) * ntiles / chunks; ++tile) {
        const int64_t j0 = tile * HALF;
        const int jn = int(I - j0 < HALF ? I - j0 : HALF);
        for (int i = 0; i < jn; ++i) {
          brow[i] = gate_row(Cfg::kInterleaved, j0 + i, I);
          brow[jn + i] = up_row(Cfg::kInterleaved, j0 + i, I);
        }
        for (int i = 0; i < mv * BN; ++i) acc[i] = 0.0f;
        gemm.run(bv, brow, 2 * jn, panel, mv, kt0, kt1, btile, acc);
        for (int m = 0; m < mv; ++m) {
          if constexpr (SK > 1) {
            float* dst = ws + (s * routes + rows[m].token * a.topk + rows[m].slot) * a.N;
            for (int p = 0; p < 2 * jn; ++p) dst[brow[p]] = acc[m * BN + p];
          } else {
            stage1_epilogue<Cfg, OutTag>(a, e, rows[m], acc + m * BN, acc + m * BN + jn, j0, jn, tmp);
          }
        }
      }
    }
  }
  if constexpr (SK > 1) {  // sum the split slabs in order, then the epilogue
#pragma omp parallel num_threads(nth)
    {
      float* scr = scratch.get(thread_id());
      float *gate = scr, *up = scr + HALF, *tmp = scr + 2 * HALF;
      BlockRow rows[BM];
#pragma omp for schedule(dynamic)
      for (int64_t b = 0; b < R.blocks; ++b) {
        const int64_t e = R.expert(b);
        if (e < 0) continue;
        const int mv = R.rows_of(b, rows);
        for (int m = 0; m < mv; ++m) {
          const float* src = ws + (rows[m].token * a.topk + rows[m].slot) * a.N;
          for (int64_t j0 = 0; j0 < I; j0 += HALF) {
            const int jn = int(I - j0 < HALF ? I - j0 : HALF);
            for (int i = 0; i < jn; ++i) {
              const int64_t gr = gate_row(Cfg::kInterleaved, j0 + i, I);
              const int64_t ur = up_row(Cfg::kInterleaved, j0 + i, I);
              float g = src[gr], u = src[ur];
              for (int s = 1; s < SK; ++s) {
                g += src[s * routes * a.N + gr];
                u += src[s * routes * a.N + ur];
              }
              gate[i] = g;
              up[i] = u;
            }
            stage1_epilogue<Cfg, OutTag>(a, e, rows[m], gate, up, j0, jn, tmp);
          }
        }
      }
    }
  }
  return Status::ok();
}

// ---- stage 2 --------------------------------------------------------------------------------

template <class Cfg, class ATag>
inline Status run_stage2(const MoeGemmArgs& a) {
  using B = typename Cfg::B;
  using Out = tag_t<typename Cfg::Out>;
  constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, BK = Cfg::kBlockK, SK = Cfg::kSplitK;
  static_assert(SK == 1 || std::is_same_v<ATag, Bf16> || std::is_same_v<ATag, Fp16>,
                "stage-2 split_k takes 16-bit activations only");
  constexpr bool kWs = SK > 1 && std::is_same_v<Out, Bf16>;
  using Gemm = BlockGemm<ATag, B, BM, BN, BK>;

  const Routing R(a, BM);
  const Gemm gemm(a.K);
  const int64_t ntiles = cdiv(a.N, BN), ktiles = gemm.k_tiles(), per_split = cdiv(ktiles, SK);
  float* const ws = kWs ? static_cast<float*>(a.workspace) : nullptr;
  if (R.blocks == 0) {
    if (a.slots != nullptr) slots_sum(a);  // (out is written even where no route was kept)
    return Status::ok();
  }
  const int nth = max_threads();
  Scratch scratch;
  if (!scratch.allocate(nth, gemm.scratch_floats()))
    return Status::error("out of host memory (stage 2 scratch)");

  const StridedRows<ATag> av{static_cast<const typename ATag::storage*>(a.a), a.a_stride,
                             a.a_scales, a.a_scale_stride};
  const Weights<B, typename Cfg::Layout> w{a.b, a.b_scales, a.N, a.K};

#pragma omp parallel num_threads(nth)
  {
    const int tid = thread_id(), team = num_threads();
    float* scr = scratch.get(tid);
    float *panel = gemm.panel(scr), *btile = gemm.btile(scr), *acc = gemm.acc(scr);
    BlockRow rows[BM];
    int64_t arow[BM], brow[BN];
    const int64_t t0 = ntiles * tid / team, t1 = ntiles * (tid + 1) / team;
    const int64_t c0 = t0 * BN, c1 = t1 * BN < a.N ? t1 * BN : a.N;  // this thread's columns
    if constexpr (kWs)
      for (int64_t t = 0; t < a.T; ++t)
        for (int64_t n = c0; n < c1; ++n) ws[t * a.N + n] = 0.0f;
    for (int64_t b = 0; t0 < t1 && b < R.blocks; ++b) {
      const int64_t e = R.expert(b);
      if (e < 0) continue;
      const int mv = R.rows_of(b, rows);
      if (mv == 0) continue;
      for (int m = 0; m < mv; ++m) arow[m] = rows[m].token * a.topk + rows[m].slot;
      gemm.load_a(av, arow, mv, 0, ktiles, panel);
      const auto bv = w.expert(e);
      for (int64_t tile = t0; tile < t1; ++tile) {
        const int64_t n0 = tile * BN;
        const int nn = int(a.N - n0 < BN ? a.N - n0 : BN);
        for (int i = 0; i < nn; ++i) brow[i] = n0 + i;
        for (int s = 0; s < SK; ++s) {
          const int64_t kt0 = s * per_split < ktiles ? s * per_split : ktiles;
          const int64_t kt1 = kt0 + per_split < ktiles ? kt0 + per_split : ktiles;
          if (kt0 >= kt1) break;
          for (int i = 0; i < mv * BN; ++i) acc[i] = 0.0f;
          gemm.run(bv, brow, nn, panel, mv, kt0, kt1, btile, acc);
          for (int m = 0; m < mv; ++m)
            stage2_epilogue<Cfg, Out>(a, e, rows[m], acc + m * BN, n0, nn, s == 0, ws);
        }
      }
    }
    if constexpr (kWs) {  // out += the summed splits, one rounding
      for (int64_t t = 0; t < a.T; ++t) {
        auto* o = static_cast<typename Out::storage*>(a.out) + t * a.out_stride;
        for (int64_t n = c0; n < c1; ++n) o[n] = Out::from_f32(Out::to_f32(o[n]) + ws[t * a.N + n]);
      }
    }
  }
  if (a.slots != nullptr) slots_sum(a);
  return Status::ok();
}

// ---- direct routing ---------------------------------------------------------------------------

// Direct routing (a.direct_routes, docs/ops.md): block b is route b alone (the GPUs' blocks:
// moe.cuh, direct_block_rows), written here as sorted arrays of the CPU's own, on which the
// sorted path runs: row b * block_m holds route b (a dropped route: a block of sentinels,
// expert -1), the other rows of the block are padding.
struct DirectRoutes {
  std::vector<int32_t> ids, experts, valid;
  std::vector<float> weights;
  // Points a's sorted_* at those arrays (nothing under sorted routing).
  Status resolve(MoeGemmArgs& a, int64_t block_m) {
    if (!a.direct_routes) return Status::ok();
    const int64_t routes = a.T * a.topk;
    if (a.T < 0 || a.topk < 1 || a.E < 1) return Status::error("T >= 0, topk >= 1 and E >= 1 are required");
    if (routes > 0 && (a.topk_ids == nullptr || a.topk_weights == nullptr))
      return Status::error("topk_ids and topk_weights are required (direct routing)");
    const int32_t sentinel = int32_t((a.topk << kTokenBits) | a.T);
    ids.assign(size_t(routes * block_m) + 1, sentinel), weights.assign(ids.size(), 0.0f);
    experts.assign(size_t(routes) + 1, -1), valid = {int32_t(routes * block_m), int32_t(a.T)};
    for (int64_t r = 0; r < routes; ++r) {
      if (!route_kept(a.topk_ids[r], a.E, a.expert_mask)) continue;
      experts[size_t(r)] = a.topk_ids[r];
      ids[size_t(r * block_m)] = int32_t(((r % a.topk) << kTokenBits) | (r / a.topk));
      weights[size_t(r * block_m)] = a.topk_weights[r];
    }
    a.sorted_ids = ids.data(), a.sorted_weights = weights.data();
    a.sorted_expert_ids = experts.data(), a.num_valid_ids = valid.data();
    a.max_blocks = routes;
    return Status::ok();
  }
};

// ---- instance entries -----------------------------------------------------------------------

template <class Cfg>
inline Status moe_stage1(const MoeGemmArgs& args) {
  MoeGemmArgs a = args;
  DirectRoutes direct;
  Status st = direct.resolve(a, Cfg::kBlockM);
  if (st.code == 0) st = check_gemm_args<Cfg, Stage::k1>(a);
  if (st.code != 0) return st;
  parallel_zero(a.zero_buf, a.zero_bytes);
  return run_stage1<Cfg, tag_t<typename Cfg::Out>>(a);
}

template <class Cfg>
inline Status moe_stage2(const MoeGemmArgs& args) {
  MoeGemmArgs a = args;
  DirectRoutes direct;
  Status st = direct.resolve(a, Cfg::kBlockM);
  if (st.code == 0) st = check_gemm_args<Cfg, Stage::k2>(a);
  return st.code != 0 ? st : run_stage2<Cfg, typename Cfg::A>(a);
}

template <class Cfg>
inline Status moe_1stage(const MoeGemmArgs& a) {
  static_assert(Cfg::kSplitK == 1, "1stage has no split_k");
  Status st = check_gemm_args<Cfg, Stage::kOne>(a);
  if (st.code != 0) return st;
  const int64_t I = a.N / 2;
  std::unique_ptr<uint16_t[]> inter(new (std::nothrow) uint16_t[size_t(a.T * a.topk * I) + 1]);
  if (inter == nullptr) return Status::error("out of host memory (1stage intermediate)");
  MoeGemmArgs s1 = a;  // stage 1 -> bf16 [T*topk, I]
  s1.out = inter.get();
  s1.out_stride = I;
  s1.out_scales = nullptr;
  st = run_stage1<Cfg, Bf16>(s1);
  if (st.code != 0) return st;
  MoeGemmArgs s2 = a;  // stage 2 on it: A bf16, w2, bias2, N = N2, K = I
  s2.a = inter.get();
  s2.a_stride = I;
  s2.a_scales = nullptr;
  s2.a_scale_stride = 0;
  s2.b = a.b2;
  s2.b_scales = a.b2_scales;
  s2.bias = a.bias2;
  s2.N = a.N2;
  s2.K = I;
  return run_stage2<Cfg, Bf16>(s2);
}

}  // namespace cpu
}  // namespace mxf
