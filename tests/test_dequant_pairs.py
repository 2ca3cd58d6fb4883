"""The bf16-pair fast path of fp4 dequantization (gpu/mx.cuh, used by the sm90 GEMM
loaders) equals the element-wise definition for every byte at every scale, NaN and
subnormal results included (tests/dequant_pairs.cpp on the host test backend)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from codegen import targets as T

ROOT = Path(__file__).resolve().parents[1]


def test_e2m1_pairs_match_the_definition(tmp_path: Path) -> None:
    cxx = T.host_cxx().command
    if not cxx:
        pytest.skip("no host C++ compiler")
    exe = tmp_path / "dequant_pairs"
    subprocess.run([*cxx, "-std=c++17", "-O1", f"-I{ROOT / 'csrc'}", "-DMXF_EMULATE", "-include",
                    "mxforge/gpu/emulate.h", "-x", "c++", str(ROOT / "tests" / "dequant_pairs.cpp"),
                    "-pthread", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checked 2228224 mismatches 0" in r.stdout, r.stdout  # 131072 bytes + 2097152 word elements
