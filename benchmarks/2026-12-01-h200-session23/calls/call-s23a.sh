#!/usr/bin/env bash
# session 23 call 1: stage 2 reducing by route rows (reduce="slots"): build the sm90 stage-2
# instances that have it plus the stage-1 tiles the table takes at T >= 1024, the GPU tests
# of the slot sums, and the MiniMax TP=8 layer with atomic adds against slots (same run).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
left() { echo $(( 560 - ($(date +%s) - t0) )); }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=(); while read -r n; do [ -n "$n" ] && ONLY+=(--only "$n"); done < .ab/only-s23a.txt
for g in 'sm90_moe_stage2_*obf16_m64_*' 'sm90_moe_stage2_*obf16_m128_*' 'sm90_moe_stage1_*_m64_*pairbits_bwgmma*' \
         'sm90_moe_stage1_*_m128_*pairbits_bwgmma*' 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do
  ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m3 -A8 error $OUT/build.log; exit 1; }
grep -i spill $OUT/build.log | head -5; tail -1 $OUT/build.log; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
timeout 200 python3 -m pytest -q -m gpu tests/test_gpu.py -k "slots" -n 4 -p no:cacheprovider 2>&1 | tee $OUT/pytest.log | tail -4
echo "tests: $(( $(date +%s) - t0 )) s"
timeout $(left) python3 -m mxforge bench --model minimax-m2.1-tp8 --T 1024 2048 4096 8192 --stages \
  --stage2-reduce atomic slots --out $OUT/minimax 2>&1 | cut -c1-260
echo "bench: $(( $(date +%s) - t0 )) s"
rm -f $OUT/*.png
