#!/usr/bin/env bash
# session 25 call 5: the final tree. One build of every instance either table names (both
# layouts), the fused_moe GPU tests on the new table (T = 1, 300, 2048, 4096: the nt8 stage
# 2 at T >= 2048), then the layer under the previous table (HEAD's, $MXFORGE_TUNED) and
# the new one, same run (scripts/gpu-ab-table), both models, T = 1, 64, 512, 2048, 4096,
# 8192.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY=(); while read -r n; do [ -n "$n" ] && ONLY+=(--only "$n"); done < .ab/only-s25e.txt
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head
grep -E "instances" "$OUT/build.log" | head -2
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,300,2048,4096 timeout 200 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "test_fused_moe and not slots and not graph and not back_to_back" -n 4 -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -3
echo "tests: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  for v in before new; do
    f=""; [ $v = before ] && f=$(realpath .ab/old-table.csv)
    MXFORGE_TUNED=$f timeout 150 python3 -m mxforge bench --model $m --T 1 64 512 2048 4096 8192 --stages \
      --out "$OUT/$v-$m" 2>&1 | sed "s/^/$v /" | tee -a "$OUT/ab-console.txt" | grep -E "^$v ($m|mxforge)" | cut -c1-60,120-250
  done
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
