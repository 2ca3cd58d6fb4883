#!/usr/bin/env bash
# session 19 call 1: multi-CTA sorter, layer A/B (sort.cuh of HEAD vs working tree), sort tests
set -uo pipefail
export PYTHONUNBUFFERED=1
ONLY_FILE=.ab/only.txt TESTS_K='sort' TOKENS=0,1,3,5,64,129,512,2048,8192 \
  BENCH_ARGS="--T 64 256 512 1024 2048 --stages" OUT=$OUT timeout 560 scripts/gpu-ab-src .ab/before minimax-m2.1-tp8 gpt-oss-120b
rm -f $OUT/*.png
