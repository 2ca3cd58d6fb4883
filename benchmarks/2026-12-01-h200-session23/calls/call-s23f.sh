#!/usr/bin/env bash
# session 23 call 6: the staged epilogue reading its 8 columns as two 16-byte shared loads
# (load_staged8) against HEAD's scalar loads, same run (scripts/gpu-ab-src): the prefill
# stage-2 instances and the table's T >= 1024 tiles, both models at T = 2048 and 8192, and
# the GPU tests of the block_m 64/128 stage-2 instances on the new build.
export ONLY_FILE=.ab/only-s23f.txt BENCH_ARGS="--T 2048 8192 --stages" TOKENS=1,300,2048 \
  TESTS_K="stage2 and (_m64_ or _m128_) and (all_token or unaligned)"
timeout 560 scripts/gpu-ab-src .ab/before-s23 minimax-m2.1-tp8 gpt-oss-120b 2>&1 | grep -v "^\[" | cut -c1-240
