#!/usr/bin/env bash
# session 24 call 7: why call 5's shared-space pointers made the ring tile slower: Nsight
# Compute's per-instruction table of MiniMax TP=8's a4w4 stage 2 at T = 8192 on that
# variant (var-a), to set beside call 2's table of the same kernel on HEAD.
set -uo pipefail
ONLY=(--only 'sm90_moe_stage*_m128_n128_k64_*pairbits_bwgmma' --only 'sm90_moe_stage*_m128_n128_k128_*pairbits_bwgmma_regs')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
t0=$(date +%s); SAVE=$(mktemp -d); cp csrc/mxforge/gpu/gemm.cuh csrc/mxforge/gpu/moe.cuh "$SAVE/"
cp .ab/var-a/csrc/mxforge/gpu/*.cuh csrc/mxforge/gpu/
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
scripts/ncu-sass minimax-m2.1-tp8 8192 a4w4 moe_stage2 "$OUT/sass-var-a-moe_stage2-a4w4-T8192.csv" > "$OUT/ncu.log" 2>&1
echo "ncu: $(( $(date +%s) - t0 )) s"
cp "$SAVE"/*.cuh csrc/mxforge/gpu/
