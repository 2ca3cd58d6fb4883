// The device layer: everything a GPU kernel of mxforge needs from the vendor toolchain,
// behind one small API in namespace mxf::dev. Kernel sources (csrc/mxforge/gpu/*.cuh and
// the templates in templates/gpu/) are written in a "HIP dialect" against this header
// only, so the same source compiles with nvcc for sm90 and with clang in HIP mode for
// gfx942/gfx950.
//
//   CUDA (nvcc, __CUDACC__)  : intrinsics and inline PTX; host helpers (streams, launch,
//                              error -> Status, dynamic shared memory opt-in).
//   HIP  (clang -x hip, __HIP__, compiled with -nogpuinc -nogpulib --cuda-device-only):
//                              clang builtins only, no HIP headers; device code only (the
//                              code objects are loaded by the module's HIP loader, so the
//                              host helpers do not exist there).
//
// What lives here and nowhere else: thread/block ids, barriers, warp shuffles and
// ballots, 16-byte vector memory access, atomics (fp32, int, bf16 and bf16x2 adds),
// float -> bf16x2 / f16x2 packing, and the per-arch MMA atoms (MmaAtom<Arch, InT>).
// e2m1 / e4m3 / e8m0 / bf16 conversions are in numerics.h (host and device).
#pragma once
#include <stdint.h>

#if defined(__HIP__) && !defined(__global__)
// Compiled with -nogpuinc: nothing comes from HIP headers, so the CUDA-style keywords are
// defined from clang's attributes, before numerics.h (whose MXF_HD uses them).
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#endif

#include "mxforge/numerics.h"
#include "mxforge/registry.h"
#include "mxforge/types.h"

// ======================================================================================
#if defined(__CUDACC__)  // ---------------------------------------------- NVIDIA (nvcc)
// ======================================================================================
#include <cuda_runtime.h>
#include <stdio.h>

#include <mutex>
#include <vector>

#define MXF_DEV __device__ __forceinline__
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

// ---- MMA atoms -----------------------------------------------------------------------
// An MMA atom is the smallest warp-wide matrix multiply-accumulate of an architecture:
// C[kM x kN] (fp32) += A[kM x kK] * B[kK x kN] with A and B of 16-bit type InT (Bf16 or
// Fp16). It knows its register fragments, how to fill them from row-major tiles in shared
// memory, and which (row, col) of C each accumulator register of a lane holds; the tile
// layer (gpu/gemm.cuh) is written against this interface only.
struct Sm90 {};  // NVIDIA Hopper; the atom is the sm_80+ warp-level mma.sync

template <class Arch, class InT>
struct MmaAtom;  // specialized per arch below

MXF_DEV uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

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

  MXF_DEV static void load_a(FragA& a, const uint16_t* tile, int ld, int lane) {
    const uint16_t* p = tile + a_offset(lane, ld);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(smem_addr(p)));
  }
  // B stored N-major (`tile` row n holds the K elements of column n): one 8 x 16 tile.
  MXF_DEV static void load_b(FragB& b, const uint16_t* tile, int ld, int lane) {
    const uint16_t* p = tile + b_offset(lane, ld);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];"
                 : "=r"(b[0]), "=r"(b[1])
                 : "r"(smem_addr(p)));
  }
  // Two adjacent 8 x 16 B tiles (columns n..n+7 and n+8..n+15) with one instruction.
  MXF_DEV static void load_b2(FragB& b0, FragB& b1, const uint16_t* tile, int ld, int lane) {
    const uint16_t* p = tile + b2_offset(lane, ld);
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

// Launch `kernel<<<grid, block, smem, stream>>>(args...)` and report the launch error.
// An empty grid launches nothing (that is not an error for a zero-sized problem).
template <class... P, class... A>
inline Status launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, Stream stream,
                     const char* what, A&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return Status::ok();
  Status st = allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem);
  if (st.code != 0) return st;
  kernel<<<grid, block, smem, stream>>>(static_cast<A&&>(args)...);
  return last_launch_status(what);
}

inline Status memset_async(void* p, int64_t bytes, Stream stream, const char* what) {
  if (bytes <= 0) return Status::ok();
  return status_of(cudaMemsetAsync(p, 0, size_t(bytes), stream), what);
}

}  // namespace dev
}  // namespace mxf

// ======================================================================================
#elif defined(__HIP__)  // ------------------------------------------- AMD (clang -x hip)
// ======================================================================================
// Wave64 (gfx942 / gfx950). The CUDA-style keywords are defined at the top of this file.
#define MXF_DEV __device__ __forceinline__
#define MXF_KERNEL __global__
#define MXF_LAUNCH_BOUNDS(threads) __attribute__((amdgpu_flat_work_group_size(1, threads)))
#define MXF_LAUNCH_BOUNDS_MIN(threads, ctas) __attribute__((amdgpu_flat_work_group_size(1, threads)))
#define MXF_HOST_LAUNCH 0  // device-only compile: the module's HIP loader launches
#define MXF_DYNAMIC_SMEM(name) extern __shared__ __attribute__((aligned(16))) unsigned char name[]

namespace mxf {
namespace dev {

constexpr int kWarpSize = 64;
using LaneMask = uint64_t;

MXF_DEV int thread_x() { return int(__builtin_amdgcn_workitem_id_x()); }
MXF_DEV int block_x() { return int(__builtin_amdgcn_workgroup_id_x()); }
MXF_DEV int block_y() { return int(__builtin_amdgcn_workgroup_id_y()); }
MXF_DEV int block_z() { return int(__builtin_amdgcn_workgroup_id_z()); }
MXF_DEV int block_dim_x() { return int(__builtin_amdgcn_workgroup_size_x()); }
MXF_DEV int grid_dim_x() { return int(__builtin_amdgcn_grid_size_x() / __builtin_amdgcn_workgroup_size_x()); }
MXF_DEV int grid_dim_y() { return int(__builtin_amdgcn_grid_size_y() / __builtin_amdgcn_workgroup_size_y()); }
MXF_DEV int grid_dim_z() { return int(__builtin_amdgcn_grid_size_z() / __builtin_amdgcn_workgroup_size_z()); }
MXF_DEV int lane_id() { return __builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u)); }
MXF_DEV int warp_id() { return thread_x() / kWarpSize; }

MXF_DEV void sync_threads() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}
MXF_DEV void sync_warp() { __builtin_amdgcn_wave_barrier(); }

MXF_DEV int shfl(int v, int src) { return __builtin_amdgcn_ds_bpermute(src << 2, v); }
MXF_DEV int shfl_xor(int v, int m) { return shfl(v, lane_id() ^ m); }
MXF_DEV uint32_t shfl_xor(uint32_t v, int m) { return uint32_t(shfl_xor(int(v), m)); }
MXF_DEV float shfl_xor(float v, int m) { return __builtin_bit_cast(float, shfl_xor(__builtin_bit_cast(int, v), m)); }
MXF_DEV int shfl_down(int v, int d) {
  int src = lane_id() + d;
  return shfl(v, src < kWarpSize ? src : lane_id());
}
MXF_DEV float shfl_down(float v, int d) { return __builtin_bit_cast(float, shfl_down(__builtin_bit_cast(int, v), d)); }
MXF_DEV int shfl_up(int v, int d) {
  int src = lane_id() - d;
  return shfl(v, src >= 0 ? src : lane_id());
}

MXF_DEV LaneMask ballot(bool p) { return __builtin_amdgcn_ballot_w64(p); }
MXF_DEV int popc(LaneMask m) { return __builtin_popcountll(m); }
MXF_DEV int lowest_lane(LaneMask m) { return __builtin_ctzll(m); }
MXF_DEV LaneMask lanes_below() { return (uint64_t(1) << lane_id()) - 1u; }

struct alignas(16) Vec16 {
  uint32_t x, y, z, w;
};
MXF_DEV Vec16 zero16() { return Vec16{0u, 0u, 0u, 0u}; }
MXF_DEV Vec16 ld16(const void* p) { return *static_cast<const Vec16*>(p); }
MXF_DEV void st16(void* p, const Vec16& v) { *static_cast<Vec16*>(p) = v; }
MXF_DEV Vec16 ld16_ro(const void* p) { return ld16(p); }

MXF_DEV void atomic_add(float* p, float v) {
  __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
}
MXF_DEV void atomic_add(int* p, int v) {
  __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
}
// bf16 adds by compare-and-swap on the enclosing 32-bit word (gfx942 has
// global_atomic_pk_add_bf16; switch to it once the ISA check confirms the builtin).
MXF_DEV void atomic_add_bf16x2(uint16_t* p, uint32_t packed_lo_hi) {
  uint32_t* w = reinterpret_cast<uint32_t*>(p);
  uint32_t old = __hip_atomic_load(w, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_AGENT);
  for (;;) {
    float lo = bf16_to_f32(uint16_t(old)) + bf16_to_f32(uint16_t(packed_lo_hi));
    float hi = bf16_to_f32(uint16_t(old >> 16)) + bf16_to_f32(uint16_t(packed_lo_hi >> 16));
    uint32_t nw = uint32_t(f32_to_bf16(lo)) | (uint32_t(f32_to_bf16(hi)) << 16);
    if (__hip_atomic_compare_exchange_strong(w, &old, nw, __ATOMIC_RELAXED, __ATOMIC_RELAXED,
                                             __HIP_MEMORY_SCOPE_AGENT))
      break;
  }
}
MXF_DEV void atomic_add_bf16(uint16_t* p, uint16_t v) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint16_t* base = reinterpret_cast<uint16_t*>(a & ~uintptr_t(3));
  atomic_add_bf16x2(base, (a & 2) ? uint32_t(v) << 16 : uint32_t(v));  // +0 on the other half
}

MXF_DEV uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(f32_to_bf16(lo)) | (uint32_t(f32_to_bf16(hi)) << 16);
}
MXF_DEV uint32_t pack_f16x2(float lo, float hi) {
  return uint32_t(f32_to_f16(lo)) | (uint32_t(f32_to_f16(hi)) << 16);
}

struct Gfx942 {};  // CDNA3 MFMA
struct Gfx950 {};  // CDNA4 MFMA (+ scaled f8f6f4 MFMA)
template <class Arch, class InT>
struct MmaAtom;  // MFMA atoms: to be written with the gfx942/gfx950 targets

}  // namespace dev
}  // namespace mxf

#elif !defined(MXF_EMULATE)
#error "mxforge/device.h: compile GPU sources with nvcc or clang -x hip (or the host test backend, gpu/emulate.h)"
#endif  // __CUDACC__ / __HIP__ / MXF_EMULATE

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
