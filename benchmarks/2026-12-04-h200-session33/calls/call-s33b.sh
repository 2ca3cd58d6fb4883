#!/usr/bin/env bash
# session 33 call 2: call 1's L2 prefetch measured slower at every distance (its SASS: the
# per-lane bulk prefetches become a loop over the lanes, UBLKPF takes uniform registers).
# Here (a) Nsight Compute on the stage 2 of the tree before it (MiniMax TP=8, T = 64, a4w4:
# the nt12 swapped tile): is it waiting on memory or on its own instructions; (b) the
# same prefetch from one lane, one bulk request per tile (.ab/bulk1, no loop), against the
# tree before it (.ab/before), MiniMax T = 16, 64, 256.
# Runs on call 1's tree (d83b7a6 + ../l2-ahead.patch) with .ab/before as there and .ab/bulk1
# holding gemm.cuh with ../bulk1-on-l2-ahead.patch applied.
set -uo pipefail
export PYTHONUNBUFFERED=1
D=benchmarks/2026-12-04-h200-session33/calls
t0=$(date +%s)
export ONLY_FILE=$D/picks-minimax-8-512.txt
BENCH="--T 16 64 256 --stages"
SAVE=$(mktemp -d); cp csrc/mxforge/gpu/gemm.cuh csrc/mxforge/gpu/moe.cuh "$SAVE"/
for v in before bulk1; do
  cp "$SAVE"/gemm.cuh "$SAVE"/moe.cuh csrc/mxforge/gpu/
  cp -r .ab/$v/csrc/. csrc/
  LOG=$OUT/build-$v.log scripts/gpu-build-subset || exit 1
  if [ $v = before ]; then
    scripts/ncu-stage minimax-m2.1-tp8 64 a4w4 moe_stage2 > "$OUT/ncu-before-stage2-T64-a4w4.txt" 2>&1
    tail -n 120 "$OUT/ncu-before-stage2-T64-a4w4.txt" | grep -E "Duration|Throughput|Issue|Warp Cycles|Active Warps|Occupancy|Eligible|Registers|Block Size|Grid Size" | head -40
    echo "ncu: $(( $(date +%s) - t0 )) s"
  fi
  python3 -m mxforge bench --model minimax-m2.1-tp8 $BENCH --out "$OUT/$v-minimax-m2.1-tp8" 2>&1 |
    sed "s/^/$v /" | tee -a "$OUT/ab-console.txt" | grep -E "^$v minimax" || true
  echo "$v: $(( $(date +%s) - t0 )) s"
done
cp "$SAVE"/gemm.cuh "$SAVE"/moe.cuh csrc/mxforge/gpu/
rm -f "$OUT"/*.png
