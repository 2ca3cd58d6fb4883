#!/usr/bin/env bash
# session 23 call 8: after d82659c (stage 2's second kernels sized by a fixed grid bound):
# the slot tests of the block_m 64 stage-2 instances and the split-K stage-2 instances' tests.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=()
for g in 'sm90_moe_stage2_*obf16_m64_*' 'sm90_moe_stage2_*_m16_*_sk*' 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do
  ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m3 -A8 error $OUT/build.log; exit 1; }
tail -1 $OUT/build.log; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,300,2048 timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "(test_stage2_slots) or (stage2 and _sk and (all_token or unaligned))" -n 4 -p no:cacheprovider 2>&1 | tee $OUT/pytest.log | tail -4
echo "tests: $(( $(date +%s) - t0 )) s"
