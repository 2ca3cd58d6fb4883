#!/usr/bin/env bash
# session 19 call 7: per-kernel timeline of the gpt-oss T=1 layer (graph replay), 09f98df's sort/quant vs the tree
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY=(); while read -r n; do [ -n "$n" ] && ONLY+=(--only "$n"); done < .ab/only.txt
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
mkdir -p /tmp/save; cp csrc/mxforge/gpu/sort.cuh csrc/mxforge/gpu/quant.cuh /tmp/save/
tl() { for p in a16w4 a4w4; do timeout 25 python3 scripts/kernel_timeline.py --model gpt-oss-120b --T 1 --pipeline $p 2>&1 | tail -6 | sed "s/^/$1 $p /"; done; }
cp .ab/before3/csrc/mxforge/gpu/*.cuh csrc/mxforge/gpu/
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > /dev/null 2>&1 || echo BUILD FAILED
echo "build before $(( $(date +%s) - t0 )) s"; tl before
cp /tmp/save/*.cuh csrc/mxforge/gpu/
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > /dev/null 2>&1 || echo BUILD FAILED
echo "build new $(( $(date +%s) - t0 )) s"; tl new
