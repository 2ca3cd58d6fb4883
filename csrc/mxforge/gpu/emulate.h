// A CPU stand-in for the device layer, for testing the GPU kernels' logic where there is
// no GPU (this machine, CI). NOT a production backend: it is slow (one OS thread per GPU
// thread, CTAs one after another) and its MMA atom reads its tiles straight from "shared
// memory" instead of going through ldmatrix / mma.sync register fragments (those two are
// checked separately, by simulating the PTX fragment rules).
//
// Use: compile a GPU translation unit as C++ with
//     g++ -std=c++17 -DMXF_EMULATE -include mxforge/gpu/emulate.h -x c++ unit.cu
// For an AMD (gfx942 / gfx950) unit add -DMXF_EMULATE_WARP=64: 64-lane wavefronts and
// MFMA atoms computed on the host with the register layouts of mxforge/mfma.h, reading
// their tiles (16-bit, or MX codes + scales in the dev::MxSmemRow layout) at mma time.
// Every kernel then runs on the host through the same tile layer, epilogues, sort and
// quantization code and the same host launchers (grids, plans, argument checks) as on
// the GPU; kernels that diverge around a warp or CTA collective deadlock here, which is
// a bug on the GPU too.
#pragma once
#if !defined(MXF_EMULATE) || defined(__CUDACC__) || defined(__HIP__)
#error "emulate.h is the host test backend: compile with -DMXF_EMULATE, without nvcc/hip"
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "mxforge/mfma.h"
#include "mxforge/numerics.h"
#include "mxforge/registry.h"
#include "mxforge/types.h"

#ifndef MXF_EMULATE_WARP
#define MXF_EMULATE_WARP 32
#endif

#define MXF_DEV inline
#define MXF_DEV_NOINLINE inline
#define MXF_KERNEL
#define MXF_LAUNCH_BOUNDS(threads)
#define MXF_LAUNCH_BOUNDS_MIN(threads, ctas)
#define __shared__ static  // one CTA runs at a time: function statics are its shared memory
#define MXF_DYNAMIC_SMEM(name) unsigned char* name = ::mxf::emu::dynamic_smem()
#define MXF_HOST_LAUNCH 1

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace mxf {
namespace emu {

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const unsigned gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen_ != gen; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  unsigned gen_ = 0;
};

struct Cluster;
struct Cta {
  dim3 grid, block, index;
  Cluster* cluster = nullptr;
  std::unique_ptr<Barrier> cta_barrier;
  std::vector<std::unique_ptr<Barrier>> warp_barriers;
  std::vector<uint64_t> slots;  // one per thread, for warp collectives
  std::vector<uint32_t> frags;  // six per thread, for the register-fragment MMA
  std::vector<unsigned char> smem;
};
// The CTAs of a thread block cluster, which run at the same time (each with its own team
// of threads and dynamic shared memory; a plain launch has clusters of one CTA).
struct Cluster {
  std::vector<std::unique_ptr<Cta>> ctas;
  std::unique_ptr<Barrier> barrier;  // every thread of every CTA of the cluster
};
// The CTA the calling thread belongs to.
inline Cta*& current_cta() {
  static thread_local Cta* c = nullptr;
  return c;
}
inline Cta& cta() { return *current_cta(); }
inline int& tid() {
  static thread_local int t = 0;
  return t;
}
inline unsigned char* dynamic_smem() { return cta().smem.data(); }
inline std::mutex& atomic_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace emu

namespace dev {

constexpr int kWarpSize = MXF_EMULATE_WARP;
using LaneMask = typename std::conditional<kWarpSize == 64, uint64_t, uint32_t>::type;

inline int thread_x() { return emu::tid(); }
inline int block_x() { return int(emu::cta().index.x); }
inline int block_y() { return int(emu::cta().index.y); }
inline int block_z() { return int(emu::cta().index.z); }
inline int block_dim_x() { return int(emu::cta().block.x); }
inline int grid_dim_x() { return int(emu::cta().grid.x); }
inline int grid_dim_y() { return int(emu::cta().grid.y); }
inline int grid_dim_z() { return int(emu::cta().grid.z); }
inline int lane_id() { return thread_x() % kWarpSize; }
inline int warp_id() { return thread_x() / kWarpSize; }

inline void sync_threads() { emu::cta().cta_barrier->wait(); }
inline void wait_prior_grids() {}  // (launches run one after another here)
inline void launch_dependents() {}
inline void sleep_ns(unsigned) {}  // (the delay hook widens PDL races only)
inline void cluster_sync() { emu::cta().cluster->barrier->wait(); }
// `p` in the dynamic shared memory of the cluster's CTA `rank` (the emulator's static
// __shared__ arrays are one per program, shared by a cluster's CTAs, so only the dynamic
// shared memory can be addressed this way; the kernels use it for nothing else).
inline const float* cluster_peer(const float* p, int rank) {
  emu::Cta& c = emu::cta();
  const unsigned char* b = reinterpret_cast<const unsigned char*>(p);
  const std::vector<std::unique_ptr<emu::Cta>>& peers = c.cluster->ctas;
  if (b < c.smem.data() || b >= c.smem.data() + c.smem.size() || rank < 0 || rank >= int(peers.size())) {
    fprintf(stderr, "emulate.h: cluster_peer of an address outside dynamic shared memory or rank %d\n", rank);
    abort();
  }
  return reinterpret_cast<const float*>(peers[size_t(rank)]->smem.data() + (b - c.smem.data()));
}
inline void sync_warp() { emu::cta().warp_barriers[warp_id()]->wait(); }

// Warp collectives: publish, meet, read, meet (so the slots can be reused).
template <class F>
inline uint64_t exchange(uint64_t mine, F&& combine) {
  emu::Cta& c = emu::cta();
  const int w0 = warp_id() * kWarpSize;
  c.slots[thread_x()] = mine;
  sync_warp();
  const uint64_t r = combine(&c.slots[w0]);
  sync_warp();
  return r;
}
inline LaneMask ballot(bool p) {
  return LaneMask(exchange(p, [](const uint64_t* s) {
    uint64_t m = 0;
    for (int l = 0; l < kWarpSize; ++l) m |= (s[l] ? 1ull : 0ull) << l;
    return m;
  }));
}
inline uint32_t shfl_u32(uint32_t v, int src) {
  return uint32_t(exchange(v, [&](const uint64_t* s) { return s[src & (kWarpSize - 1)]; }));
}
inline int shfl(int v, int src) { return int(shfl_u32(uint32_t(v), src)); }
inline int shfl_xor(int v, int m) { return shfl(v, lane_id() ^ m); }
inline uint32_t shfl_xor(uint32_t v, int m) { return shfl_u32(v, lane_id() ^ m); }
inline float shfl_xor(float v, int m) { return bits_f32(shfl_u32(f32_bits(v), lane_id() ^ m)); }
inline int shfl_up(int v, int d) { return shfl(v, lane_id() >= d ? lane_id() - d : lane_id()); }
inline int shfl_down(int v, int d) { return shfl(v, lane_id() + d < kWarpSize ? lane_id() + d : lane_id()); }
inline float shfl_down(float v, int d) {
  return bits_f32(shfl_u32(f32_bits(v), lane_id() + d < kWarpSize ? lane_id() + d : lane_id()));
}
inline int popc(LaneMask m) { return __builtin_popcountll(m); }
inline int lowest_lane(LaneMask m) { return __builtin_ctzll(m); }
inline LaneMask lanes_below() { return (LaneMask(1) << lane_id()) - 1u; }

struct alignas(16) Vec16 {
  uint32_t x, y, z, w;
};
inline Vec16 zero16() { return Vec16{0u, 0u, 0u, 0u}; }
inline Vec16 ld16(const void* p) {
  if (reinterpret_cast<uintptr_t>(p) & 15u) { fprintf(stderr, "emulate: misaligned ld16\n"); abort(); }
  Vec16 v;
  memcpy(&v, p, 16);
  return v;
}
inline Vec16 ld16_ro(const void* p) { return ld16(p); }
// Shared-memory addresses as 32-bit offsets (the dynamic shared memory of the running CTA).
inline uint32_t smem_addr(const void* p) {
  return uint32_t(static_cast<const unsigned char*>(p) - emu::dynamic_smem());
}
inline Vec16 lds16(uint32_t a) { return ld16(emu::dynamic_smem() + a); }
inline void prefetch_l2(const void*) {}  // (a cache hint: nothing to emulate)
inline void st16(void* p, const Vec16& v) {
  if (reinterpret_cast<uintptr_t>(p) & 15u) { fprintf(stderr, "emulate: misaligned st16\n"); abort(); }
  memcpy(p, &v, 16);
}

inline void atomic_add(float* p, float v) {
  std::lock_guard<std::mutex> g(emu::atomic_mutex());
  *p += v;
}
inline void atomic_add(int* p, int v) {
  std::lock_guard<std::mutex> g(emu::atomic_mutex());
  *p += v;
}
inline void atomic_add_bf16(uint16_t* p, uint16_t v) {
  std::lock_guard<std::mutex> g(emu::atomic_mutex());
  *p = f32_to_bf16(bf16_to_f32(*p) + bf16_to_f32(v));
}
inline void atomic_add_bf16x2(uint16_t* p, uint32_t packed) {
  if (reinterpret_cast<uintptr_t>(p) & 3u) { fprintf(stderr, "emulate: misaligned bf16x2\n"); abort(); }
  atomic_add_bf16(p, uint16_t(packed));
  atomic_add_bf16(p + 1, uint16_t(packed >> 16));
}
inline void atomic_add_bf16x8(uint16_t* p, const Vec16& v) {
  if (reinterpret_cast<uintptr_t>(p) & 15u) { fprintf(stderr, "emulate: misaligned bf16x8\n"); abort(); }
  atomic_add_bf16x2(p, v.x);
  atomic_add_bf16x2(p + 2, v.y);
  atomic_add_bf16x2(p + 4, v.z);
  atomic_add_bf16x2(p + 6, v.w);
}

inline uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(f32_to_bf16(lo)) | (uint32_t(f32_to_bf16(hi)) << 16);
}
inline uint32_t pack_f16x2(float lo, float hi) {
  return uint32_t(f32_to_f16(lo)) | (uint32_t(f32_to_f16(hi)) << 16);
}
// sm_90's mul.rn.bf16x2: a product of two bf16 is exact in fp32 (8-bit significands),
// then rounded to bf16 as the instruction rounds.
constexpr bool kHasBf16x2Mul = true;
constexpr bool kBlockQuantIn1024Threads = true;  // as sm90's
inline uint32_t mul_bf16x2(uint32_t a, uint32_t b) {
  const float lo = bf16_to_f32(uint16_t(a)) * bf16_to_f32(uint16_t(b));
  const float hi = bf16_to_f32(uint16_t(a >> 16)) * bf16_to_f32(uint16_t(b >> 16));
  return pack_bf16x2(lo, hi);
}
inline uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t s) {
  const uint64_t x = (uint64_t(b) << 32) | a;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t(x >> (8 * ((s >> (4 * i)) & 7u)) & 0xffu) << (8 * i);
  return r;
}
bool any_active(bool p);  // (only the wgmma ring tile votes: declared for the shared code, not defined)
template <class InT>
inline uint32_t pack2(float lo, float hi);
template <>
inline uint32_t pack2<Bf16>(float lo, float hi) { return pack_bf16x2(lo, hi); }
template <>
inline uint32_t pack2<Fp16>(float lo, float hi) { return pack_f16x2(lo, hi); }

// The emulated atom: C[16x8] += A[16x16] * B[8x16]^T in fp32, reading the tiles at mma
// time; the accumulator layout is sm90's, so the staging code is exercised as on the GPU.
struct Emu {
  static constexpr int kMaxSmem = 227 * 1024;
  static constexpr int kDecodeWarpsK = 2;  // as sm90's
  static constexpr bool kRegFragB = true;  // as sm90's
  static constexpr bool kWgmma = false;    // (no warpgroup MMA in the emulator)
  static constexpr bool kClusters = true;  // as sm90's (CTAs of a cluster run together here)
};
using Sm90 = Emu;  // rendered sm90 sources compile unchanged against the emulator
template <class Arch, class InT>
struct MmaAtom;
template <class InT>
struct MmaAtom<Emu, InT> {
  static constexpr int kM = 16, kN = 8, kK = 16, kAccRegs = 4;
  struct FragA { const uint16_t* p; int ld; };
  struct FragB { const uint16_t* p; int ld; };
  using FragC = float[4];
  static int acc_row(int lane, int i) { return (lane >> 2) + ((i >> 1) << 3); }
  static int acc_col(int lane, int i) { return ((lane & 3) << 1) + (i & 1); }
  static void load_a(FragA& a, const uint16_t* t, int ld, int r0, int ks, int) {
    a = FragA{t + r0 * ld + ks * kK, ld};
  }
  static void load_b(FragB& b, const uint16_t* t, int ld, int n0, int ks, int) {
    b = FragB{t + n0 * ld + ks * kK, ld};
  }
  static void load_b2(FragB& b0, FragB& b1, const uint16_t* t, int ld, int n0, int ks, int) {
    b0 = FragB{t + n0 * ld + ks * kK, ld};
    b1 = FragB{t + (n0 + 8) * ld + ks * kK, ld};
  }
  static void mma(FragC& c, const FragA& a, const FragB& b) {
    const int lane = lane_id();
    for (int i = 0; i < 4; ++i) {
      const int r = acc_row(lane, i), n = acc_col(lane, i);
      float s = c[i];
      for (int k = 0; k < kK; ++k) s += InT::to_f32(a.p[r * a.ld + k]) * InT::to_f32(b.p[n * b.ld + k]);
      c[i] = s;
    }
  }
  // mma.sync on register fragments (gemm.cuh's RegFragB path), a warp collective: the
  // lanes publish their fragments, and each computes its accumulators from the PTX
  // m16n8k16 layouts: lane l = 4g + j holds A (g, 2j..2j+1), (g+8, 2j..), (g, 2j+8..),
  // (g+8, 2j+8..) in a[0..3] and B (k 2j..2j+1, n g), (k 2j+8..2j+9, n g) in b[0..1],
  // each register two 16-bit values, the lower k in the low half.
  static void mma(FragC& c, const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    emu::Cta& cta = emu::cta();
    const int lane = lane_id(), w0 = warp_id() * kWarpSize;
    for (int i = 0; i < 4; ++i) cta.frags[6 * thread_x() + i] = a[i];
    for (int i = 0; i < 2; ++i) cta.frags[6 * thread_x() + 4 + i] = b[i];
    sync_warp();
    auto half = [](uint32_t w, int k) { return uint16_t(w >> (16 * (k & 1))); };
    auto A = [&](int r, int k) {  // the lane holding (r, k) and its register
      const int l = 4 * (r % 8) + (k % 8) / 2, reg = (r / 8) + 2 * (k / 8);
      return InT::to_f32(half(cta.frags[6 * (w0 + l) + reg], k));
    };
    auto B = [&](int k, int n) {
      const int l = 4 * n + (k % 8) / 2, reg = k / 8;
      return InT::to_f32(half(cta.frags[6 * (w0 + l) + 4 + reg], k));
    };
    float out[4];
    for (int i = 0; i < 4; ++i) {
      const int r = acc_row(lane, i), n = acc_col(lane, i);
      float s = c[i];
      for (int k = 0; k < kK; ++k) s += A(r, k) * B(k, n);
      out[i] = s;
    }
    sync_warp();
    for (int i = 0; i < 4; ++i) c[i] = out[i];
  }
};

// ---- emulated MFMA atoms (MXF_EMULATE_WARP=64) -----------------------------------------
// C[16x16] += A[16 x K] * B[16 x K]^T, the accumulators of lane l at mfma.h's (acc_row,
// acc_col). 16-bit tiles as the Sm90 stand-in reads them; MX tiles raw: codes at
// MxSmemRow::data_byte, the block's e8m0 scale at MxSmemRow::scale_byte (2 * ld bytes per
// row), each element decoded and scaled exactly, products summed in fp32.
struct EmuTile {  // a fragment: where its rows start, their pitch, its first K element
  const uint16_t* p;
  int ld, k0;
};
template <class T>
inline float emu_elem(const EmuTile& t, int row, int k) {
  if constexpr (T::kMx) {
    const uint8_t* r = reinterpret_cast<const uint8_t*>(t.p + row * t.ld);
    const uint8_t byte = r[MxSmemRow<T>::data_byte(k)];
    const uint32_t code = T::kElemsPerByte == 2 ? ((k & 1) ? byte >> 4 : byte & 15u) : byte;
    const float v = T::kElemsPerByte == 2 ? e2m1_to_f32(uint8_t(code)) : e4m3_to_f32(uint8_t(code));
    return v * e8m0_to_f32(r[MxSmemRow<T>::scale_byte(2 * t.ld, k / 32)]);
  } else {
    return T::to_f32(t.p[row * t.ld + k]);
  }
}
template <int K, class AT, class BT>
struct EmuMfma16 : Mfma16Shape<K> {
  using S = Mfma16Shape<K>;
  using FragA = EmuTile;
  using FragB = EmuTile;
  using FragC = float[4];
  static void load_a(FragA& a, const uint16_t* t, int ld, int r0, int ks, int) { a = EmuTile{t + r0 * ld, ld, ks * K}; }
  static void load_b(FragB& b, const uint16_t* t, int ld, int n0, int ks, int) { b = EmuTile{t + n0 * ld, ld, ks * K}; }
  static void load_b2(FragB& b0, FragB& b1, const uint16_t* t, int ld, int n0, int ks, int lane) {
    load_b(b0, t, ld, n0, ks, lane);
    load_b(b1, t, ld, n0 + S::kN, ks, lane);
  }
  static void mma(FragC& c, const FragA& a, const FragB& b) {
    if (a.k0 != b.k0) { fprintf(stderr, "emulate: MFMA of fragments of two k steps\n"); abort(); }
    const int lane = lane_id();
    for (int i = 0; i < 4; ++i) {
      const int r = S::acc_row(lane, i), n = S::acc_col(lane, i);
      float s = c[i];
      for (int k = a.k0; k < a.k0 + K; ++k) s += emu_elem<AT>(a, r, k) * emu_elem<BT>(b, n, k);
      c[i] = s;
    }
  }
};
#if MXF_EMULATE_WARP == 64
template <class InT>
struct MmaAtom<Gfx942, InT> : EmuMfma16<16, InT, InT> {};
template <class InT>
struct MmaAtom<Gfx950, InT> : EmuMfma16<32, InT, InT> {};
template <class A, class B>
struct MmaAtom<Gfx950, MxPair<A, B>> : EmuMfma16<128, A, B> {};
#endif

// ---- host side ---------------------------------------------------------------------------
using Stream = void*;
inline Stream stream_of(int64_t) { return nullptr; }
inline char* status_buffer() {
  static thread_local char buf[512];
  return buf;
}
template <class... A>
inline Status errorf(const char* fmt, A... a) {
  snprintf(status_buffer(), 512, fmt, a...);
  return Status::error(status_buffer());
}
inline Status memset_async(void* p, int64_t bytes, Stream, const char*) {
  if (bytes > 0) memset(p, 0, size_t(bytes));
  return Status::ok();
}
// An H100's SM count: emulated launches choose between an instance and its decode variant
// as they would there.
inline int sm_count() { return 132; }

// Runs the grid: cluster after cluster, the CTAs of a cluster at the same time, each by a
// team of blockDim.x threads (a barrier of all the threads between clusters keeps them
// apart: the shared statics of one cluster are the next one's, and a cluster's CTAs share
// them, writing the same values: the kernels fill them from the CTA's block x, which a
// cluster of moe.cuh shares). Internal linkage (static): a test links units of both warp
// sizes, whose launchers must not be merged into one.
template <class... P, class... A>
static inline Status launch_cluster(void (*kernel)(P...), dim3 grid, dim3 block, dim3 cluster, size_t smem,
                             Stream, const char*, A&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return Status::ok();
  if (smem > 232448) return errorf("needs %zu bytes of shared memory per block", smem);
  if (grid.x % cluster.x || grid.y % cluster.y || grid.z % cluster.z)
    return errorf("grid (%u, %u, %u) is not a multiple of the cluster (%u, %u, %u)", grid.x, grid.y, grid.z,
                  cluster.x, cluster.y, cluster.z);
  const unsigned n = cluster.x * cluster.y * cluster.z;
  emu::Cluster cl;
  cl.barrier.reset(new emu::Barrier(int(n * block.x)));
  for (unsigned i = 0; i < n; ++i) {
    cl.ctas.emplace_back(new emu::Cta);
    emu::Cta& c = *cl.ctas.back();
    c.grid = grid;
    c.block = block;
    c.cluster = &cl;
    c.smem.assign(smem + 16, 0xA5);  // garbage, like real shared memory
    c.slots.assign(block.x, 0);
    c.frags.assign(6 * size_t(block.x), 0);
    c.cta_barrier.reset(new emu::Barrier(int(block.x)));
    for (unsigned w = 0; w < (block.x + kWarpSize - 1) / kWarpSize; ++w)
      c.warp_barriers.emplace_back(new emu::Barrier(kWarpSize));
  }
  std::vector<std::thread> team;
  team.reserve(n * block.x);
  for (unsigned i = 0; i < n; ++i)
    for (unsigned t = 0; t < block.x; ++t)
      team.emplace_back([&, i, t] {
        emu::tid() = int(t);
        emu::Cta& c = *cl.ctas[i];
        emu::current_cta() = &c;
        const unsigned ix = i % cluster.x, iy = i / cluster.x % cluster.y, iz = i / (cluster.x * cluster.y);
        for (unsigned z = 0; z < grid.z; z += cluster.z)
          for (unsigned y = 0; y < grid.y; y += cluster.y)
            for (unsigned x = 0; x < grid.x; x += cluster.x) {
              if (t == 0) c.index = dim3(x + ix, y + iy, z + iz);
              cl.barrier->wait();
              kernel(args...);
              cl.barrier->wait();
            }
      });
  for (auto& th : team) th.join();
  return Status::ok();
}
template <class... P, class... A>
static inline Status launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, Stream stream,
                     const char* what, A&&... args) {
  return launch_cluster(kernel, grid, block, dim3(1, 1, 1), smem, stream, what, static_cast<A&&>(args)...);
}

}  // namespace dev
}  // namespace mxf
