#!/usr/bin/env bash
# session 27 call 2: the wide ring tile (block_m 128 x block_n 256, four warpgroups, one CTA
# of 16 warps per SM; pk_fp4 activations converted once per 256 columns, two threads to a
# chunk): every pairbits wgmma instance and the plain wide ones built; the GPU tests of the
# 12 wide instances; the tuner over the warpgroup-MMA tiles for a4w4 and a4w4-bf16inter at
# T = 2048, 4096, 8192 (verbose: the wide tile against the 128-column ring in one run);
# memcheck and racecheck on the six pairbits wide instances.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=(--only 'sm90_moe_*_pairbits_bwgmma*' --only 'sm90_moe_*_m128_n256_k64_*_bwgmma')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head -5; rm -f "$OUT/build.log"
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,300,2048 timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "n256_k64 and bwgmma" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-300 | tail -12
echo "tests: $(( $(date +%s) - t0 )) s"
mkdir -p build/s27
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout 120 python3 -m mxforge tune --model $m --T 2048 4096 8192 --pipelines a4w4 a4w4-bf16inter \
    --only 'sm90_moe_stage*_bwgmma*' --layout pairbits --verbose --out build/s27/tune-$m.csv > "$OUT/tune-$m.txt" 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"; cp build/s27/tune-$m.csv "$OUT/" 2>/dev/null
  grep -v "^  " "$OUT/tune-$m.txt" | sed 's/_sk1//g; s/_rwnone//g; s/_pairbits//g; s/_rwstage2//g; s/swiglu_oai_interleaved/swi/g' | cut -c1-250 | tail -7
  grep -E "stage[12] .*(n256|m128_n128_k64_(silu|swi|rwst|nob|bias)[a-z_]*bwgmma$)" "$OUT/tune-$m.txt" | sed 's/_sk1//g; s/_rwnone//g; s/_pairbits//g; s/swiglu_oai_interleaved/swi/g' | cut -c1-200 | head -40
done
left=$(( 575 - ($(date +%s) - t0) ))
[ $left -gt 60 ] && timeout $left python3 scripts/sanitize.py --tools memcheck,racecheck --scope all --tokens 3,129 \
  --only 'sm90_moe_*_m128_n256_k64_*pairbits_bwgmma' --shards 4 --timeout 100 --out "$OUT/sanitize" 2>&1 | tail -8
echo "total $(( $(date +%s) - t0 )) s"
