#!/usr/bin/env bash
# session 30 call 3: the final tree's Python (no kernel changed this session): mxforge bench
# with both torch baselines (grouped_mm and one matmul per touched expert, the faster is
# `torch us`) at T = 1 ... 8192 on both models, the instances the tuned table picks there
# (only-s30c.txt); then mxforge tune with quant+sort fused against the split pair
# (the fused_quant_sort rows), restricted to the table's instances, at T = 1, 64, 512, 2048.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-03-h200-session30/calls
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY_FILE=$D/only-s30c.txt scripts/gpu-build-subset || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout 150 python3 -m mxforge bench --model $m --T 1 64 256 512 2048 8192 --out "$OUT/bench-$m" \
    > "$OUT/bench-$m.txt" 2>&1
  echo "bench $m rc=$?: $(( $(date +%s) - t0 )) s"
  grep -E "baseline is|^$m" "$OUT/bench-$m.txt" | cut -c1-175
done
ONLY="--only $(tr "\n" " " < $D/only-s30c.txt)"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout 120 python3 -m mxforge tune --model $m --T 1 64 512 2048 --pipelines a4w4 a4w4-bf16inter \
    --layout pairbits --verbose $ONLY --out "$OUT/tune-$m.csv" > "$OUT/tune-$m.txt" 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"
  grep -E "^$m|quant\+sort|rror" "$OUT/tune-$m.txt" | cut -c1-250 | tail -24
  grep fused_quant_sort "$OUT/tune-$m.csv"
done
echo "total $(( $(date +%s) - t0 )) s"
