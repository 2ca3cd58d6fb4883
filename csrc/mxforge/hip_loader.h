// The HIP loader's interface (host code only; no HIP headers): code objects embedded in
// the module, kernels named in them, and launches through the HIP module API. The loader
// (csrc/targets/amd.cpp) opens libamdhip64.so with dlopen the first time an AMD kernel is
// launched or an AMD target's availability is asked, so the module imports and the other
// targets run where no HIP runtime exists.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "mxforge/registry.h"

namespace mxf {
namespace hip {

// One kernel of a code object: its template name in csrc/mxforge/gpu/ (what launchers
// name) and its symbol in the code object.
struct KernelName {
  const char* name;
  const char* symbol;
};

// An instance's .hsaco for one arch, embedded by codegen/embed_hsaco.py.
struct CodeObject {
  const char* instance;  // canonical instance name (for messages)
  const char* arch;      // gfx942 / gfx950
  const unsigned char* image;
  size_t size;
  const KernelName* kernels;
  int kernel_count;
};

struct KernelRef {
  const CodeObject* code;
  const char* name;  // template name, e.g. "moe_stage1_kernel"
};

// Loads `k.code` on the current device (once per device), finds the kernel and launches
// it with hipModuleLaunchKernel on `stream`. `params`: one pointer per kernel parameter.
Status launch(const KernelRef& k, const unsigned grid[3], const unsigned block[3], unsigned smem,
              void* stream, void** params, const char* what);

// Null when the HIP runtime loads and has a device, else why not (the target's
// availability; whether the device is this arch shows when its code object loads).
const char* availability(const char* arch);

}  // namespace hip
}  // namespace mxf
