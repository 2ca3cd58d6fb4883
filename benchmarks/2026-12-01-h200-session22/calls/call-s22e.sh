#!/usr/bin/env bash
# session 22 call 5: stage 1 with bf16 activations on the wgmma_regs tile at block_m 64, now
# spill-free under nvcc 13.0 (the next k-tile's activations in two parts of 8 registers; 16-bit
# guarded loads by halves): tests, the tuner over the a16w4 wgmma tiles at T = 2048, 4096, and
# the layer with the merged table against the shipped one (same run).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
left() { echo $(( 440 - ($(date +%s) - t0) )); }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=(); while read -r n; do [ -n "$n" ] && ONLY+=(--only "$n"); done < .ab/only-s22e.txt
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m3 -A8 error $OUT/build.log; exit 1; }
grep -i spill $OUT/build.log | head -5; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,129,2048 timeout 90 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "stage1_bf16 and m64 and bwgmma_regs and (all_token or odd_dims or wide_scales)" -n 4 -p no:cacheprovider 2>&1 | tee $OUT/pytest.log | tail -2
echo "tests: $(( $(date +%s) - t0 )) s"
mkdir -p build/s22
for m in gpt-oss-120b minimax-m2.1-tp8; do
  timeout 75 python3 -m mxforge tune --model $m --T 2048 4096 --pipelines a16w4 --only 'sm90_moe_stage*_bf16xpk_fp4_*_bwgmma*' \
    --layout pairbits --verbose --out build/s22/tune-$m.csv > $OUT/tune-$m.txt 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"; cp build/s22/tune-$m.csv $OUT/ 2>/dev/null
  grep -v "^  " $OUT/tune-$m.txt | sed 's/_sk1//; s/_rwnone//; s/_pairbits//' | cut -c1-200 | tail -8
done
cp mxforge/tuned/sm90-h100.csv build/s22/merged.csv
python3 scripts/merge_tuned.py build/s22/merged.csv build/s22/tune-*.csv --as-layout plain && cp build/s22/merged.csv $OUT/
for m in gpt-oss-120b minimax-m2.1-tp8; do
  for t in shipped merged; do
    tbl=mxforge/tuned/sm90-h100.csv; [ $t = merged ] && tbl=build/s22/merged.csv
    MXFORGE_TUNED=$tbl timeout $(( $(left) / 2 > 10 ? $(left) / 2 : 10 )) python3 -m mxforge bench --model $m --T 2048 4096 --pipelines a16w4 --stages \
      --out $OUT/$t-$m 2>&1 | grep "^$m" | sed "s/^/$t /" | cut -c1-200
  done
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
rm -f $OUT/*.png
