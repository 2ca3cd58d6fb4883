// mx_pack: MXFP4 weights and scales between the plain layout and a packed layout.
//
// Only the forward maps Layout::w_off / s_off are used (layout.h is the one source): the
// kernel walks the packed layout's padded index space (n < rows(N), kb < kpad(K)/2),
// which w_off maps one-to-one onto the packed tensor, and reads or writes the plain side
// at the same (n, kb), substituting padding (zero codes, scale 127) where (n, kb) is past
// the plain tensor. Direction 0 writes every packed byte, direction 1 every plain byte.
// Weights move in 16-byte chunks: 16 consecutive kb (kb % 16 == 0) are contiguous in both
// layouts (plain rows are Kp/2 bytes, Kp/2 % 16 == 0; shuffled tiles are 32 bytes wide);
// a layout with PairBits words (pairbits) also recodes each chunk's four words.
#pragma once
#include <stdint.h>

#include "mxforge/gpu/common.cuh"
#include "mxforge/layout.h"

namespace mxf {
namespace gpu {

constexpr int kPackThreads = 256;
constexpr uint8_t kPadScale = 127;  // 2^0

template <class Layout>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(kPackThreads) mx_pack_kernel(PackArgs a) {
  dev::wait_prior_grids();
  dev::launch_dependents();
  const int64_t N = a.N, K = a.K;
  const int64_t Np = Layout::rows(N), Kq = Layout::kpad(K), Kp = LayoutPlain::kpad(K);
  const bool to_packed = a.direction == 0;
  // The index space walked: the packed layout's padded one (to_packed) or the plain one.
  const int64_t rows = to_packed ? Np : N;
  const int64_t wchunks = (to_packed ? Kq : Kp) / 32;  // 16-byte chunks per row
  const int64_t scols = (to_packed ? Kq : Kp) / 32;    // scales per row
  const int64_t pw = Layout::w_bytes(N, K), ps = Layout::s_bytes(N, K);      // per expert
  const int64_t lw = LayoutPlain::w_bytes(N, K), ls = LayoutPlain::s_bytes(N, K);
  const int64_t stride = int64_t(dev::grid_dim_x()) * kPackThreads;
  const int64_t first = int64_t(dev::block_x()) * kPackThreads + dev::thread_x();

  if (a.src_w != nullptr && a.dst_w != nullptr) {
    const bool vec = aligned16(a.src_w) && aligned16(a.dst_w);
    const int64_t total = a.E * rows * wchunks;
    for (int64_t g = first; g < total; g += stride) {
      const int64_t e = g / (rows * wchunks), r = g % (rows * wchunks);
      const int64_t n = r / wchunks, kb = (r % wchunks) * 16;
      const int64_t plain = e * lw + LayoutPlain::w_off(n, kb, N, K);
      const int64_t packed = e * pw + Layout::w_off(n, kb, N, K);
      const bool inside = n < N && kb < Kp / 2;  // else padding (only when to_packed)
      const uint8_t* src = a.src_w + (to_packed ? plain : packed);
      uint8_t* dst = a.dst_w + (to_packed ? packed : plain);
      // (Natural codes move as they are. Routing them through the recoding below, whose
      // encode/natural are then the identity, changed this kernel's machine code for the
      // shuffled layout, so it keeps its own path until that version has run on a GPU.)
      if (!Layout::Bits::kPairbits) {
        if (vec) {
          dev::st16(dst, inside ? dev::ld16(src) : dev::zero16());
        } else {
          for (int i = 0; i < 16; ++i) dst[i] = inside ? src[i] : uint8_t(0);
        }
        continue;
      }
      // Words whose bits the layout rearranges (layout.h): encode on the way in, back to
      // natural on the way out (padding: zero codes encode to zero bits).
      uint32_t w[4] = {0u, 0u, 0u, 0u};
      if (inside) {
        if (vec) {
          const dev::Vec16 v = dev::ld16(src);
          w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
        } else {
          for (int i = 0; i < 16; ++i) w[i / 4] |= uint32_t(src[i]) << (8 * (i % 4));
        }
      }
      for (int q = 0; q < 4; ++q) w[q] = to_packed ? Layout::Bits::encode(w[q]) : Layout::Bits::natural(w[q]);
      if (vec) {
        dev::st16(dst, dev::Vec16{w[0], w[1], w[2], w[3]});
      } else {
        for (int i = 0; i < 16; ++i) dst[i] = uint8_t(w[i / 4] >> (8 * (i % 4)));
      }
    }
  }
  const int64_t total = a.E * rows * scols;
  for (int64_t g = first; g < total; g += stride) {
    const int64_t e = g / (rows * scols), r = g % (rows * scols);
    const int64_t n = r / scols, c = r % scols;
    const int64_t plain = e * ls + LayoutPlain::s_off(n, c, N, K);
    const int64_t packed = e * ps + Layout::s_off(n, c, N, K);
    if (to_packed)
      a.dst_s[packed] = (n < N && c < Kp / 32) ? a.src_s[plain] : kPadScale;
    else
      a.dst_s[plain] = a.src_s[packed];
  }
}

#if MXF_HOST_LAUNCH
template <class Layout>
Status launch_pack(const PackArgs& a) {
  Check c;
  if (c.fail(a.E < 0 || a.N < 0 || a.K < 0, "E, N and K must be >= 0") ||
      c.fail(a.direction != 0 && a.direction != 1, "direction must be 0 or 1") ||
      c.fail((a.src_w == nullptr) != (a.dst_w == nullptr),
             "src_w and dst_w must both be given (or both null: scales only)"))
    return c.st;
  if (a.E == 0 || a.N == 0 || a.K == 0) return Status::ok();
  if (c.null(a.src_s, "src_s is null") || c.null(a.dst_s, "dst_s is null")) return c.st;
  const int64_t work = a.E * Layout::rows(a.N) * (Layout::kpad(a.K) / 32);
  const int grid = int(cmin<int64_t>(cdiv(work, kPackThreads), 1 << 16));
  return dev::launch(MXF_KERNEL_REF(mx_pack_kernel, Layout), dim3(grid), dim3(kPackThreads), 0,
                     dev::stream_of(a.stream), "mx_pack launch", a);
}
#endif

}  // namespace gpu
}  // namespace mxf
