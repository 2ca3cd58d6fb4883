#!/usr/bin/env bash
# session 26 call 1: the ring tile's copies by 32-bit offsets, its conversion's rare second
# multiply behind a warp vote and natural pairs by byte permutes, one wgmma descriptor per
# operand and k-tile (gemm.cuh, device.h): HEAD's files against the new ones in one run
# (scripts/gpu-ab-src), the tuned table's instances of both models and every ring instance
# built; the GPU tests of the ring instances on the new build between the two benches.
set -uo pipefail
export PYTHONUNBUFFERED=1
ONLY_FILE=.ab/only-s26a.txt BENCH_ARGS="--T 512 2048 4096 8192 --stages" \
  TESTS_K="bwgmma and not bwgmma_regs" TOKENS=3,300,2048 GPU_TEST_WORKERS=4 \
  timeout 585 scripts/gpu-ab-src .ab/before minimax-m2.1-tp8 gpt-oss-120b
