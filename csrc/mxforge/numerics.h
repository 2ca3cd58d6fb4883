// MX numerics shared by every target: e2m1 (fp4), e4m3fn (fp8), bf16/fp16 and e8m0.
//
// Everything here is plain C++ on integers and floats so that the CPU target, nvcc and
// clang-HIP compile the same source and produce bit-identical results. No fast-math:
// the scale rules below depend on correctly rounded fp32 division (`amax / 6`).
#pragma once
#include <stdint.h>
#include <string.h>

#if defined(__HIP__) && !defined(__global__)
// AMD device compile (clang -x hip -nogpuinc): nothing comes from HIP headers, so the
// CUDA-style keywords are defined from clang's attributes here, in the first header every
// source includes (MXF_HD below uses them; device_amd.h the others).
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#endif
#if defined(__CUDACC__) || defined(__HIP__)
#define MXF_HD __host__ __device__ __forceinline__
#else
#define MXF_HD inline
#endif

namespace mxf {

// Scale rounding modes, by name in Python (`mxforge.ROUNDING_MODES`); numbering is ABI.
enum Rounding : int32_t { kRoundUp = 0, kFloor = 1, kCeil = 2, kEven = 3 };

MXF_HD uint32_t f32_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#elif defined(__HIP__)  // no libc in the AMD device compile
  return __builtin_bit_cast(uint32_t, x);
#else
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
#endif
}
MXF_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#elif defined(__HIP__)
  return __builtin_bit_cast(float, u);
#else
  float x;
  memcpy(&x, &u, 4);
  return x;
#endif
}
MXF_HD bool is_nan(float x) { return (f32_bits(x) & 0x7fffffffu) > 0x7f800000u; }
MXF_HD bool is_finite(float x) { return (f32_bits(x) & 0x7f800000u) != 0x7f800000u; }

// ---- bf16 / fp16 --------------------------------------------------------------------
MXF_HD float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }
MXF_HD uint16_t f32_to_bf16(float x) {  // round to nearest even; NaN stays (quiet) NaN
  uint32_t u = f32_bits(x);
  if (is_nan(x)) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
MXF_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {  // subnormal: man * 2^-24, exact in fp32
    float v = float(man) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}
MXF_HD uint16_t f32_to_f16(float x) {  // round to nearest even, overflow to inf
  uint32_t u = f32_bits(x), sign = (u >> 16) & 0x8000u;
  if (is_nan(x)) return uint16_t(sign | 0x7e00u);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                                  // below 2^-14: subnormal half
    // value / 2^-24 = m * 2^(e - 126): round m >> (126 - e) to nearest even
    int shift = 126 - int(a >> 23);
    if (shift > 24) return uint16_t(sign);
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    uint32_t r = m >> shift;
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = a - 0x38000000u;  // rebias 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return uint16_t(sign | (r >> 13));
}

// ---- e8m0 scale -----------------------------------------------------------------------
// A byte s is the power of two 2^(s-127); 0xFF is NaN.
constexpr uint8_t kE8m0Nan = 0xff;
MXF_HD float e8m0_to_f32(uint8_t s) {
  if (s == kE8m0Nan) return bits_f32(0x7fc00000u);
  if (s == 0) return bits_f32(0x00400000u);  // 2^-127 is an fp32 subnormal
  return bits_f32(uint32_t(s) << 23);
}

// Block scale from the block's amax for an element format whose largest magnitude is
// `elem_max` (6 for e2m1, 448 for e4m3) with largest exponent `elem_emax` (2, 8).
// round_up: ceil_pow2(amax / elem_max). floor/ceil/even: pow2(amax) / 2^elem_emax with
// the exponent of amax floored, ceiled, or rounded up from a 1.5 mantissa.
MXF_HD uint8_t e8m0_scale(float amax, Rounding mode, float elem_max, int elem_emax) {
  if (!is_finite(amax)) return kE8m0Nan;
  if (amax == 0.0f) return 0;  // zero block: deterministic smallest scale
  int s;
  if (mode == kRoundUp) {
    uint32_t q = f32_bits(amax / elem_max);
    s = int(q >> 23) + ((q & 0x7fffffu) != 0u);
  } else {
    uint32_t a = f32_bits(amax);
    int e = int(a >> 23);
    uint32_t man = a & 0x7fffffu;
    if (mode == kCeil) e += man != 0u;
    if (mode == kEven) e += man >= 0x400000u;  // mantissa >= 1.5 rounds up
    s = e - elem_emax;
  }
  if (s < 0) s = 0;
  if (s > 254) s = 254;
  return uint8_t(s);
}

// x / 2^(s-127), exactly (ldexp); shared so every target rounds subnormals the same way.
MXF_HD float scale_down(float x, uint8_t s) {
  int e = 127 - int(s);
  // Two steps keep every intermediate a normal power of two (|e| <= 127).
  int e1 = e / 2, e2 = e - e1;
  return x * bits_f32(uint32_t(127 + e1) << 23) * bits_f32(uint32_t(127 + e2) << 23);
}

// ---- e2m1 (fp4) ------------------------------------------------------------------------
// Codes 0..7 = +{0, .5, 1, 1.5, 2, 3, 4, 6}; 8..15 the same, negative.
MXF_HD float e2m1_to_f32(uint8_t code) {
  const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  float v = mag[code & 7];
  return (code & 8) ? -v : v;
}
// Nearest e2m1 code, ties to even, saturating at 6; NaN encodes as 0 (its block's scale
// is NaN anyway).
MXF_HD uint8_t f32_to_e2m1(float x) {
  if (is_nan(x)) return 0;
  uint8_t sign = (f32_bits(x) >> 28) & 8u;
  float a = x < 0.0f ? -x : x;
  uint8_t c;
  if (a <= 0.25f) c = 0;
  else if (a < 0.75f) c = 1;
  else if (a <= 1.25f) c = 2;
  else if (a < 1.75f) c = 3;
  else if (a <= 2.5f) c = 4;
  else if (a < 3.5f) c = 5;
  else if (a <= 5.0f) c = 6;
  else c = 7;
  return uint8_t(sign | c);
}

// ---- e4m3fn (fp8) ----------------------------------------------------------------------
MXF_HD float e4m3_to_f32(uint8_t b) {
  uint32_t sign = uint32_t(b & 0x80u) << 24, exp = (b >> 3) & 0xfu, man = b & 7u;
  if (exp == 0xf && man == 7) return bits_f32(0x7fc00000u | sign);
  if (exp == 0) {
    float v = float(man) * 0.001953125f;  // man * 2^-9
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 120) << 23) | (man << 20));
}
// Round to nearest even, saturating to +-448; NaN -> 0x7f.
MXF_HD uint8_t f32_to_e4m3(float x) {
  if (is_nan(x)) return 0x7f;
  uint32_t u = f32_bits(x);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t ua = u & 0x7fffffffu;  // |x| by bits: `x < 0 ? -x : x` keeps -0.0's sign bit
  float a = bits_f32(ua);
  if (a >= 448.0f) return uint8_t(sign | 0x7e);
  int e = int(ua >> 23) - 127;
  if (e < -6) {  // subnormal e4m3: units of 2^-9
    float q = a * 512.0f;  // exact
    uint32_t r = uint32_t(q);
    float rem = q - float(r);
    if (rem > 0.5f || (rem == 0.5f && (r & 1u))) ++r;
    return uint8_t(sign | r);  // r == 8 is the smallest normal, encoded correctly
  }
  uint32_t m = ua & 0x7fffffu;
  uint32_t r = (uint32_t(e + 7) << 3) | (m >> 20);
  uint32_t rem = m & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (r & 1u))) ++r;
  if (r > 0x7e) r = 0x7e;
  return uint8_t(sign | r);
}

// Element format traits, used by the quantizers and the GEMM loaders.
struct E2m1 {
  static constexpr float kMax = 6.0f;
  static constexpr int kEmax = 2;
  MXF_HD static uint8_t encode(float x) { return f32_to_e2m1(x); }
  MXF_HD static float decode(uint8_t c) { return e2m1_to_f32(c); }
};
struct E4m3 {
  static constexpr float kMax = 448.0f;
  static constexpr int kEmax = 8;
  MXF_HD static uint8_t encode(float x) { return f32_to_e4m3(x); }
  MXF_HD static float decode(uint8_t c) { return e4m3_to_f32(c); }
};

// Ceil division and rounding up, used for every padded dimension.
MXF_HD int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
MXF_HD int64_t round_up(int64_t a, int64_t b) { return cdiv(a, b) * b; }

}  // namespace mxf
