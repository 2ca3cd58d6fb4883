#!/usr/bin/env bash
# session 33 call 1: stage 2's N loop (the swapped tile walking nt N tiles of one block;
# MiniMax TP=8's K = 192, 1.5 k-tiles per tile) with each tile's weights and scales brought
# into L2 by one warp's bulk prefetches kL2AheadTiles tiles ahead (gemm.cuh), against the
# tree before it (.ab/before: d83b7a6's gemm.cuh and moe.cuh, carried), MiniMax TP=8 at
# T = 8 ... 512 (the table's picks there, picks-minimax-8-512.txt); GPU tests of the
# N-loop instances; then 4 tiles ahead and 1.
# The change was dropped: to run this again, check out d83b7a6 and apply ../l2-ahead.patch:
#   (here) git checkout d83b7a6 && git apply benchmarks/2026-12-04-h200-session33/l2-ahead.patch
#          mkdir -p .ab/before/csrc/mxforge/gpu; git show d83b7a6:csrc/mxforge/gpu/gemm.cuh > ... (moe.cuh alike)
#   run: benchmarks/2026-12-04-h200-session33/calls/call-s33a.sh   (carry .ab)
set -uo pipefail
export PYTHONUNBUFFERED=1
D=benchmarks/2026-12-04-h200-session33/calls
t0=$(date +%s)
export ONLY_FILE=$D/picks-minimax-8-512.txt BENCH_ARGS="--T 8 16 32 64 128 256 512 --stages"
OUT=$OUT TESTS_K=_nt TOKENS=1,3,64,129,512 GPU_TEST_WORKERS=6 scripts/gpu-ab-src .ab/before minimax-m2.1-tp8
G=csrc/mxforge/gpu/gemm.cuh
for d in 4 1; do
  sed -i "s/^#define MXF_L2_AHEAD_TILES 2$/#define MXF_L2_AHEAD_TILES $d/" $G
  grep -q "^#define MXF_L2_AHEAD_TILES $d$" $G || { echo "sed failed"; exit 1; }
  LOG=$OUT/build-d$d.log scripts/gpu-build-subset || exit 1
  python3 -m mxforge bench --model minimax-m2.1-tp8 $BENCH_ARGS --out "$OUT/d$d-minimax-m2.1-tp8" 2>&1 |
    sed "s/^/d$d /" | tee -a "$OUT/ab-console.txt" | grep -E "^d$d minimax" || true
  sed -i "s/^#define MXF_L2_AHEAD_TILES $d$/#define MXF_L2_AHEAD_TILES 2/" $G
  echo "d$d: $(( $(date +%s) - t0 )) s"
done
