#!/usr/bin/env bash
# Session 41 (device machine, H200): the steps of one device call, each on when its variable
# is 1; $OUT the device's output folder; build/s41 keeps results across the calls of one warm
# machine (the build too). Everything also under $OUT/s41-$CALL.tar.gz.
#   BUILD  the whole default set for sm90 (scripts/gpu-build-subset, no globs)
#   AB     scripts/ab_heuristic.py SWAP_STAGE1_ONE_ROW_BLOCK_N None 64: the swapped stage-1
#          tile's block_n at one row per expert, as the layer (MiniMax TP=1 T = 2 ... 32,
#          MiniMax TP=4 and gpt-oss-20b T = 8 ... 32), $AB_ROUNDS rounds (that constant was
#          session 40's blanket rule, replaced after this A/B by SWAP_STAGE1_WAVE_GAIN)
#   TESTS  the GPU tests matching $TESTS_K at $MXFORGE_GPU_TOKENS, limited to $TEST_S seconds
#   EAGER  scripts/eager_vs_graph.py (eager fused_moe against graph replay)
#   TUNE   T=$TUNE_T TUNE_UNTIL=$TUNE_UNTIL BENCH=0 scripts/gpu-retune $TUNE_MODELS
# The calls as run (one warm machine; each call's console in this folder):
#   1: BUILD=1 AB=1 EAGER=1 AB_S=110 EAGER_S=70
#   2: TESTS=1 TUNE=1 TEST_S=200 TUNE_T="8 16 32" TUNE_MODELS="gpt-oss-20b minimax-m2.1-tp4"
#      TUNE_UNTIL=300 TUNE_S=90 TESTS_K="(test_fused_moe and pairbits and not direct and not
#      slots and not one_stage) or back_to_back or dependent_launch_reaches or
#      test_fused_moe_cuda_graph"
#   3: TUNE=1 TUNE_T="1 2 4 8 16 32 64 128 256 512 1024 2048 4096 8192"
#      TUNE_MODELS="minimax-m2.1-tp1 minimax-m2.1-tp4 gpt-oss-20b" TUNE_UNTIL=470 TUNE_S=100
#   4: the same with TUNE_UNTIL=270 (the rest of the list), then CALL=4t TESTS=1 TEST_S=90
#      MXFORGE_TUNED=build/gpu-retune/merged.csv MXFORGE_GPU_TOKENS=1,2,3,8,16,32,64,300,1024,4096
#      TESTS_K="test_fused_moe and pairbits and not direct and not slots and not one_stage and not split"
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s41-out}
CALL=${CALL:-x}
KEEP=build/s41
mkdir -p "$OUT" "$KEEP"
export PYTHONUNBUFFERED=1
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null) call $CALL at $(git rev-parse --short HEAD 2>/dev/null)"
t0=$(date +%s)
el() { echo $(( $(date +%s) - t0 )); }
if [ "${BUILD:-0}" = 1 ]; then
  LOG=$KEEP/build.log scripts/gpu-build-subset || exit 1
  echo "build: $(el) s"
fi
if [ "${AB:-0}" = 1 ]; then
  timeout "${AB_S:-200}" python3 scripts/ab_heuristic.py SWAP_STAGE1_ONE_ROW_BLOCK_N None 64 \
    --models minimax-m2.1-tp1 --T 2 4 8 16 32 --rounds "${AB_ROUNDS:-3}" --out "$KEEP/ab-tp1-$CALL.csv" 2>&1 |
    tee "$KEEP/ab-$CALL.txt" | cut -c1-220
  timeout "${AB_S:-200}" python3 scripts/ab_heuristic.py SWAP_STAGE1_ONE_ROW_BLOCK_N None 64 \
    --models minimax-m2.1-tp4 gpt-oss-20b --T 8 16 32 --rounds "${AB_ROUNDS:-3}" --out "$KEEP/ab-tp4-20b-$CALL.csv" 2>&1 |
    tee -a "$KEEP/ab-$CALL.txt" | cut -c1-220
  echo "ab: $(el) s"
fi
if [ "${TESTS:-0}" = 1 ]; then
  export MXFORGE_GPU_TOKENS=${MXFORGE_GPU_TOKENS:-1,2,3,8,16,32,64,300,1024}
  timeout "${TEST_S:-200}" python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 -p no:cacheprovider \
    -k "${TESTS_K:?}" --junitxml="$KEEP/junit-$CALL.xml" > "$KEEP/pytest-$CALL.log" 2>&1
  echo "pytest rc $?"; tail -3 "$KEEP/pytest-$CALL.log"
  grep -E "^FAILED|^ERROR" "$KEEP/pytest-$CALL.log" | head -20
  python3 scripts/junit_summary.py "$KEEP/junit-$CALL.xml" 2>/dev/null | tail -15
  echo "tests: $(el) s"
fi
if [ "${EAGER:-0}" = 1 ]; then
  timeout "${EAGER_S:-90}" python3 scripts/eager_vs_graph.py 2>&1 | tee "$KEEP/eager-$CALL.txt"
  echo "eager: $(el) s"
fi
if [ "${TUNE:-0}" = 1 ]; then
  mkdir -p "$KEEP/tune"
  T="${TUNE_T:?}" TUNE_UNTIL="${TUNE_UNTIL:-400}" TUNE_S="${TUNE_S:-120}" BENCH=0 OUT="$KEEP/tune" \
    scripts/gpu-retune ${TUNE_MODELS:?}
  echo "tune: $(el) s"
fi
tar czf "$OUT/s41-$CALL.tar.gz" --exclude=build.log -C build s41 $(cd build && ls -d gpu-retune 2>/dev/null)
echo "done: $(el) s"
