// Runtime of the AMD targets (gfx942, gfx950): the HIP loader. Host C++ only, no HIP
// headers: the few HIP API entry points used are declared here as function pointer types
// and resolved from libamdhip64.so with dlopen/dlsym the first time they are needed, so
// the module imports (and the cpu/sm90 instances run) where no HIP runtime exists.
//
// Code objects (one per instance and arch, embedded by codegen/embed_hsaco.py) are
// loaded with hipModuleLoadData once per device; kernels are looked up with
// hipModuleGetFunction by the symbol embed_hsaco.py recorded for their template name, and
// launched with hipModuleLaunchKernel on the caller's stream (torch's current stream,
// passed from Python as for sm90). Handles are cached per (code object, device).
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <type_traits>
#include <string>
#include <unordered_map>

#include "mxforge/hip_loader.h"
#include "mxforge/registry.h"

namespace mxf {
namespace dev {

// Status message buffer of the calling thread (the device layer's errorf for AMD).
Status errorf(const char* fmt, ...) {
  static thread_local char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return Status::error(buf);
}

}  // namespace dev

namespace hip {
namespace {

// hip_runtime_api.h, as far as used here (stable C ABI across ROCm 5-7).
using hipError_t = int;
constexpr hipError_t hipSuccess = 0;
using hipModule_t = void*;
using hipFunction_t = void*;
using hipStream_t = void*;

struct Api {
  hipError_t (*Init)(unsigned);
  hipError_t (*GetDeviceCount)(int*);
  hipError_t (*GetDevice)(int*);
  hipError_t (*ModuleLoadData)(hipModule_t*, const void*);
  hipError_t (*ModuleGetFunction)(hipFunction_t*, hipModule_t, const char*);
  hipError_t (*ModuleLaunchKernel)(hipFunction_t, unsigned, unsigned, unsigned, unsigned,
                                   unsigned, unsigned, unsigned, hipStream_t, void**, void**);
  hipError_t (*MemsetAsync)(void*, int, size_t, hipStream_t);
  const char* (*GetErrorString)(hipError_t);
  const char* (*GetErrorName)(hipError_t);
  std::string error;  // non-empty: the runtime is unusable, and why
};

// Candidate names of the HIP runtime: the plain soname (LD_LIBRARY_PATH, ldconfig, or a
// ROCm torch that already loaded it), versioned sonames, then $ROCM_PATH and /opt/rocm.
std::string load_library(void** handle) {
  std::string tried;
  std::string paths[6] = {"libamdhip64.so", "libamdhip64.so.7", "libamdhip64.so.6", "", "",
                          "/opt/rocm/lib/libamdhip64.so"};
  if (const char* rocm = getenv("ROCM_PATH")) paths[3] = std::string(rocm) + "/lib/libamdhip64.so";
  if (const char* home = getenv("HIP_PATH")) paths[4] = std::string(home) + "/lib/libamdhip64.so";
  for (const std::string& p : paths) {
    if (p.empty()) continue;
    *handle = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (*handle != nullptr) return "";
    const char* why = dlerror();
    if (tried.empty()) tried = why != nullptr ? why : p;
  }
  return "HIP runtime not found: dlopen(libamdhip64.so) failed (" + tried +
         "); install ROCm or set ROCM_PATH / LD_LIBRARY_PATH";
}

const Api& api() {
  static const Api a = [] {
    Api r{};
    void* h = nullptr;
    r.error = load_library(&h);
    if (!r.error.empty()) return r;
    auto sym = [&](const char* name, auto& fn) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (fn == nullptr && r.error.empty())
        r.error = std::string("libamdhip64.so has no ") + name;
    };
    sym("hipInit", r.Init);
    sym("hipGetDeviceCount", r.GetDeviceCount);
    sym("hipGetDevice", r.GetDevice);
    sym("hipModuleLoadData", r.ModuleLoadData);
    sym("hipModuleGetFunction", r.ModuleGetFunction);
    sym("hipModuleLaunchKernel", r.ModuleLaunchKernel);
    sym("hipMemsetAsync", r.MemsetAsync);
    sym("hipGetErrorString", r.GetErrorString);
    sym("hipGetErrorName", r.GetErrorName);
    if (r.error.empty() && r.Init(0) != hipSuccess) r.error = "hipInit failed";
    return r;
  }();
  return a;
}

Status hip_status(hipError_t e, const char* what) {
  if (e == hipSuccess) return Status::ok();
  const Api& a = api();
  return dev::errorf("%s: %s (%s)", what, a.GetErrorString(e), a.GetErrorName(e));
}

// (code object, device) -> module, and (code object, device, kernel) -> function.
struct Cache {
  std::mutex mu;
  std::unordered_map<std::string, hipModule_t> modules;
  std::unordered_map<std::string, hipFunction_t> functions;
};
Cache& cache() {
  static Cache c;
  return c;
}

Status function_of(const KernelRef& k, hipFunction_t* fn) {
  const Api& a = api();
  if (!a.error.empty()) return dev::errorf("%s", a.error.c_str());
  int device = 0;
  if (hipError_t e = a.GetDevice(&device)) return hip_status(e, "hipGetDevice");
  const char* symbol = nullptr;
  for (int i = 0; i < k.code->kernel_count; ++i)
    if (strcmp(k.code->kernels[i].name, k.name) == 0) symbol = k.code->kernels[i].symbol;
  if (symbol == nullptr)
    return dev::errorf("%s (%s): the code object has no kernel %s", k.code->instance,
                       k.code->arch, k.name);
  const std::string mkey = std::to_string(reinterpret_cast<uintptr_t>(k.code)) + "/" +
                           std::to_string(device);
  const std::string fkey = mkey + "/" + k.name;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto f = c.functions.find(fkey);
  if (f != c.functions.end()) {
    *fn = f->second;
    return Status::ok();
  }
  auto m = c.modules.find(mkey);
  if (m == c.modules.end()) {
    hipModule_t mod = nullptr;
    if (hipError_t e = a.ModuleLoadData(&mod, k.code->image))
      return dev::errorf("%s: its %s code object does not load on HIP device %d (is the device "
                         "a %s?): %s (%s)", k.code->instance, k.code->arch, device, k.code->arch,
                         a.GetErrorString(e), a.GetErrorName(e));
    m = c.modules.emplace(mkey, mod).first;
  }
  if (hipError_t e = a.ModuleGetFunction(fn, m->second, symbol))
    return hip_status(e, "hipModuleGetFunction");
  c.functions.emplace(fkey, *fn);
  return Status::ok();
}

}  // namespace

Status launch(const KernelRef& k, const unsigned grid[3], const unsigned block[3], unsigned smem,
              void* stream, void** params, const char* what) {
  hipFunction_t fn = nullptr;
  Status st = function_of(k, &fn);
  if (st.code != 0) return st;
  return hip_status(api().ModuleLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1],
                                             block[2], smem, stream, params, nullptr),
                    what);
}

const char* availability(const char* arch) {
  const Api& a = api();
  if (!a.error.empty()) return a.error.c_str();
  int count = 0;
  if (a.GetDeviceCount(&count) != hipSuccess || count == 0) {
    static thread_local char msg[160];
    snprintf(msg, sizeof msg, "no HIP device (the %s code objects need an AMD GPU)", arch);
    return msg;
  }
  return nullptr;
}

}  // namespace hip

namespace dev {
Status memset_async(void* p, int64_t bytes, void* stream, const char* what) {
  if (bytes <= 0) return Status::ok();
  const hip::Api& a = hip::api();
  if (!a.error.empty()) return errorf("%s", a.error.c_str());
  return hip::hip_status(a.MemsetAsync(p, 0, size_t(bytes), stream), what);
}
}  // namespace dev

const char* availability_gfx942() { return hip::availability("gfx942"); }
const char* availability_gfx950() { return hip::availability("gfx950"); }

}  // namespace mxf
