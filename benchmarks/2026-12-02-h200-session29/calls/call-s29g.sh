#!/usr/bin/env bash
# session 29 call 7 (experiment, the one-stage swapped kernel re-applied from
# onestage-swap.patch with an experiment-only switch MXF_ONESTAGE_EXP): where the fused
# kernel's time goes. 0 = as built; 1 = stage-1 items only (grid 96 at T = 1); 2 = all CTAs
# launched, stage-2 items skipped; 3 = stage 2 waits before issuing its weight loads;
# 4 = stage 2 does not wait at all (wrong results: the bound that overlap could reach).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY_FILE=benchmarks/2026-12-02-h200-session29/calls/only-s29b.txt scripts/gpu-build-subset | grep -v "^ptxas" || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
timeout 200 python3 benchmarks/2026-12-02-h200-session29/calls/onestage_exp.py 2>&1 | tee "$OUT/onestage-exp.txt"
for x in 0 1 4; do echo "== ncu, MXF_ONESTAGE_EXP=$x"; MXF_ONESTAGE_EXP=$x LAYER_PATH=one_stage scripts/gpu-kernel-times minimax-m2.1-tp8 1 a16w4 2>&1 | grep 1stage | head -2; done | tee "$OUT/kernel-times.txt"
echo "total $(( $(date +%s) - t0 )) s"
