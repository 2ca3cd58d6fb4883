#!/usr/bin/env bash
# session 29 call 2: why the one-stage swapped kernel's layer was slower than two stages at
# MiniMax TP=8 T = 1 (call 1: 21.3 against 19.2 us, a16w4). Per-kernel GPU times of the
# layer both ways under Nsight Compute, its sections and per-instruction stall samples, and
# the stage tiles it is made of timed on their own (tune --only).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-02-h200-session29/calls
ONLY_FILE=$D/only-s29b.txt scripts/gpu-build-subset || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
for p in two_stage one_stage; do LAYER_PATH=$p scripts/gpu-kernel-times minimax-m2.1-tp8 1 a16w4; done 2>&1 | tee "$OUT/kernel-times.txt"
LAYER_PATH=one_stage scripts/ncu-stage minimax-m2.1-tp8 1 a16w4 moe_1stage > "$OUT/ncu-1stage.txt" 2>&1
grep -E "Duration|Registers|Achieved Occ|Theoretical Occ|Grid Size|Waves|Issue Slots|Warp Cycles Per Issued|DRAM Through|Block Limit" "$OUT/ncu-1stage.txt" | head -14
LAYER_PATH=one_stage scripts/ncu-sass minimax-m2.1-tp8 1 a16w4 moe_1stage "$OUT/sass-1stage.csv" > /dev/null 2>&1
python3 scripts/ncu_sass_summary.py "$OUT/sass-1stage.csv" > "$OUT/sass-1stage-summary.txt" 2>&1; gzip "$OUT/sass-1stage.csv"
head -60 "$OUT/sass-1stage-summary.txt" | cut -c1-160
echo "ncu: $(( $(date +%s) - t0 )) s"
timeout 120 python3 -m mxforge tune --model minimax-m2.1-tp8 --T 1 8 --pipelines a16w4 --layout pairbits --verbose \
  --out "$OUT/tune.csv" > "$OUT/tune.txt" 2>&1; grep -E "us  |rror" "$OUT/tune.txt" | sed 's/sm90_moe_//g' | cut -c1-170
echo "total $(( $(date +%s) - t0 )) s"
