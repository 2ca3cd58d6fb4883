#!/usr/bin/env python3
"""compute-sanitizer over sm90 instances, with a tally (scripts/gpu-check, scripts/gpu-sanitize).

    scripts/sanitize.py --tools memcheck,initcheck,racecheck --scope all --shards 4

runs, for each tool, SHARDS worker processes under `compute-sanitizer --tool TOOL` in
parallel on the one GPU; each worker runs its share of the instances once per token count
with `instance=` pinned, and prints a line per run. The driver prints a table: per tool the
instances and runs completed, the errors or hazards the sanitizer reported, and the wall
time; it exits non-zero on any report, failed worker or timeout.

Scopes: `all` = every sm90 instance of the module (quantize, dequantize, pack, sort, fused
quant+sort and every GEMM) at T = 1, 3, 64, 129, 512, 4097; `subset` = one GEMM instance per
(op, dtype pair, out, split-K, bias, layout, takes direct routing) at T = 3, 129 (on the
default set 78 instances, 30 of them decode tiles); `coarse` = one per (op, dtype
pair) at T = 1, 3. Data: E = 32 experts, H = 288 and I = 96 (K and N not multiples of any
block_k or block_n, so every tail path runs; small, because the sanitizer slows kernels
10-1000x), random routing with odd token counts, and one all-on-one-expert run per GEMM.
The stage instances that take direct routing (dispatch.direct_supported: the decode tiles)
run on it too (mxforge.moe_routes, stage 1 zeroing a buffer as fused_moe has it do), once
on the same routing and once with an expert masked and ids outside [0, E) (dropped routes:
the blocks that must not touch memory). `--direct` keeps only those instances (direct
routing's sweep on its own: `--scope subset --direct` is 30 instances on the default set).

racecheck instruments only mxforge's kernels (--kernel-name kns=mxf; torch's kernels only
slow it down); initcheck must see every kernel, or inputs written by an uninstrumented torch
kernel read as uninitialized.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKENS = {"all": [1, 3, 64, 129, 512, 4097], "subset": [3, 129], "coarse": [1, 3]}
GEMM_OPS = ("moe_stage1", "moe_stage2", "moe_1stage")
SUMMARY = re.compile(r"(ERROR|RACECHECK) SUMMARY: (\d+) (errors|hazards)")


def chosen_instances(scope: str, only: str = "*", target: str = "sm90", direct: bool = False) -> list:
    """The scope's instances whose names match `only`; with `direct`, only the stage
    instances that take direct routing."""
    from mxforge.dispatch import direct_supported, instances
    every = [i for i in instances(target=target) if fnmatch.fnmatchcase(i.name, only)
             and (direct_supported(i) or not direct)]
    if scope == "all":
        return every
    gemms, seen = [], set()
    for i in (i for i in every if i.op in GEMM_OPS):
        key = (i.op, i.a, i.b) if scope == "coarse" else \
            (i.op, i.a, i.b, i.out, i.split_k > 1, i.bias, i.layout, direct_supported(i))
        if key not in seen:
            seen.add(key)
            gemms.append(i)
    return gemms


# ---- worker: runs instances (under the sanitizer) ------------------------------------------

def run_instance(inst, T: int, g, skew: str = "random", device: str = "cuda") -> int:
    """Runs `inst` (pinned) once per routing it takes; returns the number of runs."""
    import torch

    import mxforge
    from mxforge.dispatch import direct_supported
    from tests.helpers import make_layer, routing
    from tests.op_checks import activation_operand, direct_case, shape_for

    dev = torch.device(device)
    E, H, I = 32, 288, 96
    runs = 1
    if inst.op in GEMM_OPS:
        shape = dataclasses.replace(shape_for(inst), H=H, I=I, E=E)
        L = make_layer(shape, T, g, dev, layout=inst.layout, w_dtype=inst.b, skew=skew)
        a, _ = activation_operand(L.x, inst.a)
        routings = [(mxforge.moe_sort(L.topk_ids, L.topk_weights, E, inst.block_m), None)]
        if direct_supported(inst):
            for case in ("random", "masked"):
                ids, mask = direct_case(L, case)
                routings.append((mxforge.moe_routes(ids, L.topk_weights, E, inst.block_m, expert_mask=mask,
                                                    validate=False), torch.empty(T, H, device=dev)))
        runs = len(routings)
        for sort, zero_buf in routings:
            if inst.op == "moe_stage1":
                mxforge.moe_stage1(a, L.w1, sort, inst.activation, inst.out, inst.routed_weight,
                                   instance=inst.name, zero_buf=zero_buf)
            elif inst.op == "moe_stage2":
                inter = torch.randn(T * shape.topk, I, device=dev, generator=g).to(torch.bfloat16)
                b, _ = activation_operand(inter, inst.a)
                mxforge.moe_stage2(b, L.w2, sort, out_dtype=inst.out, routed_weight=inst.routed_weight,
                                   instance=inst.name)
            else:
                mxforge.moe_1stage(a, L.w1, L.w2, sort, inst.activation, out_dtype=inst.out,
                                   routed_weight=inst.routed_weight, instance=inst.name)
    else:
        dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        x = torch.randn(T, H, device=dev, generator=g)
        ids, w = routing(T, E, 8, g)
        if inst.op == "mxfp4_quant":
            mxforge.quantize(x.to(dt[inst.a]), inst.out, instance=inst.name)
        elif inst.op == "mxfp4_dequant":
            mxforge.dequantize(mxforge.quantize(x, inst.a), dt[inst.out], instance=inst.name)
        elif inst.op == "fused_quant_sort":
            mxforge.fused_quant_sort(x.to(dt[inst.a]), ids, w, E, 32, inst.out, instance=inst.name)
        elif inst.op == "moe_sort":
            for bm in (16, 32, 64, 128):
                mxforge.moe_sort(ids, w, E, bm, zero_buf=x)
        elif inst.op == "mx_pack":
            q = mxforge.quantize(x.repeat(1, 5))  # K = 1440: not a multiple of 256
            w_ = mxforge.mx_weight(q.data.view(1, T, -1), q.scales.view(1, T, -1), 5 * H, "shuffled")
            mxforge.unpack_weight(w_)
        else:
            raise ValueError(f"sanitize.py has no runner for op {inst.op} ({inst.name})")
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return runs


def worker(scope: str, shard: int, shards: int, tokens: list[int], only: str, direct: bool) -> int:
    import torch
    insts = chosen_instances(scope, only, direct=direct)[shard::shards]
    g = torch.Generator(device="cuda").manual_seed(1000 + shard)
    runs = 0
    for T in tokens:
        for inst in insts:
            runs += run_instance(inst, T, g)
            print(f"RUN T={T} {inst.name}", flush=True)
    for inst in (i for i in insts if i.op in GEMM_OPS):
        runs += run_instance(inst, 256, g, skew="one_expert")
        print(f"RUN T=256 one_expert {inst.name}", flush=True)
    print(f"WORKER DONE {len(insts)} instances {runs} runs", flush=True)
    return 0


# ---- driver: runs workers under compute-sanitizer and tallies -------------------------------

@dataclasses.dataclass
class Tally:
    tool: str
    instances: int = 0
    runs: int = 0
    reports: int = 0
    failed: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


def drive(tools: list[str], scope: str, shards: int, tokens: list[int], timeout: int,
          out: Path, only: str, direct: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    t0 = time.monotonic()
    for tool in tools:
        for s in range(shards):
            log = out / f"sanitize-{tool}-{s}.log"
            cmd = ["compute-sanitizer", "--tool", tool, "--error-exitcode", "9", "--print-limit", "50"]
            if tool == "racecheck":
                cmd += ["--kernel-name", "kns=mxf"]
            cmd += [sys.executable, __file__, "--worker", "--scope", scope, "--shard", f"{s}/{shards}",
                    "--tokens", ",".join(map(str, tokens)), "--only", only] + ["--direct"] * direct
            procs.append((tool, s, log, subprocess.Popen(cmd, stdout=open(log, "w"),
                                                          stderr=subprocess.STDOUT, cwd=ROOT)))
    tallies = {t: Tally(t) for t in tools}
    for tool, s, log, p in procs:
        try:
            rc = p.wait(timeout=max(1, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "timeout"
        text = log.read_text(errors="replace")
        tl = tallies[tool]
        tl.seconds = max(tl.seconds, time.monotonic() - t0)
        done = re.search(r"WORKER DONE (\d+) instances (\d+) runs", text)
        # runs: launches of an instance (a stage instance once per routing it takes); a worker
        # cut short is counted by its RUN lines (one per instance and T)
        tl.runs += int(done.group(2)) if done else text.count("\nRUN ") + text.startswith("RUN ")
        tl.instances += int(done.group(1)) if done else 0
        sums = SUMMARY.findall(text)
        tl.reports += sum(int(n) for _, n, _ in sums)
        if rc != 0 or not done or not sums:
            tl.failed.append(f"shard {s}: exit {rc}" + ("" if sums else ", no sanitizer summary"))
    print(f"\ncompute-sanitizer, scope {scope}, instances {only}{' (direct routing only)' * direct}, T = {tokens} (+ T=256 on one expert per GEMM; `runs` counts a stage instance once per routing: "
          f"sorted, and direct twice where it takes it)")
    print(f"| tool | instances | runs | reports | wall s | status |\n|---|---:|---:|---:|---:|---|")
    bad = 0
    for tl in tallies.values():
        status = "clean" if not tl.failed and tl.reports == 0 else "; ".join(tl.failed) or "REPORTS"
        bad += status != "clean"
        print(f"| {tl.tool} | {tl.instances} | {tl.runs} | {tl.reports} | {tl.seconds:.0f} | {status} |")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default="memcheck,initcheck,racecheck")
    ap.add_argument("--scope", choices=sorted(TOKENS), default="subset")
    ap.add_argument("--tokens", help="comma-separated token counts (default: the scope's)")
    ap.add_argument("--shards", type=int, default=4, help="parallel worker processes per tool")
    ap.add_argument("--timeout", type=int, default=540, help="seconds for the whole sweep")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "sanitize")
    ap.add_argument("--only", default="*", help="glob over instance names (default: all)")
    ap.add_argument("--direct", action="store_true",
                    help="only the stage instances that take direct routing (the decode tiles)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shard", default="0/1", help=argparse.SUPPRESS)
    args = ap.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else TOKENS[args.scope]
    if args.worker:
        shard, shards = map(int, args.shard.split("/"))
        return worker(args.scope, shard, shards, tokens, args.only, args.direct)
    return drive(args.tools.split(","), args.scope, args.shards, tokens, args.timeout, args.out,
                 args.only, args.direct)


if __name__ == "__main__":
    sys.exit(main())
