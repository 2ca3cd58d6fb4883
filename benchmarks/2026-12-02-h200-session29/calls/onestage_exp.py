#!/usr/bin/env python3
"""EXPERIMENT (session 29): the one-stage swapped kernel's layer under MXF_ONESTAGE_EXP
variants against the two stages, graph-replay µs (bench._time_graph), MiniMax TP=8."""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from mxforge import bench, ops  # noqa: E402
from mxforge.models import preset  # noqa: E402

shape = preset("minimax-m2.1-tp8")
g = torch.Generator(device="cuda").manual_seed(0)
L = bench.make_layer(shape, g).in_layout("pairbits")
for T in (1, 2):
    rot = 8
    routes = bench._routings(T, shape.E, shape.topk, rot, g)
    xs = [(torch.randn(T, shape.H, generator=g, device="cuda") * 2).to(torch.bfloat16) for _ in range(rot)]
    for a in ("bf16", "pk_fp4"):
        two = bench._time_graph(lambda j: ops.fused_moe(xs[j], L.w1, L.w2, routes[j][1], routes[j][0], a_dtype=a,
                                                         validate=False, path="two_stage"), rot)
        res = [f"two {two:6.1f}"]
        for name in sorted(i.name for i in ops.candidates(ops._layer_key("moe_1stage", a, L.w1, "bf16", "silu", "stage2"))
                           if i.b_path == "swap" and "_n32_" in i.name and "_nt3_" not in i.name):
            for exp in ("0", "1", "2", "3", "4"):
                os.environ["MXF_ONESTAGE_EXP"] = exp
                us = bench._time_graph(lambda j: ops.one_stage_layer(xs[j], L.w1, L.w2, routes[j][1], routes[j][0],
                                                                     "silu", a, "stage2", instance=name), rot)
                res.append(f"exp{exp} {us:6.1f}")
        print(f"T={T} {a:6s} " + "  ".join(res), flush=True)
