// Small pieces every GPU op of the tile layer shares: type helpers, element I/O of the
// float-like dtypes, and the host-side checks of the launch functions. Portable (device
// layer only).
#pragma once
#include <stdint.h>

#include "mxforge/args.h"
#include "mxforge/device.h"
#include "mxforge/numerics.h"
#include "mxforge/types.h"

namespace mxf {
namespace gpu {

// <type_traits> without depending on a host standard library in device-only HIP builds.
template <class A, class B>
struct IsSame { static constexpr bool value = false; };
template <class A>
struct IsSame<A, A> { static constexpr bool value = true; };
template <int V>
struct IntConst { static constexpr int value = V; };  // (a compile-time value as an argument)
template <bool C, class A, class B>
struct Cond { using type = A; };
template <class A, class B>
struct Cond<false, A, B> { using type = B; };

template <class T>
MXF_HD constexpr T cmin(T a, T b) { return a < b ? a : b; }
template <class T>
MXF_HD constexpr T cmax(T a, T b) { return a > b ? a : b; }
MXF_HD constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Where the routed weight is applied (schema field routed_weight).
enum class Rw { kNone, kStage1, kStage2 };

// Elements of the float-like dtypes as they sit in memory. The C++ tag of fp32 is plain
// `float` (see codegen/render.py CPP). from_bits(u, i): element i of 32-bit words `u`
// (a vector load's payload), by shifts: never by pointer punning of a local.
template <class T>
struct Io;
template <>
struct Io<Bf16> {
  using S = uint16_t;
  MXF_HD static float get(const S* p, int64_t i) { return bf16_to_f32(p[i]); }
  MXF_HD static float from_bits(const uint32_t* u, int i) { return bf16_to_f32(uint16_t(u[i / 2] >> (16 * (i % 2)))); }
  MXF_HD static S put(float v) { return f32_to_bf16(v); }
};
template <>
struct Io<Fp16> {
  using S = uint16_t;
  MXF_HD static float get(const S* p, int64_t i) { return f16_to_f32(p[i]); }
  MXF_HD static float from_bits(const uint32_t* u, int i) { return f16_to_f32(uint16_t(u[i / 2] >> (16 * (i % 2)))); }
  MXF_HD static S put(float v) { return f32_to_f16(v); }
};
template <>
struct Io<float> {
  using S = float;
  MXF_HD static float get(const S* p, int64_t i) { return p[i]; }
  MXF_HD static float from_bits(const uint32_t* u, int i) { return bits_f32(u[i]); }
  MXF_HD static S put(float v) { return v; }
};
template <>
struct Io<Fp32> : Io<float> {};

MXF_HD bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Zeroes bytes [0, bytes) of `buf`, thread `first` of `stride` threads: the bytes up to the
// first 16-byte boundary, 16-byte stores, then the tail bytes (moe_sort's zero_buf, and
// stage 1's under direct routing).
MXF_DEV void zero_span(void* buf, int64_t bytes, int64_t first, int64_t stride) {
  uint8_t* z = static_cast<uint8_t*>(buf);
  const int64_t head = cmin<int64_t>(bytes, (16 - int64_t(reinterpret_cast<uintptr_t>(z) & 15)) & 15);
  const int64_t body = (bytes - head) / 16;
  for (int64_t i = first; i < head; i += stride) z[i] = 0;
  for (int64_t i = first; i < body; i += stride) dev::st16(z + head + 16 * i, dev::zero16());
  for (int64_t i = head + 16 * body + first; i < bytes; i += stride) z[i] = 0;
}

// ---- host-side argument checks --------------------------------------------------------
// Each returns true when the argument is bad, after putting the message in `st`, so a
// launcher reads `if (bad(...)) return st;`.
struct Check {
  Status st = Status::ok();
  bool null(const void* p, const char* what) {
    if (p != nullptr) return false;
    st = Status::error(what);
    return true;
  }
  bool fail(bool cond, const char* what) {
    if (!cond) return false;
    st = Status::error(what);
    return true;
  }
};

}  // namespace gpu
}  // namespace mxf
