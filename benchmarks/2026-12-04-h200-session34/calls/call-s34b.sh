#!/usr/bin/env bash
# session 34 call 4 (the tree after the prefetch was dropped: session 32's kernels): where
# MiniMax TP=8's T = 1 goes. The cost of 1 ... 4 empty dependent launches in a graph
# (launch_floor.py), then Nsight Compute (first launch, scripts/ncu-stage's sections) of
# stage 1 and stage 2 at T = 1, a4w4, the table's picks (picks-decode.txt).
set -uo pipefail
export PYTHONUNBUFFERED=1
D=benchmarks/2026-12-04-h200-session34
t0=$(date +%s)
ONLY_FILE=$D/picks-decode.txt LOG=$OUT/build.log scripts/gpu-build-subset || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
python3 $D/launch_floor.py | tee "$OUT/launch-floor.txt"
for k in moe_stage1 moe_stage2; do
  scripts/ncu-stage minimax-m2.1-tp8 1 a4w4 $k > "$OUT/ncu-$k-T1-a4w4.txt" 2>&1
  grep -E "Duration|Registers Per|Achieved Occupancy|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|Grid Size|Block Size|No Instruction|Stall" "$OUT/ncu-$k-T1-a4w4.txt" | head -20
  echo "ncu $k: $(( $(date +%s) - t0 )) s"
done
scripts/ncu-sass minimax-m2.1-tp8 1 a4w4 moe_stage1 "$OUT/sass-stage1-T1-a4w4.csv" > /dev/null 2>&1
python3 scripts/ncu_sass_summary.py "$OUT/sass-stage1-T1-a4w4.csv" > "$OUT/sass-stage1-T1-a4w4-summary.txt" 2>&1
gzip -9 "$OUT/sass-stage1-T1-a4w4.csv"
head -40 "$OUT/sass-stage1-T1-a4w4-summary.txt"
echo "done: $(( $(date +%s) - t0 )) s"
