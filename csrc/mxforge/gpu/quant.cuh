// mxfp4_quant / mxfp4_dequant: one thread per 32-element block of a row.
//
// Portable (device layer only). The arithmetic is numerics.h's, called through
// mx_quantize32 / mx_dequant, so results are bit-identical to the CPU target and the
// torch reference. Rows are independent, so the quantizer is also the "quant role" of
// the fused quant+sort kernel (gpu/sort.cuh).
#pragma once
#include <stdint.h>

#include "mxforge/gpu/common.cuh"
#include "mxforge/gpu/mx.cuh"

namespace mxf {
namespace gpu {

constexpr int kQuantThreads = 256;

// Element format of an MX tag (Fp4Mx -> E2m1, Fp8Mx -> E4m3).
template <class MxT>
using ElemOf = typename MxT::elem;

// Quantize block `blk` of row `row` of a.x into a.q / a.scales.
template <class In, class MxT>
MXF_DEV void quant_block(const QuantArgs& a, int64_t row, int64_t blk) {
  using IoT = Io<In>;
  using S = typename IoT::S;
  using Elem = ElemOf<MxT>;
  constexpr int kBytes = MxBlockBytes<Elem>::value;
  const S* x = static_cast<const S*>(a.x) + row * a.x_stride;
  const int64_t k0 = blk * 32;
  float v[32];
  // 16-byte loads when the whole block is inside the row and the rows are aligned.
  constexpr int kPerVec = 16 / int(sizeof(S));
  if (k0 + 32 <= a.K && aligned16(x) && (a.x_stride * int64_t(sizeof(S))) % 16 == 0) {
#pragma unroll
    for (int c = 0; c < 32 / kPerVec; ++c) {
      const dev::Vec16 w = dev::ld16(x + k0 + c * kPerVec);
      const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
      for (int i = 0; i < kPerVec; ++i) v[c * kPerVec + i] = IoT::from_bits(u, i);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 32; ++i) v[i] = (k0 + i < a.K) ? IoT::get(x, k0 + i) : 0.0f;
  }
  uint32_t words[kBytes / 4];
  const uint8_t s = mx_quantize32<Elem>(v, Rounding(a.rounding), words);
  uint8_t* q = static_cast<uint8_t*>(a.q) + row * a.q_stride + blk * kBytes;
  if (aligned16(static_cast<uint8_t*>(a.q)) && a.q_stride % 16 == 0) {
#pragma unroll
    for (int c = 0; c < kBytes / 16; ++c)
      dev::st16(q + 16 * c, dev::Vec16{words[4 * c], words[4 * c + 1], words[4 * c + 2],
                                        words[4 * c + 3]});
  } else {
#pragma unroll
    for (int i = 0; i < kBytes; ++i) q[i] = uint8_t(words[i / 4] >> (8 * (i % 4)));
  }
  a.scales[row * a.scale_stride + blk] = s;
}

// Blocks [first, first + count) of the flattened [M, Kp/32] index space, `stride` apart
// for this thread: used by the quant kernel and the fused kernel's quant role.
template <class In, class MxT>
MXF_DEV void quant_blocks(const QuantArgs& a, int64_t index, int64_t stride) {
  const int64_t nb = cdiv(a.K, 32);
  const int64_t total = a.M * nb;
  for (int64_t g = index; g < total; g += stride) quant_block<In, MxT>(a, g / nb, g % nb);
}

// The same blocks with kQuantLanes lanes per block (the fused quant+sort's quantizer: at
// decode there are a few hundred blocks, so a block's chain of 32 conversions in one
// thread, not bandwidth, set the kernel's time): mx_encode_lanes (mx.cuh), each lane
// storing its four codes' bytes, so the bytes are quant_block's. `index`: this thread's
// place in [0, stride); stride and the warp size are multiples of kQuantLanes, so every
// lane of a warp runs the loop the same number of times (the shuffles need the whole warp).
constexpr int kQuantLanes = 8;
template <class In, class MxT>
MXF_DEV void quant_blocks_lanes(const QuantArgs& a, int64_t index, int64_t stride) {
  using Elem = ElemOf<MxT>;
  constexpr int kBytes = MxBlockBytes<Elem>::value, kPer = 32 / kQuantLanes;
  constexpr int kLaneBytes = kBytes / kQuantLanes;  // 2 (e2m1) or 4 (e4m3)
  const int64_t nb = cdiv(a.K, 32), total = a.M * nb;
  const int part = dev::lane_id() % kQuantLanes;
  const int64_t warp_first = (index - dev::lane_id()) / kQuantLanes;  // the warp's first block
  for (int64_t g0 = warp_first; g0 < total; g0 += stride / kQuantLanes) {
    const int64_t g = g0 + dev::lane_id() / kQuantLanes, row = g / nb, blk = g % nb;
    const bool live = g < total;
    const typename Io<In>::S* x = static_cast<const typename Io<In>::S*>(a.x) + row * a.x_stride;
    float v[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t k = blk * 32 + part * kPer + i;
      v[i] = (live && k < a.K) ? Io<In>::get(x, k) : 0.0f;
    }
    uint8_t s;
    const uint32_t codes = mx_encode_lanes<Elem, kQuantLanes>(v, Rounding(a.rounding), s);
    if (!live) continue;  // (e2m1 codes: element 2i in the low nibble of byte i)
    uint8_t* q = static_cast<uint8_t*>(a.q) + row * a.q_stride + blk * kBytes + part * kLaneBytes;
#pragma unroll
    for (int b = 0; b < kLaneBytes; ++b) q[b] = uint8_t(codes >> (8 * b));
    if (part == 0) a.scales[row * a.scale_stride + blk] = s;
  }
}

template <class In, class MxT>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(kQuantThreads) mx_quant_kernel(QuantArgs a) {
  dev::wait_prior_grids();
  dev::launch_dependents();
  quant_blocks<In, MxT>(a, int64_t(dev::block_x()) * kQuantThreads + dev::thread_x(),
                        int64_t(dev::grid_dim_x()) * kQuantThreads);
}

// Dequantize block `blk` of row `row`: element * 2^(s-127) in fp32, then Out.
template <class MxT, class Out>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(kQuantThreads) mx_dequant_kernel(QuantArgs a) {
  dev::wait_prior_grids();
  dev::launch_dependents();
  using Elem = ElemOf<MxT>;
  using S = typename Io<Out>::S;
  constexpr int kBytes = MxBlockBytes<Elem>::value;
  const int64_t nb = cdiv(a.K, 32);
  const int64_t total = a.M * nb;
  const int64_t stride = int64_t(dev::grid_dim_x()) * kQuantThreads;
  const bool vec = aligned16(a.q) && a.q_stride % 16 == 0;
  for (int64_t g = int64_t(dev::block_x()) * kQuantThreads + dev::thread_x(); g < total;
       g += stride) {
    const int64_t row = g / nb, blk = g % nb;
    const uint8_t* q = static_cast<const uint8_t*>(a.q) + row * a.q_stride + blk * kBytes;
    uint32_t words[kBytes / 4];
    if (vec) {
#pragma unroll
      for (int c = 0; c < kBytes / 16; ++c) {
        dev::Vec16 w = dev::ld16(q + 16 * c);
        words[4 * c] = w.x, words[4 * c + 1] = w.y, words[4 * c + 2] = w.z, words[4 * c + 3] = w.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < kBytes / 4; ++i)
        words[i] = uint32_t(q[4 * i]) | uint32_t(q[4 * i + 1]) << 8 |
                   uint32_t(q[4 * i + 2]) << 16 | uint32_t(q[4 * i + 3]) << 24;
    }
    const uint8_t s = a.scales[row * a.scale_stride + blk];
    S* y = static_cast<S*>(a.y) + row * a.x_stride + blk * 32;
    const int64_t n = cmin<int64_t>(32, a.K - blk * 32);
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      uint32_t code;
      if constexpr (kBytes == 16)
        code = (words[i / 8] >> (4 * (i % 8))) & 15u;
      else
        code = (words[i / 4] >> (8 * (i % 4))) & 255u;
      if (i < n) y[i] = Io<Out>::put(mx_dequant(MxDecode<Elem>::decode(code), s));
    }
  }
}

// ---- host launchers ------------------------------------------------------------------
#if MXF_HOST_LAUNCH
inline bool quant_args_bad(const QuantArgs& a, bool quant, Check& c) {
  return c.fail(a.M < 0 || a.K < 0, "M and K must be >= 0") ||
         (a.M > 0 && a.K > 0 &&
          ((quant ? c.null(a.x, "x is null") : c.null(a.y, "y (output) is null")) ||
           c.null(a.q, "q is null") || c.null(a.scales, "scales is null"))) ||
         c.fail(quant && (a.rounding < 0 || a.rounding > 3), "rounding must be 0..3");
}

inline int quant_grid(int64_t blocks) {
  // Enough blocks to fill the GPU several times over; the kernel strides over the rest.
  return int(cmin<int64_t>(cdiv(blocks, kQuantThreads), 1 << 16));
}

template <class In, class MxT>
Status launch_quant(const QuantArgs& a) {
  Check c;
  if (quant_args_bad(a, true, c)) return c.st;
  const int grid = quant_grid(a.M * cdiv(a.K, 32));
  return dev::launch(MXF_KERNEL_REF(mx_quant_kernel, In, MxT), dim3(grid), dim3(kQuantThreads), 0,
                     dev::stream_of(a.stream), "mxfp4_quant launch", a);
}

template <class MxT, class Out>
Status launch_dequant(const QuantArgs& a) {
  Check c;
  if (quant_args_bad(a, false, c)) return c.st;
  const int grid = quant_grid(a.M * cdiv(a.K, 32));
  return dev::launch(MXF_KERNEL_REF(mx_dequant_kernel, MxT, Out), dim3(grid), dim3(kQuantThreads), 0,
                     dev::stream_of(a.stream), "mxfp4_dequant launch", a);
}
#endif

}  // namespace gpu
}  // namespace mxf
