"""`mxforge tune`: measure every compiled GEMM instance at a model shape and write the
tuned table that dispatch reads (README: dispatch and tuning).

Per model, pipeline and token count T: for every block_m that stage 1 and stage 2 both have
(the sort's padding unit is shared), each stage-1 and each stage-2 candidate is timed on
its own (CUDA-graph replay over rotating inputs, as `mxforge bench`); the block_m whose
best pair is fastest gives the tuned pair. That pair and the pair dispatch takes without
the new rows (the tables' rows it reads, else the heuristic) are then timed as the whole
layer (quant+sort, stage 1, stage 2 in one graph, as fused_moe runs them): stage sums can
disagree with the layer (MiniMax TP=4 at T = 4 on an H200: the tuned pair 0.93x the
dispatch pair's stage sum, 1.03x its layer time), so dispatch's pair is kept unless the
tuned one's layer is faster by more than LAYER_MARGIN. The winner's two instances are
written as rows with T_max = T. A row serves every T above the next smaller row's T_max,
so tune every T of the list (the default): MiniMax TP=4's T = 4 rows took 1.20x the
heuristic's layer time at T = 2 (H200, 2026-12-04). Every
timed instance is also run end to end (quant+sort, its stage, the best instance of the
other stage) and compared with `mxforge.reference.fused_moe` on the same inputs: a result
off by more than the tests' tolerance stops the tuning with an error naming the instance,
so a wrong kernel can never be tuned in.
"""
from __future__ import annotations

import csv
import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import ops
from . import reference as ref
from .bench import PIPELINES, _time_graph, layer_inputs, make_layer
from .dispatch import KEY_FIELDS, SPLIT, TUNED_COLUMNS, TWO_STAGE, Key, candidates, select
from .errors import MxforgeError
from .models import MoeShape, preset

DEFAULT_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# rel. L2 against the fp32 reference: tests/helpers.py ACCUM_TOL for a bf16 intermediate;
# a re-quantized (pk_fp4) intermediate may flip codes by one step in <= 1% of elements.
TOLERANCE = {"bf16": 1.6e-2, "pk_fp4": 3e-2}
# The tuned pair replaces dispatch's pair only where its layer time is below (1 - this) x
# that pair's: one pair's layer timings agree within ~0.5 % from run to run (H200), and a
# row that gains nothing measurable should not move dispatch.
LAYER_MARGIN = 0.01


def untimed_list_tokens(tokens: tuple[int, ...]) -> dict[int, list[int]]:
    """For each T of `tokens`, the T of DEFAULT_TOKENS that its rows would serve without
    having been timed (those between it and the next smaller T tuned): tuned at T = 1, 4, 16,
    the T = 4 rows serve T = 2 and the T = 16 rows T = 8. Empty when none."""
    out: dict[int, list[int]] = {}
    below = 0
    for t in sorted(set(tokens)):
        skipped = [d for d in DEFAULT_TOKENS if below < d < t]
        if skipped:
            out[t] = skipped
        below = t
    return out


@dataclass
class Choice:
    model: str
    pipeline: str
    T: int
    block_m: int
    stage1: str
    stage2: str
    stage1_us: float
    stage2_us: float
    dispatch_us: float  # stage1 + stage2 of dispatch's pair (table rows, else heuristic), same run
    err: float
    layout: str = "plain"  # the weights' layout the instances read
    # Dispatch's pair (dispatch_stage1 / dispatch_stage2) and, where it differs from the pair
    # the stage sums chose, both as the whole layer (quant+sort included, one graph), same
    # run: tuned_layer_us, dispatch_layer_us. kept_dispatch: dispatch's pair won and is now
    # block_m / stage1 / stage2.
    tuned_layer_us: float = float("nan")
    dispatch_layer_us: float = float("nan")
    dispatch_stage1: str = ""
    dispatch_stage2: str = ""
    kept_dispatch: bool = False
    # Pipelines with a bf16 intermediate: the whole layer both ways, same run (quant+sort
    # included): the chosen stages (two_stage_us) and the fastest one-stage instance.
    two_stage_us: float = float("nan")
    one_stage: str = ""
    one_stage_us: float = float("nan")
    # MX activations: quant+sort both ways at the chosen block_m, same run (the same bytes
    # checked): the fused instance where its launch was the faster, else dispatch.SPLIT.
    quant_sort: str = ""
    fused_quant_sort_us: float = float("nan")
    split_quant_sort_us: float = float("nan")

    @property
    def same_as_dispatch(self) -> bool:
        """The stage sums chose dispatch's own pair (no layer timings were needed)."""
        return math.isnan(self.tuned_layer_us)

    @property
    def one_stage_wins(self) -> bool:
        return bool(self.one_stage) and self.one_stage_us < self.two_stage_us


def _keys(target: str, shape: MoeShape, a: str, s2: str, layout: str = "plain") -> tuple[Key, Key]:
    k1 = Key(target, "moe_stage1", a=a, b="pk_fp4", out=s2, activation=shape.activation,
             gate_up=shape.gate_up, routed_weight="none", bias=shape.bias, layout=layout)
    k2 = Key(target, "moe_stage2", a=s2, b="pk_fp4", out="bf16", routed_weight="stage2",
             bias=shape.bias, layout=layout)
    return k1, k2


def _one_stage_key(target: str, shape: MoeShape, a: str, layout: str = "plain") -> Key:
    return Key(target, "moe_1stage", a=a, b="pk_fp4", out="bf16", activation=shape.activation,
               gate_up=shape.gate_up, routed_weight="stage2", bias=shape.bias, layout=layout)


def tune(model: str | MoeShape, tokens: tuple[int, ...] = DEFAULT_TOKENS,
         pipelines: tuple[str, ...] = tuple(PIPELINES), seed: int = 0,
         log: Callable[[str], None] = print, verbose: bool = False,
         only: tuple[str, ...] = (), layout: str = "plain") -> list[Choice]:
    """verbose: log every timed instance (per stage and block_m), not only the choice.
    only: time just the instances whose names match one of these globs (experiments;
    dispatch's pair is still timed, and still kept where the layer check says so). layout: the weights' layout (its
    rows are keyed by it; pairbits without rows of its own takes plain's, dispatch.py).
    Pipelines with a bf16 intermediate also time the one-stage kernels (moe_1stage) against
    the chosen two stages, each as the whole layer (quant+sort included). Pipelines with MX
    activations also time quant+sort fused (every fused_quant_sort instance) against the
    split pair (quantize, then moe_sort) at the chosen block_m, and check that both give the
    same bytes."""
    if not torch.cuda.is_available():
        raise MxforgeError("mxforge tune needs a CUDA GPU (the sm90 target)")
    shape = preset(model) if isinstance(model, str) else model
    g = torch.Generator(device="cuda").manual_seed(seed)
    L = make_layer(shape, g)
    if layout != "plain":
        L = L.in_layout(layout)
    r1, r2 = ops.reference_weight(L.w1), ops.reference_weight(L.w2)
    target = ops.target_of(torch.device("cuda"))
    E = shape.E
    out: list[Choice] = []
    for p in pipelines:
        a_dtype, s2 = PIPELINES[p]
        k1, k2 = _keys(target, shape, a_dtype, s2, layout)
        c1, c2 = candidates(k1), candidates(k2)
        if not c1 or not c2:
            raise MxforgeError(f"{p}: no compiled instances for {k1.describe() if not c1 else k2.describe()}")
        if only:
            c1 = [i for i in c1 if any(fnmatch.fnmatchcase(i.name, g) for g in only)]
            c2 = [i for i in c2 if any(fnmatch.fnmatchcase(i.name, g) for g in only)]
        c_one = candidates(_one_stage_key(target, shape, a_dtype, layout)) if s2 == "bf16" else []
        if only:
            c_one = [i for i in c_one if any(fnmatch.fnmatchcase(i.name, g) for g in only)]
        block_ms = sorted({i.block_m for i in c1} & {i.block_m for i in c2})
        if not block_ms:
            raise MxforgeError(f"{p}: no block_m has both a stage-1 and a stage-2 instance"
                               + (f" matching --only {' '.join(only)}" if only else ""))
        for T in tokens:
            rot = 8 if T <= 256 else 3
            routes, xs = layer_inputs(shape, T, rot, g)
            want = ref.fused_moe(xs[0], r1, r2, routes[0][1], routes[0][0],
                                 activation=shape.activation, gate_up=shape.gate_up,
                                 bias1=L.w1.bias, bias2=L.w2.bias, a_dtype=a_dtype,
                                 stage2_input=s2).double()
            best: Choice | None = None
            per_bm: dict[int, tuple[float, float]] = {}
            for bm in block_ms:
                prep = [_prepare(xs[i], routes[i], E, bm, a_dtype) for i in range(rot)]
                t1 = {i.name: _time_graph(lambda j, n=i.name: ops.moe_stage1(
                    prep[j][0], L.w1, prep[j][1], shape.activation, s2, instance=n), rot)
                    for i in c1 if i.block_m == bm}
                s1_best = min(t1, key=t1.get)
                inter = [ops.moe_stage1(prep[j][0], L.w1, prep[j][1], shape.activation, s2,
                                        instance=s1_best) for j in range(rot)]
                t2 = {i.name: _time_graph(lambda j, n=i.name: ops.moe_stage2(
                    inter[j], L.w2, prep[j][1], instance=n), rot)
                    for i in c2 if i.block_m == bm}
                s2_best = min(t2, key=t2.get)
                err = 0.0
                for n in t1:  # every timed instance, end to end against the reference
                    err = max(err, _verify(L, prep[0], n, s2_best, want, shape, s2, p, T))
                for n in t2:
                    err = max(err, _verify(L, prep[0], s1_best, n, want, shape, s2, p, T))
                if verbose:
                    for stage, times in (("stage1", t1), ("stage2", t2)):
                        for n, us in sorted(times.items(), key=lambda kv: kv[1]):
                            log(f"  {shape.name} {p} T={T} {stage} {us:9.1f} us  {n}")
                per_bm[bm] = (t1[s1_best], t2[s2_best])
                c = Choice(shape.name, p, T, bm, s1_best, s2_best, t1[s1_best], t2[s2_best], 0.0, err,
                           layout)
                if best is None or c.stage1_us + c.stage2_us < best.stage1_us + best.stage2_us:
                    best = c
            assert best is not None
            _layer_check(best, L, xs, routes, want, k1, k2, a_dtype, s2, rot)
            if c_one:
                _tune_one_stage(best, c_one, L, xs, routes, want, shape, a_dtype, rot, verbose, log)
            if a_dtype in ops.MX_DTYPES:
                _tune_quant_sort(best, candidates(ops.quant_sort_key(target, "bf16", a_dtype)), xs, routes, shape,
                                 a_dtype, rot, verbose, log)
            out.append(best)
            one = (f"; one stage {best.one_stage_us:8.1f} us {best.one_stage} vs two {best.two_stage_us:8.1f}"
                   f" -> {'one' if best.one_stage_wins else 'two'}" if best.one_stage else "")
            qs = (f"; quant+sort fused {best.fused_quant_sort_us:.1f} vs split {best.split_quant_sort_us:.1f} us"
                  f" -> {'split' if best.quant_sort == SPLIT else 'fused'}" if best.quant_sort else "")
            lay = ("; = dispatch's pair" if best.same_as_dispatch else
                   f"; layer {best.tuned_layer_us:.1f} us vs dispatch's {best.dispatch_layer_us:.1f} "
                   f"({best.dispatch_stage1} + {best.dispatch_stage2}) "
                   f"-> {'dispatch' if best.kept_dispatch else 'tuned'}")
            log(f"{shape.name:18s} {p:15s} T={T:5d} block_m={best.block_m:3d} "
                f"{best.stage1_us + best.stage2_us:8.1f} us (dispatch {best.dispatch_us:8.1f}) "
                f"err {best.err:.4f}  {best.stage1} + {best.stage2}{lay}{one}{qs}")
    return out


def _tune_one_stage(best: Choice, c_one: list, L, xs, routes, want: torch.Tensor, shape: MoeShape,
                    a_dtype: str, rot: int, verbose: bool, log: Callable[[str], None]) -> None:
    """The whole layer through each one-stage instance (ops.one_stage_layer, verified against
    the reference) and through the chosen two stages, same run, into best."""
    T = xs[0].shape[0]

    def one(j: int, n: str) -> torch.Tensor:
        return ops.one_stage_layer(xs[j], L.w1, L.w2, routes[j][1], routes[j][0], shape.activation,
                                   a_dtype, "stage2", instance=n)

    best.two_stage_us = _layer_us(L, xs, routes, best.block_m, best.stage1, best.stage2, a_dtype, "bf16", rot)
    times = {i.name: _time_graph(lambda j, n=i.name: one(j, n), rot) for i in c_one}
    for n in times:  # every timed instance against the reference
        err = float((one(0, n).double() - want).norm() / want.norm().clamp_min(1e-30)) if T else 0.0
        if not err <= TOLERANCE["bf16"]:
            raise MxforgeError(f"tune {shape.name} T={T}: one-stage {n} is off the reference by rel. L2 "
                               f"{err:.4g} (> {TOLERANCE['bf16']}); not tuned in")
        best.err = max(best.err, err)
    if verbose:
        log(f"  {shape.name} T={T} two-stage layer {best.two_stage_us:9.1f} us  {best.stage1} + {best.stage2}")
        for n, us in sorted(times.items(), key=lambda kv: kv[1]):
            log(f"  {shape.name} T={T} one-stage layer {us:9.1f} us  {n}")
    best.one_stage = min(times, key=times.get)
    best.one_stage_us = times[best.one_stage]


def _tune_quant_sort(best: Choice, c_fused: list, xs, routes, shape: MoeShape, a_dtype: str, rot: int,
                     verbose: bool, log: Callable[[str], None]) -> None:
    """quant+sort at best.block_m through each fused_quant_sort instance and as the split pair
    (quantize, then moe_sort), same run, into best; each fused instance's bytes (codes, scales,
    every sorted array) must equal the pair's."""
    E, bm = shape.E, best.block_m

    def split(j: int) -> tuple:
        return ops.quantize(xs[j], a_dtype), ops.moe_sort(routes[j][0], routes[j][1], E, bm, validate=False)

    def fused(j: int, n: str) -> tuple:
        return ops.fused_quant_sort(xs[j], routes[j][0], routes[j][1], E, bm, a_dtype, validate=False,
                                    instance=n)

    def tensors(qs: tuple) -> list[torch.Tensor]:
        q, s = qs
        return [q.data, q.scales, s.sorted_ids, s.sorted_weights, s.sorted_expert_ids, s.num_valid_ids]

    if not c_fused:  # (no row: fused_moe's quant+sort then says which instance is missing)
        return
    want = tensors(split(0))
    times = {}
    for i in c_fused:
        got = tensors(fused(0, i.name))
        if not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(got, want)):
            raise MxforgeError(f"tune {shape.name} T={xs[0].shape[0]}: {i.name} does not give the bytes of "
                               "quantize + moe_sort; not tuned in")
        times[i.name] = _time_graph(lambda j, n=i.name: fused(j, n), rot)
    best.split_quant_sort_us = _time_graph(split, rot)
    if verbose:
        log(f"  {shape.name} T={xs[0].shape[0]} quant+sort split {best.split_quant_sort_us:9.1f} us")
        for n, us in sorted(times.items(), key=lambda kv: kv[1]):
            log(f"  {shape.name} T={xs[0].shape[0]} quant+sort fused {us:9.1f} us  {n}")
    n = min(times, key=times.get)
    best.fused_quant_sort_us = times[n]
    best.quant_sort = n if times[n] <= best.split_quant_sort_us else SPLIT


def _prepare(x: torch.Tensor, route: tuple[torch.Tensor, torch.Tensor], E: int, bm: int,
             a_dtype: str) -> tuple[ops.Activation, ops.SortResult]:
    ids, w = route
    if a_dtype in ops.MX_DTYPES:
        return ops.fused_quant_sort(x, ids, w, E, bm, a_dtype, validate=False)
    return x, ops.moe_sort(ids, w, E, bm, validate=False)


def _verify(L, prep, s1: str, s2n: str, want: torch.Tensor, shape: MoeShape, s2: str,
            p: str, T: int) -> float:
    a, sort = prep
    out = torch.zeros(T, shape.H, dtype=torch.bfloat16, device="cuda")
    inter = ops.moe_stage1(a, L.w1, sort, shape.activation, s2, instance=s1)
    y = ops.moe_stage2(inter, L.w2, sort, out=out, instance=s2n).double()
    err = float((y - want).norm() / want.norm().clamp_min(1e-30)) if T else 0.0
    if not err <= TOLERANCE[s2]:  # NaN fails too
        raise MxforgeError(f"tune {shape.name} {p} T={T}: {s1} + {s2n} is off the reference "
                           f"by rel. L2 {err:.4g} (> {TOLERANCE[s2]}); not tuned in")
    return err


def _layer_us(L, xs, routes, bm: int, s1: str, s2n: str, a_dtype: str, s2: str, rot: int) -> float:
    """The whole layer as fused_moe's two stages run it -- quant+sort at block_m bm (zeroing
    out), stage 1, stage 2 adding into out -- with these instances, one graph over the
    rotating inputs (programmatic dependent launch as the runtime decides it)."""
    shape = L.shape
    T = xs[0].shape[0]

    def run(j: int) -> torch.Tensor:
        out = torch.empty(T, shape.H, dtype=torch.bfloat16, device="cuda")
        a, sort = ops._quant_sort(xs[j], routes[j][0], routes[j][1], shape.E, bm, a_dtype, "round_up",
                                  None, out)
        inter = ops.moe_stage1(a, L.w1, sort, shape.activation, s2, instance=s1)
        return ops.moe_stage2(inter, L.w2, sort, out=out, instance=s2n)

    return _time_graph(run, rot)


def _layer_check(best: Choice, L, xs, routes, want: torch.Tensor, k1: Key, k2: Key, a_dtype: str,
                 s2: str, rot: int) -> None:
    """Dispatch's pair without the rows being tuned (the tables' rows it reads, else the
    heuristic) timed per stage (dispatch_us) and, where it differs from best's pair, both
    pairs as the whole layer, same run; best becomes dispatch's pair (verified against the
    reference) unless the tuned pair's layer is faster by more than LAYER_MARGIN."""
    shape = L.shape
    T = xs[0].shape[0]
    s1 = ops.Shape(T=T, N=2 * shape.I, K=shape.H, E=shape.E, topk=shape.topk)
    bm = ops._common_block_m([k1, k2], s1)
    n1 = select(k1, s1, block_m=bm).instance.name
    n2 = select(k2, ops.Shape(T=T, N=shape.H, K=shape.I, E=shape.E, topk=shape.topk), block_m=bm).instance.name
    prep = [_prepare(xs[i], routes[i], shape.E, bm, a_dtype) for i in range(rot)]
    t1 = _time_graph(lambda j: ops.moe_stage1(prep[j][0], L.w1, prep[j][1], shape.activation, s2,
                                              instance=n1), rot)
    inter = [ops.moe_stage1(prep[j][0], L.w1, prep[j][1], shape.activation, s2, instance=n1)
             for j in range(rot)]
    t2 = _time_graph(lambda j: ops.moe_stage2(inter[j], L.w2, prep[j][1], instance=n2), rot)
    best.dispatch_us, best.dispatch_stage1, best.dispatch_stage2 = t1 + t2, n1, n2
    if (bm, n1, n2) == (best.block_m, best.stage1, best.stage2):
        return
    best.tuned_layer_us = _layer_us(L, xs, routes, best.block_m, best.stage1, best.stage2, a_dtype, s2, rot)
    best.dispatch_layer_us = _layer_us(L, xs, routes, bm, n1, n2, a_dtype, s2, rot)
    if best.tuned_layer_us < (1 - LAYER_MARGIN) * best.dispatch_layer_us:
        return
    best.err = max(best.err, _verify(L, prep[0], n1, n2, want, shape, s2, best.pipeline, T))
    best.block_m, best.stage1, best.stage2 = bm, n1, n2
    best.stage1_us, best.stage2_us = t1, t2
    best.kept_dispatch = True


def write_table(path: Path, choices: list[Choice], shapes: dict[str, MoeShape], target: str) -> None:
    """The tuned CSV (dispatch.TUNED_COLUMNS): one stage-1 and one stage-2 row per choice,
    for a pipeline with a bf16 intermediate a moe_1stage row naming the one-stage
    instance where its layer was the faster, else dispatch.TWO_STAGE (fused_moe's path
    auto reads it: dispatch.one_stage_choice), and for MX activations a fused_quant_sort row
    (K = H, N = 0) naming the fused instance or dispatch.SPLIT (dispatch.quant_sort_split;
    of two pipelines with one activation dtype, the faster answer). Stage 2 of two pipelines can ask the same
    question (key, shape, T, block_m): it gets one row, the faster instance (dispatch warns
    about and skips a second answer)."""
    best: dict[tuple, tuple[float, tuple]] = {}  # question -> (us, row), in first-seen order
    for c in choices:
        sh = shapes[c.model]
        a_dtype, s2 = PIPELINES[c.pipeline]
        k1, k2 = _keys(target, sh, a_dtype, s2, c.layout)
        rows = [(k1, 2 * sh.I, sh.H, c.stage1, c.stage1_us), (k2, sh.H, sh.I, c.stage2, c.stage2_us)]
        if c.one_stage:
            won = c.one_stage_wins
            rows.append((_one_stage_key(target, sh, a_dtype, c.layout), 2 * sh.I, sh.H,
                         c.one_stage if won else TWO_STAGE, c.one_stage_us if won else c.two_stage_us))
        if c.quant_sort:
            us = c.split_quant_sort_us if c.quant_sort == SPLIT else c.fused_quant_sort_us
            rows.append((ops.quant_sort_key(target, "bf16", a_dtype), 0, sh.H, c.quant_sort, us))
        for key, N, K, inst, us in rows:
            vals = {f: getattr(key, f) for f in KEY_FIELDS}
            vals["bias"] = "1" if key.bias else "0"
            row = tuple([vals[f] for f in KEY_FIELDS] + [N, K, sh.E, sh.topk, c.T, inst])
            question = row[:-1] + (0 if key.op == "fused_quant_sort" else c.block_m,)  # (not block_m's)
            if question not in best or us < best[question][0]:
                best[question] = (us, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TUNED_COLUMNS)
        w.writerows(row for _, row in best.values())
    tmp.replace(path)  # never a half-written table
