// The AMD arch tags and what their MFMA atoms are, independent of how they run: the
// MMA input per dtype pair, the atoms' shapes and register layouts. Shared by the AMD
// device layer (device_amd.h: the MFMA instructions) and the host test backend
// (gpu/emulate.h with MXF_EMULATE_WARP=64: the same layouts computed on the host).
#pragma once
#include "mxforge/mma_input.h"

namespace mxf {
namespace dev {

// Arch tags. kMaxSmem: LDS per work-group (the one-stage kernel's launcher checks it).
// kDecodeWarpsK: warp groups splitting a decode tile's k steps (gemm.cuh, GemmTile); 1 on
// AMD, where 64-lane wavefronts already give a decode tile 256 lanes and nothing has been
// measured.
struct Gfx942 {  // CDNA3: bf16/fp16 MFMA
  static constexpr int kMaxSmem = 64 * 1024;
  static constexpr int kDecodeWarpsK = 1;
  static constexpr bool kRegFragB = false;  // (the register-fragment B path is sm90's)
  static constexpr bool kWgmma = false;     // (warpgroup MMAs are sm90's)
  static constexpr bool kClusters = false;  // (thread block clusters are sm90's)
};
struct Gfx950 {  // CDNA4: + 16x16x32 bf16/fp16 and scaled f8f6f4 MFMA
  static constexpr int kMaxSmem = 160 * 1024;
  static constexpr int kDecodeWarpsK = 1;
  static constexpr bool kRegFragB = false;  // (the register-fragment B path is sm90's)
  static constexpr bool kWgmma = false;     // (warpgroup MMAs are sm90's)
  static constexpr bool kClusters = false;  // (thread block clusters are sm90's)
};

// gfx950 multiplies MX operands natively for fp4 and fp8 activations against fp4 weights
// (v_mfma_scale_f32_16x16x128_f8f6f4); everything else goes through bf16/fp16.
template <>
struct MmaInput<Gfx950, Fp4Mx, Fp4Mx> { using type = MxPair<Fp4Mx, Fp4Mx>; };
template <>
struct MmaInput<Gfx950, Fp8Mx, Fp4Mx> { using type = MxPair<Fp8Mx, Fp4Mx>; };

// ---- MFMA atoms -----------------------------------------------------------------------
// Every atom is a 16x16 MFMA over one wavefront. Register layouts (AMD CDNA3/CDNA4 ISA,
// "matrix fused multiply-add"; the same as CK-tile's WarpGemmAttributeMfmaImpl* for
// these instructions): lane l holds
//   A: row l % 16, k = kPerLane * (l / 16) + j, j < kPerLane (kPerLane = kK / 4);
//   B: col l % 16, the same k;   (B is N-major in shared memory: row n holds K)
//   C: 4 fp32, register i at row 4 * (l / 16) + i, col l % 16.
// The scaled f8f6f4 MFMA (16x16x128) takes 32 K elements per lane, exactly one MX block,
// so each lane also supplies one e8m0 scale per operand: the scale of its row's block.
template <int K>
struct Mfma16Shape {
  static constexpr int kM = 16, kN = 16, kK = K, kAccRegs = 4;
  static constexpr int kPerLane = K / 4;
  using FragC = float[4];
  MXF_HD static int lane_row(int lane) { return lane & 15; }            // A row, B column
  MXF_HD static int lane_k(int lane) { return kPerLane * (lane >> 4); }  // its first K element
  MXF_HD static int acc_row(int lane, int i) { return 4 * (lane >> 4) + i; }
  MXF_HD static int acc_col(int lane, int) { return lane & 15; }
};

template <class Arch, class InT>
struct MmaAtom;  // per arch: device_amd.h (MFMA instructions), gpu/emulate.h (host test backend)

// Element format selector of the scaled MFMA (cbsz / blgp operands): e4m3 = 0, e2m1 = 4.
template <class MxT>
struct MfmaFmt;
template <>
struct MfmaFmt<Fp8Mx> { static constexpr int value = 0; };
template <>
struct MfmaFmt<Fp4Mx> { static constexpr int value = 4; };

}  // namespace dev
}  // namespace mxf
