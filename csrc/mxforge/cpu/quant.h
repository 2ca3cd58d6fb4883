// The MX block quantizer of the CPU tile layer (docs/ops.md "Quantization"): mxfp4_quant,
// mxfp4_dequant, the quant half of fused_quant_sort and stage 1's re-quantized output all
// call quantize_block / decode_block, so they agree bit for bit.
#pragma once
#include "mxforge/cpu/base.h"
#include "mxforge/cpu/load.h"

namespace mxf {
namespace cpu {

// One block of 32 fp32 values -> element codes of QTag (Fp4Mx: 16 packed bytes, element
// 2i in the low nibble; Fp8Mx: 32 e4m3 bytes). Returns the e8m0 scale byte.
template <class QTag>
inline uint8_t quantize_block(const float* __restrict x, Rounding mode, uint8_t* __restrict q) {
  using El = typename QTag::elem;
  float amax = 0.0f;
  bool nan = false;
  for (int i = 0; i < 32; ++i) {
    const float a = bits_f32(f32_bits(x[i]) & 0x7fffffffu);
    nan |= is_nan(a);
    amax = a > amax ? a : amax;
  }
  if (nan) amax = bits_f32(0x7fc00000u);  // NaN anywhere => amax NaN => scale 0xFF
  const uint8_t s = e8m0_scale(amax, mode, El::kMax, El::kEmax);
  if constexpr (std::is_same_v<QTag, Fp4Mx>) {
    for (int i = 0; i < 16; ++i)
      q[i] = uint8_t(El::encode(scale_down(x[2 * i], s)) |
                     (El::encode(scale_down(x[2 * i + 1], s)) << 4));
  } else {
    static_assert(std::is_same_v<QTag, Fp8Mx>, "MX tags: Fp4Mx, Fp8Mx");
    for (int i = 0; i < 32; ++i) q[i] = El::encode(scale_down(x[i], s));
  }
  return s;
}

// One row x [K] (InTag storage) -> q [Kp / elems-per-byte] bytes and s [Kp/32] scales,
// Kp = round_up(K, 32); elements past K quantize as +0.
template <class InTag, class QTag>
inline void quantize_row(const typename InTag::storage* __restrict x, int64_t K, Rounding mode,
                         uint8_t* __restrict q, uint8_t* __restrict s) {
  float blk[32];
  for (int64_t c = 0; c * 32 < K; ++c) {
    const int64_t n = K - 32 * c < 32 ? K - 32 * c : 32;
    for (int64_t i = 0; i < n; ++i) blk[i] = InTag::to_f32(x[32 * c + i]);
    for (int64_t i = n; i < 32; ++i) blk[i] = 0.0f;
    s[c] = quantize_block<QTag>(blk, mode, q + c * (32 / QTag::kElemsPerByte));
  }
}

// The inverse: q, s -> y [K] in OutTag (element x 2^(s-127) in fp32, then OutTag).
template <class QTag, class OutTag>
inline void dequantize_row(const uint8_t* __restrict q, const uint8_t* __restrict s, int64_t K,
                           typename OutTag::storage* __restrict y) {
  float blk[32];
  for (int64_t c = 0; c * 32 < K; ++c) {
    const int64_t n = K - 32 * c < 32 ? K - 32 * c : 32;
    decode_block<QTag>(q + c * (32 / QTag::kElemsPerByte), s[c], blk);
    for (int64_t i = 0; i < n; ++i) y[32 * c + i] = OutTag::from_f32(blk[i]);
  }
}

// ---- QuantArgs entries ------------------------------------------------------------------

template <class QTag>
inline Status check_quant_args(const QuantArgs& a, bool quantize) {
  if (a.M < 0 || a.K < 0) return Status::error("M and K must be >= 0");
  if (a.M == 0 || a.K == 0) return Status::ok();
  if ((quantize ? a.x : a.y) == nullptr || a.q == nullptr || a.scales == nullptr)
    return Status::error(quantize ? "x, q and scales are required"
                                  : "y, q and scales are required");
  const int64_t kp = round_up(a.K, 32);
  if (a.x_stride < a.K) return Status::error("x_stride is smaller than K");
  if (a.q_stride < kp / QTag::kElemsPerByte)
    return Status::error("q_stride is smaller than the packed row (Kp / elements per byte)");
  if (a.scale_stride < kp / 32) return Status::error("scale_stride is smaller than Kp/32");
  if (quantize && (a.rounding < kRoundUp || a.rounding > kEven))
    return Status::error("rounding is not a mxf::Rounding value (0..3)");
  return Status::ok();
}

// x [M, K] -> q, scales (args already checked).
template <class InTag, class QTag>
inline void run_quant(const QuantArgs& a) {
  const auto* x = static_cast<const typename InTag::storage*>(a.x);
  auto* q = static_cast<uint8_t*>(a.q);
  const Rounding mode = Rounding(a.rounding);
#pragma omp parallel for schedule(static) if (a.M * a.K >= (int64_t(1) << 16))
  for (int64_t m = 0; m < a.M; ++m)
    quantize_row<InTag, QTag>(x + m * a.x_stride, a.K, mode, q + m * a.q_stride,
                              a.scales + m * a.scale_stride);
}

template <class InTag, class QTag>
inline Status mx_quant(const QuantArgs& a) {
  Status st = check_quant_args<QTag>(a, true);
  if (st.code != 0 || a.M == 0 || a.K == 0) return st;
  run_quant<InTag, QTag>(a);
  return Status::ok();
}

template <class QTag, class OutTag>
inline Status mx_dequant(const QuantArgs& a) {
  Status st = check_quant_args<QTag>(a, false);
  if (st.code != 0 || a.M == 0 || a.K == 0) return st;
  auto* y = static_cast<typename OutTag::storage*>(a.y);
  const auto* q = static_cast<const uint8_t*>(a.q);
#pragma omp parallel for schedule(static) if (a.M * a.K >= (int64_t(1) << 16))
  for (int64_t m = 0; m < a.M; ++m)
    dequantize_row<QTag, OutTag>(q + m * a.q_stride, a.scales + m * a.scale_stride, a.K,
                                 y + m * a.x_stride);
  return Status::ok();
}

}  // namespace cpu
}  // namespace mxf
