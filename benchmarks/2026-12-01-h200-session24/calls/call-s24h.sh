#!/usr/bin/env bash
# session 24 call 8: compute-sanitizer memcheck and racecheck over the 20 pairbits stage-2
# instances of both wgmma tiles (the rows16 epilogue: stmatrix into per-warp regions, then
# 16-byte reads) at T = 3, 129 (+256 on one expert), the final kernel code.
set -uo pipefail
t0=$(date +%s)
python3 build.py --set default --target sm90 -j "$(nproc)" --only 'sm90_moe_stage2_*pairbits_bwgmma*' \
  --only 'sm90_*quant*' --only 'sm90_moe_sort*' --only 'sm90_mx_pack*' --only 'sm90_mxfp4_*' > /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
python3 scripts/sanitize.py --tools memcheck,racecheck --scope all --tokens 3,129 \
  --only 'sm90_moe_stage2_*pairbits_bwgmma*' --shards 4 --timeout 230 --out "$OUT" 2>&1 | tail -12
echo "sanitize: $(( $(date +%s) - t0 )) s"
