#!/usr/bin/env python3
"""Merge re-tuned rows into a tuned table (mxforge/tuned/*.csv): a row of a NEW file
replaces the row of TABLE that asks the same question (every column but `instance`), in
place; questions TABLE lacks are appended. Written atomically.

    python3 scripts/merge_tuned.py mxforge/tuned/sm90-h100.csv out/tuned-gpt-oss-120b.csv ...

--as-layout L writes the NEW rows as rows of layout L (the `layout` column and the layout
part of each instance name): a tune on pairbits weights kept as the plain rows, which
pairbits weights follow where they have no rows of their own (dispatch.tuned_choice).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from codegen.schema import LAYOUTS  # noqa: E402
from mxforge.dispatch import TUNED_COLUMNS, TWO_STAGE  # noqa: E402


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        r = csv.DictReader(fh)
        if r.fieldnames != list(TUNED_COLUMNS):
            sys.exit(f"{path}: columns {r.fieldnames}, expected {list(TUNED_COLUMNS)}")
        return list(r)


def question(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row[c] for c in TUNED_COLUMNS if c != "instance")


def as_layout(row: dict[str, str], layout: str) -> dict[str, str]:
    """The row asked for `layout` weights: its layout column and instance name's layout part
    (instance names end in _<layout> or _<layout>_b<path>: codegen/instance.py)."""
    old = row["layout"]
    name = row["instance"]
    if not old:  # (a row of an op without weights, fused_quant_sort: the same for every layout)
        return row
    if name == TWO_STAGE:  # (a moe_1stage row naming no instance: dispatch.TWO_STAGE)
        return {**row, "layout": layout}
    tag = f"_{old}"
    at = name.rfind(tag)
    if at < 0 or not (at + len(tag) == len(name) or name[at + len(tag)] == "_"):
        sys.exit(f"instance {name!r} does not name its layout {old!r}")
    return {**row, "layout": layout, "instance": name[:at] + f"_{layout}" + name[at + len(tag):]}


def main(table: Path, news: list[Path], layout: str | None = None) -> None:
    rows = read(table)
    at = {question(r): i for i, r in enumerate(rows)}
    replaced = appended = changed = 0
    for path in news:
        for r in read(path):
            if layout is not None:
                r = as_layout(r, layout)
            q = question(r)
            if q in at:
                changed += rows[at[q]]["instance"] != r["instance"]
                rows[at[q]] = r
                replaced += 1
            else:
                at[q] = len(rows)
                rows.append(r)
                appended += 1
    tmp = table.with_name(table.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(TUNED_COLUMNS), lineterminator="\n")  # (the table's own line ends)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(table)
    print(f"{table}: {replaced} rows replaced ({changed} with another instance), {appended} appended")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("table", type=Path)
    ap.add_argument("new", type=Path, nargs="+")
    ap.add_argument("--as-layout", choices=LAYOUTS, help="write the new rows as rows of this weight layout")
    args = ap.parse_args()
    main(args.table, args.new, args.as_layout)
