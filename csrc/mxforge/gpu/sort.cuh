// moe_sort and fused_quant_sort (docs/ops.md, "MoE sorting").
//
// WORKSPACE: none. sort_workspace_bytes(sm90) = 0; the counters live in shared memory of
// each sorting CTA: (kSortWarps * E + 2 * E + 33) * 4 bytes of dynamic shared memory, E * 4
// more with several sorters (E <= kSortMaxExperts = 1024; 70 KB at E = 512).
// SortArgs::workspace is not read.
// No allocation, no host synchronization, no CTA waiting for another: one kernel launch,
// CUDA-graph capturable.
//
// Algorithm (one launch, of moe_sort_kernel with one sorter or moe_sort_chunks_kernel with
// several; every CTA has kSortThreads threads and picks a role by index):
//   CTAs 0..S-1, the sorters, cut the T*k routes into S contiguous chunks (S = 1 up to
//   kSortThreads routes, then one chunk per kSortThreads routes, at most kSortMaxCtas
//   chunks). Sorter c scatters the routes of chunk c only, and needs for that the number
//   of routes of each expert before its chunk and in all: it counts them itself, which
//   costs one load and one shared-memory atomic per route and kSortThreads threads (cheap
//   beside the scatter), so no sorter waits for another or needs global scratch. Within a
//   chunk the routes are cut into kSortWarps contiguous runs, one per warp, so "warp
//   order" is "route order":
//     0. (S > 1) counts per expert of the routes before the chunk (`before`) and after it
//        (into `tot`), by shared-memory atomics;
//     1. per-warp histograms of the chunk: each warp walks its run 32 (64) routes at a
//        time, each lane adding 1 to its expert's count in the warp's row of hist[warp][e]
//        by a shared-memory atomic (a count does not depend on the order of the adds);
//     2. per expert, an exclusive scan over the warps starting at `before` (where each
//        warp's routes start within the expert) and the expert total;
//     3. a CTA-wide exclusive scan of the padded totals round_up(total, block_m) gives each
//        expert's first row (every sorter computes the same); their sum is num_valid_ids[0];
//     4. the scatter walks the runs again: a route's row is its expert's first row plus
//        its warp's running start for the expert plus its rank among its peers in the
//        same step (the lanes routed to the same expert find each other with log2(E)
//        ballots: "peer masks"). Within an expert the rows are thus in increasing
//        t*k+slot, as the contract (and the CPU sorter) says. With one sorter a warp's run
//        is one step: its lanes hold their route, weight and peers in registers from
//        before step 1 (whose counts are then the leaders' popc) to the scatter;
//     5. padding rows of each expert and rows [used, U) get the sentinel, blocks below
//        cdiv(U, block_m) get their expert or -1, each sorter a stripe of them.
//   Decode (T*k <= kWarpSize routes): warp 0 of the sorter does steps 1-5 alone, in
//   registers, with no shared memory and no barrier (sort_warp), the same bytes; above
//   that the passes over the counters visit only the rows of warps that hold routes.
//   CTAs S..S+F-1, the fillers, write the sentinel to rows [U, P), -1 to blocks
//   [cdiv(U, block_m), cdiv(P, block_m)), and zero `zero_buf`. U = T*k + min(E, T*k) *
//   (block_m - 1) bounds the used rows (each non-empty expert pads by < block_m), so the
//   fillers never touch a row the sorters write and need not wait for them.
//   Fused quant+sort adds CTAs that quantize rows (quant.cuh, quant_blocks: the
//   mxfp4_quant kernel's function, so the bytes are those of the split pair).
// Cost: one sorter took ~9.7 warp instructions per route (most of them the scatter's
// log2(E) ballots per 32 routes) at ~0.4 per scheduler and cycle on one SM: on an H200,
// E = 256, 4096 routes ~17 us in the layer and 8192 ~29 us (session 17); chunks of
// kSortThreads routes on several SMs: benchmarks/README.md, session 19. Measured and
// dropped: loading a warp's routes 8 steps ahead (session 16), one __match_any_sync for the
// peer masks instead of the ballots (fewer instructions, slower: session 17). Decode (<= 32
// routes) takes the one-warp path, 2.8 us as a stage of its own.
#pragma once
#include <stdint.h>

#include "mxforge/gpu/common.cuh"
#include "mxforge/gpu/quant.cuh"

namespace mxf {
namespace gpu {

constexpr int kSortThreads = 1024;
constexpr int kSortWarps = kSortThreads / dev::kWarpSize;
constexpr int kSortMaxExperts = 1024;  // one expert per thread in the scan of step 3
constexpr int kMaxQuantCtas = 1 << 15;  // the fused entry's quantizer CTAs at most
constexpr int kFillRowsPerThread = 4;
constexpr int kSortMaxCtas = 128;  // sorters; above kSortMaxCtas * kSortThreads routes the chunks grow

// Dynamic shared memory of a sorter: hist, tot, (before: chunks only), base, scratch.
MXF_HD int64_t sort_smem_bytes(int64_t E, bool chunks) { return (kSortWarps * E + (chunks ? 3 : 2) * E + 1 + 32) * 4; }

// Host-computed sizes of one sort launch.
struct SortPlan {
  int n = 0;            // routes T*k
  int P = 0;            // capacity T*k + E*block_m - k (rows of sorted_ids)
  int nblocks = 0;      // cdiv(P, block_m) (entries of sorted_expert_ids)
  int U = 0;            // rows >= U are never used (written by the fillers)
  int bits = 0;         // bits of an expert id: ceil(log2(E))
  int sort_ctas = 1;    // CTAs 0..sort_ctas-1 sort a chunk of routes each
  int chunk = 0;        // routes per sorter, a multiple of kSortThreads (n when one sorter)
  int fill_ctas = 0;    // then this many fillers
  int quant_ctas = 0;   // then this many quantizer CTAs (fused entry only)
  int quant_lanes = 0;  // their threads per quantized block (quant_lanes)
};

// Lanes of this warp whose route is valid and goes to the same expert as this lane's
// (0 for an invalid lane). Every lane of the warp must call it (ballots).
MXF_DEV dev::LaneMask warp_peers(int e, bool valid, int bits) {
  dev::LaneMask m = dev::ballot(valid);
  for (int b = 0; b < bits; ++b) {
    const bool one = (e >> b) & 1;
    const dev::LaneMask v = dev::ballot(one);
    m &= one ? v : ~v;
  }
  return valid ? m : dev::LaneMask(0);
}

// Exclusive prefix sum over the CTA of one value per thread; `total` gets the sum.
// `scratch` holds one int per warp; the CTA must have at most kWarpSize warps.
MXF_DEV int block_exclusive_scan(int v, int* scratch, int& total) {
  const int lane = dev::lane_id(), warp = dev::warp_id();
  const int nwarps = dev::block_dim_x() / dev::kWarpSize;
  int x = v;
  for (int d = 1; d < dev::kWarpSize; d <<= 1) {
    const int y = dev::shfl_up(x, d);
    if (lane >= d) x += y;
  }
  if (lane == dev::kWarpSize - 1) scratch[warp] = x;
  dev::sync_threads();
  if (warp == 0) {
    int s = lane < nwarps ? scratch[lane] : 0;
    for (int d = 1; d < dev::kWarpSize; d <<= 1) {
      const int y = dev::shfl_up(s, d);
      if (lane >= d) s += y;
    }
    if (lane < nwarps) scratch[lane] = s;
  }
  dev::sync_threads();
  total = scratch[nwarps - 1];
  const int r = x - v + (warp > 0 ? scratch[warp - 1] : 0);
  dev::sync_threads();  // scratch may be reused after return
  return r;
}

// The last expert whose first row is <= r (r < used): that expert owns row r, since empty
// experts share their first row with the next non-empty one.
MXF_DEV int expert_of_row(const int* base, int E, int r) {
  int lo = 0, hi = E - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (base[mid] <= r) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

MXF_DEV int sentinel_of(const SortArgs& a) { return int((a.topk << kTokenBits) | a.T); }
// The sorted id of route i (= t*k + slot): slot << kTokenBits | t.
MXF_DEV int route_id(int i, int k) { return ((i % k) << kTokenBits) | (i / k); }

// The route of index i (= t*k + slot): its expert, and whether it is kept.
MXF_DEV bool route_expert(const SortArgs& a, int i, int end, int& e) {
  e = -1;
  if (i >= end) return false;
  e = a.topk_ids[i];
  return route_kept(e, a.E, a.expert_mask);
}

// CTA 0 at decode (every route one lane of warp 0: n <= kWarpSize): the same sort by one
// warp in registers, with no shared memory and no CTA barrier (the general path's passes
// over kSortWarps x E counters and its scans are most of a decode sort's time). Lane i
// holds route i; the lowest lane of each expert's peers (its leader) holds the expert's
// padded size, and an expert's first row is the padded sizes of the experts below it
// (one pass over the lanes). Rows, padding, block experts and counts are byte for byte
// those of the general path (tests: the cpu sorter, the fused entry, both warp sizes).
MXF_DEV void sort_warp(const SortArgs& a, const SortPlan& p) {
  const int bm = int(a.block_m), k = int(a.topk), lane = dev::lane_id();
  int e;
  const bool valid = route_expert(a, lane, p.n, e);
  const dev::LaneMask peers = warp_peers(e, valid, p.bits);
  const bool leader = valid && lane == dev::lowest_lane(peers);
  const int cnt = valid ? dev::popc(peers) : 0;
  const int padded = leader ? int(round_up(cnt, bm)) : 0;
  int first = 0, used = 0;
  for (int j = 0; j < dev::kWarpSize; ++j) {
    const int ej = dev::shfl(e, j), pj = dev::shfl(padded, j);
    used += pj;
    if (ej < e) first += pj;  // (pj > 0: lane j leads an expert)
  }
  const int sentinel = sentinel_of(a);
  if (valid) {
    const int row = first + dev::popc(peers & dev::lanes_below());
    a.sorted_ids[row] = route_id(lane, k);
    a.sorted_weights[row] = a.topk_weights[lane];
  }
  if (leader) {
    for (int r = first + cnt; r < first + padded; ++r) {
      a.sorted_ids[r] = sentinel;
      a.sorted_weights[r] = 0.0f;
    }
    for (int b = first / bm; b < (first + padded) / bm; ++b) a.sorted_expert_ids[b] = e;
  }
  for (int r = used + lane; r < p.U; r += dev::kWarpSize) {
    a.sorted_ids[r] = sentinel;
    a.sorted_weights[r] = 0.0f;
  }
  const int sorter_blocks = cmin(int(cdiv(p.U, bm)), p.nblocks);
  for (int b = used / bm + lane; b < sorter_blocks; b += dev::kWarpSize) a.sorted_expert_ids[b] = -1;
  if (lane == 0) {
    a.num_valid_ids[0] = used;
    a.num_valid_ids[1] = int(a.T);
  }
}

// Sorter c of p.sort_ctas: its chunk's rows and its stripe of the rest (steps 0-5 above).
// kChunks is p.sort_ctas > 1 (moe_sort_chunks_kernel); with one sorter (c = 0,
// moe_sort_kernel) the compiler drops step 0 and the striding (at 512 routes they cost 10 %
// more instructions and 0.3 us, H200, session 19).
template <bool kChunks>
MXF_DEV void sort_cta(const SortArgs& a, const SortPlan& p, unsigned char* smem, int c) {
  if (!kChunks && p.n <= dev::kWarpSize) {  // (uniform for the CTA: no barrier below is reached)
    if (dev::warp_id() == 0) sort_warp(a, p);
    return;
  }
  const int E = int(a.E), bm = int(a.block_m), k = int(a.topk), S = kChunks ? p.sort_ctas : 1;
  int* hist = reinterpret_cast<int*>(smem);  // [kSortWarps][E]
  int* tot = hist + kSortWarps * E;           // [E]
  int* before = tot + E;                      // [E] (chunks only)
  int* base = before + (kChunks ? E : 0);     // [E + 1]
  int* scratch = base + E + 1;                // [32]
  const int tid = dev::thread_x(), lane = dev::lane_id(), warp = dev::warp_id();
  const int beg_c = c * p.chunk, end_c = cmin(p.n, beg_c + p.chunk), n_c = end_c - beg_c;
  const int per_warp = int(round_up(cdiv(n_c, kSortWarps), dev::kWarpSize));
  const int beg = cmin(end_c, beg_c + warp * per_warp), end = cmin(end_c, beg + per_warp);
  // warps with routes: the counter rows the passes below visit (few when n is small)
  const int active = int(cdiv(n_c, per_warp));
  int* mine = hist + warp * E;

  // One sorter: each warp's run is one step (per_warp == kWarpSize: n <= kSortThreads), so
  // a lane loads its route and weight and finds its peers once, before the first barrier,
  // and keeps them in registers for the scatter; the warp's count of each expert is its
  // leader's popc (a plain store: one leader per expert and warp), no atomics.
  int e1 = -1;
  bool valid1 = false;
  float weight1 = 0.0f;
  dev::LaneMask peers1 = 0;
  if constexpr (!kChunks) {
    valid1 = route_expert(a, beg + lane, end, e1);
    if (valid1) weight1 = a.topk_weights[beg + lane];
    peers1 = warp_peers(e1, valid1, p.bits);
  }
  for (int i = tid; i < active * E; i += kSortThreads) hist[i] = 0;
  if (kChunks)
    for (int e = tid; e < E; e += kSortThreads) tot[e] = before[e] = 0;
  dev::sync_threads();
  // 0. the other chunks' routes: counts before this chunk and after it
  if (kChunks) {
    for (int i = tid; i < p.n; i += kSortThreads) {
      int e;
      if ((i < beg_c || i >= end_c) && route_expert(a, i, p.n, e)) dev::atomic_add((i < beg_c ? before : tot) + e, 1);
    }
  }
  // 1. per-warp histograms: one shared-memory atomic per route (a count does not depend on
  //    the order of its adds; with the peer masks' log2(E) ballots per step here the sort
  //    took 1.08-1.12x as long at 4096-8192 routes, H200, session 17)
  if constexpr (kChunks) {
    for (int i0 = beg; i0 < end; i0 += dev::kWarpSize) {
      int e;
      if (route_expert(a, i0 + lane, end, e)) dev::atomic_add(mine + e, 1);
    }
  } else if (valid1 && lane == dev::lowest_lane(peers1)) {
    mine[e1] = dev::popc(peers1);
  }
  dev::sync_threads();
  // 2. per expert: each warp's start within the expert (counted from its first row), and
  //    the total
  for (int e = tid; e < E; e += kSortThreads) {
    int run = kChunks ? before[e] : 0;
    for (int w = 0; w < active; ++w) {
      const int cnt = hist[w * E + e];
      hist[w * E + e] = run;
      run += cnt;
    }
    tot[e] = kChunks ? tot[e] + run : run;
  }
  dev::sync_threads();
  // 3. first row of each expert (E <= kSortThreads: one expert per thread)
  int used = 0;
  const int first = block_exclusive_scan(tid < E ? int(round_up(tot[tid], bm)) : 0, scratch, used);
  if (tid < E) base[tid] = first;
  if (tid == 0) base[E] = used;
  dev::sync_threads();
  // 4. scatter, in route order within each warp's run: a route's row is its expert's first
  //    row, its warp's start within the expert and its rank among its peers
  if constexpr (!kChunks) {
    if (valid1) {
      const int row = base[e1] + mine[e1] + dev::popc(peers1 & dev::lanes_below());
      if (row < p.P) {
        a.sorted_ids[row] = route_id(beg + lane, k);
        a.sorted_weights[row] = weight1;
      }
    }
  } else {
    for (int i0 = beg; i0 < end; i0 += dev::kWarpSize) {
      const int i = i0 + lane;
      int e;
      const bool valid = route_expert(a, i, end, e);
      const dev::LaneMask peers = warp_peers(e, valid, p.bits);
      if (valid) {
        const int row = base[e] + mine[e] + dev::popc(peers & dev::lanes_below());
        if (row < p.P) {
          a.sorted_ids[row] = route_id(i, k);
          a.sorted_weights[row] = a.topk_weights[i];
        }
      }
      dev::sync_warp();  // every peer has read mine[e] before the leader bumps it
      if (valid && lane == dev::lowest_lane(peers)) mine[e] += dev::popc(peers);
      dev::sync_warp();
    }
  }
  // 5. padding rows, rows [used, U), block experts, counts: sorter c takes every S-th
  //    expert, row and block
  const int sentinel = sentinel_of(a);
  for (int e = c * kSortWarps + warp; e < E; e += S * kSortWarps)
    for (int r = base[e] + tot[e] + lane; r < base[e + 1] && r < p.P; r += dev::kWarpSize) {
      a.sorted_ids[r] = sentinel;
      a.sorted_weights[r] = 0.0f;
    }
  for (int r = used + c * kSortThreads + tid; r < p.U; r += S * kSortThreads) {
    a.sorted_ids[r] = sentinel;
    a.sorted_weights[r] = 0.0f;
  }
  const int sorter_blocks = cmin(int(cdiv(p.U, bm)), p.nblocks);
  for (int b = c * kSortThreads + tid; b < sorter_blocks; b += S * kSortThreads)
    a.sorted_expert_ids[b] = b * bm < used ? expert_of_row(base, E, b * bm) : -1;
  if (c == 0 && tid == 0) {
    a.num_valid_ids[0] = used;
    a.num_valid_ids[1] = int(a.T);
  }
}

// Filler CTA f of F: rows [U, P), blocks [cdiv(U, bm), nblocks), and zero_buf.
MXF_DEV void sort_fill(const SortArgs& a, const SortPlan& p, int f) {
  const int64_t stride = int64_t(p.fill_ctas) * kSortThreads;
  const int64_t first = int64_t(f) * kSortThreads + dev::thread_x();
  const int sentinel = sentinel_of(a);
  for (int64_t r = p.U + first; r < p.P; r += stride) {
    a.sorted_ids[r] = sentinel;
    a.sorted_weights[r] = 0.0f;
  }
  for (int64_t b = cdiv(p.U, a.block_m) + first; b < p.nblocks; b += stride)
    a.sorted_expert_ids[b] = -1;
  if (a.zero_buf != nullptr && a.zero_bytes > 0) zero_span(a.zero_buf, a.zero_bytes, first, stride);
}

// Roles of the CTAs after the fillers: none (moe_sort) or quantizers (fused entry).
// kChunks: the kernel's sorters. The one-sorter kernel (at most kSortThreads routes, so at
// most kSortThreads rows) holds the 8-lane quantizer only, which quant_lanes picks anyway
// up to 65,536 blocks (every such launch with K <= 2048, or top-k >= 4 and K <= 8192); the
// one-thread quantizer beside it (~1,550 more SASS instructions on sm90: 5,368 against
// 3,816) made its time in the layer 6.9 us against 3.2-3.4 at gpt-oss-120b T = 1 and 8,
// though timed alone it was as fast (H200, sessions 19-20: its code is cold there).
// Whether a kernel's quantizer CTAs may hold the one-thread quantizer: the QuantRole's
// template argument and the host's choice of lanes, from one place.
MXF_HD constexpr bool quant_role_thread_ok(bool chunks) { return chunks && dev::kBlockQuantIn1024Threads; }
struct NoQuantRole {
  template <bool kChunks>
  MXF_DEV static void run(const QuantArgs&, int, int, int) {}
};
template <class In, class MxT>
struct QuantRole {
  template <bool kChunks>
  MXF_DEV static void run(const QuantArgs& q, int lanes, int cta, int ctas) {
    const int64_t first = int64_t(cta) * kSortThreads + dev::thread_x(), stride = int64_t(ctas) * kSortThreads;
    quant_blocks<In, MxT, quant_role_thread_ok(kChunks)>(q, lanes, first, stride);
  }
};

// Two kernels (two templates: an AMD code object names its kernels by template), so the
// one-sorter kernel is no bigger than it was before the chunks: with both sorters in one
// kernel the sort at T = 1 took 6.8-7.1 us in the layer instead of 3.2 (gpt-oss-120b, graph
// replay between layers that stream the weights through L2, H200, session 19), though the
// same as before timed alone. CTA b: a sorter below p.sort_ctas, then the fillers, then
// the quantizers.
template <class Role, bool kChunks>
MXF_DEV void sort_roles(const SortArgs& a, const SortPlan& p, const QuantArgs& q, unsigned char* smem) {
  const int b = dev::block_x();
  if (b < p.sort_ctas) sort_cta<kChunks>(a, p, smem, b);
  else if (b < p.sort_ctas + p.fill_ctas) sort_fill(a, p, b - p.sort_ctas);
  else Role::template run<kChunks>(q, p.quant_lanes, b - p.sort_ctas - p.fill_ctas, p.quant_ctas);
}
// One sorter (p.n <= kSortThreads; the one-warp path up to kWarpSize routes). The two
// kernels differ in their template only; their bodies stay in the kernels, as the one-
// sorter kernel's were, so its machine code keeps the old layout.
template <class Role>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(kSortThreads) moe_sort_kernel(SortArgs a, SortPlan p, QuantArgs q) {
  MXF_DYNAMIC_SMEM(smem);
  dev::wait_prior_grids();
  dev::launch_dependents();
  sort_roles<Role, false>(a, p, q, smem);
}
// p.sort_ctas > 1 sorters of a chunk each.
template <class Role>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(kSortThreads) moe_sort_chunks_kernel(SortArgs a, SortPlan p, QuantArgs q) {
  MXF_DYNAMIC_SMEM(smem);
  dev::wait_prior_grids();
  dev::launch_dependents();
  sort_roles<Role, true>(a, p, q, smem);
}

// ---- host launchers ------------------------------------------------------------------
#if MXF_HOST_LAUNCH
inline bool sort_args_bad(const SortArgs& a, Check& c) {
  if (c.fail(a.T < 0 || a.T > kTokenMask, "T must be in [0, 2^24)") ||
      c.fail(a.topk < 1 || a.topk > 64, "topk must be in [1, 64]") ||
      c.fail(a.E < 1 || a.E > kSortMaxExperts, "E must be in [1, 1024] for the GPU sorter") ||
      c.fail(a.block_m < 1 || a.block_m > 4096, "block_m must be in [1, 4096]") ||
      c.fail(a.zero_bytes < 0, "zero_bytes must be >= 0") ||
      c.fail(a.zero_bytes > 0 && a.zero_buf == nullptr, "zero_buf is null but zero_bytes > 0"))
    return true;
  if (a.T > 0 && (c.null(a.topk_ids, "topk_ids is null") ||
                  c.null(a.topk_weights, "topk_weights is null")))
    return true;
  return c.null(a.sorted_ids, "sorted_ids is null") ||
         c.null(a.sorted_weights, "sorted_weights is null") ||
         c.null(a.sorted_expert_ids, "sorted_expert_ids is null") ||
         c.null(a.num_valid_ids, "num_valid_ids is null");
}

inline SortPlan sort_plan(const SortArgs& a) {
  SortPlan p;
  const int64_t n = a.T * a.topk;
  const int64_t P = cmax<int64_t>(0, n + a.E * a.block_m - a.topk);
  p.n = int(n);
  p.P = int(P);
  p.nblocks = int(cdiv(P, a.block_m));
  p.U = int(cmin<int64_t>(P, n + cmin<int64_t>(a.E, n) * (a.block_m - 1)));
  int bits = 0;
  while ((int64_t(1) << bits) < a.E) ++bits;
  p.bits = bits;
  // chunks of kSortThreads routes (one step per warp), larger where that makes too many
  const int64_t sorters = cmax<int64_t>(1, cmin<int64_t>(kSortMaxCtas, cdiv(n, kSortThreads)));
  p.chunk = sorters == 1 ? p.n : int(round_up(cdiv(n, sorters), kSortThreads));
  p.sort_ctas = sorters == 1 ? 1 : int(cdiv(n, p.chunk));  // (none empty)
  const int64_t work = cmax<int64_t>(cmax<int64_t>(P - p.U, p.nblocks - cdiv(p.U, a.block_m)),
                                     a.zero_bytes / 16 + 16);
  p.fill_ctas = (P > p.U || a.zero_bytes > 0)
                    ? int(cmin<int64_t>(128, cdiv(work, int64_t(kSortThreads) * kFillRowsPerThread)))
                    : 0;
  return p;
}

template <class Role>
Status launch_sort_kernel(const SortArgs& a, const SortPlan& p, const QuantArgs& q,
                          const char* what) {
  const int grid = p.sort_ctas + p.fill_ctas + p.quant_ctas;
  const bool chunks = p.sort_ctas > 1;
  const auto kernel = chunks ? MXF_KERNEL_REF(moe_sort_chunks_kernel, Role) : MXF_KERNEL_REF(moe_sort_kernel, Role);
  return dev::launch(kernel, dim3(grid), dim3(kSortThreads), size_t(sort_smem_bytes(a.E, chunks)),
                     dev::stream_of(a.stream), what, a, p, q);
}

// (A template so that only the TUs that call it instantiate its kernel: clang's HIP device
// compile emits every kernel an inline host function names, used or not.)
template <class Role = NoQuantRole>
Status launch_sort(const SortArgs& a) {
  Check c;
  if (sort_args_bad(a, c)) return c.st;
  return launch_sort_kernel<Role>(a, sort_plan(a), QuantArgs{}, "moe_sort launch");
}

// fused_quant_sort: one launch at every T, the sorters, fillers and quantizer CTAs side by
// side (the split pair, mxfp4_quant then moe_sort, took 1.2-1.7x as long at T = 64 ... 2048,
// H200, session 19); sort only without x. Every sort of the entry runs the kernels
// moe_sort_kernel / moe_sort_chunks_kernel<QuantRole<In, MxT>> (with no quantizer CTAs when
// it only sorts: the bytes are the plain sort's), so an instance has one kernel per kernel
// template, which is how AMD code objects name their kernels (device_amd.h).
template <class In, class MxT>
Status launch_fused_quant_sort(const FusedQuantSortArgs& f) {
  using Fused = QuantRole<In, MxT>;
  if (f.quant.x == nullptr) return launch_sort<Fused>(f.sort);
  Check c;
  if (sort_args_bad(f.sort, c) || quant_args_bad(f.quant, true, c)) return c.st;
  if (f.quant.stream != f.sort.stream)
    return Status::error("quant.stream and sort.stream must be the same stream");
  SortPlan p = sort_plan(f.sort);
  // (quantizer CTAs stride over the blocks past this many)
  const int64_t blocks = f.quant.M * cdiv(f.quant.K, 32);
  p.quant_lanes = quant_lanes(blocks, quant_role_thread_ok(p.sort_ctas > 1));
  p.quant_ctas = int(cmin<int64_t>(kMaxQuantCtas, cdiv(blocks * p.quant_lanes, kSortThreads)));
  return launch_sort_kernel<Fused>(f.sort, p, f.quant, "fused_quant_sort launch");
}
#endif

}  // namespace gpu
}  // namespace mxf
