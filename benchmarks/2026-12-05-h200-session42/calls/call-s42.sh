#!/usr/bin/env bash
# Session 42 (device machine, H200): the steps of one device call, each on when its variable
# is 1; $OUT the device's output folder; build/s42 keeps results across the calls of one warm
# machine (the build too). Everything also under $OUT/s42-$CALL.tar.gz.
#   BUILD   the whole default set for sm90 (scripts/gpu-build-subset, no globs)
#   PROF    scripts/eager_vs_graph.py --profile: where an eager call's host time goes
#           (MiniMax TP=8 T = 1, a4w4 and a16w4: each launch replayed alone, the runtime's
#           primitives, cProfile, torch.profiler)
#   HOST    scripts/host_overhead.py: the same call with the launches stubbed, on this host's CPU
#   EAGER   scripts/eager_vs_graph.py (eager fused_moe against graph replay, $EAGER_T)
#   BENCH   mxforge bench, MiniMax TP=8 T = 1 64 512 (bench after session 41's layer_inputs)
#   AB      scripts/ab_heuristic.py SWAP_STAGE1_WAVE_GAIN 0 0.95 --heuristic-only (the wave
#           rule as shipped, as the layer, where the heuristic decides)
#   PDLSEP  scripts/pdl_separated.py (PDL modes with a torch kernel between layers)
#   TESTS   the GPU tests matching $TESTS_K at $MXFORGE_GPU_TOKENS, limited to $TEST_S seconds
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s42-out}
CALL=${CALL:-x}
KEEP=build/s42
mkdir -p "$OUT" "$KEEP"
export PYTHONUNBUFFERED=1
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null) call $CALL at $(git rev-parse --short HEAD 2>/dev/null); $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
t0=$(date +%s)
el() { echo $(( $(date +%s) - t0 )); }
step() { echo "== $1: $(el) s"; }
if [ "${BUILD:-0}" = 1 ]; then
  LOG=$KEEP/build.log scripts/gpu-build-subset || exit 1
  step build
fi
if [ "${PROF:-0}" = 1 ]; then
  timeout "${PROF_S:-120}" python3 scripts/eager_vs_graph.py --profile 300 --models minimax-m2.1-tp8 \
    --T 1 --pipelines a4w4 a16w4 --calls 100 > "$KEEP/prof-$CALL.txt" 2>&1
  echo "prof rc $?"; grep -E "^minimax|^#|ops._launch|^  " "$KEEP/prof-$CALL.txt" | head -40
  step prof
fi
if [ "${HOST:-0}" = 1 ]; then
  timeout "${HOST_S:-90}" python3 scripts/host_overhead.py --calls 200 --T 1 64 \
    --models minimax-m2.1-tp8 2>&1 | tee "$KEEP/host-$CALL.txt"
  step host
fi
if [ "${EAGER:-0}" = 1 ]; then
  timeout "${EAGER_S:-90}" python3 scripts/eager_vs_graph.py --T ${EAGER_T:-1 8 64 512} 2>&1 |
    tee "$KEEP/eager-$CALL.txt"
  step eager
fi
if [ "${BENCH:-0}" = 1 ]; then
  timeout "${BENCH_S:-120}" python3 -m mxforge bench --model minimax-m2.1-tp8 --T 1 64 512 \
    --pipelines a4w4 a16w4 --out "$KEEP/bench-$CALL" 2>&1 | tee "$KEEP/bench-$CALL.txt" | cut -c1-200
  step bench
fi
if [ "${AB:-0}" = 1 ]; then
  timeout "${AB_S:-200}" python3 scripts/ab_heuristic.py SWAP_STAGE1_WAVE_GAIN 0 0.95 --heuristic-only \
    --models ${AB_MODELS:-minimax-m2.1-tp1 minimax-m2.1-tp4 gpt-oss-20b} --T ${AB_T:-2 8 32} \
    --pipelines a4w4 a4w4-bf16inter --rounds "${AB_ROUNDS:-3}" --out "$KEEP/ab-$CALL.csv" 2>&1 |
    tee "$KEEP/ab-$CALL.txt" | cut -c1-220
  step ab
fi
if [ "${PDLSEP:-0}" = 1 ]; then
  timeout "${PDLSEP_S:-90}" python3 scripts/pdl_separated.py --model minimax-m2.1-tp8 --T 1 2 8 \
    --pipelines a4w4 a16w4 --modes off auto 2>&1 | tee "$KEEP/pdlsep-$CALL.txt"
  step pdlsep
fi
if [ "${TESTS:-0}" = 1 ]; then
  export MXFORGE_GPU_TOKENS=${MXFORGE_GPU_TOKENS:-1,2,3,8,16,32,64,300,1024}
  timeout "${TEST_S:-200}" python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 -p no:cacheprovider \
    -k "${TESTS_K:?}" --junitxml="$KEEP/junit-$CALL.xml" > "$KEEP/pytest-$CALL.log" 2>&1
  echo "pytest rc $?"; tail -3 "$KEEP/pytest-$CALL.log"
  grep -E "^FAILED|^ERROR" "$KEEP/pytest-$CALL.log" | head -20
  step tests
fi
tar czf "$OUT/s42-$CALL.tar.gz" --exclude=build.log -C build s42
step done
