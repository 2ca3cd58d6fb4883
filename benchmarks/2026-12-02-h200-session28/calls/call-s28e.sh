#!/usr/bin/env bash
# session 28 call 5 (after the review): the final tree's code (two comment lines in
# gemm.cuh / moe.cuh changed after call 3): the block_m 32 pairbits instances built, the
# GPU tests of the 12 pairbits block_m 32 wgmma_regs instances, then scripts/gpu-retune
# (new: the tune / merge / bench steps of calls 1 and 2 in one script) on MiniMax TP=8 at
# T = 512 over the block_m 32 instances: the tree's table benched against the re-tuned one.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
scripts/gpu-build-subset 'sm90_moe_*_m32_*_pairbits*' || exit 1
MXFORGE_GPU_TOKENS=3,300,1024 timeout 100 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "_m32_ and pairbits_bwgmma_regs" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-300 | tail -6
echo "tests: $(( $(date +%s) - t0 )) s"
T=512 ONLY='sm90_moe_stage*_m32_*' TUNE_S=60 BENCH_S=40 scripts/gpu-retune minimax-m2.1-tp8
echo "total $(( $(date +%s) - t0 )) s"
