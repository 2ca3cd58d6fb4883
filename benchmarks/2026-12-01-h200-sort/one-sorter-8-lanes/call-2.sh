#!/usr/bin/env bash
# session 20 call 2: full default build of HEAD; per-kernel timelines (gpt-oss T=1,8; MiniMax T=1);
# GPU tests of sort, quant, fused quant+sort, fused_moe, graphs/opcheck/compile (+PDL); a small-T bench
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) $(git log --oneline -1 | cut -c1-7)"
python3 build.py --set default --target sm90 -j "$(nproc)" > $OUT/build.log 2>&1 || { echo BUILD FAILED; tail -30 $OUT/build.log; exit 1; }
rm -f $OUT/build.log; echo "build: $(( $(date +%s) - t0 )) s"
for m in gpt-oss-120b:1 gpt-oss-120b:8 minimax-m2.1-tp8:1; do for p in a16w4 a4w4; do
  timeout 30 python3 scripts/kernel_timeline.py --model ${m%:*} --T ${m#*:} --pipeline $p 2>&1 | grep -E "moe_|period" | sed "s/^/$m $p /" | cut -c1-120
done; done | tee $OUT/timeline.txt
echo "timelines: $(( $(date +%s) - t0 )) s"
timeout 200 python3 -m pytest -q -m gpu tests/test_gpu.py -k "sort or quant or fused_moe or graph or opcheck or compile" \
  -n 8 -p no:cacheprovider > $OUT/pytest.log 2>&1
echo "tests rc=$? $(( $(date +%s) - t0 )) s: $(tail -1 $OUT/pytest.log)"; grep -E "^FAILED" $OUT/pytest.log | head
MXFORGE_PDL=1 timeout 90 python3 -m pytest -q -m gpu tests/test_gpu.py -k "fused_moe or graph" -n 8 -p no:cacheprovider > $OUT/pytest-pdl.log 2>&1
echo "pdl tests rc=$? $(( $(date +%s) - t0 )) s: $(tail -1 $OUT/pytest-pdl.log)"; grep -E "^FAILED" $OUT/pytest-pdl.log | head
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  [ $(( $(date +%s) - t0 )) -lt 520 ] || break
  timeout 60 python3 -m mxforge bench --model $m --T 1 8 32 --stages --out $OUT/small-$m 2>&1 | grep "$m " | cut -c1-220
done
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
