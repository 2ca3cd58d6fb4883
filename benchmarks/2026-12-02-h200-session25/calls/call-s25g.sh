#!/usr/bin/env bash
# session 25 call 7: Nsight Compute sections of the final loop's stage 2 (MiniMax TP=8,
# T = 8192, the shipped table: nt8), a4w4 and a16w4.
set -uo pipefail
t0=$(date +%s)
ONLY=(); while read -r n; do [ -n "$n" ] && ONLY+=(--only "$n"); done < .ab/only-s25.txt
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
for p in a4w4 a16w4; do
  timeout 150 scripts/ncu-stage minimax-m2.1-tp8 8192 $p moe_stage2 > "$OUT/ncu-final-nt8-$p-stage2.txt" 2>&1
  grep -E "Duration|Issue Slots Busy|DRAM Throughput|Warp Cycles Per Issued|Grid Size" "$OUT/ncu-final-nt8-$p-stage2.txt"
done
echo "ncu: $(( $(date +%s) - t0 )) s"
