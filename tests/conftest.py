"""Shared test setup: import paths, fresh seeds, poisoning helpers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

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


def pytest_report_header(config):  # noqa: D103
    return f"mxforge checkout: {ROOT}"
