#!/usr/bin/env python3
"""Merge re-tuned rows into a tuned table (mxforge/tuned/*.csv): a row of a NEW file
replaces the row of TABLE that asks the same question (every column but `instance`), in
place; questions TABLE lacks are appended. Written atomically.

    python3 scripts/merge_tuned.py mxforge/tuned/sm90-h100.csv out/tuned-gpt-oss-120b.csv ...
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mxforge.dispatch import TUNED_COLUMNS  # noqa: E402


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        r = csv.DictReader(fh)
        if r.fieldnames != list(TUNED_COLUMNS):
            sys.exit(f"{path}: columns {r.fieldnames}, expected {list(TUNED_COLUMNS)}")
        return list(r)


def question(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row[c] for c in TUNED_COLUMNS if c != "instance")


def main(table: Path, news: list[Path]) -> None:
    rows = read(table)
    at = {question(r): i for i, r in enumerate(rows)}
    replaced = appended = changed = 0
    for path in news:
        for r in read(path):
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
        w = csv.DictWriter(fh, fieldnames=list(TUNED_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(table)
    print(f"{table}: {replaced} rows replaced ({changed} with another instance), {appended} appended")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
