#!/usr/bin/env bash
# session 29 call 3: the one-stage kernel with relaxed polls (no L1 invalidation per poll;
# call 2's Nsight Compute run showed its stage-2 CTAs polling ~470 times each while stage 1
# took twice its own time). Same build as call 2; kernel times and the layer both ways.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-02-h200-session29/calls
ONLY_FILE=$D/only-s29b.txt scripts/gpu-build-subset | grep -v "^ptxas" || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
LAYER_PATH=one_stage scripts/gpu-kernel-times minimax-m2.1-tp8 1 a16w4 2>&1 | tee "$OUT/kernel-times.txt"
timeout 150 python3 -m mxforge tune --model minimax-m2.1-tp8 --T 1 2 8 --pipelines a16w4 a4w4-bf16inter --layout pairbits --verbose \
  --out "$OUT/tune.csv" > "$OUT/tune.txt" 2>&1; grep -E "layer|rror" "$OUT/tune.txt" | sed 's/sm90_moe_//g' | cut -c1-150
echo "total $(( $(date +%s) - t0 )) s"
