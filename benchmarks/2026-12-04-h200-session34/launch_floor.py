#!/usr/bin/env python3
"""Session 34: what n dependent launches cost in a CUDA graph replayed back to back (as the
bench replays the layer), with nothing to do in them: n one-element torch adds per call,
32 calls per graph, µs per call (mxforge.bench._time_graph). Run from the repository root
on the device machine:  python3 benchmarks/2026-12-04-h200-session34/launch_floor.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from mxforge.bench import _time_graph  # noqa: E402

ROT = 32
ts = [torch.zeros(1, device="cuda") for _ in range(ROT)]
for n in (1, 2, 3, 4):
    def call(i: int, n: int = n) -> None:
        for _ in range(n):
            ts[i].add_(1)
    print(f"{n} launch(es) per call: {_time_graph(call, ROT, 20):.2f} us per call", flush=True)
