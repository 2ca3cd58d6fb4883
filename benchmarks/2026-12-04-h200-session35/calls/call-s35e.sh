#!/usr/bin/env bash
# Session 35, call E (device machine, H200; cut off when the machine was taken back for
# other work): the whole default set for sm90 (spill warnings counted), scripts/check_sass.py
# over it (CI's first cell), then the direct-routing GPU tests for TEST_S seconds (every
# stage instance on direct routing; the layer on direct routing). Call D (call-s35d.sh)
# is this with more after it.
#   (run) bash benchmarks/2026-12-04-h200-session35/calls/call-s35e.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s35e}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { echo "BUILD FAILED"; tail -30 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s; spill warnings: $(grep -ci spill "$OUT/build.log")"
python3 scripts/check_sass.py --set default 2>&1 | tail -n 8
echo "check_sass: $(( $(date +%s) - t0 )) s"
export MXFORGE_GPU_TOKENS=1,2,3,4
timeout "${TEST_S:-100}" python3 -m pytest -q -m gpu tests/test_gpu.py -k "${TESTS_K:-direct}" -n 8 -p no:cacheprovider \
  > "$OUT/pytest.log" 2>&1; tail -3 "$OUT/pytest.log"
echo "tests: $(( $(date +%s) - t0 )) s"
