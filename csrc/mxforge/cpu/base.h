// The CPU tile layer (host C++17 + OpenMP): what every cpu instance shares.
//
//   base.h   dtype tags, per-thread scratch, thread helpers (this file)
//   load.h   operand views and row loaders: a K-chunk of an A or B row -> fp32
//   quant.h  the MX block quantizer / dequantizer (also stage 1's re-quantized output)
//   pack.h   mx_pack (plain <-> a weight layout)
//   sort.h   moe_sort (and the sort half of fused_quant_sort)
//   gemm.h   the GEMM over one sorted block: routing, A panel, B tile, micro-kernel
//   moe.h    stage 1, stage 2 and 1stage: drivers and epilogues on top of gemm.h
//
// Each templates/cpu/<op>.cpp.j2 instantiates one entry of these headers; no kernel code
// lives in the templates. Results are deterministic: the same inputs give the same bytes
// for any thread count (every output element is computed by one fixed sequence of fp32
// operations; see gemm.h for the summation order).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <memory>
#include <new>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "mxforge/activation.h"
#include "mxforge/args.h"
#include "mxforge/layout.h"
#include "mxforge/numerics.h"
#include "mxforge/registry.h"
#include "mxforge/types.h"

namespace mxf {
namespace cpu {

// codegen spells fp32 as `float`; the tile layer wants a tag with to_f32/from_f32.
template <class T>
struct TagOf { using type = T; };
template <>
struct TagOf<float> { using type = Fp32; };
template <class T>
using tag_t = typename TagOf<T>::type;

template <class Tag>
constexpr int64_t mx_bytes_per_row(int64_t K) {  // packed bytes of K elements (K % 32 == 0)
  return K / Tag::kElemsPerByte;
}

// The four 32-bit words of a 16-byte chunk of e2m1 codes, natural -> Bits' (to_layout)
// or back (layout.h: the identity for NaturalBits).
template <class Bits>
inline void recode_words(uint8_t* p, bool to_layout) {
  for (int q = 0; q < 4; ++q) {
    uint32_t w;
    memcpy(&w, p + 4 * q, 4);
    w = to_layout ? Bits::encode(w) : Bits::natural(w);
    memcpy(p + 4 * q, &w, 4);
  }
}

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Per-thread fp32 scratch, allocated before a parallel region (no exception may escape an
// OpenMP region): thread i uses floats [i * per_thread, (i + 1) * per_thread).
class Scratch {
 public:
  bool allocate(int threads, size_t per_thread_floats) {
    per_thread_ = (per_thread_floats + 15) & ~size_t(15);  // 64-byte separation
    buf_.reset(new (std::nothrow) float[size_t(threads) * per_thread_ + 16]);
    return buf_ != nullptr;
  }
  float* get(int tid) const {
    float* base = buf_.get();
    base += (16 - (reinterpret_cast<uintptr_t>(base) / sizeof(float)) % 16) % 16;  // align 64
    return base + size_t(tid) * per_thread_;
  }

 private:
  std::unique_ptr<float[]> buf_;
  size_t per_thread_ = 0;
};

// Zero n bytes in parallel (moe_sort's zero_buf can be [8192, 3072] bf16).
inline void parallel_zero(void* p, int64_t n) {
  if (p == nullptr || n <= 0) return;
  const int64_t chunk = int64_t(1) << 20;
  const int64_t pieces = cdiv(n, chunk);
#pragma omp parallel for schedule(static) if (pieces > 1)
  for (int64_t i = 0; i < pieces; ++i) {
    int64_t b = i * chunk, len = n - b < chunk ? n - b : chunk;
    memset(static_cast<uint8_t*>(p) + b, 0, size_t(len));
  }
}

}  // namespace cpu
}  // namespace mxf
