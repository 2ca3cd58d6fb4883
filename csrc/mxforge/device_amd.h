// The AMD side of the device layer (gfx942 = CDNA3 / MI300X, gfx950 = CDNA4 / MI355X),
// included by device.h. An AMD instance's source is compiled twice (codegen/ninja_gen.py):
//
//   1. clang -x hip --offload-arch=gfxNNN --cuda-device-only -nogpuinc -nogpulib
//      (__HIP__ defined): the kernels. No HIP headers exist in this build, so everything
//      below comes from clang builtins. The host launchers are parsed as host functions;
//      the kernels they name through MXF_KERNEL_REF are what clang emits into the code
//      object (-S assembly, then assembled and linked by ld.lld into a .hsaco).
//   2. g++ -DMXF_HIP_HOST -DMXF_CODE_OBJECT=<symbol>: the host launchers (argument checks,
//      grids, sort plans: the same code as sm90's). Here MXF_KERNEL_REF names a kernel of
//      the instance's embedded code object, and dev::launch goes through the module's HIP
//      loader (hip_loader.h, csrc/targets/amd.cpp), which dlopens libamdhip64.so. The
//      kernels' bodies are parsed but never instantiated; the device API is declared
//      (not defined) so that the non-template device code of the headers parses.
//
// Wave64: dev::kWarpSize = 64 and LaneMask is 64 bits; a "warp" of the tile layer is a
// wavefront. The MMA atoms are 16x16 MFMAs (every block_m of the specs, 16 included, is a
// multiple of 16): bf16/fp16 MFMA after exact dequantization on gfx942 and for 16-bit
// activations on gfx950; gfx950's scaled f8f6f4 MFMA on the raw MX codes and e8m0 scales
// for a4w4 and a8w4.
#pragma once
#include <stdint.h>
#include <stddef.h>

#include "mxforge/mfma.h"

// ======================================================================================
// Part 1: both compiles (device and host part) -- keywords, wave size, and the host launch
// API's declarations (the arch tags, MMA-input choice and atom shapes are in mfma.h).
// ======================================================================================
#if defined(MXF_HIP_HOST)
// The kernels' bodies are parsed by g++ but never instantiated: the CUDA-style keywords
// and launch bounds mean nothing here.
#define __global__
#define __device__
#define __host__
#define __shared__
#define __forceinline__ inline
#define MXF_DEV inline
#define MXF_DEV_NOINLINE inline
#define MXF_KERNEL
#define MXF_LAUNCH_BOUNDS(threads)
#define MXF_LAUNCH_BOUNDS_MIN(threads, ctas)
#define MXF_DYNAMIC_SMEM(name) extern unsigned char name[]
#define MXF_TILE_SMEM(name, bytes) unsigned char name[bytes]
#else
#define MXF_DEV __device__ __forceinline__
#define MXF_DEV_NOINLINE static __device__ __attribute__((noinline))
#define MXF_KERNEL __global__
#define MXF_LAUNCH_BOUNDS(threads) __attribute__((amdgpu_flat_work_group_size(1, threads)))
// "at least `ctas` blocks per CU" has no direct AMD equivalent; the flat work-group size
// already bounds the registers (512 VGPR+AGPR per lane shared by the waves of a SIMD).
#define MXF_LAUNCH_BOUNDS_MIN(threads, ctas) __attribute__((amdgpu_flat_work_group_size(1, threads)))
#define MXF_DYNAMIC_SMEM(name) extern __shared__ __attribute__((aligned(16))) unsigned char name[]
// Static LDS: any size up to the arch's limit, and visible in the code object metadata.
#define MXF_TILE_SMEM(name, bytes) __shared__ __attribute__((aligned(16))) unsigned char name[bytes]
#endif
#define MXF_STATIC_TILE_SMEM 1
#define MXF_HOST_LAUNCH 1  // the launchers exist in both compiles (see the top of this file)

struct dim3 {  // no HIP headers: the launch geometry type of the launchers
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace mxf {
namespace dev {

constexpr int kWarpSize = 64;
using LaneMask = uint64_t;

// ---- host launch API (defined by the HIP loader, csrc/targets/amd.cpp) ------------------
using Stream = void*;  // hipStream_t
inline Stream stream_of(int64_t s) { return reinterpret_cast<Stream>(static_cast<uintptr_t>(s)); }
// A failed Status with a formatted message (kept in the calling thread's buffer).
Status errorf(const char* fmt, ...);
Status memset_async(void* p, int64_t bytes, Stream stream, const char* what);
// Compute units of the device. Named by the launchers' choice of a decode variant, which
// AMD instances do not have (Gfx*::kDecodeWarpsK = 1), so never called: not defined.
int sm_count();

}  // namespace dev
}  // namespace mxf

// ======================================================================================
// Part 2: the device compile -- the device API from clang builtins, and the atoms' code.
// ======================================================================================
#if defined(__HIP__)

namespace mxf {
namespace dev {

typedef short v4i16 __attribute__((ext_vector_type(4)));
typedef _Float16 v4f16 __attribute__((ext_vector_type(4)));
typedef _Float16 v8f16 __attribute__((ext_vector_type(8)));
typedef __bf16 v8bf16 __attribute__((ext_vector_type(8)));
typedef float v4f32 __attribute__((ext_vector_type(4)));
typedef int v8i32 __attribute__((ext_vector_type(8)));

MXF_DEV int thread_x() { return int(__builtin_amdgcn_workitem_id_x()); }
MXF_DEV int block_x() { return int(__builtin_amdgcn_workgroup_id_x()); }
MXF_DEV int block_y() { return int(__builtin_amdgcn_workgroup_id_y()); }
MXF_DEV int block_z() { return int(__builtin_amdgcn_workgroup_id_z()); }
MXF_DEV int block_dim_x() { return int(__builtin_amdgcn_workgroup_size_x()); }
MXF_DEV int grid_dim_x() { return int(__builtin_amdgcn_grid_size_x() / __builtin_amdgcn_workgroup_size_x()); }
MXF_DEV int grid_dim_y() { return int(__builtin_amdgcn_grid_size_y() / __builtin_amdgcn_workgroup_size_y()); }
MXF_DEV int grid_dim_z() { return int(__builtin_amdgcn_grid_size_z() / __builtin_amdgcn_workgroup_size_z()); }
MXF_DEV int lane_id() { return int(__builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u))); }
MXF_DEV int warp_id() { return thread_x() / kWarpSize; }

// Work-group barrier with the LDS/global ordering __syncthreads gives.
MXF_DEV void sync_threads() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}
// A wavefront runs in lock step, but the compiler may still reorder its LDS accesses: the
// fences order them (what HIP's __syncwarp does).
MXF_DEV void sync_warp() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
  __builtin_amdgcn_wave_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
}

// Shuffles through ds_bpermute (byte address = source lane * 4); a source outside the
// wave is clamped by the callers to the own lane, as CUDA's shfl_up/down leave v.
MXF_DEV int shfl(int v, int src) { return __builtin_amdgcn_ds_bpermute(src << 2, v); }
MXF_DEV int shfl_xor(int v, int m) { return shfl(v, lane_id() ^ m); }
MXF_DEV uint32_t shfl_xor(uint32_t v, int m) { return uint32_t(shfl_xor(int(v), m)); }
MXF_DEV float shfl_xor(float v, int m) { return __builtin_bit_cast(float, shfl_xor(__builtin_bit_cast(int, v), m)); }
MXF_DEV int shfl_down(int v, int d) {
  const int src = lane_id() + d;
  return shfl(v, src < kWarpSize ? src : lane_id());
}
MXF_DEV float shfl_down(float v, int d) { return __builtin_bit_cast(float, shfl_down(__builtin_bit_cast(int, v), d)); }
MXF_DEV int shfl_up(int v, int d) {
  const int src = lane_id() - d;
  return shfl(v, src >= 0 ? src : lane_id());
}

MXF_DEV LaneMask ballot(bool p) { return __builtin_amdgcn_ballot_w64(p); }
MXF_DEV int popc(LaneMask m) { return __builtin_popcountll(m); }
MXF_DEV int lowest_lane(LaneMask m) { return __builtin_ctzll(m); }
MXF_DEV LaneMask lanes_below() { return (uint64_t(1) << lane_id()) - 1u; }

// ---- memory -------------------------------------------------------------------------
struct alignas(16) Vec16 {
  uint32_t x, y, z, w;
};
MXF_DEV Vec16 zero16() { return Vec16{0u, 0u, 0u, 0u}; }
MXF_DEV Vec16 ld16(const void* p) { return *static_cast<const Vec16*>(p); }
MXF_DEV void st16(void* p, const Vec16& v) { *static_cast<Vec16*>(p) = v; }
// No separate read-only path on CDNA: a plain (global_load_dwordx4) load.
MXF_DEV Vec16 ld16_ro(const void* p) { return ld16(p); }
// No packed bf16 multiply is used on AMD: dequantization multiplies in fp32 (gemm.cuh).
constexpr bool kHasBf16x2Mul = false;
// clang spills the one-thread MX block quantizer (gpu/quant.cuh) in a 1024-thread kernel
// (6-10 registers on gfx942/gfx950, scripts/check_amd_isa.py): the fused quant+sort keeps
// the 8-lane quantizer at every size here.
constexpr bool kBlockQuantIn1024Threads = false;
uint32_t mul_bf16x2(uint32_t a, uint32_t b);  // (declared for the shared code; not defined)
uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t s);  // (with mul_bf16x2's code only)
bool any_active(bool p);                                 // (the wgmma ring tile's only)
// 32-bit shared-memory addresses: sm90's swapped decode tile (gemm.cuh, SwapMma) reads its
// token fragments through them; no AMD instance has that tile (declared; not defined).
uint32_t smem_addr(const void* p);
Vec16 lds16(uint32_t a);
void prefetch_l2(const void* p);
// Programmatic dependent launch is sm90's: HIP launches in stream order, so there is
// nothing to wait for.
MXF_DEV void wait_prior_grids() {}
MXF_DEV void launch_dependents() {}
MXF_DEV void sleep_ns(unsigned) {}  // (the delay hook widens PDL races only)
// Thread block clusters (moe.cuh, cluster_k) are sm90's (declared; not defined).
void cluster_sync();
const float* cluster_peer(const float* p, int rank);

// ---- atomics ------------------------------------------------------------------------
MXF_DEV void atomic_add(float* p, float v) {
  __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
}
MXF_DEV void atomic_add(int* p, int v) {
  __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
}
// bf16 adds: each add rounds to bf16 (as sm90's red.global.add.bf16x2), by compare-and-
// swap on the enclosing 32-bit word with the numerics.h roundings.
MXF_DEV void atomic_add_bf16x2(uint16_t* p, uint32_t packed_lo_hi) {  // p 4-byte aligned
  uint32_t* w = reinterpret_cast<uint32_t*>(p);
  uint32_t old = __hip_atomic_load(w, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
  for (;;) {
    const float lo = bf16_to_f32(uint16_t(old)) + bf16_to_f32(uint16_t(packed_lo_hi));
    const float hi = bf16_to_f32(uint16_t(old >> 16)) + bf16_to_f32(uint16_t(packed_lo_hi >> 16));
    const uint32_t nw = uint32_t(f32_to_bf16(lo)) | (uint32_t(f32_to_bf16(hi)) << 16);
    if (__hip_atomic_compare_exchange_strong(w, &old, nw, __ATOMIC_RELAXED, __ATOMIC_RELAXED,
                                             __HIP_MEMORY_SCOPE_AGENT))
      break;
  }
}
// One bf16: the add on its half of the word, +0 on the other half (x + 0 == x in bf16,
// NaN payloads aside).
MXF_DEV void atomic_add_bf16(uint16_t* p, uint16_t v) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint16_t* base = reinterpret_cast<uint16_t*>(a & ~uintptr_t(3));
  atomic_add_bf16x2(base, (a & 2) ? uint32_t(v) << 16 : uint32_t(v));
}
// Eight bf16 adds (sm90 has one 16-byte reduction for them): four word adds.
MXF_DEV void atomic_add_bf16x8(uint16_t* p, const Vec16& v) {
  atomic_add_bf16x2(p, v.x);
  atomic_add_bf16x2(p + 2, v.y);
  atomic_add_bf16x2(p + 4, v.z);
  atomic_add_bf16x2(p + 6, v.w);
}

// ---- conversions (the numerics.h roundings: round to nearest even) --------------------
MXF_DEV uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(f32_to_bf16(lo)) | (uint32_t(f32_to_bf16(hi)) << 16);
}
MXF_DEV uint32_t pack_f16x2(float lo, float hi) {
  return uint32_t(f32_to_f16(lo)) | (uint32_t(f32_to_f16(hi)) << 16);
}

// ---- MFMA atoms: loads ----------------------------------------------------------------
// 16-bit inputs: the kPerLane (4 or 8) elements of a lane are contiguous in a row of the
// tile, one 8- or 16-byte LDS read. `tile` is the warp's tile origin, `ld` its pitch in
// elements; atom (row0, ks) starts at row row0, column ks * kK.
template <int K>
struct Mfma16Loads : Mfma16Shape<K> {
  using S = Mfma16Shape<K>;
  struct Frag {
    uint32_t w[S::kPerLane / 2];
  };
  using FragA = Frag;
  using FragB = Frag;
  MXF_DEV static void load(Frag& f, const uint16_t* tile, int ld, int row0, int ks, int lane) {
    const uint16_t* p = tile + (row0 + S::lane_row(lane)) * ld + ks * K + S::lane_k(lane);
    if constexpr (S::kPerLane == 8) {
      const Vec16 v = ld16(p);
      f.w[0] = v.x, f.w[1] = v.y, f.w[2] = v.z, f.w[3] = v.w;
    } else {
      const uint32_t* q = reinterpret_cast<const uint32_t*>(p);  // 8-byte aligned
      f.w[0] = q[0], f.w[1] = q[1];
    }
  }
  MXF_DEV static void load_a(FragA& a, const uint16_t* t, int ld, int r0, int ks, int lane) { load(a, t, ld, r0, ks, lane); }
  MXF_DEV static void load_b(FragB& b, const uint16_t* t, int ld, int n0, int ks, int lane) { load(b, t, ld, n0, ks, lane); }
  MXF_DEV static void load_b2(FragB& b0, FragB& b1, const uint16_t* t, int ld, int n0, int ks, int lane) {
    load(b0, t, ld, n0, ks, lane);
    load(b1, t, ld, n0 + S::kN, ks, lane);
  }
  MXF_DEV static v4f32 acc_in(const float (&c)[4]) { return v4f32{c[0], c[1], c[2], c[3]}; }
  MXF_DEV static void acc_out(float (&c)[4], v4f32 r) { c[0] = r[0], c[1] = r[1], c[2] = r[2], c[3] = r[3]; }
};

// MX inputs kept raw (dev::MxSmemRow, rows 2 * ld bytes apart): lane l reads the 32
// codes of block ks * 4 + l / 16 of its row (16 bytes of e2m1, 32 of e4m3) and that
// block's scale. Unused fragment words (e2m1 fills 4 of 8) are zero.
template <class AT, class BT>
struct MfmaScaleLoads : Mfma16Shape<128> {
  template <class MxT>
  struct MxFrag {
    v8i32 codes;
    int scale;
  };
  using FragA = MxFrag<AT>;
  using FragB = MxFrag<BT>;
  template <class MxT>
  MXF_DEV static void load(MxFrag<MxT>& f, const uint16_t* tile, int ld, int row0, int ks, int lane) {
    const uint8_t* row = reinterpret_cast<const uint8_t*>(tile + (row0 + lane_row(lane)) * ld);
    const int kblock = (ks * kK + lane_k(lane)) / 32;  // lane_k is a multiple of 32 here
    const uint8_t* p = row + MxSmemRow<MxT>::data_byte(32 * kblock);
    const Vec16 lo = ld16(p);
    const Vec16 hi = MxT::kElemsPerByte == 1 ? ld16(p + 16) : zero16();
    f.codes = v8i32{int(lo.x), int(lo.y), int(lo.z), int(lo.w), int(hi.x), int(hi.y), int(hi.z), int(hi.w)};
    f.scale = row[MxSmemRow<MxT>::scale_byte(2 * ld, kblock)];
  }
  MXF_DEV static void load_a(FragA& a, const uint16_t* t, int ld, int r0, int ks, int lane) { load(a, t, ld, r0, ks, lane); }
  MXF_DEV static void load_b(FragB& b, const uint16_t* t, int ld, int n0, int ks, int lane) { load(b, t, ld, n0, ks, lane); }
  MXF_DEV static void load_b2(FragB& b0, FragB& b1, const uint16_t* t, int ld, int n0, int ks, int lane) {
    load(b0, t, ld, n0, ks, lane);
    load(b1, t, ld, n0 + kN, ks, lane);
  }
  MXF_DEV static void mma(FragC& c, const FragA& a, const FragB& b) {
    v4f32 r = v4f32{c[0], c[1], c[2], c[3]};
    // scale operands: byte 0 of the VGPR (op_sel 0); formats from the dtype tags
    r = __builtin_amdgcn_mfma_scale_f32_16x16x128_f8f6f4(a.codes, b.codes, r, MfmaFmt<AT>::value,
                                                         MfmaFmt<BT>::value, 0, a.scale, 0, b.scale);
    c[0] = r[0], c[1] = r[1], c[2] = r[2], c[3] = r[3];
  }
};

}  // namespace dev
}  // namespace mxf

namespace mxf {
namespace dev {
#define MXF_MFMA_ATOM(ARCH, INT, K, BUILTIN, VEC)                                    \
  template <>                                                                        \
  struct MmaAtom<ARCH, INT> : Mfma16Loads<K> {                                       \
    MXF_DEV static void mma(FragC& c, const FragA& a, const FragB& b) {              \
      acc_out(c, BUILTIN(__builtin_bit_cast(VEC, a.w), __builtin_bit_cast(VEC, b.w), \
                         acc_in(c), 0, 0, 0));                                       \
    }                                                                                \
  };
// gfx942: v_mfma_f32_16x16x16_bf16 (the "_1k" bf16 MFMA) and v_mfma_f32_16x16x16_f16.
MXF_MFMA_ATOM(Gfx942, Bf16, 16, __builtin_amdgcn_mfma_f32_16x16x16bf16_1k, v4i16)
MXF_MFMA_ATOM(Gfx942, Fp16, 16, __builtin_amdgcn_mfma_f32_16x16x16f16, v4f16)
// gfx950: the double-K 16-bit MFMAs, v_mfma_f32_16x16x32_bf16 / _f16.
MXF_MFMA_ATOM(Gfx950, Bf16, 32, __builtin_amdgcn_mfma_f32_16x16x32_bf16, v8bf16)
MXF_MFMA_ATOM(Gfx950, Fp16, 32, __builtin_amdgcn_mfma_f32_16x16x32_f16, v8f16)
#undef MXF_MFMA_ATOM
template <class A, class B>
struct MmaAtom<Gfx950, MxPair<A, B>> : MfmaScaleLoads<A, B> {};
}  // namespace dev
}  // namespace mxf

#else  // MXF_HIP_HOST
// ======================================================================================
// Part 3: the host part -- shapes of the atoms (the tiles' sizes depend on them), the
// device API declared only (the headers' device code parses; nothing of it is emitted),
// and dev::launch through the HIP loader.
// ======================================================================================
#include "mxforge/hip_loader.h"

namespace mxf {
namespace dev {

int thread_x();
int block_x();
int block_y();
int block_z();
int block_dim_x();
int grid_dim_x();
int grid_dim_y();
int grid_dim_z();
int lane_id();
int warp_id();
void sync_threads();
void sync_warp();
int shfl(int v, int src);
int shfl_xor(int v, int m);
uint32_t shfl_xor(uint32_t v, int m);
float shfl_xor(float v, int m);
int shfl_down(int v, int d);
float shfl_down(float v, int d);
int shfl_up(int v, int d);
LaneMask ballot(bool p);
int popc(LaneMask m);
int lowest_lane(LaneMask m);
LaneMask lanes_below();
struct alignas(16) Vec16 {
  uint32_t x, y, z, w;
};
Vec16 zero16();
Vec16 ld16(const void* p);
void st16(void* p, const Vec16& v);
Vec16 ld16_ro(const void* p);
constexpr bool kHasBf16x2Mul = false;
constexpr bool kBlockQuantIn1024Threads = false;
uint32_t mul_bf16x2(uint32_t a, uint32_t b);
uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t s);
bool any_active(bool p);
uint32_t smem_addr(const void* p);
Vec16 lds16(uint32_t a);
void prefetch_l2(const void* p);
void wait_prior_grids();
void launch_dependents();
void sleep_ns(unsigned ns);
void cluster_sync();
const float* cluster_peer(const float* p, int rank);
void atomic_add(float* p, float v);
void atomic_add(int* p, int v);
void atomic_add_bf16x2(uint16_t* p, uint32_t packed_lo_hi);
void atomic_add_bf16(uint16_t* p, uint16_t v);
void atomic_add_bf16x8(uint16_t* p, const Vec16& v);
uint32_t pack_bf16x2(float lo, float hi);
uint32_t pack_f16x2(float lo, float hi);
template <class InT>
uint32_t pack2(float lo, float hi);

template <int K>
struct Mfma16Loads : Mfma16Shape<K> {};
template <class AT, class BT>
struct MfmaScaleLoads : Mfma16Shape<128> {};
template <>
struct MmaAtom<Gfx942, Bf16> : Mfma16Loads<16> {};
template <>
struct MmaAtom<Gfx942, Fp16> : Mfma16Loads<16> {};
template <>
struct MmaAtom<Gfx950, Bf16> : Mfma16Loads<32> {};
template <>
struct MmaAtom<Gfx950, Fp16> : Mfma16Loads<32> {};
template <class A, class B>
struct MmaAtom<Gfx950, MxPair<A, B>> : MfmaScaleLoads<A, B> {};

// Launch kernel `k` of the instance's code object: the arguments travel as kernelParams
// (one pointer per kernel parameter, in order; the runtime copies them by the code
// object's argument metadata), so each must have the kernel parameter's exact type.
template <class... A>
inline Status launch(const hip::KernelRef& k, dim3 grid, dim3 block, unsigned smem, Stream stream,
                     const char* what, A&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return Status::ok();
  void* params[] = {const_cast<void*>(static_cast<const void*>(&args))...};
  const unsigned g[3] = {grid.x, grid.y, grid.z}, b[3] = {block.x, block.y, block.z};
  return hip::launch(k, g, b, smem, stream, params, what);
}
// Cluster launches (moe.cuh, cluster_k) are sm90's (declared; not defined).
template <class... A>
Status launch_cluster(const hip::KernelRef& k, dim3 grid, dim3 block, dim3 cluster, unsigned smem,
                      Stream stream, const char* what, A&&... args);

}  // namespace dev
}  // namespace mxf

// The instance's code object (generated from its .hsaco by codegen/embed_hsaco.py; the
// build passes its symbol). Kernels are found in it by template name.
#if defined(MXF_CODE_OBJECT)
extern const mxf::hip::CodeObject MXF_CODE_OBJECT;
#define MXF_KERNEL_REF(kernel, ...) ::mxf::hip::KernelRef{&MXF_CODE_OBJECT, #kernel}
#else
#define MXF_KERNEL_REF(kernel, ...) \
  static_assert(false, "MXF_CODE_OBJECT: the build names the instance's code object")
#endif
#endif  // __HIP__ / MXF_HIP_HOST

// In the device compile the launchers' dev::launch only has to name the kernel (that is
// what makes clang emit it); it is never called there.
#if defined(__HIP__)
namespace mxf {
namespace dev {
template <class... P, class... A>
Status launch(void (*kernel)(P...), dim3 grid, dim3 block, unsigned smem, Stream stream,
              const char* what, A&&... args);
template <class... P, class... A>  // (sm90's: no AMD instance has clusters)
Status launch_cluster(void (*kernel)(P...), dim3 grid, dim3 block, dim3 cluster, unsigned smem,
                      Stream stream, const char* what, A&&... args);
}  // namespace dev
}  // namespace mxf
#endif
