"""scripts/sanitize.py's runner (what each worker launches under compute-sanitizer) on the cpu
target: it runs on the device machine only, where a mistake in it costs a call. Every op of
the ci set has a runner, and the stage instances that take direct routing run once per
routing (sorted, direct, direct with dropped routes)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from mxforge.dispatch import direct_supported, instances

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sanitize.py"


def load_sanitize():
    spec = importlib.util.spec_from_file_location("sanitize", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sanitize"] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


# One instance per op on the cpu target (the sweep's scope "coarse" picks stage instances the
# same way on sm90), so that every runner branch is taken.
ONE_PER_OP = list({i.op: i for i in instances(target="cpu")}.values())


@pytest.mark.parametrize("inst", ONE_PER_OP, ids=lambda i: i.op)
def test_sanitize_runner_runs_every_op(inst):
    sanitize = load_sanitize()
    g = torch.Generator().manual_seed(5)
    runs = sanitize.run_instance(inst, 3, g, device="cpu")
    assert runs == (3 if direct_supported(inst) else 1), inst.name
    if inst.op in sanitize.GEMM_OPS:
        assert sanitize.run_instance(inst, 17, g, skew="one_expert", device="cpu") == runs


def test_sanitize_scopes_pick_stage_instances():
    sanitize = load_sanitize()
    coarse = sanitize.chosen_instances("coarse", target="cpu")
    assert coarse and all(i.op in sanitize.GEMM_OPS for i in coarse)
    assert len({(i.op, i.a, i.b) for i in coarse}) == len(coarse)
    assert len(sanitize.chosen_instances("all", target="cpu")) == len(instances(target="cpu"))


def test_sanitize_direct_picks_the_direct_routing_instances():
    """--direct (the sweep of direct routing alone): only stage instances that take it, in
    every scope; with it off the scope also has the non-stage ops (scope all)."""
    sanitize = load_sanitize()
    for scope in ("all", "subset", "coarse"):
        picked = sanitize.chosen_instances(scope, target="cpu", direct=True)
        assert picked and all(direct_supported(i) for i in picked), scope
    every = sanitize.chosen_instances("all", target="cpu", direct=True)
    assert len(every) == sum(direct_supported(i) for i in instances(target="cpu"))
    assert len(every) < len(sanitize.chosen_instances("all", target="cpu"))
