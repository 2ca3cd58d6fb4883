#!/usr/bin/env python3
"""Compare the sm90 machine code of two builds object by object, e.g. a commit's build
against the working tree's, to show which instances a source change touched:

    git worktree add /tmp/base HEAD && (cd /tmp/base && python3 build.py --set default --target sm90 --no-install)
    python3 build.py --set default --target sm90 --no-install
    python3 scripts/compare_sass.py /tmp/base/build/default build/default

SASS is compared after dropping addresses, encodings, comments and the kernels' (mangled)
names, so a renamed template parameter alone does not count as a change (cuobjdump -sass,
as scripts/check_sass.py finds it). Prints identical / different / only-in-one per object.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_sass import find_tool  # noqa: E402

ADDR = re.compile(r"/\*[0-9a-f]{4,}\*/|/\* 0x[0-9a-f]+ \*/")


def sass(tool: str, obj: Path) -> str:
    r = subprocess.run([tool, "-sass", str(obj)], capture_output=True, text=True)
    if r.returncode != 0:  # host-only objects (the registry) hold no device code
        return "no device code" if "does not contain device code" in r.stderr else r.stderr
    out = r.stdout
    lines = (ADDR.sub("", ln).strip() for ln in out.splitlines())
    return "\n".join(ln for ln in lines
                     if ln and not ln.startswith(("//", "Fatbin", "code for", ".", "identifier =", "Function :")))


def main(a: Path, b: Path) -> int:
    tool, disasm = find_tool("cuobjdump", False), find_tool("nvdisasm", False)
    if not tool or not disasm:
        sys.exit("compare_sass: cuobjdump and nvdisasm are needed (see scripts/check_sass.py)")
    os.environ["NVDISASM_PATH"] = str(Path(disasm).parent)
    objs_a = {p.name: p for p in (a / "obj" / "sm90").glob("*.o")}
    objs_b = {p.name: p for p in (b / "obj" / "sm90").glob("*.o")}
    common = sorted(objs_a.keys() & objs_b.keys())
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        same = list(ex.map(lambda n: sass(tool, objs_a[n]) == sass(tool, objs_b[n]), common))
    diff = [n for n, s in zip(common, same) if not s]
    for n in diff:
        print(f"different  {n[:-2]}")
    for n in sorted(objs_a.keys() - objs_b.keys()):
        print(f"only in {a}: {n[:-2]}")
    for n in sorted(objs_b.keys() - objs_a.keys()):
        print(f"only in {b}: {n[:-2]}")
    print(f"{len(common) - len(diff)}/{len(common)} common objects identical, {len(diff)} different, "
          f"{len(objs_a.keys() - objs_b.keys())} only in {a}, {len(objs_b.keys() - objs_a.keys())} only in {b}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
