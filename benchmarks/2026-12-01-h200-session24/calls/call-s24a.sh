#!/usr/bin/env bash
# session 24 call 1: stage 2's warpgroup-MMA tiles with the 16-bit row epilogue (stmatrix
# into per-warp regions, 16-byte reads and adds; rows16_epilogue) against HEAD's fp32
# staging tile, same run (scripts/gpu-ab-src): the prefill stage-2 instances and the
# table's T >= 1024 tiles, both models at T = 2048, 4096, 8192, and the GPU tests of the
# 40 wgmma / wgmma_regs stage-2 instances on the new build.
export ONLY_FILE=.ab/only-s24a.txt BENCH_ARGS="--T 2048 4096 8192 --stages" TOKENS=1,300,2048 \
  TESTS_K="stage2 and wgmma and (all_token or odd_dims or unaligned or slots)"
timeout 570 scripts/gpu-ab-src .ab/before-s24 minimax-m2.1-tp8 gpt-oss-120b 2>&1 | grep -v "^\[" | cut -c1-240
