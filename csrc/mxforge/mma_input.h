// What the MMA atoms multiply, per arch (portable vocabulary of the device layer; the
// arch headers specialize MmaInput). Included by device.h and by the host test backend.
#pragma once
#include "mxforge/numerics.h"
#include "mxforge/types.h"

namespace mxf {
namespace dev {

// ---- MMA inputs (portable vocabulary; the arch sections specialize MmaInput) ----------
// What an MMA atom multiplies: a 16-bit float type InT (Bf16 / Fp16: both operands are
// dequantized exactly into it in shared memory), or MxPair<A, B> (MX operands stay codes
// plus e8m0 scales in shared memory, for MMAs that take MX inputs natively).
template <class A, class B>
struct MxPair {
  using AT = A;
  using BT = B;
};
// The shared-memory format of an operand of dtype T under MMA input InT.
template <class InT, class T>
struct SmemOf { using type = InT; };
template <class A, class B, class T>
struct SmemOf<MxPair<A, B>, T> { using type = T; };
// The arch's MMA input for activations AT x weights BT. Default: fp16 activations keep
// fp16 (bf16 would round them), everything else runs in bf16.
template <class Arch, class AT, class BT>
struct MmaInput { using type = Bf16; };
template <class Arch, class BT>
struct MmaInput<Arch, Fp16, BT> { using type = Fp16; };

// An MX operand kept raw in a shared-memory row of `pitch` bytes: element codes from
// byte 0, the e8m0 scales of the row's 32-element blocks in its last 16 bytes (the 16-byte
// row padding every tile has; block_k <= 256 gives at most 8 scales). The loader that
// writes it and the atom that reads it both use this.
template <class MxT>
struct MxSmemRow {
  MXF_HD static int data_byte(int k) { return k / MxT::kElemsPerByte; }
  MXF_HD static int scale_byte(int pitch, int kblock) { return pitch - 16 + kblock; }
};

}  // namespace dev
}  // namespace mxf
