#!/usr/bin/env bash
# session 32 call 3: where the wgmma_regs stage 1's time goes after session 31's shared-out
# activation staging (Nsight Compute's per-instruction table, one launch each, MiniMax TP=8,
# summarized by scripts/ncu_sass_summary.py): block_m 32 a16w4 and a4w4 at T = 512 (the
# table's picks; session 30's call 5 has the same two before the change), block_m 16 a16w4
# at T = 256 (the new pick) and block_m 16 a4w4 at T = 256 (the swapped tile's job; forced
# by a one-row MXFORGE_TUNED table: it lost, 100.4 against 91.9 µs).
set -uo pipefail
export PYTHONUNBUFFERED=1
t0=$(date +%s)
D=benchmarks/2026-12-03-h200-session32/calls
S=benchmarks/2026-12-03-h200-session31/calls
set -f
ONLY_FILE=$S/picks-128-512.txt scripts/gpu-build-subset 'sm90_moe_stage1_*_m16_*_pairbits_bwgmma_regs' || exit 1
set +f
echo "build: $(( $(date +%s) - t0 )) s"
prof() {  # name T pipeline [table]
  MXFORGE_TUNED=${4:-} timeout 120 scripts/ncu-sass minimax-m2.1-tp8 $2 $3 moe_stage1 "$OUT/sass-$1.csv" > "$OUT/ncu-$1.log" 2>&1
  echo "ncu $1 rc=$?: $(( $(date +%s) - t0 )) s"
  python3 scripts/ncu_sass_summary.py "$OUT/sass-$1.csv" > "$OUT/summary-$1.txt" 2>&1
  head -8 "$OUT/summary-$1.txt" | cut -c1-400
  gzip -f "$OUT/sass-$1.csv"
}
prof m32-a16w4-T512 512 a16w4
prof m32-a4w4-T512 512 a4w4
prof m16-a16w4-T256 256 a16w4
prof m16-a4w4-T256 256 a4w4 $D/a4w4-m16-wgmma-regs-T256.csv
echo "total $(( $(date +%s) - t0 )) s"
