#!/usr/bin/env python3
"""How often the dispatch heuristic (mxforge/dispatch.py, heuristic_rank) picks what
`mxforge tune` measured fastest: for every row of a tuned table, the heuristic's choice
among the compiled instances of the row's key (a) of block_m for stage 1 (fused_moe takes
stage 1's block_m for both stages) and (b) of the tile (block_n, block_k, split_k) at the
row's block_m. Reads the instance set from the specs, so it needs no compiled module.

    python3 scripts/heuristic_agreement.py [mxforge/tuned/sm90-h100.csv] [--set default]
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codegen import targets as T  # noqa: E402
from codegen.spec import load_set  # noqa: E402
from mxforge import dispatch as D  # noqa: E402


def instances(set_name: str, target: str) -> list[D.Instance]:
    """The set's instances for `target` as dispatch sees them (the registry rows)."""
    iset = load_set(ROOT / "instances", set_name, tuple(T.TARGETS), [f"{target}_*"])
    return [D.Instance(index=n, **i.row()) for n, i in enumerate(iset.instances)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", nargs="?", default=str(ROOT / "mxforge" / "tuned" / "sm90-h100.csv"))
    ap.add_argument("--set", default="default")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every disagreement")
    args = ap.parse_args()
    rows = list(csv.DictReader(open(args.table)))
    insts = instances(args.set, rows[0]["target"])
    by_name = {i.name: i for i in insts}
    bm_ok = bm_n = tile_ok = path_ok = gemm_n = 0
    for r in rows:
        if r["op"] in ("moe_1stage", "fused_quant_sort"):  # (path choices: one or two stages,
            continue                                        # fused or split quant+sort)
        tuned = by_name.get(r["instance"])
        if tuned is None:
            print(f"skipped (not in set {args.set}): {r['instance']}")
            continue
        gemm_n += 1
        shape = D.Shape(T=int(r["T_max"]), N=int(r["N"]), K=int(r["K"]), E=int(r["E"]), topk=int(r["topk"]))
        cands = [i for i in insts if i.key() == tuned.key()]
        rank = lambda c: D.heuristic_rank(c, shape)[0]  # noqa: E731
        if tuned.op == "moe_stage1":
            bm_n += 1
            pick = min(cands, key=rank)
            bm_ok += pick.block_m == tuned.block_m
            if args.verbose and pick.block_m != tuned.block_m:
                print(f"block_m  T={shape.T:5d} N={shape.N:5d} {tuned.a:6s}->{tuned.out:6s}: "
                      f"heuristic {pick.block_m}, tuned {tuned.block_m}")
        pick = min((c for c in cands if c.block_m == tuned.block_m), key=rank)
        tile = lambda i: (i.block_n, i.block_k, i.split_k, i.cluster_k, i.n_tiles)  # noqa: E731
        tile_ok += tile(pick) == tile(tuned)
        path_ok += pick.b_path == tuned.b_path
        if args.verbose and pick.b_path != tuned.b_path:
            print(f"b_path   T={shape.T:5d} {tuned.op[4:]} N={shape.N:5d} {tuned.a:6s}->{tuned.out:6s} "
                  f"m{tuned.block_m}: heuristic {pick.b_path}, tuned {tuned.b_path}")
        if args.verbose and tile(pick) != tile(tuned):
            print(f"tile     T={shape.T:5d} {tuned.op[4:]} N={shape.N:5d} {tuned.a:6s}->{tuned.out:6s} "
                  f"m{tuned.block_m}: heuristic n{pick.block_n} k{pick.block_k} sk{pick.split_k} "
                  f"ck{pick.cluster_k} nt{pick.n_tiles}, tuned n{tuned.block_n} k{tuned.block_k} "
                  f"sk{tuned.split_k} ck{tuned.cluster_k} nt{tuned.n_tiles}")
    print(f"{args.table}: stage-1 block_m agrees in {bm_ok}/{bm_n} rows; "
          f"tile (block_n, block_k, split_k, cluster_k, n_tiles) at the tuned block_m in {tile_ok}/{gemm_n} "
          f"GEMM rows; b_path there in {path_ok}/{gemm_n}")


if __name__ == "__main__":
    main()
