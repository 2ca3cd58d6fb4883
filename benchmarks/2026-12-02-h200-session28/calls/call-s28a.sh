#!/usr/bin/env bash
# session 28 call 1: T = 256, 512, 1024 re-tuned over every pairbits GEMM instance of the
# default set (the one-barrier ring and the wgmma_regs tiles had never been timed at these
# T against the swapped tiles): `mxforge tune` per model (every pipeline, verbose: every
# candidate's time in the same run, each verified end to end against the reference), the
# rows merged into a copy of the shipped table as plain rows, then the layer with the
# merged table (MXFORGE_TUNED) against the tree's, same run.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
scripts/gpu-build-subset 'sm90_moe_*_pairbits*' || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
mkdir -p build/s28
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout 170 python3 -m mxforge tune --model $m --T 256 512 1024 \
    --layout pairbits --verbose --out build/s28/tune-$m.csv > "$OUT/tune-$m.txt" 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"
  grep -v "^  " "$OUT/tune-$m.txt" | sed 's/_sk1//g; s/_rwnone//g; s/_pairbits//g; s/_rwstage2//g; s/swiglu_oai_interleaved/swi/g; s/sm90_moe_//g' | cut -c1-250 | tail -10
done
cp mxforge/tuned/sm90-h100.csv build/s28/merged.csv
python3 scripts/merge_tuned.py build/s28/merged.csv build/s28/tune-*.csv --as-layout plain && cp build/s28/merged.csv "$OUT/"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  for t in tree merged; do
    tbl=""; [ $t = merged ] && tbl=build/s28/merged.csv
    MXFORGE_TUNED=$tbl timeout 60 python3 -m mxforge bench --model $m --T 256 512 1024 --stages \
      --out build/s28/$t-$m 2>&1 | grep "^$m" | sed "s/^/$t /" | cut -c1-260
  done
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
cp build/s28/merged-*.csv build/s28/tree-*.csv "$OUT/" 2>/dev/null
echo "total $(( $(date +%s) - t0 )) s"
