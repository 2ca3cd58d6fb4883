#!/usr/bin/env bash
# Session 35, call D (device machine, H200; cut off when the machine was taken back for
# other work): call-s35e.sh with the decode tests of whole layers too (fused_moe with
# routing auto at T = 1 ... 4, layers back to back in a graph), then the back-to-back
# tests with programmatic dependent launch on, and MiniMax TP=4 (w1 2.4M elements per
# expert, under the auto rule's 2^22) with both routings at T = 1, 2, 4.
#   (run) bash benchmarks/2026-12-04-h200-session35/calls/call-s35d.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s35d}
export OUT
TEST_S=240 TESTS_K="direct or back_to_back or (test_fused_moe and not one_stage and not split and not slots and not graph)" \
  bash benchmarks/2026-12-04-h200-session35/calls/call-s35e.sh
MXFORGE_PDL=1 timeout 90 python3 -m pytest -q -m gpu tests/test_gpu.py -k "back_to_back" -n 6 -p no:cacheprovider \
  > "$OUT/pytest-pdl.log" 2>&1; tail -2 "$OUT/pytest-pdl.log"
python3 -m mxforge bench --model minimax-m2.1-tp4 --T 1 2 4 --pipelines a16w4 --routing sorted direct --stages \
  --out "$OUT/tp4" 2>&1 | grep -E "^minimax|^#" | tail -8
