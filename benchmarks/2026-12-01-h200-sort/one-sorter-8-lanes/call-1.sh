#!/usr/bin/env bash
# session 20 call 1: verify 5c2a60a/53fde71/9dc8d27 (split sort kernels) against 09f98df's sort/quant:
# ncu sort alone, gpt-oss per-kernel timeline at T=1,8, sort GPU tests; then a small-T bench on the subset build
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) $(git log --oneline -1 | cut -c1-7)"
TIMELINE_MODEL=gpt-oss-120b SORT_T="8 64 512 1024 4096" TOKENS=0,1,3,5,64,129,512,1025,2048,8192 timeout 420 scripts/gpu-sort-ab .ab/before3 2>&1 | tee $OUT/sort-ab.txt
timeout 60 python3 -m mxforge bench --model gpt-oss-120b --T 1 8 --stages --out $OUT/small-gpt-oss 2>&1 | grep "gpt-oss-120b " | cut -c1-220
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
