#!/usr/bin/env bash
# session 27 call 6: Nsight Compute on the one-barrier ring's stage 1 at MiniMax TP=8
# T = 8192, a16w4 (0.83x with the one barrier) against a4w4 (1.00x): the table's five
# T = 8192 ring instances (pairbits) built, then scripts/ncu-stage on each stage 1.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY=()
for n in stage2_bf16xpk_fp4_obf16_m128_n128_k64_nt8_rwstage2_nobias stage2_pk_fp4xpk_fp4_obf16_m128_n128_k64_nt8_rwstage2_nobias \
         stage1_bf16xpk_fp4_obf16_m128_n128_k64_sk1_silu_concat_rwnone_nobias stage1_pk_fp4xpk_fp4_opk_fp4_m128_n128_k64_sk1_silu_concat_rwnone_nobias; do
  ONLY+=(--only "sm90_moe_${n}_pairbits_bwgmma")
done
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
rm -f "$OUT/build.log"; echo "build: $(( $(date +%s) - t0 )) s"
for p in a16w4 a4w4; do
  timeout 60 scripts/ncu-stage minimax-m2.1-tp8 8192 $p moe_stage1 > "$OUT/ncu-$p.txt" 2>&1
  echo "ncu $p rc=$?: $(( $(date +%s) - t0 )) s"
  grep -E "Duration|Executed Ipc A|Issue Slots Busy|Issued Warp Per|Compute \(SM\) Throughput|DRAM Throughput|L1/TEX Hit|Achieved Occupancy|Registers Per|No Eligible|Warp Cycles Per Issued" "$OUT/ncu-$p.txt" | head -14
done
