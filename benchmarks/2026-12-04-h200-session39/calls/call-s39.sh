#!/usr/bin/env bash
# Session 39 (device machine, H200): the presets the shipped table had no rows for
# (minimax-m2.1-tp4, minimax-m2.1-tp1, gpt-oss-20b: dispatch's heuristic decided them) tuned,
# and the heuristic's choice timed against the tuner's in the same run.
# Stages, each on when its variable is 1 ($OUT the device's output folder; a build is kept
# while the machine stays warm, ~30 s after a call):
#   BUILD  the default set's pairbits instances and utility ops for sm90 (scripts/gpu-build-subset;
#          the tune runs on pairbits weights, whose rows serve plain weights too)
#   TUNE   `mxforge tune --verbose` for each model of $TUNE_MODELS at each T of $TUNE_T, one
#          process per (T, model) so that each finished T keeps its CSV (tune-MODEL-T.csv);
#          a (T, model) is skipped once the call has run $TUNE_UNTIL seconds, and each is
#          limited to $TUNE_ONE_S seconds
#   BENCH  every tune-*.csv found (this call's and those kept in build/s39 by earlier calls)
#          merged into a copy of the shipped table (scripts/merge_tuned.py --as-layout plain),
#          then `mxforge bench` per model of $BENCH_MODELS at $BENCH_T with the shipped table
#          (tree: the heuristic for these presets) and the merged one, in turns
#   AB     the shipped table before this session (build/table-before.csv, carried) and after
#          (the tree's) put in place in turns, $AB_ROUNDS rounds, `mxforge bench` for each model
#          of $AB_MODELS at $AB_T (no --stages)
#   TESTS  the layer tests of every preset (test_fused_moe, pairbits weights) with the tree's
#          table (and $TESTS_TABLE first where set), tokens $MXFORGE_GPU_TOKENS
# Everything under $OUT/s39.tar.gz as well (the device returns 8 files).
# The calls as run (1-4 on one warm machine, 5 and 6 each on a fresh one; results in the
# folder above this one):
#   1: BUILD=1 TUNE=1 TUNE_UNTIL=380 TUNE_ONE_S=150   (MiniMax TP=4, gpt-oss-20b, T = 1 ... 1024)
#   2: TUNE=1 TUNE_MODELS=minimax-m2.1-tp1 TUNE_T="1 4 16 64 256 1024 4096" TUNE_UNTIL=330; then
#      TUNE=1 TUNE_MODELS="minimax-m2.1-tp4 gpt-oss-20b" TUNE_T="4096 8192" TUNE_UNTIL=200 TUNE_ONE_S=120
#   3: BENCH=1 BENCH_STAGES= BENCH_MODELS="minimax-m2.1-tp4 gpt-oss-20b minimax-m2.1-tp1"
#      BENCH_T="1 4 16 64 256 1024 4096" BENCH_S=95
#   4: TESTS=1 TEST_S=330 (with $OUT/merged.csv as MXFORGE_TUNED, which a fresh $OUT no longer
#      held: the tests ran on the shipped table, i.e. the heuristic for these presets)
#   5: (the merged table copied into mxforge/tuned/ on this machine before the call, the table
#      before it carried as build/table-before.csv) BUILD=1 TESTS=1 TEST_S=150
#      MXFORGE_GPU_TOKENS=1,3,16,64,300,1024,4096,8192; then AB=1 AB_ROUNDS=2
#      AB_MODELS="minimax-m2.1-tp4 gpt-oss-20b minimax-m2.1-tp1" AB_T="2 4" BENCH_S=60
#   6: (the tuner with its layer check, the table before the session) BUILD=1 TUNE=1
#      TUNE_MODELS="minimax-m2.1-tp4 gpt-oss-20b" TUNE_T="4 2" TUNE_UNTIL=215 TUNE_ONE_S=45
# (TESTS_TABLE replaced the hard-coded $OUT/merged.csv after call 4.)
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s39-out}
KEEP=build/s39  # tune CSVs kept between calls of one warm machine
mkdir -p "$OUT" "$KEEP"
export PYTHONUNBUFFERED=1
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
t0=$(date +%s)
el() { echo $(( $(date +%s) - t0 )); }
if [ "${BUILD:-0}" = 1 ]; then
  LOG=$OUT/build.log scripts/gpu-build-subset 'sm90_moe_*_pairbits*' || exit 1
  echo "build: $(el) s"
fi
if [ "${TUNE:-0}" = 1 ]; then
  for T in ${TUNE_T:-1 4 16 64 256 1024}; do
    for m in ${TUNE_MODELS:-minimax-m2.1-tp4 gpt-oss-20b}; do
      if [ "$(el)" -ge "${TUNE_UNTIL:-400}" ]; then echo "tune $m T=$T: skipped at $(el) s"; continue; fi
      timeout "${TUNE_ONE_S:-150}" python3 -m mxforge tune --model "$m" --T "$T" --layout pairbits --verbose \
        --out "$KEEP/tune-$m-$T.csv" > "$KEEP/tune-$m-$T.txt" 2>&1
      rc=$?
      echo "tune $m T=$T rc=$rc at $(el) s"
      grep -v "^  " "$KEEP/tune-$m-$T.txt" | sed 's/_sk1//g; s/_rwnone//g; s/_pairbits//g; s/_rwstage2//g;
        s/swiglu_oai_interleaved/swi/g; s/sm90_moe_//g; s/silu_concat/silu/g' | cut -c1-330 | tail -4
    done
  done
fi
if [ "${BENCH:-0}" = 1 ]; then
  cp mxforge/tuned/sm90-h100.csv "$OUT/merged.csv"
  python3 scripts/merge_tuned.py "$OUT/merged.csv" "$KEEP"/tune-*.csv --as-layout plain || exit 1
  for m in ${BENCH_MODELS:-minimax-m2.1-tp4 gpt-oss-20b}; do
    for t in tree merged; do
      tbl=""; [ $t = merged ] && tbl=$OUT/merged.csv
      MXFORGE_TUNED=$tbl timeout "${BENCH_S:-80}" python3 -m mxforge bench --model "$m" --T ${BENCH_T:-1 4 16 64 256 1024} \
        ${BENCH_STAGES---stages} --out "$KEEP/$t-$m" 2>&1 | grep -E "^$m|^# NVIDIA" | sed "s/^/$t /" | cut -c1-200
    done
    echo "bench $m: $(el) s"
  done
fi
if [ "${AB:-0}" = 1 ]; then
  cp mxforge/tuned/sm90-h100.csv build/table-after.csv
  for r in $(seq "${AB_ROUNDS:-2}"); do
    for t in before after; do
      cp build/table-$t.csv mxforge/tuned/sm90-h100.csv
      for m in ${AB_MODELS:-minimax-m2.1-tp4}; do
        timeout "${BENCH_S:-80}" python3 -m mxforge bench --model "$m" --T ${AB_T:-2 4} --out "$KEEP/ab$r-$t-$m" 2>&1 |
          grep -E "^$m" | sed "s/^/ab$r $t /" | cut -c1-200
      done
    done
  done
  cp build/table-after.csv mxforge/tuned/sm90-h100.csv
  echo "ab: $(el) s"
fi
if [ "${TESTS:-0}" = 1 ]; then
  export MXFORGE_GPU_TOKENS=${MXFORGE_GPU_TOKENS:-1,3,16,64,300,1024}
  MXFORGE_TUNED=${TESTS_TABLE:-} timeout "${TEST_S:-200}" python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 \
    -p no:cacheprovider -k "${TESTS_K:-test_fused_moe and pairbits and not direct and not slots and not one_stage}" \
    > "$KEEP/pytest.log" 2>&1; echo "pytest rc $?"; tail -4 "$KEEP/pytest.log"
  grep -E "^FAILED|^ERROR" "$KEEP/pytest.log" | head -20
  echo "tests: $(el) s"
fi
cp "$OUT"/*.log "$KEEP/" 2>/dev/null
tar czf "$OUT/s39.tar.gz" -C build s39
echo "done: $(el) s"
