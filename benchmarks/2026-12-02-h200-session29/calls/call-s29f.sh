#!/usr/bin/env bash
# session 29 call 6: the last code changes of the session on the GPU (bench: a layer without
# a one-stage instance is skipped with a note, the plot's output path; tune's one-stage
# comparison): the instances the table names at T = 1 and the one-stage ones, a bench of
# both models with --path auto one_stage (gpt-oss has no one-stage instance) and the
# one-stage GPU tests at T = 1, 2.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY_FILE=benchmarks/2026-12-02-h200-session29/calls/only-s29f.txt scripts/gpu-build-subset | grep -v "^ptxas" || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,2 timeout 120 python3 -m pytest -q -m gpu tests/test_gpu.py -k "one_stage" -n 8 -p no:cacheprovider -rf 2>&1 |
  tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-250 | tail -8
timeout 120 python3 -m mxforge bench --model minimax-m2.1-tp8 gpt-oss-120b --T 1 --pipelines a4w4-bf16inter a16w4 \
  --path auto one_stage --out "$OUT/bench-paths" 2>&1 | grep -E "^minimax|^gpt|^#|rror|wrote" | cut -c1-170
ls "$OUT"
echo "total $(( $(date +%s) - t0 )) s"
