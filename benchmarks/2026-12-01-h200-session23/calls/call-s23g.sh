#!/usr/bin/env bash
# session 23 call 7: the slot epilogue's and sum's partial 8-column tails unrolled with a
# guard (a loop to m had put their arrays in local memory: 32 bytes of stack in 72 kernels,
# found by CI's SASS check): the slot tests on the final code.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=()
for g in 'sm90_moe_stage2_*obf16_m64_*' 'sm90_moe_stage2_*obf16_m128_*' 'sm90_moe_stage2_*_m16_*pairbits_bswap' \
         'sm90_moe_stage2_*_m32_*pairbits*' 'sm90_moe_stage1_*pairbits*' 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do
  ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m3 -A8 error $OUT/build.log; exit 1; }
tail -1 $OUT/build.log; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,64,2048 timeout 300 python3 -m pytest -q -m gpu tests/test_gpu.py -k "slots" -n 4 -p no:cacheprovider 2>&1 | tee $OUT/pytest.log | tail -4
echo "tests: $(( $(date +%s) - t0 )) s"
