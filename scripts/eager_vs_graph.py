#!/usr/bin/env python3
"""One `fused_moe` layer on the GPU, eager against CUDA-graph replay, in one process (the
benchmarks in benchmarks/ are graph replays, which hide the host's share of an eager call;
scripts/host_overhead.py times that share with the launches stubbed, on any CPU).

For each model, pipeline and T, on the same weights, routes and inputs (pairbits weights,
rotating over 32 inputs as `mxforge bench` does):
  graph        µs per layer, CUDA-graph replay (bench's timing)
  eager        µs per layer, `--calls` eager calls back to back, one synchronize at the end
               (validate=False: no host read-back); max(host, GPU) per call in steady state
  eager+val    the same with validate=True (fused_moe's default: one read-back per call)
  host         median µs the host spends in one eager call (validate=False), call to return
  sync'd       median µs of one eager call and a synchronize (a layer's latency alone)

    python3 scripts/eager_vs_graph.py [--models ...] [--T 1 8 64 512] [--calls 200]
    python3 scripts/eager_vs_graph.py --profile 500 --models minimax-m2.1-tp8 --T 1 \
        --pipelines a4w4     (then where the host's time goes: the host µs of each launch
                              of one call replayed alone and of the runtime's primitives,
                              cProfile of 500 eager calls by own time, torch.profiler's ops)
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from mxforge import _loader, bench, ops
from mxforge.dispatch import Decision
from mxforge.models import preset


def per_call_us(fn: Callable[[int], object], calls: int, rot: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(calls):
        fn(i % rot)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / calls * 1e6


def host_us(fn: Callable[[int], object], calls: int, rot: int, sync: bool) -> float:
    times = []
    for i in range(calls):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(i % rot)
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["minimax-m2.1-tp8", "gpt-oss-120b"])
    ap.add_argument("--pipelines", nargs="+", default=["a4w4", "a16w4"])
    ap.add_argument("--T", type=int, nargs="+", default=[1, 8, 64, 512])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--profile", type=int, default=0, metavar="CALLS",
                    help="also profile this many eager calls (validate=False) of each row")
    args = ap.parse_args()
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {' '.join(sys.argv)}; programmatic dependent "
          f"launch {ops.describe_dependent_launch()}")
    print(f"{'model':18s} {'pipeline':15s} {'T':>5s} {'graph':>8s} {'eager':>8s} "
          f"{'eager+val':>9s} {'host':>8s} {'sync_d':>8s}  (us per layer)", flush=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    for model in args.models:
        shape = preset(model)
        L = bench.make_layer(shape, g).in_layout("pairbits")
        for T in args.T:
            rot = 32  # (as bench up to T = 256; the eager loops below cycle through them)
            routes, xs = bench.layer_inputs(shape, T, rot, g)
            for p in args.pipelines:
                a_dtype, s2 = bench.PIPELINES[p]

                def layer(validate: bool) -> Callable[[int], object]:
                    return lambda i: ops.fused_moe(
                        xs[i], L.w1, L.w2, routes[i][1], routes[i][0],
                        activation=shape.activation, a_dtype=a_dtype, stage2_input=s2,
                        validate=validate)
                fast, checked = layer(False), layer(True)
                for i in range(rot):  # (warm: allocator, dispatch memo)
                    fast(i)
                    checked(i)
                graph = bench._time_graph(fast, rot)
                eager = per_call_us(fast, args.calls, rot)
                eager_val = per_call_us(checked, args.calls, rot)
                host = host_us(fast, args.calls, rot, sync=False)
                torch.cuda.synchronize()
                synced = host_us(fast, min(args.calls, 100), rot, sync=True)
                print(f"{model:18s} {p:15s} {T:5d} {graph:8.1f} {eager:8.1f} {eager_val:9.1f} "
                      f"{host:8.1f} {synced:8.1f}", flush=True)
                if args.profile:
                    launch_costs(fast, xs[0].device)
                    profile(fast, args.profile, rot)


def median_host_us(fn: Callable[[], object], calls: int = 300) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def launch_costs(fn: Callable[[int], object], device: torch.device) -> None:
    """The host µs of each launch one eager call makes, replayed alone with the call's own
    arguments (its buffers kept alive, so the kernels read what the call wrote), against
    the whole call and the runtime's primitives: is the time in the launches (the compiled
    module, the CUDA runtime) or in the Python around them?"""
    C = _loader.module()
    kept: list[torch.Tensor] = []
    launches: list[tuple[object, object]] = []
    empty, launch = ops._empty, ops._launch

    def keep_empty(*shape: int, **kw: object) -> torch.Tensor:
        kept.append(empty(*shape, **kw))
        return kept[-1]
    ops._empty = keep_empty
    ops._launch = lambda d, a: (launches.append((d, a)), launch(d, a))[1]
    try:
        kept.append(fn(0))
    finally:
        ops._empty, ops._launch = empty, launch
    torch.cuda.synchronize()
    print(f"# host µs, median of 300 (one call: {len(launches)} launches)")
    print(f"  {'whole eager call (validate=False)':58s} {median_host_us(lambda: fn(0)):8.1f}")
    torch.cuda.synchronize()
    for d, a in launches:
        inst = d.instance if isinstance(d, Decision) else d
        pdl = ops.dependent_launch(d.shape.T if isinstance(d, Decision) else None)  # (as _launch)
        us = median_host_us(lambda: launch(d, a))
        torch.cuda.synchronize()
        raw = median_host_us(lambda: C.launch(inst.index, a, pdl))
        torch.cuda.synchronize()
        print(f"  ops._launch {inst.name[:46]:46s} {us:8.1f}   _C.launch alone {raw:8.1f}")
    prims: dict[str, Callable[[], object]] = {
        f"torch.empty(4096, int32, {device})": lambda: torch.empty(4096, dtype=torch.int32, device=device),
        "ops.stream_of": lambda: ops.stream_of(device),
        "ops.capturing": lambda: ops.capturing(device),
        "ops.target_of": lambda: ops.target_of(device),
        "torch.cuda.get_device_capability": lambda: torch.cuda.get_device_capability(device),
        "torch._C._cuda_getCurrentRawStream": lambda: torch._C._cuda_getCurrentRawStream(device.index or 0),
        "_C.availability('sm90')": lambda: C.availability("sm90"),
        "_C.MoeGemmArgs()": lambda: C.MoeGemmArgs(),
    }
    for name, prim in prims.items():
        print(f"  {name:58s} {median_host_us(prim, 1000):8.1f}")
    torch.cuda.synchronize()


def profile(fn: Callable[[int], object], calls: int, rot: int) -> None:
    """Where an eager call's host time goes: Python functions by own time (cProfile), then
    the torch operators and CUDA runtime calls the host made (torch.profiler, CPU side)."""
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for i in range(calls):
        fn(i % rot)
    prof.disable()
    torch.cuda.synchronize()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(30)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as tp:
        for i in range(min(calls, 50)):
            fn(i % rot)
        torch.cuda.synchronize()
    print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), flush=True)


if __name__ == "__main__":
    main()
