#!/usr/bin/env bash
# session 22 call 4: the shipped tree (the half-group change reverted), full default build; the
# shipped table's layer at T = 1, 64, 512, 2048, 4096, 8192 (session 21 left a16w4 at 2048 /
# 4096 estimated, not measured).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
python3 build.py --set default --target sm90 -j "$(nproc)" > $OUT/build.log 2>&1 || { echo BUILD FAILED; tail -30 $OUT/build.log; exit 1; }
grep -i spill $OUT/build.log | head -5; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout $(( 590 - ($(date +%s) - t0) )) python3 -m mxforge bench --model $m --T 1 64 512 2048 4096 8192 --stages \
    --out $OUT/shipped-$m 2>&1 | grep -E "^$m|^# " | cut -c1-220
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
