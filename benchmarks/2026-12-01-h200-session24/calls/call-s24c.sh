#!/usr/bin/env bash
# session 24 call 3 (measured slower; call 4 is the same without the scale branch):
# the ring (b_path wgmma) tile with fewer instructions
# (shared-space pointers for its stage loads and conversion stores, MX k-tiles inside K
# copied without the tail's checks; call 3 also the second scale multiply behind a branch) against
# the tree of call 1, same run (scripts/gpu-ab-src), both models at T = 2048, 4096, 8192;
# the GPU tests of the ring instances and of the block_m 64 shared-memory stage-2 ones
# (which convert through the same dequant_chunk) on the new build.
export ONLY_FILE=.ab/only-s24a.txt BENCH_ARGS="--T 2048 4096 8192 --stages" TOKENS=1,300,2048 \
  TESTS_K="((bwgmma and not regs) or (stage2 and _m64_ and not wgmma)) and (all_token or odd_dims or wide_scales)"
timeout 570 scripts/gpu-ab-src .ab/before-s24b minimax-m2.1-tp8 gpt-oss-120b 2>&1 | grep -v "^\[" | cut -c1-240
