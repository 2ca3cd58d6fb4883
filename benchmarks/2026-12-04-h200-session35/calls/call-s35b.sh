#!/usr/bin/env bash
# Session 35, call B (device machine, H200): call A again (direct routing against the tree
# before it, 7b59dae in .ab/before, on the decode picks; the direct-routing GPU tests on
# the same build) with the cheaper direct prologue: blocks numbered in the order of the
# experts' first routes (a scan over the lanes instead of two passes over them), the
# prologue and stage 1's zeroing out of line. Results: ab-console.txt, the CSVs, pytest.log.
#   (run, carry .ab) bash benchmarks/2026-12-04-h200-session35/calls/call-s35b.sh
# (It ran an earlier version of moe.cuh's direct routing, described in benchmarks/README.md,
# session 35, and not kept: this script on the final tree runs the final version.)
set -uo pipefail
cd "$(dirname "$0")/../../.."
export ONLY_FILE=benchmarks/2026-12-04-h200-session34/picks-decode.txt
export BEFORE_BENCH_ARGS="--T 1 2 4 8"
export BENCH_ARGS="--T 1 2 4 8 --stages --routing sorted direct"
export TESTS_K="direct or back_to_back"
export TOKENS=1,2,3,4,8
export OUT=${OUT:-build/s35b}
scripts/gpu-ab-src .ab/before
