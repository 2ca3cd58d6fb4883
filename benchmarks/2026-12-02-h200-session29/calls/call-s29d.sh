#!/usr/bin/env bash
# session 29 call 4 (experiment): the one-stage kernel with a release add for its publish
# (no fence.sc), launched cooperatively and (MXF_NONCOOP=1, an experiment-only switch not
# in the tree) as a plain launch: is the launch or the hand-off what costs?
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-02-h200-session29/calls
ONLY_FILE=$D/only-s29b.txt scripts/gpu-build-subset | grep -v "^ptxas" || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
for v in coop noncoop; do
  [ $v = noncoop ] && export MXF_NONCOOP=1
  timeout 100 python3 -m mxforge tune --model minimax-m2.1-tp8 --T 1 2 --pipelines a16w4 a4w4-bf16inter --layout pairbits --verbose \
    --out "$OUT/tune-$v.csv" > "$OUT/tune-$v.txt" 2>&1; echo "== $v"; grep -E "layer|rror" "$OUT/tune-$v.txt" | sed 's/sm90_moe_//g' | cut -c1-110
done
unset MXF_NONCOOP
LAYER_PATH=one_stage scripts/gpu-kernel-times minimax-m2.1-tp8 1 a16w4 2>&1 | tee "$OUT/kernel-times.txt"
echo "total $(( $(date +%s) - t0 )) s"
