#!/usr/bin/env bash
# session 19 call 6: small-T layer A/B, 09f98df's sort.cuh + quant.cuh against the tree (f70b388)
set -uo pipefail
export PYTHONUNBUFFERED=1
ONLY_FILE=.ab/only.txt BENCH_ARGS="--T 1 8 --stages" OUT=$OUT timeout 280 scripts/gpu-ab-src .ab/before3 gpt-oss-120b minimax-m2.1-tp8 > /dev/null 2>&1
rm -f $OUT/*.png
grep -h "minimax\|gpt-oss" $OUT/ab-console.txt | grep -v "#\|wrote" | awk '{printf "%s %s %s %s %s %s ", $1,$2,$3,$5,$6,$8; for(i=14;i<=NF;i++) printf "%s ", $i; print ""}'
