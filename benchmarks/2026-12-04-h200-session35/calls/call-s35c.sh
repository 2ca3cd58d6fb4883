#!/usr/bin/env bash
# Session 35, call C (device machine, H200): direct routing as shipped (a block per route:
# each CTA reads topk_ids[b] and topk_weights[b], one round trip, no layout to compute)
# against the tree before it (7b59dae in .ab/before) on the decode picks, T = 1 ... 16,
# both routings side by side with per-stage timings; the direct-routing GPU tests on the
# same build. Results: ab-console.txt, the CSVs, pytest.log.
#   (run, carry .ab) bash benchmarks/2026-12-04-h200-session35/calls/call-s35c.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
export ONLY_FILE=benchmarks/2026-12-04-h200-session34/picks-decode.txt
export BEFORE_BENCH_ARGS="--T 1 2 4 8 16"
export BENCH_ARGS="--T 1 2 4 8 16 --stages --routing sorted direct"
export TESTS_K="direct or back_to_back"
export TOKENS=1,2,3,4,8
export OUT=${OUT:-build/s35c}
scripts/gpu-ab-src .ab/before
