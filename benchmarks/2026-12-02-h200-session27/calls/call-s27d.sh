#!/usr/bin/env bash
# session 27 call 4: the final ring loops (one barrier per k-tile; call 3's code): every ring
# instance (both layouts) and the pairbits wgmma_regs ones built; the GPU tests of the 40
# plain ring instances (call 3 ran the pairbits ones); the tuner over both warpgroup-MMA
# tiles at T = 2048, 4096, 8192 on the faster ring; the layer with the re-tuned rows merged
# (MXFORGE_TUNED) against the tree's table (call 1's re-tune), same run.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=(--only 'sm90_moe_*_bwgmma' --only 'sm90_moe_*_pairbits_bwgmma_regs')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head -5; rm -f "$OUT/build.log"
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,300 timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "bwgmma and not bwgmma_regs and plain" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-300 | tail -12
echo "tests: $(( $(date +%s) - t0 )) s"
mkdir -p build/s27
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout 120 python3 -m mxforge tune --model $m --T 2048 4096 8192 \
    --only 'sm90_moe_stage*_bwgmma*' --layout pairbits --verbose --out build/s27/tune-$m.csv > "$OUT/tune-$m.txt" 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"
  grep -v "^  " "$OUT/tune-$m.txt" | sed 's/_sk1//g; s/_rwnone//g; s/_pairbits//g; s/_rwstage2//g; s/swiglu_oai_interleaved/swi/g; s/sm90_moe_//g' | cut -c1-250 | tail -10
done
cp mxforge/tuned/sm90-h100.csv build/s27/merged.csv
python3 scripts/merge_tuned.py build/s27/merged.csv build/s27/tune-*.csv --as-layout plain && cp build/s27/merged.csv "$OUT/"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  for t in tree merged; do
    tbl=""; [ $t = merged ] && tbl=build/s27/merged.csv
    MXFORGE_TUNED=$tbl timeout 80 python3 -m mxforge bench --model $m --T 2048 4096 8192 --stages \
      --out build/s27/$t-$m 2>&1 | grep "^$m" | sed "s/^/$t /" | cut -c1-260
  done
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
cp build/s27/merged-*.csv build/s27/tree-*.csv "$OUT/" 2>/dev/null
echo "total $(( $(date +%s) - t0 )) s"
