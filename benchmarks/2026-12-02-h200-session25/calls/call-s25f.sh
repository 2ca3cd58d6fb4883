#!/usr/bin/env bash
# session 25 call 6: the whole default set built (call 5's subset lacked the instances the
# fp8 pipelines and MiniMax TP=4 take: 6 fused_moe tests failed there with no instance),
# then every fused_moe test (T = 1, 300, 2048, 4096) on the final tree and table, and the
# stage-2 tests of every n_tiles ring instance once more.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head
grep -E "instances" "$OUT/build.log" | head -2
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,300,2048,4096 timeout 300 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "fused_moe or n_loop" -n 4 -p no:cacheprovider -rf 2>&1 | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-300 | tail -20
echo "tests: $(( $(date +%s) - t0 )) s"
