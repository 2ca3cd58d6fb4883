#!/usr/bin/env bash
# session 30 call 1: the wgmma_regs tile's weights through a cp.async ring in shared memory
# (SmemFragRing, 4 k-tiles deep) instead of register stages (one k-tile at two CTAs per SM).
# Before (HEAD's gemm.cuh / moe.cuh / device.h from .ab/before): build the instances the
# tuned table picks at T = 512, 1024, 2048 (only-s30a.txt), bench both models with stage
# times. New: the same plus every wgmma_regs instance, their GPU tests (all token counts,
# odd dims, wide scales), the same bench. One GPU, one run: the floors measured in each bench.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-03-h200-session30/calls
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
SAVE=$(mktemp -d)
FILES="csrc/mxforge/device.h csrc/mxforge/gpu/gemm.cuh csrc/mxforge/gpu/moe.cuh"
for f in $FILES; do mkdir -p $SAVE/$(dirname $f); cp $f $SAVE/$f; cp .ab/before/$f $f; done
bench() {
  for m in minimax-m2.1-tp8 gpt-oss-120b; do
    timeout 100 python3 -m mxforge bench --model $m --T 512 1024 2048 --stages --out "$OUT/$1-$m" 2>&1 |
      grep "^$m" | sed "s/^/$1 /" | cut -c1-200
  done
  echo "bench $1: $(( $(date +%s) - t0 )) s"
}
LOG=build/before.log ONLY_FILE=$D/only-s30a.txt scripts/gpu-build-subset || exit 1
echo "build before: $(( $(date +%s) - t0 )) s"
bench before
for f in $FILES; do cp $SAVE/$f $f; done
LOG=build/new.log ONLY_FILE=$D/only-s30a.txt scripts/gpu-build-subset 'sm90_moe_*wgmma_regs*' || exit 1
echo "build new: $(( $(date +%s) - t0 )) s"
bench new
MXFORGE_GPU_TOKENS=1,3,64,129,512,2048 timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "wgmma_regs" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-250 | tail -14
echo "total $(( $(date +%s) - t0 )) s"
