#!/usr/bin/env python3
"""Summarize Nsight Compute per-instruction tables (scripts/ncu-sass CSVs, plain or .gz):
warp instructions in all and per warp of a CTA, the opcode mix by executed instructions
and by stall samples, the stall reasons, and the hottest instructions.

    python3 scripts/ncu_sass_summary.py sass-moe_stage2-a16w4-T8192.csv.gz [MORE.csv ...]

"Per warp" divides by the executed count of the kernel's first instruction, which every
warp of every launched CTA runs once. Opcodes drop their predicate and modifiers
(`@P0 IMAD.WIDE.U32` counts as IMAD).
"""
from __future__ import annotations

import argparse
import collections
import csv
import gzip
import io
import re
from pathlib import Path

PREDICATE = re.compile(r"^@!?U?P\w+\s+")


def read_table(path: Path) -> tuple[str, list[str], list[list[str]]]:
    """(kernel name, header, rows) of one `ncu --page source --csv --print-source sass` file."""
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode() if path.suffix == ".gz" else raw.decode()
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 3 or "Source" not in rows[1]:
        raise SystemExit(f"{path}: not an ncu per-instruction table (no 'Source' column in row 2)")
    kernel = rows[0][1] if len(rows[0]) > 1 else rows[0][0]
    return kernel, rows[1], rows[2:]


def opcode(source: str) -> str:
    words = PREDICATE.sub("", source.strip()).split()
    return words[0].split(".")[0] if words else "?"


def summarize(path: Path, top: int = 12) -> str:
    kernel, hdr, data = read_table(path)
    col = {name: i for i, name in enumerate(hdr)}
    executed = [int(r[col["Instructions Executed"]] or 0) for r in data]
    samples = [int(r[col["Warp Stall Sampling (All Samples)"]] or 0) for r in data]
    total, total_samples = sum(executed), max(1, sum(samples))
    per_warp = total / executed[0] if executed and executed[0] else float("nan")
    by_op: collections.Counter[str] = collections.Counter()
    by_op_samples: collections.Counter[str] = collections.Counter()
    for r, n, s in zip(data, executed, samples):
        op = opcode(r[col["Source"]])
        by_op[op] += n
        by_op_samples[op] += s
    stalls = {name[len("stall_"):]: sum(int(r[i] or 0) for r in data)
              for name, i in col.items() if name.startswith("stall_") and "Not Issued" not in name}
    stall_total = max(1, sum(stalls.values()))
    lines = [f"{path.name}", f"  kernel: {kernel[:200]}",
             f"  warp instructions: {total / 1e6:.1f} M; per warp: {per_warp:.0f}; stall samples: {sum(samples)}",
             "  by opcode (share of instructions / of stall samples): " + ", ".join(
                 f"{op} {100 * n / total:.1f}%/{100 * by_op_samples[op] / total_samples:.1f}%"
                 for op, n in by_op.most_common(16)),
             "  stall reasons: " + ", ".join(
                 f"{name} {100 * v / stall_total:.1f}%" for name, v in
                 sorted(stalls.items(), key=lambda kv: -kv[1]) if v / stall_total > 0.01),
             f"  hottest {top} instructions (stall samples, executions per warp, SASS):"]
    hot = sorted(range(len(data)), key=lambda i: -samples[i])[:top]
    for i in hot:
        runs = executed[i] / executed[0] if executed[0] else float("nan")
        lines.append(f"    {samples[i]:6d} {runs:7.2f}  {data[i][col['Source']].strip()[:100]}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", type=Path, help="scripts/ncu-sass CSV files (.csv or .csv.gz)")
    ap.add_argument("--top", type=int, default=12, help="hottest instructions to list")
    args = ap.parse_args()
    print("\n\n".join(summarize(p, args.top) for p in args.tables))


if __name__ == "__main__":
    main()
