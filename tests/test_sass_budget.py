"""scripts/sass_budget.py's reading of a cuobjdump -sass listing: kernels, loops (backward
branches, innermost first) and the straight-line runs holding tensor-core instructions, on
listings in cuobjdump's format (tests/test_check_sass.py writes them the same way)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(_SCRIPTS))  # (sass_budget imports check_sass from its folder)
_spec = importlib.util.spec_from_file_location("sass_budget", _SCRIPTS / "sass_budget.py")
sass_budget = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sass_budget)

from .test_check_sass import listing  # noqa: E402

# 0x00 .. : a prologue, an outer loop (0x10 .. 0xb0) around an inner one (0x30 .. 0x60), then
# two runs of MMAs separated by a branch (one unrolled copy each).
BODY = [
    "S2R R0, SR_TID.X",                            # 0x00
    "IMAD R2, R0, 0x4, RZ",                        # 0x10 outer loop top
    "LDG.E.128 R4, desc[UR4][R2.64]",              # 0x20
    "LOP3.LUT R8, R4, 0x81c081c0, RZ, 0xc0, !PT",  # 0x30 inner loop top
    "HMUL2.BF16_V2 R8, R8, R9",                    # 0x40
    "ISETP.GE.AND P0, PT, R0, 0x8, PT",            # 0x50
    "@!P0 BRA 0x30",                               # 0x60 inner back edge
    "@P1 WARPSYNC.ALL",                            # 0x70
    "@P1 HMMA.16816.F32.BF16 R12, R8, R4, R12",    # 0x80
    "HMMA.16816.F32.BF16 R12, R8, R6, R12",        # 0x90
    "BRA 0xc0",                                    # 0xa0
    "@!P2 BRA 0x10",                               # 0xb0 outer back edge
    "HMMA.16816.F32.BF16 R16, R8, R4, R16",        # 0xc0
    "EXIT",                                        # 0xd0
]


def test_kernels_and_loops():
    ks = sass_budget.kernels(listing(("_Z6kernelv", BODY), ("_Z5otherv", ["EXIT"])))
    assert list(ks) == ["_Z6kernelv", "_Z5otherv"] and len(ks["_Z6kernelv"]) == len(BODY)
    assert sass_budget.loops(ks["_Z6kernelv"]) == [(0x30, 0x60), (0x10, 0xb0)]
    assert sass_budget.loops(ks["_Z5otherv"]) == []


def test_mma_runs_split_at_branches_and_count():
    code = sass_budget.kernels(listing(("_Z6kernelv", BODY)))["_Z6kernelv"]
    runs = sass_budget.mma_runs(code)
    assert runs == [(0x70, 0xa0), (0xc0, 0xd0)]
    text = sass_budget.describe(code, *runs[0], top=3)
    assert text.startswith("0x00070-0x000a0     4 instr, 2 tensor-core, 2 predicated: ")
    assert "HMMA 2" in text and "WARPSYNC 1" in text
