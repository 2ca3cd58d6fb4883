"""The `mxforge` command line: list, explain, check, coverage, bench, tune, demo."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import _loader
from .errors import MxforgeError


def _cmd_list(args: argparse.Namespace) -> int:
    from .dispatch import describe_instances, instances
    rows = instances(op=args.op, a=args.a, b=args.b, target=args.target)
    print(describe_instances(rows))
    print(f"{len(rows)} instances")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from .dispatch import Key, Shape, select
    from .models import preset
    if args.model:
        m = preset(args.model)
        stage1 = args.op in ("moe_stage1", "moe_1stage")
        N, K = (2 * m.I, m.H) if stage1 else (m.H, m.I)
        E, topk = m.E, m.topk
        activation = args.activation or (m.activation if stage1 else "")
        gate_up = args.gate_up or (m.gate_up if stage1 else "")
        bias = m.bias if args.bias is None else args.bias
    else:
        N, K, E, topk = args.N, args.K, args.E, args.topk
        activation, gate_up = args.activation or "", args.gate_up or ""
        bias = bool(args.bias)
    rw = args.routed_weight or {"moe_stage1": "none", "moe_stage2": "stage2",
                                "moe_1stage": "stage2"}.get(args.op, "")
    key = Key(args.target, args.op, a=args.a or "", b=args.b or "", out=args.out or "",
              activation=activation, gate_up=gate_up, routed_weight=rw, bias=bias,
              layout=args.layout or ("plain" if args.op in ("moe_stage1", "moe_stage2",
                                                            "moe_1stage") else ""))
    for T in args.T:
        print(select(key, Shape(T=T, N=N, K=K, E=E, topk=topk)).explain())
        print()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import os
    sys.path.insert(0, str(_loader.CHECKOUT))
    ok = True
    try:
        from codegen.targets import TARGETS
        for name, t in TARGETS.items():
            tc = t.toolchain()
            print(f"compiler {name:6s}: {tc.version if tc.available else 'MISSING: ' + tc.missing}")
    except ImportError:
        print("compilers: no codegen/ beside the package (installed without a checkout)")
    finally:
        sys.path.pop(0)
    try:
        import torch
        gpu = (f"{torch.cuda.get_device_name(0)} (sm_{''.join(map(str, torch.cuda.get_device_capability(0)))})"
               if torch.cuda.is_available() else "none")
    except ImportError:
        gpu = "unknown (torch not installed)"
    print(f"gpu: {gpu}")
    try:
        m = _loader.manifest()
    except MxforgeError as e:
        print(f"module: {e}")
        return 1
    mod = _loader.module()
    print(f"module: set '{m['set']}', targets {m['targets']}, {len(m['instances'])} instances "
          f"({os.path.basename(mod.__file__ or '')})")
    for t in m["targets"]:
        why = mod.availability(t)
        print(f"target {t}: {'runs here' if why is None else 'cannot run here: ' + why}")
    if [r["name"] for r in mod.instances()] != m["instances"]:
        print("module: table and manifest disagree (torn install?)")
        ok = False
    stale = _loader.stale_reason()
    print(f"module: {'STALE: ' + stale if stale else 'matches this checkout'}")
    return 0 if ok and not stale else 1


PIPELINES = (("a4w4 -> bf16 inter", "pk_fp4", "bf16"), ("a4w4 -> fp4 inter", "pk_fp4", "pk_fp4"),
             ("a16w4", "bf16", "bf16"), ("a8w4 -> bf16 inter", "fp8", "bf16"))


def coverage_rows(target: str, max_T: int = 8192, layout: str = "plain") -> list[tuple[str, str, str]]:
    """(preset, pipeline, what serves T = 1..max_T) for the compiled table, with weights in
    `layout`."""
    from .dispatch import Key, candidates
    from .models import PRESETS
    from .ops import MX_DTYPES, quant_sort_key
    rows = []
    for name, m in PRESETS.items():
        for label, a, s2 in PIPELINES:
            def key(op: str, a_: str, out: str, act: str, gu: str, rw: str) -> Key:
                return Key(target, op, a=a_, b="pk_fp4", out=out, activation=act, gate_up=gu,
                           routed_weight=rw, bias=m.bias, layout=layout)
            k1 = key("moe_stage1", a, s2, m.activation, m.gate_up, "none")
            k2 = key("moe_stage2", s2, "bf16", "", "", "stage2")
            k0 = key("moe_1stage", a, "bf16", m.activation, m.gate_up, "stage2")
            prep = [quant_sort_key(target, "bf16", a)] if a in MX_DTYPES \
                else [Key(target, "moe_sort")]
            missing = [k for k in [k1, k2] + prep if not candidates(k)]
            common = {i.block_m for i in candidates(k1)} & {i.block_m for i in candidates(k2)}
            one = bool(candidates(k0)) and s2 == "bf16"
            if missing or not common:
                what = "NONE: missing " + "; ".join(k.describe() for k in missing) if missing \
                    else "NONE: stage 1 and stage 2 share no block_m"
                if one and not [k for k in prep if not candidates(k)]:
                    what += "; one-stage (path='one_stage') serves every T"
            else:
                what = f"T = 1..{max_T} (two-stage, block_m {sorted(common)})"
                if one:
                    what += "; one-stage available (path='one_stage')"
            rows.append((name, label, what))
    return rows


def _cmd_coverage(args: argparse.Namespace) -> int:
    targets = [args.target] if args.target else _loader.manifest()["targets"]
    gaps = 0
    for t in targets:
        print(f"target {t} (weights in layout {args.layout}):")
        for name, label, what in coverage_rows(t, layout=args.layout):
            gaps += what.startswith("NONE")
            print(f"  {name:18s} {label:20s} {what}")
    return 1 if gaps and args.strict else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import HEADER, PIPELINES, bench, plot, write_csv
    from .models import MoeShape
    if args.model:
        shapes: list = args.model
    else:
        if not all((args.H, args.I, args.E, args.topk)):
            raise MxforgeError("give --model PRESET or all of --H --I --E --topk")
        shapes = [MoeShape(f"H{args.H}-I{args.I}-E{args.E}-k{args.topk}", args.H, args.I, args.E,
                           args.topk, args.activation, args.gate_up, args.bias)]
    rows, ceil = [], None
    print(HEADER)
    for m in shapes:
        ceil, r = bench(m, tuple(args.T), tuple(args.pipelines or PIPELINES), args.stages,
                        layouts=tuple(args.layout), stage2_reduce=tuple(args.stage2_reduce),
                        paths=tuple(args.path), routings=tuple(args.routing))
        rows += r
    csv_path, png_path = Path(args.out + ".csv"), Path(args.out + ".png")
    if not rows:
        raise MxforgeError("nothing was timed (no row for these pipelines and paths)")
    write_csv(csv_path, ceil, rows)
    plot(png_path, rows)
    print(f"wrote {csv_path} and {png_path}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import PIPELINES
    from .models import preset
    from .tune import tune, untimed_list_tokens, write_table
    for t, skipped in untimed_list_tokens(tuple(args.T)).items():
        print(f"note: the T = {t} rows will also serve T = {', '.join(map(str, skipped))}, which are not "
              "tuned: add them to --T (picks timed at one T can be slower at another)")
    choices = []
    for m in args.model:
        choices += tune(m, tuple(args.T), tuple(args.pipelines or PIPELINES), verbose=args.verbose,
                        only=tuple(args.only or ()), layout=args.layout)
    out = Path(args.out)
    write_table(out, choices, {m: preset(m) for m in args.model}, "sm90")
    same = sum(c.same_as_dispatch for c in choices)
    kept = sum(c.kept_dispatch for c in choices)
    one = [c for c in choices if c.one_stage]
    print(f"wrote {out}: {2 * len(choices) + len(one)} rows; dispatch's pair: fastest per stage in "
          f"{same}/{len(choices)} cases, kept on the layer time in {kept}, replaced in "
          f"{len(choices) - same - kept}; the one-stage kernel's layer wins in "
          f"{sum(c.one_stage_wins for c in one)}/{len(one)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(args.model, args.T, args.E)


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per job, each with its handler as `fn`."""
    ap = argparse.ArgumentParser(prog="mxforge", description="mxforge: MXFP4 MoE kernels")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list", help="the compiled instances")
    for f in ("op", "a", "b", "target"):
        p.add_argument(f"--{f}")
    p.set_defaults(fn=_cmd_list)
    p = sub.add_parser("explain", help="the dispatch decision for a shape")
    p.add_argument("--op", required=True)
    p.add_argument("--target", default="cpu")
    for f in ("a", "b", "out", "activation", "gate-up", "routed-weight", "layout", "model"):
        p.add_argument(f"--{f}")
    p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--T", type=int, nargs="+", default=[1, 64, 1024])
    for f, d in (("N", 0), ("K", 0), ("E", 1), ("topk", 1)):
        p.add_argument(f"--{f}", type=int, default=d)
    p.set_defaults(fn=_cmd_explain)
    p = sub.add_parser("check", help="compilers, GPU, module/manifest consistency")
    p.set_defaults(fn=_cmd_check)
    p = sub.add_parser("coverage", help="token ranges per model preset and dtype pair")
    p.add_argument("--target")
    p.add_argument("--strict", action="store_true", help="exit 1 if anything is uncovered")
    p.add_argument("--layout", default="plain", help="the weights' layout (plain, pairbits, shuffled)")
    p.set_defaults(fn=_cmd_coverage)
    p = sub.add_parser("bench", help="time the whole MoE layer against its floors and torch (GPU)")
    p.add_argument("--model", nargs="+", help="model presets (mxforge.models.PRESETS)")
    for f in ("H", "I", "E", "topk"):
        p.add_argument(f"--{f}", type=int, default=0, help="explicit shape instead of --model")
    p.add_argument("--activation", default="silu")
    p.add_argument("--gate-up", default="concat")
    p.add_argument("--bias", action="store_true")
    p.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512,
                                                        1024, 2048, 4096, 8192])
    p.add_argument("--pipelines", nargs="+", help="a4w4, a4w4-bf16inter, a16w4 (default: all)")
    p.add_argument("--stages", action="store_true", help="per-stage timings too")
    p.add_argument("--layout", nargs="+", default=["pairbits"],
                   help="weight layouts to time, each a row per pipeline and T (default: pairbits, "
                        "the sm90 kernels' fastest; plain for checkpoints' own layout)")
    p.add_argument("--stage2-reduce", nargs="+", default=["auto"], choices=["auto", "atomic", "slots"],
                   help="how stage 2 sums each token's routes (fused_moe's stage2_reduce), a row "
                        "each: 'atomic slots' times both in one run (slots where the chosen "
                        "stage-2 instance has them)")
    p.add_argument("--path", nargs="+", default=["auto"], choices=["auto", "two_stage", "one_stage"],
                   help="fused_moe's path, a row each: 'two_stage one_stage' times both in one run "
                        "(one_stage where the pipeline's intermediate is bf16)")
    p.add_argument("--routing", nargs="+", default=["auto"], choices=["auto", "sorted", "direct"],
                   help="fused_moe's routing, a row each: 'sorted direct' times both in one run")
    p.add_argument("--out", default="benchmarks/bench", help="CSV and PNG path (no suffix)")
    p.set_defaults(fn=_cmd_bench)
    p = sub.add_parser("tune", help="time every instance per shape and T, write the tuned table (GPU)")
    p.add_argument("--model", nargs="+", required=True, help="model presets")
    p.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512,
                                                        1024, 2048, 4096, 8192])
    p.add_argument("--pipelines", nargs="+", help="a4w4, a4w4-bf16inter, a16w4 (default: all)")
    p.add_argument("--out", default="mxforge/tuned/sm90.csv",
                   help="tuned CSV (dispatch reads mxforge/tuned/*.csv and $MXFORGE_TUNED)")
    p.add_argument("--verbose", action="store_true", help="log every timed instance, not only the choice")
    p.add_argument("--only", nargs="+", action="extend",
                   help="time only instances matching these globs (experiments; repeatable)")
    p.add_argument("--layout", default="plain", help="weight layout to tune (plain, pairbits, shuffled)")
    p.set_defaults(fn=_cmd_tune)
    p = sub.add_parser("demo", help="a small fused_moe run against the torch reference")
    p.add_argument("--model", default="minimax-m2.1-tp8")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--E", type=int, default=None, help="fewer experts than the preset")
    p.set_defaults(fn=_cmd_demo)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "explain":
        args.gate_up, args.routed_weight = getattr(args, "gate_up"), getattr(args, "routed_weight")
    try:
        return args.fn(args)
    except (MxforgeError, KeyError) as e:
        print(f"mxforge {args.cmd}: error: {e}", file=sys.stderr)
        return 2
