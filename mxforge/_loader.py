"""Loads the compiled module mxforge/_C and its manifest, and says whether it is stale."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import NotBuiltError

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
MANIFEST_FILE = PACKAGE / "_C.manifest.json"  # build.py installs it beside the module
BUILD_HINT = "python build.py --set default --target cpu"
# Fields the runtime and `mxforge check` read, with their JSON types.
MANIFEST_FIELDS: dict[str, type] = {"set": str, "targets": list, "instances": list,
                                    "source_hash": str, "spec_files": list}


@functools.cache
def module() -> ModuleType:
    try:
        from . import _C  # type: ignore[attr-defined]
    except ImportError as e:
        built = sorted(p.name for p in PACKAGE.glob("_C*.so"))
        detail = (f"found {', '.join(built)} but it does not load here ({e}); rebuild it "
                  "with this Python") if built else "it is not built"
        raise NotBuiltError(f"mxforge/_C: {detail}: run `{BUILD_HINT}`") from None
    return _C


def manifest_problem(m: Any) -> str | None:
    """What is wrong with a parsed manifest, or None."""
    if not isinstance(m, dict):
        return f"is a JSON {type(m).__name__}, not an object"
    bad = [k for k, t in MANIFEST_FIELDS.items() if not isinstance(m.get(k), t)]
    return f"lacks or mistypes field(s) {', '.join(bad)}" if bad else None


@functools.cache
def manifest() -> dict[str, Any]:
    """The manifest compiled into the module (the authority: it cannot drift from the table)."""
    mod = module()
    where = getattr(mod, "__file__", None) or "mxforge/_C"
    try:
        m = json.loads(mod.manifest())
    except ValueError as e:
        raise NotBuiltError(f"{where}: its compiled-in manifest is not valid JSON ({e}); "
                            f"rebuild: {BUILD_HINT}") from None
    problem = manifest_problem(m)
    if problem:
        raise NotBuiltError(f"{where}: its compiled-in manifest {problem}; rebuild: {BUILD_HINT}")
    return m


def manifest_file_problem(m: dict[str, Any], path: Path | None = None) -> str | None:
    """The installed manifest file beside the module must be the compiled-in one: missing,
    unreadable, corrupt or different means a torn or partial install (or a hand edit)."""
    path = path or MANIFEST_FILE
    try:
        beside = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{path} is missing (partial install)"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"{path} is unreadable or not valid JSON ({e})"
    problem = manifest_problem(beside)
    if problem:
        return f"{path} {problem}"
    if beside != m:
        diff = sorted(k for k in set(beside) | set(m) if beside.get(k) != m.get(k))
        return (f"{path} does not match the manifest compiled into the module (differs in "
                f"{', '.join(diff)}): torn or partial install")
    return None


def rebuild_hint(m: dict[str, Any]) -> str:
    globs = [f"--only '{g}'" for g in m.get("only", [])] + \
            [f"--exclude '{g}'" for g in m.get("exclude", [])]
    return " ".join([f"python build.py --set {m['set']} --target {','.join(m['targets'])}"] + globs)


def _changed_sources(m: dict[str, Any]) -> str | None:
    sys.path.insert(0, str(CHECKOUT))
    try:
        from codegen.render import source_digests, source_hash
    finally:
        sys.path.pop(0)
    files = [CHECKOUT / f for f in m["spec_files"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return f"spec files of set '{m['set']}' are gone: {', '.join(missing)}"
    if source_hash(CHECKOUT, files) == m["source_hash"]:
        return None
    what = "specs/templates/csrc/codegen"
    if isinstance(m.get("source_files"), dict):  # per-file digests: name what changed
        now, then = source_digests(CHECKOUT, files), m["source_files"]
        changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        what = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return (f"module was built from other sources than this checkout (set '{m['set']}'; "
            f"changed: {what}); rebuild: {rebuild_hint(m)}")


def stale_reason() -> str | None:
    """Why the installed module does not match this checkout, or None: a manifest file that
    disagrees with the module (torn install), or sources changed since the build (naming the
    files; only answerable from a source checkout, codegen/ beside the package)."""
    m = manifest()
    reasons = [manifest_file_problem(m)]
    if (CHECKOUT / "codegen").is_dir() and (CHECKOUT / "instances").is_dir():
        reasons.append(_changed_sources(m))
    return "; ".join(r for r in reasons if r) or None
