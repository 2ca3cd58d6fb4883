#!/usr/bin/env bash
# session 24 call 4: call 3 without the scale branch (dropped: with lanes of both kinds in a
# warp both copies ran): the ring (b_path wgmma) tile's stage loads and conversion stores
# through shared-space pointers, MX k-tiles inside K copied without the tail's checks,
# against the tree of call 1 (HEAD), same run; the ring instances' GPU tests.
export ONLY_FILE=.ab/only-s24a.txt BENCH_ARGS="--T 2048 4096 8192 --stages" TOKENS=1,300,2048 \
  TESTS_K="(bwgmma and not regs) and (all_token or odd_dims or wide_scales)"
timeout 570 scripts/gpu-ab-src .ab/before-s24b minimax-m2.1-tp8 gpt-oss-120b 2>&1 | grep -v "^\[" | cut -c1-240
