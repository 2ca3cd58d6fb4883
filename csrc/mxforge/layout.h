// Weight layouts (docs/ops.md, "Weight layouts"): where byte (n, kb) of an expert's packed
// weight and scale (n, c) live. One source for the packer and every kernel's loader.
#pragma once
#include <stdint.h>

#include "mxforge/numerics.h"

namespace mxf {

// How a layout stores the 8 e2m1 codes of each aligned 32-bit word (4 bytes, little
// endian). NaturalBits: code i in bits 4i .. 4i + 3 (byte j = codes 2j, 2j + 1), as MXFP4
// checkpoints hold them. natural(w) gives the natural word back.
struct NaturalBits {
  static constexpr bool kPairbits = false;
  MXF_HD static uint32_t natural(uint32_t w) { return w; }
  MXF_HD static uint32_t encode(uint32_t w) { return w; }
};

// PairBits: the same 32 bits rearranged so that the bf16 pairs (code i, code i + 4) of the
// sm90 register-fragment order come out of a word with a rotate and a mask each
// (mx.cuh, e2m1_word_pairs_lo: 9 integer instructions per word instead of 15). Pair i is
// placed as the bf16x2 bit pattern s << 15 | ee.m << 6 (code i in the low half, code i + 4
// in the high half; value * 2^-126, see mx.cuh) and is read back as the OR of
// rotl(w, kRot[g]) & kMask[g] over its groups g (kPair[g] == i). Four rotations of one
// 16-bit pattern cannot tile a word, so pair 3 takes two groups. encode() places each
// group's bits where that read finds them; tests check that the bits form a permutation.
struct PairBits {
  static constexpr bool kPairbits = true;
  static constexpr int kGroups = 5;
  MXF_HD static int rot(int g) { return g == 0 ? 6 : g == 1 ? 2 : g == 2 ? 12 : g == 3 ? 8 : 0; }
  MXF_HD static uint32_t mask(int g) { return g < 3 ? 0x81c081c0u : g == 3 ? 0x80c080c0u : 0x01000100u; }
  MXF_HD static int pair(int g) { return g < 3 ? g : 3; }
  MXF_HD static uint32_t rotl(uint32_t x, int r) { return r == 0 ? x : (x << r) | (x >> (32 - r)); }
  // Pair i of a natural word as bf16x2 bits (codes i and i + 4 at the top of the halves).
  MXF_HD static uint32_t pair_bits(uint32_t w, int i) {
    const uint32_t t = w << (12 - 4 * i);
    return (t & 0x80008000u) | ((t >> 6) & 0x01c001c0u);
  }
  MXF_HD static uint32_t encode(uint32_t w) {
    uint32_t out = 0;
    for (int g = 0; g < kGroups; ++g) out |= rotl(pair_bits(w, pair(g)) & mask(g), (32 - rot(g)) & 31);
    return out;
  }
  MXF_HD static uint32_t natural(uint32_t w) {
    uint32_t p[4] = {0u, 0u, 0u, 0u};
    for (int g = 0; g < kGroups; ++g) p[pair(g)] |= rotl(w, rot(g)) & mask(g);
    uint32_t out = 0;
    for (int i = 0; i < 4; ++i) {
      out |= (((p[i] >> 12) & 8u) | ((p[i] >> 6) & 7u)) << (4 * i);
      out |= (((p[i] >> 28) & 8u) | ((p[i] >> 22) & 7u)) << (4 * i + 16);
    }
    return out;
  }
};

// Row-major [N, Kp/2] bytes, [N, Kp/32] scales.
struct LayoutPlain {
  static constexpr const char* kName = "plain";
  using Bits = NaturalBits;
  static constexpr bool kLinearK = true;  // w_off(n, kb) == w_off(n, 0) + kb (scales alike)
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
  using Bits = NaturalBits;
  static constexpr bool kLinearK = false;
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

// The plain layout's bytes with PairBits words: what the sm90 kernels convert fastest.
struct LayoutPairbits : LayoutPlain {
  static constexpr const char* kName = "pairbits";
  using Bits = PairBits;
};

}  // namespace mxf
