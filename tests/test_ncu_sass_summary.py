"""scripts/ncu_sass_summary.py on small tables in the layout of `ncu --page source --csv
--print-source sass` (scripts/ncu-sass): counts, per-warp normalization, opcodes without
predicates or modifiers, stall shares, gzip input, and a clear error for other files."""
from __future__ import annotations

import csv
import gzip
import importlib.util
import io
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "ncu_sass_summary.py"
_spec = importlib.util.spec_from_file_location("ncu_sass_summary", _PATH)
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)

HEADER = ["Address", "Source", "Warp Stall Sampling (All Samples)", "Instructions Executed",
          "stall_wait", "stall_mio", "stall_mio (Not Issued)"]


def table(rows: list[list[object]]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["Kernel Name", "void k<Spec>(Args)"])
    w.writerow(HEADER)
    for r in rows:
        w.writerow(r)
    return out.getvalue()


ROWS = [  # 10 warps ran the kernel (its first instruction's count)
    ["0x0", "LDC R1, c[0x0][0x28]", 1, 10, 1, 0, 0],
    ["0x10", "@P0   IMAD.WIDE.U32 R2, R3, 0x4, R4", 6, 30, 2, 4, 4],
    ["0x20", "IMAD R5, R5, 0x40, R6", 3, 20, 3, 0, 0],
    ["0x30", "@!PT  LDS RZ, [RZ]", 0, 40, 0, 0, 0],
]


@pytest.mark.parametrize("gz", [False, True])
def test_summary_counts_opcodes_and_stalls(tmp_path, gz):
    text = table(ROWS)
    path = tmp_path / ("t.csv.gz" if gz else "t.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    out = summary.summarize(path, top=2)
    assert "kernel: void k<Spec>(Args)" in out
    assert "warp instructions: 0.0 M; per warp: 10; stall samples: 10" in out
    # IMAD = 50 of 100 instructions and 9 of 10 samples; the predicated forms count as IMAD
    assert "IMAD 50.0%/90.0%" in out and "LDS 40.0%/0.0%" in out and "LDC 10.0%/10.0%" in out
    # stall reasons from the stall_* columns, the "(Not Issued)" ones left out: 6 wait, 4 mio
    assert "stall reasons: wait 60.0%, mio 40.0%" in out
    hottest = out.splitlines()[-2:]
    assert "IMAD.WIDE.U32" in hottest[0] and "3.00" in hottest[0] and hottest[1].strip().startswith("3 ")


def test_other_files_are_refused(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(SystemExit, match="not an ncu per-instruction table"):
        summary.summarize(path)
