#!/usr/bin/env bash
# Session 37 (device machine, H200): compute-sanitizer on direct routing, session 36's
# review fixes on a GPU, auto's routing rule, programmatic dependent launch again. The calls
# as run ($OUT the device's output folder; a build is kept while the machine stays warm,
# ~30 s after a call):
#   A:  BUILD=1 SANITIZE=1 bash calls/call-s37.sh
#       the default set for sm90; memcheck + initcheck over the 30 decode tiles of the
#       subset scope on direct routing (--direct: sorted, direct, direct with dropped
#       routes), racecheck over one per (op, pair)
#   A2: python3 scripts/sanitize.py --tools memcheck,initcheck --scope all --direct --shards 6 --timeout 420
#   B:  python3 scripts/sanitize.py --tools racecheck --scope subset --direct --shards 6 --timeout 150
#       then BENCH=1 TESTS=1 TEST_S=170 bash calls/call-s37.sh: MiniMax TP=8 and TP=4 on
#       both routings with per-stage timings, then the direct-routing and layer GPU tests
#   C:  BUILD=1 AUTO=1 TESTS=1 TEST_S=200 TESTS_K="direct or back_to_back or (test_fused_moe and not split and not graph and not slots)"
#       after auto's rule became one product (ops.layer_routing: T * topk * w1 elements
#       <= 3 * 2^25): the a16w4 layer on both routings for four presets, then the GPU
#       tests of the layer on the new rule
#   D:  (build) MXFORGE_PDL=0 / 1 python3 scripts/pdl_separated.py --model M --T 1 2 4 8
#       --pipelines a16w4 a4w4, M = minimax-m2.1-tp8, gpt-oss-120b
#   E:  the same, PDL 1 then 0, three models, three pipelines; then MXFORGE_PDL=1
#       MXFORGE_GPU_TOKENS=1,3,64 pytest -m gpu -k "fused_moe or graph or compile or split_quant_sort"
#   F:  (build) the same at T = 64 512 2048, a4w4 a16w4, gpt-oss-120b and MiniMax TP=8
#   G:  gpt-oss-120b a4w4 and a4w4-bf16inter at T = 32 64 128, PDL 0 / 1 twice
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
