// Exhaustive check of the bf16-pair fast path of fp4 dequantization (gpu/mx.cuh,
// e2m1_pair_bf16x2, with sm_90's mul.rn.bf16x2 as gpu/emulate.h models it) against the
// element-wise definition: bf16(e2m1(code) * 2^(s-127)), every byte (two codes) at every
// e8m0 scale; and the word form of the register-fragment path (e2m1_word_pairs_bf16x2),
// from natural words and from the same words in the pairbits layout. Prints the number of mismatches; tests/test_dequant_pairs.py runs it.
#include <stdio.h>

#include "mxforge/gpu/mx.cuh"

int main() {
  using namespace mxf;
  long bad = 0, checked = 0;
  for (int s = 0; s < 256; ++s) {
    const gpu::E2m1PairScale k = gpu::e2m1_pair_scale(uint8_t(s));
    for (int b = 0; b < 256; ++b) {
      const uint32_t got = gpu::e2m1_pair_bf16x2(uint32_t(b), k);
      for (int half = 0; half < 2; ++half) {
        const uint16_t g = uint16_t(got >> (16 * half));
        const float want_f = e2m1_to_f32(uint8_t((b >> (4 * half)) & 15)) * e8m0_to_f32(uint8_t(s));
        const uint16_t want = f32_to_bf16(want_f);
        const bool both_nan = is_nan(want_f) && is_nan(bf16_to_f32(g));
        if (g != want && !both_nan) {
          if (bad < 10) printf("s=%d byte=0x%02x half=%d: got 0x%04x want 0x%04x\n", s, b, half, g, want);
          ++bad;
        }
        ++checked;
      }
    }
  }
  // The word form (RegK order: pair i = codes i and i + 4 of the word): every pair of codes
  // at every position and scale, the other six codes varying.
  uint32_t rng = 12345u;
  for (int s = 0; s < 256; ++s) {
    const gpu::E2m1PairScale k = gpu::e2m1_pair_scale(uint8_t(s));
    for (int i = 0; i < 4; ++i)
      for (int pair = 0; pair < 256; ++pair) {
        rng = rng * 1664525u + 1013904223u;
        uint32_t w = rng & ~((0xfu << (4 * i)) | (0xfu << (4 * i + 16)));
        w |= uint32_t(pair & 15) << (4 * i) | uint32_t(pair >> 4) << (4 * i + 16);
        uint32_t o[4], p[4];
        gpu::e2m1_word_pairs_bf16x2(w, k, o);
        // the same word stored in the pairbits layout (layout.h): the same pairs
        gpu::e2m1_word_pairs_bf16x2<PairBits>(PairBits::encode(w), k, p);
        for (int q = 0; q < 4; ++q)
          for (int half = 0; half < 2; ++half) {
            const uint16_t pb = uint16_t(p[q] >> (16 * half));
            if (pb != uint16_t(o[q] >> (16 * half))) {
              if (bad < 10) printf("pairbits s=%d w=0x%08x pair %d half %d: 0x%04x vs 0x%04x\n", s, w, q, half, pb,
                                   uint16_t(o[q] >> (16 * half)));
              ++bad;
            }
            const uint16_t g = uint16_t(o[q] >> (16 * half));
            const int code = int(w >> (4 * (q + 4 * half))) & 15;
            const float want_f = e2m1_to_f32(uint8_t(code)) * e8m0_to_f32(uint8_t(s));
            const uint16_t want = f32_to_bf16(want_f);
            const bool both_nan = is_nan(want_f) && is_nan(bf16_to_f32(g));
            if (g != want && !both_nan) {
              if (bad < 10) printf("word s=%d w=0x%08x pair %d half %d: got 0x%04x want 0x%04x\n", s, w, q, half, g, want);
              ++bad;
            }
            ++checked;
          }
      }
  }
  printf("checked %ld mismatches %ld\n", checked, bad);
  return bad != 0;
}
