// The launch ABI: one argument struct per op family, filled by the Python runtime from
// tensor pointers and sizes, read by every target's instances. The extension never sees
// a torch tensor, so one build serves any torch version. Field meaning is in docs/ops.md.
#pragma once
#include <stdint.h>

#include "mxforge/numerics.h"

namespace mxf {

// Sentinel bits of a sorted row: (topk_slot << 24) | token.
constexpr int kTokenBits = 24;
constexpr int32_t kTokenMask = (1 << kTokenBits) - 1;

// Whether a route to expert `id` is kept: the sorter's rule (ids outside [0, E) and the
// experts that expert_mask marks 0 are dropped), which stage 2's slot sums repeat.
MXF_HD bool route_kept(int32_t id, int64_t E, const int32_t* expert_mask) {
  return id >= 0 && id < E && (expert_mask == nullptr || expert_mask[id] != 0);
}

// mxfp4_quant: x [M, K] (bf16/fp16/fp32) -> q [M, Kp / elems_per_byte] + scales [M, Kp/32].
// Kp = round_up(K, 32); elements past K quantize as zeros.
// mxfp4_dequant: the inverse direction (q, scales -> x), same fields.
struct QuantArgs {
  const void* x = nullptr;  // quant: input; dequant: unused
  void* y = nullptr;        // dequant: output; quant: unused
  int64_t x_stride = 0;     // elements between rows of x / y
  void* q = nullptr;
  int64_t q_stride = 0;  // bytes between rows of q
  uint8_t* scales = nullptr;
  int64_t scale_stride = 0;  // bytes between rows of scales
  int64_t M = 0, K = 0;
  int32_t rounding = 0;  // mxf::Rounding
  int64_t stream = 0;
};

// mx_pack: weights [E, N, Kp/2] and scales [E, N, Kp/32] between the plain row-major
// layout and the instance's layout (direction 0: plain -> layout, 1: layout -> plain).
struct PackArgs {
  const uint8_t* src_w = nullptr;
  const uint8_t* src_s = nullptr;
  uint8_t* dst_w = nullptr;
  uint8_t* dst_s = nullptr;
  int64_t E = 0, N = 0, K = 0;  // K: logical elements along the packed dimension
  int32_t direction = 0;
  int64_t stream = 0;
};

// moe_sort: aiter moe_sorting semantics (docs/ops.md). Capacity P = T*k + E*block_m - k.
struct SortArgs {
  const int32_t* topk_ids = nullptr;      // [T, k]
  const float* topk_weights = nullptr;    // [T, k]
  const int32_t* expert_mask = nullptr;   // [E] or null; 0 = expert not local, skipped
  int32_t* sorted_ids = nullptr;          // [P]
  float* sorted_weights = nullptr;        // [P]
  int32_t* sorted_expert_ids = nullptr;   // [cdiv(P, block_m)]
  int32_t* num_valid_ids = nullptr;       // [2]
  void* zero_buf = nullptr;               // optional buffer zeroed here (moe_buf)
  int64_t zero_bytes = 0;
  void* workspace = nullptr;              // GPU scratch (counts), sort_workspace_bytes()
  int64_t workspace_bytes = 0;
  int64_t T = 0, topk = 0, E = 0, block_m = 0;
  int64_t stream = 0;
};

// fused_quant_sort: one entry producing exactly what mxfp4_quant + moe_sort produce.
// With quant.x == nullptr the input is pre-quantized and only the sort runs.
struct FusedQuantSortArgs {
  QuantArgs quant;
  SortArgs sort;
};

// moe_stage1 / moe_stage2 / moe_1stage. Rows are visited through the sorted ids.
// stage1: A row = token,            out row = token*topk + slot, N = 2I, K = H.
// stage2: A row = token*topk + slot, out row = token (accumulated), N = H, K = I.
// 1stage: stage1 (bf16 intermediate) then stage2 in one launch; N = 2I, K = H, N2 = H.
struct MoeGemmArgs {
  const void* a = nullptr;
  int64_t a_stride = 0;  // elements (bf16/fp16) or bytes (pk_fp4/fp8) between A rows
  const uint8_t* a_scales = nullptr;
  int64_t a_scale_stride = 0;
  const void* b = nullptr;           // [E, N, Kp(/2)] in the instance's layout
  const uint8_t* b_scales = nullptr; // [E, N, Kp/32] in the instance's layout
  const float* bias = nullptr;       // [E, N] fp32, with the `bias` flag
  const void* b2 = nullptr;          // 1stage: w2 [E, N2, I]
  const uint8_t* b2_scales = nullptr;
  const float* bias2 = nullptr;      // 1stage: [E, N2]
  const int32_t* sorted_ids = nullptr;
  const float* sorted_weights = nullptr;
  const int32_t* sorted_expert_ids = nullptr;
  const int32_t* num_valid_ids = nullptr;
  void* out = nullptr;
  int64_t out_stride = 0;  // elements (bf16/fp32) or bytes (pk_fp4) between out rows
  uint8_t* out_scales = nullptr;  // stage1 with out pk_fp4
  int64_t out_scale_stride = 0;
  void* workspace = nullptr;  // split_k sums (stage 1: [T*topk, N]; stage 2, bf16 out: [T, N]), see docs
  int64_t workspace_bytes = 0;
  // Stage 2 reducing by route rows (docs/ops.md, "Stage 2"): with `slots` set, a route's
  // weighted row goes, rounded to bf16, to slots[(t*topk + slot) * slots_stride + n] instead
  // of being added into out, and a second kernel writes out[t] = (out[t] if
  // slots_accumulate, else 0) + the fp32 sum of the kept routes' rows of t, in slot order,
  // rounded once. topk_ids [T, topk] and expert_mask (or null) say which routes are kept
  // (route_kept). bf16 out, split_k 1; the instances that have it: docs/ops.md.
  void* slots = nullptr;
  int64_t slots_stride = 0;  // elements; >= N, a multiple of 8
  const int32_t* topk_ids = nullptr;
  const int32_t* expert_mask = nullptr;
  int32_t slots_accumulate = 0;
  // Direct routing (moe_stage1 / moe_stage2): with direct_routes = 1, block b is route b
  // (= t * topk + slot) alone, its expert topk_ids[b] (dropped where expert_mask or the
  // range [0, E) says so), its weight topk_weights[b]; max_blocks = T * topk; the sorted_*
  // pointers are not read (docs/ops.md, "Direct routing").
  int32_t direct_routes = 0;
  const float* topk_weights = nullptr;  // [T, topk] (direct routing)
  // moe_stage1: a buffer zeroed by the launch before any of its CTAs writes (moe_sort's
  // zero_buf, for a stage 2 that adds into out when no sort runs before it).
  void* zero_buf = nullptr;
  int64_t zero_bytes = 0;
  int64_t T = 0, topk = 0, E = 0, N = 0, K = 0, N2 = 0;
  int64_t max_blocks = 0;  // size of sorted_expert_ids (grid upper bound)
  int32_t rounding = 0;    // re-quantized output
  // Test hook (ops.delay_gemm_epilogues): stage-1 / stage-2 CTAs sleep this long after
  // launch_dependents, before their epilogue writes; 0 in production.
  int32_t test_delay_ns = 0;
  int64_t stream = 0;
};

}  // namespace mxf
