#!/usr/bin/env bash
# session 29 call 1: the one-stage swapped kernel (moe_1stage, b_path swap; moe.cuh,
# OneStageSwap). Build its 16 instances, the shared-memory one-stage ones and every instance
# the tuned table names up to T = 64 (only-s29a.txt); GPU tests of the new instances (model
# shapes at several T, one expert, odd dims, wide scales), fused_moe's one-stage path and
# the back-to-back graph test with it; then mxforge tune at T = 1 ... 64 (one stage against
# the chosen two stages, each as the whole layer, same run) and the layer both ways.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY_FILE=benchmarks/2026-12-02-h200-session29/calls/only-s29a.txt scripts/gpu-build-subset 'sm90_moe_1stage_*' || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,2,3,8,16,64,300 timeout 240 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "(1stage and bswap) or one_stage" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-250 | tail -14
echo "tests: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  left=$(( 560 - ($(date +%s) - t0) )); [ $left -lt 30 ] && break
  timeout $left python3 -m mxforge tune --model $m --T 1 2 4 8 16 32 64 --pipelines a4w4-bf16inter a16w4 \
    --layout pairbits --verbose --out "$OUT/tune-$m.csv" > "$OUT/tune-$m.txt" 2>&1
  grep -E "^$m|rror" "$OUT/tune-$m.txt" | cut -c1-330
  echo "tune $m: $(( $(date +%s) - t0 )) s"
done
echo "total $(( $(date +%s) - t0 )) s"
