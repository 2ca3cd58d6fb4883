#!/usr/bin/env bash
# session 32 call 2: T = 1024 (32 rows per expert) re-tuned now that the block_m 32
# wgmma_regs tiles stage their activations over every warp (session 31: 0.80-0.97x the
# T = 512 layer). Build the table's picks at T = 1024 (picks-1024.txt) and the block_m 32
# wgmma_regs and stage-2 swapped (nt12) pairbits instances; scripts/gpu-retune at T = 1024
# on both tuned models over them (each candidate verified against the reference while
# timed), then the layer with the merged table against the tree's, same run.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-03-h200-session32/calls
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
NEW='sm90_moe_*_m32_*_pairbits_bwgmma_regs sm90_moe_stage2_*_m32_*_nt12_*_pairbits_bswap'
set -f
# shellcheck disable=SC2086
ONLY_FILE=$D/picks-1024.txt scripts/gpu-build-subset $NEW || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
ONLY="$(tr "\n" " " < $D/picks-1024.txt) $NEW"
set +f
T="1024" ONLY="$ONLY" TUNE_S=170 BENCH_S=40 scripts/gpu-retune minimax-m2.1-tp8 gpt-oss-120b
echo "total $(( $(date +%s) - t0 )) s"
