#!/usr/bin/env bash
# session 26 call 4: the final ring operand (32-bit offsets for every linear layout, checked
# at launch; which chunks have a row as one mask; stage places from slot 0's; no spill in any
# of the 80 ring instances, ptxas): the ring instances and the tuned table's built, the GPU
# tests of every ring instance (T = 3, 300 and 256 rows on one expert, odd dims, unaligned
# output rows, the N loop, wide scales, slots), then the layer at T = 512, 2048, 8192.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY=(); while read -r n; do [ -n "$n" ] && ONLY+=(--only "$n"); done < .ab/only-s26a.txt
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head -5
grep -E "instances" "$OUT/build.log" | head -2
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,300 timeout 200 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "bwgmma and not bwgmma_regs" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-300 | tail -12
echo "tests: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  timeout 60 python3 -m mxforge bench --model $m --T 512 2048 8192 --stages --out "$OUT/final-$m" 2>&1 | tee -a "$OUT/console.txt" | grep -E "^$m|^#" | cut -c1-250
done
echo "bench: $(( $(date +%s) - t0 )) s"
