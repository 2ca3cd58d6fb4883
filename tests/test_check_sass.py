"""scripts/check_sass.py's check that every sm90 kernel waits for the grids before it
(griddepcontrol.wait, SASS ACQBULK) ahead of its first global memory access: with
programmatic dependent launch allowed (by default for ops on at most 8 tokens,
mxforge.ops.dependent_launch; csrc/mxforge/device.h) a load before the wait may read what the
previous kernel has not written yet. CI runs the check on the compiled sm90 kernels; here it
runs on listings in cuobjdump's format, written to pass or to fail."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "check_sass.py"
_spec = importlib.util.spec_from_file_location("check_sass", _PATH)
check_sass = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_sass)


def listing(*kernels: tuple[str, list[str]]) -> str:
    """A cuobjdump -sass listing of kernels given as (name, [instruction, ...])."""
    out = ["", "Fatbin elf code:", "================", "arch = sm_90", ""]
    for name, body in kernels:
        out += [f"        Function : {name}", '        .headerflags    @"EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"']
        for i, ins in enumerate(body):
            out.append(f"        /*{16 * i:04x}*/                   {ins} ;"
                       f"                    /* 0x000fe20000000f00 */")
    return "\n".join(out) + "\n"


PROLOGUE = ["LDC R1, c[0x0][0x28]", "S2R R0, SR_CTAID.X", "IMAD R3, R0, 0x40, RZ"]


def test_a_kernel_that_waits_first_passes():
    sass = listing(("_Z17moe_stage1_kernel", PROLOGUE + ["ACQBULK", "LDG.E R2, desc[UR4][R2.64]",
                                                         "STS [R4], R2", "EXIT"]))
    assert check_sass.accesses_before_wait(sass) == []


@pytest.mark.parametrize("access", ["LDG.E.128.CONSTANT R4, desc[UR4][R2.64]",
                                    "@!P0 LDG.E R2, desc[UR4][R2.64]",
                                    "STG.E desc[UR4][R2.64], R5",
                                    "@P1 REDG.E.ADD.F32.FTZ.RN.STRONG.GPU desc[UR4][R2.64], R7",
                                    "LDGSTS.E.BYPASS.128 [R9], desc[UR4][R2.64]"])
def test_a_global_access_before_the_wait_fails(access):
    sass = listing(("_Z16moe_sort_kernel", PROLOGUE + [access, "ACQBULK", "EXIT"]))
    bad = check_sass.accesses_before_wait(sass)
    opcode = access.split()[1 if access.startswith("@") else 0].split(".")[0]
    assert bad == [f"_Z16moe_sort_kernel: {opcode} before the wait"]


def test_a_kernel_without_a_wait_fails_at_its_first_access():
    sass = listing(("_Z14mx_pack_kernel", PROLOGUE + ["LDG.E R2, desc[UR4][R2.64]", "EXIT"]))
    assert check_sass.accesses_before_wait(sass) == ["_Z14mx_pack_kernel: LDG before the wait"]


def test_each_kernel_of_a_listing_is_checked_on_its_own():
    """The second kernel's early load is reported although the first kernel waited (the
    first ACQBULK of the listing must not cover the kernels after it)."""
    sass = listing(("_Z1a", PROLOGUE + ["ACQBULK", "LDG.E R2, desc[UR4][R2.64]", "EXIT"]),
                   ("_Z1b", PROLOGUE + ["STG.E desc[UR4][R2.64], R5", "ACQBULK", "EXIT"]))
    assert check_sass.accesses_before_wait(sass) == ["_Z1b: STG before the wait"]


def test_shared_memory_and_constant_loads_before_the_wait_are_allowed():
    """Shared memory (LDS/STS) and the kernel's parameters (LDC) are not written by the
    previous kernel: the GEMMs compute their tile coordinates before waiting."""
    sass = listing(("_Z1c", PROLOGUE + ["STS [R4], RZ", "LDS R5, [R4]", "ULDC UR4, c[0x0][0x210]",
                                        "ACQBULK", "LDG.E R2, desc[UR4][R2.64]", "EXIT"]))
    assert check_sass.accesses_before_wait(sass) == []
