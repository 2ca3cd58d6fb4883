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
BUILD_HINT = "python build.py --set default --target cpu"


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


@functools.cache
def manifest() -> dict[str, Any]:
    return json.loads(module().manifest())


def stale_reason() -> str | None:
    """Why the module does not match this checkout's specs/templates/csrc, or None.

    Only answerable from a source checkout (codegen/ beside the package)."""
    if not (CHECKOUT / "codegen").is_dir() or not (CHECKOUT / "instances").is_dir():
        return None
    sys.path.insert(0, str(CHECKOUT))
    try:
        from codegen.render import source_hash
    finally:
        sys.path.pop(0)
    m = manifest()
    files = [CHECKOUT / f for f in m.get("spec_files", [])]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        return f"spec files of set '{m['set']}' are gone: {', '.join(missing)}"
    now = source_hash(CHECKOUT, files)
    if now != m.get("source_hash"):
        return (f"module was built from other specs/templates/csrc than this checkout "
                f"(set '{m['set']}'); rebuild: python build.py --set {m['set']} "
                f"--target {','.join(m['targets'])}")
    return None
