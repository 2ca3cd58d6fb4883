#!/usr/bin/env bash
# session 21 call 3: wgmma_regs v3 (new loads only after the proxy fence; block_m 64: one weight stage,
# two CTAs per SM): tests, the tuner's timings of the new tiles at T = 2048, 8192, ncu stall reasons.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
ONLY=(--only 'sm90_moe_stage*_bwgmma_regs')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > $OUT/build.log 2>&1 || { echo BUILD FAILED; grep -m5 -B2 -A10 "error" $OUT/build.log | head -80; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,129,2048 timeout 170 python3 -m pytest -q -m gpu tests/test_gpu.py -k "bwgmma_regs and (all_token or odd_dims or wide_scales)" \
  -n 4 -p no:cacheprovider --maxfail=8 2>&1 | tee $OUT/pytest.log | tail -3
echo "tests: $(( $(date +%s) - t0 )) s"
for m in gpt-oss-120b minimax-m2.1-tp8; do
  timeout 120 python3 -m mxforge tune --model $m --T 2048 8192 --only '*bwgmma_regs*' --layout pairbits --verbose --out $OUT/tune-$m.csv > $OUT/tune-$m.txt 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"; grep "stage" $OUT/tune-$m.txt | sed 's/_sk1//; s/_rwnone//; s/_pairbits//' | cut -c1-170
done
MXFORGE_TUNED=.ab/regs-table.csv NCU_ARGS="--section SpeedOfLight --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active" \
  timeout 100 scripts/ncu-stage gpt-oss-120b 8192 a16w4 moe_stage1 > $OUT/ncu-s1.txt 2>&1
grep -E "Duration|Issue Slots|stalled|inst_executed|gmma|Throughput" $OUT/ncu-s1.txt | awk '$NF+0 > 0.05 || /Duration|inst|gmma|Throughput/' | head -40
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
