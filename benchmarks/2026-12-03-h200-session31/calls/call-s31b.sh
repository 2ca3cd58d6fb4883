#!/usr/bin/env bash
# session 31 call 2: the wgmma_regs tiles at block_m 16 (now that their activation staging
# is shared out over both warpgroups: one block per thread) against the swapped tiles at
# 4-16 rows per expert. On the device copy only, models.yaml's wgmma_regs groups get block_m
# 16 besides 32, 64, 128. Build: the table's picks at T = 128, 256, 512 (picks-128-512.txt)
# and every block_m 16 / 32 wgmma_regs instance (both layouts); the GPU tests of those
# (every token count given, odd dims, wide scales, unaligned stage-2 rows, slots); then
# scripts/gpu-retune at T = 128 256 512 on both models over the picks and the new tiles.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-03-h200-session31/calls
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
sed -i 's/block_m: \[32, 64, 128\]/block_m: [16, 32, 64, 128]/' instances/models.yaml
grep -c "block_m: \[16, 32, 64, 128\]" instances/models.yaml
NEW='sm90_moe_*_m16_*_bwgmma_regs sm90_moe_*_m32_*_bwgmma_regs'
set -f
# shellcheck disable=SC2086
ONLY_FILE=$D/picks-128-512.txt scripts/gpu-build-subset $NEW || exit 1
set +f
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,3,64,300 timeout 120 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "wgmma_regs and (m16_ or m32_)" -n 8 -p no:cacheprovider -rf > "$OUT/pytest.log" 2>&1
echo "pytest rc=$?: $(( $(date +%s) - t0 )) s"; grep -E "passed|failed|FAILED|rror" "$OUT/pytest.log" | cut -c1-250 | tail -8
ONLY="$(tr "\n" " " < $D/picks-128-512.txt) sm90_moe_*_m16_*_pairbits_bwgmma_regs sm90_moe_*_m32_*_pairbits_bwgmma_regs"
T="128 256 512" ONLY="$ONLY" TUNE_S=130 BENCH_S=50 scripts/gpu-retune minimax-m2.1-tp8 gpt-oss-120b
echo "total $(( $(date +%s) - t0 )) s"
