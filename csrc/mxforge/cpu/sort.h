// moe_sort on the CPU, literally docs/ops.md "MoE sorting" (the GPU sorters must produce
// the same bytes):
//   - routes r = t*k + slot with expert id in [0, E) and (no mask or mask[id] != 0) count;
//   - experts in increasing id, each non-empty expert's rows padded to a multiple of
//     block_m, routes of one expert in increasing r;
//   - row = (slot << 24) | t, weight topk_weights[r]; padding rows and rows past the used
//     ones up to the capacity P = T*k + E*block_m - k hold (k << 24) | T, weight 0;
//   - sorted_expert_ids[b] = expert of block b, -1 past the used blocks (cdiv(P, block_m)
//     entries); num_valid_ids = [used rows, T]; zero_buf (zero_bytes) is zeroed.
// The workspace is not used on the CPU.
#pragma once
#include <vector>

#include "mxforge/cpu/base.h"
#include "mxforge/cpu/quant.h"

namespace mxf {
namespace cpu {

inline int64_t sort_capacity(const SortArgs& a) { return a.T * a.topk + a.E * a.block_m - a.topk; }

inline Status check_sort_args(const SortArgs& a) {
  if (a.sorted_ids == nullptr || a.sorted_weights == nullptr || a.sorted_expert_ids == nullptr ||
      a.num_valid_ids == nullptr)
    return Status::error("sorted_ids, sorted_weights, sorted_expert_ids and num_valid_ids are "
                         "required");
  if (a.T > 0 && (a.topk_ids == nullptr || a.topk_weights == nullptr))
    return Status::error("topk_ids and topk_weights are required (T > 0)");
  if (a.T < 0 || a.T > kTokenMask) return Status::error("T must be in [0, 2^24)");
  if (a.topk < 1 || a.topk > 127) return Status::error("topk must be in [1, 127]");
  if (a.E < 1 || a.block_m < 1) return Status::error("E and block_m must be >= 1");
  if (sort_capacity(a) < 0) return Status::error("capacity T*k + E*block_m - k is negative");
  if (a.zero_bytes < 0 || (a.zero_bytes > 0 && a.zero_buf == nullptr))
    return Status::error("zero_bytes > 0 needs zero_buf");
  return Status::ok();
}

// Runs the sort (args already checked).
inline Status run_sort(const SortArgs& a) {
  const int64_t T = a.T, k = a.topk, E = a.E, bm = a.block_m, P = sort_capacity(a);
  const int64_t routes = T * k;
  std::vector<int64_t> start;
  try {
    start.assign(size_t(E) + 1, 0);
  } catch (const std::bad_alloc&) {
    return Status::error("out of host memory (sort counters)");
  }
  auto valid = [&](int32_t id) { return route_kept(id, E, a.expert_mask); };
  // start[e + 1] = routes of e, then padded prefix sums.
  for (int64_t r = 0; r < routes; ++r)
    if (valid(a.topk_ids[r])) ++start[size_t(a.topk_ids[r]) + 1];
  std::vector<int64_t> count(start.begin() + 1, start.end());
  for (int64_t e = 0; e < E; ++e) start[size_t(e) + 1] = start[size_t(e)] + round_up(count[size_t(e)], bm);
  const int64_t used = start[size_t(E)];
  if (used > P) return Status::error("sorted rows exceed the capacity P (E < topk?)");

  const int32_t sentinel = int32_t((k << kTokenBits) | T);
  std::vector<int64_t> cursor(start.begin(), start.end() - 1);
  for (int64_t r = 0; r < routes; ++r) {
    const int32_t id = a.topk_ids[r];
    if (!valid(id)) continue;
    const int64_t pos = cursor[size_t(id)]++;
    a.sorted_ids[pos] = int32_t(((r % k) << kTokenBits) | (r / k));
    a.sorted_weights[pos] = a.topk_weights[r];
  }
  for (int64_t e = 0; e < E; ++e)
    for (int64_t pos = cursor[size_t(e)]; pos < start[size_t(e) + 1]; ++pos) {
      a.sorted_ids[pos] = sentinel;
      a.sorted_weights[pos] = 0.0f;
    }
  for (int64_t pos = used; pos < P; ++pos) {
    a.sorted_ids[pos] = sentinel;
    a.sorted_weights[pos] = 0.0f;
  }
  int64_t b = 0;
  for (int64_t e = 0; e < E; ++e)
    for (int64_t n = (start[size_t(e) + 1] - start[size_t(e)]) / bm; n > 0; --n)
      a.sorted_expert_ids[b++] = int32_t(e);
  for (const int64_t nb = cdiv(P, bm); b < nb; ++b) a.sorted_expert_ids[b] = -1;
  a.num_valid_ids[0] = int32_t(used);
  a.num_valid_ids[1] = int32_t(T);
  parallel_zero(a.zero_buf, a.zero_bytes);
  return Status::ok();
}

inline Status moe_sort(const SortArgs& a) {
  Status st = check_sort_args(a);
  return st.code != 0 ? st : run_sort(a);
}

// fused_quant_sort: exactly mxfp4_quant then moe_sort (the same functions); quant.x == null
// means a pre-quantized input: sort only.
template <class InTag, class QTag>
inline Status fused_quant_sort(const FusedQuantSortArgs& a) {
  const bool quant = a.quant.x != nullptr;
  if (quant) {
    Status st = check_quant_args<QTag>(a.quant, true);
    if (st.code != 0) return st;
  }
  Status st = check_sort_args(a.sort);
  if (st.code != 0) return st;
  if (quant && a.quant.M > 0 && a.quant.K > 0) run_quant<InTag, QTag>(a.quant);
  return run_sort(a.sort);
}

}  // namespace cpu
}  // namespace mxf
