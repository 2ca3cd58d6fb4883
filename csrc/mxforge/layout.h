// Weight layouts (docs/ops.md, "Weight layouts"): where byte (n, kb) of an expert's packed
// weight and scale (n, c) live. One source for the packer and every kernel's loader.
#pragma once
#include <stdint.h>

#include "mxforge/numerics.h"

namespace mxf {

// Row-major [N, Kp/2] bytes, [N, Kp/32] scales.
struct LayoutPlain {
  static constexpr const char* kName = "plain";
  MXF_HD static int64_t rows(int64_t N) { return N; }
  MXF_HD static int64_t kpad(int64_t K) { return round_up(K, 32); }
  MXF_HD static int64_t w_off(int64_t n, int64_t kb, int64_t N, int64_t K) {
    return n * (kpad(K) / 2) + kb;
  }
  MXF_HD static int64_t s_off(int64_t n, int64_t c, int64_t N, int64_t K) {
    return n * (kpad(K) / 32) + c;
  }
  MXF_HD static int64_t w_bytes(int64_t N, int64_t K) { return N * (kpad(K) / 2); }
  MXF_HD static int64_t s_bytes(int64_t N, int64_t K) { return N * (kpad(K) / 32); }
};

// aiter-compatible e8m0 scale shuffle on an [R, C] matrix (R % 32 == 0, C % 8 == 0).
MXF_HD int64_t shuffled_scale_off(int64_t r, int64_t c, int64_t C) {
  int64_t r0 = r / 32, r1 = (r / 16) % 2, r2 = r % 16;
  int64_t c0 = c / 8, c1 = (c / 4) % 2, c2 = c % 4;
  return ((((r0 * (C / 8) + c0) * 4 + c2) * 16 + r2) * 2 + c1) * 2 + r1;
}

// Rows padded to 32, K to 256; weights in 16-row x 32-byte tiles, scales shuffled.
struct LayoutShuffled {
  static constexpr const char* kName = "shuffled";
  MXF_HD static int64_t rows(int64_t N) { return round_up(N, 32); }
  MXF_HD static int64_t kpad(int64_t K) { return round_up(K, 256); }
  MXF_HD static int64_t w_off(int64_t n, int64_t kb, int64_t N, int64_t K) {
    int64_t tiles_per_row = kpad(K) / 64;
    return (((n / 16) * tiles_per_row + kb / 32) * 16 + n % 16) * 32 + kb % 32;
  }
  MXF_HD static int64_t s_off(int64_t n, int64_t c, int64_t N, int64_t K) {
    return shuffled_scale_off(n, c, kpad(K) / 32);
  }
  MXF_HD static int64_t w_bytes(int64_t N, int64_t K) { return rows(N) * (kpad(K) / 2); }
  MXF_HD static int64_t s_bytes(int64_t N, int64_t K) { return rows(N) * (kpad(K) / 32); }
};

}  // namespace mxf
