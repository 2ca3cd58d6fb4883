#!/usr/bin/env python3
"""One moe_sort launch on the bench's routing (E = 256, top-8 by default) after three warm-up
calls, for Nsight Compute to time (scripts/gpu-sort-ab):

    ncu --kernel-name regex:moe_sort --launch-skip 3 --launch-count 1 python3 scripts/sort_probe.py 512
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mxforge import ops  # noqa: E402
from mxforge.bench import _routings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("T", type=int)
    ap.add_argument("--E", type=int, default=256)
    ap.add_argument("--topk", type=int, default=8)
    ap.add_argument("--block-m", type=int, default=16)
    args = ap.parse_args()
    g = torch.Generator(device="cuda").manual_seed(0)
    (ids, w), = _routings(args.T, args.E, args.topk, 1, g)
    for _ in range(4):  # three warm-up launches, then the one the profiler records
        ops.moe_sort(ids, w, args.E, args.block_m, validate=False)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
