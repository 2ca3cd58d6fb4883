#!/usr/bin/env bash
# session 23 call 2: the slot sums as a deterministic mode (stage2_reduce="slots" restricts
# block_m to >= 64 at every T): every pairbits sm90 instance built, the slot tests at
# T = 1, 64, 2048, and both models' layer atomic against slots at T = 1 ... 8192.
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
timeout 200 python3 -m pytest -q -m gpu tests/test_gpu.py -k "slots" -n 4 -p no:cacheprovider 2>&1 | tee $OUT/pytest.log | tail -4
echo "tests: $(( $(date +%s) - t0 )) s"
for m in gpt-oss-120b minimax-m2.1-tp8; do
  T="1 64 512 2048 8192"; [ $m = minimax-m2.1-tp8 ] && T="1 64 512"
  timeout $(( $(left) / 2 )) python3 -m mxforge bench --model $m --T $T --stages \
    --stage2-reduce atomic slots --out $OUT/$m 2>&1 | cut -c1-260
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
rm -f $OUT/*.png
