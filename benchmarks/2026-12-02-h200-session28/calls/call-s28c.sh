#!/usr/bin/env bash
# session 28 call 3: the final tree with the whole default set built on the device (block_m
# 32 wgmma_regs in, the T = 256 ... 1024 re-tunes and the new heuristic band): every
# fused_moe test (three presets, four dtype pairs, both layouts; MiniMax TP=4 untuned, so the
# heuristic's wgmma_regs band picks its tiles at T = 300 ... 1024) at T = 1, 300, 512, 1024,
# 2048, then the layer at T = 1 ... 8192 on both tuned models (CSV + plot).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head -5; grep -E "instances" "$OUT/build.log" | tail -1; rm -f "$OUT/build.log"
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,300,512,1024,2048 timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "test_fused_moe and not cuda_graph and not back_to_back and not slots" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-300 | tail -12
echo "tests: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  left=$(( 575 - ($(date +%s) - t0) )); [ $left -lt 20 ] && break
  timeout $left python3 -m mxforge bench --model $m --T 1 64 256 512 1024 2048 8192 --stages --out "$OUT/final-$m" 2>&1 | grep -E "^$m|^#" | cut -c1-250
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
echo "total $(( $(date +%s) - t0 )) s"
