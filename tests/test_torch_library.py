"""Torch integration on the cpu target: every op is a registered torch op with a fake
implementation (torch.library.opcheck), and torch.compile traces fused_moe and the
stage-by-stage pipeline into one graph (fullgraph=True fails on any graph break) whose
results equal eager execution bit for bit (same kernels, same inputs)."""
from __future__ import annotations

import pytest
import torch

import mxforge
from mxforge.library import OPS
from mxforge.models import PRESETS

from .helpers import make_layer
from .torch_cases import BLOCK_M, op_cases

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cases():
    g = torch.Generator().manual_seed(int.from_bytes(__import__("os").urandom(4), "little"))
    return {c.name: c for c in op_cases(5, g, CPU)}


@pytest.mark.parametrize("name", OPS)
def test_opcheck(cases, name):
    """Schema (declared mutations and aliasing match what the kernel does), fake tensor
    implementation (shapes, dtypes, devices match the real outputs), autograd registration
    and AOT dispatch with dynamic shapes."""
    c = cases[name]
    torch.library.opcheck(c.op, c.args)


def test_op_errors_keep_their_type():
    """An InputError raised inside an op's kernel reaches the caller as itself."""
    ids = torch.tensor([[0, 9]], dtype=torch.int32)
    with pytest.raises(mxforge.InputError, match=r"expert id 9 outside \[0, 4\)"):
        torch.ops.mxforge.moe_sort(ids, torch.ones(1, 2), 4, 16, None, None, True)


def _layer(T: int, rng: torch.Generator):
    return make_layer(PRESETS["minimax-m2.1-tp8"], T, rng, CPU)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fused_moe_fullgraph(backend, rng):
    L = _layer(3, rng)

    def layer(x, topk_weights, topk_ids):
        return mxforge.fused_moe(x, L.w1, L.w2, topk_weights, topk_ids) * 2.0

    compiled = torch.compile(layer, fullgraph=True, backend=backend, dynamic=True)
    for T in (3, 1, 8):  # dynamic T: one graph serves every token count
        M = _layer(T, rng) if T != 3 else L
        got = compiled(M.x, M.topk_weights, M.topk_ids)
        assert torch.equal(got, layer(M.x, M.topk_weights, M.topk_ids))


def test_compile_stagewise_pipeline_fullgraph(rng):
    """The typed wrappers (MXTensor, SortResult, MoeWeight) trace too."""
    L = _layer(4, rng)

    def pipeline(x, topk_weights, topk_ids):
        q, sort = mxforge.fused_quant_sort(x, topk_ids, topk_weights, L.E, BLOCK_M)
        inter = mxforge.moe_stage1(q, L.w1, sort, "silu")
        return mxforge.moe_stage2(inter, L.w2, sort)

    compiled = torch.compile(pipeline, fullgraph=True, backend="aot_eager")
    got = compiled(L.x, L.topk_weights, L.topk_ids)
    assert torch.equal(got, pipeline(L.x, L.topk_weights, L.topk_ids))


def test_direct_routing_ops(rng):
    """A direct-routing SortResult (no sorted tensors) crosses the op boundary: opcheck of
    moe_stage1 (with the zero_buf it mutates) and moe_stage2 on it, and the stage-by-stage
    pipeline on it traced into one graph."""
    from mxforge.library import ACT, SORT, WEIGHT
    L = _layer(4, rng)
    q = mxforge.quantize(L.x)
    direct = mxforge.moe_routes(L.topk_ids, L.topk_weights, L.E, BLOCK_M)
    zero = torch.ones(4, 3072)
    torch.library.opcheck(torch.ops.mxforge.moe_stage1.default,
                          (*ACT.flatten(q), *WEIGHT.flatten(L.w1), *SORT.flatten(direct), "silu",
                           "bf16", "none", "round_up", None, zero))
    inter = mxforge.moe_stage1(q, L.w1, direct, "silu")
    out = torch.zeros(4, 3072, dtype=torch.bfloat16)
    torch.library.opcheck(torch.ops.mxforge.moe_stage2.default,
                          (*ACT.flatten(inter), *WEIGHT.flatten(L.w2), *SORT.flatten(direct), out,
                           "bf16", "stage2", None, "atomic", True))

    def pipeline(x, topk_weights, topk_ids):
        routes = mxforge.moe_routes(topk_ids, topk_weights, L.E, BLOCK_M, validate=False)
        y = torch.empty(x.shape, dtype=torch.bfloat16)
        inter = mxforge.moe_stage1(mxforge.quantize(x), L.w1, routes, "silu", zero_buf=y)
        return mxforge.moe_stage2(inter, L.w2, routes, out=y)

    compiled = torch.compile(pipeline, fullgraph=True, backend="aot_eager")
    got = compiled(L.x, L.topk_weights, L.topk_ids)
    assert torch.equal(got, pipeline(L.x, L.topk_weights, L.topk_ids))
    assert torch.equal(got, mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids,
                                              stage2_input="bf16", routing="direct"))
