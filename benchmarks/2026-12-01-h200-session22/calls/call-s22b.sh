#!/usr/bin/env bash
# session 22 call 2: the half groups as a runtime test inside the swapped tile's copies, guarded loads (no
# spills under nvcc 13.0): A/B against HEAD's gemm.cuh and moe.cuh on every instance the
# tuned table picks up to T = 1024, GPU tests of the swapped instances, memcheck on two.
set -uo pipefail
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
t0=$(date +%s)
OUT=$OUT ONLY_FILE=.ab/only-s22b.txt BENCH_ARGS="--T 1 8 32 64 128 512 1024 --stages" \
  TESTS_K="bswap and (all_token or odd_dims or wide_scales or unaligned_output)" \
  TOKENS=1,3,64,129,512 GPU_TEST_WORKERS=6 timeout 500 scripts/gpu-ab-src .ab/before-s22 minimax-m2.1-tp8 gpt-oss-120b 2>&1 | grep -v "^$"
timeout $(( 585 - ($(date +%s) - t0) )) python3 scripts/sanitize.py --tools memcheck --scope subset --tokens 3,129 --shards 4 --timeout 60 \
  --only 'sm90_moe_stage2_bf16xpk_fp4_obf16_m16_n256_k128_nt12_rwstage2_nobias_pairbits_bswap' \
  --only 'sm90_moe_stage1_pk_fp4xpk_fp4_obf16_m16_n128_k128_sk1_swiglu_oai_interleaved_rwnone_bias_pairbits_bswap' \
  --out $OUT/sanitize 2>&1 | tail -6
rm -f $OUT/*.png; echo "total $(( $(date +%s) - t0 )) s"
