// session 30: does fence.proxy.async (MEMBAR.ALL.CTA + FENCE.VIEW.ASYNC.S) wait for this
// thread's cp.async copies (LDGSTS) in flight, or for its plain loads in flight? Each thread
// issues one 16-byte copy / load from a cold buffer, then times the fence with clock64.
//   nvcc -arch=sm_90a -O3 -o /tmp/fence_probe fence_probe.cu && /tmp/fence_probe
#include <cstdio>
#include <cstdint>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>

__device__ __forceinline__ void fence_proxy() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// mode 0: nothing in flight; 1: a cp.async in flight; 2: a plain 16-byte load in flight
// (its value used after the second clock); 3: cp.async in flight, no fence (the clock pair alone)
__global__ void probe(const uint4* __restrict__ src, long long* out, int mode, uint4* sink) {
  __shared__ uint4 buf[256];
  const int t = threadIdx.x;
  const uint4* p = src + (size_t(blockIdx.x) * blockDim.x + t) * 64;  // a line of its own
  uint4 v = make_uint4(0, 0, 0, 0);
  const uint32_t sa = uint32_t(__cvta_generic_to_shared(&buf[t]));
  if (mode == 1 || mode == 3) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sa), "l"(p) : "memory");
    asm volatile("cp.async.commit_group;" ::: "memory");
  } else if (mode == 2) {
    asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  }
  long long t0 = clock64();
  if (mode != 3) fence_proxy();
  long long t1 = clock64();
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  long long t2 = clock64();
  if (t == 0) {
    out[3 * blockIdx.x] = t1 - t0;
    out[3 * blockIdx.x + 1] = t2 - t1;
  }
  if (v.x == 12345u) sink[t] = v;  // (keeps the load)
}

int main() {
  const int blocks = 132, threads = 256;
  uint4* src;
  uint4* sink;
  long long* out;
  cudaMalloc(&src, size_t(blocks) * threads * 64 * 16 * 4);
  cudaMalloc(&sink, 256 * 16);
  cudaMalloc(&out, blocks * 3 * sizeof(long long));
  const char* names[] = {"nothing in flight", "a cp.async in flight", "a plain load in flight", "cp.async, no fence"};
  for (int mode = 0; mode < 4; ++mode) {
    std::vector<long long> f, w;
    for (int rep = 0; rep < 5; ++rep) {
      // a different part of the buffer each time: cold in L2 (the buffer is 4x L2... per part)
      probe<<<blocks, threads>>>(src + size_t(rep % 4) * blocks * threads * 64, out, mode, sink);
      cudaDeviceSynchronize();
      std::vector<long long> h(blocks * 3);
      cudaMemcpy(h.data(), out, h.size() * sizeof(long long), cudaMemcpyDeviceToHost);
      for (int b = 0; b < blocks; ++b) f.push_back(h[3 * b]), w.push_back(h[3 * b + 1]);
    }
    std::sort(f.begin(), f.end());
    std::sort(w.begin(), w.end());
    printf("%-24s fence: median %6lld cycles (p10 %6lld, p90 %6lld); then wait_group 0: median %6lld\n", names[mode],
           f[f.size() / 2], f[f.size() / 10], f[f.size() * 9 / 10], w[w.size() / 2]);
  }
  printf("%s\n", cudaGetErrorString(cudaGetLastError()));
  return 0;
}
