#!/usr/bin/env bash
# session 21 call 6: the final wgmma_regs code (32-bit activation state, no spills; block_m 64 with
# 16-bit activations: no L2 prefetch of them): tests, the shipped table's bench at T >= 2048, sanitizer.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
ONLY=(--only 'sm90_moe_stage*_bwgmma*')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m5 -B2 -A10 "error" $OUT/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,129,2048 timeout 160 python3 -m pytest -q -m gpu tests/test_gpu.py -k "bwgmma_regs and (all_token or odd_dims or wide_scales or unaligned_output)" \
  -n 4 -p no:cacheprovider --maxfail=8 2>&1 | tee $OUT/pytest.log | tail -3
echo "tests: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout 60 python3 -m mxforge bench --model $m --T 2048 4096 8192 --stages --out $OUT/final-$m 2>&1 | grep "^$m" | cut -c1-200
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
timeout 100 python3 scripts/sanitize.py --tools memcheck,racecheck --scope subset --tokens 3,129 --shards 4 --timeout 90 \
  --only '*m64_n128_k128_*pairbits_bwgmma_regs' --out $OUT/sanitize 2>&1 | tail -8
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
