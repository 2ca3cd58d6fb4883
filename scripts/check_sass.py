#!/usr/bin/env python3
"""Check the sm90 machine code of a built set, per instance object file:

- GEMM instances (moe_stage1/moe_stage2/moe_1stage) contain tensor-core instructions
  (HMMA for mma.sync, HGMMA/QGMMA for wgmma), and report which;
- no instance uses local memory (LDL/STL in SASS, or a non-zero STACK or LOCAL in the
  resource usage): no register spills, no stack arrays;
- every kernel waits for the kernels before it (griddepcontrol.wait, SASS ACQBULK) before
  its first global memory access (programmatic dependent launch, device.h): the compiler
  may move loads written as non-volatile asm (dev::ld16_ro) across the wait, so the source
  alone does not show it.

Needs cuobjdump and the nvdisasm it runs for -sass: from the CUDA toolkit or PyPI's
nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm (installed on demand with --install). Exit 1
on any failed check.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codegen.spec import load_set  # noqa: E402
from codegen.targets import TARGETS, cuda_home  # noqa: E402

GEMM_OPS = ("moe_stage1", "moe_stage2", "moe_1stage")
TENSOR_CORE = re.compile(r"\b(HMMA|HGMMA|QGMMA|IMMA)\b")
LOCAL = re.compile(r"\b(LDL|STL)\b")
# An instruction line of cuobjdump -sass: /*0040*/  [@P0] OPCODE.MODIFIERS operands ;
SASS_OP = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)")
GLOBAL_ACCESS = {"LDG", "STG", "LD", "ST", "RED", "REDG", "ATOM", "ATOMG", "LDGSTS",
                 "UTMALDG", "UTMASTG", "UBLKCP"}


def accesses_before_wait(sass: str) -> list[str]:
    """Kernels of a cuobjdump -sass listing that touch global memory before their first
    ACQBULK (griddepcontrol.wait), or have none, with the offending opcode."""
    bad = []
    for part in sass.split("Function : ")[1:]:
        name = part.split()[0]
        for op in SASS_OP.findall(part):
            if op == "ACQBULK":
                break
            if op in GLOBAL_ACCESS:
                bad.append(f"{name[:60]}: {op} before the wait")
                break
    return bad


def find_tool(name: str, install: bool) -> str | None:
    """`name` (cuobjdump, nvdisasm) on PATH, in the CUDA toolkit, or in PyPI's nvidia-cuda-*
    wheels; with `install`, pip-installs the wheel when none is found."""
    cands = [shutil.which(name)]
    home = cuda_home()
    if home:
        cands.append(str(home / "bin" / name))
    try:
        import nvidia  # type: ignore[import-not-found]
        for base in nvidia.__path__:
            cands += [str(p) for p in Path(base).glob(f"cu*/bin/{name}")]
    except ImportError:
        pass
    for c in cands:
        if c and Path(c).exists():
            return c
    if install:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"nvidia-cuda-{name}"],
                       check=True)
        import importlib
        importlib.invalidate_caches()
        return find_tool(name, False)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="default")
    ap.add_argument("--install", action="store_true",
                    help="pip install nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm if needed")
    args = ap.parse_args()
    tool, disasm = find_tool("cuobjdump", args.install), find_tool("nvdisasm", args.install)
    if tool is None or disasm is None:
        print("check_sass: cuobjdump and nvdisasm are needed (CUDA toolkit, or pip install "
              "nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
        return 1
    os.environ["NVDISASM_PATH"] = str(Path(disasm).parent)  # where cuobjdump -sass looks
    iset = load_set(ROOT / "instances", args.set, tuple(TARGETS))
    objdir = ROOT / "build" / args.set / "obj" / "sm90"
    failed = 0
    rows = []
    for inst in (i for i in iset.instances if i.target == "sm90"):
        obj = objdir / f"{inst.name}.o"
        if not obj.exists():
            print(f"MISSING {obj} (build the set for sm90 first)")
            failed += 1
            continue
        sass = subprocess.run([tool, "-sass", str(obj)], capture_output=True, text=True).stdout
        res = subprocess.run([tool, "-res-usage", str(obj)], capture_output=True, text=True).stdout
        mma = sorted(set(TENSOR_CORE.findall(sass)))
        local = len(LOCAL.findall(sass))
        # spills and stack arrays show as STACK (frame) and/or LOCAL bytes
        local_bytes = max([int(x) for x in re.findall(r"(?:LOCAL|STACK):(\d+)", res)] or [0])
        regs = max([int(x) for x in re.findall(r"REG:(\d+)", res)] or [0])
        smem = max([int(x) for x in re.findall(r"SHARED:(\d+)", res)] or [0])
        problems = []
        if inst.op in GEMM_OPS and not mma:
            problems.append("no tensor-core instruction")
        if local or local_bytes:
            problems.append(f"local memory ({local} LDL/STL, {local_bytes} stack/local bytes)")
        problems += accesses_before_wait(sass)
        failed += bool(problems)
        rows.append((inst.name, ",".join(mma) or "-", regs, smem, "; ".join(problems) or "ok"))
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'instance':{w}s}  {'mma':12s} {'regs':>5s} {'smem':>7s}  check")
    for r in rows:
        print(f"{r[0]:{w}s}  {r[1]:12s} {r[2]:5d} {r[3]:7d}  {r[4]}")
    print(f"{len(rows)} instances, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
