// MX blocks in the tile layer: quantize one block of 32 values (the scale rule and the
// element rounding of numerics.h, nothing else), and decode element codes quickly for the
// GEMM loaders. Portable; the MXF_HD functions also compile on the host, where they are
// checked exhaustively against numerics.h.
#pragma once
#include <stdint.h>

#include "mxforge/gpu/common.cuh"
#include "mxforge/layout.h"
#include "mxforge/numerics.h"
#include "mxforge/types.h"

namespace mxf {
namespace gpu {

// Bytes of one 32-element block of codes: 16 for e2m1 (two per byte), 32 for e4m3.
template <class Elem>
struct MxBlockBytes;
template <>
struct MxBlockBytes<E2m1> { static constexpr int value = 16; };
template <>
struct MxBlockBytes<E4m3> { static constexpr int value = 32; };

// The pieces of quantizing one MX block exactly as docs/ops.md says, shared by the whole-
// block form (mx_quantize32) and the lane-parallel one (mx_encode_lanes) below:
// max of |x| on the bit patterns: NaN patterns compare above Inf above every finite value,
// so a NaN anywhere yields a NaN amax (and e8m0_scale maps NaN/Inf to 0xFF). Callers may
// combine partial results with the same max.
template <int N>
MXF_HD uint32_t abs_max_bits(const float* v) {
  uint32_t amax_bits = 0;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    uint32_t b = f32_bits(v[i]) & 0x7fffffffu;
    amax_bits = b > amax_bits ? b : amax_bits;
  }
  return amax_bits;
}
// The block's scale byte from its amax, by `mode`.
template <class Elem>
MXF_HD uint8_t mx_block_scale(uint32_t amax_bits, Rounding mode) {
  return e8m0_scale(bits_f32(amax_bits), mode, Elem::kMax, Elem::kEmax);
}
// Codes of v[0..N) scaled by 2^(127-s) (mxf::scale_down) and rounded to the element
// format, little-endian from bit 0 (4 bits per e2m1 code, 8 per e4m3 code; N codes fit 32).
template <class Elem, int N>
MXF_HD uint32_t mx_encode(const float* v, uint8_t s) {
  constexpr int kBits = MxBlockBytes<Elem>::value / 4;
  static_assert(N * kBits <= 32, "codes of one 32-bit word");
  uint32_t word = 0;
#pragma unroll
  for (int j = 0; j < N; ++j) word |= uint32_t(Elem::encode(scale_down(v[j], s))) << (kBits * j);
  return word;
}

// One block quantized by kLanes consecutive lanes of a warp, lane p of the group holding
// elements p*N .. p*N + N - 1 (N = 32 / kLanes) in v: the amax meets over the group by
// shuffles (max is order-free), then each lane encodes its N with the block's scale, so
// the codes are mx_quantize32's. Every lane of the warp must call it (the shuffles); a lane
// without a block passes zeros and ignores the result. For where a block's chain of 32
// conversions in one thread, not bandwidth, would set the time (a few hundred blocks at
// decode): the fused quant+sort (quant.cuh) and the re-quantizing stage-1 epilogue.
template <class Elem, int kLanes>
MXF_DEV uint32_t mx_encode_lanes(const float (&v)[32 / kLanes], Rounding mode, uint8_t& scale) {
  uint32_t amax_bits = abs_max_bits<32 / kLanes>(v);
#pragma unroll
  for (int m = 1; m < kLanes; m <<= 1) {
    const uint32_t o = dev::shfl_xor(amax_bits, m);
    amax_bits = o > amax_bits ? o : amax_bits;
  }
  scale = mx_block_scale<Elem>(amax_bits, mode);
  return mx_encode<Elem, 32 / kLanes>(v, scale);
}

// Quantize v[0..31] (one block along K; callers put 0 past K): amax over |v|, the scale
// byte by `mode`, each element scaled and rounded. Codes land little-endian in `words`
// (element 2i in the low nibble of byte i for e2m1).
template <class Elem>
MXF_HD uint8_t mx_quantize32(const float (&v)[32], Rounding mode,
                             uint32_t (&words)[MxBlockBytes<Elem>::value / 4]) {
  const uint8_t s = mx_block_scale<Elem>(abs_max_bits<32>(v), mode);
  constexpr int kPerWord = 32 / (MxBlockBytes<Elem>::value / 4);  // codes per 32 bits
#pragma unroll
  for (int w = 0; w < 32 / kPerWord; ++w) words[w] = mx_encode<Elem, kPerWord>(v + w * kPerWord, s);
  return s;
}

// ---- fast decode for the GEMM loaders ---------------------------------------------------
// Placing the code's exponent/mantissa bits at the top of an fp32 gives the exact value
// times a constant power of two (the subnormal codes land on fp32 subnormals with the
// same ratio), so decode = (bits * 2^c) * scale, two exact multiplications.
//   e2m1: s.ee.m -> fp32 bits s<<31 | ee<<23 | m<<22  = value * 2^-126
//   e4m3: s.eeee.mmm -> fp32 bits s<<31 | eeee<<23 | mmm<<20 = value * 2^-120, except
//         0x7f / 0xff which are NaN in e4m3fn.
MXF_HD float e2m1_decode_fast(uint32_t code) {
  return bits_f32(((code & 8u) << 28) | ((code & 7u) << 22)) * 0x1p126f;
}
MXF_HD float e4m3_decode_fast(uint32_t b) {
  float v = bits_f32(((b & 0x80u) << 24) | ((b & 0x7fu) << 20)) * 0x1p120f;
  return (b & 0x7fu) == 0x7fu ? bits_f32(0x7fc00000u) : v;
}

// Two e2m1 codes (one byte: lo = element 2j, hi = 2j + 1) times 2^(s-127) -> a bf16 pair,
// exactly, where the device layer multiplies bf16 pairs (dev::kHasBf16x2Mul). As above, a
// code s.ee.m placed as bf16 bits s<<15 | ee.m<<6 is value * 2^-126 (ee = 0, m = 1: the
// subnormal 2^-127). x = b | b << 12 puts hi's bits 12 above lo's, so one shift per field
// moves both: ee.m by 6 (to bits 6-8 and 22-24), the sign by 12 (to bits 15 and 31). Then
// two exact multiplies: by 2^(min(s,128)-1) (the result, value * 2^(min(s,128)-127) >=
// 2^-128, is a bf16 at worst subnormal with room for e2m1's 2 significant bits), and by
// 2^max(s-128,0) (exact unless it overflows to inf, as the fp32 path); s = 255 (NaN)
// multiplies by NaN.
struct E2m1PairScale {
  uint32_t lo, hi;  // bf16x2 factors, the same in both halves
  bool hi_needed;   // hi != 1: s > 128 (the NaN scale included)
};
MXF_HD E2m1PairScale e2m1_pair_scale(uint32_t s) {  // s: the scale byte (0..255)
  // lo = 2^(min(s,128)-1) in both halves: min(s,128) + 126 <= 254 at bit 7 of each half by
  // one multiply-add (no carry between the halves); two instructions, which matters
  // where the compiler works it out again for every word rather than hold it.
  const uint32_t lo = (s < 128u ? s : 128u) * 0x00800080u + 126u * 0x00800080u;
  const uint32_t b = s == kE8m0Nan ? 0x7fc0u : ((s > 128u ? s : 128u) - 1u) << 7;
  return E2m1PairScale{lo, b * 0x00010001u, s > 128u};
}
MXF_DEV uint32_t e2m1_pair_bf16x2(uint32_t byte, const E2m1PairScale& k) {
  const uint32_t x = byte * 0x1001u;
  const uint32_t p = ((x << 6) & 0x01c001c0u) | ((x << 12) & 0x80008000u);
  return dev::mul_bf16x2(dev::mul_bf16x2(p, k.lo), k.hi);
}

// A whole word of eight e2m1 codes -> four bf16 pairs in the register-fragment order of
// gemm.cuh (RegK): pair i = (element i, element i + 4), times k.lo only
// (e2m1_word_pairs_lo, for a caller that applies k.hi itself) or exactly
// (e2m1_word_pairs_bf16x2: then k.hi where the scale needs it; multiplying by 1 is exact,
// so skipping it is). Bits is how the word stores its codes (layout.h):
//   NaturalBits (nibble i = element i): both halves of a pair sit 16 bits apart, so one
//     shift per pair aligns both codes at the top of their halves (sign at bits 15/31,
//     ee.m at 12-14/28-30) and two masks place them as bf16 bits (value * 2^-126, as
//     above): 15 integer instructions per word;
//   PairBits: the packer stored each pair's bits where one rotate and one mask place them
//     (pair 3: two of each): 9.
template <class Bits = NaturalBits>
MXF_DEV void e2m1_word_pairs_lo(uint32_t w, const E2m1PairScale& k, uint32_t (&o)[4]) {
  if constexpr (Bits::kPairbits) {
    uint32_t p[4] = {0u, 0u, 0u, 0u};
#pragma unroll
    for (int g = 0; g < PairBits::kGroups; ++g)
      p[PairBits::pair(g)] |= PairBits::rotl(w, PairBits::rot(g)) & PairBits::mask(g);
#pragma unroll
    for (int i = 0; i < 4; ++i) o[i] = dev::mul_bf16x2(p[i], k.lo);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) o[i] = dev::mul_bf16x2(PairBits::pair_bits(w, i), k.lo);
  }
}
template <class Bits = NaturalBits>
MXF_DEV void e2m1_word_pairs_bf16x2(uint32_t w, const E2m1PairScale& k, uint32_t (&o)[4]) {
  e2m1_word_pairs_lo<Bits>(w, k, o);
  if (k.hi_needed) {
#pragma unroll
    for (int i = 0; i < 4; ++i) o[i] = dev::mul_bf16x2(o[i], k.hi);
  }
}

// decode(code) == Elem::decode(code) bit for bit (NaN payloads aside), without the
// table lookup (a dynamically indexed local array would live in local memory on GPUs).
template <class Elem>
struct MxDecode;
template <>
struct MxDecode<E2m1> {
  MXF_HD static float decode(uint32_t code) { return e2m1_decode_fast(code); }
};
template <>
struct MxDecode<E4m3> {
  MXF_HD static float decode(uint32_t code) { return e4m3_decode_fast(code); }
};

// Dequantized element as docs/ops.md defines it: element * 2^(s-127) in fp32, NaN for
// s = 0xFF. The NaN is e8m0_to_f32's (0x7fc00000) whatever the element, which is what
// an x86 reference produces (it propagates the NaN operand of the multiply).
MXF_HD float mx_dequant(float elem, uint8_t s) {
  return s == kE8m0Nan ? bits_f32(0x7fc00000u) : elem * e8m0_to_f32(s);
}

}  // namespace gpu
}  // namespace mxf
