#!/usr/bin/env bash
# session 22 call 6: every block_m 64 wgmma_regs instance with bf16 activations (stage 1 and 2,
# both layouts: the two-part activation staging) on the GPU; gpt-oss a16w4 at T = 2048, 4096
# with the re-tuned table against HEAD's, same run.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
ONLY=(--only 'sm90_moe_stage*_bf16xpk_fp4_*_m64_*_bwgmma_regs' --only 'sm90_moe_stage*_bf16xpk_fp4_*_pairbits_bwgmma*')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m3 -A8 error $OUT/build.log; exit 1; }
grep -i spill $OUT/build.log | head -5; rm -f $OUT/build.log
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,129,2048 timeout 120 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "bf16xpk_fp4 and m64 and bwgmma_regs and (all_token or odd_dims or wide_scales or unaligned_output)" -n 4 -p no:cacheprovider 2>&1 | tee $OUT/pytest.log | tail -2
echo "tests: $(( $(date +%s) - t0 )) s"
for t in head new head new; do
  tbl=mxforge/tuned/sm90-h100.csv; [ $t = head ] && tbl=.ab/table-head-s22.csv
  MXFORGE_TUNED=$tbl timeout 60 python3 -m mxforge bench --model gpt-oss-120b --T 2048 4096 --pipelines a16w4 --stages \
    --out $OUT/$t-gpt-oss-120b-$(( $(date +%s) % 1000 )) 2>&1 | grep -E "^gpt|rror" | sed "s/^/$t /" | cut -c1-200
done
echo "total: $(( $(date +%s) - t0 )) s"
rm -f $OUT/*.png
