#!/usr/bin/env bash
# session 28 call 2: the wgmma_regs tile at block_m 16 and 32 (N = the block's 16 / 32
# tokens; one weight stage, two CTAs per SM): every pairbits instance of the default set
# plus the 24 plain new ones built; the GPU tests of the 48 new instances (token counts,
# 256 tokens on one expert, odd dims, wide scales, unaligned stage-2 rows, slots); the tuner
# at T = 256, 512, 1024 over every pairbits instance (each verified end to end), merged into
# a copy of the shipped table as plain rows; the layer with that table against the tree's,
# same run; memcheck and racecheck over new instances while time is left.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
scripts/gpu-build-subset 'sm90_moe_*_pairbits*' 'sm90_moe_*_m16_*_plain_bwgmma_regs' 'sm90_moe_*_m32_*_plain_bwgmma_regs' || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,3,16,33,300,1024 timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "(_m16_ or _m32_) and bwgmma_regs" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-300 | tail -12
echo "tests: $(( $(date +%s) - t0 )) s"
mkdir -p build/s28
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout 120 python3 -m mxforge tune --model $m --T 256 512 1024 \
    --layout pairbits --verbose --out build/s28/tune-$m.csv > "$OUT/tune-$m.txt" 2>&1
  echo "tune $m rc=$?: $(( $(date +%s) - t0 )) s"
  grep -v "^  " "$OUT/tune-$m.txt" | sed 's/_sk1//g; s/_rwnone//g; s/_pairbits//g; s/_rwstage2//g; s/swiglu_oai_interleaved/swi/g; s/sm90_moe_//g' | cut -c1-250 | tail -10
done
cp mxforge/tuned/sm90-h100.csv build/s28/merged.csv
python3 scripts/merge_tuned.py build/s28/merged.csv build/s28/tune-*.csv --as-layout plain && cp build/s28/merged.csv "$OUT/"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  for t in tree merged; do
    tbl=""; [ $t = merged ] && tbl=build/s28/merged.csv
    MXFORGE_TUNED=$tbl timeout 60 python3 -m mxforge bench --model $m --T 256 512 1024 --stages \
      --out build/s28/$t-$m 2>&1 | grep "^$m" | sed "s/^/$t /" | cut -c1-260
  done
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
cp build/s28/merged-*.csv "$OUT/" 2>/dev/null
for g in 'sm90_moe_stage1_pk_fp4xpk_fp4_obf16_m32_*swiglu*pairbits_bwgmma_regs' 'sm90_moe_stage2_bf16xpk_fp4_obf16_m16_*_bias_pairbits_bwgmma_regs'; do
  left=$(( 580 - ($(date +%s) - t0) )); [ $left -lt 40 ] && break
  timeout $left python3 scripts/sanitize.py --tools memcheck,racecheck --scope all --tokens 3,129 \
    --only "$g" --shards 4 --timeout $(( left - 10 )) --out build/s28/sanitize 2>&1 | tail -5
done
echo "total $(( $(date +%s) - t0 )) s"
