#!/usr/bin/env python3
"""Where an sm90 instance's machine code goes, without a GPU: its loops (the ranges of
backward branches, innermost first) with their instruction counts and opcode mix, and, with
--mma, the straight-line runs that hold tensor-core instructions (the unrolled copies of a
k-tile), so a kernel change's instruction budget can be read before device time is spent
(benchmarks/README.md, session 20: a swapped k-tile's conversion, loads and dispatch).

    python3 build.py --set default --target sm90 --no-install --only NAME
    python3 scripts/sass_budget.py NAME [--set default] [--mma] [--range 0x91e0 0xa480]

Reads build/SET/obj/sm90/NAME.o (or a path to any .o / cubin). Needs cuobjdump and nvdisasm
(the CUDA toolkit or PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm). Counts are
static (instructions in the code, not executed: scripts/ncu-sass gives those on a GPU).
"""
from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_sass import find_tool  # noqa: E402

INSN = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
PRED = re.compile(r"^@!?U?P\w+\s+")
TARGET = re.compile(r"\b0x([0-9a-f]+)\b")
TENSOR_CORE = ("HMMA", "HGMMA", "QGMMA", "IMMA")

Insn = tuple[int, str]  # (address, instruction text with its predicate, without the encoding)


def opcode(text: str) -> str:
    return PRED.sub("", text).split()[0].split(".")[0]


def kernels(sass: str) -> dict[str, list[Insn]]:
    """cuobjdump -sass text -> {mangled kernel name: [(address, instruction)]}."""
    out: dict[str, list[Insn]] = {}
    cur: list[Insn] | None = None
    for line in sass.splitlines():
        if "Function : " in line:
            cur = out.setdefault(line.split("Function : ")[1].strip(), [])
        elif cur is not None and (m := INSN.match(line)):
            cur.append((int(m.group(1), 16), m.group(2)))
    return out


def loops(code: list[Insn]) -> list[tuple[int, int]]:
    """(first, last) addresses of each backward branch's range, innermost (shortest) first."""
    found = set()
    for addr, text in code:
        if opcode(text) == "BRA" and (m := TARGET.search(text)) and int(m.group(1), 16) <= addr:
            found.add((int(m.group(1), 16), addr))
    return sorted(found, key=lambda r: (r[1] - r[0], r[0]))


def mma_runs(code: list[Insn], gap: int = 40) -> list[tuple[int, int]]:
    """Address ranges around clusters of tensor-core instructions (at most `gap`
    instructions and no branch between two of them), widened to the branches that enclose
    them."""
    idx = [i for i, (_, t) in enumerate(code) if opcode(t) in TENSOR_CORE]
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and i - runs[-1][1] <= gap and not any(
                opcode(t) in ("BRA", "EXIT") for _, t in code[runs[-1][1]:i]):
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    out = []
    for lo, hi in runs:
        while lo > 0 and opcode(code[lo - 1][1]) not in ("BRA", "BSYNC", "EXIT"):
            lo -= 1
        while hi + 1 < len(code) and opcode(code[hi][1]) not in ("BRA", "EXIT"):
            hi += 1
        out.append((code[lo][0], code[hi][0]))
    return out


def describe(code: list[Insn], lo: int, hi: int, top: int) -> str:
    part = [t for a, t in code if lo <= a <= hi]
    mix = collections.Counter(opcode(t) for t in part)
    tc = sum(mix[o] for o in TENSOR_CORE)
    pred = sum(1 for t in part if PRED.match(t))
    head = f"{lo:#07x}-{hi:#07x} {len(part):5d} instr, {tc} tensor-core, {pred} predicated"
    return head + ": " + ", ".join(f"{o} {n}" for o, n in mix.most_common(top))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instance", help="instance name (build/SET/obj/sm90/NAME.o) or an object path")
    ap.add_argument("--set", default="default")
    ap.add_argument("--mma", action="store_true", help="also the runs holding tensor-core instructions")
    ap.add_argument("--range", nargs=2, metavar=("FIRST", "LAST"), help="only this address range (hex), listed")
    ap.add_argument("--top", type=int, default=12, help="opcodes shown per range")
    args = ap.parse_args()
    obj = Path(args.instance)
    if not obj.exists():
        obj = ROOT / "build" / args.set / "obj" / "sm90" / f"{args.instance}.o"
    if not obj.exists():
        sys.exit(f"sass_budget: no object {obj} (build it: python3 build.py --set {args.set} "
                 f"--target sm90 --no-install --only {args.instance})")
    tool = find_tool("cuobjdump", False)
    if not tool or not find_tool("nvdisasm", False):
        sys.exit("sass_budget: needs cuobjdump and nvdisasm (pip install nvidia-cuda-cuobjdump "
                 "nvidia-cuda-nvdisasm)")
    r = subprocess.run([tool, "-sass", str(obj)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"sass_budget: cuobjdump failed on {obj}: {r.stderr.strip()}")
    for name, code in kernels(r.stdout).items():
        print(f"{name[:110]}: {len(code)} instructions")
        if args.range:
            lo, hi = (int(x, 16) for x in args.range)
            print("  " + describe(code, lo, hi, args.top))
            for a, t in code:
                if lo <= a <= hi:
                    print(f"    {a:#07x} {t}")
            continue
        for lo, hi in loops(code):
            print("  loop " + describe(code, lo, hi, args.top))
        if args.mma:
            for lo, hi in mma_runs(code):
                print("  mma  " + describe(code, lo, hi, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
