// Dtype tags shared by every target. A tag says how an operand is stored; the loaders of
// each target's tile layer turn it into fp32 (CPU) or the MMA input type (GPU).
#pragma once
#include <stdint.h>

#include "mxforge/numerics.h"

namespace mxf {

struct Bf16 {  // bfloat16, one element per uint16_t
  using storage = uint16_t;
  static constexpr bool kMx = false;
  MXF_HD static float to_f32(storage v) { return bf16_to_f32(v); }
  MXF_HD static storage from_f32(float v) { return f32_to_bf16(v); }
};
struct Fp16 {
  using storage = uint16_t;
  static constexpr bool kMx = false;
  MXF_HD static float to_f32(storage v) { return f16_to_f32(v); }
  MXF_HD static storage from_f32(float v) { return f32_to_f16(v); }
};
struct Fp32 {
  using storage = float;
  static constexpr bool kMx = false;
  MXF_HD static float to_f32(storage v) { return v; }
  MXF_HD static storage from_f32(float v) { return v; }
};
// MX formats: bytes of element codes plus one e8m0 scale per 32 elements along K.
struct Fp4Mx {
  using storage = uint8_t;
  using elem = E2m1;
  static constexpr bool kMx = true;
  static constexpr int kElemsPerByte = 2;
  // Element i of a row (K index) from the packed bytes, unscaled.
  MXF_HD static float elem_at(const uint8_t* row, int64_t i) {
    uint8_t byte = row[i >> 1];
    return e2m1_to_f32((i & 1) ? uint8_t(byte >> 4) : uint8_t(byte & 15));
  }
};
struct Fp8Mx {
  using storage = uint8_t;
  using elem = E4m3;
  static constexpr bool kMx = true;
  static constexpr int kElemsPerByte = 1;
  MXF_HD static float elem_at(const uint8_t* row, int64_t i) { return e4m3_to_f32(row[i]); }
};

}  // namespace mxf
