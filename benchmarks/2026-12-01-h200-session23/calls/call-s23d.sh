#!/usr/bin/env bash
# session 23 call 4: the final tree (fused_moe with slots also keeps stage 1 to split_k 1):
# the slot tests and the fused_moe GPU tests on pairbits weights (the build has no plain stage-1 instances), same build as call 3.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=()
for g in 'sm90_*pairbits*' 'sm90_moe_stage2_*obf16_m64_*' 'sm90_moe_stage2_*obf16_m128_*' 'sm90_*quant*' 'sm90_moe_sort*' \
         'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m3 -A8 error $OUT/build.log; exit 1; }
grep -i spill $OUT/build.log | head -5; tail -1 $OUT/build.log; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,64,2048 timeout 400 python3 -m pytest -q -m gpu tests/test_gpu.py -k "slots or (fused_moe and pairbits)" -n 4 -p no:cacheprovider 2>&1 | tee $OUT/pytest.log | tail -6
echo "tests: $(( $(date +%s) - t0 )) s"
