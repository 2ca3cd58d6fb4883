#!/usr/bin/env bash
# session 30 call 5: where the instructions of the block_m 32 wgmma_regs stage 1 go
# (MiniMax TP=8, T = 512, a16w4 and a4w4: the tiles the table picks there, only-s30e.txt):
# Nsight Compute's per-instruction table (executed instructions, stall samples) of one
# launch each, summarized by scripts/ncu_sass_summary.py; the CSVs gzipped to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-03-h200-session30/calls
ONLY_FILE=$D/only-s30e.txt scripts/gpu-build-subset || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
for p in a16w4 a4w4; do
  timeout 150 scripts/ncu-sass minimax-m2.1-tp8 512 $p moe_stage1 "$OUT/sass-stage1-$p-T512.csv" > "$OUT/ncu-$p.log" 2>&1
  echo "ncu $p rc=$?: $(( $(date +%s) - t0 )) s"
  python3 scripts/ncu_sass_summary.py "$OUT/sass-stage1-$p-T512.csv" > "$OUT/summary-$p.txt" 2>&1
  head -40 "$OUT/summary-$p.txt"
  gzip -f "$OUT/sass-stage1-$p-T512.csv"
done
echo "total $(( $(date +%s) - t0 )) s"
