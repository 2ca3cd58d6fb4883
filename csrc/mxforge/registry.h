// Registry types: every compiled instance is one row; the generated registry_<target>.cpp
// of each target defines its table, and the module exposes them all.
#pragma once
#include <stdint.h>

namespace mxf {

// Result of a launch: ok, or a message that the runtime raises as an exception.
struct Status {
  int code = 0;  // 0 = ok
  const char* message = "";
  static Status ok() { return Status{}; }
  static Status error(const char* m) { return Status{1, m}; }
};

using LaunchFn = Status (*)(const void* args);

// Whether the kernels the op now running on this thread launches may use programmatic
// dependent launch (sm_90: a kernel's CTAs may start before the one before it on the stream
// ends; device.h, launch_cluster). The module's launch entry sets it for the duration of one
// op, as Python decides per call (mxforge.ops.dependent_launch), and clears it after; targets
// without the feature ignore it. Thread-local: ops on other threads decide for themselves.
inline bool& dependent_launch_allowed() {
  static thread_local bool allowed = false;
  return allowed;
}

struct InstanceInfo {
  const char* name;  // canonical name (encodes every field below)
  const char* target;
  const char* op;
  const char* args_type;  // QuantArgs, PackArgs, SortArgs, FusedQuantSortArgs, MoeGemmArgs
  const char* a;
  const char* b;
  const char* out;
  int block_m, block_n, block_k, split_k;
  const char* activation;
  const char* gate_up;
  const char* routed_weight;
  int bias;
  const char* layout;
  const char* b_path;  // moe_stage1/2: "smem", "regs", "wgmma", "swap" or "wgmma_regs"; "" for other ops
  int cluster_k;       // moe_stage1/2: CTAs of a cluster sharing a tile's K (1: none); 1 elsewhere
  int n_tiles;         // moe_stage2: N tiles of its block one CTA computes (1: one); 1 elsewhere
  LaunchFn launch;
};

struct TargetRegistry {
  const char* target;
  const InstanceInfo* instances;
  int count;
  // Is the target usable in this process (e.g. a GPU present)? Null message if yes.
  const char* (*availability)();
};

}  // namespace mxf
