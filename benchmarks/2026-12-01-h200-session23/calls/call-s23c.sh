#!/usr/bin/env bash
# session 23 call 3: the slot sums on every stage-2 tile with one K part (the decode tiles
# too: pairs from registers on the swapped tile's N loop): every pairbits sm90 instance and
# the block_m >= 64 stage-2 ones built, the slot tests, and both models' layer atomic
# against slots at T = 1 ... 512 (T >= 2048 ran in calls 1 and 2: their code is unchanged).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
left() { echo $(( 560 - ($(date +%s) - t0) )); }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=()
for g in 'sm90_*pairbits*' 'sm90_moe_stage2_*obf16_m64_*' 'sm90_moe_stage2_*obf16_m128_*' 'sm90_*quant*' 'sm90_moe_sort*' \
         'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m3 -A8 error $OUT/build.log; exit 1; }
grep -i spill $OUT/build.log | head -5; tail -1 $OUT/build.log; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,64,2048 timeout 240 python3 -m pytest -q -m gpu tests/test_gpu.py -k "slots" -n 4 -p no:cacheprovider 2>&1 | tee $OUT/pytest.log | tail -4
echo "tests: $(( $(date +%s) - t0 )) s"
for m in gpt-oss-120b minimax-m2.1-tp8; do
  timeout $(( $(left) / 2 )) python3 -m mxforge bench --model $m --T 1 8 64 512 --stages \
    --stage2-reduce atomic slots --out $OUT/$m 2>&1 | cut -c1-260
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
rm -f $OUT/*.png
