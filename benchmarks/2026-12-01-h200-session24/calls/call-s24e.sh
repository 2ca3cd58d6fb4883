#!/usr/bin/env bash
# session 24 call 5: which of call 4's two ring-tile changes made it slower. Three builds of
# the T = 8192 tiles (ring block_m 128 x block_k 64, wgmma_regs block_m 128), each benched
# at T = 8192 on both models: HEAD; HEAD + shared-space pointers only (var-a); HEAD + the
# MX k-tile issue without tail checks only (var-b).
set -uo pipefail
ONLY=(--only 'sm90_moe_stage*_m128_n128_k64_*pairbits_bwgmma' --only 'sm90_moe_stage*_m128_n128_k128_*pairbits_bwgmma_regs')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
t0=$(date +%s); SAVE=$(mktemp -d); cp csrc/mxforge/gpu/gemm.cuh csrc/mxforge/gpu/moe.cuh "$SAVE/"
n=0
for v in var-head var-a var-b var-head; do
  n=$((n + 1))
  cp .ab/$v/csrc/mxforge/gpu/*.cuh csrc/mxforge/gpu/
  python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
  grep -i spill /tmp/build.log | head -3
  echo "build $v: $(( $(date +%s) - t0 )) s"
  for m in minimax-m2.1-tp8 gpt-oss-120b; do
    python3 -m mxforge bench --model $m --T 8192 --stages --out "$OUT/$n-$v-$m" 2>&1 | sed "s/^/$n-$v /" | tee -a "$OUT/console.txt" | grep -E "^$n-$v $m"
  done
done
cp "$SAVE"/*.cuh csrc/mxforge/gpu/
echo "done: $(( $(date +%s) - t0 )) s"
