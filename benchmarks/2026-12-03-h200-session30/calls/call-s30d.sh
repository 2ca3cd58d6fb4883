#!/usr/bin/env bash
# session 30 call 4: (1) the fence probe (calls/fence_probe.cu): does each k-tile's proxy
# fence (MEMBAR.ALL.CTA + FENCE.VIEW.ASYNC.S) wait for the thread's cp.async copies, or plain
# loads, in flight? (2) the final tree (no kernel changed this session) with the whole
# default set for sm90: the new GPU test of fused_moe taking the split quant+sort pair where
# a tuned row says so, and fused_moe's tests on pairbits weights (every model, dtype pair)
# at T = 1, 3, 64, 512, 2048, 8192.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
nvcc -arch=sm_90a -O3 -o /tmp/fence_probe benchmarks/2026-12-03-h200-session30/calls/fence_probe.cu &&
  /tmp/fence_probe | tee "$OUT/fence-probe.txt"
scripts/gpu-build-subset || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,3,64,512,2048,8192 timeout 300 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "split_quant_sort or (test_fused_moe and pairbits and not one_stage)" -n 8 -p no:cacheprovider -rf \
  > "$OUT/pytest.log" 2>&1
echo "pytest rc=$?: $(( $(date +%s) - t0 )) s"
grep -E "passed|failed|FAILED|rror" "$OUT/pytest.log" | cut -c1-250 | tail -14
echo "total $(( $(date +%s) - t0 )) s"
