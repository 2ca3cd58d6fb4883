#!/usr/bin/env bash
# session 24 call 2: Nsight Compute's per-instruction table (executed instructions, stall
# samples) of MiniMax TP=8's stage 2 at T = 8192 (the block_m 128 ring tile with the rows16
# epilogue; a16w4 and a4w4) and of its stage 1 (a16w4), on the build of call 1's subset.
set -uo pipefail
ONLY=(); while read -r n; do [ -n "$n" ] && ONLY+=(--only "$n"); done < .ab/only-s24a.txt
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
t0=$(date +%s)
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
for spec in "8192 a16w4 moe_stage2" "8192 a4w4 moe_stage2" "8192 a16w4 moe_stage1"; do
  set -- $spec
  scripts/ncu-sass minimax-m2.1-tp8 "$1" "$2" "$3" "$OUT/sass-$3-$2-T$1.csv" > "$OUT/ncu-$3-$2-T$1.log" 2>&1
  echo "$spec: $(( $(date +%s) - t0 )) s, $(wc -c < "$OUT/sass-$3-$2-T$1.csv") bytes"
done
