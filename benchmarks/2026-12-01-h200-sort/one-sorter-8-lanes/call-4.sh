#!/usr/bin/env bash
# session 20 call 4 (final): full default build of the tree; GPU tests of sort, quant, fused quant+sort,
# fused_moe, graphs/opcheck/compile; fused_moe/graphs with PDL where time is left
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
echo "== $(date -u +%F' '%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
python3 build.py --set default --target sm90 -j "$(nproc)" > $OUT/build.log 2>&1 || { echo BUILD FAILED; tail -30 $OUT/build.log; exit 1; }
rm -f $OUT/build.log; echo "build: $(( $(date +%s) - t0 )) s"
timeout 170 python3 -m pytest -q -m gpu tests/test_gpu.py -k "sort or quant or fused_moe or graph or opcheck or compile" \
  -n 8 -p no:cacheprovider > $OUT/pytest.log 2>&1
echo "tests rc=$? $(( $(date +%s) - t0 )) s: $(tail -1 $OUT/pytest.log)"; grep -E "^FAILED" $OUT/pytest.log | head
if [ $(( $(date +%s) - t0 )) -lt 300 ]; then
  MXFORGE_PDL=1 timeout 90 python3 -m pytest -q -m gpu tests/test_gpu.py -k "fused_moe or graph" -n 8 -p no:cacheprovider > $OUT/pytest-pdl.log 2>&1
  echo "pdl tests rc=$? $(( $(date +%s) - t0 )) s: $(tail -1 $OUT/pytest-pdl.log)"; grep -E "^FAILED" $OUT/pytest-pdl.log | head
fi
echo "total $(( $(date +%s) - t0 )) s"
