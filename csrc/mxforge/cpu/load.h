// Operand views and row loaders of the CPU tile layer: a K-chunk of one operand row,
// dequantized exactly to fp32, for any dtype tag and weight layout.
//
// A view answers, for row r:
//   dense tags (Bf16, Fp16, Fp32): row(r)        -> pointer to K storage elements
//   MX tags (Fp4Mx, Fp8Mx):        group(r, c)   -> the bytes of the 32 elements of scale
//                                                   block c (16 bytes e2m1, 32 bytes e4m3)
//                                  scale(r, c)   -> its e8m0 byte
// StridedRows covers activations (row stride a_stride) and plain dense / fp8 weights;
// LayoutRows covers MXFP4 weights in any mxf::Layout (plain or shuffled): one 32-element
// block is 16 consecutive bytes in every layout (layout.h's tiles are 32 bytes wide).
#pragma once
#include "mxforge/cpu/base.h"

namespace mxf {
namespace cpu {

// Decode tables built from numerics.h at load time (bit-identical to the scalar decoders).
struct Fp4PairTable {  // byte -> (low element, high element)
  float v[256][2];
  Fp4PairTable() {
    for (int b = 0; b < 256; ++b) {
      v[b][0] = e2m1_to_f32(uint8_t(b & 15));
      v[b][1] = e2m1_to_f32(uint8_t(b >> 4));
    }
  }
};
struct Fp8Table {
  float v[256];
  Fp8Table() {
    for (int b = 0; b < 256; ++b) v[b] = e4m3_to_f32(uint8_t(b));
  }
};
inline const Fp4PairTable kFp4Pairs;
inline const Fp8Table kFp8Values;

// The 32 elements of one MX block, times its scale 2^(s-127) (exact; NaN for s = 0xFF).
template <class Tag>
inline void decode_block(const uint8_t* __restrict p, uint8_t s, float* __restrict dst) {
  const float scale = e8m0_to_f32(s);
  if constexpr (std::is_same_v<Tag, Fp4Mx>) {
    for (int i = 0; i < 16; ++i) {
      const float* pair = kFp4Pairs.v[p[i]];
      dst[2 * i] = pair[0] * scale;
      dst[2 * i + 1] = pair[1] * scale;
    }
  } else {
    static_assert(std::is_same_v<Tag, Fp8Mx>, "MX tags: Fp4Mx, Fp8Mx");
    for (int i = 0; i < 32; ++i) dst[i] = kFp8Values.v[p[i]] * scale;
  }
}

// Rows at a fixed stride: elements of Tag::storage for dense tags, bytes (+ a scale row)
// for MX tags.
template <class Tag>
struct StridedRows {
  using S = typename Tag::storage;
  const S* data = nullptr;
  int64_t stride = 0;  // storage units between rows
  const uint8_t* scales = nullptr;
  int64_t scale_stride = 0;

  const S* row(int64_t r) const { return data + r * stride; }
  const uint8_t* group(int64_t r, int64_t c) const {
    return data + r * stride + c * (32 / Tag::kElemsPerByte);
  }
  uint8_t scale(int64_t r, int64_t c) const { return scales[r * scale_stride + c]; }
  using Bits = NaturalBits;
};

// One expert's MXFP4 weights [N, K] in Layout (offsets from layout.h).
template <class Layout>
struct LayoutRows {
  const uint8_t* w = nullptr;
  const uint8_t* s = nullptr;
  int64_t N = 0, K = 0;

  const uint8_t* group(int64_t n, int64_t c) const { return w + Layout::w_off(n, c * 16, N, K); }
  uint8_t scale(int64_t n, int64_t c) const { return s[Layout::s_off(n, c, N, K)]; }
  using Bits = typename Layout::Bits;  // how group()'s words store their codes
};

// Expert weights w [E, N, K] of dtype tag BTag in Layout (docs/ops.md, args.h):
//   Fp4Mx: per expert Layout::w_bytes(N, K) bytes and Layout::s_bytes(N, K) scales;
//   Fp8Mx: [E, N, Kp] bytes + [E, N, Kp/32] scales (plain only);
//   Bf16/Fp16: [E, N, K] elements (plain only).
template <class BTag, class Layout>
struct Weights {
  static_assert(std::is_same_v<BTag, Fp4Mx> || std::is_same_v<Layout, LayoutPlain>,
                "only MXFP4 weights come in non-plain layouts");
  const void* w = nullptr;
  const uint8_t* s = nullptr;
  int64_t N = 0, K = 0;

  auto expert(int64_t e) const {
    if constexpr (std::is_same_v<BTag, Fp4Mx>) {
      return LayoutRows<Layout>{static_cast<const uint8_t*>(w) + e * Layout::w_bytes(N, K),
                                s + e * Layout::s_bytes(N, K), N, K};
    } else if constexpr (BTag::kMx) {
      const int64_t kp = round_up(K, 32);
      return StridedRows<BTag>{static_cast<const uint8_t*>(w) + e * N * kp, kp,
                               s + e * N * (kp / 32), kp / 32};
    } else {
      using S = typename BTag::storage;
      return StridedRows<BTag>{static_cast<const S*>(w) + e * N * K, K, nullptr, 0};
    }
  }
};

// dst[0, kn) = row r, elements [k0, k0 + kn) in fp32; k0 % 32 == 0. MX tags decode whole
// 32-element blocks (dst must have room up to round_up(kn, 32); elements past K are the
// zero codes of the padding). Then dst is zero-filled up to round_up(kn, kPad).
template <class Tag, int kPad = 1, class View>
inline void load_row(const View& v, int64_t r, int64_t k0, int64_t kn, float* __restrict dst) {
  if constexpr (Tag::kMx) {
    const int64_t c0 = k0 / 32, nc = cdiv(kn, 32);
    for (int64_t c = 0; c < nc; ++c) {
      const uint8_t* g = v.group(r, c0 + c);
      uint8_t natural[16];
      if constexpr (View::Bits::kPairbits) {  // back to natural codes first (layout.h)
        memcpy(natural, g, 16);
        recode_words<typename View::Bits>(natural, false);
        g = natural;
      }
      decode_block<Tag>(g, v.scale(r, c0 + c), dst + 32 * c);
    }
  } else {
    const typename Tag::storage* __restrict p = v.row(r) + k0;
    for (int64_t i = 0; i < kn; ++i) dst[i] = Tag::to_f32(p[i]);
  }
  for (int64_t i = kn; i < round_up(kn, kPad); ++i) dst[i] = 0.0f;
}

}  // namespace cpu
}  // namespace mxf
