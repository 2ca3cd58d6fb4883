#!/usr/bin/env bash
# session 26 call 2: the ring tile's conversion with and without the warp-voted branch for
# the second multiply (RingOperand::kHiBranch false = "before", true = "new"), everything
# else as after call 1; the tuned table's instances, T = 2048, 4096, 8192, both models.
set -uo pipefail
export PYTHONUNBUFFERED=1
ONLY_FILE=.ab/only-s26b.txt BENCH_ARGS="--T 2048 4096 8192 --stages" \
  timeout 585 scripts/gpu-ab-src .ab/before minimax-m2.1-tp8 gpt-oss-120b
