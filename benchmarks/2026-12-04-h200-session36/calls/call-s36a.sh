#!/usr/bin/env bash
# Session 36, call A (device machine, H200): session 35's final tree on a GPU. The whole
# default set for sm90 (spill warnings counted), then the GPU tests of direct routing
# (every decode stage instance; the pinned-prefill-tile error; the layer with routing
# "direct" for three pipelines and both layouts) and of whole layers (fused_moe with its
# tuned picks and routing "auto" at T = 1 ... 4; layers back to back in a CUDA graph), then
# the back-to-back tests again with programmatic dependent launch on, then MiniMax TP=4
# (w1 2.4M elements per expert, under the auto rule's 2^22) on both routings.
#   (run) bash benchmarks/2026-12-04-h200-session36/calls/call-s36a.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s36a}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null) $(git rev-parse --short HEAD 2>/dev/null)"
t0=$(date +%s)
python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { echo "BUILD FAILED"; tail -30 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s; spill warnings: $(grep -ci spill "$OUT/build.log")"
export MXFORGE_GPU_TOKENS=${MXFORGE_GPU_TOKENS:-1,2,3,4}
timeout "${TEST_S:-230}" python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 -p no:cacheprovider \
  -k "${TESTS_K:-direct or back_to_back or (test_fused_moe and not split and not graph and not slots)}" \
  --junitxml="$OUT/gpu-junit.xml" > "$OUT/pytest.log" 2>&1; echo "pytest rc $?"; tail -12 "$OUT/pytest.log"
echo "tests: $(( $(date +%s) - t0 )) s"
MXFORGE_PDL=1 timeout "${PDL_S:-70}" python3 -m pytest -q -m gpu tests/test_gpu.py -k "back_to_back" -n 8 -p no:cacheprovider \
  > "$OUT/pytest-pdl.log" 2>&1; echo "pdl pytest rc $?"; tail -3 "$OUT/pytest-pdl.log"
echo "pdl tests: $(( $(date +%s) - t0 )) s"
timeout "${BENCH_S:-80}" python3 -m mxforge bench --model minimax-m2.1-tp4 --T 1 2 4 8 --pipelines a16w4 \
  --routing sorted direct --stages --out "$OUT/tp4" > "$OUT/bench-tp4.txt" 2>&1; echo "bench rc $?"
grep -vE "^\s*$" "$OUT/bench-tp4.txt" | tail -14
echo "total: $(( $(date +%s) - t0 )) s"
