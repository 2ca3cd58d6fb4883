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


def check_stage1(inst: Instance, T: int, g: torch.Generator, device: torch.device,
                 which: int = 0, skew: str = "random", dims: tuple[int, int] | None = None,
                 scale_range: tuple[int, int] | None = None) -> None:
    L = layer_for(inst, T, g, device, which, skew, dims, scale_range)
    a, a_f32 = activation_operand(L.x, inst.a)
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, L.E, inst.block_m)
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
                 scale_range: tuple[int, int] | None = None, reduce: str = "auto") -> None:
    """reduce: moe_stage2's ("slots" on an instance that has them: the slot sums)."""
    L = layer_for(inst, T, g, device, which, skew, dims, scale_range)
    k, I = L.shape.topk, L.shape.I
    inter_x = (torch.randn(T * k, I, generator=g, device=g.device) * 2).to(torch.bfloat16).to(device)
    a, a_f32 = activation_operand(inter_x, inst.a)
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, L.E, inst.block_m)
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
                    expert_mask: torch.Tensor | None = None) -> torch.Tensor:
    shape = PRESETS[model]
    L = make_layer(shape, T, g, device, layout=layout, skew=skew, E=E)
    y = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, activation=shape.activation,
                          a_dtype=a_dtype, stage2_input=stage2_input, path=path,
                          stage2_reduce=stage2_reduce, expert_mask=expert_mask)
    assert y.shape == (T, shape.H) and y.dtype == torch.bfloat16
    want = ref.fused_moe(L.x, L.r1, L.r2, L.topk_weights, L.topk_ids,
                         shape.activation, shape.gate_up, L.b1, L.b2, a_dtype=a_dtype,
                         stage2_input=stage2_input, out_dtype=torch.float32,
                         expert_mask=expert_mask)
    if T:
        err = rel_l2(y, want)
        tol = ACCUM_TOL if stage2_input == "bf16" else 3e-2
        assert err <= tol, (f"{model} T={T} {a_dtype}->{stage2_input} {path} {stage2_reduce}: "
                            f"rel. L2 {err:.3e}")
    return y
