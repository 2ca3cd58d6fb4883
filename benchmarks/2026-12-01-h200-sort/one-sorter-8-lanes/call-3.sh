#!/usr/bin/env bash
# session 20 call 3: the one-sorter scatter from registers (no reload, no "hist += base" pass)
# against HEAD's sort.cuh: ncu sort alone at T = 8..128, MiniMax timeline at T = 1, 8, 32, 64, sort GPU tests
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
TIMELINE_MODEL=minimax-m2.1-tp8 TIMELINE_T="1 8 32 64" SORT_T="8 16 32 64 128 1024" TOKENS=0,1,3,5,8,33,64,127,128,129,512,1025,2048,8192 \
  timeout 560 scripts/gpu-sort-ab .ab/before5 2>&1 | tee $OUT/sort-ab.txt
echo "total $(( $(date +%s) - t0 )) s"
