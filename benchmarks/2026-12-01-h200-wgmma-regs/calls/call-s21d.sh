#!/usr/bin/env bash
# session 21 call 4: full default build; the tuner over both wgmma paths at T = 2048, 4096, 8192
# (pairbits weights, kept as the plain rows); the table merged; bench after (merged) and before (shipped).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
python3 build.py --set default --target sm90 -j "$(nproc)" > $OUT/build.log 2>&1 || { echo BUILD FAILED; tail -30 $OUT/build.log; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
mkdir -p build/s21
for m in gpt-oss-120b minimax-m2.1-tp8; do
  timeout 150 python3 -m mxforge tune --model $m --T 2048 4096 8192 --only '*bwgmma*' --layout pairbits --verbose --out build/s21/tune-$m.csv > $OUT/tune-$m.txt 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"; cp build/s21/tune-$m.csv $OUT/
  grep -v "^  " $OUT/tune-$m.txt | sed 's/_sk1//; s/_rwnone//; s/_pairbits//' | cut -c1-230
done
cp mxforge/tuned/sm90-h100.csv build/s21/merged.csv
python3 scripts/merge_tuned.py build/s21/merged.csv build/s21/tune-*.csv --as-layout plain
cp build/s21/merged.csv $OUT/
for m in gpt-oss-120b minimax-m2.1-tp8; do
  MXFORGE_TUNED=build/s21/merged.csv timeout 100 python3 -m mxforge bench --model $m --T 2048 4096 8192 --stages --out $OUT/new-$m 2>&1 | grep "^$m" | cut -c1-200
  echo "bench new $m: $(( $(date +%s) - t0 )) s"
done
for m in gpt-oss-120b minimax-m2.1-tp8; do
  timeout 100 python3 -m mxforge bench --model $m --T 2048 4096 8192 --stages --out $OUT/before-$m 2>&1 | grep "^$m" | cut -c1-200
  echo "bench before $m: $(( $(date +%s) - t0 )) s"
done
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
