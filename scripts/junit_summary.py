#!/usr/bin/env python3
"""Print a compact pass/fail table per test function from a pytest junit XML file."""
from __future__ import annotations

import collections
import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    root = ET.parse(path).getroot()
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    seconds: dict[str, float] = collections.defaultdict(float)
    failures = []
    for case in root.iter("testcase"):
        name = case.get("name", "").split("[")[0]
        seconds[name] += float(case.get("time", 0))
        if case.find("failure") is not None or case.find("error") is not None:
            rows[name]["failed"] += 1
            failures.append(case.get("name"))
        elif case.find("skipped") is not None:
            rows[name]["skipped"] += 1
        else:
            rows[name]["passed"] += 1
    print(f"{'test':44s} {'passed':>7s} {'failed':>7s} {'skipped':>8s} {'seconds':>8s}")
    for name in sorted(rows):
        c = rows[name]
        print(f"{name:44s} {c['passed']:7d} {c['failed']:7d} {c['skipped']:8d} {seconds[name]:8.1f}")
    total = sum((c for c in rows.values()), collections.Counter())
    print(f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    for f in failures[:20]:
        print("FAILED", f)
    return 1 if total["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
