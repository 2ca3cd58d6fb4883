#!/usr/bin/env bash
# Session 36, calls B to E (device machine, H200): the rest of the sm90 GPU tests on the
# default set (call A ran the direct-routing and layer tests), a selection per call since
# the whole suite does not fit in one call's 600 s:
#   call B: TESTS_K="$REST", no build: the machine had been handed back between calls, so
#           mxforge/_C was gone and the module skipped (nothing ran; not counted)
#   call C: BUILD=1 TEST_S=300 TESTS_K="$REST" (time limit after 1050 passed, 0 failed: the
#           first 1050 in collection order, quant ... all_token_counts and the start of
#           odd_dims), then MEMCHECK=1 (compute-sanitizer memcheck of the direct-routing
#           instance tests: cut by its 60 s limit before a result)
#   call D: BUILD=1 TEST_S=320 TESTS_K="one_stage or cuda_graph or split_quant_sort or slots or compile or unaligned"
#   call E: (build kept) TEST_S=330 TESTS_K="wgmma_n_loop or wide_scales or odd_dims"
#   (run) BUILD=1 TESTS_K=... bash benchmarks/2026-12-04-h200-session36/calls/call-s36c.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-build/s36c}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MXFORGE_GPU_TOKENS=${MXFORGE_GPU_TOKENS:-1,3,64}
REST="not direct and not back_to_back and not (test_fused_moe and not split and not graph and not slots)"
t0=$(date +%s)
if [ "${BUILD:-0}" = 1 ]; then
  python3 build.py --set default --target sm90 -j "$(nproc)" > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
  echo "build $(( $(date +%s) - t0 )) s"
fi
timeout "${TEST_S:-300}" python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 -p no:cacheprovider -k "${TESTS_K:-$REST}" \
  --junitxml="$OUT/gpu-junit.xml" > "$OUT/pytest.log" 2>&1
echo "rc $? $(( $(date +%s) - t0 )) s"; grep -E "passed|failed|FAILED" "$OUT/pytest.log" | tail -6
if [ "${MEMCHECK:-0}" = 1 ]; then
  timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -q -m gpu tests/test_gpu.py \
    -k "gemm_instance_direct_routing" -p no:cacheprovider > "$OUT/memcheck-direct.log" 2>&1
  echo "memcheck rc $?"; grep -E "passed|failed|ERROR SUMMARY" "$OUT/memcheck-direct.log" | tail -3
fi
