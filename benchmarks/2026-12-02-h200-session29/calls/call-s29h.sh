#!/usr/bin/env bash
# session 29 call 8: the final commit's Python (layer_path's signature) on the GPU: call 6's
# subset build, the pairbits one-stage tests at T = 1, 2, 64 and the bench both ways.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY_FILE=benchmarks/2026-12-02-h200-session29/calls/only-s29f.txt scripts/gpu-build-subset | grep -v "^ptxas" || exit 1
MXFORGE_GPU_TOKENS=1,2,64 timeout 120 python3 -m pytest -q -m gpu tests/test_gpu.py -k "one_stage and pairbits" -n 8 \
  -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-250 | tail -6
timeout 100 python3 -m mxforge bench --model minimax-m2.1-tp8 --T 1 --pipelines a4w4-bf16inter a16w4 \
  --path auto one_stage --out "$OUT/bench-paths" 2>&1 | grep -E "^minimax|rror|wrote" | cut -c1-170
echo "total $(( $(date +%s) - t0 )) s"
