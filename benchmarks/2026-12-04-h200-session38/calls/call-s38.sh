#!/usr/bin/env bash
# Session 38 (device machine, H200): programmatic dependent launch decided per op
# (mxforge.set_dependent_launch; default auto = on at T <= ops.PDL_AUTO_MAX_TOKENS).
# Stages, each on when its variable is 1 ($OUT the device's output folder; a build is kept
# while the machine stays warm, ~30 s after a call):
#   BUILD  the default set for sm90 (with the spill count)
#   EDGES  the GPU test that the decision reaches the launches (programmatic edges in a
#          captured graph) and the back-to-back layer tests (PDL on at every T)
#   AB     scripts/pdl_separated.py, modes off / auto / on alternated in one process,
#          for the models in $AB_MODELS at T in $AB_T, every pipeline
#   TESTS  the GPU tests of the layer on the default mode (auto), tokens $MXFORGE_GPU_TOKENS
#   BENCH  mxforge bench on the default mode for $BENCH_MODELS at $BENCH_T
# The calls as run (the limit PDL_AUTO_MAX_TOKENS 16 in A and B, 8 from C on):
#   A: BUILD=1 EDGES=1 AB=1 AB_S=260                  (MiniMax TP=8; stopped after T = 16)
#   B: BUILD=1 AB=1 AB_MODELS=gpt-oss-120b AB_T="16 32" AB_S=150 TESTS=1
#      MXFORGE_GPU_TOKENS=1,16,17 TEST_S=220
#   C: BUILD=1 EDGES=1 EDGES_S=60 AB=1 AB_MODELS=gpt-oss-120b AB_T="4 8" AB_MODES="off auto"
#      AB_S=100 BENCH=1 BENCH_T="1 2 4 8 16" BENCH_S=105   (B's build in place)
#   D: TESTS=1 MXFORGE_GPU_TOKENS=1,8,9 TEST_S=200 AB=1 AB_MODELS=minimax-m2.1-tp4 AB_T="1 8"
#      AB_MODES="off auto" AB_S=120
#   E: python3 scripts/pdl_separated.py --model minimax-m2.1-tp4 --T 4 8 --pipelines a4w4 a16w4
#      --modes off auto --rounds 4; the same for gpt-oss-120b --T 8 --pipelines a4w4
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s38}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
t0=$(date +%s)
if [ "${BUILD:-0}" = 1 ]; then
  python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { echo "BUILD FAILED"; tail -30 "$OUT/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s; spill warnings: $(grep -ci spill "$OUT/build.log")"
fi
if [ "${EDGES:-0}" = 1 ]; then
  timeout "${EDGES_S:-150}" python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 -p no:cacheprovider \
    -k "dependent_launch or back_to_back" > "$OUT/pytest-edges.log" 2>&1; echo "pytest edges rc $?"
  grep -E "passed|failed|Error|assert" "$OUT/pytest-edges.log" | tail -12
  echo "edges: $(( $(date +%s) - t0 )) s"
fi
if [ "${AB:-0}" = 1 ]; then
  for m in ${AB_MODELS:-minimax-m2.1-tp8}; do
    timeout "${AB_S:-240}" python3 scripts/pdl_separated.py --model "$m" --T ${AB_T:-1 2 4 8 16 32 64} \
      --modes ${AB_MODES:-off auto on} --rounds "${AB_ROUNDS:-2}" 2>&1 | tee "$OUT/pdl-$m.txt"; echo "ab $m rc ${PIPESTATUS[0]}"
  done
  echo "ab: $(( $(date +%s) - t0 )) s"
fi
if [ "${TESTS:-0}" = 1 ]; then
  export MXFORGE_GPU_TOKENS=${MXFORGE_GPU_TOKENS:-1,3,16,17,64}
  timeout "${TEST_S:-300}" python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 -p no:cacheprovider \
    -k "${TESTS_K:-fused_moe or graph or compile or split_quant_sort or direct}" \
    --junitxml="$OUT/gpu-junit.xml" > "$OUT/pytest.log" 2>&1; echo "pytest rc $?"; tail -4 "$OUT/pytest.log"
  grep -E "^FAILED|^ERROR" "$OUT/pytest.log" | head -20
  echo "tests: $(( $(date +%s) - t0 )) s"
fi
if [ "${BENCH:-0}" = 1 ]; then
  for m in ${BENCH_MODELS:-minimax-m2.1-tp8 gpt-oss-120b}; do
    timeout "${BENCH_S:-150}" python3 -m mxforge bench --model "$m" --T ${BENCH_T:-1 2 4 8 16 32 64} \
      --out "$OUT/bench-$m" > "$OUT/bench-$m.txt" 2>&1; echo "bench $m rc $?"; cat "$OUT/bench-$m.txt"
  done
  echo "bench: $(( $(date +%s) - t0 )) s"
fi
