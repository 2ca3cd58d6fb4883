// Gate/up activations of stage 1 (docs/ops.md), one source for every target.
#pragma once
#include <math.h>

#include "mxforge/numerics.h"

namespace mxf {

// The fp32 math of the activations: libm, except in the AMD device compile, which has no
// device libraries (-nogpulib): there clang builtins that lower to instructions (exp,
// min, max), and erf (which has no instruction) by Abramowitz & Stegun 7.1.26, |error| <=
// 1.5e-7 absolute: GELU uses it as 1 + erf(x), whose result is rounded to bf16 or fp4.
#if defined(__HIP__)
MXF_HD float act_exp(float x) { return __builtin_expf(x); }
MXF_HD float act_min(float a, float b) { return __builtin_fminf(a, b); }
MXF_HD float act_max(float a, float b) { return __builtin_fmaxf(a, b); }
MXF_HD float act_erf(float x) {
  const float ax = __builtin_fabsf(x);
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  const float poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float y = 1.0f - poly * __builtin_expf(-ax * ax);
  return __builtin_copysignf(y, x);
}
#else
MXF_HD float act_exp(float x) { return expf(x); }
MXF_HD float act_min(float a, float b) { return fminf(a, b); }
MXF_HD float act_max(float a, float b) { return fmaxf(a, b); }
MXF_HD float act_erf(float x) { return erff(x); }
#endif

enum class Act { kNone, kSilu, kGelu, kSwigluOai };

template <Act A>
MXF_HD float gated(float gate, float up) {
  if constexpr (A == Act::kSilu) {
    return gate / (1.0f + act_exp(-gate)) * up;
  } else if constexpr (A == Act::kGelu) {
    return 0.5f * gate * (1.0f + act_erf(gate * 0.70710678118654752f)) * up;
  } else if constexpr (A == Act::kSwigluOai) {
    float g = act_min(gate, 7.0f);
    float u = act_min(act_max(up, -7.0f), 7.0f);
    return g / (1.0f + act_exp(-1.702f * g)) * (u + 1.0f);
  } else {
    return gate;
  }
}

// Row of w1 holding gate / up for intermediate column j (I = intermediate size).
MXF_HD int64_t gate_row(bool interleaved, int64_t j, int64_t I) { return interleaved ? 2 * j : j; }
MXF_HD int64_t up_row(bool interleaved, int64_t j, int64_t I) { return interleaved ? 2 * j + 1 : I + j; }

}  // namespace mxf
