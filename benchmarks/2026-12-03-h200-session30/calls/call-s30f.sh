#!/usr/bin/env bash
# session 30 call 6: the wgmma_regs tile's activation staging shared out over both
# warpgroups at block_m 16 / 32 (WgmmaRegsAct kGroups > 1; call 5's Nsight Compute showed
# the first warpgroup staging alone and the other waiting at each k-tile's barrier). Before
# (HEAD's gemm.cuh / device.h from .ab/before) and new, same run: the instances the tuned
# table picks at T = 512 (only-s30f.txt; kept small: ~4 minutes of device time were left),
# bench both models at T = 512 with stage times; then the GPU tests of the wgmma_regs
# instances built (block_m 32: stage 1 of both models, gpt-oss' stage 2) on the new build.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-03-h200-session30/calls
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
SAVE=$(mktemp -d)
FILES="csrc/mxforge/device.h csrc/mxforge/gpu/gemm.cuh"
for f in $FILES; do mkdir -p $SAVE/$(dirname $f); cp $f $SAVE/$f; cp .ab/before/$f $f; done
bench() {
  for m in minimax-m2.1-tp8 gpt-oss-120b; do
    timeout 40 python3 -m mxforge bench --model $m --T 512 --stages --out "$OUT/$1-$m" 2>&1 |
      grep "^$m" | sed "s/^/$1 /" | sed 's/ pairbits atomic two_stage//; s/quant+sort split [0-9.]*, //' | cut -c1-150
  done
  echo "bench $1: $(( $(date +%s) - t0 )) s"
}
LOG=build/before.log ONLY_FILE=$D/only-s30f.txt scripts/gpu-build-subset || exit 1
echo "build before: $(( $(date +%s) - t0 )) s"
bench before
for f in $FILES; do cp $SAVE/$f $f; done
LOG=build/new.log ONLY_FILE=$D/only-s30f.txt scripts/gpu-build-subset || exit 1
echo "build new: $(( $(date +%s) - t0 )) s"
bench new
MXFORGE_GPU_TOKENS=1,3,64,512 timeout 80 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "wgmma_regs" -n 8 -p no:cacheprovider -rf > "$OUT/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "passed|failed|FAILED|rror" "$OUT/pytest.log" | cut -c1-250 | tail -8
echo "total $(( $(date +%s) - t0 )) s"
