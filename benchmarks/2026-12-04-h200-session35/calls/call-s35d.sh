#!/usr/bin/env bash
# Session 35, call D (device machine, H200): the final tree. The whole default set for
# sm90 (spill warnings counted), scripts/check_sass.py over it (CI's first cell), the GPU
# tests of direct routing and of whole layers at decode (every stage instance on direct
# routing; fused_moe with routing auto at T = 1 ... 4, where MiniMax a16w4 now routes
# directly; layers back to back in a graph, with programmatic dependent launch off and
# on), and MiniMax TP=4 (w1 2.4M elements per expert, under the auto rule's 2^22) with
# both routings at T = 1, 2, 4.
#   (run) bash benchmarks/2026-12-04-h200-session35/calls/call-s35d.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s35d}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { echo "BUILD FAILED"; tail -30 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s; spill warnings: $(grep -ci spill "$OUT/build.log")"
python3 scripts/check_sass.py --set default 2>&1 | tail -n 8
echo "check_sass: $(( $(date +%s) - t0 )) s"
export MXFORGE_GPU_TOKENS=1,2,3,4
timeout 240 python3 -m pytest -q -m gpu tests/test_gpu.py -k "direct or back_to_back or (test_fused_moe and not one_stage and not split and not slots and not graph)" -n 6 \
  -p no:cacheprovider > "$OUT/pytest.log" 2>&1; tail -3 "$OUT/pytest.log"
echo "tests: $(( $(date +%s) - t0 )) s"
MXFORGE_PDL=1 timeout 90 python3 -m pytest -q -m gpu tests/test_gpu.py -k "back_to_back" -n 6 -p no:cacheprovider \
  > "$OUT/pytest-pdl.log" 2>&1; tail -2 "$OUT/pytest-pdl.log"
echo "tests (PDL): $(( $(date +%s) - t0 )) s"
python3 -m mxforge bench --model minimax-m2.1-tp4 --T 1 2 4 --pipelines a16w4 --routing sorted direct --stages \
  --out "$OUT/tp4" 2>&1 | grep -E "^minimax|^#" | tail -8
echo "bench: $(( $(date +%s) - t0 )) s"
