#!/usr/bin/env bash
# session 22 call 1: the swapped tile's half groups (a last group of <= 64 K elements: half
# the k steps; MiniMax TP=8 stage 2 K = 192, gpt-oss K = 2880): A/B against HEAD's gemm.cuh
# and moe.cuh on the instances the tuned table picks at T <= 1024, then GPU tests of them.
set -uo pipefail
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
OUT=$OUT ONLY_FILE=.ab/only-s22.txt BENCH_ARGS="--T 1 8 32 64 128 512 1024 --stages" TESTS_K="bswap and (all_token or odd_dims)" \
  TOKENS=1,3,64,129,512 GPU_TEST_WORKERS=6 timeout 570 scripts/gpu-ab-src .ab/before-s22 minimax-m2.1-tp8 gpt-oss-120b 2>&1 | grep -v "^$"
rm -f $OUT/*.png
