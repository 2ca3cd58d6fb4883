// The GEMM tile layer: a CTA computes a BM x BN tile of C = A * B^T over a K range.
//
//   * Loaders (portable) bring a BM x BK tile of A and a BN x BK tile of B from global
//     memory into registers (16-byte chunks, one k-tile ahead of the MMAs), then
//     dequantize them EXACTLY into the 16-bit MMA input type in shared memory: an MX
//     element (e2m1 / e4m3) times its e8m0 scale is a short-mantissa value times a power
//     of two, exact in bf16 over the whole fp32 exponent range (the scale is folded into
//     the value, so the MMA needs no scale operand). Rows are addressed through handles
//     in shared memory (sorted-token gathers for A, weight rows for B: gate/up pairs or
//     plain rows) and through a row policy (GatherRows, LayoutRows<Layout>), so the weight
//     layout is read through Layout::w_off / s_off only. Out-of-range rows and K past the
//     operand's end are zero-filled, which is how M, N and K tails are handled.
//     Where the arch multiplies MX operands natively (dev::MmaInput is an MxPair: gfx950's
//     scaled MFMA for a4w4 / a8w4), the loaders store the codes and scales as they are
//     instead (dev::MxSmemRow), and the atom applies the scales.
//   * The warp MMA (per arch, through dev::MmaAtom: m16n8k16 mma.sync on sm90, 16x16xK MFMA
//     on gfx942/gfx950) runs atoms over a warp tile and stops at the last k step that holds
//     data (K tails cost no MMA work). "Warp" is the arch's SIMD group (dev::kWarpSize).
//   * The accumulators leave through a fp32 staging tile in shared memory
//     [BM][BN + 8], where the (portable) epilogues find any (row, column) they need.
//
// Shared memory (MXF_TILE_SMEM: dynamic on CUDA, static on AMD): A tile BM x (BK + 8) and
// B tile BN x (BK + 8) 16-bit elements (the 16-byte row padding makes ldmatrix
// conflict-free and holds the scales of raw MX rows), reused by the fp32 staging tile
// after the main loop: max(2 (BM + BN)(BK + 8), 4 BM (BN + 8)) bytes. codegen/schema.py
// (tile_lds_bytes) repeats this formula to prune tiles an arch cannot hold.
//
// sm90's prefill tiles (b_path wgmma) have their own main loop at the end of this file
// (WgmmaTile: a cp.async ring, swizzled converted tiles, warpgroup MMAs, two CTAs per SM;
// its shared memory is sized from its own budget, not by the formula above).
#pragma once
#include <stdint.h>

#include "mxforge/gpu/common.cuh"
#include "mxforge/gpu/mx.cuh"
#include "mxforge/layout.h"

namespace mxf {
namespace gpu {

// ---- tile configuration -----------------------------------------------------------------
template <class Arch, int BM_, int BN_, int BK_, int WARPS_K_ = 1, bool REG_B_ = false>
struct GemmTile {
  using Arch_ = Arch;
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  // REG_B: the B operand skips shared memory (RegFragB below: each warp loads and converts
  // its own fragments); A is double-buffered in the B tile's place, in RegK order.
  static constexpr bool kRegB = REG_B_;
  using AtomShape = dev::MmaAtom<Arch, Bf16>;  // the arch's atom (Fp16's has the same shape)
  static constexpr int kAtomM = AtomShape::kM, kAtomN = AtomShape::kN, kAtomK = AtomShape::kK;
  static_assert(BM % 16 == 0 && BN % 16 == 0 && BK % 32 == 0, "tile sizes");
  // Warps: 4 across N (fewer for narrow tiles, each warp at least one atom wide), 2 across
  // M from BM = 64 on. 128 or 256 threads with 32-lane warps, 256 or 512 with wave64.
  // WARPS_K > 1 adds warp groups that take alternate atom k steps of each k-tile (their
  // partial sums meet in the staging tile, in group order): where a launch has few CTAs
  // (decode), a CTA's time per k-tile is mostly its threads dequantizing the B tile, which
  // more threads share (moe.cuh picks it per launch, MoeSpec::Decode).
  static constexpr int kWarpsN = BN / kAtomN >= 4 ? 4 : BN / kAtomN;
  static constexpr int kWarpsM = BM >= 64 ? 2 : 1;
  static constexpr int kWarpsK = WARPS_K_;
  static_assert((BK / kAtomK) % kWarpsK == 0, "warp groups share a k-tile's atom steps evenly");
  static constexpr int kThreads = kWarpsM * kWarpsN * kWarpsK * dev::kWarpSize;
  // The stage kernels' __launch_bounds__ minimum of CTAs per SM: 0 = none, the compiler's
  // own register choice (a minimum of 1 gave these tiles up to 52 more registers and made
  // some up to 31 % slower: benchmarks/README.md, 2026-11-29).
  static constexpr int kCtasPerSm = 0;
  static constexpr int WM = BM / kWarpsM, WN = BN / kWarpsN;  // warp tile
  static constexpr int MI = WM / kAtomM, NI = WN / kAtomN;    // atoms per warp tile
  static_assert(WM % kAtomM == 0 && WN % kAtomN == 0 && BK % kAtomK == 0, "atoms tile the warp");
  // (the MX atom of an arch may have a larger kK than kAtomK: WarpMma checks BK against it)
  static_assert(!kRegB || (kWarpsM == 1 && BK % 128 == 0 && (BK / 128) % kWarpsK == 0),
                "register B fragments: one warp row, whole 128-wide k groups per warp group");
  // A rows of a register-B tile are 32 bytes longer than a multiple of 128 (BK + 16), which
  // with RegK's swizzle makes its 16-byte fragment reads conflict-free.
  static constexpr int kLdA = BK + (kRegB ? 16 : 8), kLdB = BK + 8;  // 16-bit elements per row
  static constexpr int kLdC = BN + 8;                         // fp32 staging pitch
  static constexpr int kSmemA = BM * kLdA * 2, kSmemB = kRegB ? kSmemA : BN * kLdB * 2;
  static constexpr int kSmemMain = kSmemA + kSmemB;
  static constexpr int kSmemC = BM * kLdC * 4;
  static constexpr int kSmem = kSmemMain > kSmemC ? kSmemMain : kSmemC;
};

// ---- row policies: where the bytes of operand row `r` live ------------------------------
// A plain matrix of rows `pitch` bytes apart, MX scales `spitch` bytes apart.
struct GatherRows {
  const uint8_t* base;
  int64_t pitch;
  const uint8_t* sbase;
  int64_t spitch;
  MXF_DEV const uint8_t* data(int64_t r, int64_t kbyte) const { return base + r * pitch + kbyte; }
  MXF_DEV const uint8_t* scale_ptr(int64_t r, int64_t c) const { return sbase + r * spitch + c; }
  MXF_DEV uint8_t scale(int64_t r, int64_t c) const { return *scale_ptr(r, c); }
  MXF_DEV bool vec_ok() const { return aligned16(base) && pitch % 16 == 0; }
  static constexpr bool kLinearK = true;  // data(r, kb) == data(r, 0) + kb (scales alike)
  using Bits = NaturalBits;               // e2m1 codes as written (layout.h)
};
// One expert's packed MXFP4 weight [N, K] in `Layout` (layout.h).
template <class Layout>
struct LayoutRows {
  const uint8_t* w;
  const uint8_t* s;
  int64_t N, K;
  MXF_DEV const uint8_t* data(int64_t n, int64_t kb) const { return w + Layout::w_off(n, kb, N, K); }
  MXF_DEV const uint8_t* scale_ptr(int64_t n, int64_t c) const { return s + Layout::s_off(n, c, N, K); }
  MXF_DEV uint8_t scale(int64_t n, int64_t c) const { return *scale_ptr(n, c); }
  // 16 bytes at kb % 16 == 0 are contiguous in every layout (see pack.cuh).
  MXF_DEV bool vec_ok() const { return aligned16(w); }
  static constexpr bool kLinearK = Layout::kLinearK;
  using Bits = typename Layout::Bits;
};

// ---- loaders ------------------------------------------------------------------------------
// Element traits of an operand dtype as the loader sees it.
template <class T>
struct Operand {  // 16-bit float (Bf16, Fp16): 8 elements per 16-byte chunk, no scales
  static constexpr bool kMx = false;
  static constexpr int kChunkElems = 8;
  MXF_DEV static int64_t kbyte(int64_t k) { return 2 * k; }
};
template <>
struct Operand<Fp4Mx> {
  static constexpr bool kMx = true;
  using Elem = E2m1;
  static constexpr int kChunkElems = 32;  // one scale block
  MXF_DEV static int64_t kbyte(int64_t k) { return k / 2; }
};
template <>
struct Operand<Fp8Mx> {
  static constexpr bool kMx = true;
  using Elem = E4m3;
  static constexpr int kChunkElems = 16;  // half a scale block
  MXF_DEV static int64_t kbyte(int64_t k) { return k; }
};

// ---- K orders of a tile in shared memory ----------------------------------------------------
// Where the 16-bit elements of a k-tile row sit. Both are applied per unit of 8 elements
// (16 bytes): col(k) is the row column of the unit that starts at k (k % 8 == 0) and
// arrange() orders its 8 elements.
struct NaturalK {  // element k at column k (the ldmatrix path)
  static constexpr bool kNatural = true;
  MXF_HD static int col(int k) { return k; }
  MXF_HD static dev::Vec16 arrange(const dev::Vec16& x) { return x; }
};
// The register-fragment order (sm90 tiles with pk_fp4 weights, RegFragB). A GEMM may sum
// K in any order as long as A and B agree, so K is permuted to suit how the weights
// arrive: in each 128-wide k group, lane j of a quad (lane % 4) loads the 16 bytes of
// 32-element block j of its weight row (one load, one scale), and pair p = 4q + i of that
// block is elements (8q + i, 8q + i + 4), which e2m1_word_pairs_bf16x2 makes from word q
// in four instructions. m16n8k16 step s of the group then takes pairs 2s and 2s + 1 of
// every lane's block (b0b1 and b2b3; A's a0a1/a2a3 and a4a5/a6a7 from the same pairs of
// rows g and g + 8), so the 8 steps cover the group's 128 elements once. A stores each
// unit of 8 in pair order (arrange) and unit v of block j at unit v ^ (j / 2) of the
// block: a quarter warp's 16-byte reads of rows g, g + 1 (pitch = 32 mod 128 bytes) then
// hit eight different bank groups.
struct RegK {
  static constexpr bool kNatural = false;
  MXF_HD static int col(int k) {
    const int j = (k >> 5) & 3, v = (k >> 3) & 3;
    return (k & ~31) + 8 * (v ^ (j >> 1));
  }
  MXF_HD static dev::Vec16 arrange(const dev::Vec16& x) {  // (e0..e7) -> (e0,e4)(e1,e5)(e2,e6)(e3,e7)
    return dev::Vec16{(x.x & 0xffffu) | (x.z << 16), (x.x >> 16) | (x.z & 0xffff0000u),
                      (x.y & 0xffffu) | (x.w << 16), (x.y >> 16) | (x.w & 0xffff0000u)};
  }
};

// Where a unit of 8 16-bit elements of a tile row goes: dst.at(k) for the unit that
// starts at k (k % 8 == 0), 16-byte aligned. A padded row in K order Order:
template <class Order>
struct RowDst {
  uint16_t* row;
  MXF_DEV uint16_t* at(int k) const { return row + Order::col(k); }
};

// Dequantize one 16-byte MX chunk (32 e2m1 or 16 e4m3 elements, one scale) into InT
// pairs from column k on, in K order `Order`, at the units `dst` places. Bits: how its
// e2m1 words store their codes (layout.h; e4m3 chunks are always natural). kHiBranch:
// scales above 2^1 (E2m1PairScale's second multiply) are rare in checkpoints; with it a
// warp's chunks that need none run a copy of the words' loop without it (a vote and a
// branch) rather than 16 multiplies issued, predicated, for every chunk. It costs
// registers: the wgmma ring tile takes it (RingOperand); the swapped tiles, which convert
// MX activations next to their fragments, spilled with it (ptxas, session 26).
template <class Elem, class InT, class Order, class Bits = NaturalBits, bool kHiBranch = false, class Dst>
MXF_DEV void dequant_chunk(const dev::Vec16& v, uint8_t s, const Dst& dst, int k) {
  uint32_t w[4] = {v.x, v.y, v.z, v.w};
  constexpr bool kBf16Pairs = IsSame<Elem, E2m1>::value && IsSame<InT, Bf16>::value && dev::kHasBf16x2Mul;
  if constexpr (kBf16Pairs && (!Order::kNatural || Bits::kPairbits)) {
    const E2m1PairScale ks = e2m1_pair_scale(s);
    enum { kHiNone, kHiAll, kHiPerLane };
    auto words = [&](auto hi) {  // hi: which words take the second multiply
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        uint32_t o[4];
        e2m1_word_pairs_lo<Bits>(w[q], ks, o);
        if (decltype(hi)::value == kHiAll || (decltype(hi)::value == kHiPerLane && ks.hi_needed)) {
#pragma unroll
          for (int i = 0; i < 4; ++i) o[i] = dev::mul_bf16x2(o[i], ks.hi);  // (exact; 1 where none is needed)
        }
        // pairs (i, i + 4) -> natural pairs (0,1) (2,3) (4,5) (6,7): one byte permute each
        if constexpr (Order::kNatural)
          dev::st16(dst.at(k + 8 * q), dev::Vec16{dev::byte_perm(o[0], o[1], 0x5410), dev::byte_perm(o[2], o[3], 0x5410),
                                                  dev::byte_perm(o[0], o[1], 0x7632), dev::byte_perm(o[2], o[3], 0x7632)});
        else
          dev::st16(dst.at(k + 8 * q), dev::Vec16{o[0], o[1], o[2], o[3]});
      }
    };
    if constexpr (!kHiBranch) words(IntConst<kHiPerLane>{});
    else if (dev::any_active(ks.hi_needed)) words(IntConst<kHiAll>{});
    else words(IntConst<kHiNone>{});
  } else if constexpr (kBf16Pairs) {
    // Two e2m1 codes -> a bf16 pair by bit moves, then two exact bf16x2 multiplies
    // (e2m1_pair_bf16x2): about half the instructions of decoding each element in fp32,
    // and at decode the GEMM's time is mostly these instructions (ncu: issue-bound).
    const E2m1PairScale ks = e2m1_pair_scale(s);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      uint32_t o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) o[j] = e2m1_pair_bf16x2((w[q] >> (8 * j)) & 0xffu, ks);
      dev::st16(dst.at(k + 8 * q), dev::Vec16{o[0], o[1], o[2], o[3]});
    }
  } else if constexpr (IsSame<Elem, E2m1>::value) {
#pragma unroll
    for (int q = 0; q < 4; ++q) w[q] = Bits::natural(w[q]);
    const float sc = e8m0_to_f32(s);
    // byte j of the chunk = elements 2j (low nibble) and 2j + 1: one output pair
#pragma unroll
    for (int q = 0; q < 4; ++q) {  // 8 pairs (16 bytes of output) per source word pair
      uint32_t o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t b = w[q] >> (8 * j);
        o[j] = dev::pack2<InT>(MxDecode<E2m1>::decode(b & 15u) * sc,
                               MxDecode<E2m1>::decode((b >> 4) & 15u) * sc);
      }
      dev::st16(dst.at(k + 8 * q), Order::arrange(dev::Vec16{o[0], o[1], o[2], o[3]}));
    }
  } else {
    const float sc = e8m0_to_f32(s);
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // 16 elements = 2 x 8
      uint32_t o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t two = w[2 * h + j / 2] >> (16 * (j % 2));
        o[j] = dev::pack2<InT>(MxDecode<E4m3>::decode(two & 255u) * sc,
                               MxDecode<E4m3>::decode((two >> 8) & 255u) * sc);
      }
      dev::st16(dst.at(k + 8 * h), Order::arrange(dev::Vec16{o[0], o[1], o[2], o[3]}));
    }
  }
}

// Up to 16 bytes as n units of U (uint8_t: one by one, for unaligned rows or the last
// partial chunk of a row; uint16_t: a 16-bit operand's row, half the loads and registers,
// which kept the wgmma_regs tile's guarded path from spilling at two CTAs per SM). Fully
// unrolled so that w[] stays in registers (a runtime index would put it on the stack).
template <class U>
MXF_DEV dev::Vec16 load_units(const uint8_t* p, int n) {
  constexpr int kPerWord = 4 / int(sizeof(U));
  const U* q = reinterpret_cast<const U*>(p);
  uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int e = 0; e < 4 * kPerWord; ++e)
    if (e < n) w[e / kPerWord] |= uint32_t(q[e]) << (8 * int(sizeof(U)) * (e % kPerWord));
  return dev::Vec16{w[0], w[1], w[2], w[3]};
}
MXF_DEV dev::Vec16 load_bytes(const uint8_t* p, int n) { return load_units<uint8_t>(p, n); }

// Loads ROWS x BK tiles of an operand of dtype T into shared memory as InT, in K order
// `Order` (NaturalK or RegK). Thread t owns chunks t, t + NT, ... of the tile (row-major
// over 16-byte chunks, so a warp reads consecutive chunks of a row). Row handles come
// from `rows_` in shared memory (-1: a row that does not exist, zero-filled).
template <class T, class InT, int ROWS, int BK, int NT, class Rows, class Order = NaturalK>
struct TileLoader {
  using Op = Operand<T>;
  static constexpr int kCPR = BK / Op::kChunkElems;  // chunks per row
  static constexpr int kChunks = ROWS * kCPR;
  static constexpr int kSlots = (kChunks + NT - 1) / NT;
  static_assert(BK % Op::kChunkElems == 0, "block_k must hold whole chunks");
  static_assert(Op::kMx || IsSame<T, InT>::value, "16-bit operands are used as they are");
  // InT == T for an MX operand: store codes and scales raw (dev::MxSmemRow), for an atom
  // that takes MX inputs; else dequantize into the 16-bit InT.
  static constexpr bool kRaw = Op::kMx && IsSame<T, InT>::value;
  static_assert(!kRaw || Order::kNatural, "raw MX rows are stored in natural K order");

  Rows src;
  const int* row_of;  // [ROWS] handles in shared memory
  int64_t kend;       // elements at or past kend are zero (K for 16-bit, Kp for MX)
  bool vec;
  dev::Vec16 v[kSlots];
  uint8_t sc[kSlots];
  uint32_t dead = 0;  // bit i: slot i holds no data (no row, or past kend): stored as zeros

  MXF_DEV TileLoader(const Rows& r, const int* rows_, int64_t kend_)
      : src(r), row_of(rows_), kend(kend_), vec(r.vec_ok()) {}

  MXF_DEV void load(int64_t k0) {
    dead = 0;
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      const int q = dev::thread_x() + i * NT;
      v[i] = dev::zero16();
      sc[i] = 127;
      if (kChunks % NT != 0 && q >= kChunks) continue;
      const int64_t r = row_of[q / kCPR];
      const int64_t k = k0 + (q % kCPR) * Op::kChunkElems;
      if (r < 0 || k >= kend) {
        dead |= 1u << i;
        continue;
      }
      const uint8_t* p = src.data(r, Op::kbyte(k));
      if constexpr (Op::kMx) {  // chunks never straddle kend (Kp is a multiple of 32)
        v[i] = vec ? dev::ld16_ro(p) : load_bytes(p, 16);
        sc[i] = src.scale(r, k / 32);
        if constexpr (kRaw && Rows::Bits::kPairbits)  // (an MX atom reads natural codes)
          v[i] = dev::Vec16{Rows::Bits::natural(v[i].x), Rows::Bits::natural(v[i].y),
                            Rows::Bits::natural(v[i].z), Rows::Bits::natural(v[i].w)};
      } else {
        v[i] = (vec && k + 8 <= kend) ? dev::ld16_ro(p)
                                      : load_bytes(p, 2 * int(cmin<int64_t>(8, kend - k)));
      }
    }
  }

  MXF_DEV void store(uint16_t* tile, int ld) const {
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      const int q = dev::thread_x() + i * NT;
      if (kChunks % NT != 0 && q >= kChunks) continue;
      if ((dead >> i) & 1u)
        put_zero(q, tile, ld);
      else
        put(q, v[i], sc[i], tile, ld);
    }
  }

  // A chunk with no data: zeros (at decode most A rows of a block are empty, and zeros
  // cost no conversion).
  MXF_DEV static void put_zero(int q, uint16_t* tile, int ld) {
    if constexpr (kRaw || !Op::kMx) {
      put(q, dev::zero16(), 127, tile, ld);
    } else {
      uint16_t* row = tile + (q / kCPR) * ld;
      const int k = (q % kCPR) * Op::kChunkElems;
#pragma unroll
      for (int j = 0; j < Op::kChunkElems / 8; ++j) dev::st16(row + Order::col(k + 8 * j), dev::zero16());
    }
  }

  // Chunk q (16 bytes v, scale s) into its place in the tile: raw, dequantized or copied.
  MXF_DEV static void put(int q, const dev::Vec16& x, uint8_t s, uint16_t* tile, int ld) {
    if constexpr (kRaw) {
      uint8_t* row = reinterpret_cast<uint8_t*>(tile + (q / kCPR) * ld);
      const int k = (q % kCPR) * Op::kChunkElems;
      dev::st16(row + dev::MxSmemRow<T>::data_byte(k), x);
      if (k % 32 == 0) row[dev::MxSmemRow<T>::scale_byte(2 * ld, k / 32)] = s;
    } else {
      uint16_t* row = tile + (q / kCPR) * ld;
      const int k = (q % kCPR) * Op::kChunkElems;
      if constexpr (Op::kMx)
        dequant_chunk<typename Op::Elem, InT, Order, typename Rows::Bits>(x, s, RowDst<Order>{row}, k);
      else
        dev::st16(row + Order::col(k), Order::arrange(x));
    }
  }

};

// ---- register weight fragments ------------------------------------------------------------
// The pk_fp4 weights of a kRegB tile skip shared memory: each warp loads the bytes of its
// own columns straight into registers and converts them right before its MMAs, in RegK
// order (lane (g, j) = (lane / 4, lane % 4): column g of each 8-wide atom, 32-element block
// j of each 128-wide k group, one 16-byte load and one scale byte). No stores, no ldmatrix
// and no barrier for B, and half the conversion instructions of the shared-memory path
// (ncu: the dequantization's issue was the GEMMs' limit). A Stage holds one k-tile of a
// lane's loads; the main loop keeps several in flight.
// NI: weight rows per lane (rows n0 + 8 ni + g); GPW: 128-wide k groups per k-tile and
// warp; KW: warp groups that take alternate groups of a k-tile (the swapped tile, SwapTile,
// gives each warp group whole k-tiles: KW = 1 there); STAGES: k-tiles of loads per lane
// (0: by the stage's size). OFFSETS: rows linear in K (Rows::kLinearK, the plain layout)
// have their first data and scale bytes worked out once, as 32-bit offsets, so a load
// costs an add (the swapped tile; the register-B tile keeps the registers: with them one
// of its block_m 16 x block_k 256 decode kernels spilled). UNGUARDED: k-tiles that need no
// guards load without them (unguarded(); the swapped tile: with that second copy of the
// loads the register tile's block_m 32 x block_k 256 stage 2 spilled).
template <int NI, int GPW, int KW, class Rows, int STAGES = 0, bool OFFSETS = false, bool UNGUARDED = false>
struct RegFragRows {
  static constexpr bool kOffsets = OFFSETS && Rows::kLinearK;
  // k-tiles of stages: deeper where a lane's stage is small (the loads in flight per lane
  // are (kStages - 1) x NI x GPW x 16 bytes).
  static constexpr int kStages = STAGES > 0 ? STAGES : NI * GPW <= 1 ? 4 : NI * GPW <= 4 ? 3 : 2;
  struct Stage {
    using Bits = typename Rows::Bits;  // how v's words store their codes
    dev::Vec16 v[NI][GPW];
    uint32_t s[NI][GPW];  // (the scale bytes, zero-extended: no masking where they are used)
  };
  Rows src;
  int64_t kend;  // Kp: blocks at or past it read as zero
  bool vec;
  int row[NI];   // the weight row of this lane in atom ni, -1: none (zero)
  // (kLinearK) where its data and scale bytes start, from those of row 0: 32-bit offsets
  // (an expert's weights are below 4 GiB), half the registers of pointers
  const uint8_t* wbase;
  const uint8_t* sbase;
  uint32_t off[kOffsets ? NI : 1], soff[kOffsets ? NI : 1];
  bool full;     // vec and every row of this lane exists: k-tiles inside K load unguarded

  // rows_: the tile's BN row handles (in shared memory, or a row map such as PairedRows
  // indexed the same way); n0: this warp's first column.
  template <class RowMap>
  MXF_DEV RegFragRows(const Rows& r, const RowMap& rows_, int64_t kend_, int n0)
      : src(r), kend(kend_), vec(r.vec_ok()), wbase(r.data(0, 0)), sbase(r.scale_ptr(0, 0)), full(vec) {
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
      row[ni] = rows_[n0 + ni * 8 + (dev::lane_id() >> 2)];
      full = full && row[ni] >= 0;
      if constexpr (kOffsets) {
        off[ni] = uint32_t(src.data(row[ni] < 0 ? 0 : row[ni], 0) - wbase);
        soff[ni] = uint32_t(src.scale_ptr(row[ni] < 0 ? 0 : row[ni], 0) - sbase);
      }
    }
  }
  // First element of group gi of warp group wk in the k-tile that starts at k0.
  MXF_DEV static int64_t group_k(int64_t k0, int gi, int wk) { return k0 + 128 * (wk + gi * KW); }

  // This lane's 16 code bytes of row ni at K element k (k < kend, row[ni] >= 0).
  MXF_DEV const uint8_t* codes(int ni, int64_t k) const {
    // (32-bit: 0 <= k < 2^32, and the low word is all the offset needs)
    if constexpr (kOffsets) return wbase + (off[ni] + (uint32_t(k) >> 1));
    else return src.data(row[ni], k / 2);
  }
  // This lane's K element in group gi of warp group wk's k-tile at k0.
  MXF_DEV static int64_t lane_k(int64_t k0, int gi, int wk) { return group_k(k0, gi, wk) + 32 * (dev::lane_id() & 3); }

  // This lane's scale byte of row ni at K element k (k < kend, row[ni] >= 0).
  MXF_DEV uint32_t scale_at(int ni, int64_t k) const {
    if constexpr (kOffsets) return sbase[soff[ni] + (uint32_t(k) >> 5)];
    else return src.scale(row[ni], k / 32);
  }
  // The common case, one test per k-tile: this lane's rows all exist, the weights are
  // 16-byte aligned and the k-tile ends inside K. Then each load is an address and the
  // load itself; otherwise every load is guarded (missing rows and K past kend read as
  // zeros, unaligned weights byte by byte). At decode the guards, zero fills and their
  // branches were ~12 instructions of each 16-byte load, ~50 of a swapped k-tile's ~390.
  MXF_DEV bool unguarded(int64_t k0, int wk) const { return full && group_k(k0, GPW - 1, wk) + 128 <= kend; }

  // The k-tile at k0 into st; ahead > 0: the k-tile at k0 + ahead into L2 as well
  // (prefetch), from the same addresses where the layout allows.
  MXF_DEV void load(Stage& st, int64_t k0, int wk, int64_t ahead = 0) const {
    if (UNGUARDED && unguarded(k0, wk)) {
      const bool pf = ahead > 0 && unguarded(k0 + ahead, wk);
#pragma unroll
      for (int ni = 0; ni < NI; ++ni)
#pragma unroll
        for (int gi = 0; gi < GPW; ++gi) {
          const int64_t k = lane_k(k0, gi, wk);
          const uint8_t* p = codes(ni, k);
          st.v[ni][gi] = dev::ld16_ro(p);
          st.s[ni][gi] = scale_at(ni, k);
          if (pf) dev::prefetch_l2(kOffsets ? p + ahead / 2 : codes(ni, k + ahead));
        }
      return;
    }
#pragma unroll
    for (int ni = 0; ni < NI; ++ni)
#pragma unroll
      for (int gi = 0; gi < GPW; ++gi) {
        const int64_t k = lane_k(k0, gi, wk);
        st.v[ni][gi] = dev::zero16();
        st.s[ni][gi] = 127;
        if (row[ni] < 0 || k >= kend) continue;
        const uint8_t* p = codes(ni, k);
        st.v[ni][gi] = vec ? dev::ld16_ro(p) : load_bytes(p, 16);
        st.s[ni][gi] = scale_at(ni, k);
      }
    if (ahead > 0) prefetch(k0 + ahead, wk);
  }
  // The weight bytes `load` would read for the k-tile at k0 into L2 only (no registers).
  MXF_DEV void prefetch(int64_t k0, int wk) const {
    const bool all = UNGUARDED && unguarded(k0, wk);
#pragma unroll
    for (int ni = 0; ni < NI; ++ni)
#pragma unroll
      for (int gi = 0; gi < GPW; ++gi) {
        const int64_t k = lane_k(k0, gi, wk);
        if (all || (row[ni] >= 0 && k < kend)) dev::prefetch_l2(codes(ni, k));
      }
  }
};
// The B operand of a kRegB tile: one row per 8-wide atom, the k groups of a k-tile split
// over the warp groups.
template <class Tile, class Rows>
struct RegFragB : RegFragRows<Tile::NI, Tile::BK / 128 / Tile::kWarpsK, Tile::kWarpsK, Rows> {
  using RegFragRows<Tile::NI, Tile::BK / 128 / Tile::kWarpsK, Tile::kWarpsK, Rows>::RegFragRows;
};

// ---- warp MMA -------------------------------------------------------------------------------
template <class Tile, class InT>
struct WarpMma {
  using Atom = dev::MmaAtom<typename Tile::Arch_, InT>;
  static constexpr int MI = Tile::MI, NI = Tile::NI;
  static_assert(Atom::kM == Tile::kAtomM && Atom::kN == Tile::kAtomN && Tile::BK % Atom::kK == 0,
                "tile shape assumes the arch's atom");
  float acc[MI][NI][Atom::kAccRegs];

  MXF_DEV void zero() {
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
      for (int ni = 0; ni < NI; ++ni)
#pragma unroll
        for (int i = 0; i < Atom::kAccRegs; ++i) acc[mi][ni][i] = 0.0f;
  }
  static constexpr int KW = Tile::kWarpsK;
  // (KW == 1 compiles to the code before warp groups existed: no k-group arithmetic)
  MXF_DEV static int warp_m() {
    return KW > 1 ? (dev::warp_id() / Tile::kWarpsN) % Tile::kWarpsM : dev::warp_id() / Tile::kWarpsN;
  }
  MXF_DEV static int warp_n() { return dev::warp_id() % Tile::kWarpsN; }
  MXF_DEV static int warp_k() { return KW > 1 ? dev::warp_id() / (Tile::kWarpsN * Tile::kWarpsM) : 0; }

  // One k-tile: A rows of this warp from `a` (pitch lda), B rows from `b` (pitch ldb),
  // atom k steps [0, ksteps), of which this warp's group takes warp_k(), warp_k() + KW, ...
  MXF_DEV void run(const uint16_t* a, int lda, const uint16_t* b, int ldb, int ksteps) {
    const int lane = dev::lane_id();
    a += warp_m() * Tile::WM * lda + warp_k() * Atom::kK;
    b += warp_n() * Tile::WN * ldb + warp_k() * Atom::kK;
    ksteps -= warp_k();
#pragma unroll
    for (int ks = 0; ks < Tile::BK / Atom::kK; ks += KW) {
      if (ks >= ksteps) break;
      typename Atom::FragA fa[MI];
      typename Atom::FragB fb[NI];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) Atom::load_a(fa[mi], a, lda, mi * Atom::kM, ks, lane);
      if constexpr (NI % 2 == 0) {
#pragma unroll
        for (int ni = 0; ni < NI; ni += 2)
          Atom::load_b2(fb[ni], fb[ni + 1], b, ldb, ni * Atom::kN, ks, lane);
      } else {
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) Atom::load_b(fb[ni], b, ldb, ni * Atom::kN, ks, lane);
      }
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) Atom::mma(acc[mi][ni], fa[mi], fb[ni]);
    }
  }

  // One k-tile of a kRegB tile: A rows from `a` (RegK order, pitch lda), B from this lane's
  // loaded stage `st`; `left` = K elements from the k-tile's start (groups past K are
  // skipped; a partial group runs whole: its missing elements are zero in A and B).
  template <class Stage>
  MXF_DEV void run_regb(const uint16_t* a, int lda, const Stage& st, int64_t left) {
    static_assert(Tile::kRegB && Tile::kWarpsM == 1, "register B fragments need a kRegB tile");
    constexpr int GPW = Tile::BK / 128 / KW;
    const int lane = dev::lane_id(), g = lane >> 2, j = lane & 3;
#pragma unroll
    for (int gi = 0; gi < GPW; ++gi) {
      const int grp = warp_k() + gi * KW;
      if (128 * int64_t(grp) >= left) break;
      E2m1PairScale ks[NI];
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) ks[ni] = e2m1_pair_scale(st.s[ni][gi]);
#pragma unroll
      for (int v = 0; v < 4; ++v) {  // word v of each block: m16n8k16 steps 2v and 2v + 1
        const int col = 128 * grp + RegK::col(32 * j + 8 * v);
        dev::Vec16 xa[MI][2];  // rows g and g + 8 of atom mi: pairs 4v .. 4v + 3 of block j
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
          for (int h = 0; h < 2; ++h) xa[mi][h] = dev::ld16(a + (mi * Atom::kM + g + 8 * h) * lda + col);
        uint32_t fb[NI][4];
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
          const dev::Vec16& w = st.v[ni][gi];
          const uint32_t word = v == 0 ? w.x : v == 1 ? w.y : v == 2 ? w.z : w.w;
          e2m1_word_pairs_bf16x2<typename Stage::Bits>(word, ks[ni], fb[ni]);
        }
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
          for (int ni = 0; ni < NI; ++ni) {
            const uint32_t a0[4] = {xa[mi][0].x, xa[mi][1].x, xa[mi][0].y, xa[mi][1].y};
            const uint32_t b0[2] = {fb[ni][0], fb[ni][1]};
            Atom::mma(acc[mi][ni], a0, b0);
            const uint32_t a1[4] = {xa[mi][0].z, xa[mi][1].z, xa[mi][0].w, xa[mi][1].w};
            const uint32_t b1[2] = {fb[ni][2], fb[ni][3]};
            Atom::mma(acc[mi][ni], a1, b1);
          }
      }
    }
  }

  // Accumulators -> fp32 staging tile [BM][kLdC]: group 0 writes, the other k groups add
  // theirs one after another (a fixed order: results do not depend on warp timing). Every
  // thread of the CTA calls it (it has barriers when KW > 1).
  MXF_DEV void stage(float* c) const {
    const int lane = dev::lane_id();
    const int r0 = warp_m() * Tile::WM, c0 = warp_n() * Tile::WN;
#pragma unroll
    for (int g = 0; g < KW; ++g) {
      if (g > 0) dev::sync_threads();
      if (warp_k() != g) continue;
#pragma unroll
      for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
          for (int i = 0; i < Atom::kAccRegs; ++i) {
            float& dst = c[(r0 + mi * Atom::kM + Atom::acc_row(lane, i)) * Tile::kLdC + c0 +
                           ni * Atom::kN + Atom::acc_col(lane, i)];
            dst = g == 0 ? acc[mi][ni][i] : dst + acc[mi][ni][i];
          }
    }
  }
};

// A operand already resident in shared memory (the one-stage kernel's intermediate):
// nothing to load; k-tile kt starts at column kt * BK of a [BM][ld] array.
struct ResidentA {
  const uint16_t* base;
  int ld;
  MXF_DEV void load(int64_t) {}
  MXF_DEV void store(uint16_t*, int) const {}
};

template <class Loader>
struct ATileView {  // where the MMA reads k-tile kt of A
  MXF_DEV static const uint16_t* at(const Loader&, const uint16_t* tile, int) { return tile; }
  template <class Tile>
  MXF_DEV static int ld(const Loader&) { return Tile::kLdA; }
};
template <>
struct ATileView<ResidentA> {
  MXF_DEV static const uint16_t* at(const ResidentA& r, const uint16_t*, int col) { return r.base + col; }
  template <class Tile>
  MXF_DEV static int ld(const ResidentA& r) { return r.ld; }
};

// The main loop over k-tiles [kt0, kt1) of a K-long reduction: the loads of the next
// k-tile are in flight (in registers) while the MMAs of the current one run. Ends with a
// barrier, so shared memory is free for the epilogue.
// Measured on the H100 and dropped (2026-11-23, benchmarks/README.md): three k-tiles of
// loads in flight as register copies (5-10 % faster at T = 4..8, up to 40 % slower from
// T = 16: the registers cost occupancy), and a cp.async ring of up to 8 k-tiles in shared
// memory for the decode variants (2-13 % slower at T <= 2 than this loop: at decode the
// GEMM is bound by the issue of its dequantization instructions, ncu, not by load latency).
template <class Tile, class InT, class ALoader, class BLoader>
MXF_DEV void gemm_mainloop(WarpMma<Tile, InT>& mma, ALoader al, BLoader bl, uint16_t* sa,
                           uint16_t* sb, int kt0, int kt1, int64_t K) {
  if (kt0 >= kt1) return;
  al.load(int64_t(kt0) * Tile::BK);
  bl.load(int64_t(kt0) * Tile::BK);
  for (int kt = kt0; kt < kt1; ++kt) {
    al.store(sa, Tile::kLdA);
    bl.store(sb, Tile::kLdB);
    dev::sync_threads();
    if (kt + 1 < kt1) {
      al.load(int64_t(kt + 1) * Tile::BK);
      bl.load(int64_t(kt + 1) * Tile::BK);
    }
    const int64_t left = K - int64_t(kt) * Tile::BK;
    const int ksteps = int(cdiv(cmin<int64_t>(Tile::BK, left), WarpMma<Tile, InT>::Atom::kK));
    mma.run(ATileView<ALoader>::at(al, sa, kt * Tile::BK), ATileView<ALoader>::template ld<Tile>(al),
            sb, Tile::kLdB, ksteps);
    dev::sync_threads();
  }
}

// The main loop of a kRegB tile: B comes in register stages (RegFragB), STAGES k-tiles
// deep, so STAGES - 1 k-tiles of weight loads are in flight while a k-tile's MMAs run; A
// is double-buffered in shared memory (sa0 / sa1), one barrier per k-tile. Ends with a
// barrier, so shared memory is free for the epilogue.
template <int STAGES, class Tile, class InT, class ALoader, class BRegs>
MXF_DEV void gemm_mainloop_regb(WarpMma<Tile, InT>& mma, ALoader al, const BRegs& bl, uint16_t* sa0,
                                uint16_t* sa1, int kt0, int kt1, int64_t K) {
  if (kt0 >= kt1) return;
  const int wk = mma.warp_k();
  typename BRegs::Stage st[STAGES];
#pragma unroll
  for (int d = 0; d < STAGES; ++d)
    if (kt0 + d < kt1) bl.load(st[d], int64_t(kt0 + d) * Tile::BK, wk);
  al.load(int64_t(kt0) * Tile::BK);
  al.store(sa0, Tile::kLdA);
  dev::sync_threads();
  for (int kt = kt0; kt < kt1; kt += STAGES) {
#pragma unroll
    for (int d = 0; d < STAGES; ++d) {
      const int t = kt + d;
      if (t >= kt1) break;
      const bool next = t + 1 < kt1;
      if (next) al.load(int64_t(t + 1) * Tile::BK);
      mma.run_regb(((t - kt0) & 1) ? sa1 : sa0, Tile::kLdA, st[d], K - int64_t(t) * Tile::BK);
      if (t + STAGES < kt1) bl.load(st[d], int64_t(t + STAGES) * Tile::BK, wk);
      if (next) al.store(((t + 1 - kt0) & 1) ? sa1 : sa0, Tile::kLdA);
      dev::sync_threads();
    }
  }
}

// ---- the swapped-operand decode tile (sm90, b_path swap) ------------------------------------
// At decode a block holds a few token rows of one expert, and the 16-row MMA atoms of the
// tiles above are mostly padding, while the time goes into streaming the expert's weights.
// Here the weights are the MMA's 16-row operand and the tokens its 8-wide one (C^T = W A^T
// with m16n8k16: one token costs 8 MMA rows, not 16), and the main loop is built to keep
// HBM busy:
//   * 8 warps; warp (wn, wk) owns 32 weight rows (two m16 atoms; 16 rows, one atom, with
//     block_m 32) and the k-tiles wk, wk + kWarpsK, ... of the CTA's K range, whose weight
//     bytes it loads straight into registers in RegK order (RegFragRows with two rows per
//     lane and atom: rows g, g + 8, g + 16, g + 24), one k-tile ahead of its MMAs (two
//     stages: one in flight while the other is converted and multiplied), and converts
//     right before them;
//   * the block's activation rows for the whole K range (or a chunk of it where they do not
//     fit) sit in shared memory, converted once per CTA into RegK order (16-bit rows as
//     they are, MX rows dequantized exactly), so the main loop has no barrier; only the
//     token atoms that hold a route are loaded and multiplied (at T = 1: one of 2 or 4);
//   * the KW partial sums meet in the fp32 staging tile [BM][BN + 8] in warp-group order
//     (results do not depend on timing), where the portable epilogues read them.
// Shared memory is sized at launch (plan): rows = min(BM, 8-row atoms that T * topk routes
// can fill) x the K range + 16 elements per row (the RegK swizzle's conflict-free pitch).
// Weight rows per warp of the swapped tile: 32 (two m16 atoms) up to block_m 16; 16 (one
// atom) for block_m 32, whose four token atoms' accumulators and fragments with two atoms'
// weights needed ~190 registers (one CTA per SM: 8 warps), so that it too runs two CTAs
// per SM. (A function, not only SwapTile's member: MoeSpec sizes the loader with it
// without instantiating SwapTile for the other tiles.)
constexpr int swap_warp_rows(int block_m) { return block_m <= 16 ? 32 : 16; }

template <class Arch, int BM_, int BN_, int BK_>
struct SwapTile {
  using Arch_ = Arch;
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static constexpr int kWarps = 8, kWarpRows = swap_warp_rows(BM_);
  static_assert(BM % 8 == 0 && BM <= 32 && BK % 128 == 0 && BN % kWarpRows == 0 &&
                    kWarps % (BN / kWarpRows) == 0,
                "swap tile: block_m 8..32 (multiple of 8), block_n 32/64/128/256 (block_m 32: "
                "16/32/64/128), block_k % 128 == 0");
  static constexpr int kWarpsN = BN / kWarpRows, kWarpsK = kWarps / kWarpsN;
  static constexpr int kThreads = kWarps * dev::kWarpSize;
  // Two CTAs per SM (<= 128 registers): 16 warps, each with a k-tile of weight loads in
  // flight (two stages: MoeSpec) while it converts and multiplies the previous one.
  static constexpr int kCtasPerSm = 2;
  static constexpr int MT = kWarpRows / 16, NA = BM / 8;  // m16 weight atoms, n8 token atoms
  static constexpr int GPW = BK / 128;                     // k groups per k-tile
  using Atom = dev::MmaAtom<Arch, Bf16>;
  static constexpr int kLdC = BN + 8;  // fp32 staging pitch
  static constexpr int kSmemC = BM * kLdC * 4;
  static constexpr int kSmemA = 0, kSmem = kSmemC;  // (the activations' part is sized at launch)
  // Activation bytes per CTA (two CTAs per SM); the host test backend sets a small budget
  // so that its runs take the chunked path.
#ifndef MXF_SWAP_SMEM_A
#define MXF_SWAP_SMEM_A (100 * 1024)
#endif
  static constexpr int kSmemBudgetA = MXF_SWAP_SMEM_A;
  struct Plan {
    int rows;         // activation rows kept: whole 8-row atoms that can hold a route
    int chunk_tiles;  // k-tiles of activations in shared memory at a time (whole rounds)
    int lda;          // their pitch (elements): chunk_tiles * BK + 16
    MXF_HD int64_t smem() const {
      const int64_t a = 2 * int64_t(rows) * lda;
      return a > kSmemC ? a : kSmemC;
    }
  };
  // routes: T * topk (a block holds at most that many); range_tiles: k-tiles of a split.
  MXF_HD static Plan plan(int64_t routes, int range_tiles) {
    const int rows = int(cmin<int64_t>(BM, round_up(cmax<int64_t>(routes, 1), 8)));
    const int fit = (kSmemBudgetA / (2 * rows) - 16) / BK / kWarpsK * kWarpsK;
    const int tiles = int(cmin<int64_t>(round_up(cmax(range_tiles, 1), kWarpsK), cmax(fit, kWarpsK)));
    return Plan{rows, tiles, tiles * BK + 16};
  }
};

// The block's activation rows [0, rows) for K [k0, k0 + kc) into shared memory `sa` (pitch
// lda) in RegK order, by all threads, U chunks per thread in flight: 16-bit rows arranged,
// MX rows dequantized exactly (dequant_chunk); missing rows and K at or past kend are zeros.
template <class AT, int NT>
MXF_DEV void load_act_chunk(const GatherRows& src, const int* arow, int rows, int64_t k0, int kc,
                            int64_t kend, uint16_t* sa, int lda) {
  using Op = Operand<AT>;
  constexpr int CE = Op::kChunkElems, U = Op::kMx ? 3 : 4;  // (3 for MX: registers)
  const int cpr = kc / CE, total = rows * cpr;
  const bool vec = src.vec_ok();
  for (int base = dev::thread_x(); base < total; base += U * NT) {
    dev::Vec16 v[U];
    uint8_t s[U];
    bool live[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int q = base + u * NT;
      v[u] = dev::zero16();
      s[u] = 127;
      live[u] = false;
      if (q >= total) continue;
      const int ar = arow[q / cpr];
      const int64_t k = k0 + int64_t(q % cpr) * CE;
      if (ar < 0 || k >= kend) continue;
      live[u] = true;
      const uint8_t* p = src.data(ar, Op::kbyte(k));
      if constexpr (Op::kMx) {  // (chunks never straddle kend: Kp is a multiple of 32)
        v[u] = vec ? dev::ld16_ro(p) : load_bytes(p, 16);
        s[u] = src.scale(ar, k / 32);
      } else {
        v[u] = (vec && k + 8 <= kend) ? dev::ld16_ro(p) : load_bytes(p, 2 * int(cmin<int64_t>(8, kend - k)));
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int q = base + u * NT;
      if (q >= total) continue;
      uint16_t* row = sa + (q / cpr) * lda;
      const int kk = (q % cpr) * CE;
      if (!live[u]) {
#pragma unroll
        for (int j = 0; j < CE / 8; ++j) dev::st16(row + RegK::col(kk + 8 * j), dev::zero16());
      } else if constexpr (Op::kMx) {
        dequant_chunk<typename Op::Elem, Bf16, RegK>(v[u], s[u], RowDst<RegK>{row}, kk);
      } else {
        dev::st16(row + RegK::col(kk), RegK::arrange(v[u]));
      }
    }
  }
}

// The swapped tile's MMAs: acc[mt][na] is C^T of weight atom mt (16 rows) x token atom na.
template <class Tile>
struct SwapMma {
  using Atom = typename Tile::Atom;
  static constexpr int MT = Tile::MT, NA = Tile::NA, KW = Tile::kWarpsK;
  float acc[MT][NA][4];

  MXF_DEV void zero() {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int na = 0; na < NA; ++na)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][na][i] = 0.0f;
  }
  MXF_DEV static int warp_n() { return dev::warp_id() % Tile::kWarpsN; }
  MXF_DEV static int warp_k() { return dev::warp_id() / Tile::kWarpsN; }

  // One k-tile: activations from `a` (RegK order, pitch lda, the k-tile's first column),
  // weights from this lane's stage `st` (row ni = 2 mt + h: rows g + 8h of atom mt);
  // `left` = K elements from the k-tile's start; token atoms [0, nat) hold routes. One
  // token atom (decode: a block of at most 8 routes) gets its own copy of the loop, so
  // neither the dead atoms' loads and MMAs nor their predicates are issued.
  template <class Stage>
  MXF_DEV void run(const uint16_t* a, int lda, const Stage& st, int64_t left, int nat) {
    // Scales above 2^1 (the second multiply, E2m1PairScale) are rare in checkpoints: the
    // common case runs copies without that code, a smaller hot loop (with it inline the
    // layers took 0.98-1.03x as long; H200, benchmarks/README.md, session 14).
    bool hi = false;
#pragma unroll
    for (int ni = 0; ni < 2 * MT; ++ni)
#pragma unroll
      for (int gi = 0; gi < Tile::GPW; ++gi) hi |= e2m1_pair_scale(st.s[ni][gi]).hi_needed;
    // (the warp's choice: its MMAs need all 32 lanes on the same copy)
    if (dev::ballot(hi) != 0) run_atoms<NA, true>(a, lda, st, left, nat);
    else if (NA > 1 && nat == 1) run_atoms<1, false>(a, lda, st, left, 1);
    else run_atoms<NA, false>(a, lda, st, left, nat);
  }

  template <int NAT, bool kHi, class Stage>
  MXF_DEV void run_atoms(const uint16_t* a, int lda, const Stage& st, int64_t left, int nat) {
    const int lane = dev::lane_id(), g = lane >> 2, j = lane & 3;
    // (32-bit shared addresses: no generic-to-shared conversion per load.) Word v of lane
    // j's block sits at column RegK::col(32 j + 8 v) = 32 j + 8 (v ^ (j >> 1)), i.e. at
    // that of word v % 2 plus 16 (v / 2): two bases per lane, the rest immediate offsets.
    const uint32_t xa = dev::smem_addr(a + g * lda);
    const uint32_t xv[2] = {xa + 2 * RegK::col(32 * j), xa + 2 * RegK::col(32 * j + 8)};
#pragma unroll
    for (int gi = 0; gi < Tile::GPW; ++gi) {
      if (128 * int64_t(gi) >= left) break;
      E2m1PairScale ks[2 * MT];  // (hi is worked out again where it is needed: registers)
      bool any_hi = false;  // a scale above 2^1 in any of this lane's rows: the second multiply
#pragma unroll
      for (int ni = 0; ni < 2 * MT; ++ni) {
        ks[ni] = e2m1_pair_scale(st.s[ni][gi]);
        any_hi |= kHi && ks[ni].hi_needed;
      }
#pragma unroll
      for (int v = 0; v < 4; ++v) {  // word v of each block: m16n8k16 steps 2v and 2v + 1
        dev::Vec16 xb[NAT];  // token g of atom na: pairs 4v .. 4v + 3 of block j
#pragma unroll
        for (int na = 0; na < NAT; ++na)
          if (NAT == 1 || na < nat) xb[na] = dev::lds16(xv[v & 1] + 2 * (8 * na * lda + 128 * gi + 16 * (v >> 1)));
        uint32_t fw[2 * MT][4];
#pragma unroll
        for (int ni = 0; ni < 2 * MT; ++ni) {
          const dev::Vec16& w = st.v[ni][gi];
          e2m1_word_pairs_lo<typename Stage::Bits>(v == 0 ? w.x : v == 1 ? w.y : v == 2 ? w.z : w.w, ks[ni], fw[ni]);
        }
        if (any_hi) {  // (one branch for the lane's rows; hi is 1 where a row needs none)
#pragma unroll
          for (int ni = 0; ni < 2 * MT; ++ni)
#pragma unroll
            for (int i = 0; i < 4; ++i) fw[ni][i] = dev::mul_bf16x2(fw[ni][i], e2m1_pair_scale(st.s[ni][gi]).hi);
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int na = 0; na < NAT; ++na) {
            if (NAT > 1 && na >= nat) continue;
            const uint32_t a0[4] = {fw[2 * mt][0], fw[2 * mt + 1][0], fw[2 * mt][1], fw[2 * mt + 1][1]};
            const uint32_t b0[2] = {xb[na].x, xb[na].y};
            Atom::mma(acc[mt][na], a0, b0);
            const uint32_t a1[4] = {fw[2 * mt][2], fw[2 * mt + 1][2], fw[2 * mt][3], fw[2 * mt + 1][3]};
            const uint32_t b1[2] = {xb[na].z, xb[na].w};
            Atom::mma(acc[mt][na], a1, b1);
          }
      }
    }
  }

  // Accumulators -> fp32 staging tile [BM][kLdC] (row = token, column = weight row of the
  // tile), in warp-group order as WarpMma::stage (the same loop over the transposed
  // accumulator layout; merging the two changed the machine code of 199 objects, which
  // could not be re-run on a GPU that session).
  MXF_DEV void stage(float* c) const {
    const int lane = dev::lane_id(), c0 = warp_n() * Tile::kWarpRows;
#pragma unroll 1
    for (int grp = 0; grp < KW; ++grp) {
      if (grp > 0) dev::sync_threads();
      if (warp_k() != grp) continue;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int na = 0; na < NA; ++na)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            float& dst = c[(8 * na + Atom::acc_col(lane, i)) * Tile::kLdC + c0 + 16 * mt + Atom::acc_row(lane, i)];
            dst = grp == 0 ? acc[mt][na][i] : dst + acc[mt][na][i];
          }
    }
  }

  // The accumulators as output pairs, for a warp whose weight rows were loaded through
  // PairedRows (one warp group: kWarpsK == 1): f(token, column, v0, v1) for columns
  // (column, column + 1) of the tile, column = the warp's first + 16 mt + 2 g. Rows g and
  // g + 8 of an m16 atom are a lane's accumulators i and i + 2 for the same token, so no
  // staging tile or barrier is needed to hand a 32-bit pair to the output.
  template <class F>
  MXF_DEV void for_each_pair(F&& f) const {
    static_assert(KW == 1, "for_each_pair: one warp group (the tile's K is not split over warps)");
    const int lane = dev::lane_id(), c0 = warp_n() * Tile::kWarpRows + 2 * (lane >> 2);
#pragma unroll
    for (int na = 0; na < NA; ++na)
#pragma unroll
      for (int b = 0; b < 2; ++b)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
          f(8 * na + Atom::acc_col(lane, b), c0 + 16 * mt, acc[mt][na][b], acc[mt][na][b + 2]);
  }
};

// The weight rows of a swapped tile whose accumulators go out as pairs (for_each_pair):
// tile row 16 a + 8 h + g (m16 atom a, half h, lane group g) holds output column
// n0 + 16 a + 2 g + h, or none (-1) past N. Indexed like the tile's row handles.
struct PairedRows {
  int64_t n0, N;
  MXF_DEV int operator[](int c) const {
    const int64_t n = n0 + (c & ~15) + 2 * (c & 7) + ((c >> 3) & 1);
    return n < N ? int(n) : -1;
  }
};
// ... and tile row c holding output column n0 + c (the staged epilogue's order; moe.cuh's
// plain_rows writes the same into shared memory).
struct PlainRows {
  int64_t n0, N;
  MXF_DEV int operator[](int c) const { return n0 + c < N ? int(n0 + c) : -1; }
};

// The swapped tile's main loop over k-tiles [kt0, kt1): rounds of kWarpsK k-tiles, warp
// group wk taking k-tile kt0 + round * kWarpsK + wk. The weight stages of the first
// kStages rounds are issued before the activations are loaded (so those loads overlap
// them), then each round converts and multiplies one stage and refills it kStages rounds
// ahead; the round kStages further on is fetched into L2 meanwhile (no registers: the
// register loads then wait on L2, not HBM; session 14 measured the L2 hit rate of gpt-oss
// stage 1 at T = 1 going from 18 % to 49 %). When the K range does not fit in one chunk of
// activations (plan), each new chunk costs two barriers; otherwise the loop has none, and
// no chunk code either (swap_rounds<false>: the unrolled copies of a round stay small;
// one token atom's K fits one chunk up to 6272). Ends with a barrier (shared memory is free).
template <bool kChunks, class AT, class Tile, class WRegs, class Stage>
MXF_DEV void swap_rounds(SwapMma<Tile>& mma, const GatherRows& act, const int* arow, int64_t akend,
                         const WRegs& wl, Stage (&st)[WRegs::kStages], uint16_t* sa,
                         const typename Tile::Plan& plan, int nat, int kt0, int kt1, int64_t K) {
  constexpr int S = WRegs::kStages, KW = Tile::kWarpsK, NT = Tile::kThreads, BK = Tile::BK;
  const int wk = mma.warp_k();
  const int rounds = (kt1 - kt0 + KW - 1) / KW, chunk_rounds = plan.chunk_tiles / KW;
  int in_chunk = 0;  // rounds of the current chunk done (a new chunk when it reaches chunk_rounds)
  for (int r = 0; r < rounds; r += S) {
#pragma unroll
    for (int d = 0; d < S; ++d) {
      const int rr = r + d;
      if (rr >= rounds) break;  // (uniform for the CTA)
      if constexpr (kChunks) {
        if (rr == 0 || in_chunk == chunk_rounds) {  // (uniform) the next chunk of activations
          const int64_t c0 = int64_t(kt0 + rr * KW) * BK;
          if (rr > 0) dev::sync_threads();
          load_act_chunk<AT, NT>(act, arow, 8 * nat, c0,
                                 int(cmin<int64_t>(plan.chunk_tiles * BK, int64_t(kt1) * BK - c0)), akend,
                                 sa, plan.lda);
          dev::sync_threads();
          in_chunk = 0;
        }
      }
      const int t = kt0 + rr * KW + wk;
      if (t < kt1) {
        const uint16_t* a = sa + (in_chunk * KW + wk) * BK;
        // (chunked: K ranges past the activation budget, e.g. block_m 32 rows beyond
        // K = 1536, one token atom beyond K = 6272: one general copy of the k-tile code
        // there, so that the decode copies live in the one-chunk loop only)
        if constexpr (kChunks) mma.template run_atoms<Tile::NA, true>(a, plan.lda, st[d], K - int64_t(t) * BK, nat);
        else mma.run(a, plan.lda, st[d], K - int64_t(t) * BK, nat);
      }
      ++in_chunk;
      const int tn = t + S * KW;
      if (rr + S < rounds && tn < kt1)
        wl.load(st[d], int64_t(tn) * BK, 0,
                rr + 2 * S < rounds && tn + S * KW < kt1 ? int64_t(S * KW) * BK : int64_t(0));
    }
  }
}

template <class AT, class Tile, class WRegs>
MXF_DEV void gemm_mainloop_swap(SwapMma<Tile>& mma, const GatherRows& act, const int* arow, int64_t akend,
                                const WRegs& wl, uint16_t* sa, const typename Tile::Plan& plan, int nat,
                                int kt0, int kt1, int64_t K) {
  constexpr int S = WRegs::kStages, KW = Tile::kWarpsK, NT = Tile::kThreads, BK = Tile::BK;
  if (kt0 >= kt1) return;
  const int wk = mma.warp_k();
  const int rounds = (kt1 - kt0 + KW - 1) / KW;
  typename WRegs::Stage st[S];
#pragma unroll
  for (int d = 0; d < S; ++d) {
    const int t = kt0 + d * KW + wk;
    if (d < rounds && t < kt1) wl.load(st[d], int64_t(t) * BK, 0);
  }
#pragma unroll
  for (int d = 0; d < S; ++d) {  // (the rounds after them: L2 only)
    const int t = kt0 + (S + d) * KW + wk;
    if (S + d < rounds && t < kt1) wl.prefetch(int64_t(t) * BK, 0);
  }
  if (rounds <= plan.chunk_tiles / KW) {  // (uniform) the whole K range in one chunk
    load_act_chunk<AT, NT>(act, arow, 8 * nat, int64_t(kt0) * BK, (kt1 - kt0) * BK, akend, sa, plan.lda);
    dev::sync_threads();
    swap_rounds<false, AT>(mma, act, arow, akend, wl, st, sa, plan, nat, kt0, kt1, K);
  } else {
    swap_rounds<true, AT>(mma, act, arow, akend, wl, st, sa, plan, nat, kt0, kt1, K);
  }
  dev::sync_threads();
}

// The swapped tile over `tiles` output tiles of one block, each of k-tiles [0, KT) (an N
// loop: stage 2, where K is short and a CTA per tile spent ~3/4 of its time before and
// after its main loop, ncu: benchmarks/README.md, session 18). One warp group
// (kWarpsK == 1); the activations of the whole K are loaded once (plan.chunk_tiles >= KT).
// The weight stages run over the flattened (tile, k-tile) sequence, so the next tile's
// first k-tiles load while this tile's last ones and its epilogue run. loader_of(i) is
// tile i's weight loader; done(i) runs (on every thread) after tile i's last k-tile, on
// its accumulators (zeroed here before each tile).
template <class AT, class Tile, class WRegs, class LoaderOf, class Done>
MXF_DEV void gemm_mainloop_swap_tiles(SwapMma<Tile>& mma, const GatherRows& act, const int* arow, int64_t akend,
                                      const LoaderOf& loader_of, uint16_t* sa, const typename Tile::Plan& plan,
                                      int nat, int tiles, int KT, int64_t K, Done&& done) {
  constexpr int S = WRegs::kStages, BK = Tile::BK;
  static_assert(Tile::kWarpsK == 1, "the N loop: one warp group");
  // Each tile's k-tiles padded to whole rounds of S: stage d always holds a k-tile kk with
  // kk % S == d, so one copy of the epilogue follows the rounds.
  const int rounds = (KT + S - 1) / S;
  typename WRegs::Stage st[S];
#pragma unroll
  for (int d = 0; d < S; ++d)
    if (d < KT) loader_of(0).load(st[d], int64_t(d) * BK, 0);
  load_act_chunk<AT, Tile::kThreads>(act, arow, 8 * nat, 0, KT * BK, akend, sa, plan.lda);
  dev::sync_threads();
  for (int t = 0; t < tiles; ++t) {
    mma.zero();
    for (int r = 0; r < rounds; ++r) {
#pragma unroll
      for (int d = 0; d < S; ++d) {
        const int kk = r * S + d;
        if (kk < KT) mma.run(sa + kk * BK, plan.lda, st[d], K - int64_t(kk) * BK, nat);
        // the k-tile S further on: this tile's, or the next tile's in its first round
        const bool next = r + 1 == rounds;
        const int nk = next ? d : kk + S;
        if (nk < KT && t + next < tiles) loader_of(t + next).load(st[d], int64_t(nk) * BK, 0);
      }
    }
    done(t);
  }
}

// ---- the warpgroup-MMA tile (sm90 wgmma): the compute-bound main loop ---------------------
// At prefill a CTA's MMAs, not its loads or conversions, should set its time. The mma.sync
// loop above keeps one k-tile of loads in flight in registers and converts between two
// barriers, which left the H100 at 11-23 % of its bf16 rate (benchmarks/). Here:
//   * a ring of kStages stages in shared memory receives each k-tile's raw operand bytes
//     by cp.async, kStages - 1 k-tiles ahead of the MMAs (no registers held);
//   * 16-bit operands (bf16 / fp16 activations) land directly in the 128-byte swizzled
//     K-major layout that wgmma reads (Sw128); MX operands (pk_fp4, fp8) land raw (16-byte
//     chunks, and the 4-byte word holding each chunk's scale) and the thread that copied
//     a chunk dequantizes it exactly (dequant_chunk) into a swizzled 16-bit tile;
//   * two warpgroups (256 threads) each issue m64nNk16 wgmmas over the k-tile for their 64
//     rows (block_m 128) or their half of the columns (block_m 64), asynchronously: the
//     next k-tile's conversion and copies overlap them;
//   * two CTAs share an SM (kCtasPerSm: shared memory <= ~110 KB, registers <= 128): the
//     loop is latency-bound with one CTA's 8 warps (ncu, H200: ~6.5 cycles per issued
//     instruction per warp, 46 % of issue slots busy), and the other CTA's warps and its
//     epilogue fill those gaps.
// When both operands are MX (a4w4, a8w4), their K order within each unit of 8 is PairK,
// the order e2m1_word_pairs_bf16x2 makes (about half the instructions of natural pairs);
// a GEMM may sum K in any order as long as A and B agree.
// Hazards, per k-tile i, with one barrier ("converted") per k-tile: a thread converts only
// the chunks it copied, so its own copy wait of i is all the conversion of i needs; buffer
// i % 2 was last read by the MMAs of i - 2, which every warpgroup waited for before the
// barrier of i - 1. Barrier "converted" of i follows every thread's copy wait and
// conversions of i and every warpgroup's wait for its MMAs of i - 1, so the MMAs of i may
// start and the copies of k-tile i + kStages - 1 may overwrite ring stage (i - 1) %
// kStages (last read by the conversion and the MMAs of i - 1).
// Measured and dropped (2026-11-29, H200, benchmarks/README.md): one CTA per SM with
// three converted buffers and up to 8 stages (gpt-oss-120b stage 1, T = 8192, a16w4:
// 5.82 ms; shipped: 4.62), and a warp-specialized version of it (a producer warpgroup
// copying, two consumer warpgroups converting and issuing the MMAs, mbarriers between
// them): 6.70 ms. Session 27: a wide tile (block_m 128 x block_n 256, four warpgroups, one
// CTA of 16 warps per SM, so pk_fp4 activations are converted once per 256 columns and
// by all 16 warps): 1.00-1.07x the time of this tile's a4w4 stages (gpt-oss-120b).
template <class Arch, class AT, class BT, class InT, int BM, int BN, int BK, bool N_LOOP = false>
struct WgmmaTile;  // (defined where the device layer has wgmma: MXF_HAS_WGMMA)
template <class Tile, class InT>
struct WarpgroupMma;
template <class T, class InT, int ROWS, int BK, int NT, class Rows, class Order>
struct RingOperand;

// ---- the swapped warpgroup-MMA tile (sm90 wgmma, b_path wgmma_regs) -----------------------
// Prefill with the swapped tile's operand roles: the weights are the warpgroup MMA's 64-row
// A operand, straight from registers, and the block's tokens its N (C^T = W A^T). What the
// shared-memory wgmma tile above spends most of its issue slots on (copying the weights
// into a ring, converting them into a swizzled tile, the barriers between) goes away:
//   * each warp loads its 16 weight rows of a k-tile of 128 in the swapped tile's RegK
//     order (RegFragRows: lane (g, j) the 16 bytes of block j of rows g and g + 8, one
//     scale byte each), kStages k-tiles ahead, and converts them (e2m1_word_pairs_lo, 9
//     integer instructions and 4 multiplies per word of 8 codes) into the m16n8k16 A
//     fragments that a wgmma's register A operand takes per warp;
//   * the activations of a k-tile are put in shared memory by all threads in the 128-byte
//     swizzled K-major layout wgmma's B descriptor names, in the K order those fragments
//     give (WgmmaRegsAct): 16-bit rows permuted through registers, MX rows dequantized;
//   * two warpgroups (64 weight rows each) issue 8 m64nBMk16 MMAs per k-tile in two
//     halves, each half's fragments converted while the other half's MMAs run (a wait for
//     all but the last group before each conversion); three activation buffers, one
//     barrier per k-tile.
// Measured (H200, benchmarks/README.md, session 21): block_m 64 at two CTAs per SM beats the
// ring tile from 64 to 128 rows per expert (stage 1 at T = 2048: 0.73-1.00x); block_m 128,
// one CTA of 8 warps per SM, is latency-bound (ncu: 6 cycles per issued instruction per warp,
// the tensor pipe 29 % busy) and about the ring's speed at 256 rows.
template <class Arch, class AT, int BM, int BN, int BK, int WSTAGES>
struct WgmmaRegsTile;  // (defined where the device layer has wgmma: MXF_HAS_WGMMA)
template <class Tile>
struct WgmmaRegsMma;

// Within each unit of 8 elements, pairs (i, i + 4): the order of e2m1_word_pairs_bf16x2.
struct PairK {
  static constexpr bool kNatural = false;
  MXF_HD static int col(int k) { return k; }
  MXF_HD static dev::Vec16 arrange(const dev::Vec16& x) { return RegK::arrange(x); }
};

// Bytes of one operand in the ring and in converted tiles.
template <class T, int ROWS, int BK>
struct RingShape {
  using Op = Operand<T>;
  static constexpr bool kMx = Op::kMx;
  static constexpr int kCPR = BK / Op::kChunkElems, kChunks = ROWS * kCPR;
  static constexpr int kTileBytes = ROWS * BK * 2;            // a swizzled 16-bit tile
  static constexpr int kRawBytes = kMx ? 16 * kChunks : 0;    // chunk q's codes at 16 q
  static constexpr int kScaleBytes = kMx ? 4 * kChunks : 0;   // the word holding q's scale at 4 q
  // (rounded to the swizzle atom: each part of a stage starts 1024-byte aligned)
  static constexpr int kStageBytes = ((kMx ? kRawBytes + kScaleBytes : kTileBytes) + 1023) / 1024 * 1024;
  static constexpr int kConvTiles = kMx ? 2 : 0;
  static constexpr int kConvBytes = kConvTiles * kTileBytes;
};

#if defined(MXF_HAS_WGMMA)
// Element offset of (row r, column k) of a [ROWS][BK] 16-bit tile in wgmma's 128-byte
// swizzle: BK / 64 column blocks of [ROWS][64] (128-byte rows); in each 8-row atom the
// 16-byte unit u of row r sits at unit u ^ (r % 8).
template <int ROWS>
MXF_HD constexpr int sw128_off(int r, int k) {
  return (k >> 6) * (ROWS * 64) + r * 64 + ((((k >> 3) & 7) ^ (r & 7)) << 3) + (k & 7);
}
// The first 1024-byte aligned address (the swizzle atom) in a tile's dynamic shared memory
// (kSmem has the slack), rounded as an integer: the wgmma tiles' loads and stores through it
// then compile to generic LD/ST, not LDS/STS. That matters: with shared-space pointers
// (fewer instructions) the ring tiles took 1.2-1.5x as long, stalled on the shared-memory
// pipe (Nsight Compute: mio throttle; docs/sm90.md, session 24).
MXF_DEV unsigned char* swizzle_base(void* smem) {
  return reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem) + 1023) & ~uintptr_t(1023));
}
template <int ROWS>
struct Sw128Dst {
  uint16_t* tile;
  int r;
  MXF_DEV uint16_t* at(int k) const { return tile + sw128_off<ROWS>(r, k); }
};

template <class Arch, class AT, class BT, class InT, int BM_, int BN_, int BK_, bool N_LOOP>
struct WgmmaTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  // Two warpgroups: one per 64 rows at BM = 128, halves of N at BM = 64.
  static constexpr int kWgM = BM / 64, kWgN = 2 / kWgM, WGN = BN / kWgN;
  static_assert((BM == 64 || BM == 128) && BK % 64 == 0 && (WGN == 64 || WGN == 128),
                "wgmma tile: block_m 64 or 128, block_k a multiple of 64, 64 or 128 columns per warpgroup");
  static constexpr int kThreads = 2 * dev::kWarpgroupThreads;
  static constexpr int kCtasPerSm = 2;  // the stage kernels' __launch_bounds__ minimum
  using AS = RingShape<AT, BM, BK>;
  using BS = RingShape<BT, BN, BK>;
  static constexpr int kStageBytes = AS::kStageBytes + BS::kStageBytes;
  static constexpr int kConvBytes = AS::kConvBytes + BS::kConvBytes;
  // As many stages as two CTAs per SM leave room for (227 KB per SM, less each CTA's row
  // arrays and alignment slack), 3 to 8.
  static constexpr int kBudget = 108 * 1024;
  static constexpr int kStages = cmax(3, cmin(8, (kBudget - kConvBytes) / kStageBytes));
  static constexpr int kLdC = BN + 8;  // fp32 staging pitch (the epilogues')
  static constexpr int kSmemMain = kConvBytes + kStages * kStageBytes;
  static constexpr int kSmemC = BM * kLdC * 4;
  static constexpr int kSmemA = 0;  // (no separate A / B tiles: the main loop carves its own)
  // A warp's region for its bf16 rows (WarpgroupMma::stage16): 16 rows of WGN columns, the
  // pitch skewed by 16 bytes; every warp's regions together.
  static constexpr int kRows16 = 16, kPitch16 = 2 * WGN + 16;
  static constexpr int kRegions16Bytes = kThreads / 32 * kRows16 * kPitch16;
  // Stage 2's N loop (N_LOOP, gemm_mainloop_wgmma_tiles): the activations of the whole K
  // resident as converted tiles (kResKTiles k-tiles at most), then an area for the weights'
  // conversion tiles that each tile's epilogue also uses for the warps' bf16 row regions
  // and, MX activations, the prologue for their raw k-tiles, then a ring of weight-only
  // stages (3 to 8).
  static constexpr int kLoopConvBytes = cmax(BS::kConvBytes, kRegions16Bytes);
  static constexpr int kResKTiles = N_LOOP ? (kBudget - kLoopConvBytes - 3 * BS::kStageBytes) / AS::kTileBytes : 0;
  static constexpr int kLoopStages =
      N_LOOP ? cmin(8, (kBudget - kLoopConvBytes - kResKTiles * AS::kTileBytes) / BS::kStageBytes) : 0;
  static constexpr int kSmemLoop = kResKTiles * AS::kTileBytes + kLoopConvBytes + kLoopStages * BS::kStageBytes;
  static_assert(!N_LOOP || (kResKTiles >= 1 && kLoopStages >= 3 && (!AS::kMx || kResKTiles * AS::kStageBytes <= kLoopConvBytes)),
                "wgmma N loop: resident activations, their raw k-tiles in the conversion area, a ring of 3+");
  // + 1024: the dynamic shared memory base is aligned up to the swizzle atom at run time.
  static constexpr int kSmem = 1024 + cmax(cmax(kSmemMain, kSmemC), kSmemLoop);
};

// One operand of a WgmmaTile. Thread t copies (and, MX, converts) chunks t, t + NT, ...
// of the tile (row-major over 16-byte chunks): the same chunks in every k-tile, so where
// they come from and go to is worked out once per CTA. Rows linear in K (Rows::kLinearK:
// every layout but the shuffled one) keep 32-bit offsets from row 0, the chunk's column
// folded in: chunk i of k-tile k0 at data(0, kbyte(k0)) + 16 off16[i], its scale at
// scale_ptr(0, k0 / 32) + soff[i] (one multiply-add each; the launch checks that the
// offsets fit: moe.cuh, gemm_args_bad), which chunks have a row as one mask. (Holding
// 64-bit row addresses instead, the compiler, short of registers at two CTAs per SM,
// recomputed each from its row: ~40 instructions per 16-byte copy in the sm90 stage-1
// ring, cuobjdump, session 26.) The shuffled layout keeps each chunk's row handle.
template <class T, class InT, int ROWS, int BK, int NT, class Rows, class Order>
struct RingOperand : RingShape<T, ROWS, BK> {
  using Sh = RingShape<T, ROWS, BK>;
  using Op = typename Sh::Op;
  static constexpr int kCPR = Sh::kCPR, kChunks = Sh::kChunks;
  static constexpr int kSlots = (kChunks + NT - 1) / NT;
  static_assert(Op::kMx || IsSame<T, InT>::value, "16-bit operands are used as they are");
  static_assert(Op::kMx || Order::kNatural, "16-bit operands are copied as they are (natural K order)");
  static_assert(kSlots <= 32, "one bit per slot");
  // dequant_chunk's voted branch for the second multiply (H200, session 26: 0.97-1.00x the
  // stages' time against the predicated multiplies)
  static constexpr bool kHiBranch = true;
  static constexpr bool kOff = Rows::kLinearK;
  // Chunk i's byte offset in a stage (16-bit: its swizzled unit; MX: 16 bytes per chunk):
  // slot 0's plus i times a constant where NT is a multiple of 8 rows of chunks (a slot on
  // is NT / kCPR rows down, the same place in the swizzle's 8-row atom), one register.
  static constexpr bool kPlaceLinear = Op::kMx || (NT % kCPR == 0 && (NT / kCPR) % 8 == 0);
  static constexpr int kPlaceStep = Op::kMx ? 16 * NT : 2 * (NT / kCPR) * 64;

  Rows src;
  int kend;  // elements at or past kend are zero (K for 16-bit, Kp for MX; < 2^31)
  bool vec;  // 16-byte copies (aligned rows)
  uint32_t has;  // bit i: chunk i has a row (else zeros)
  int place_[kPlaceLinear ? 1 : kSlots];
  uint32_t off16[kOff ? kSlots : 1];          // data bytes from row 0's first / 16 (row 0's where none)
  uint32_t soff[kOff && Op::kMx ? kSlots : 1];  // (MX) scale bytes from row 0's first
  int row[kOff ? 1 : kSlots];                 // (not linear in K) the row handles

  MXF_DEV static bool in_tile(int i) { return kChunks % NT == 0 || dev::thread_x() + i * NT < kChunks; }
  MXF_DEV static int row_in_tile(int i) { return (dev::thread_x() + i * NT) / kCPR; }
  MXF_DEV static int k_in_tile(int i) { return ((dev::thread_x() + i * NT) % kCPR) * Op::kChunkElems; }
  MXF_DEV int place(int i) const { return kPlaceLinear ? place_[0] + i * kPlaceStep : place_[i]; }
  MXF_DEV bool has_row(int i) const { return (has >> i) & 1u; }
  // Chunk i's bytes and scale byte in k-tile k0 (a row of it: has_row(i)).
  MXF_DEV const uint8_t* data(int i, int k0) const {
    if constexpr (kOff) return dev::add_wide<16>(src.data(0, Op::kbyte(k0)), off16[i]);
    else return src.data(row[i], Op::kbyte(k0 + k_in_tile(i)));
  }
  MXF_DEV const uint8_t* scale(int i, int k0) const {
    if constexpr (kOff) return dev::add_wide<1>(src.scale_ptr(0, k0 / 32), soff[i]);
    else return src.scale_ptr(row[i], (k0 + k_in_tile(i)) / 32);
  }

  // rows_[c]: the row handle of tile row c (a shared array, or PlainRows). (By value: an
  // array decays to the pointer it always was; a reference to it changed the code of the
  // one-tile kernels.)
  template <class RowMap>
  MXF_DEV RingOperand(const Rows& r, RowMap rows_, int64_t kend_) : src(r), kend(int(kend_)), vec(r.vec_ok()), has(0u) {
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      const int rw = in_tile(i) ? rows_[row_in_tile(i)] : -1, rr = rw < 0 ? 0 : rw, kk = k_in_tile(i);
      has |= uint32_t(rw >= 0) << i;
      if (!kPlaceLinear || i == 0)
        place_[kPlaceLinear ? 0 : i] = Op::kMx ? 16 * (dev::thread_x() + i * NT) : 2 * sw128_off<ROWS>(row_in_tile(i), k_in_tile(i));
      if constexpr (kOff) {
        // (a multiple of 16 bytes where vec; opaque: held as 32 bits, not rebuilt from 64)
        off16[i] = dev::opaque(uint32_t((src.data(rr, Op::kbyte(kk)) - src.data(0, 0)) >> 4));
        if constexpr (Op::kMx) soff[i] = dev::opaque(uint32_t(src.scale_ptr(rr, kk / 32) - src.scale_ptr(0, 0)));
      } else {
        row[i] = rw;
      }
    }
  }

  // Start the copies of k-tile k0 into `stage`.
  MXF_DEV void issue(unsigned char* stage, int k0) const {
    const bool full = k0 + BK <= kend;  // every chunk inside K: 16 bytes, or none (no row)
    if (vec && full) {
#pragma unroll
      for (int i = 0; i < kSlots; ++i) {
        if (!in_tile(i)) continue;
        const bool h = has_row(i);
        dev::cp_async16(stage + place(i), data(i, k0), h ? 16 : 0);
        if constexpr (Op::kMx) copy_scale(stage, i, scale(i, k0), h);
      }
      return;
    }
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      if (!in_tile(i)) continue;
      const int k = k0 + k_in_tile(i);
      // bytes that exist: MX chunks never straddle kend (Kp is a multiple of 32)
      const int n = !has_row(i) ? 0 : Op::kMx ? (k < kend ? 16 : 0) : 2 * cmax(0, cmin(8, kend - k));
      const uint8_t* p = n > 0 ? data(i, k0) : src.data(0, 0);
      unsigned char* d = stage + place(i);
      if (vec) dev::cp_async16(d, p, n);
      else dev::st16(d, n > 0 ? load_bytes(p, n) : dev::zero16());
      if constexpr (Op::kMx) copy_scale(stage, i, n > 0 ? scale(i, k0) : src.scale_ptr(0, 0), n > 0);
    }
  }
  // The aligned word that holds chunk i's scale byte sp, copied up to that byte only (the
  // rest zero-filled): bytes past it may lie past the tensor's end, unwritten (compute-
  // sanitizer initcheck reported them while all 4 bytes were copied).
  MXF_DEV void copy_scale(unsigned char* stage, int i, const uint8_t* sp, bool h) const {
    const uintptr_t a = reinterpret_cast<uintptr_t>(sp);
    dev::cp_async4(stage + Sh::kRawBytes + place(i) / 4, reinterpret_cast<const void*>(a & ~uintptr_t(3)),
                   h ? int(a & 3) + 1 : 0);
  }

  // MX operands: this thread's chunks of `stage` (copies complete) -> the 16-bit tile.
  MXF_DEV void convert(const unsigned char* stage, uint16_t* tile, int k0) const {
    const bool full = k0 + BK <= kend;
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      if (!in_tile(i)) continue;
      const int kk = k_in_tile(i), k = k0 + kk;
      const Sw128Dst<ROWS> dst{tile, row_in_tile(i)};
      if (!has_row(i) || (!full && k >= kend)) {  // no data: zeros, no conversion
#pragma unroll
        for (int j = 0; j < Op::kChunkElems / 8; ++j) dev::st16(dst.at(kk + 8 * j), dev::zero16());
        continue;
      }
      const dev::Vec16 v = dev::ld16(stage + place(i));
      const uint32_t word = *reinterpret_cast<const uint32_t*>(stage + Sh::kRawBytes + place(i) / 4);
      // (the scale byte's place in the word copied: that of its address)
      const int byte = kOff ? int((uint32_t(reinterpret_cast<uintptr_t>(src.scale_ptr(0, k0 / 32))) + soff[i]) & 3u)
                            : int(reinterpret_cast<uintptr_t>(scale(i, k0)) & 3);
      dequant_chunk<typename Op::Elem, InT, Order, typename Rows::Bits, kHiBranch>(v, uint8_t(word >> (8 * byte)), dst, kk);
    }
  }
};

// A warpgroup MMA's fp32 accumulators (N / 2 per thread: m64nNk16) and what every main loop
// does to them: zero them, and keep the compiler from moving their reads and writes across
// the wgmma fences.
template <int N_>
struct WgmmaAcc {
  static constexpr int N = N_;
  float acc[N / 2];
  MXF_DEV void zero() {
#pragma unroll
    for (int i = 0; i < N / 2; ++i) acc[i] = 0.0f;
  }
  MXF_DEV void fence_acc() {
#pragma unroll
    for (int i = 0; i < N / 2; ++i) dev::reg_fence(acc[i]);
  }
};

template <class Tile, class InT>
struct WarpgroupMma : WgmmaAcc<Tile::WGN> {
  using WgmmaAcc<Tile::WGN>::N;
  using WgmmaAcc<Tile::WGN>::acc;

  MXF_DEV static int wg() { return dev::thread_x() / dev::kWarpgroupThreads; }
  MXF_DEV static int wg_m() { return wg() / Tile::kWgN; }
  MXF_DEV static int wg_n() { return wg() % Tile::kWgN; }
  // Issue (asynchronously) this warpgroup's MMAs of one k-tile: A and B swizzled tiles.
  // (One descriptor per operand and k-tile: step ks's start address is that of the k-tile
  // plus a constant, dev::desc_add.)
  MXF_DEV void run(const uint16_t* a, const uint16_t* b) {
    dev::wgmma_fence();
    const uint64_t da0 = dev::wgmma_desc_sw128(a + wg_m() * (64 * 64));
    const uint64_t db0 = dev::wgmma_desc_sw128(b + wg_n() * (N * 64));
#pragma unroll
    for (int ks = 0; ks < Tile::BK / 16; ++ks) {
      const int k = 16 * ks;  // elements: (k >> 6) column blocks of [rows][64], then k & 63
      const uint64_t da = dev::desc_add(da0, 2 * ((k >> 6) * (Tile::BM * 64) + (k & 63)) / 16);
      const uint64_t db = dev::desc_add(db0, 2 * ((k >> 6) * (Tile::BN * 64) + (k & 63)) / 16);
      dev::wgmma_m64k16<N, IsSame<InT, Bf16>::value>(acc, da, db);
    }
    dev::wgmma_commit();
  }
  // Accumulators -> fp32 staging tile [BM][kLdC] (after the main loop's last wait).
  MXF_DEV void stage(float* c) const {
    const int lane = dev::lane_id(), warp = (dev::thread_x() / 32) % 4;
    const int r0 = wg_m() * 64, c0 = wg_n() * N;
#pragma unroll
    for (int i = 0; i < N / 2; ++i)
      c[(r0 + dev::wgmma_acc_row(warp, lane, i)) * Tile::kLdC + c0 + dev::wgmma_acc_col(lane, i)] = acc[i];
  }
  // The sums leaving as 16-bit rows without the fp32 staging tile (moe.cuh, rows16_epilogue):
  // each warp's block of the CTA tile, kRows16 x kCols16 from (row16_0, col16_0), rounded
  // after f(row, col, v) -> float (tile coordinates), into its own region of shared memory
  // [kRows16][kPitch16 bytes] by stmatrix (the accumulators are in its fragment layout: one
  // instruction per 16 values). The 16-byte skew of the pitch puts a matrix's 8 row
  // addresses in distinct banks.
  static constexpr int kRows16 = Tile::kRows16, kCols16 = N, kPitch16 = Tile::kPitch16;
  MXF_DEV static int row16_0() { return wg_m() * 64 + 16 * ((dev::thread_x() / 32) % 4); }
  MXF_DEV static int col16_0() { return wg_n() * N; }
  template <class F>
  MXF_DEV void stage16(unsigned char* region, F&& f) const {
    const int lane = dev::lane_id(), r = row16_0() + (lane >> 2);
#pragma unroll
    for (int j = 0; j < N / 16; ++j) {  // column groups 2 j, 2 j + 1 of 8
      uint32_t q[4];
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // matrices 2 h, 2 h + 1: rows 0-7, 8-15 of group 2 j + h
        const int i = 4 * (2 * j + h), c = col16_0() + dev::wgmma_acc_col(lane, i);
        q[2 * h] = dev::pack_bf16x2(f(r, c, acc[i]), f(r, c + 1, acc[i + 1]));
        q[2 * h + 1] = dev::pack_bf16x2(f(r + 8, c, acc[i + 2]), f(r + 8, c + 1, acc[i + 3]));
      }
      dev::stmatrix_x4<false>(region + ((lane & 7) + 8 * ((lane >> 3) & 1)) * kPitch16 + 16 * (2 * j + (lane >> 4)), q);
    }
  }
};

// The main loop of a WgmmaTile over k-tiles [kt0, kt1): `smem` 1024-byte aligned, holding
// [converted A tiles][converted B tiles][ring of kStages x (A part, B part)]. Ends with the
// MMAs complete and a barrier, so shared memory is free for the epilogue.
template <class Tile, class InT, class AOp, class BOp>
MXF_DEV void gemm_mainloop_wgmma(WarpgroupMma<Tile, InT>& mma, const AOp& a, const BOp& b,
                                 unsigned char* smem, int kt0, int kt1) {
  constexpr int R = Tile::kStages, BK = Tile::BK;
  static_assert(R >= 3, "the ring keeps kStages - 1 k-tiles of copies in flight");
  uint16_t* const conv_a = reinterpret_cast<uint16_t*>(smem);
  uint16_t* const conv_b = reinterpret_cast<uint16_t*>(smem + AOp::kConvBytes);
  unsigned char* const ring = smem + Tile::kConvBytes;
  const int n = kt1 - kt0;
  if (n <= 0) return;
  auto issue = [&](int i) {
    unsigned char* st = ring + (i % R) * Tile::kStageBytes;
    a.issue(st, (kt0 + i) * BK);
    b.issue(st + AOp::kStageBytes, (kt0 + i) * BK);
  };
#pragma unroll
  for (int d = 0; d < R - 1; ++d) {
    if (d < n) issue(d);
    dev::cp_async_commit();  // (one group per k-tile, empty or not: the wait counts stay exact)
  }
  mma.fence_acc();
  for (int i = 0; i < n; ++i) {
    const unsigned char* st = ring + (i % R) * Tile::kStageBytes;
    const int k0 = (kt0 + i) * BK;
    dev::cp_async_wait<R - 2>();  // this thread's copies of k-tile i are complete
    const uint16_t* ta = reinterpret_cast<const uint16_t*>(st);
    const uint16_t* tb = reinterpret_cast<const uint16_t*>(st + AOp::kStageBytes);
    if constexpr (AOp::kMx) {
      uint16_t* t = conv_a + (i % 2) * (AOp::kTileBytes / 2);
      a.convert(st, t, k0);
      ta = t;
    }
    if constexpr (BOp::kMx) {
      uint16_t* t = conv_b + (i % 2) * (BOp::kTileBytes / 2);
      b.convert(st + AOp::kStageBytes, t, k0);
      tb = t;
    }
    dev::fence_proxy_async();
    dev::wgmma_wait<0>();  // this warpgroup's MMAs of i - 1 are complete
    dev::sync_threads();   // "converted"
    if (i + R - 1 < n) issue(i + R - 1);
    dev::cp_async_commit();
    mma.run(ta, tb);
  }
  dev::wgmma_wait<0>();
  mma.fence_acc();
  dev::cp_async_wait<0>();
  dev::sync_threads();
}

// Stage 2's N loop on a WgmmaTile (N_LOOP): output tiles 0 .. ntiles - 1 of one block, one
// after another, over the KT k-tiles of K each. `smem` (1024-byte aligned) holds
// [A: KT resident tiles][conversion area][ring of weight stages]. A is copied once (16-bit:
// straight into its resident tiles; MX: its raw k-tiles into the conversion area, then
// converted by the threads that copied them); the weights run through the ring as one
// sequence f = t * KT + kt whose copies run ahead across tiles, b_of(t) being tile t's
// RingOperand. After tile t's last MMAs each warpgroup waits for its MMAs, a barrier, then
// epi(t, conversion area), then a barrier: the area is free between the two, so the
// epilogue may use it as scratch (rows16_epilogue's warp regions). The hazards of the ring
// and the conversion tiles are gemm_mainloop_wgmma's (one barrier per k-tile), its copies
// kStages - 2 k-tiles ahead (kStages - 1, as there, spilled 4 bytes in the block_m 128
// bf16-activation instances). Ends with the copies complete and a barrier.
template <class Tile, class InT, class AOp, class BOf, class Epi>
MXF_DEV void gemm_mainloop_wgmma_tiles(WarpgroupMma<Tile, InT>& mma, const AOp& a, const BOf& b_of,
                                       unsigned char* smem, int KT, int ntiles, Epi&& epi) {
  using BOp = decltype(b_of(0));
  constexpr int R = Tile::kLoopStages, BK = Tile::BK;
  static_assert(R >= 3, "the ring keeps kLoopStages - 2 k-tiles of copies in flight");
  uint16_t* const res_a = reinterpret_cast<uint16_t*>(smem);
  unsigned char* const conv = smem + Tile::kResKTiles * AOp::kTileBytes;
  uint16_t* const conv_b = reinterpret_cast<uint16_t*>(conv);
  unsigned char* const ring = conv + Tile::kLoopConvBytes;
  const int n = KT * ntiles;
  if (n <= 0) return;
  for (int kt = 0; kt < KT; ++kt)
    a.issue(AOp::kMx ? conv + kt * AOp::kStageBytes : smem + kt * AOp::kTileBytes, kt * BK);
  dev::cp_async_commit();  // (the oldest group)
  // Weight k-tile g (tile gt, k-tile gk of it) into its stage; then g, gt, gk move on by one.
  int g = 0, gt = 0, gk = 0;
  auto issue_next = [&] {
    if (g < n) b_of(gt).issue(ring + (g % R) * BOp::kStageBytes, gk * BK);
    dev::cp_async_commit();  // (one group per k-tile, empty or not: the wait counts stay exact)
    ++g;
    if (++gk == KT) gk = 0, ++gt;
  };
#pragma unroll
  for (int d = 0; d < R - 2; ++d) issue_next();
  dev::cp_async_wait<R - 2>();  // this thread's copies of A are complete
  if constexpr (AOp::kMx) {
    for (int kt = 0; kt < KT; ++kt) a.convert(conv + kt * AOp::kStageBytes, res_a + kt * (AOp::kTileBytes / 2), kt * BK);
    dev::sync_threads();  // every raw k-tile of A read: the weights' conversions may overwrite the area
  }
  // (A is complete for the MMAs after the first "converted" barrier, each thread's writes
  // fenced before it)
  mma.fence_acc();
  for (int t = 0, f = 0; t < ntiles; ++t) {
    const BOp b = b_of(t);  // (its conversions')
    for (int kt = 0; kt < KT; ++kt, ++f) {
      const unsigned char* st = ring + (f % R) * BOp::kStageBytes;
      dev::cp_async_wait<R - 3>();  // this thread's copies of weight k-tile f are complete
      uint16_t* const tb = conv_b + (f % 2) * (BOp::kTileBytes / 2);
      b.convert(st, tb, kt * BK);
      dev::fence_proxy_async();
      dev::wgmma_wait<0>();  // this warpgroup's MMAs of k-tile f - 1 are complete
      dev::sync_threads();   // "converted"
      issue_next();          // (k-tile f + R - 2)
      mma.run(res_a + kt * (AOp::kTileBytes / 2), tb);
    }
    dev::wgmma_wait<0>();
    mma.fence_acc();
    dev::sync_threads();  // every warpgroup's MMAs of tile t are complete: the area is free
    epi(t, conv);
    dev::sync_threads();  // ... until every warp's epilogue is done with it
    mma.zero();
    mma.fence_acc();
  }
  dev::cp_async_wait<0>();
  dev::sync_threads();
}

template <class Arch, class AT, int BM_, int BN_, int BK_, int WSTAGES>
struct WgmmaRegsTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static_assert((BM == 16 || BM == 32 || BM == 64 || BM == 128) && BN == 128 && BK == 128,
                "wgmma_regs tile: block_m 16, 32, 64 or 128 (the MMA's N), block_n 128 (two warpgroups "
                "of 64 weight rows), block_k 128 (one k group of the RegK order)");
  static constexpr int kThreads = 2 * dev::kWarpgroupThreads;
  static constexpr int kWarpRows = 16;  // weight rows per warp: its slice of the warpgroup's 64
  static constexpr int kWStages = WSTAGES;
  // Registers: BM / 2 accumulators, 32 fragment registers per copy of the k-tile loop, 10
  // per weight stage, the activation items' loads. block_m 64: two CTAs per SM (<= 128
  // registers, with one weight stage: MoeSpec); block_m 128: one (~250 registers; with two
  // stages at 128 registers the block_m 64 tile spilled ~1 KB); block_m 16 / 32 (the
  // middle T, 8 to 32 rows per expert, where the MMA's N is the block's few tokens): two,
  // with one weight stage too (8 / 16 accumulators, but two stages spilled 216-408 bytes).
  static constexpr int kCtasPerSm = BM <= 64 ? 2 : 1;
  static constexpr int kActBufs = 3;
  static constexpr int kActBytes = BM * BK * 2;  // one k-tile of activations, swizzled bf16
  static constexpr int kLdC = BN + 8;            // fp32 staging pitch (the epilogues')
  static constexpr int kSmemC = BM * kLdC * 4;
  static constexpr int kSmemA = 0;  // (the main loop carves its own buffers)
  // + 1024: the dynamic shared memory base is aligned up to the swizzle atom at run time.
  static constexpr int kSmem = 1024 + cmax(kActBufs * kActBytes, kSmemC);
};

// The activations of one k-tile (128 K, RegK blocks j = 0..3 of 32) in the K order of the
// tile's A fragments: m16n8k16 step s = 2 v + t of the k-tile takes, in its columns
// 8 h + 2 j + {0, 1}, pair i = 2 t + h (elements 8 v + i and 8 v + i + 4) of block j, so
// the 16-byte unit u = 4 v + i of a token's row holds pair i of word v of blocks 0..3 (one
// 32-bit slot each). Item (row r, word v): the four chunks (16-bit: 8 elements; MX: the
// word of 8 codes and its block's scale) of v in blocks 0..3 -> units 4 v .. 4 v + 3 (a
// 4 x 4 transpose of 32-bit pairs, free in registers), written to the swizzled tile
// [2][BM][64] (sw128_off). BM * 4 items: whole items per thread (block_m 64, 128), or, with
// fewer items than threads (block_m 16, 32), each item's blocks shared out over kGroups
// threads in different warpgroups (kBlocks each: their 32-bit slots of the units), so that
// every warp stages a k-tile's activations, not the first warps alone (with them alone the
// other warpgroup waited at each k-tile's barrier: 26 % of the stall samples of MiniMax's
// block_m 32 stage 1 at T = 512, Nsight Compute, session 30). A quad of threads reads 64
// contiguous bytes of a 16-bit row per block. Missing rows and K at or past kend are zeros.
template <class AT, int BM, int NT>
struct WgmmaRegsAct {
  using Op = Operand<AT>;
  static_assert(IsSame<AT, Bf16>::value || IsSame<AT, Fp4Mx>::value, "wgmma_regs: bf16 or pk_fp4 activations");
  static constexpr int kAllItems = BM * 4;
  static_assert(kAllItems % NT == 0 || (NT % kAllItems == 0 && NT / kAllItems <= 4),
                "whole items per thread, or an item's blocks over 2 or 4 threads");
  static constexpr int kGroups = kAllItems >= NT ? 1 : NT / kAllItems;  // threads per item
  static constexpr int kBlocks = 4 / kGroups;                           // blocks per thread and item
  static constexpr int kItems = kGroups > 1 ? 1 : kAllItems / NT;
  // Only what the loads need (a 16-bit item's two k-tiles of row pointers and bounds;
  // with the GatherRows itself live too, the block_m 64 stage-1 tiles spilled).
  int kend;  // elements at or past it are zero (K or Kp, < 2^31)
  bool vec;
  int j0;    // this thread's first block of its items (0 with whole items)
  int row[kItems];
  const uint8_t* rowp[kItems];   // the item's data of block j0 at K 0 (row 0's where the row is missing)
  const uint8_t* srowp[kItems];  // (MX) its row's scale of block j0
  dev::Vec16 d[kItems][kBlocks];  // 16-bit: chunk j0 + jj of the item; MX: word (x) and scale (y) of that block
  MXF_DEV static int item(int u) { return (kGroups > 1 ? dev::thread_x() % kAllItems : dev::thread_x()) + u * NT; }
  MXF_DEV static int item_row(int u) { return item(u) >> 2; }
  MXF_DEV static int item_v(int u) { return item(u) & 3; }

  MXF_DEV WgmmaRegsAct(const GatherRows& src, const int* arow, int64_t kend_)
      : kend(int(kend_)), vec(src.vec_ok()), j0(kGroups > 1 ? dev::thread_x() / kAllItems * kBlocks : 0) {
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      row[u] = arow[item_row(u)];
      rowp[u] = src.data(row[u] < 0 ? 0 : row[u], Op::kbyte(8 * item_v(u) + 32 * j0));
      srowp[u] = Op::kMx ? src.scale_ptr(row[u] < 0 ? 0 : row[u], j0) : nullptr;
    }
  }
  // Loads of the k-tile at k0 into registers: plain loads where the row exists, the rows
  // are aligned and the k-tile ends inside K (prefill: all but the last k-tile and the
  // block's missing rows), else guarded chunk by chunk. This thread's blocks [J0, J0 + NJ)
  // only (of its kBlocks): the 16-bit tiles of two CTAs per SM with whole items take a
  // k-tile in two parts of two blocks (store below: 8 registers live at a time instead of
  // 16; gemm_mainloop_wgmma_regs).
  template <int J0 = 0, int NJ = kBlocks>
  MXF_DEV void load(int k0) {
    const bool inside = vec && k0 + 128 <= kend;
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      if (inside && row[u] >= 0) {
        const uint8_t* p = rowp[u] + Op::kbyte(k0);
#pragma unroll
        for (int j = J0; j < J0 + NJ; ++j) {
          if constexpr (Op::kMx) {
            d[u][j].x = *reinterpret_cast<const uint32_t*>(p + Op::kbyte(32 * j));
            d[u][j].y = srowp[u][k0 / 32 + j];
          } else {
            d[u][j] = dev::ld16_ro(p + Op::kbyte(32 * j));
          }
        }
        continue;
      }
#pragma unroll
      for (int j = J0; j < J0 + NJ; ++j) {
        const int kj = k0 + 32 * (j0 + j), k = kj + 8 * item_v(u);
        d[u][j] = dev::zero16();
        if constexpr (Op::kMx) d[u][j].y = 127;
        if (row[u] < 0 || k >= kend) continue;
        const uint8_t* p = rowp[u] + Op::kbyte(k0 + 32 * j);
        if constexpr (Op::kMx) {  // (kend is a multiple of 32: a block is all in or all out)
          d[u][j].x = vec ? *reinterpret_cast<const uint32_t*>(p) : load_bytes(p, 4).x;
          d[u][j].y = srowp[u][k0 / 32 + j];
        } else {
          d[u][j] = (vec && k + 8 <= kend) ? dev::ld16_ro(p) : load_units<uint16_t>(p, cmin(8, kend - k));
        }
      }
    }
  }
  // The k-tile at k0 into L2 only: per row, the quad's lanes v = 0, 1 of the threads with
  // block 0 take its two 128-byte lines of 16-bit data, or (MX) its data line and its
  // scales' line.
  MXF_DEV void prefetch(int k0) const {
    if (!vec || k0 + 128 > kend || j0 != 0) return;
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      const int v = item_v(u);
      if (row[u] < 0 || v > 1) continue;
      if constexpr (Op::kMx) dev::prefetch_l2(v == 0 ? rowp[u] - Op::kbyte(8 * v) + Op::kbyte(k0) : srowp[u] + k0 / 32);
      else dev::prefetch_l2(rowp[u] - Op::kbyte(8 * v) + Op::kbyte(k0) + 128 * v);
    }
  }
  // ... and from registers into the swizzled tile at shared address `buf` ([2][BM][64]
  // 16-bit): this thread's blocks [J0, J0 + NJ) (as loaded), bytes 4 (j0 + J0) ..
  // 4 (j0 + J0 + NJ) of each unit.
  template <int J0 = 0, int NJ = kBlocks>
  MXF_DEV void store(uint32_t buf) const {
    static_assert(J0 + NJ <= kBlocks && (NJ == 4 || NJ == 2 || NJ == 1), "this thread's blocks, 4, 2 or 1 of them");
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      uint32_t p[4][4];  // p[j][i]: pair i of this thread's block j
#pragma unroll
      for (int j = J0; j < J0 + NJ; ++j) {
        if constexpr (Op::kMx) {
          e2m1_word_pairs_bf16x2<NaturalBits>(d[u][j].x, e2m1_pair_scale(d[u][j].y), p[j]);
        } else {
          const dev::Vec16 a = RegK::arrange(d[u][j]);
          p[j][0] = a.x, p[j][1] = a.y, p[j][2] = a.z, p[j][3] = a.w;
        }
      }
      const int r = item_row(u), v = item_v(u);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t at = buf + 2 * sw128_off<BM>(r, 8 * (4 * v + i)) + 4 * (j0 + J0);
        if constexpr (NJ == 4) dev::sts16(at, dev::Vec16{p[0][i], p[1][i], p[2][i], p[3][i]});
        else if constexpr (NJ == 2) dev::sts8(at, p[J0][i], p[J0 + 1][i]);
        else dev::sts4(at, p[J0][i]);
      }
    }
  }
};

template <class Tile>
struct WgmmaRegsMma : WgmmaAcc<Tile::BM> {  // (the MMA's N: the block's tokens)
  using WgmmaAcc<Tile::BM>::N;
  using WgmmaAcc<Tile::BM>::acc;

  MXF_DEV static int warp_row0() { return dev::warp_id() * Tile::kWarpRows; }  // this warp's first weight row
  // Words 2 hh and 2 hh + 1 of this lane's weight stage -> the A fragments of steps
  // 4 hh .. 4 hh + 3 (rows g: ni 0, g + 8: ni 1), exactly (the second multiply where a
  // scale needs it, E2m1PairScale: a per-lane branch that joins before the MMAs).
  template <class Stage>
  MXF_DEV static void convert(const Stage& st, int hh, uint32_t (&a)[4][4]) {
    E2m1PairScale ks[2];
    bool any_hi = false;
#pragma unroll
    for (int ni = 0; ni < 2; ++ni) {
      ks[ni] = e2m1_pair_scale(st.s[ni][0]);
      any_hi |= ks[ni].hi_needed;
    }
#pragma unroll
    for (int vv = 0; vv < 2; ++vv) {
      const int v = 2 * hh + vv;
      uint32_t fw[2][4];
#pragma unroll
      for (int ni = 0; ni < 2; ++ni) {
        const dev::Vec16& w = st.v[ni][0];
        e2m1_word_pairs_lo<typename Stage::Bits>(v == 0 ? w.x : v == 1 ? w.y : v == 2 ? w.z : w.w, ks[ni], fw[ni]);
      }
      if (any_hi) {
#pragma unroll
        for (int ni = 0; ni < 2; ++ni)
#pragma unroll
          for (int i = 0; i < 4; ++i) fw[ni][i] = dev::mul_bf16x2(fw[ni][i], ks[ni].hi);
      }
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        a[2 * vv + t][0] = fw[0][2 * t];
        a[2 * vv + t][1] = fw[1][2 * t];
        a[2 * vv + t][2] = fw[0][2 * t + 1];
        a[2 * vv + t][3] = fw[1][2 * t + 1];
      }
    }
  }
  // Issue (asynchronously) the MMAs of half hh of a k-tile: steps 4 hh .. 4 hh + 3, B from
  // the swizzled activation tile `act` ([2][BM][64]: columns 16 s .. 16 s + 15).
  MXF_DEV void run_half(const uint32_t (&a)[4][4], const uint16_t* act, int hh) {
    dev::wgmma_fence();
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int k = 16 * (4 * hh + s);
      dev::wgmma_m64k16_rs<N>(acc, a[s], dev::wgmma_desc_sw128(act + (k >> 6) * (N * 64) + (k & 63)));
    }
    dev::wgmma_commit();
  }
  // Accumulators -> fp32 staging tile [BM][kLdC] (row = token, column = weight row of the
  // tile), after the main loop's last wait.
  MXF_DEV void stage(float* c) const {
    const int lane = dev::lane_id(), warp = dev::warp_id();
#pragma unroll
    for (int i = 0; i < N / 2; ++i)
      c[dev::wgmma_acc_col(lane, i) * Tile::kLdC + 64 * (warp / 4) + dev::wgmma_acc_row(warp % 4, lane, i)] = acc[i];
  }
  // As WarpgroupMma::stage16, transposed: a warp's block is every token (the MMA's N) of
  // its 16 weight rows (output columns), and a fragment pair is two tokens of one column,
  // so stmatrix stores each matrix transposed (rows = tokens, 16 bytes = 8 columns).
  static constexpr int kRows16 = Tile::BM, kCols16 = 16, kPitch16 = 48;
  MXF_DEV static int row16_0() { return 0; }
  MXF_DEV static int col16_0() { return 64 * (dev::warp_id() / 4) + 16 * (dev::warp_id() % 4); }
  template <class F>
  MXF_DEV void stage16(unsigned char* region, F&& f) const {
    const int lane = dev::lane_id(), c = col16_0() + (lane >> 2);
#pragma unroll
    for (int j = 0; j < N / 16; ++j) {  // token groups 2 j, 2 j + 1 of 8
      uint32_t q[4];
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // matrices 2 h, 2 h + 1: columns 0-7, 8-15 of group 2 j + h
        const int i = 4 * (2 * j + h), t = dev::wgmma_acc_col(lane, i);
        q[2 * h] = dev::pack_bf16x2(f(t, c, acc[i]), f(t + 1, c, acc[i + 1]));
        q[2 * h + 1] = dev::pack_bf16x2(f(t, c + 8, acc[i + 2]), f(t + 1, c + 8, acc[i + 3]));
      }
      dev::stmatrix_x4<true>(region + (8 * (2 * j + (lane >> 4)) + (lane & 7)) * kPitch16 + 16 * ((lane >> 3) & 1), q);
    }
  }
};

// The main loop of a WgmmaRegsTile over k-tiles [kt0, kt1): `smem` 1024-byte aligned (the
// three activation buffers). Per k-tile i (weight stage i % kStages, buffer i % 3): load
// the next k-tile's activations into registers; [wait: at most one MMA group in flight]
// convert half 0 of the weights, issue its MMAs; [wait] convert half 1, issue; store the
// next activations into buffer (i + 1) % 3 and fence; refill the weight stage kStages
// k-tiles ahead (and L2 a further kStages); barrier.
// Hazards: fragment half h is rewritten after the wait that follows the issue of the other
// half, i.e. once its previous MMAs (k-tile i - 1) are complete. Buffer (i + 1) % 3 was
// last read by the MMAs of k-tile i - 2, which each warpgroup waited for (before its
// half 1 of k-tile i - 1) ahead of the barrier that ended k-tile i - 1; the barrier at the
// end of k-tile i (after each writer's proxy fence) makes buffer (i + 1) % 3 complete for
// the MMAs of i + 1. Ends with the MMAs complete and a barrier (shared memory is free).
template <class AT, class Tile, class WRegs>
MXF_DEV void gemm_mainloop_wgmma_regs(WgmmaRegsMma<Tile>& mma, const GatherRows& act, const int* arow,
                                      int64_t akend, const WRegs& wl, unsigned char* smem, int kt0, int kt1) {
  constexpr int S = WRegs::kStages, BK = Tile::BK, BUF = Tile::BM * BK;
  constexpr int kActAhead = 3;  // k-tiles of activations fetched into L2 ahead of their loads
  using Act = WgmmaRegsAct<AT, Tile::BM, Tile::kThreads>;
  constexpr bool kLateAct = Tile::kCtasPerSm > 1 && !Operand<AT>::kMx && Act::kBlocks == 4;  // (below)
  const int n = kt1 - kt0;
  if (n <= 0) return;
  uint16_t* const bufs = reinterpret_cast<uint16_t*>(smem);
  typename WRegs::Stage st[S];
#pragma unroll
  for (int d = 0; d < S; ++d)
    if (d < n) wl.load(st[d], int64_t(kt0 + d) * BK, 0);
#pragma unroll
  for (int d = S; d < 2 * S; ++d)  // (the next ones into L2: each refill prefetches S further)
    if (d < n) wl.prefetch(int64_t(kt0 + d) * BK, 0);
  Act xa(act, arow, akend);
#pragma unroll
  for (int d = 1; d < kActAhead; ++d)
    if (!kLateAct && d < n) xa.prefetch((kt0 + d) * BK);
  xa.load(kt0 * BK);
  xa.store(dev::smem_addr(bufs));
  dev::fence_proxy_async();
  dev::sync_threads();
  mma.fence_acc();
  uint32_t frag[2][4][4];
  for (int r = 0; r < n; r += S) {
#pragma unroll
    for (int d = 0; d < S; ++d) {
      const int i = r + d;
      if (i >= n) break;  // (uniform for the CTA)
      const uint16_t* buf = bufs + (i % 3) * BUF;
      const int64_t k0 = int64_t(kt0 + i) * BK;
      const bool more = i + 1 < n;
      // The next k-tile's activations: loaded a whole k-tile ahead of their store; or,
      // where their registers would not fit beside the fragments (two CTAs per SM with
      // 16-bit activations: 16 registers per lane; the block_m 64 stage-1 tiles spilled
      // 8-40 bytes), in two parts without the L2 prefetch: blocks 2-3 loaded here and
      // stored after half 0's MMAs are issued, blocks 0-1 loaded then and stored after
      // half 1's (8 registers live beside each half's fragments). Buffer (i + 1) % 3 is
      // free for the whole k-tile (hazards above).
      const uint32_t next = dev::smem_addr(bufs) + 2 * ((i + 1) % 3) * BUF;
      if (more) {
        if constexpr (kLateAct) xa.template load<2, 2>(int(k0) + BK);
        else xa.load(int(k0) + BK);
      }
      dev::wgmma_wait<1>();
      WgmmaRegsMma<Tile>::convert(st[d], 0, frag[0]);
      mma.run_half(frag[0], buf, 0);
      if constexpr (kLateAct) {
        if (more) {
          xa.template store<2, 2>(next);
          xa.template load<0, 2>(int(k0) + BK);
        }
      }
      dev::wgmma_wait<1>();
      WgmmaRegsMma<Tile>::convert(st[d], 1, frag[1]);
      mma.run_half(frag[1], buf, 1);
      if (more) {
        if constexpr (kLateAct) xa.template store<0, 2>(next);
        else xa.store(next);
        dev::fence_proxy_async();
      }
      // New loads only after the fence (MEMBAR.ALL.CTA + FENCE.VIEW.ASYNC.S in SASS, which
      // may wait for this thread's loads in flight; with the refill before it the block_m
      // 128 stage 1 took 1.05x as long, H200).
      if (i + S < n) wl.load(st[d], k0 + S * BK, 0, i + 2 * S < n ? int64_t(S) * BK : int64_t(0));
      if (!kLateAct && i + kActAhead < n) xa.prefetch(int(k0) + kActAhead * BK);
      dev::sync_threads();
    }
  }
  dev::wgmma_wait<0>();
  mma.fence_acc();
  dev::sync_threads();
}
#endif  // MXF_HAS_WGMMA

}  // namespace gpu
}  // namespace mxf
