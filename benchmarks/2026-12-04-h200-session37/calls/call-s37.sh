#!/usr/bin/env bash
# Session 37 (device machine, H200): compute-sanitizer on direct routing, and the review's
# Python fixes of session 36 on a GPU. One script, two calls (the build is kept while the
# machine stays warm):
#   call A: BUILD=1 SANITIZE=1   the default set for sm90; memcheck + initcheck over the 30
#           decode tiles of scripts/sanitize.py's subset scope on direct routing (--direct:
#           sorted, direct, direct with dropped routes), racecheck over one per (op, pair)
#   call B: BENCH=1 TESTS=1      MiniMax TP=8 and TP=4 on both routings with per-stage
#           timings (bench --stages picks block_m among the direct-routing instances under
#           direct routing since session 36's review), then the direct-routing GPU tests
#   call C: BUILD=1 AUTO=1 TESTS=1   after auto's rule became one product (ops.layer_routing:
#           T * topk * w1 elements <= 3 * 2^25): the a16w4 layer on routings sorted and
#           direct for four presets (auto takes one of the two), then the GPU tests of the
#           layer on the new rule (TESTS_K="direct or back_to_back or (test_fused_moe and not split and not graph and not slots)")
#   (run) BUILD=1 SANITIZE=1 bash benchmarks/2026-12-04-h200-session37/calls/call-s37.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s37}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
t0=$(date +%s)
if [ "${BUILD:-0}" = 1 ]; then
  python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { echo "BUILD FAILED"; tail -30 "$OUT/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s; spill warnings: $(grep -ci spill "$OUT/build.log")"
fi
if [ "${SANITIZE:-0}" = 1 ]; then
  python3 scripts/sanitize.py --tools racecheck --scope coarse --direct --shards 3 \
    --timeout "${RACE_S:-300}" --out "$OUT/race" > "$OUT/sanitize-race.txt" 2>&1 &
  race=$!
  python3 scripts/sanitize.py --tools memcheck,initcheck --scope subset --direct --shards "${SHARDS:-5}" \
    --timeout "${SAN_S:-300}" --out "$OUT/san" > "$OUT/sanitize.txt" 2>&1; echo "sanitize rc $?"
  wait $race; echo "racecheck rc $?"
  tail -5 "$OUT/sanitize.txt"; tail -4 "$OUT/sanitize-race.txt"
  echo "sanitize: $(( $(date +%s) - t0 )) s"
fi
if [ "${BENCH:-0}" = 1 ]; then
  for m in minimax-m2.1-tp8 minimax-m2.1-tp4; do
    timeout "${BENCH_S:-110}" python3 -m mxforge bench --model $m --T 1 2 4 8 16 --pipelines a16w4 a4w4 \
      --routing sorted direct --stages --out "$OUT/$m" > "$OUT/bench-$m.txt" 2>&1; echo "bench $m rc $?"
  done
  echo "bench: $(( $(date +%s) - t0 )) s"
fi
if [ "${AUTO:-0}" = 1 ]; then
  for spec in "minimax-m2.1-tp8:1 2 4 8 10 11 16" "minimax-m2.1-tp4:1 2 4 5 8" "gpt-oss-120b:1 2 4" "gpt-oss-20b:1 2 4"; do
    m=${spec%%:*}
    timeout "${AUTO_S:-75}" python3 -m mxforge bench --model $m --T ${spec#*:} --pipelines a16w4 \
      --routing sorted direct --out "$OUT/auto-$m" > "$OUT/auto-$m.txt" 2>&1; echo "bench auto $m rc $?"
  done
  echo "auto: $(( $(date +%s) - t0 )) s"
fi
if [ "${TESTS:-0}" = 1 ]; then
  export MXFORGE_GPU_TOKENS=${MXFORGE_GPU_TOKENS:-1,2,3,4}
  timeout "${TEST_S:-200}" python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 -p no:cacheprovider \
    -k "${TESTS_K:-direct or (test_fused_moe and not split and not graph and not slots)}" \
    --junitxml="$OUT/gpu-junit.xml" > "$OUT/pytest.log" 2>&1; echo "pytest rc $?"; tail -4 "$OUT/pytest.log"
  echo "tests: $(( $(date +%s) - t0 )) s"
fi
