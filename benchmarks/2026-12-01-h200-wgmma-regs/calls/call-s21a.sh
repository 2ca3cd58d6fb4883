#!/usr/bin/env bash
# session 21 call 1: the b_path wgmma_regs tiles: build (wgmma + wgmma_regs GEMMs and the other ops),
# GPU tests of the new instances, then the tuner's timings of both wgmma paths at T = 2048, 8192.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
ONLY=(--only 'sm90_moe_stage*_bwgmma*')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m5 -B2 -A10 "error" $OUT/build.log | head -80; exit 1; }
grep -i "spill\|warn" $OUT/build.log | head -5
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,3,129,1000,2048 timeout 300 python3 -m pytest -q -m gpu tests/test_gpu.py -k "bwgmma_regs and (all_token or odd_dims or wide_scales)" \
  -n 4 -p no:cacheprovider --maxfail=8 2>&1 | tee $OUT/pytest.log | grep -v "^\.\|passed\b.*%\]" | tail -40
echo "tests: $(( $(date +%s) - t0 )) s"
for m in gpt-oss-120b minimax-m2.1-tp8; do
  timeout 150 python3 -m mxforge tune --model $m --T 2048 8192 --only '*bwgmma*' --layout pairbits --verbose --out $OUT/tune-$m.csv > $OUT/tune-$m.txt 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"; tail -60 $OUT/tune-$m.txt | cut -c1-200
done
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
