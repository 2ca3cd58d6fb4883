#!/usr/bin/env python3
"""Check the AMD machine code of a built set (targets gfx942, gfx950), per instance and
arch, from the compiler's own assembly (build/<set>/obj/<target>/<instance>.s: the code
object is assembled from exactly this text) and the linked code object (.hsaco):

- GEMM instances (moe_stage1/moe_stage2/moe_1stage) contain the MFMA the arch and dtype
  pair call for: on gfx950 the scaled `v_mfma_scale_f32_16x16x128_f8f6f4` with the operand
  formats of the pair (cbsz:4 blgp:4 for fp4 x fp4, blgp:4 alone for fp8 x fp4) for a4w4
  and a8w4, `v_mfma_f32_16x16x32_bf16` (`_f16`) otherwise and in the one-stage kernel's
  second GEMM; on gfx942 `v_mfma_f32_16x16x16_bf16` (`_f16`);
- no kernel uses scratch (private segment 0, no spills, no dynamic stack);
- VGPRs + AGPRs per lane fit the unified register file (512), wavefront size is 64;
- static LDS fits the arch (64 KiB gfx942, 160 KiB gfx950), and the GEMM kernels' LDS is
  exactly codegen's tile_lds_bytes (the Python copy of the tile formula that prunes specs);
- the code object's kernel descriptors are the kernels the assembly declares.

Prints one row per instance with the MFMAs found, registers, LDS and the compiler's
occupancy figure (waves per SIMD, the smallest over the instance's kernels). Exit 1 on
any failed check. Needs no LLVM tools: the assembly and its `.amdgpu_metadata` YAML block
are text, the code object's symbol table is read by codegen/embed_hsaco.py.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codegen.embed_hsaco import EmbedError, elf_symbols  # noqa: E402
from codegen.instance import Instance  # noqa: E402
from codegen.schema import GEMM_OPS, tile_lds_bytes  # noqa: E402
from codegen.spec import load_set  # noqa: E402
from codegen.targets import AMD_TARGETS, TARGETS  # noqa: E402

REGISTERS = 512  # VGPR + AGPR per lane (CDNA3/CDNA4 unified register file)
MFMA = re.compile(r"^\s+(v_mfma\w*)([^\n;]*)", re.M)
KERNEL = re.compile(r"^\s*\.amdhsa_kernel\s+(\S+)", re.M)
COMMENT = re.compile(r"^; (NumVgprs|NumAgprs|TotalNumVgprs|ScratchSize|Occupancy): (\d+)", re.M)
METADATA = re.compile(r"^\s*\.amdgpu_metadata\s*\n(.*?)^\s*\.end_amdgpu_metadata", re.M | re.S)
TILE_KERNELS = ("moe_stage1_kernel", "moe_stage2_kernel", "moe_stage1_splitk_epilogue_kernel")


@dataclass
class Kernel:
    name: str
    meta: dict[str, Any]
    comments: dict[str, int] = field(default_factory=dict)


@dataclass
class Result:
    instance: str
    target: str
    mfma: list[str]
    vgpr: int
    agpr: int
    lds: int
    occupancy: int
    problems: list[str]


def parse_asm(text: str) -> tuple[list[Kernel], list[tuple[str, str]]]:
    """The kernels (metadata + the compiler's resource comments) and every MFMA with its
    modifiers."""
    m = METADATA.search(text)
    if not m:
        raise ValueError("no .amdgpu_metadata block")
    meta = yaml.safe_load(m.group(1)) or {}
    kernels = {k[".name"]: Kernel(k[".name"], k) for k in meta.get("amdhsa.kernels", [])}
    # resource comments follow each kernel's .amdhsa_kernel directive block
    starts = [(mm.start(), mm.group(1)) for mm in KERNEL.finditer(text)]
    for i, (pos, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        if name in kernels:
            kernels[name].comments = {k: int(v) for k, v in COMMENT.findall(text, pos, end)}
    return list(kernels.values()), [(g[0], g[1].strip()) for g in MFMA.findall(text)]


def kernel_template(symbol: str) -> str:
    m = re.match(r"_ZN3mxf3gpu(\d+)", symbol)
    return symbol[m.end():m.end() + int(m.group(1))] if m else symbol


def expected_mfma(inst: Instance) -> list[tuple[str, str]]:
    """(mnemonic, required modifier text) the GEMM instance must contain."""
    t = TARGETS[inst.target]
    a, b = inst.get("a"), inst.get("b")
    k16 = "16x16x32" if inst.target == "gfx950" else "16x16x16"
    sixteen = f"v_mfma_f32_{k16}_{'f16' if a == 'fp16' else 'bf16'}"
    if (a, b) in t.native_mx_pairs:
        fmt = {"pk_fp4": 4, "fp8": 0}
        mods = (f"cbsz:{fmt[a]} " if fmt[a] else "") + f"blgp:{fmt[b]}"
        need = [(f"v_mfma_scale_f32_16x16x{t.native_mx_k}_f8f6f4", mods)]
        if inst.op == "moe_1stage":  # second GEMM: bf16 intermediate x dequantized weights
            need.append((f"v_mfma_f32_{k16}_bf16", ""))
        return need
    return [(sixteen, "")]


def check(inst: Instance, objdir: Path) -> Result:
    t = TARGETS[inst.target]
    asm, hsaco = objdir / f"{inst.name}.s", objdir / f"{inst.name}.hsaco"
    problems: list[str] = []
    if not asm.exists() or not hsaco.exists():
        return Result(inst.name, inst.target, [], 0, 0, 0, 0,
                      [f"missing {asm.name} / {hsaco.name} (build the set for {inst.target})"])
    try:
        kernels, mfmas = parse_asm(asm.read_text())
    except (ValueError, yaml.YAMLError) as e:
        return Result(inst.name, inst.target, [], 0, 0, 0, 0, [f"{asm.name}: {e}"])
    if not kernels:
        problems.append("no kernels")
    if inst.op in GEMM_OPS:
        for mnemonic, mods in expected_mfma(inst):
            if not any(m == mnemonic and mods in rest for m, rest in mfmas):
                problems.append(f"no {mnemonic}{' ' + mods if mods else ''}")
    vgpr = agpr = lds = 0
    occupancy = 99
    for k in kernels:
        md, c = k.meta, k.comments
        kv, ka = int(md.get(".vgpr_count", 0)), int(md.get(".agpr_count", 0))
        vgpr, agpr = max(vgpr, kv), max(agpr, ka)
        # AGPRs start at a 4-aligned offset after the VGPRs in the unified file
        if ((kv + 3) // 4) * 4 + ka > REGISTERS:
            problems.append(f"{kernel_template(k.name)}: {kv} VGPR + {ka} AGPR > {REGISTERS}")
        if int(md.get(".private_segment_fixed_size", 0)) or c.get("ScratchSize", 0):
            problems.append(f"{kernel_template(k.name)}: scratch "
                            f"{md.get('.private_segment_fixed_size')} bytes")
        spills = int(md.get(".vgpr_spill_count", 0)) + int(md.get(".sgpr_spill_count", 0))
        if spills:
            problems.append(f"{kernel_template(k.name)}: {spills} register spills")
        if md.get(".uses_dynamic_stack"):
            problems.append(f"{kernel_template(k.name)}: dynamic stack")
        if int(md.get(".wavefront_size", 0)) != 64:
            problems.append(f"{kernel_template(k.name)}: wavefront size {md.get('.wavefront_size')}")
        klds = int(md.get(".group_segment_fixed_size", 0))
        lds = max(lds, klds)
        if klds > t.lds_bytes:
            problems.append(f"{kernel_template(k.name)}: LDS {klds} > {t.lds_bytes}")
        if inst.op in GEMM_OPS and kernel_template(k.name) in TILE_KERNELS:
            want = tile_lds_bytes(inst.get("block_m"), inst.get("block_n"), inst.get("block_k"))
            if klds != want:
                problems.append(f"{kernel_template(k.name)}: LDS {klds}, codegen's "
                                f"tile_lds_bytes says {want}")
        if "Occupancy" in c:
            occupancy = min(occupancy, c["Occupancy"])
        else:
            problems.append(f"{kernel_template(k.name)}: no occupancy figure")
    try:
        descriptors = {s[:-3] for s in elf_symbols(hsaco.read_bytes()) if s.endswith(".kd")}
    except (OSError, EmbedError) as e:
        descriptors = set()
        problems.append(f"{hsaco.name}: {e}")
    if descriptors != {k.name for k in kernels}:
        problems.append(f"{hsaco.name}: kernel descriptors {sorted(descriptors)} differ from the "
                        "assembly's kernels")
    found = sorted({m for m, _ in mfmas})
    return Result(inst.name, inst.target, found, vgpr, agpr, lds,
                  occupancy if occupancy != 99 else 0, problems)


def short(mnemonic: str) -> str:
    return mnemonic.replace("v_mfma_", "").replace("scale_f32_", "scale_").replace("f32_", "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="default")
    ap.add_argument("--target", default=",".join(AMD_TARGETS),
                    help=f"comma-separated AMD targets (default: {','.join(AMD_TARGETS)})")
    ap.add_argument("--only", action="append", default=[], metavar="GLOB",
                    help="check only instances whose canonical name matches (repeatable)")
    ap.add_argument("--build", type=Path, default=ROOT / "build", help="build folder")
    args = ap.parse_args(argv)
    targets = [t for t in args.target.split(",") if t]
    bad = [t for t in targets if t not in AMD_TARGETS]
    if bad:
        print(f"check_amd_isa: not an AMD target: {', '.join(bad)} (AMD targets: "
              f"{', '.join(AMD_TARGETS)})")
        return 2
    iset = load_set(ROOT / "instances", args.set, tuple(TARGETS), args.only)
    rows = [check(i, args.build / args.set / "obj" / i.target)
            for i in iset.instances if i.target in targets]
    if not rows:
        print(f"check_amd_isa: set '{args.set}' has no instances for {', '.join(targets)}")
        return 1
    w = max(len(r.instance) for r in rows)
    print(f"{'instance':{w}s}  {'mfma':34s} {'vgpr':>4s} {'agpr':>4s} {'lds':>6s} {'occ':>3s}  check")
    for r in rows:
        mf = ",".join(short(m) for m in r.mfma) or "-"
        print(f"{r.instance:{w}s}  {mf:34s} {r.vgpr:4d} {r.agpr:4d} {r.lds:6d} {r.occupancy:3d}  "
              f"{'; '.join(r.problems) or 'ok'}")
    failed = sum(bool(r.problems) for r in rows)
    for t in targets:
        sel = [r for r in rows if r.target == t]
        if sel:
            print(f"{t}: {len(sel)} instances, {sum(bool(r.problems) for r in sel)} failed, "
                  f"max VGPR {max(r.vgpr for r in sel)}, max AGPR {max(r.agpr for r in sel)}, "
                  f"max LDS {max(r.lds for r in sel)}, occupancy {min(r.occupancy for r in sel)}-"
                  f"{max(r.occupancy for r in sel)} waves/SIMD")
    print(f"{len(rows)} instances, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
