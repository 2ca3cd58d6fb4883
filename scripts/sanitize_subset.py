#!/usr/bin/env python3
"""Run sm90 instances once each under compute-sanitizer (scripts/gpu-check calls this).

Default: one instance per (op, dtype pair, out, flags) at T = 3 and 129 with E = 32 experts
(small data: the sanitizer slows kernels 10-100x). --coarse: one instance per (op, dtype
pair) only (racecheck instruments every shared-memory access and is the slowest tool).
--tokens 3,64: other token counts. --all: every instance at T = 1, 3, 64, 129, 512, 4097.
Exits non-zero if any op raises; the sanitizer's own exit code reports memory errors and
races."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mxforge  # noqa: E402
from mxforge.dispatch import instances  # noqa: E402
from tests.helpers import make_layer  # noqa: E402
from tests.op_checks import activation_operand, shape_for  # noqa: E402


def run(inst, T: int, g: torch.Generator, E: int) -> None:
    L = make_layer(shape_for(inst), T, g, torch.device("cuda"), layout=inst.layout, w_dtype=inst.b, E=E)
    a, _ = activation_operand(L.x, inst.a)
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, L.E, inst.block_m)
    if inst.op == "moe_stage1":
        mxforge.moe_stage1(a, L.w1, sort, inst.activation, inst.out, inst.routed_weight,
                           instance=inst.name)
    elif inst.op == "moe_stage2":
        inter = torch.randn(T * L.shape.topk, L.shape.I, device="cuda").to(torch.bfloat16)
        b, _ = activation_operand(inter, inst.a)
        mxforge.moe_stage2(b, L.w2, sort, out_dtype=inst.out, routed_weight=inst.routed_weight,
                           instance=inst.name)
    else:
        mxforge.moe_1stage(a, L.w1, L.w2, sort, inst.activation, out_dtype=inst.out,
                           routed_weight=inst.routed_weight, instance=inst.name)
    torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--all", action="store_true", help="every instance, T = 1 .. 4097")
    ap.add_argument("--coarse", action="store_true", help="one instance per (op, dtype pair)")
    ap.add_argument("--tokens", help="comma-separated token counts (default 3,129)")
    args = ap.parse_args()
    g = torch.Generator(device="cuda").manual_seed(1)
    tokens = [1, 3, 64, 129, 512, 4097] if args.all else [3, 129]
    if args.tokens:
        tokens = [int(t) for t in args.tokens.split(",")]
    gemms = [i for i in instances(target="sm90") if i.op in ("moe_stage1", "moe_stage2", "moe_1stage")]
    if not args.all:
        seen, subset = set(), []
        for i in gemms:
            key = (i.op, i.a, i.b) if args.coarse else \
                (i.op, i.a, i.b, i.out, i.split_k > 1, i.bias, i.layout)
            if key not in seen:
                seen.add(key)
                subset.append(i)
        gemms = subset
    for T in tokens:
        x = torch.randn(T, 3072, device="cuda").to(torch.bfloat16)
        ids = torch.randint(0, 256, (T, 8), device="cuda", dtype=torch.int32)
        w = torch.rand(T, 8, device="cuda")
        for dt in ("pk_fp4", "fp8"):
            mxforge.fused_quant_sort(x, ids, w, 256, 32, dt, validate=False)
            mxforge.dequantize(mxforge.quantize(x, dt))
        for inst in gemms:
            run(inst, T, g, 32)
            print(f"T={T} {inst.name}", flush=True)
    print(f"ran {len(gemms)} GEMM instances at T={tokens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
