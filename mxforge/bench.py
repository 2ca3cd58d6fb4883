"""`mxforge bench`: time the whole MoE layer on a GPU against its floors and a torch baseline.

For a model preset (or explicit H, I, E, topk) and a list of token counts, each pipeline
(dtype pair) is timed as one `fused_moe` call -- activation quantization + sorting (one
fused launch), stage 1, stage 2 -- and, in the same run:

* a torch bf16 baseline on the dequantized weights, the faster of two: `torch._grouped_mm`
  over the routes sorted by expert, the activation in torch, `_grouped_mm` again, weighted
  `index_add_`; or the same with one `mm` / `addmm` per touched expert (cuBLAS) in place of
  each `_grouped_mm`, the experts' row ranges known on the host (worked out before timing,
  so no synchronization is timed);
* the HBM floor: the bytes of the experts the routing actually touches (pk_fp4 at 0.5 byte
  per element plus one scale byte per 32) plus activations in and out, over a
  device-to-device copy bandwidth measured in this run;
* the compute floor: the useful FLOPs (2 * T * topk * 3 * H * I) over a bf16 matmul rate
  measured in this run.

Timing: CUDA-graph replay of ROT calls on ROT different inputs and routings (so the
touched experts differ from call to call and the weights are not served from L2), median
over replays, divided by ROT. `stages=True` adds per-stage timings (quant+sort fused and
split, stage 1, stage 2).
"""
from __future__ import annotations

import csv
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import ops
from .dispatch import candidates
from .library import mx_weight
from . import reference as ref
from .models import MoeShape, preset

DEFAULT_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# name -> (fused_moe a_dtype, stage2_input)
PIPELINES: dict[str, tuple[str, str]] = {
    "a4w4": ("pk_fp4", "pk_fp4"),        # fp4 activations in both stages
    "a4w4-bf16inter": ("pk_fp4", "bf16"),  # a4w4 stage 1, a16w4 stage 2 (skip-inter-quant)
    "a16w4": ("bf16", "bf16"),
}


@dataclass
class Ceilings:
    copy_gbps: float   # device-to-device copy, bytes read + written per second / 1e9
    bf16_tflops: float  # 8192^3 bf16 matmul


@dataclass
class Row:
    model: str
    pipeline: str
    T: int
    us: float
    hbm_floor_us: float
    compute_floor_us: float
    floor_us: float
    x_floor: float
    tflops: float
    gbps: float
    torch_us: float  # the faster torch baseline (torch_baseline)
    speedup: float
    rel_err_vs_torch: float
    device: str = ""
    layout: str = "plain"  # the weights' layout (pairbits: the sm90 kernels' fastest)
    reduce: str = "atomic"  # how stage 2 summed each token's routes (atomic or slots)
    path: str = "two_stage"  # the layer's kernels: two_stage or one_stage (fused_moe's path, resolved)
    torch_baseline: str = "grouped_mm"  # which torch baseline torch_us is: grouped_mm or per_expert
    torch_grouped_us: float = float("nan")
    torch_per_expert_us: float = float("nan")
    routing: str = "sorted"  # how the stages got their routes: sorted (a sort launch) or direct
    stages: dict[str, float] = field(default_factory=dict)


def _time_graph(fn: Callable[[int], None], rot: int, replays: int = 10) -> float:
    """Median µs per call of fn(0..rot-1), captured once in a CUDA graph and replayed."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(rot):  # warm-up outside the graph (allocations, first launches)
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(rot):
            fn(i)
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / rot)
    return statistics.median(times)


def measure_ceilings() -> Ceilings:
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    us = _time_graph(lambda i: dst.copy_(src), 1, 20)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm = _time_graph(lambda i: torch.mm(a, b), 1, 10)
    return Ceilings(copy_gbps=2 * n / us / 1e3, bf16_tflops=2 * 8192 ** 3 / mm / 1e6)


@dataclass
class Layer:
    shape: MoeShape
    w1: ops.MoeWeight
    w2: ops.MoeWeight
    w1_bf16: torch.Tensor  # [E, H, 2I] (transposed for grouped_mm)
    w2_bf16: torch.Tensor  # [E, I, H]
    plain: tuple = ()      # (q1, s1, b1, q2, s2, b2): the codes as made, for other layouts

    def in_layout(self, layout: str) -> "Layer":
        """The same weights packed for `layout` (mx_pack on the device)."""
        q1, s1, b1, q2, s2, b2 = self.plain
        w1 = mx_weight(q1, s1, self.shape.H, layout, "pk_fp4", b1, self.shape.gate_up)
        w2 = mx_weight(q2, s2, self.shape.I, layout, "pk_fp4", b2)
        return Layer(self.shape, w1, w2, self.w1_bf16, self.w2_bf16, self.plain)


def _random_mx(E: int, N: int, K: int, g: torch.Generator, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.randint(0, 256, (E, N, K // 2), generator=g, dtype=torch.uint8, device="cuda")
    s = torch.randint(scale - 4, scale + 1, (E, N, K // 32), generator=g, dtype=torch.uint8,
                      device="cuda")
    return q, s


def make_layer(shape: MoeShape, g: torch.Generator) -> Layer:
    """Random checkpoint-like MXFP4 weights (codes uniform, scales near 1/sqrt(K)) and their
    exact bf16 dequantization for the baseline."""
    E, H, I = shape.E, shape.H, shape.I
    q1, s1 = _random_mx(E, 2 * I, H, g, 121)
    q2, s2 = _random_mx(E, H, I, g, 121)
    b1 = torch.randn(E, 2 * I, device="cuda", generator=g) * 0.5 if shape.bias else None
    b2 = torch.randn(E, H, device="cuda", generator=g) * 0.5 if shape.bias else None
    w1 = mx_weight(q1, s1, H, "plain", "pk_fp4", b1, shape.gate_up)
    w2 = mx_weight(q2, s2, I, "plain", "pk_fp4", b2)
    d1 = torch.stack([ref.dequantize_mx(q1[e], s1[e], H, "e2m1", torch.bfloat16) for e in range(E)])
    d2 = torch.stack([ref.dequantize_mx(q2[e], s2[e], I, "e2m1", torch.bfloat16) for e in range(E)])
    return Layer(shape, w1, w2, d1.transpose(1, 2).contiguous(), d2.transpose(1, 2).contiguous(),
                 (q1, s1, b1, q2, s2, b2))


TORCH_BASELINES = ("grouped_mm", "per_expert")


def expert_ranges(ids: torch.Tensor, E: int) -> list[tuple[int, int, int]]:
    """(expert, first, end) of each touched expert's rows among the routes sorted by expert
    (torch_moe's order): the per-expert baseline's slices, worked out on the host."""
    counts = torch.bincount(ids.reshape(-1).long(), minlength=E).tolist()
    out, at = [], 0
    for e, c in enumerate(counts):
        if c:
            out.append((e, at, at + c))
        at += c
    return out


def _per_expert_mm(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
                   ranges: list[tuple[int, int, int]]) -> torch.Tensor:
    """a [R, K] (rows sorted by expert) x w[e] [K, N] per expert range, one cuBLAS call each."""
    out = torch.empty(a.shape[0], w.shape[2], dtype=a.dtype, device=a.device)
    for e, i, j in ranges:
        if bias is None:
            torch.mm(a[i:j], w[e], out=out[i:j])
        else:
            torch.addmm(bias[e].to(a.dtype), a[i:j], w[e], out=out[i:j])
    return out


def torch_moe(L: Layer, x: torch.Tensor, ids: torch.Tensor, w: torch.Tensor,
              ranges: list[tuple[int, int, int]] | None = None) -> torch.Tensor:
    """The bf16 baseline: routes sorted by expert, two grouped GEMMs (`_grouped_mm`; with
    `ranges`, expert_ranges(ids), one matmul per touched expert instead), torch activation."""
    T, k = ids.shape
    E, I = L.shape.E, L.shape.I
    flat = ids.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    tok = order // k
    if ranges is None:
        counts = torch.zeros(E, dtype=torch.int32, device=x.device).scatter_add_(
            0, flat, torch.ones_like(flat, dtype=torch.int32))
        offs = torch.cumsum(counts, 0, dtype=torch.int32)

    def gemm(a: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if ranges is not None:
            return _per_expert_mm(a, wt, bias, ranges)
        y = torch._grouped_mm(a, wt, offs=offs)
        return y if bias is None else y + bias[flat[order]].to(y.dtype)
    h = gemm(x[tok], L.w1_bf16, L.w1.bias)  # [T*k, 2I]
    if L.shape.gate_up == "interleaved":
        gate, up = h[:, 0::2], h[:, 1::2]
    else:
        gate, up = h[:, :I], h[:, I:]
    a = ref.gated_activation(gate.float(), up.float(), L.shape.activation).to(torch.bfloat16)
    y = gemm(a, L.w2_bf16, L.w2.bias)  # [T*k, H]
    y = y.float() * w.reshape(-1)[order].unsqueeze(1)
    return torch.zeros(T, y.shape[1], device=x.device).index_add_(0, tok, y).to(torch.bfloat16)


def _routings(T: int, E: int, k: int, rot: int, g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for _ in range(rot):
        ids = torch.rand(T, E, generator=g, device="cuda").topk(k, dim=-1).indices.to(torch.int32)
        w = torch.rand(T, k, generator=g, device="cuda") + 0.05
        out.append((ids, (w / w.sum(-1, keepdim=True)).float()))
    return out


def layer_inputs(shape: MoeShape, T: int, rot: int, g: torch.Generator
                 ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    """`rot` routings and activations of T tokens that timed calls rotate over (so that the
    touched experts change from call to call and the weights do not sit in L2)."""
    routes = _routings(T, shape.E, shape.topk, rot, g)  # (first: the generator's order as before)
    xs = [(torch.randn(T, shape.H, generator=g, device="cuda") * 2).to(torch.bfloat16)
          for _ in range(rot)]
    return routes, xs


def bench_rotation(T: int) -> int:
    """How many inputs `mxforge bench` rotates over at T (more where a call is short)."""
    return 32 if T <= 256 else 8 if T <= 2048 else 3


def hbm_bytes(shape: MoeShape, T: int, ids: list[torch.Tensor]) -> float:
    """Mean bytes one call must move: touched experts' MXFP4 weights (+ biases) and the
    activations in and out (bf16)."""
    H, I = shape.H, shape.I
    per_expert = (2 * I * H + H * I) * (0.5 + 1 / 32) + (4 * (2 * I + H) if shape.bias else 0)
    touched = statistics.mean(int(torch.unique(i).numel()) for i in ids)
    return touched * per_expert + 2 * T * H * 2


def bench(model: str | MoeShape, tokens: tuple[int, ...] = DEFAULT_TOKENS,
          pipelines: tuple[str, ...] = tuple(PIPELINES), stages: bool = False,
          seed: int = 0, log: Callable[[str], None] = print,
          layouts: tuple[str, ...] = ("pairbits",),
          stage2_reduce: tuple[str, ...] = ("auto",),
          paths: tuple[str, ...] = ("auto",),
          routings: tuple[str, ...] = ("auto",)) -> tuple[Ceilings, list[Row]]:
    """stage2_reduce: a row per mode, "auto", "atomic" or "slots" (fused_moe's), each row
    naming the reduction that ran; a mode that comes out as one already timed at that T is
    not timed again. ("atomic" and "slots" in one run: the two side by side.) paths: the same
    for fused_moe's path ("auto", "two_stage", "one_stage"); one_stage only where the
    pipeline keeps a bf16 intermediate (the others are skipped). routings: the same for
    fused_moe's routing ("auto", "sorted", "direct"; direct on the two-stage path)."""
    if not torch.cuda.is_available():
        raise ops.InputError("mxforge bench needs a CUDA GPU (the sm90 target)")
    shape = preset(model) if isinstance(model, str) else model
    for p in pipelines:
        if p not in PIPELINES:
            raise ops.InputError(f"pipeline {p!r} (allowed: {', '.join(PIPELINES)})")
    for lay in layouts:
        ops.layout_sizes(lay, 32, 32)  # a clear error for an unknown layout
    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator(device="cuda").manual_seed(seed)
    ceil = measure_ceilings()
    dev = torch.cuda.get_device_name()
    log(f"# {dev}: copy {ceil.copy_gbps:.0f} GB/s, bf16 matmul {ceil.bf16_tflops:.0f} TFLOP/s; "
        f"programmatic dependent launch {ops.describe_dependent_launch()}")
    t0 = time.time()
    L0 = make_layer(shape, g)
    packed = {lay: L0.in_layout(lay) for lay in layouts}
    log(f"# {shape.name}: H={shape.H} I={shape.I} E={shape.E} topk={shape.topk} "
        f"(weights made in {time.time() - t0:.1f} s; layouts {', '.join(layouts)})")
    rows: list[Row] = []
    H, I, k = shape.H, shape.I, shape.topk
    for T in tokens:
        rot = bench_rotation(T)
        routes, xs = layer_inputs(shape, T, rot, g)
        hbm_us = hbm_bytes(shape, T, [r[0] for r in routes]) / (ceil.copy_gbps * 1e3)
        flops = 2.0 * T * k * 3 * H * I
        comp_us = flops / (ceil.bf16_tflops * 1e6)
        ranges = [expert_ranges(r[0], shape.E) for r in routes]
        base_us = {"grouped_mm": _time_graph(lambda i: torch_moe(L0, xs[i], *routes[i]), rot),
                   "per_expert": _time_graph(lambda i: torch_moe(L0, xs[i], *routes[i], ranges[i]), rot)}
        torch_base = min(base_us, key=base_us.get)
        torch_us = base_us[torch_base]
        base = torch_moe(L0, xs[0], *routes[0]).double()
        log(f"# {shape.name} T={T}: torch bf16 grouped_mm {base_us['grouped_mm']:.1f} us, per expert "
            f"{base_us['per_expert']:.1f} us: the baseline is {torch_base}")
        timed = set()
        for p, lay, mode, want_path, want_routing in [
                (p, lay, m, w, r) for p in pipelines for lay in layouts for m in stage2_reduce
                for w in paths for r in routings]:
            L = packed[lay]
            a_dtype, s2 = PIPELINES[p]
            reduce = _reduce_for(mode)
            if want_path == "one_stage":  # (the one-stage kernel adds a bf16 intermediate's rows)
                why = ("its intermediate is pk_fp4" if s2 != "bf16" else
                       "stage 2 sums by slots" if reduce == "slots" else
                       "no one-stage instance is compiled for it" if not candidates(ops._layer_key(
                           "moe_1stage", a_dtype, L.w1, "bf16", shape.activation, "stage2")) else "")
                if why:
                    log(f"# {shape.name} {p} {lay} {reduce} T={T}: one stage not timed ({why})")
                    continue
            path = ops.layer_path(L.w1, T, k, a_dtype, s2, shape.activation, "stage2", want_path,
                                  reduce)
            if want_routing == "direct" and path != "two_stage":
                continue  # (direct routing: two stages)
            routing = (ops.layer_routing(want_routing, L.w1, T, k, a_dtype) if path == "two_stage"
                       else "sorted")
            if (p, lay, reduce, path, routing) in timed:
                continue
            timed.add((p, lay, reduce, path, routing))

            def call(i: int) -> torch.Tensor:
                return ops.fused_moe(xs[i], L.w1, L.w2, routes[i][1], routes[i][0],
                                     activation=shape.activation, a_dtype=a_dtype,
                                     stage2_input=s2, validate=False, stage2_reduce=reduce,
                                     path=path, routing=routing)
            us = _time_graph(call, rot)
            y = call(0).double()
            err = float((y - base).norm() / base.norm().clamp_min(1e-30))
            floor = max(hbm_us, comp_us)
            row = Row(shape.name, p, T, us, hbm_us, comp_us, floor, us / floor,
                      flops / us / 1e6, hbm_bytes(shape, T, [r[0] for r in routes]) / us / 1e3,
                      torch_us, torch_us / us, err, dev, lay, reduce, path, torch_base,
                      base_us["grouped_mm"], base_us["per_expert"], routing)
            if stages and path == "two_stage":
                row.stages = stage_times(L, xs, routes, a_dtype, s2, rot, reduce, routing)
            rows.append(row)
            log(format_row(row))
    return ceil, rows


def _reduce_for(requested: str) -> str:
    """The reduction fused_moe runs for `requested` (dispatch.stage2_reduce: "auto" is the
    atomic adds; "slots" restricts stage 2, and so block_m, to instances that have them)."""
    return "slots" if requested == "slots" else "atomic"


def stage_times(L: Layer, xs: list[torch.Tensor], routes: list, a_dtype: str, s2: str,
                rot: int, reduce: str = "auto", routing: str = "sorted") -> dict[str, float]:
    """µs of each step of the two-stage pipeline, each timed on its own (direct routing:
    no sort step; stage 1 zeroes the out buffer, as in the layer)."""
    shape = L.shape
    E, k = shape.E, shape.topk
    T = xs[0].shape[0]
    bm = ops.two_stage_block_m(L.w1, L.w2, T, k, a_dtype, s2, shape.activation,
                               stage2_reduce=reduce, direct=routing == "direct")
    out: dict[str, float] = {}
    zero = [None] * rot
    if routing == "direct":
        if a_dtype in ops.MX_DTYPES:
            out["quant"] = _time_graph(lambda i: ops.quantize(xs[i], a_dtype), rot)
        prep = [(ops.quantize(xs[i], a_dtype) if a_dtype in ops.MX_DTYPES else xs[i],
                 ops.moe_routes(routes[i][0], routes[i][1], E, bm, validate=False)) for i in range(rot)]
        zero = [torch.empty(T, shape.H, dtype=torch.bfloat16, device="cuda") for _ in range(rot)]
    elif a_dtype in ops.MX_DTYPES:
        out["quant+sort fused"] = _time_graph(lambda i: ops.fused_quant_sort(
            xs[i], routes[i][0], routes[i][1], E, bm, a_dtype, validate=False), rot)
        out["quant+sort split"] = _time_graph(lambda i: (ops.quantize(xs[i], a_dtype), ops.moe_sort(
            routes[i][0], routes[i][1], E, bm, validate=False)), rot)
        prep = [ops.fused_quant_sort(xs[i], routes[i][0], routes[i][1], E, bm, a_dtype,
                                     validate=False) for i in range(rot)]
    else:
        out["sort"] = _time_graph(lambda i: ops.moe_sort(routes[i][0], routes[i][1], E, bm,
                                                         validate=False), rot)
        prep = [(xs[i], ops.moe_sort(routes[i][0], routes[i][1], E, bm, validate=False))
                for i in range(rot)]
    out["stage1"] = _time_graph(lambda i: ops.moe_stage1(prep[i][0], L.w1, prep[i][1],
                                                         shape.activation, s2, zero_buf=zero[i]), rot)
    inter = [ops.moe_stage1(prep[i][0], L.w1, prep[i][1], shape.activation, s2) for i in range(rot)]
    out["stage2"] = _time_graph(lambda i: ops.moe_stage2(inter[i], L.w2, prep[i][1], reduce=reduce), rot)
    return out


HEADER = (f"{'model':18s} {'pipeline':15s} {'layout':8s} {'reduce':6s} {'path':9s} {'routing':7s} {'T':>5s} {'us':>9s} {'floor':>8s} {'x floor':>7s} "
          f"{'TFLOP/s':>8s} {'GB/s':>7s} {'torch us':>9s} {'speedup':>7s} {'err':>7s}")


def format_row(r: Row) -> str:
    s = (f"{r.model:18s} {r.pipeline:15s} {r.layout:8s} {r.reduce:6s} {r.path:9s} {r.routing:7s} {r.T:5d} {r.us:9.1f} {r.floor_us:8.1f} {r.x_floor:7.2f} "
         f"{r.tflops:8.1f} {r.gbps:7.0f} {r.torch_us:9.1f} {r.speedup:7.2f} {r.rel_err_vs_torch:7.4f}")
    if r.stages:
        s += "  [" + ", ".join(f"{k} {v:.1f}" for k, v in r.stages.items()) + "]"
    return s


def write_csv(path: Path, ceil: Ceilings, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stage_keys = sorted({k for r in rows for k in r.stages})
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        cols = [c for c in asdict(rows[0]) if c != "stages"] if rows else []
        w.writerow(cols + ["copy_gbps", "bf16_tflops"] + [f"stage_us:{k}" for k in stage_keys])
        for r in rows:
            d = asdict(r)
            w.writerow([d[c] for c in cols] + [f"{ceil.copy_gbps:.0f}", f"{ceil.bf16_tflops:.0f}"]
                       + [f"{r.stages.get(k, float('nan')):.2f}" for k in stage_keys])


def plot(path: Path, rows: list[Row]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = sorted({r.model for r in rows})
    fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
    for j, m in enumerate(models):
        mr = [r for r in rows if r.model == m]
        ax_t, ax_f = axes[0][j], axes[1][j]
        several = len({r.layout for r in mr}) > 1
        reduces = len({r.reduce for r in mr}) > 1
        # (a series per path and routing only where both were timed at one T: an "auto"
        # run's line stays one line where its path or routing changes with T)
        both = len({(r.pipeline, r.layout, r.reduce, r.T) for r in mr}) < len(mr)
        series = {(r.pipeline, r.layout, r.reduce, f"{r.path} {r.routing}" if both else "") for r in mr}
        for p, lay, red, kernels in sorted(series):
            pr = [r for r in mr if (r.pipeline, r.layout, r.reduce) == (p, lay, red)
                  and kernels in ("", f"{r.path} {r.routing}")]
            name = (f"{p} ({lay})" if several else p) + (f" {red}" if reduces else "") + (f" {kernels}" if kernels else "")
            ax_t.plot([r.T for r in pr], [r.us for r in pr], marker="o", label=f"mxforge {name}")
            ax_f.plot([r.T for r in pr], [1 / r.x_floor for r in pr], marker="o", label=name)
        base = [r for r in mr if (r.pipeline, r.layout) == (mr[0].pipeline, mr[0].layout)]
        ax_t.plot([r.T for r in base], [r.torch_us for r in base], "k--", label="torch bf16 (the faster baseline)")
        ax_t.plot([r.T for r in base], [r.floor_us for r in base], "k:", label="floor")
        ax_t.set(xscale="log", yscale="log", xlabel="tokens", ylabel="µs", title=m)
        ax_f.set(xscale="log", xlabel="tokens", ylabel="fraction of floor", ylim=(0, 1.05))
        ax_t.legend(fontsize=8)
        ax_f.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
