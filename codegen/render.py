"""Render instances to sources (Jinja, StrictUndefined) and write them only if changed.

Output is a pure function of the specs, templates and csrc: the same checkout renders
byte-identical files, and a no-op run touches no file (so ninja rebuilds nothing).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jinja2

from . import schema
from .instance import Instance
from .targets import TARGETS

# Files whose content defines what a build produces (the manifest's source hash).
HASHED_DIRS = ("codegen", "templates", "csrc")

# C++ spellings of the schema's dtypes and enums, for templates.
CPP = {
    "dtype": {"bf16": "mxf::Bf16", "fp16": "mxf::Fp16", "fp32": "float", "fp8": "mxf::Fp8Mx",
              "pk_fp4": "mxf::Fp4Mx"},
    "activation": {"silu": "mxf::Act::kSilu", "gelu": "mxf::Act::kGelu",
                   "swiglu_oai": "mxf::Act::kSwigluOai", "": "mxf::Act::kNone"},
    "gate_up": {"concat": "false", "interleaved": "true", "": "false"},
    "layout": {"plain": "mxf::LayoutPlain", "shuffled": "mxf::LayoutShuffled", "pairbits": "mxf::LayoutPairbits",
               "": "void"},
}


def write_if_changed(path: Path, text: str) -> bool:
    data = text.encode()
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def environment(templates: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["cpp"] = CPP
    return env


def template_name(inst: Instance) -> str:
    t = TARGETS[inst.target]
    return f"{t.family}/{inst.op}.{t.template_ext}.j2"


def context(inst: Instance) -> dict[str, Any]:
    row = inst.row()
    return {"inst": row, "symbol": f"mxf_{inst.name}", "name": inst.name,
            "source": comment_safe(inst.source), "target": inst.target}


def comment_safe(text: str) -> str:
    """Text for a C++ comment: one line of printable ASCII (a spec path with a newline, a
    trailing backslash or `*/` must not end the comment and inject code)."""
    out = "".join(c if " " <= c <= "~" and c != "\\" else f"\\x{ord(c):02x}" if ord(c) < 256
                  else f"\\u{ord(c):04x}" for c in text)
    return out.replace("*/", "*\\x2f")  # every escape ends in a hex digit, never a backslash


@dataclass
class Rendered:
    sources: dict[str, list[Path]] = field(default_factory=dict)  # target -> sources
    written: int = 0
    unchanged: int = 0


def render(instances: Iterable[Instance], templates: Path, out_dir: Path,
           targets: Iterable[str], manifest: dict[str, Any]) -> Rendered:
    env = environment(templates)
    by_target: dict[str, list[Instance]] = {t: [] for t in targets}
    for inst in instances:
        if inst.target in by_target:
            by_target[inst.target].append(inst)
    result = Rendered()

    def emit(path: Path, text: str) -> None:
        if write_if_changed(path, text):
            result.written += 1
        else:
            result.unchanged += 1

    for target, insts in by_target.items():
        ext = TARGETS[target].source_ext
        srcs: list[Path] = []
        for inst in insts:
            try:
                tpl = env.get_template(template_name(inst))
            except jinja2.TemplateNotFound:
                raise RenderError(f"{inst.name}: target {target} has no template "
                                  f"{template_name(inst)} for op {inst.op}") from None
            path = out_dir / target / f"{inst.name}.{ext}"
            try:
                emit(path, tpl.render(**context(inst)))
            except jinja2.UndefinedError as e:
                raise RenderError(f"{inst.name}: template {template_name(inst)}: {e}") from None
            srcs.append(path)
        reg = out_dir / target / f"registry_{target}.cpp"
        emit(reg, env.get_template("registry.cpp.j2").render(
            target=target, rows=[context(i) for i in insts]))
        srcs.append(reg)
        result.sources[target] = srcs
    manifest_json = json.dumps(manifest, indent=1, sort_keys=True)
    emit(out_dir / "module_targets.cpp", env.get_template("module_targets.cpp.j2").render(
        targets=list(by_target), manifest_chunks=_chunks(manifest_json)))
    return result


class RenderError(Exception):
    pass


def _chunks(text: str, n: int = 2000) -> list[str]:
    """C++ string literal pieces (raw strings have length limits on some compilers)."""
    return [text[i:i + n] for i in range(0, len(text), n)]


def source_files(root: Path, spec_files: Iterable[Path]) -> list[Path]:
    """The set's spec files and every file that shapes generated code."""
    files: list[Path] = sorted(set(spec_files))
    for d in HASHED_DIRS:
        files += sorted(p for p in (root / d).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    return files


def _rel(root: Path, p: Path) -> str:
    # relpath, not relative_to: `build.py --specs DIR` may name specs outside the checkout
    return os.path.relpath(p, root)


def source_hash(root: Path, spec_files: Iterable[Path]) -> str:
    """sha256 over the specs of the set and every file that shapes generated code."""
    h = hashlib.sha256()
    for p in source_files(root, spec_files):
        h.update(_rel(root, p).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def source_digests(root: Path, spec_files: Iterable[Path]) -> dict[str, str]:
    """sha256 per file of `source_files` (the manifest keeps them so that a stale module
    can name what changed)."""
    return {_rel(root, p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in source_files(root, spec_files)}


def schema_rows() -> list[dict[str, Any]]:
    """The spec reference as data (README's table is made from this)."""
    rows = []
    for op in schema.OPS.values():
        for f in op.fields:
            rows.append({"op": op.name, "field": f.name, "allowed": list(f.allowed),
                         "default": f.default, "doc": f.doc})
    return rows
