// The device layer: everything a GPU kernel of mxforge needs from the vendor toolchain,
// behind one small API in namespace mxf::dev. Kernel sources (csrc/mxforge/gpu/*.cuh and
// the templates in templates/gpu/) are written in a "HIP dialect" against this header
// only, so the same source compiles with nvcc for sm90 and with clang in HIP mode for
// gfx942/gfx950.
//
//   CUDA (nvcc, __CUDACC__)  : intrinsics and inline PTX; host helpers (streams, launch,
//                              error -> Status, dynamic shared memory opt-in).
//   AMD  (device_amd.h)      : an AMD instance's source is compiled twice:
//        clang -x hip --cuda-device-only -nogpuinc (__HIP__): the kernels, from clang
//                              builtins only (no HIP headers), into a code object;
//        g++ -DMXF_HIP_HOST   : the host launchers (argument checks, grids, plans), which
//                              launch the embedded code object's kernels by name through
//                              the module's HIP loader (hip_loader.h, csrc/targets/amd.cpp).
//
// What lives here and nowhere else: thread/block ids, barriers, warp shuffles and
// ballots, 16-byte vector memory access, atomics (fp32, int, bf16 and bf16x2 adds),
// float -> bf16x2 / f16x2 packing, and the per-arch MMA atoms (MmaAtom<Arch, InT>) with
// the per-arch choice of MMA inputs (MmaInput<Arch, A, B>). A "warp" is the vendor's
// SIMD group: 32 lanes on NVIDIA, a 64-lane wavefront on AMD (dev::kWarpSize).
// e2m1 / e4m3 / e8m0 / bf16 conversions are in numerics.h (host and device).
#pragma once
#include <stdint.h>

#include "mxforge/numerics.h"
#include "mxforge/registry.h"
#include "mxforge/types.h"

#include "mxforge/mma_input.h"

// ======================================================================================
#if defined(__CUDACC__)  // ---------------------------------------------- NVIDIA (nvcc)
// ======================================================================================
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <vector>

#define MXF_DEV __device__ __forceinline__
// A device function kept out of line: rarely run code whose registers and instructions
// should not weigh on the kernel that calls it (static: one copy per object; pass scalars, not a kernel parameter's
// address, which would put the parameter in local memory).
#define MXF_DEV_NOINLINE static __device__ __noinline__
#define MXF_KERNEL __global__
#define MXF_LAUNCH_BOUNDS(threads) __launch_bounds__(threads)
// ... and at least `ctas` CTAs per SM (1: all registers may go to one CTA; for kernels
// whose shared memory already limits them to one CTA per SM).
#define MXF_LAUNCH_BOUNDS_MIN(threads, ctas) __launch_bounds__(threads, ctas)
#define MXF_HOST_LAUNCH 1  // host launch helpers below (streams, launch, Status)

// Dynamic shared memory of a kernel (one per kernel; size given at launch).
#define MXF_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]

namespace mxf {
namespace dev {

constexpr int kWarpSize = 32;
using LaneMask = uint32_t;  // one bit per lane of a warp

MXF_DEV int thread_x() { return int(threadIdx.x); }
MXF_DEV int block_x() { return int(blockIdx.x); }
MXF_DEV int block_y() { return int(blockIdx.y); }
MXF_DEV int block_z() { return int(blockIdx.z); }
MXF_DEV int block_dim_x() { return int(blockDim.x); }
MXF_DEV int grid_dim_x() { return int(gridDim.x); }
MXF_DEV int grid_dim_y() { return int(gridDim.y); }
MXF_DEV int grid_dim_z() { return int(gridDim.z); }
MXF_DEV int lane_id() { return int(threadIdx.x) & (kWarpSize - 1); }
MXF_DEV int warp_id() { return int(threadIdx.x) / kWarpSize; }

MXF_DEV void sync_threads() { __syncthreads(); }
// Every thread of every CTA of the thread block cluster: a barrier whose release / acquire
// orders shared-memory writes before it with reads by any CTA of the cluster after it.
MXF_DEV void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// The address of `p` (this CTA's shared memory) in the CTA of cluster rank `rank`, as a
// generic pointer: plain loads through it read that CTA's shared memory.
MXF_DEV const float* cluster_peer(const float* p, int rank) {
  uint64_t out;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(out) : "l"(reinterpret_cast<uint64_t>(p)), "r"(rank));
  return reinterpret_cast<const float*>(out);
}
// Programmatic dependent launch (sm_90; allowed per op, mxforge.ops.dependent_launch;
// launch_cluster below): the next kernel on the stream may start its CTAs before this one ends,
// once every CTA of this one has called launch_dependents (or exited). So every kernel calls
// wait_prior_grids before its first global memory access: it returns once the kernels before it
// have finished and their memory is visible to this grid. No read goes before it, not even of
// data written two kernels back: a first version's stage 2 read its routes before the wait and
// gave wrong results on an H200 (benchmarks/README.md, 2026-11-30 session 11);
// scripts/check_sass.py fails any global access before the wait in SASS. Where
// launch_dependents goes decides the overlap: small kernels call it right after the wait; the
// GEMMs after their main loop, so the next kernel's CTAs land on SMs as this one's finish
// (spread over the SMs, not piled onto the few idle at its start, which measured slower).
// Without the launch attribute both instructions do nothing.
MXF_DEV void wait_prior_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
MXF_DEV void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// Sleep at least `ns` nanoseconds (by the global timer): the tests' delay hook
// (MoeGemmArgs::test_delay_ns) that widens the window of a missing wait_prior_grids.
MXF_DEV void sleep_ns(unsigned ns) {
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(256);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}
// Orders shared-memory accesses among the lanes of a warp (independent thread scheduling
// means lanes of one warp are not implicitly in lock step on Volta and later).
MXF_DEV void sync_warp() { __syncwarp(); }

MXF_DEV int shfl_xor(int v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
MXF_DEV float shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
MXF_DEV uint32_t shfl_xor(uint32_t v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
MXF_DEV int shfl_down(int v, int d) { return __shfl_down_sync(0xffffffffu, v, d); }
MXF_DEV float shfl_down(float v, int d) { return __shfl_down_sync(0xffffffffu, v, d); }
MXF_DEV int shfl_up(int v, int d) { return __shfl_up_sync(0xffffffffu, v, d); }  // lane < d: own v
MXF_DEV int shfl(int v, int src) { return __shfl_sync(0xffffffffu, v, src); }

// Every lane of the warp must call ballot (it is a warp-wide vote).
MXF_DEV LaneMask ballot(bool p) { return __ballot_sync(0xffffffffu, p); }
MXF_DEV int popc(LaneMask m) { return __popc(m); }
MXF_DEV int lowest_lane(LaneMask m) { return __ffs(m) - 1; }  // m != 0
MXF_DEV LaneMask lanes_below() { return (1u << lane_id()) - 1u; }

// ---- memory -------------------------------------------------------------------------
struct alignas(16) Vec16 {  // 16 bytes, the unit of vector loads and stores
  uint32_t x, y, z, w;
};
MXF_DEV Vec16 zero16() { return Vec16{0u, 0u, 0u, 0u}; }
MXF_DEV Vec16 ld16(const void* p) { return *static_cast<const Vec16*>(p); }  // 16-B aligned
MXF_DEV void st16(void* p, const Vec16& v) { *static_cast<Vec16*>(p) = v; }
// Global memory through the read-only (non-coherent) cache: only for data that nothing
// writes while the kernel runs (the GEMM operands). 16-B aligned.
MXF_DEV Vec16 ld16_ro(const void* p) {
  Vec16 v;
  asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}
// Bring the cache line holding p into L2 (no register written, nothing waits for it): the
// swapped decode tile fetches its weights a round of k-tiles further ahead than its
// register stages reach. p must lie inside the operand's allocation.
MXF_DEV void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// ---- atomics ------------------------------------------------------------------------
MXF_DEV void atomic_add(float* p, float v) { atomicAdd(p, v); }
MXF_DEV void atomic_add(int* p, int v) { atomicAdd(p, v); }
// bf16 adds (sm_90: red.global.add.noftz.bf16 / .bf16x2); each add rounds to bf16.
MXF_DEV void atomic_add_bf16x2(uint16_t* p, uint32_t packed_lo_hi) {  // p 4-byte aligned
  asm volatile("red.global.add.noftz.bf16x2 [%0], %1;" ::"l"(p), "r"(packed_lo_hi) : "memory");
}
MXF_DEV void atomic_add_bf16(uint16_t* p, uint16_t v) {
  asm volatile("red.global.add.noftz.bf16 [%0], %1;" ::"l"(p), "h"(v) : "memory");
}
// Eight bf16 adds in one 16-byte reduction (red.global.add.noftz.v4.bf16x2: one REDG.BF16x8,
// a quarter of the L2 atomic operations of four bf16x2 adds); p 16-byte aligned.
MXF_DEV void atomic_add_bf16x8(uint16_t* p, const Vec16& v) {
  asm volatile("red.global.add.noftz.v4.bf16x2 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z),
               "r"(v.w)
               : "memory");
}

// ---- conversions --------------------------------------------------------------------
// Two fp32 -> one 32-bit word of two 16-bit floats, round to nearest even (the same
// rounding as mxf::f32_to_bf16 / f32_to_f16 except NaN payloads); `lo` is the element at
// the lower address.
MXF_DEV uint32_t pack_bf16x2(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
MXF_DEV uint32_t pack_f16x2(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
// Two bf16 products, each rounded to nearest even (sm_90's packed bf16 multiply;
// subnormal inputs and results are kept, not flushed).
constexpr bool kHasBf16x2Mul = true;
// The one-thread MX block quantizer (gpu/quant.cuh: 32 values live) fits a 1024-thread CTA's
// 64 registers per thread without spills (55-64), so the fused quant+sort may use it.
constexpr bool kBlockQuantIn1024Threads = true;
MXF_DEV uint32_t mul_bf16x2(uint32_t a, uint32_t b) {
  uint32_t r;
  asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
// Byte i of the result = byte (s >> 4 i) & 7 of the pair {b, a} (a's bytes 0-3): one PRMT.
// (Written as masks and shifts, two 16-bit halves took two instructions.)
MXF_DEV uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t s) { return __byte_perm(a, b, s); }
// p of any active lane of the warp: the same value in every one of them, so a branch on it
// is taken or not by the whole warp (a short block under a per-lane condition is compiled
// predicated: issued whether or not any lane needs it).
MXF_DEV bool any_active(bool p) { return __any_sync(__activemask(), p) != 0; }

// ---- MMA atoms -----------------------------------------------------------------------
// An MMA atom is the smallest warp-wide matrix multiply-accumulate of an architecture:
// C[kM x kN] (fp32) += A[kM x kK] * B[kK x kN] with inputs InT (see MmaInput). It knows its
// register fragments, how to fill them from the row-major tiles in shared memory
// (load_a(frag, tile, ld, row0, ks, lane): the atom at tile row row0, k step ks), and
// which (row, col) of C each accumulator register of a lane holds; the tile layer
// (gpu/gemm.cuh) is written against this interface only.
struct Sm90 {  // NVIDIA Hopper; the atom is the sm_80+ warp-level mma.sync
  static constexpr int kMaxSmem = 227 * 1024;  // dynamic shared memory per block (opt-in)
  // Warp groups that split a decode tile's (block_m <= 32) k steps (gemm.cuh, GemmTile).
  static constexpr int kDecodeWarpsK = 2;
  // pk_fp4 weights reach the MMAs as register fragments (gemm.cuh, RegFragB) on block_m <= 32
  // tiles with block_k a multiple of 128.
  static constexpr bool kRegFragB = true;
  // Warpgroup MMAs (wgmma) from swizzled shared tiles fed by a cp.async ring (gemm.cuh,
  // WgmmaTile) on block_m 64 / 128 tiles: the compute-bound (prefill) main loop.
  static constexpr bool kWgmma = true;
  // Thread block clusters: the CTAs of a cluster read each other's shared memory
  // (distributed shared memory) and meet at a cluster barrier (moe.cuh, cluster_k).
  static constexpr bool kClusters = true;
};

template <class Arch, class InT>
struct MmaAtom;  // specialized per arch below

MXF_DEV uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }
// 16 bytes of shared memory at a 32-bit shared address (smem_addr): a loop that keeps the
// address in a register pays no generic-to-shared conversion per load. 16-B aligned.
MXF_DEV Vec16 lds16(uint32_t a) {
  Vec16 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
  return v;
}
// ... and 16 bytes into it (32-bit addresses: a buffer's base costs one register, not two).
MXF_DEV void sts16(uint32_t a, const Vec16& v) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" ::"r"(a), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}
// ... and 8 bytes (x, y). 8-B aligned.
MXF_DEV void sts8(uint32_t a, uint32_t x, uint32_t y) {
  asm volatile("st.shared.v2.u32 [%0], {%1, %2};" ::"r"(a), "r"(x), "r"(y) : "memory");
}
MXF_DEV void sts4(uint32_t a, uint32_t x) { asm volatile("st.shared.u32 [%0], %1;" ::"r"(a), "r"(x) : "memory"); }

template <class InT>
struct MmaAtomSm90Base {
  static constexpr int kM = 16, kN = 8, kK = 16;
  using FragA = uint32_t[4];  // 8 InT: rows lane/4 (+8), k (lane%4)*2 (+8)
  using FragB = uint32_t[2];  // 4 InT: col lane/4, k (lane%4)*2 (+8)
  using FragC = float[4];     // C(row(lane,i), col(lane,i))
  static constexpr int kAccRegs = 4;

  MXF_HD static int acc_row(int lane, int i) { return (lane >> 2) + ((i >> 1) << 3); }
  MXF_HD static int acc_col(int lane, int i) { return ((lane & 3) << 1) + (i & 1); }

  // A: the 16 x 16 tile at `tile` (row-major, `ld` elements per row, 16-B aligned rows).
  // ldmatrix row addresses: lanes 8i..8i+7 give the 8 rows of 8x8 matrix i, and matrix i
  // lands in register i. Offsets (elements) from the tile origin, per lane:
  //   A x4: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (8-15, 8-15)
  //         = a0..a3 of the m16n8k16 A fragment;
  //   B x2: (n 0-7, k 0-7), (n 0-7, k 8-15) = b0, b1 (B stored N-major: row n holds K);
  //   B x4: the x2 pair for n 0-7, then for n 8-15.
  // (tests: checked against the PTX fragment tables by simulating ldmatrix on the host.)
  MXF_HD static int a_offset(int lane, int ld) { return (lane & 15) * ld + ((lane >> 4) << 3); }
  MXF_HD static int b_offset(int lane, int ld) { return (lane & 7) * ld + (((lane >> 3) & 1) << 3); }
  MXF_HD static int b2_offset(int lane, int ld) {
    return ((lane & 7) + ((lane >> 4) << 3)) * ld + (((lane >> 3) & 1) << 3);
  }

  MXF_DEV static void load_a(FragA& a, const uint16_t* tile, int ld, int row0, int ks, int lane) {
    const uint16_t* p = tile + row0 * ld + ks * kK + a_offset(lane, ld);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(smem_addr(p)));
  }
  // B stored N-major (`tile` row n holds the K elements of column n): one 8 x 16 tile.
  MXF_DEV static void load_b(FragB& b, const uint16_t* tile, int ld, int n0, int ks, int lane) {
    const uint16_t* p = tile + n0 * ld + ks * kK + b_offset(lane, ld);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];"
                 : "=r"(b[0]), "=r"(b[1])
                 : "r"(smem_addr(p)));
  }
  // Two adjacent 8 x 16 B tiles (columns n..n+7 and n+8..n+15) with one instruction.
  MXF_DEV static void load_b2(FragB& b0, FragB& b1, const uint16_t* tile, int ld, int n0, int ks,
                              int lane) {
    const uint16_t* p = tile + n0 * ld + ks * kK + b2_offset(lane, ld);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
                 : "r"(smem_addr(p)));
  }
};

template <>
struct MmaAtom<Sm90, Bf16> : MmaAtomSm90Base<Bf16> {
  MXF_DEV static void mma(FragC& c, const FragA& a, const FragB& b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};
template <>
struct MmaAtom<Sm90, Fp16> : MmaAtomSm90Base<Fp16> {
  MXF_DEV static void mma(FragC& c, const FragA& a, const FragB& b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

// ---- warpgroup MMA (sm_90a wgmma) and asynchronous copies ------------------------------
// The compute-bound main loop (gemm.cuh, WgmmaTile): raw operand bytes come in with
// cp.async (16 bytes, zero-filled past src_bytes), converted tiles sit in shared memory
// in the 128-byte swizzle that wgmma's descriptors name, and a warpgroup (4 warps) runs
// m64nNk16 MMAs asynchronously from there. PTX ISA: "Asynchronous Warpgroup Level Matrix
// Multiply-Accumulate" (matrix descriptors, the fences and the D fragment layout).
#define MXF_HAS_WGMMA 1
constexpr int kWarpgroupThreads = 128;

MXF_DEV void cp_async16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(src_bytes)
               : "memory");
}
MXF_DEV void cp_async4(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(src_bytes)
               : "memory");
}
// p + S a as one multiply-add (mad.wide.u32), worked out where it is used: written in C++
// the compiler hoisted the loop-invariant 64-bit S a (or p + S a) out of the ring's loop,
// two registers each, and spilled. opaque(x): x, held as it is (not rebuilt from the
// 64-bit value it was cut from).
template <int S>
MXF_DEV const uint8_t* add_wide(const uint8_t* p, uint32_t a) {
  const uint8_t* r;
  asm("mad.wide.u32 %0, %1, %2, %3;" : "=l"(r) : "r"(a), "n"(S), "l"(p));
  return r;
}
MXF_DEV uint32_t opaque(uint32_t x) {
  uint32_t r;
  asm("mov.b32 %0, %1;" : "=r"(r) : "r"(x));
  return r;
}
MXF_DEV void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Wait until at most N of this thread's committed copy groups are in flight.
template <int N>
MXF_DEV void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
// Generic-proxy writes (st.shared, cp.async) -> visible to the async proxy (wgmma reads);
// each writing thread fences before the barrier that precedes the MMAs.
MXF_DEV void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
MXF_DEV void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
MXF_DEV void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
// Wait until at most N of this warpgroup's committed MMA groups are in flight.
template <int N>
MXF_DEV void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator reads/writes across the fences above.
MXF_DEV void reg_fence(float& x) { asm volatile("" : "+f"(x)::"memory"); }

// Descriptor of a K-major operand tile in the 128-byte swizzle: rows of 64 16-bit
// elements (128 B), 8-row atoms of 1024 B (stride byte offset), the atom 1024-B aligned.
// Start address at bits 0-13, leading byte offset (unused for this swizzle: 16 B) at
// 16-29, stride byte offset at 32-45, swizzle mode 1 (128 B) at 62-63; addresses >> 4.
MXF_DEV uint64_t wgmma_desc_sw128(const void* p) {
  const uint64_t addr = smem_addr(p);
  return ((addr & 0x3FFFFu) >> 4) | (uint64_t(16 >> 4) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}

// The descriptor of the tile `units` x 16 bytes further on: added to the address field
// alone (the sum is a shared-memory address, below 2^18, so it stays in bits 0-13), the
// high word kept as it is (a 32-bit add; the 64-bit one carried into the high word).
MXF_DEV uint64_t desc_add(uint64_t d, uint32_t units) {
  return (d & 0xffffffff00000000ull) | uint32_t(uint32_t(d) + units);
}

#define MXF_F4(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define MXF_F16(d, i) MXF_F4(d, i), MXF_F4(d, i + 4), MXF_F4(d, i + 8), MXF_F4(d, i + 12)
#define MXF_F32(d, i) MXF_F16(d, i), MXF_F16(d, i + 16)
#define MXF_WGMMA_D32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define MXF_WGMMA_D64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
// D (fp32, N/2 registers per thread) += A (64 x 16, descriptor) * B (16 x N, descriptor),
// both K-major (transpose flags 0), inputs TY ("bf16" / "f16").
#define MXF_WGMMA_N64(TY, d, da, db)                                                        \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " MXF_WGMMA_D32  \
               ", %32, %33, p, 1, 1, 0, 0;\n}\n"                                            \
               : MXF_F32(d, 0)                                                              \
               : "l"(da), "l"(db), "r"(1))
#define MXF_WGMMA_N128(TY, d, da, db)                                                       \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " MXF_WGMMA_D64 \
               ", %64, %65, p, 1, 1, 0, 0;\n}\n"                                            \
               : MXF_F32(d, 0), MXF_F32(d, 32)                                              \
               : "l"(da), "l"(db), "r"(1))

// One m64nNk16 warpgroup MMA, N in {64, 128}, of bf16 (kBf16) or fp16 inputs.
template <int N, bool kBf16>
MXF_DEV void wgmma_m64k16(float (&d)[N / 2], uint64_t da, uint64_t db) {
  static_assert(N == 64 || N == 128, "wgmma N: 64 or 128");
  if constexpr (N == 64) {
    if constexpr (kBf16) MXF_WGMMA_N64("bf16", d, da, db);
    else MXF_WGMMA_N64("f16", d, da, db);
  } else {
    if constexpr (kBf16) MXF_WGMMA_N128("bf16", d, da, db);
    else MXF_WGMMA_N128("f16", d, da, db);
  }
}
// D (fp32) += A (64 x 16 bf16, registers) * B (16 x N bf16, K-major descriptor): each warp
// holds its 16 rows of A in the m16n8k16 A-fragment layout (PTX ISA, wgmma "Register
// Fragments" of .m64nNk16), a[0..3]; they must not change until the MMA has completed
// (wgmma_wait), nor D be touched.
#define MXF_WGMMA_RS_N64(d, a, db)                                                              \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                    \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " MXF_WGMMA_D32          \
               ", {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"                                  \
               : MXF_F32(d, 0)                                                                  \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1))
#define MXF_WGMMA_RS_N128(d, a, db)                                                             \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                    \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " MXF_WGMMA_D64         \
               ", {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"                                  \
               : MXF_F32(d, 0), MXF_F32(d, 32)                                                  \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1))
// (N 16 and 32: the wgmma_regs tiles of block_m 16 / 32, whose N is the block's tokens)
#define MXF_WGMMA_RS_N16(d, a, db)                                                              \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %13, 0;\n"                                    \
               "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}" \
               ", {%8, %9, %10, %11}, %12, p, 1, 1, 0;\n}\n"                                    \
               : MXF_F4(d, 0), MXF_F4(d, 4)                                                     \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1))
#define MXF_WGMMA_RS_N32(d, a, db)                                                              \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"                                    \
               "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, " \
               "%8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n"      \
               : MXF_F16(d, 0)                                                                  \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1))
template <int N>
MXF_DEV void wgmma_m64k16_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db) {
  static_assert(N == 16 || N == 32 || N == 64 || N == 128, "wgmma N (register A): 16, 32, 64 or 128");
  if constexpr (N == 16) MXF_WGMMA_RS_N16(d, a, db);
  else if constexpr (N == 32) MXF_WGMMA_RS_N32(d, a, db);
  else if constexpr (N == 64) MXF_WGMMA_RS_N64(d, a, db);
  else MXF_WGMMA_RS_N128(d, a, db);
}
// Accumulator register i of a thread: row (of the warpgroup's 64) and column (of N).
MXF_HD constexpr int wgmma_acc_row(int warp, int lane, int i) { return 16 * warp + (lane >> 2) + 8 * ((i >> 1) & 1); }
MXF_HD constexpr int wgmma_acc_col(int lane, int i) { return 8 * (i >> 2) + 2 * (lane & 3) + (i & 1); }
// Four 8 x 8 matrices of 16-bit pairs from the MMA fragment layout (lane l: row l / 4,
// columns 2 (l % 4), + 1 of matrix i in v[i]) into shared memory: lanes 8 i .. 8 i + 7
// give the addresses of matrix i's 8 rows (16 bytes each). kTrans stores each matrix
// transposed (its fragment columns become the rows in memory). PTX ISA: stmatrix.
template <bool kTrans>
MXF_DEV void stmatrix_x4(void* p, const uint32_t (&v)[4]) {
  if constexpr (kTrans)
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(smem_addr(p)),
                 "r"(v[0]), "r"(v[1]), "r"(v[2]), "r"(v[3])
                 : "memory");
  else
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(smem_addr(p)), "r"(v[0]),
                 "r"(v[1]), "r"(v[2]), "r"(v[3])
                 : "memory");
}

}  // namespace dev

// ---- host side (CUDA only) ------------------------------------------------------------
namespace dev {

using Stream = cudaStream_t;
inline Stream stream_of(int64_t s) { return reinterpret_cast<Stream>(static_cast<uintptr_t>(s)); }

// Per-thread message buffer: Status carries a const char* that must outlive the call.
inline char* status_buffer() {
  static thread_local char buf[512];
  return buf;
}
// A failed Status with a formatted message (kept in the calling thread's buffer until its
// next error).
template <class... A>
inline Status errorf(const char* fmt, A... a) {
  char* buf = status_buffer();
  snprintf(buf, 512, fmt, a...);
  return Status::error(buf);
}
// cudaError_t -> Status; `what` names the step that failed.
inline Status status_of(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::ok();
  return errorf("%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}
// The error of the last launch on this thread (clears it, so the next op starts clean).
inline Status last_launch_status(const char* what) { return status_of(cudaGetLastError(), what); }

// Kernels using more than 48 KB of dynamic shared memory must opt in, per kernel and
// device. Safe to call every launch: the attribute is set only when a larger size is
// first asked for (it is not a stream operation, so it is graph-capture safe). The
// record is keyed by the kernel's address: kernels of one signature share a type.
inline Status allow_dynamic_smem(const void* kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return Status::ok();
  struct Grant {
    const void* kernel;
    int device;
    size_t bytes;
  };
  static std::mutex mu;
  static std::vector<Grant> granted;
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return status_of(e, "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mu);
  Grant* g = nullptr;
  for (Grant& x : granted)
    if (x.kernel == kernel && x.device == device) g = &x;
  if (g != nullptr && g->bytes >= bytes) return Status::ok();
  int optin = 0;
  e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (e != cudaSuccess) return status_of(e, "cudaDeviceGetAttribute");
  if (bytes > size_t(optin))
    return errorf("needs %zu bytes of shared memory per block, device %d allows %d", bytes,
                  device, optin);
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess) return status_of(e, "cudaFuncSetAttribute");
  if (g != nullptr) g->bytes = bytes;
  else granted.push_back(Grant{kernel, device, bytes});
  return Status::ok();
}

// Launch `kernel<<<grid, block, smem, stream>>>(args...)` as thread block clusters of
// `cluster` CTAs (the grid a multiple of it in each dimension; the CTAs of one cluster run
// at the same time; 1 x 1 x 1: no clusters), allowing programmatic dependent launch where
// the op's caller allowed it (dependent_launch_allowed, registry.h), and report the launch
// error. An empty grid launches nothing (that is not an
// error for a zero-sized problem).
template <class... P, class... A>
inline Status launch_cluster(void (*kernel)(P...), dim3 grid, dim3 block, dim3 cluster, size_t smem,
                             Stream stream, const char* what, A&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return Status::ok();
  Status st = allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem);
  if (st.code != 0) return st;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster.x;
    attr[n].val.clusterDim.y = cluster.y;
    attr[n].val.clusterDim.z = cluster.z;
    ++n;
  }
  if (dependent_launch_allowed()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  config.attrs = attr;
  config.numAttrs = n;
  const cudaError_t e = cudaLaunchKernelEx(&config, kernel, static_cast<A&&>(args)...);
  if (e != cudaSuccess) return status_of(e, what);
  return last_launch_status(what);
}
template <class... P, class... A>
inline Status launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, Stream stream,
                     const char* what, A&&... args) {
  return launch_cluster(kernel, grid, block, dim3(1, 1, 1), smem, stream, what, static_cast<A&&>(args)...);
}

inline Status memset_async(void* p, int64_t bytes, Stream stream, const char* what) {
  if (bytes <= 0) return Status::ok();
  return status_of(cudaMemsetAsync(p, 0, size_t(bytes), stream), what);
}

// SMs of the current device (cached per device; 1 if the query fails, so a launch still
// happens, with the few-CTA variant).
inline int sm_count() {
  static std::mutex mu;
  static std::vector<int> count;  // by device index, 0 = not asked yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0) return 1;
  std::lock_guard<std::mutex> lock(mu);
  if (count.size() <= size_t(device)) count.resize(size_t(device) + 1, 0);
  if (count[device] == 0) {
    int n = 0;
    count[device] = cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) == cudaSuccess && n > 0 ? n : 1;
  }
  return count[device];
}

}  // namespace dev
}  // namespace mxf

// ======================================================================================
#elif defined(__HIP__) || defined(MXF_HIP_HOST)  // ------------ AMD (clang -x hip / host part)
// ======================================================================================
#include "mxforge/device_amd.h"

#elif !defined(MXF_EMULATE)
#error "mxforge/device.h: compile GPU sources with nvcc, clang -x hip, g++ -DMXF_HIP_HOST (the host part of an AMD instance) or the host test backend (gpu/emulate.h)"
#endif  // __CUDACC__ / __HIP__ / MXF_EMULATE

// A kernel template instance as the host launchers name it: dev::launch(MXF_KERNEL_REF(
// moe_stage1_kernel, S), ...). A function pointer everywhere except in the host part of an
// AMD instance (device_amd.h), where it is the kernel's name in the embedded code object.
#ifndef MXF_KERNEL_REF
#define MXF_KERNEL_REF(kernel, ...) kernel<__VA_ARGS__>
#endif

// Shared memory whose size is a compile-time constant (the GEMM tiles): static where the
// arch allows any size (AMD: the code object then states the kernel's whole LDS, which
// the compiler's occupancy figure and scripts/check_amd_isa.py see), else dynamic (CUDA:
// static shared memory stops at 48 KB). Launchers pass dev::tile_smem_at_launch(bytes).
#ifndef MXF_TILE_SMEM
#define MXF_TILE_SMEM(name, bytes) MXF_DYNAMIC_SMEM(name)
#define MXF_STATIC_TILE_SMEM 0
#endif
namespace mxf {
namespace dev {
constexpr unsigned tile_smem_at_launch(int bytes) { return MXF_STATIC_TILE_SMEM ? 0u : unsigned(bytes); }
}  // namespace dev
}  // namespace mxf

// ---- portable helpers on top of the layer ---------------------------------------------
#if defined(__CUDACC__) || defined(__HIP__)
namespace mxf {
namespace dev {

// Two floats -> the packed 16-bit pair of MMA input type InT (Bf16 or Fp16).
template <class InT>
MXF_DEV uint32_t pack2(float lo, float hi);
template <>
MXF_DEV uint32_t pack2<Bf16>(float lo, float hi) { return pack_bf16x2(lo, hi); }
template <>
MXF_DEV uint32_t pack2<Fp16>(float lo, float hi) { return pack_f16x2(lo, hi); }

}  // namespace dev
}  // namespace mxf
#endif
