#!/usr/bin/env bash
# session 28 call 4: Nsight Compute on the stage-1 tiles the re-tunes chose for the middle T
# (the tree's table): MiniMax TP=8 at T = 512 (wgmma_regs block_m 32; a16w4 and a4w4) and
# gpt-oss-120b at T = 1024 (wgmma_regs block_m 64, a16w4): every pairbits wgmma_regs and
# swapped instance built, then scripts/ncu-stage on each stage 1.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
scripts/gpu-build-subset 'sm90_moe_*_pairbits_bwgmma_regs' 'sm90_moe_*_pairbits_bswap' 'sm90_moe_*_pairbits_bwgmma' || exit 1
for run in "minimax-m2.1-tp8 512 a16w4" "minimax-m2.1-tp8 512 a4w4" "gpt-oss-120b 1024 a16w4"; do
  set -- $run
  timeout 90 scripts/ncu-stage $1 $2 $3 moe_stage1 > "$OUT/ncu-$1-T$2-$3.txt" 2>&1
  echo "ncu $run rc=$?: $(( $(date +%s) - t0 )) s"
  grep -E "moe_stage1_kernel|Duration|Executed Ipc A|Issue Slots Busy|Compute \(SM\) Throughput|DRAM Throughput|L1/TEX Cache Throughput|Achieved Occupancy|Registers Per|No Eligible|Warp Cycles Per Issued|Block Limit Registers" "$OUT/ncu-$1-T$2-$3.txt" | cut -c1-160 | head -16
done
echo "total $(( $(date +%s) - t0 )) s"
