#!/usr/bin/env python3
"""How much of programmatic dependent launch's gain is inside one MoE layer (device machine).

`mxforge bench` replays its calls back to back in one CUDA graph, so with PDL on the next
call's first kernel may overlap this call's last. In a model other kernels (attention, the
router), launched without PDL, sit between MoE layers and end that overlap. This times the
layer both ways in one process: `back-to-back` as the bench does, and `separated`, with a
one-element torch kernel after every call (its own time is in that column, the same with
PDL on or off, so compare the columns across two runs, not with each other):

    MXFORGE_PDL=0 python3 scripts/pdl_separated.py --model minimax-m2.1-tp8 --T 1 2 4
    MXFORGE_PDL=1 python3 scripts/pdl_separated.py --model minimax-m2.1-tp8 --T 1 2 4
"""
from __future__ import annotations

import argparse
import os
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
    args = p.parse_args()
    shape = preset(args.model)
    g = torch.Generator(device="cuda").manual_seed(0)
    L = make_layer(shape, g)
    marker = torch.zeros(1, device="cuda")
    pdl = os.environ.get("MXFORGE_PDL", "(unset: off)")
    print(f"# {torch.cuda.get_device_name()} {shape.name} MXFORGE_PDL={pdl}")
    print(f"{'model':18} {'pipeline':16} {'T':>5} {'back-to-back us':>16} {'separated us':>13}")
    for T in args.T:
        rot = 32
        routes = _routings(T, shape.E, shape.topk, rot, g)
        xs = [(torch.randn(T, shape.H, generator=g, device="cuda") * 2).to(torch.bfloat16) for _ in range(rot)]
        for name in args.pipelines:
            a_dtype, s2 = PIPELINES[name]

            def call(i: int, separated: bool) -> None:
                ops.fused_moe(xs[i], L.w1, L.w2, routes[i][1], routes[i][0], activation=shape.activation,
                              a_dtype=a_dtype, stage2_input=s2, validate=False)
                if separated:
                    marker.add_(1)  # a kernel launched without PDL, as between layers in a model

            us = [_time_graph(lambda i, s=s: call(i, s), rot) for s in (False, True)]
            print(f"{shape.name:18} {name:16} {T:5d} {us[0]:16.1f} {us[1]:13.1f}")


if __name__ == "__main__":
    main()
