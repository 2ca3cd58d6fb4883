#!/usr/bin/env bash
# session 29 call 5: the final tree (the swapped one-stage kernel dropped; tune's one- vs
# two-stage comparison, the table's moe_1stage rows and fused_moe's path auto reading them,
# bench --path). Whole default set built; GPU tests of fused_moe (every path: auto at the
# tokens below, one_stage on MiniMax, back to back in a graph both ways), then tune with the
# one-stage comparison and the layer both ways on MiniMax TP=8.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
scripts/gpu-build-subset | grep -v "^ptxas" || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,2,3,8,64,300,2048 timeout 220 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "fused_moe and not slots and not compile" -n 8 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-250 | tail -12
echo "tests: $(( $(date +%s) - t0 )) s"
timeout 120 python3 -m mxforge tune --model minimax-m2.1-tp8 --T 1 2 8 --pipelines a4w4-bf16inter a16w4 --layout pairbits \
  --verbose --out "$OUT/tune.csv" > "$OUT/tune.txt" 2>&1; grep -E "^minimax|wrote|rror" "$OUT/tune.txt" | sed 's/sm90_moe_//g' | cut -c1-240
echo "tune: $(( $(date +%s) - t0 )) s"
timeout 150 python3 -m mxforge bench --model minimax-m2.1-tp8 --T 1 2 8 64 --pipelines a4w4-bf16inter a16w4 \
  --path auto one_stage --out "$OUT/bench-paths" 2>&1 | grep -E "^minimax|^#|rror" | cut -c1-170
echo "total $(( $(date +%s) - t0 )) s"
