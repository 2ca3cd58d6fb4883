#!/usr/bin/env python3
"""What one eager `mxforge.fused_moe` call costs the host (Python: checks, dispatch,
allocations, argument packing), with the kernel launches stubbed out, so the number is the
host's alone: on a GPU the launches are asynchronous, and this is the time a layer call
holds the CPU before its kernels are queued (a decode layer's kernels take 15-50 us on the
H200: benchmarks/README.md).

Two tables, both on this machine's CPU:
  - sm90: the `default` set's sm90 instances (read from the specs, as dispatch sees them)
    and the shipped tuned table, on the model presets' shapes: fused_moe runs its sm90 path
    on CPU tensors (ops.target_of answers "sm90", the launches do nothing), so dispatch
    searches the table it searches on an H100/H200;
  - cpu: the compiled module's own cpu instances on a small shape (the same path; its
    launches stubbed too).
For each, the median over `--calls` calls of the same T (dispatch's memo warm: a serving
loop) and of calls whose T changes every call (`--cold`: T = 1 ... N once each, every
decision new), plus `dispatch.select` alone.

    python3 scripts/host_overhead.py [--calls 300] [--models minimax-m2.1-tp8 gpt-oss-120b]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import mxforge  # noqa: E402
from mxforge import dispatch, ops  # noqa: E402
from mxforge.models import PRESETS, MoeShape  # noqa: E402

PIPELINES = {"a4w4": ("pk_fp4", "pk_fp4"), "a4w4-bf16inter": ("pk_fp4", "bf16"),
             "a16w4": ("bf16", "bf16")}


def sm90_table() -> tuple[dispatch.Instance, ...]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from heuristic_agreement import instances  # the set's rows as dispatch sees them
    return tuple(instances("default", "sm90"))


@contextlib.contextmanager
def as_target(target: str, table: tuple[dispatch.Instance, ...] | None) -> Iterator[None]:
    """fused_moe on CPU tensors takes `target`'s path against `table`; launches do nothing."""
    saved = ops.target_of, ops._launch, dispatch.table
    ops.target_of = lambda device: target
    ops._launch = lambda decision, args: None
    if table is not None:
        dispatch.table = functools.cache(lambda: table)  # (clear_caches clears it)
    dispatch.clear_caches()
    try:
        yield
    finally:
        ops.target_of, ops._launch, dispatch.table = saved
        dispatch.clear_caches()


def weights(shape: MoeShape, layout: str) -> tuple[ops.MoeWeight, ops.MoeWeight]:
    """Uninitialised MXFP4 weights of the preset's sizes (no kernel reads them here)."""
    def one(N: int, K: int, gate_up: str | None) -> ops.MoeWeight:
        wb, sb = ops.layout_sizes(layout, N, K)
        bias = torch.zeros(shape.E, N) if shape.bias else None
        return ops.MoeWeight(torch.empty(shape.E, wb, dtype=torch.uint8),
                             torch.empty(shape.E, sb, dtype=torch.uint8), "pk_fp4", layout,
                             shape.E, N, K, bias, gate_up)
    return one(2 * shape.I, shape.H, shape.gate_up), one(shape.H, shape.I, None)


def routing(T: int, shape: MoeShape) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(T)
    ids = torch.stack([torch.randperm(shape.E, generator=g)[:shape.topk] for _ in range(T)])
    return torch.rand(T, shape.topk, generator=g), ids.to(torch.int32)


def median_us(fn: Callable[[int], object], Ts: list[int]) -> float:
    times = []
    for T in Ts:
        t0 = time.perf_counter()
        fn(T)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def layer_call(shape: MoeShape, layout: str, pipeline: str, T_max: int) -> Callable[[int], object]:
    w1, w2 = weights(shape, layout)
    x = torch.zeros(T_max, shape.H, dtype=torch.bfloat16)
    routes = {T: routing(T, shape) for T in range(1, T_max + 1)}
    a, s2 = PIPELINES[pipeline]

    def call(T: int) -> object:
        tw, ti = routes[T]
        return mxforge.fused_moe(x[:T], w1, w2, tw, ti, activation=shape.activation,
                                 a_dtype=a, stage2_input=s2)
    return call


def select_call(shape: MoeShape, layout: str, pipeline: str) -> Callable[[int], object]:
    a, s2 = PIPELINES[pipeline]
    key = dispatch.Key(ops.target_of(None), "moe_stage1", a=a, b="pk_fp4", out=s2,
                       activation=shape.activation, gate_up=shape.gate_up, routed_weight="none",
                       bias=shape.bias, layout=layout)
    return lambda T: dispatch.select(key, dispatch.Shape(T=T, N=2 * shape.I, K=shape.H, E=shape.E,
                                                         topk=shape.topk))


def run(target: str, shapes: list[MoeShape], layout: str, calls: int, Ts: list[int],
        cold: int) -> None:
    print(f"{'target':6s} {'model':18s} {'pipeline':15s} {'T':>5s} {'fused_moe us':>12s} "
          f"{'cold us':>8s} {'select us':>9s} {'select cold':>11s}")
    for shape in shapes:
        for pipeline in PIPELINES:
            layer = layer_call(shape, layout, pipeline, max(max(Ts), cold))
            sel = select_call(shape, layout, pipeline)
            cold_Ts = list(range(1, cold + 1))
            layer_cold, sel_cold = median_us(layer, cold_Ts), median_us(sel, cold_Ts)
            for T in Ts:
                layer(T)  # (warm)
                print(f"{target:6s} {shape.name:18s} {pipeline:15s} {T:5d} "
                      f"{median_us(layer, [T] * calls):12.1f} {layer_cold:8.1f} "
                      f"{median_us(sel, [T] * calls):9.1f} {sel_cold:11.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--T", type=int, nargs="+", default=[1, 64, 1024])
    ap.add_argument("--cold", type=int, default=64, help="T = 1 ... this once each (new decisions)")
    ap.add_argument("--models", nargs="+", default=["minimax-m2.1-tp8", "gpt-oss-120b"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip() or "(no git)"
    print(f"# {' '.join(sys.argv)} at {rev}")
    table = sm90_table()
    print(f"# sm90: the default set's {len(table)} sm90 instances, tuned tables "
          f"{[p.name for p in dispatch.tuned_paths()]}")
    with as_target("sm90", table):
        run("sm90", [PRESETS[m] for m in args.models], "pairbits", args.calls, args.T, args.cold)
    small = MoeShape("small (cpu)", 256, 128, 8, 2, "silu", "concat", False)
    print(f"# cpu: this module's {len(dispatch.table())} instances (set "
          f"{mxforge._loader.manifest().get('set')})")
    with as_target("cpu", None):
        run("cpu", [small], "plain", args.calls, args.T, args.cold)


if __name__ == "__main__":
    main()
