// mxfp4_quant: 8 threads or one per 32-element block of a row (quant_lanes); mxfp4_dequant: one.
//
// Portable (device layer only). The arithmetic is numerics.h's, called through
// mx_quantize32 / mx_encode_lanes / mx_dequant, so results are bit-identical to the CPU
// target and the torch reference. Rows are independent, so the quantizer is also the "quant role" of
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

// Blocks of the flattened [M, Kp/32] index space, one per thread, `stride` apart: where
// there are many blocks (quant_lanes below).
template <class In, class MxT>
MXF_DEV void quant_blocks_thread(const QuantArgs& a, int64_t index, int64_t stride) {
  const int64_t nb = cdiv(a.K, 32);
  const int64_t total = a.M * nb;
  for (int64_t g = index; g < total; g += stride) quant_block<In, MxT>(a, g / nb, g % nb);
}

// The same blocks with kQuantLanes lanes per block: a block's chain of 32 conversions in
// one thread sets the time where there are few blocks (a few hundred at decode, up to tens
// of thousands at prefill). mx_encode_lanes (mx.cuh) gives each lane its codes with the
// block's scale, so the bytes are mx_quantize32's. Each lane loads its kPer consecutive elements in one vector
// load and stores its codes' bytes in one store where the row and the block allow (the
// whole block inside K, rows aligned), element by element elsewhere. `index`: this
// thread's place in [0, stride); stride and the warp size are multiples of kQuantLanes, so
// every lane of a warp runs the loop the same number of times (the shuffles need the
// whole warp).
constexpr int kQuantLanes = 8;
template <int kBytes>
struct alignas(kBytes) LaneBytes { uint32_t u[kBytes / 4]; };
template <class In, class MxT>
MXF_DEV void quant_blocks_lanes(const QuantArgs& a, int64_t index, int64_t stride) {
  using Elem = ElemOf<MxT>;
  using S = typename Io<In>::S;
  constexpr int kBytes = MxBlockBytes<Elem>::value, kPer = 32 / kQuantLanes;
  constexpr int kLaneBytes = kBytes / kQuantLanes;  // 2 (e2m1) or 4 (e4m3)
  constexpr int kLoadBytes = kPer * int(sizeof(S));  // 8 (bf16, fp16) or 16 (fp32)
  using Load = LaneBytes<kLoadBytes>;
  const int64_t nb = cdiv(a.K, 32), total = a.M * nb;
  const int part = dev::lane_id() % kQuantLanes;
  const bool vec_in = (reinterpret_cast<uintptr_t>(a.x) % kLoadBytes) == 0 &&
                      (a.x_stride * int64_t(sizeof(S))) % kLoadBytes == 0;
  const bool vec_out = (reinterpret_cast<uintptr_t>(a.q) % kLaneBytes) == 0 && a.q_stride % kLaneBytes == 0;
  const int64_t warp_first = (index - dev::lane_id()) / kQuantLanes;  // the warp's first block
  for (int64_t g0 = warp_first; g0 < total; g0 += stride / kQuantLanes) {
    const int64_t g = g0 + dev::lane_id() / kQuantLanes, row = g / nb, blk = g % nb;
    const bool live = g < total;
    const S* x = static_cast<const S*>(a.x) + row * a.x_stride + blk * 32 + part * kPer;
    // the lane's elements as bits (zero bits past K: the value 0), then one conversion
    // (one path of conversions keeps the fused quant+sort's 1024-thread kernel from
    // spilling on AMD)
    Load w;
    if (live && vec_in && (blk + 1) * 32 <= a.K) {
      w = *reinterpret_cast<const Load*>(x);
    } else {
#pragma unroll
      for (int j = 0; j < kLoadBytes / 4; ++j) w.u[j] = 0u;
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        if (!live || blk * 32 + part * kPer + i >= a.K) continue;
        if constexpr (sizeof(S) == 2) w.u[i / 2] |= uint32_t(x[i]) << (16 * (i % 2));
        else w.u[i] = f32_bits(x[i]);
      }
    }
    float v[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) v[i] = Io<In>::from_bits(w.u, i);
    uint8_t s;
    const uint32_t codes = mx_encode_lanes<Elem, kQuantLanes>(v, Rounding(a.rounding), s);
    if (!live) continue;  // (e2m1 codes: element 2i in the low nibble of byte i)
    uint8_t* q = static_cast<uint8_t*>(a.q) + row * a.q_stride + blk * kBytes + part * kLaneBytes;
    if (vec_out) {
      if constexpr (kLaneBytes == 2) *reinterpret_cast<uint16_t*>(q) = uint16_t(codes);
      else *reinterpret_cast<uint32_t*>(q) = codes;
    } else {
#pragma unroll
      for (int b = 0; b < kLaneBytes; ++b) q[b] = uint8_t(codes >> (8 * b));
    }
    if (part == 0) a.scales[row * a.scale_stride + blk] = s;
  }
}

// Threads per block of the quantizer (the quant kernel and the fused quant+sort's quantizer
// CTAs): kQuantLanes up to kQuantLaneBlocks blocks, where a thread per block leaves too few
// threads to hide its chain; one above, where the lanes' repeated scale arithmetic and
// shuffles cost more than they hide. H200, MiniMax rows (K = 3072), quant kernel alone:
// 8 lanes 2.4-6.4 us at 64-512 rows (6.0-7.3 with one thread), one thread 10.2 and 15.6 us
// at 1024 and 2048 rows (8 lanes: 12.0 and 21; session 19).
// kThread: whether the caller's kernel may hold the one-thread quantizer (the fused
// quant+sort's 1024-thread CTAs: dev::kBlockQuantIn1024Threads); without it, 8 lanes always.
constexpr int64_t kQuantLaneBlocks = int64_t(1) << 16;
MXF_HD int quant_lanes(int64_t blocks, bool thread_ok = true) {
  return blocks <= kQuantLaneBlocks || !thread_ok ? kQuantLanes : 1;
}
template <class In, class MxT, bool kThread = true>
MXF_DEV void quant_blocks(const QuantArgs& a, int lanes, int64_t index, int64_t stride) {
  if constexpr (kThread) {
    if (lanes == 1) return quant_blocks_thread<In, MxT>(a, index, stride);
  }
  quant_blocks_lanes<In, MxT>(a, index, stride);
}

template <class In, class MxT>
MXF_KERNEL void MXF_LAUNCH_BOUNDS(kQuantThreads) mx_quant_kernel(QuantArgs a, int lanes) {
  dev::wait_prior_grids();
  dev::launch_dependents();
  quant_blocks<In, MxT>(a, lanes, int64_t(dev::block_x()) * kQuantThreads + dev::thread_x(),
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

inline int quant_grid(int64_t threads) {
  // Enough CTAs to fill the GPU several times over; the kernel strides over the rest.
  return int(cmin<int64_t>(cdiv(threads, kQuantThreads), 1 << 16));
}

template <class In, class MxT>
Status launch_quant(const QuantArgs& a) {
  Check c;
  if (quant_args_bad(a, true, c)) return c.st;
  const int64_t blocks = a.M * cdiv(a.K, 32);
  const int lanes = quant_lanes(blocks);
  return dev::launch(MXF_KERNEL_REF(mx_quant_kernel, In, MxT), dim3(quant_grid(blocks * lanes)),
                     dim3(kQuantThreads), 0, dev::stream_of(a.stream), "mxfp4_quant launch", a, lanes);
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
