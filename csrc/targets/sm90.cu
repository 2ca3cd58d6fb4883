// Runtime hooks of the sm90 target (NVIDIA Hopper, sm_90a code only).
#include <cuda_runtime.h>
#include <stdio.h>

namespace mxf {

// Null when the current CUDA device can run this module's sm_90a code, else why not.
// Never throws or aborts: without a driver or a GPU the runtime returns an error code.
const char* availability_sm90() {
  static thread_local char msg[256];
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    snprintf(msg, sizeof msg, "no CUDA device: %s", cudaGetErrorString(e));
    cudaGetLastError();  // do not leave the error for the next launch to report
    return msg;
  }
  if (count == 0) return "no CUDA device";
  int dev = 0, major = 0, minor = 0;
  if ((e = cudaGetDevice(&dev)) != cudaSuccess ||
      (e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev)) != cudaSuccess ||
      (e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev)) != cudaSuccess) {
    snprintf(msg, sizeof msg, "cannot query CUDA device: %s", cudaGetErrorString(e));
    cudaGetLastError();
    return msg;
  }
  // sm_90a (arch-specific) code runs on compute capability 9.0 only.
  if (major != 9 || minor != 0) {
    snprintf(msg, sizeof msg, "device %d is sm_%d%d, this module has sm_90a code only", dev,
             major, minor);
    return msg;
  }
  return nullptr;
}

}  // namespace mxf
