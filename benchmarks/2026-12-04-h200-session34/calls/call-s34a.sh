#!/usr/bin/env bash
# session 34 call 1: the sort launch prefetching the routed experts' weights into L2 at
# decode (SortArgs::prefetch_*, ops.decode_prefetch), one build, MXFORGE_L2_PREFETCH=0
# ("off") against the default ("on") in turns, MiniMax TP=8 and gpt-oss-120b at T = 1, 2,
# 3, 4, 8 (the table's picks up to T = 16, picks-decode.txt, both layouts); GPU tests of
# the sort and fused quant+sort with and without prefetch (byte-identical), the op's
# CUDA graph and opcheck, fused_moe at T = 1, 3, 8, 16.
# The change was dropped: to run this again, check out ab68469 and apply
# ../l2-prefetch-sort.patch (it also adds scripts/l2_prefetch_probe.py, which call 3 ran:
#   python3 scripts/l2_prefetch_probe.py minimax-m2.1-tp8 1 2 4 8; ... gpt-oss-120b 1
# after scripts/gpu-build-subset with ONLY_FILE=picks-decode.txt).
set -uo pipefail
export PYTHONUNBUFFERED=1
D=benchmarks/2026-12-04-h200-session34
t0=$(date +%s)
python3 -c "import torch; p = torch.cuda.get_device_properties(0); print(p.name, 'L2', p.L2_cache_size, 'SMs', p.multi_processor_count)"
ONLY_FILE=$D/picks-decode.txt LOG=$OUT/build.log scripts/gpu-build-subset || exit 1
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,3,8,16 timeout 200 python3 -m pytest -q -m gpu tests/test_gpu.py -n 6 -p no:cacheprovider \
  -k "l2_prefetch or fused_quant_sort_byte or sort_matches or (test_fused_moe and not one_stage and not slots and not split and not graph and not back and not compile and not fp8 and not tp4) or (opcheck and sort)" \
  > "$OUT/pytest.log" 2>&1
tail -4 "$OUT/pytest.log"
echo "tests: $(( $(date +%s) - t0 )) s"
for m in minimax-m2.1-tp8 gpt-oss-120b; do
  for side in off on; do
    [ $(( $(date +%s) - t0 )) -gt 500 ] && { echo "time: skipping $m $side"; continue; }
    v=1; [ $side = off ] && v=0
    MXFORGE_L2_PREFETCH=$v python3 -m mxforge bench --model $m --T 1 2 3 4 8 --out "$OUT/$side-$m" 2>&1 |
      sed "s/^/$side /" | tee -a "$OUT/ab-console.txt" | grep -E "^$side $m" || true
    echo "bench $m $side: $(( $(date +%s) - t0 )) s"
  done
done
