#!/usr/bin/env bash
# Session 35, calls A, B and C (device machine, H200): direct routing against the tree
# before it (7b59dae: .ab/before holds its csrc and mxforge files) on the decode picks
# (session 34's list), in one call: the "before" bench, the new tree's bench with both
# routings side by side and per-stage timings, and the direct-routing GPU tests on the
# same build. Results: ab-console.txt, the CSVs, pytest.log.
#   (here) mkdir -p .ab/before/...; git show 7b59dae:$f > .ab/before/$f for each changed file
#   (run, carry .ab) bash benchmarks/2026-12-04-h200-session35/calls/call-s35c.sh
# Call C (the shipped version: a block per route) ran this with TS="1 2 4 8 16"; calls A
# and B (call-s35a.sh, call-s35b.sh) with TS="1 2 4 8" on earlier versions of moe.cuh's
# direct routing (benchmarks/README.md, session 35), not kept.
set -uo pipefail
cd "$(dirname "$0")/../../.."
TS=${TS:-1 2 4 8 16}
export ONLY_FILE=benchmarks/2026-12-04-h200-session34/picks-decode.txt
export BEFORE_BENCH_ARGS="--T $TS"
export BENCH_ARGS="--T $TS --stages --routing sorted direct"
export TESTS_K="direct or back_to_back"
export TOKENS=1,2,3,4,8
export OUT=${OUT:-build/s35c}
scripts/gpu-ab-src .ab/before
