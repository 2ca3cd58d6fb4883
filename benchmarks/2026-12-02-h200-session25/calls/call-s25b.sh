#!/usr/bin/env bash
# session 25 call 2: call 1's bench part (its build had no stage-1 instances: a glob in the
# wrong order): the layer under the shipped table and with the MiniMax stage-2 ring rows
# (T >= 2048) swapped for their nt4 / nt8 twins, interleaved, two rounds.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY=(--only 'sm90_moe_stage1_*_m64_*silu*_bwgmma*' --only 'sm90_moe_stage1_*_m128_*silu*_bwgmma*'
      --only 'sm90_moe_stage2_*_m64_n128_k64*_nobias_*_bwgmma' --only 'sm90_moe_stage2_*_m128_n128_k64*_nobias_*_bwgmma')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head
grep -E "instances" "$OUT/build.log" | head -3
echo "build: $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for v in shipped nt4 nt8; do
    f=""; [ $v != shipped ] && f=$(realpath .ab/$v.csv)
    MXFORGE_TUNED=$f timeout 120 python3 -m mxforge bench --model minimax-m2.1-tp8 --T 2048 4096 8192 --stages \
      --out "$OUT/$v-r$r" 2>&1 | sed "s/^/$v /" | tee -a "$OUT/console.txt" | grep -E "^$v (minimax|mxforge)" | cut -c1-250
  done
  echo "bench round $r: $(( $(date +%s) - t0 )) s"
done
