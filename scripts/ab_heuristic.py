#!/usr/bin/env python3
"""A/B of one dispatch heuristic constant as the whole layer, on the GPU, in one process:
for each model, T and pipeline the layer (`fused_moe`: quant+sort, stage 1, stage 2, CUDA
graph replay, as `mxforge bench` times it) under each value of `dispatch.NAME`, the values
taking turns for `--rounds` rounds on the same weights, routes and inputs, each side's
output checked against the torch bf16 reference. Only decisions the heuristic makes
change: rows of the tuned tables answer as before.

    python3 scripts/ab_heuristic.py SWAP_STAGE1_WAVE_GAIN 0 0.95 \\
        --models minimax-m2.1-tp1 minimax-m2.1-tp4 --T 2 4 8 16 32 --rounds 3 --out ab.csv

(Session 41 ran it on a constant since replaced, SWAP_STAGE1_ONE_ROW_BLOCK_N None vs 64:
benchmarks/README.md.) Decisions a tuned table answers do not change, and every model
preset has tuned rows at every T up to 8192: `--heuristic-only` hides the tuned tables
(dispatch.tuned_paths) so that the heuristic decides every stage on both sides.

Prints, per row, each value's median over the rounds (µs), the ratio second/first and the
GEMM instances each value launched; a row where both values launch the same instances is
still timed both ways and marked "same" (its ratio is the noise). Exits non-zero if the two
sides' outputs differ by more than MAX_SIDE_DIFF anywhere (rows marked "CHECK").
"""
from __future__ import annotations

import argparse
import ast
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mxforge import bench, dispatch, ops  # noqa: E402
from mxforge.models import preset  # noqa: E402

# The two sides compute the same quantized math with other tiles (accumulation order, and
# so a rare MX re-quantization of the intermediate one code apart): their outputs differ
# by far less than either differs from the bf16 reference (0.01-0.2, bench's rel_err). A
# larger difference is flagged "CHECK" (a wrong result, not a tiling's rounding).
MAX_SIDE_DIFF = 0.02


def launched(call) -> list[str]:
    """The GEMM instances one eager call launches (sort, quant and pack left out)."""
    names: list[str] = []
    saved = ops._launch

    def spy(decision, args):
        inst = getattr(decision, "instance", decision)
        if inst.op.startswith("moe_stage") or inst.op == "moe_1stage":
            names.append(inst.name)
        return saved(decision, args)
    ops._launch = spy
    try:
        call(0)
        torch.cuda.synchronize()
    finally:
        ops._launch = saved
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a constant of mxforge.dispatch")
    ap.add_argument("values", nargs=2, help="two Python literals (the first is the baseline)")
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--T", type=int, nargs="+", required=True)
    ap.add_argument("--pipelines", nargs="+", default=list(bench.PIPELINES))
    ap.add_argument("--layout", default="pairbits")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--heuristic-only", action="store_true",
                    help="hide the tuned tables: the heuristic decides every stage")
    args = ap.parse_args()
    if not hasattr(dispatch, args.name):
        sys.exit(f"mxforge.dispatch has no constant {args.name}")
    values = [ast.literal_eval(v) for v in args.values]
    if args.heuristic_only:
        dispatch.tuned_paths = lambda: []
        dispatch.clear_caches()
    original = getattr(dispatch, args.name)
    rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    ceil = bench.measure_ceilings()
    print(f"# {torch.cuda.get_device_name()} {time.strftime('%Y-%m-%d %H:%M %Z')} at {rev}: "
          f"copy {ceil.copy_gbps:.0f} GB/s; {args.name} {values[0]!r} vs {values[1]!r} "
          f"(shipped: {original!r}); tuned tables {'hidden' if args.heuristic_only else 'read'}; "
          f"{' '.join(sys.argv)}", flush=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    try:
        for model in args.models:
            shape = preset(model)
            L = bench.make_layer(shape, g).in_layout(args.layout)
            for T in args.T:
                rot = bench.bench_rotation(T)
                routes, xs = bench.layer_inputs(shape, T, rot, g)
                ref = bench.torch_moe(L, xs[0], *routes[0]).double()
                hbm_us = bench.hbm_bytes(shape, T, [r[0] for r in routes]) / (ceil.copy_gbps * 1e3)
                for p in args.pipelines:
                    a_dtype, s2 = bench.PIPELINES[p]

                    def call(i: int) -> torch.Tensor:
                        return ops.fused_moe(xs[i], L.w1, L.w2, routes[i][1], routes[i][0],
                                             activation=shape.activation, a_dtype=a_dtype,
                                             stage2_input=s2, validate=False)
                    names, errs, ys = [], [], []
                    for v in values:
                        setattr(dispatch, args.name, v)
                        dispatch.clear_caches()
                        names.append(launched(call))
                        ys.append(call(0).double())
                        errs.append(float((ys[-1] - ref).norm() / ref.norm().clamp_min(1e-30)))
                    diff = float((ys[1] - ys[0]).norm() / ys[0].norm().clamp_min(1e-30))
                    same = names[0] == names[1]
                    times: list[list[float]] = [[], []]
                    for _ in range(args.rounds):
                        for j, v in enumerate(values):
                            setattr(dispatch, args.name, v)
                            dispatch.clear_caches()
                            times[j].append(bench._time_graph(call, rot))
                    med = [statistics.median(t) for t in times]
                    row = dict(model=model, T=T, pipeline=p, same=int(same),
                               us_a=round(med[0], 2), us_b=round(med[1], 2),
                               ratio=round(med[1] / med[0], 4),
                               spread_a=round((max(times[0]) - min(times[0])) / med[0], 4),
                               spread_b=round((max(times[1]) - min(times[1])) / med[1], 4),
                               floor_x_b=round(med[1] / hbm_us, 3),
                               err_a=round(errs[0], 5), err_b=round(errs[1], 5),
                               side_diff=round(diff, 6),
                               inst_a=" ".join(names[0]), inst_b=" ".join(names[1]))
                    rows.append(row)
                    print(f"{model:18s} T={T:5d} {p:15s} {med[0]:8.1f} {med[1]:8.1f} us "
                          f"{med[1] / med[0]:6.3f}x {'same' if same else 'diff'} "
                          f"err {errs[0]:.4f}/{errs[1]:.4f} diff {diff:.5f}"
                          + ("" if diff <= MAX_SIDE_DIFF else " CHECK")
                          + ("" if same else f"  {' '.join(names[0])} -> {' '.join(names[1])}"),
                          flush=True)
        bad = [r for r in rows if r["side_diff"] > MAX_SIDE_DIFF]
        if bad:
            sys.exit(f"{len(bad)} row(s) whose two sides' outputs differ by more than "
                     f"{MAX_SIDE_DIFF} (rel. L2): " + ", ".join(
                         f"{r['model']} T={r['T']} {r['pipeline']}" for r in bad))
    finally:
        setattr(dispatch, args.name, original)
        dispatch.clear_caches()
        if args.out and rows:
            with open(args.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)


if __name__ == "__main__":
    main()
