#!/usr/bin/env bash
# session 27 call 1: the tuner over both warpgroup-MMA tiles (ring `b_path: wgmma`, n_tiles
# included, and `wgmma_regs`) at T = 2048, 4096, 8192 after session 26's faster ring:
# every pairbits wgmma instance built, `mxforge tune` per model (every pipeline, verbose:
# every candidate's time in the same run, each verified against the reference), the rows
# merged into a copy of the shipped table as plain rows.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=(--only 'sm90_moe_*_pairbits_bwgmma*')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head -5; rm -f "$OUT/build.log"
echo "build: $(( $(date +%s) - t0 )) s"
mkdir -p build/s27
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  left=$(( 560 - ($(date +%s) - t0) )); [ $m = minimax-m2.1-tp8 ] && [ $left -gt 200 ] && left=200
  timeout $left python3 -m mxforge tune --model $m --T 2048 4096 8192 \
    --only 'sm90_moe_stage*_bwgmma*' --layout pairbits --verbose --out build/s27/tune-$m.csv > "$OUT/tune-$m.txt" 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"; cp build/s27/tune-$m.csv "$OUT/" 2>/dev/null
  grep -v "^  " "$OUT/tune-$m.txt" | sed 's/_sk1//g; s/_rwnone//g; s/_pairbits//g; s/_rwstage2//g' | cut -c1-230 | tail -10
done
cp mxforge/tuned/sm90-h100.csv build/s27/merged.csv
python3 scripts/merge_tuned.py build/s27/merged.csv build/s27/tune-*.csv --as-layout plain && cp build/s27/merged.csv "$OUT/"
echo "total $(( $(date +%s) - t0 )) s"
