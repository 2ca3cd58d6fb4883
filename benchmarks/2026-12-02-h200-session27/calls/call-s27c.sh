#!/usr/bin/env bash
# session 27 call 3: the ring tile's main loops with one barrier per k-tile (a thread converts
# only the chunks it copied, so the "landed" barrier goes; each warpgroup waits for its MMAs
# of the k-tile before the "converted" barrier; the one-tile loop's copies one k-tile
# deeper) against HEAD's gemm.cuh in one run (scripts/gpu-ab-src; the re-tuned table of call 1
# in the tree, every pairbits wgmma / wgmma_regs instance built), the GPU tests of the 40
# pairbits ring instances on the new build, then memcheck and racecheck on both new loops.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
OUT=$OUT ONLY_FILE=.ab/only-s27c.txt BENCH_ARGS="--T 2048 4096 8192 --stages" \
  TESTS_K="bwgmma and not bwgmma_regs and pairbits" TOKENS=3,300 GPU_TEST_WORKERS=8 \
  timeout 420 scripts/gpu-ab-src .ab/before-s27c minimax-m2.1-tp8 gpt-oss-120b 2>&1 | grep -v "^$" | cut -c1-330
for g in 'sm90_moe_stage1_*xpk_fp4_obf16_m128_n128_k64_*swiglu*pairbits_bwgmma' 'sm90_moe_stage2_*_m128_n128_k64_nt8_*pairbits_bwgmma'; do
  left=$(( 580 - ($(date +%s) - t0) )); [ $left -lt 40 ] && break
  timeout $left python3 scripts/sanitize.py --tools memcheck,racecheck --scope all --tokens 3,129 \
    --only "$g" --shards 4 --timeout $(( left - 10 )) --out build/s27/sanitize 2>&1 | tail -5
done
rm -f "$OUT"/*.png
echo "total $(( $(date +%s) - t0 )) s"
