#!/usr/bin/env bash
# session 21 call 2: wgmma_regs v2 (activations loaded a whole k-tile ahead, L2 prefetch of activations
# and weights): tests, the tuner's timings of the new tiles, ncu of gpt-oss a16w4 T=8192 stage 1 on them.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
ONLY=(--only 'sm90_moe_stage*_bwgmma_regs')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m5 -B2 -A10 "error" $OUT/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,129,2048 timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py -k "bwgmma_regs and (all_token or odd_dims)" \
  -n 4 -p no:cacheprovider --maxfail=8 2>&1 | tee $OUT/pytest.log | tail -3
echo "tests: $(( $(date +%s) - t0 )) s"
for m in gpt-oss-120b minimax-m2.1-tp8; do
  timeout 100 python3 -m mxforge tune --model $m --T 8192 --only '*bwgmma_regs*' --layout pairbits --verbose --out $OUT/tune-$m.csv > $OUT/tune-$m.txt 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"; grep "stage" $OUT/tune-$m.txt | cut -c1-200
done
MXFORGE_TUNED=.ab/regs-table.csv timeout 120 scripts/ncu-stage gpt-oss-120b 8192 a16w4 moe_stage1 > $OUT/ncu-s1.txt 2>&1
grep -E "Duration|Throughput|Issue Slots|Warp Cycles Per Issued|Registers|Achieved Occupancy|Executed Ipc|Stall|One or More|No Eligible" $OUT/ncu-s1.txt | head -40
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
