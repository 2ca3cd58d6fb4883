"""Shared test setup: import paths, fresh seeds, poisoning helpers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture
def rng():
    """A torch generator with a fresh seed per test. The seed is printed (pytest shows
    captured output on failure) and is `g.initial_seed()`, for replay."""
    import torch
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"rng seed {seed}")
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def tuned_file(tmp_path, monkeypatch):
    """$MXFORGE_TUNED pointing at tmp_path/tuned.csv (not written yet) and no shipped table
    (mxforge/tuned/), caches cleared: the test sees only the rows it writes."""
    from mxforge import dispatch
    path = tmp_path / "tuned.csv"
    monkeypatch.setenv("MXFORGE_TUNED", str(path))
    monkeypatch.setattr(dispatch, "TUNED_DIR", tmp_path / "no_shipped_tables")
    dispatch.clear_caches()
    yield path
    dispatch.clear_caches()


def pytest_report_header(config):  # noqa: D103
    return f"mxforge checkout: {ROOT}"


# Tests that generate their cases (fuzzing, malformed files, build faults) record how many
# ran; the summary lists them ("generated cases"; docs/reliability.md quotes the numbers).
CASES = pytest.StashKey[dict]()


@pytest.fixture
def record_cases(request) -> Callable[[int], None]:
    def record(n: int) -> None:
        request.config.stash.setdefault(CASES, {})[request.node.nodeid] = n
    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: D103
    cases = config.stash.get(CASES, {})
    if cases:
        terminalreporter.section("generated cases")
        for nodeid, n in cases.items():
            terminalreporter.write_line(f"{n:6d}  {nodeid}")
        terminalreporter.write_line(f"{sum(cases.values()):6d}  in all")
