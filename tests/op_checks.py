"""Instance-level checks against the torch reference, shared by the cpu and gpu tests.

Each check takes a compiled instance, builds fresh random data at a model shape suited to
the instance's flags, runs it through the public op with `instance=` pinned, and compares
with mxforge.reference (tolerances: tests/helpers.py)."""
from __future__ import annotations

import dataclasses

import torch

import mxforge
from mxforge import reference as ref
from mxforge.dispatch import Instance
from mxforge.models import PRESETS, MoeShape

from .helpers import ACCUM_TOL, BF16_TOL, Layer, assert_requant_close, make_layer, rel_l2

MX_ELEM = {"pk_fp4": "e2m1", "fp8": "e4m3"}


def shape_for(inst: Instance, which: int = 0) -> MoeShape:
    """gpt-oss-120b dims for instances with gpt-oss flags, else MiniMax-M2.1 TP=8 or TP=4
    (alternating by `which`), with the instance's own activation/gate_up/bias."""
    gptoss = inst.activation == "swiglu_oai" or inst.gate_up == "interleaved" or inst.bias
    base = PRESETS["gpt-oss-120b"] if gptoss else \
        PRESETS["minimax-m2.1-tp8" if which % 2 == 0 else "minimax-m2.1-tp4"]
    return dataclasses.replace(base, activation=inst.activation or base.activation,
                               gate_up=inst.gate_up or base.gate_up, bias=inst.bias)


def activation_operand(x: torch.Tensor, dtype: str) -> tuple[mxforge.ops.Activation, torch.Tensor]:
    """x as the instance's activation dtype, and the fp32 values a kernel must see."""
    if dtype in MX_ELEM:
        q = mxforge.quantize(x, dtype)
        return q, ref.dequantize_mx(q.data, q.scales, q.K, MX_ELEM[dtype])
    t = x.to({"bf16": torch.bfloat16, "fp16": torch.float16}[dtype])
    return t, t.float()


def layer_for(inst: Instance, T: int, g: torch.Generator, device: torch.device,
              which: int = 0, skew: str = "random", dims: tuple[int, int] | None = None,
              scale_range: tuple[int, int] | None = None) -> Layer:
    """dims: (H, I) instead of the model's (the instance's flags are kept); scale_range:
    the weights' scale bytes (helpers.make_layer)."""
    shape = shape_for(inst, which)
    if dims is not None:
        shape = dataclasses.replace(shape, H=dims[0], I=dims[1])
    return make_layer(shape, T, g, device, layout=inst.layout or "plain", w_dtype=inst.b, skew=skew,
                      scale_range=scale_range)


def routes(L: Layer, block_m: int, routing: str = "sorted") -> mxforge.SortResult:
    """The layer's routing for the stages: moe_sort's, or direct (moe_routes)."""
    if routing == "direct":
        return mxforge.moe_routes(L.topk_ids, L.topk_weights, L.E, block_m)
    return mxforge.moe_sort(L.topk_ids, L.topk_weights, L.E, block_m)


def check_stage1(inst: Instance, T: int, g: torch.Generator, device: torch.device,
                 which: int = 0, skew: str = "random", dims: tuple[int, int] | None = None,
                 scale_range: tuple[int, int] | None = None, routing: str = "sorted") -> None:
    L = layer_for(inst, T, g, device, which, skew, dims, scale_range)
    a, a_f32 = activation_operand(L.x, inst.a)
    sort = routes(L, inst.block_m, routing)
    out = mxforge.moe_stage1(a, L.w1, sort, inst.activation, out_dtype=inst.out,
                             routed_weight=inst.routed_weight, instance=inst.name)
    want = ref.moe_stage1(a_f32, L.r1, L.topk_ids, L.topk_weights,
                          inst.activation, inst.gate_up, L.b1, inst.routed_weight == "stage1")
    I = want.shape[-1]
    if inst.out == "pk_fp4":
        assert isinstance(out, mxforge.MXTensor)
        assert_requant_close(out, want.reshape(-1, I))
    else:
        err = rel_l2(out.reshape(want.shape), want)
        assert err <= BF16_TOL, f"{inst.name}: rel. L2 {err:.3e} > {BF16_TOL:.3e}"


def check_stage2(inst: Instance, T: int, g: torch.Generator, device: torch.device,
                 which: int = 0, skew: str = "random", dims: tuple[int, int] | None = None,
                 scale_range: tuple[int, int] | None = None, reduce: str = "auto",
                 routing: str = "sorted") -> None:
    """reduce: moe_stage2's ("slots" on an instance that has them: the slot sums)."""
    L = layer_for(inst, T, g, device, which, skew, dims, scale_range)
    k, I = L.shape.topk, L.shape.I
    inter_x = (torch.randn(T * k, I, generator=g, device=g.device) * 2).to(torch.bfloat16).to(device)
    a, a_f32 = activation_operand(inter_x, inst.a)
    sort = routes(L, inst.block_m, routing)
    want = ref.moe_stage2(a_f32.view(T, k, I), L.r2, L.topk_ids, L.topk_weights,
                          L.b2, inst.routed_weight == "stage2")
    # out accumulates (+=): start it from random values of the result's own size, so an
    # instance that overwrote out, or (split-K) lost a split or its finishing add, fails
    scale = float(want.float().std()) if want.numel() > 1 else 1.0
    init = (torch.randn(want.shape, generator=g, device=g.device) * scale).to(
        {"bf16": torch.bfloat16, "fp32": torch.float32}[inst.out]).to(device)
    out = mxforge.moe_stage2(a, L.w2, sort, out=init.clone(), out_dtype=inst.out,
                             routed_weight=inst.routed_weight, instance=inst.name, reduce=reduce)
    err = rel_l2(out, init.float().to(want.device) + want)
    tol = ACCUM_TOL if inst.out == "bf16" else 1e-5
    assert err <= tol, f"{inst.name} ({reduce}): rel. L2 {err:.3e} > {tol:.3e}"


def check_1stage(inst: Instance, T: int, g: torch.Generator, device: torch.device,
                 which: int = 0, skew: str = "random", dims: tuple[int, int] | None = None,
                 scale_range: tuple[int, int] | None = None) -> None:
    L = layer_for(inst, T, g, device, which, skew, dims, scale_range)
    a, a_f32 = activation_operand(L.x, inst.a)
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, L.E, inst.block_m)
    out = mxforge.moe_1stage(a, L.w1, L.w2, sort, inst.activation, out_dtype=inst.out,
                             routed_weight=inst.routed_weight, instance=inst.name)
    ids, tw = L.topk_ids, L.topk_weights
    inter = ref.moe_stage1(a_f32, L.r1, ids, tw, inst.activation, inst.gate_up, L.b1,
                           inst.routed_weight == "stage1")
    inter = inter.to(torch.bfloat16).float()  # the one-stage kernel rounds it like stage 1
    want = ref.moe_stage2(inter, L.r2, ids, tw, L.b2, inst.routed_weight == "stage2")
    err = rel_l2(out, want)
    tol = ACCUM_TOL if inst.out == "bf16" else BF16_TOL
    assert err <= tol, f"{inst.name}: rel. L2 {err:.3e} > {tol:.3e}"


CHECKS = {"moe_stage1": check_stage1, "moe_stage2": check_stage2, "moe_1stage": check_1stage}


def check_fused_moe(model: str, T: int, a_dtype: str, stage2_input: str, path: str,
                    g: torch.Generator, device: torch.device, skew: str = "random",
                    E: int | None = None, layout: str = "plain", stage2_reduce: str = "auto",
                    expert_mask: torch.Tensor | None = None, routing: str = "auto") -> torch.Tensor:
    shape = PRESETS[model]
    L = make_layer(shape, T, g, device, layout=layout, skew=skew, E=E)
    y = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, activation=shape.activation,
                          a_dtype=a_dtype, stage2_input=stage2_input, path=path,
                          stage2_reduce=stage2_reduce, expert_mask=expert_mask, routing=routing)
    assert y.shape == (T, shape.H) and y.dtype == torch.bfloat16
    want = ref.fused_moe(L.x, L.r1, L.r2, L.topk_weights, L.topk_ids,
                         shape.activation, shape.gate_up, L.b1, L.b2, a_dtype=a_dtype,
                         stage2_input=stage2_input, out_dtype=torch.float32,
                         expert_mask=expert_mask)
    if T:
        err = rel_l2(y, want)
        tol = ACCUM_TOL if stage2_input == "bf16" else 3e-2
        assert err <= tol, (f"{model} T={T} {a_dtype}->{stage2_input} {path} {stage2_reduce} "
                            f"{routing}: rel. L2 {err:.3e}")
    return y


# ---- direct routing (moe_routes) ------------------------------------------------------------

DIRECT_CASES = ("random", "duplicates", "masked", "all_on_one_expert")


def direct_case(L: Layer, case: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's routing, changed for a direct-routing edge case: token 0's routes all on
    one expert ("duplicates"); an expert masked plus ids outside [0, E) ("masked": dropped,
    as moe_sort drops them); every route on expert 1 ("all_on_one_expert": after a sort,
    T * topk rows of one expert in several blocks; direct, a block per route)."""
    ids, mask = L.topk_ids.clone(), None
    if case == "duplicates":
        ids[0, :] = ids[0, 0]
    elif case == "masked":
        mask = torch.ones(L.E, dtype=torch.int32, device=ids.device)
        mask[ids[0, 0]] = 0
        ids.view(-1)[1] = L.E
        ids.view(-1)[-1] = -1
    elif case == "all_on_one_expert":
        ids.fill_(1)
    return ids, mask


def check_direct_routing(inst: Instance, T: int, case: str, g: torch.Generator,
                         device: torch.device) -> None:
    """The instance on direct routing (a block per route) against itself on moe_sort's
    blocks and against the reference. Stage 1: the same bytes (an output row depends on its
    own A row only, whichever rows share its block), except where split-K partial sums meet
    in atomic adds (their order is the GPU's: BF16_TOL); its zero_buf is zeroed. Stage 2
    adds routes into out in the GPU's order: within ACCUM_TOL of the sorted run and of the
    reference."""
    L = layer_for(inst, T, g, device)
    ids, mask = direct_case(L, case)
    sort = mxforge.moe_sort(ids, L.topk_weights, L.E, inst.block_m, expert_mask=mask, validate=False)
    direct = mxforge.moe_routes(ids, L.topk_weights, L.E, inst.block_m, expert_mask=mask,
                                validate=False)
    k = L.shape.topk
    if inst.op == "moe_stage1":
        a, a_f32 = activation_operand(L.x, inst.a)
        zero = torch.full((T, 7), 3.0, device=device)
        got = [mxforge.moe_stage1(a, L.w1, s, inst.activation, out_dtype=inst.out,
                                  routed_weight=inst.routed_weight, instance=inst.name,
                                  zero_buf=z) for s, z in ((sort, None), (direct, zero))]
        assert bool((zero == 0).all()), f"{inst.name}: zero_buf not zeroed"
        # (rows of dropped routes are never written: compare the kept ones)
        kept = ((ids >= 0) & (ids < L.E)).view(-1)
        if mask is not None:
            kept &= mask[ids.clamp(0, L.E - 1)].view(-1).bool()
        pick = [(o.data, o.scales) if isinstance(o, mxforge.MXTensor) else (o,) for o in got]
        for x, y in zip(*pick):
            x, y = x[kept], y[kept]
            if inst.split_k == 1 or device.type == "cpu":
                assert torch.equal(x, y), f"{inst.name} {case}: direct and sorted rows differ"
            else:
                assert rel_l2(x, y) <= BF16_TOL, f"{inst.name} {case}"
        want = ref.moe_stage1(a_f32, L.r1, ids, L.topk_weights, inst.activation, inst.gate_up,
                              L.b1, inst.routed_weight == "stage1", expert_mask=mask)
        I = want.shape[-1]
        if inst.out == "pk_fp4":
            assert_requant_close(got[1], want.reshape(-1, I), rows=kept.cpu())
        else:
            err = rel_l2(got[1][kept], want.reshape(-1, I)[kept])
            assert err <= BF16_TOL, f"{inst.name} {case}: rel. L2 {err:.3e}"
    else:
        inter_x = (torch.randn(T * k, L.shape.I, generator=g, device=g.device) * 2).to(
            torch.bfloat16).to(device)
        a, a_f32 = activation_operand(inter_x, inst.a)
        want = ref.moe_stage2(a_f32.view(T, k, -1), L.r2, ids, L.topk_weights, L.b2,
                              inst.routed_weight == "stage2", expert_mask=mask)
        got = [mxforge.moe_stage2(a, L.w2, s, out_dtype=inst.out, routed_weight=inst.routed_weight,
                                  instance=inst.name) for s in (sort, direct)]
        tol = ACCUM_TOL if inst.out == "bf16" else 1e-5
        assert rel_l2(got[1], got[0]) <= tol and rel_l2(got[1], want) <= tol, f"{inst.name} {case}"
