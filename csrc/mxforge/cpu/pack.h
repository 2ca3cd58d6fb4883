// mx_pack on the CPU (docs/ops.md "Weight layouts"): MXFP4 weights [E, N, Kp/2] + scales
// [E, N, Kp/32] between the plain row-major layout and Layout. Direction 0 (plain ->
// Layout) writes every byte of the padded layout: zero codes and scale 127 in padding.
// Direction 1 (Layout -> plain) reads back the [N, Kp] part. Null src_w and dst_w convert
// the scales alone (shuffle_scales / unshuffle_scales).
#pragma once
#include "mxforge/cpu/base.h"

namespace mxf {
namespace cpu {

template <class Layout>
inline Status mx_pack(const PackArgs& a) {
  if (a.E < 0 || a.N < 0 || a.K < 0) return Status::error("E, N and K must be >= 0");
  if (a.direction != 0 && a.direction != 1)
    return Status::error("direction must be 0 (plain -> layout) or 1 (layout -> plain)");
  if (a.E == 0 || a.N == 0 || a.K == 0) return Status::ok();
  if (a.src_s == nullptr || a.dst_s == nullptr) return Status::error("src_s and dst_s are required");
  if ((a.src_w == nullptr) != (a.dst_w == nullptr))
    return Status::error("src_w and dst_w are both given or both null");
  const int64_t N = a.N, K = a.K;
  const int64_t blocks = round_up(K, 32) / 32;          // plain: 32-element blocks per row
  const int64_t lblocks = Layout::kpad(K) / 32;         // layout: blocks per padded row
  const int64_t rows = a.direction == 0 ? Layout::rows(N) : N;
  const int64_t wl = Layout::w_bytes(N, K), sl = Layout::s_bytes(N, K);
  const bool to_layout = a.direction == 0;
#pragma omp parallel for schedule(static) if (a.E * rows * lblocks >= (int64_t(1) << 14))
  for (int64_t i = 0; i < a.E * rows; ++i) {
    const int64_t e = i / rows, n = i % rows;
    const int64_t prow = e * N + n;  // plain row (valid when n < N)
    const int64_t nb = to_layout ? lblocks : blocks;
    for (int64_t c = 0; c < nb; ++c) {
      const bool real = n < N && c < blocks;
      const int64_t woff = e * wl + Layout::w_off(n, c * 16, N, K);
      const int64_t soff = e * sl + Layout::s_off(n, c, N, K);
      if (to_layout) {
        if (a.dst_w != nullptr) {
          if (real) memcpy(a.dst_w + woff, a.src_w + prow * blocks * 16 + c * 16, 16);
          else memset(a.dst_w + woff, 0, 16);
          recode_words<typename Layout::Bits>(a.dst_w + woff, true);
        }
        a.dst_s[soff] = real ? a.src_s[prow * blocks + c] : uint8_t(127);
      } else {
        if (a.dst_w != nullptr) {
          memcpy(a.dst_w + prow * blocks * 16 + c * 16, a.src_w + woff, 16);
          recode_words<typename Layout::Bits>(a.dst_w + prow * blocks * 16 + c * 16, false);
        }
        a.dst_s[prow * blocks + c] = a.src_s[soff];
      }
    }
  }
  return Status::ok();
}

}  // namespace cpu
}  // namespace mxf
