#!/usr/bin/env bash
# session 19 call 3: (a) sort alone under ncu, HEAD's single sorter vs the templated multi-CTA
# one; (b) layer A/B: before2 (first multi-CTA sorter, thread-per-block quant, split above
# T = 64) vs the tree (vector lane quant, one-launch fused quant+sort at every T); tests;
# (c) compute-sanitizer over the sort, fused quant+sort and quant instances
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
SORT_T="64 512 1024" timeout 200 scripts/gpu-sort-ab .ab/before > $OUT/sort-ab.txt 2>&1
grep -E "T=|passed|failed" $OUT/sort-ab.txt
echo "== layer A/B $(( $(date +%s) - t0 )) s"
ONLY_FILE=.ab/only.txt TESTS_K='sort or quant' TOKENS=0,1,3,5,64,129,512,2048,8192 \
  BENCH_ARGS="--T 64 128 512 1024 2048 8192 --stages" OUT=$OUT timeout 330 scripts/gpu-ab-src .ab/before2 minimax-m2.1-tp8 gpt-oss-120b > /dev/null 2>&1
rm -f $OUT/*.png
grep -h "minimax\|gpt-oss" $OUT/ab-console.txt | grep -v "#\|wrote" | awk '{printf "%s %s %s %s %s %s ", $1,$2,$3,$5,$6,$8; for(i=14;i<=NF;i++) printf "%s ", $i; print ""}'
grep -E "passed|failed|error" $OUT/pytest.log | tail -3
echo "== sanitize $(( $(date +%s) - t0 )) s"
for g in 'sm90_*sort*' 'sm90_mxfp4_quant*'; do
  timeout 100 python3 scripts/sanitize.py --scope all --only "$g" --shards 4 --timeout 90 --out $OUT/san 2>&1 | tail -6
done
rm -rf $OUT/san
echo "total $(( $(date +%s) - t0 )) s"
