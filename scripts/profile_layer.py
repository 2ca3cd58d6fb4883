#!/usr/bin/env python3
"""One MoE layer (`fused_moe`, the bench's random weights and routing) called a few times,
for a profiler to attach to: scripts/gpu-profile runs it under Nsight Compute.

    python3 scripts/profile_layer.py --model minimax-m2.1-tp8 --T 1 --pipeline a4w4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mxforge import bench, ops  # noqa: E402
from mxforge.models import preset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minimax-m2.1-tp8")
    ap.add_argument("--T", type=int, default=1)
    ap.add_argument("--pipeline", default="a4w4", choices=list(bench.PIPELINES))
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--layout", default="pairbits", choices=["plain", "pairbits"],
                    help="weight layout (the bench's default: pairbits)")
    ap.add_argument("--stage2-reduce", default="auto", choices=["auto", "atomic", "slots"],
                    help="fused_moe's stage2_reduce")
    ap.add_argument("--path", default="auto", choices=["auto", "two_stage", "one_stage"],
                    help="fused_moe's path")
    args = ap.parse_args()
    shape = preset(args.model)
    g = torch.Generator(device="cuda").manual_seed(0)
    layer = bench.make_layer(shape, g)
    if args.layout != "plain":
        layer = layer.in_layout(args.layout)
    ids, w = bench._routings(args.T, shape.E, shape.topk, 1, g)[0]
    x = (torch.randn(args.T, shape.H, generator=g, device="cuda") * 2).to(torch.bfloat16)
    a_dtype, s2 = bench.PIPELINES[args.pipeline]
    for _ in range(args.calls):
        ops.fused_moe(x, layer.w1, layer.w2, w, ids, activation=shape.activation, a_dtype=a_dtype,
                      stage2_input=s2, validate=False, stage2_reduce=args.stage2_reduce,
                      path=args.path)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
