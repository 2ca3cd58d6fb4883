#!/usr/bin/env bash
# Session 35, call A (device machine, H200): direct routing (fused_moe's routing "direct":
# no sort launch, each GEMM CTA lays out topk_ids itself; T * topk <= 32) against the tree
# before it (7b59dae: .ab/before holds its csrc and mxforge files), on the decode picks of
# the shipped table (session 34's list), in one call: "before" bench, then the new tree's
# bench with both routings side by side and per-stage timings, and the GPU tests of direct
# routing (every built stage instance, the layer at each T it takes, layers back to back
# in a graph) on the same build.
#   (here) mkdir -p .ab/before/...; git show 7b59dae:$f > .ab/before/$f for each changed file
#   (run, carry .ab) bash benchmarks/2026-12-04-h200-session35/calls/call-s35a.sh
# (It ran an earlier version of moe.cuh's direct routing, described in benchmarks/README.md,
# session 35, and not kept: this script on the final tree runs the final version.)
set -uo pipefail
cd "$(dirname "$0")/../../.."
export ONLY_FILE=benchmarks/2026-12-04-h200-session34/picks-decode.txt
export BEFORE_BENCH_ARGS="--T 1 2 4 8"
export BENCH_ARGS="--T 1 2 4 8 --stages --routing sorted direct"
export TESTS_K="direct or back_to_back"
export TOKENS=1,2,3,4,8
export OUT=${OUT:-build/s35a}
scripts/gpu-ab-src .ab/before
