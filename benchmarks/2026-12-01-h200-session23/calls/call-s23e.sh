#!/usr/bin/env bash
# session 23 call 5: Nsight Compute on MiniMax TP=8 stage 2 at T = 8192 (a16w4, pairbits):
# the GEMM with the atomic adds, the GEMM with the slot stores, and the slot sum kernel.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=()
for g in 'sm90_moe_stage1_bf16xpk_fp4_obf16_m128_n128_k128_sk1_silu_concat_rwnone_nobias_pairbits_bwgmma_regs' \
         'sm90_moe_stage2_bf16xpk_fp4_obf16_m128_n128_k64_rwstage2_nobias_pairbits_bwgmma' 'sm90_moe_sort*' \
         'sm90_*quant*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do
  ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m3 -A8 error $OUT/build.log; exit 1; }
tail -1 $OUT/build.log; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
S="--section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section WarpStateStats --section LaunchStats"
NCU_ARGS="$S" REDUCE=atomic timeout 150 scripts/ncu-stage minimax-m2.1-tp8 8192 a16w4 moe_stage2_kernel > $OUT/ncu-stage2-atomic.txt 2>&1
echo "ncu 1: $(( $(date +%s) - t0 )) s"
NCU_ARGS="$S" REDUCE=slots timeout 150 scripts/ncu-stage minimax-m2.1-tp8 8192 a16w4 moe_stage2_kernel > $OUT/ncu-stage2-slots.txt 2>&1
echo "ncu 2: $(( $(date +%s) - t0 )) s"
NCU_ARGS="$S" REDUCE=slots timeout 120 scripts/ncu-stage minimax-m2.1-tp8 8192 a16w4 moe_stage2_slots_sum > $OUT/ncu-slots-sum.txt 2>&1
echo "ncu 3: $(( $(date +%s) - t0 )) s"
for f in $OUT/ncu-*.txt; do echo "== $f"; grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Cache Throughput|Compute \(SM\) Throughput|Warp Cycles Per Issued|^    ==ERR|error" $f | head -8; done
