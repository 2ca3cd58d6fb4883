// Gate/up activations of stage 1 (docs/ops.md), one source for every target.
#pragma once
#include <math.h>

#include "mxforge/numerics.h"

namespace mxf {

enum class Act { kNone, kSilu, kGelu, kSwigluOai };

template <Act A>
MXF_HD float gated(float gate, float up) {
  if constexpr (A == Act::kSilu) {
    return gate / (1.0f + expf(-gate)) * up;
  } else if constexpr (A == Act::kGelu) {
    return 0.5f * gate * (1.0f + erff(gate * 0.70710678118654752f)) * up;
  } else if constexpr (A == Act::kSwigluOai) {
    float g = fminf(gate, 7.0f);
    float u = fminf(fmaxf(up, -7.0f), 7.0f);
    return g / (1.0f + expf(-1.702f * g)) * (u + 1.0f);
  } else {
    return gate;
  }
}

// Row of w1 holding gate / up for intermediate column j (I = intermediate size).
MXF_HD int64_t gate_row(bool interleaved, int64_t j, int64_t I) { return interleaved ? 2 * j : j; }
MXF_HD int64_t up_row(bool interleaved, int64_t j, int64_t I) { return interleaved ? 2 * j + 1 : I + j; }

}  // namespace mxf
