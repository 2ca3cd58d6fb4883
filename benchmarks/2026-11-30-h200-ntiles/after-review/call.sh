#!/usr/bin/env bash
# session 18 final: after the review's refactor (add_out_pair shared, stage_after_main_loop):
# build, a quick bench, then the GPU tests of the changed stage-2 swapped instances
set -uo pipefail
set -f
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
only=(); while read -r n; do only+=(--only "$n"); done < .ab/only.txt
python3 build.py --set default --target sm90 -j "$(nproc)" "${only[@]}" --only 'sm90_moe_stage2_*_bswap' \
  --only 'sm90_moe_sort*' --only 'sm90_*quant*' --only 'sm90_mx_pack*' --only 'sm90_mxfp4_*' > "$OUT/build.log" 2>&1 || { echo BUILD FAILED; tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"; rm -f "$OUT/build.log"
timeout 40 python3 -m mxforge bench --model minimax-m2.1-tp8 --T 64 512 --stages --out "$OUT/bench-minimax" 2>&1 | grep minimax | cut -c1-200
rm -f "$OUT"/*.png
echo "bench: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,64,129,512 timeout 110 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "moe_stage2 and bswap and (_nt or m16_n256 or m32_n128 or _ck) and not odd_dims" -n 8 -p no:cacheprovider > "$OUT/pytest.log" 2>&1
echo "tests rc=$? $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/pytest.log")"; grep -E "FAILED" "$OUT/pytest.log" | head -5
