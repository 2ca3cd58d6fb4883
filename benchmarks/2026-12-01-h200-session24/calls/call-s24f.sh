#!/usr/bin/env bash
# session 24 call 6: the GPU tests after the 16-byte pack/unpack and the stage-2 pair's bias
# and weight became one helper each (pack_bf16x8, unpack_bf16x8, bias_weight_pair) and
# atomic_add_bf16x8 takes a Vec16: the 62 pairbits stage-2 instances whose epilogues use
# them (swapped N-loop tiles, split-K, block_m 64 shared-memory, both wgmma tiles) at every
# token count of TOKENS, unaligned output rows and by route rows (slots).
set -uo pipefail
ONLY=(); while read -r n; do [ -n "$n" ] && ONLY+=(--only "$n"); done < .ab/only-s24f.txt
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
t0=$(date +%s)
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
grep -i spill /tmp/build.log | head -5
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,3,64,300,2048 python3 -m pytest -q -m gpu tests/test_gpu.py -k "stage2 and (all_token or unaligned or slots)" \
  -n 4 -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -4
echo "tests: $(( $(date +%s) - t0 )) s"
