#!/usr/bin/env python3
"""Per-kernel start/end times of fused_moe under CUDA-graph replay (device machine).

The lent H200 has no nsys; torch.profiler's CUPTI activity records carry each kernel's
start and end, graph-launched kernels included. Replays a graph of --calls layer calls
(optionally each followed by a one-element torch kernel, --separated, as attention or the
router sit between MoE layers in a model) and prints, per kernel of a call, medians over
the middle calls of: its start relative to the call's first kernel, its duration, and the
gap since the previous kernel ended (negative: overlap, programmatic dependent launch);
then the period per call. Run it with MXFORGE_PDL=off and =on, back to back and separated
(benchmarks/README.md, session 13):

    MXFORGE_PDL=on python3 scripts/kernel_timeline.py --model gpt-oss-120b --T 1 --pipeline a4w4 --separated
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mxforge import ops  # noqa: E402
from mxforge.bench import PIPELINES, _routings, make_layer  # noqa: E402
from mxforge.models import preset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--T", type=int, default=1)
    p.add_argument("--pipeline", default="a4w4", choices=list(PIPELINES))
    p.add_argument("--separated", action="store_true", help="a one-element torch kernel after every call")
    p.add_argument("--calls", type=int, default=8)
    args = p.parse_args()
    shape = preset(args.model)
    g = torch.Generator(device="cuda").manual_seed(0)
    L = make_layer(shape, g)
    routes = _routings(args.T, shape.E, shape.topk, args.calls, g)
    xs = [(torch.randn(args.T, shape.H, generator=g, device="cuda") * 2).to(torch.bfloat16)
          for _ in range(args.calls)]
    marker = torch.zeros(1, device="cuda")
    a_dtype, s2 = PIPELINES[args.pipeline]

    def calls() -> None:
        for i in range(args.calls):
            ops.fused_moe(xs[i], L.w1, L.w2, routes[i][1], routes[i][0], activation=shape.activation,
                          a_dtype=a_dtype, stage2_input=s2, validate=False)
            if args.separated:
                marker.add_(1)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        calls()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        calls()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        graph.replay()
        torch.cuda.synchronize()
    kernels = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                      and e.time_range.end > e.time_range.start), key=lambda e: e.time_range.start)
    per_call = len(kernels) // args.calls
    if per_call == 0 or len(kernels) % args.calls:
        sys.exit(f"{len(kernels)} kernels recorded for {args.calls} calls: this torch/CUPTI "
                 "does not trace every kernel inside CUDA graphs")
    print(f"# {torch.cuda.get_device_name()} {shape.name} T={args.T} {args.pipeline} "
          f"separated={args.separated} dependent launch {ops.describe_dependent_launch()} "
          f"{per_call} kernels per call")
    # Per call c (skipping the first and last): each kernel's start relative to the call's
    # first kernel, its duration, and the gap since the previous kernel ended (negative:
    # overlap); medians over the calls. The period is first kernel to next call's first.
    calls_ = [kernels[c * per_call:(c + 1) * per_call] for c in range(args.calls)]
    rows = []
    for i in range(per_call):
        starts = [cs[i].time_range.start - cs[0].time_range.start for cs in calls_[1:-1]]
        durs = [cs[i].time_range.elapsed_us() for cs in calls_[1:-1]]
        gaps = [cs[i].time_range.start - (cs[i - 1] if i else prev[-1]).time_range.end
                for prev, cs in zip(calls_[:-2], calls_[1:-1])]
        rows.append((statistics.median(starts), statistics.median(durs), statistics.median(gaps),
                     calls_[1][i].name))
    period = statistics.median(b[0].time_range.start - a[0].time_range.start
                               for a, b in zip(calls_[1:-2], calls_[2:-1]))
    print(f"{'start us':>9} {'dur us':>8} {'gap us':>8}  kernel")
    for st, du, ga, name in rows:
        print(f"{st:9.2f} {du:8.2f} {ga:8.2f}  {name[:100]}")
    print(f"period {period:.2f} us per call (median over calls 2 .. {args.calls - 2})")

if __name__ == "__main__":
    main()
