#!/usr/bin/env bash
# session 26 call 3: the final kernels (call 2's "new" plus the unchecked 32-bit offsets of
# one expert's weights, LayoutRows::kOffsets32): the whole default set built, then the GPU
# tests of every GEMM instance (all token counts at T = 3, 300 and 256 rows on one expert,
# odd dims, unaligned output rows, the N loop, wide scales, slots).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | sed 's/.*function .\(.\{0,140\}\).*, \([0-9]* bytes spill stores\).*/\1 \2/' | head -20
grep -E "instances" "$OUT/build.log" | head -2
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=3,300 timeout $(( 570 - $(date +%s) + t0 )) python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "gemm_instance or stage2_unaligned or n_loop or stage2_slots" -n 6 -p no:cacheprovider -rf 2>&1 \
  | tee "$OUT/pytest.log" | grep -E "passed|failed|FAILED|Error" | cut -c1-300 | tail -20
echo "tests: $(( $(date +%s) - t0 )) s"
