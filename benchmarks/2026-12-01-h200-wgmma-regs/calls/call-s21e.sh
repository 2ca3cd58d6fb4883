#!/usr/bin/env bash
# session 21 call 5: stage 2's 8-wide bf16 reductions (REDG.BF16x8): full build, stage-2 instance tests
# (odd dims, unaligned output rows), fused_moe through the merged table, bench T = 2048 ... 8192.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
python3 build.py --set default --target sm90 -j "$(nproc)" > $OUT/build.log 2>&1 || { echo BUILD FAILED; tail -30 $OUT/build.log; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 130 python3 -m pytest -q -m gpu tests/test_gpu.py -k "moe_stage2 and (odd_dims or unaligned_output)" \
  -n 4 -p no:cacheprovider --maxfail=8 2>&1 | tee $OUT/pytest-stage2.log | tail -3
echo "tests stage2: $(( $(date +%s) - t0 )) s"
MXFORGE_TUNED=.ab/merged-s21.csv MXFORGE_GPU_TOKENS=5,2048,4096 timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py -k "test_fused_moe and not back_to_back and not graph" \
  -n 4 -p no:cacheprovider --maxfail=8 2>&1 | tee $OUT/pytest-fused.log | tail -3
echo "tests fused: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  MXFORGE_TUNED=.ab/merged-s21.csv timeout 100 python3 -m mxforge bench --model $m --T 2048 4096 8192 --stages --out $OUT/red8-$m 2>&1 | grep "^$m" | cut -c1-200
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
