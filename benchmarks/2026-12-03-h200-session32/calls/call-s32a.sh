#!/usr/bin/env bash
# session 32 call 1: the final tree with the whole default set built on the device (block_m
# 16 wgmma_regs for the bf16-activation stage 1 in, the T = 128/256/512 re-tune merged, the
# heuristic's band from 8 rows with 16-bit activations): the GPU tests of the 8 new block_m 16
# instances (T = 1, 3, 256, 300, odd dims, wide scales), every fused_moe test (three presets,
# four dtype pairs, both layouts; MiniMax TP=4 untuned: the heuristic picks its tiles) at
# T = 1, 256, 300, 512, then the layer at T = 1 ... 8192 on both tuned models (CSV + plot).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head -5; grep -E "instances" "$OUT/build.log" | tail -1; rm -f "$OUT/build.log"
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,3,256,300 timeout 100 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "wgmma_regs and m16_ and bf16xpk_fp4" -n 8 -p no:cacheprovider -rf > "$OUT/pytest-m16.log" 2>&1
echo "m16 tests rc=$?: $(( $(date +%s) - t0 )) s"; grep -E "passed|failed|FAILED|rror" "$OUT/pytest-m16.log" | cut -c1-250 | tail -6
MXFORGE_GPU_TOKENS=1,256,300,512 timeout 120 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "test_fused_moe and not cuda_graph and not back_to_back and not slots" -n 8 -p no:cacheprovider -rf > "$OUT/pytest-fused.log" 2>&1
echo "fused_moe tests rc=$?: $(( $(date +%s) - t0 )) s"; grep -E "passed|failed|FAILED|rror" "$OUT/pytest-fused.log" | cut -c1-250 | tail -6
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  left=$(( 570 - ($(date +%s) - t0) )); [ $left -lt 20 ] && break
  timeout $left python3 -m mxforge bench --model $m --T 1 64 128 256 512 1024 2048 8192 --stages --out "$OUT/final-$m" 2>&1 | grep -E "^$m|^#" | cut -c1-250
  echo "bench $m: $(( $(date +%s) - t0 )) s"
done
echo "total $(( $(date +%s) - t0 )) s"
