#!/usr/bin/env bash
# session 25 call 4: the ring tile's stage-2 N loop with its weight issue counted instead of
# divided and the tile's conversion operand built once per tile (new) against the loop of
# calls 1-3 (before), same run (scripts/gpu-ab-src; the tuned table in the tree has the
# MiniMax nt8 rows), then the GPU tests of the 16 n_tiles instances on the new build and
# racecheck / memcheck over the 8 pairbits ones.
set -uo pipefail
export ONLY_FILE=.ab/only-s25.txt BENCH_ARGS="--T 2048 4096 8192 --stages" TOKENS=1,300,2048 \
  TESTS_K="n_loop or (stage2 and bwgmma and (nt4 or nt8))"
timeout 420 scripts/gpu-ab-src .ab/before-s25d minimax-m2.1-tp8 2>&1 | grep -v "^\[" | cut -c1-60,120-250
t0=$(date +%s)
timeout 150 python3 scripts/sanitize.py --tools memcheck,racecheck --scope all --tokens 3,129 \
  --only 'sm90_moe_stage2_*_nt[48]_*pairbits_bwgmma' --shards 4 --timeout 120 --out "$OUT" 2>&1 | tail -6
echo "sanitize: $(( $(date +%s) - t0 )) s"
