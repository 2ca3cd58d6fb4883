#!/usr/bin/env python3
"""Programmatic dependent launch's modes against each other, per MoE layer (device machine).

`mxforge bench` replays its calls back to back in one CUDA graph, so with PDL on the next
call's first kernel may overlap this call's last. In a model other kernels (attention, the
router), launched without PDL, sit between MoE layers and end that overlap. This times the
layer both ways, `back-to-back` as the bench does and `separated`, with a one-element torch
kernel after every call (its own time is in that column, the same in every mode, so compare
a column across modes, not the two columns), under each mode of `--modes`
(mxforge.set_dependent_launch) in turn, in one process, `--rounds` times; then prints each
mode's median over the rounds over the first mode's:

    python3 scripts/pdl_separated.py --model minimax-m2.1-tp8 --T 1 2 4 8 16 32 --modes off auto on
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mxforge import ops  # noqa: E402
from mxforge.bench import PIPELINES, _routings, _time_graph, make_layer  # noqa: E402
from mxforge.models import preset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--pipelines", nargs="+", default=list(PIPELINES))
    p.add_argument("--modes", nargs="+", default=["off", "auto"], choices=ops.PDL_MODES)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    shape = preset(args.model)
    g = torch.Generator(device="cuda").manual_seed(0)
    L = make_layer(shape, g)
    marker = torch.zeros(1, device="cuda")
    print(f"# {torch.cuda.get_device_name()} {shape.name}; auto = on at T <= {ops.PDL_AUTO_MAX_TOKENS}; "
          f"{args.rounds} rounds of {', '.join(args.modes)}; medians; ratios over {args.modes[0]}")
    print(f"{'model':18} {'pipeline':16} {'T':>5} {'mode':>5} {'back-to-back us':>16} "
          f"{'separated us':>13} {'b2b x':>6} {'sep x':>6}")
    with ops.dependent_launch_mode(args.modes[0]):  # (the mode before, restored after)
        for T in args.T:
            rot = 32
            routes = _routings(T, shape.E, shape.topk, rot, g)
            xs = [(torch.randn(T, shape.H, generator=g, device="cuda") * 2).to(torch.bfloat16)
                  for _ in range(rot)]
            for name in args.pipelines:
                a_dtype, s2 = PIPELINES[name]

                def call(i: int, separated: bool) -> None:
                    ops.fused_moe(xs[i], L.w1, L.w2, routes[i][1], routes[i][0],
                                  activation=shape.activation, a_dtype=a_dtype, stage2_input=s2,
                                  validate=False)
                    if separated:
                        marker.add_(1)  # a kernel launched without PDL, as between layers in a model

                us: dict[str, list[list[float]]] = {m: [[], []] for m in args.modes}
                for _ in range(args.rounds):
                    for mode in args.modes:  # (alternated, so drift hits every mode alike)
                        ops.set_dependent_launch(mode)  # (captured into the graph below)
                        for col, sep in enumerate((False, True)):
                            us[mode][col].append(_time_graph(lambda i, s=sep: call(i, s), rot))
                base = [statistics.median(c) for c in us[args.modes[0]]]
                for mode in args.modes:
                    med = [statistics.median(c) for c in us[mode]]
                    print(f"{shape.name:18} {name:16} {T:5d} {mode:>5} {med[0]:16.1f} {med[1]:13.1f} "
                          f"{med[0] / base[0]:6.3f} {med[1] / base[1]:6.3f}", flush=True)


if __name__ == "__main__":
    main()
