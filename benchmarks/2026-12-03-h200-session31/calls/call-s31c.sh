#!/usr/bin/env bash
# session 31 call 3: call 2's retune again after the fix of `mxforge tune --only` (it kept
# the last glob alone, so call 2 timed the block_m 32 wgmma_regs tiles only; its GPU tests
# stand: 176 passed). On the device copy only, models.yaml's wgmma_regs groups get block_m
# 16; build the table's picks at T = 128, 256, 512 and the block_m 16 / 32 wgmma_regs
# pairbits instances; scripts/gpu-retune at T = 128 256 512 on both models over them.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-03-h200-session31/calls
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
sed -i 's/block_m: \[32, 64, 128\]/block_m: [16, 32, 64, 128]/' instances/models.yaml
NEW='sm90_moe_*_m16_*_pairbits_bwgmma_regs sm90_moe_*_m32_*_pairbits_bwgmma_regs'
set -f
# shellcheck disable=SC2086
ONLY_FILE=$D/picks-128-512.txt scripts/gpu-build-subset $NEW || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
ONLY="$(tr "\n" " " < $D/picks-128-512.txt) $NEW"
set +f
T="128 256 512" ONLY="$ONLY" TUNE_S=150 BENCH_S=50 scripts/gpu-retune minimax-m2.1-tp8 gpt-oss-120b
echo "total $(( $(date +%s) - t0 )) s"
