#!/usr/bin/env bash
# session 25 call 1: stage 2's N loop on the warpgroup-MMA ring tile (n_tiles 4 / 8, the
# activations resident; gemm.cuh gemm_mainloop_wgmma_tiles): build the MiniMax prefill
# instances, the GPU tests of the 16 n_tiles instances, then the layer under the shipped
# table and with the table's MiniMax stage-2 ring rows (T >= 2048) swapped for their nt4 /
# nt8 twins (MXFORGE_TUNED override files), interleaved, then compute-sanitizer racecheck
# and memcheck over the 8 pairbits nt instances.
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
ONLY=(--only 'sm90_moe_stage1_*_m64_*silu*_bwgmma*' --only 'sm90_moe_stage1_*_m128_*silu*_bwgmma*'
      --only 'sm90_moe_stage2_*_m64_n128_k64*_nobias_*_bwgmma' --only 'sm90_moe_stage2_*_m128_n128_k64*_nobias_*_bwgmma')
for g in 'sm90_*quant*' 'sm90_moe_sort*' 'sm90_mx_pack*' 'sm90_mxfp4_*'; do ONLY+=(--only "$g"); done
python3 build.py --set default --target sm90 -j "$(nproc)" "${ONLY[@]}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -iE "spill|C7517" "$OUT/build.log" | head
grep -E "instances" "$OUT/build.log" | head -3
echo "build: $(( $(date +%s) - t0 )) s"
MXFORGE_GPU_TOKENS=1,300,2048 timeout 200 python3 -m pytest -q -m gpu tests/test_gpu.py \
  -k "n_loop or (stage2 and bwgmma and (nt4 or nt8))" -n 4 -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -4
echo "tests: $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  for v in shipped nt4 nt8; do
    f=""; [ $v != shipped ] && f=$(realpath .ab/$v.csv)
    MXFORGE_TUNED=$f timeout 100 python3 -m mxforge bench --model minimax-m2.1-tp8 --T 2048 4096 8192 --stages \
      --out "$OUT/$v-r$r" 2>&1 | sed "s/^/$v /" | tee -a "$OUT/console.txt" | grep -E "^$v minimax" | cut -c1-200
  done
  echo "bench round $r: $(( $(date +%s) - t0 )) s"
done
python3 scripts/sanitize.py --tools memcheck,racecheck --scope all --tokens 3,129 \
  --only 'sm90_moe_stage2_*_nt[48]_*pairbits_bwgmma' --shards 4 --timeout 150 --out "$OUT" 2>&1 | tail -8
echo "sanitize: $(( $(date +%s) - t0 )) s"
