"""Bad input to every public op gives a clear error before any kernel runs, or the
reference's result (T = 0, NaN/Inf rows). One table, one case per row; docs/reliability.md
reports the count.

Each error case names the exception type and a regex its message must match: the argument,
what was wrong with it, and what is allowed. "meta" tensors stand in for "a tensor on another
device" (a CUDA tensor where the other operands are on the CPU, or the reverse): no kernel
may ever see a pointer from another device. Those cases call the op's kernel (mxforge.ops)
directly, because through torch.ops a meta tensor selects the op's fake implementation, as
torch intends (shape inference); a real CPU/CUDA mix reaches the kernel and these checks,
which test_gpu.py shows with CUDA tensors.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch

import mxforge
from mxforge import dispatch, ops
from mxforge import reference as ref
from mxforge.errors import InputError, NoInstanceError, TargetUnavailableError
from mxforge.models import PRESETS

from .helpers import ACCUM_TOL, make_layer, rel_l2

CPU = torch.device("cpu")
META = torch.device("meta")
E, T, BM = 16, 5, 32


@pytest.fixture(scope="module")
def D() -> SimpleNamespace:
    """A small valid MiniMax-like layer (H = 3072, I = 192, 16 experts, top-8) on the CPU."""
    g = torch.Generator().manual_seed(int.from_bytes(__import__("os").urandom(4), "little"))
    L = make_layer(PRESETS["minimax-m2.1-tp8"], T, g, CPU, E=E)
    q = mxforge.quantize(L.x)
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, E, BM)
    inter = mxforge.moe_stage1(q, L.w1, sort)
    return SimpleNamespace(L=L, x=L.x, ids=L.topk_ids, tw=L.topk_weights, w1=L.w1, w2=L.w2,
                           q=q, sort=sort, inter=inter, H=3072, I=192)


def _first(t: torch.Tensor, value: int) -> torch.Tensor:
    """t with its first element set to value."""
    t = t.clone()
    t.view(-1)[0] = value
    return t


def _w(w: mxforge.MoeWeight, **changes: Any) -> mxforge.MoeWeight:
    return dataclasses.replace(w, **changes)


# (id, call, exception, message regex)
Case = tuple[str, Callable[[SimpleNamespace], Any], type, str]
CASES: list[Case] = [
    # quantize
    ("quantize/int-dtype", lambda d: mxforge.quantize(d.ids), InputError, r"activation dtype torch.int32"),
    ("quantize/1-D", lambda d: mxforge.quantize(d.x[0]), InputError, r"x: expected a 2-D tensor"),
    ("quantize/not-a-tensor", lambda d: mxforge.quantize([[1.0]]), InputError, r"x: expected a torch.Tensor, got list"),
    ("quantize/strided-rows", lambda d: mxforge.quantize(d.x.t()), InputError, r"last dimension must be contiguous"),
    ("quantize/unknown-dtype", lambda d: mxforge.quantize(d.x, "fp6"), InputError, r"dtype 'fp6' \(allowed: pk_fp4, fp8\)"),
    ("quantize/unknown-rounding", lambda d: mxforge.quantize(d.x, rounding="nearest"), InputError, r"rounding 'nearest' \(allowed: round_up, floor, ceil, even\)"),
    ("quantize/other-device", lambda d: ops.quantize(d.x.to(META)), TargetUnavailableError, r"tensors on meta: no mxforge target runs there"),
    ("quantize/unknown-instance", lambda d: mxforge.quantize(d.x, instance="cpu_mxfp4_quant_bf16_ofp6"), NoInstanceError, r"cpu_mxfp4_quant_bf16_ofp6"),
    # dequantize and MXTensor
    ("dequantize/not-mx", lambda d: mxforge.dequantize(d.x), InputError, r"q: expected an MXTensor, got Tensor"),
    ("dequantize/fp16-out", lambda d: mxforge.dequantize(d.q, torch.float16), InputError, r"dequantize dtype torch.float16 \(allowed"),
    ("mxtensor/wrong-width", lambda d: mxforge.MXTensor(d.q.data[:, :-1], d.q.scales, "pk_fp4", d.H), InputError, r"MXTensor.data: shape \[5, 1535\], expected \[\*, 1536\]"),
    ("mxtensor/scale-rows", lambda d: mxforge.MXTensor(d.q.data, d.q.scales[:-1], "pk_fp4", d.H), InputError, r"MXTensor.scales: shape \[4, 96\], expected \[5, 96\]"),
    ("mxtensor/unknown-dtype", lambda d: mxforge.MXTensor(d.q.data, d.q.scales, "int4", d.H), InputError, r"MXTensor dtype 'int4' \(allowed"),
    ("mxtensor/scale-device", lambda d: mxforge.MXTensor(d.q.data, d.q.scales.to(META), "pk_fp4", d.H), InputError, r"MXTensor.scales: on meta, expected cpu"),
    # weights
    ("mx_weight/float-codes", lambda d: mxforge.mx_weight(d.w1.data.float(), d.w1.scales, d.H), InputError, r"q: dtype torch.float32, expected torch.uint8"),
    ("mx_weight/scale-shape", lambda d: mxforge.mx_weight(d.w1.data, d.w1.scales[:, :-1], d.H), InputError, r"scales: shape \[16, 383, 96\], expected \[16, 384, 96\]"),
    ("mx_weight/unknown-layout", lambda d: mxforge.mx_weight(d.w1.data, d.w1.scales, d.H, "tiled"), InputError, r"layout 'tiled' \(allowed: plain, shuffled, pairbits\)"),
    ("mx_weight/fp8-shuffled", lambda d: mxforge.mx_weight(torch.zeros(2, 32, 64, dtype=torch.uint8), torch.zeros(2, 32, 2, dtype=torch.uint8), 64, "shuffled", "fp8"), InputError, r"layout shuffled exists for pk_fp4 weights only"),
    ("mx_weight/bias-shape", lambda d: mxforge.mx_weight(d.w1.data, d.w1.scales, d.H, bias=torch.zeros(E, 7)), InputError, r"bias: shape \[16, 7\], expected \[16, 384\]"),
    ("pack_weight/gate-up", lambda d: mxforge.pack_weight(torch.zeros(2, 64, 64), gate_up="split"), InputError, r"gate_up 'split' \(allowed: concat, interleaved"),
    ("pack_weight/2-D", lambda d: mxforge.pack_weight(torch.zeros(64, 64)), InputError, r"w: shape \[64, 64\], expected \[\*, \*, \*\]"),
    ("moeweight/relabelled-layout", lambda d: _w(mxforge.pack_weight(torch.zeros(2, 200, 64), layout="shuffled"), layout="plain"), InputError, r"MoeWeight.data: shape \[2, 28672\] holds 57344 bytes; pk_fp4 \[E=2, N=200, K=64\] in layout plain needs \[2, ...\] with 6400 bytes per expert"),
    ("moeweight/truncated-data", lambda d: _w(d.w1, data=d.w1.data[:, :-1].contiguous()), InputError, r"MoeWeight.data: shape \[16, 383, 1536\] .* needs"),
    ("moeweight/other-device-scales", lambda d: _w(d.w1, scales=d.w1.scales.to(META)), InputError, r"MoeWeight.scales: on meta, expected cpu"),
    ("moeweight/bias-dtype", lambda d: _w(d.w1, bias=torch.zeros(E, 384, dtype=torch.bfloat16)), InputError, r"MoeWeight.bias: dtype torch.bfloat16, expected torch.float32"),
    ("moeweight/unknown-dtype", lambda d: _w(d.w1, dtype="fp6"), InputError, r"MoeWeight dtype 'fp6' \(allowed: pk_fp4, fp8, bf16\)"),
    ("unpack_weight/dense", lambda d: mxforge.unpack_weight(mxforge.pack_weight(torch.zeros(1, 32, 32), "bf16")), InputError, r"dense weights have no MX packing"),
    ("unshuffle_scales/float", lambda d: mxforge.unshuffle_scales(torch.zeros(4), 2, 2), InputError, r"scales: dtype torch.float32, expected torch.uint8"),
    # routing and sorting
    ("moe_sort/int64-ids", lambda d: mxforge.moe_sort(d.ids.long(), d.tw, E, BM), InputError, r"topk_ids: dtype torch.int64, expected torch.int32"),
    ("moe_sort/negative-id", lambda d: mxforge.moe_sort(_first(d.ids, -1), d.tw, E, BM), InputError, r"expert id -1 outside \[0, 16\)"),
    ("moe_sort/id-too-large", lambda d: mxforge.moe_sort(d.ids + E, d.tw, E, BM), InputError, r"expert id \d+ outside \[0, 16\)"),
    ("moe_sort/weights-shape", lambda d: mxforge.moe_sort(d.ids, d.tw[:, :-1], E, BM), InputError, r"topk_weights: shape \[5, 7\], expected \[5, 8\]"),
    ("moe_sort/weights-dtype", lambda d: mxforge.moe_sort(d.ids, d.tw.bfloat16(), E, BM), InputError, r"topk_weights: dtype torch.bfloat16, expected torch.float32"),
    ("moe_sort/weights-device", lambda d: ops.moe_sort(d.ids, d.tw.to(META), E, BM), InputError, r"topk_weights: on meta, expected cpu"),
    ("moe_sort/block-m", lambda d: mxforge.moe_sort(d.ids, d.tw, E, 48), InputError, r"block_m 48 \(allowed: 16, 32, 64, 128\)"),
    ("moe_sort/no-experts", lambda d: mxforge.moe_sort(d.ids, d.tw, 0, BM), InputError, r"E = 0: need at least one expert"),
    ("moe_sort/topk-0", lambda d: mxforge.moe_sort(d.ids[:, :0], d.tw[:, :0], E, BM), InputError, r"top-k 0 outside \[1, 64\]"),
    ("moe_sort/ids-transposed", lambda d: mxforge.moe_sort(d.ids.t().contiguous().t(), d.tw, E, BM), InputError, r"topk_ids: not contiguous"),
    ("moe_sort/mask-shape", lambda d: mxforge.moe_sort(d.ids, d.tw, E, BM, expert_mask=torch.ones(E + 1, dtype=torch.int32)), InputError, r"expert_mask: shape \[17\], expected \[16\]"),
    ("fused_quant_sort/rows", lambda d: mxforge.fused_quant_sort(d.x[:-1], d.ids, d.tw, E, BM), InputError, r"x: 4 rows, topk_ids has 5"),
    ("fused_quant_sort/mx-rows", lambda d: mxforge.fused_quant_sort(mxforge.quantize(d.x[:-1]), d.ids, d.tw, E, BM), InputError, r"x: 4 rows, topk_ids has 5"),
    ("fused_quant_sort/x-device", lambda d: ops.fused_quant_sort(d.x.to(META), d.ids, d.tw, E, BM), InputError, r"x: on meta, topk_ids on cpu"),
    # GEMM stages
    ("stage1/not-a-weight", lambda d: mxforge.moe_stage1(d.q, d.w1.data, d.sort), InputError, r"expected a MoeWeight"),
    ("stage1/not-a-sort", lambda d: mxforge.moe_stage1(d.q, d.w1, tuple(d.sort)), InputError, r"sort: expected a SortResult"),
    ("stage1/forged-sort", lambda d: mxforge.moe_stage1(d.q, d.w1, d.sort._replace(sorted_ids=d.sort.sorted_ids[:-1])), InputError, r"sort.sorted_ids: shape \[\d+\], expected \[\d+\]"),
    ("stage1/sort-experts", lambda d: mxforge.moe_stage1(d.q, d.w1, mxforge.moe_sort(d.ids, d.tw, E + 1, BM)), InputError, r"sort: E = 17, w1 has 16 experts"),
    ("stage1/a-K", lambda d: mxforge.moe_stage1(d.x[:, :-32], d.w1, d.sort), InputError, r"a: shape \[5, 3040\], expected \[5, 3072\]"),
    ("stage1/a-device", lambda d: ops.moe_stage1(d.x.to(META), d.w1, d.sort), InputError, r"a: on meta, weights on cpu"),
    ("stage1/activation", lambda d: mxforge.moe_stage1(d.q, d.w1, d.sort, activation="relu"), NoInstanceError, r"activation=relu"),
    ("stage1/layout-pinned", lambda d: mxforge.moe_stage1(d.q, d.w1, d.sort, instance="cpu_moe_stage1_pk_fp4xpk_fp4_obf16_m32_n64_k128_sk1_silu_concat_rwnone_nobias_shuffled"), NoInstanceError, r"layout"),
    ("stage2/out-shape", lambda d: mxforge.moe_stage2(d.inter, d.w2, d.sort, out=torch.zeros(T, 7, dtype=torch.bfloat16)), InputError, r"out: shape \[5, 7\], expected \[5, 3072\]"),
    ("stage2/out-dtype", lambda d: mxforge.moe_stage2(d.inter, d.w2, d.sort, out=torch.zeros(T, d.H)), InputError, r"out: dtype torch.float32, expected torch.bfloat16"),
    ("stage2/inter-rows", lambda d: mxforge.moe_stage2(d.inter[:-1], d.w2, d.sort), InputError, r"inter: shape \[39, 192\], expected \[40, 192\]"),
    ("stage1/block-m-mismatch", lambda d: mxforge.moe_stage1(d.q, d.w1, d.sort, instance="cpu_moe_stage1_pk_fp4xpk_fp4_obf16_m16_n64_k128_sk1_silu_concat_rwnone_nobias_plain"), (InputError, NoInstanceError), r"block_m"),
    ("1stage/w2-shape", lambda d: mxforge.moe_1stage(d.q, d.w1, d.w1, d.sort), InputError, r"does not follow w1|must match"),
    ("1stage/w2-not-a-weight", lambda d: mxforge.moe_1stage(d.q, d.w1, None, d.sort), InputError, r"w2: expected a MoeWeight .*got NoneType"),
    # the whole layer
    ("fused_moe/fp32-x", lambda d: mxforge.fused_moe(d.x.float(), d.w1, d.w2, d.tw, d.ids), InputError, r"x: dtype torch.float32, expected torch.bfloat16 or torch.float16"),
    ("fused_moe/weights-swapped", lambda d: mxforge.fused_moe(d.x, d.w2, d.w1, d.tw, d.ids), InputError, r"weights do not fit x"),
    ("fused_moe/a-dtype", lambda d: mxforge.fused_moe(d.x, d.w1, d.w2, d.tw, d.ids, a_dtype="int8"), InputError, r"a_dtype 'int8' \(allowed: pk_fp4, fp8, bf16, fp16\)"),
    ("fused_moe/stage2-input", lambda d: mxforge.fused_moe(d.x, d.w1, d.w2, d.tw, d.ids, stage2_input="fp8"), InputError, r"stage2_input 'fp8' \(allowed: bf16, pk_fp4\)"),
    ("fused_moe/routed-weight", lambda d: mxforge.fused_moe(d.x, d.w1, d.w2, d.tw, d.ids, routed_weight="both"), InputError, r"routed_weight 'both' \(allowed: stage1, stage2\)"),
    ("fused_moe/path", lambda d: mxforge.fused_moe(d.x, d.w1, d.w2, d.tw, d.ids, path="fast"), InputError, r"path 'fast' \(allowed: auto, two_stage, one_stage\)"),
    ("fused_moe/one-stage-fp4-inter", lambda d: mxforge.fused_moe(d.x, d.w1, d.w2, d.tw, d.ids, path="one_stage", stage2_input="pk_fp4"), InputError, r"stage2_input must be bf16"),
    ("fused_moe/routing-rows", lambda d: mxforge.fused_moe(d.x, d.w1, d.w2, d.tw[:-1], d.ids[:-1]), InputError, r"topk_ids: 4 rows, x has 5"),
    ("fused_moe/routing-device", lambda d: ops.fused_moe(d.x, d.w1, d.w2, d.tw.to(META), d.ids.to(META)), InputError, r"topk_ids: on meta, expected cpu"),
    ("fused_moe/bias-one-side", lambda d: mxforge.fused_moe(d.x, _w(d.w1, bias=torch.zeros(E, 384)), d.w2, d.tw, d.ids), InputError, r"both have biases or neither"),
    ("fused_moe/id-out-of-range", lambda d: mxforge.fused_moe(d.x, d.w1, d.w2, d.tw, d.ids + E), InputError, r"expert id \d+ outside \[0, 16\)"),
    ("fused_moe/impl", lambda d: mxforge.fused_moe(d.x, d.w1, d.w2, d.tw, d.ids, impl="auto"), InputError, r"impl 'auto' \(allowed: kernel, torch\)"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(D, case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call(D)


# ---- inputs that are valid and must give the reference's result -------------------------

def test_zero_tokens_everywhere(D):
    x0, ids0, tw0 = D.x[:0], D.ids[:0], D.tw[:0]
    q = mxforge.quantize(x0)
    assert q.data.shape == (0, D.H // 2) and q.scales.shape == (0, D.H // 32)
    assert mxforge.dequantize(q).shape == (0, D.H)
    sort = mxforge.moe_sort(ids0, tw0, E, BM)
    for got, want in zip(sort[:4], ref.moe_sort(ids0, tw0, E, BM)):
        assert torch.equal(got, want)
    q2, sort2 = mxforge.fused_quant_sort(x0, ids0, tw0, E, BM)
    assert q2.data.shape == (0, D.H // 2) and torch.equal(sort2.num_valid_ids, sort.num_valid_ids)
    inter = mxforge.moe_stage1(q, D.w1, sort)
    assert inter.shape == (0, D.I)
    assert mxforge.moe_stage2(inter, D.w2, sort).shape == (0, D.H)
    for path in ("auto", "one_stage"):
        assert mxforge.fused_moe(x0, D.w1, D.w2, tw0, ids0, path=path).shape == (0, D.H)


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("a_dtype", ["pk_fp4", "bf16"])
def test_non_finite_row_stays_in_its_row(D, poison, a_dtype):
    """A NaN/Inf activation makes its own token's output non-finite, as in the reference,
    and leaves every other row equal to the reference (no hang, no spill into other rows)."""
    x = D.x.clone()
    x[2, 17] = poison
    y = mxforge.fused_moe(x, D.w1, D.w2, D.tw, D.ids, a_dtype=a_dtype)
    want = ref.fused_moe(x, D.L.r1, D.L.r2, D.tw, D.ids, a_dtype=a_dtype, stage2_input="bf16",
                         out_dtype=torch.float32)
    assert not y[2].isfinite().all() and not want[2].isfinite().all()
    assert torch.equal(y[2].isnan(), want[2].isnan()) or a_dtype == "bf16"
    ok = torch.tensor([0, 1, 3, 4])
    assert y[ok].isfinite().all()
    assert rel_l2(y[ok], want[ok]) < ACCUM_TOL


def test_dropped_routes_match_reference_without_validation(D):
    """validate=False: out-of-range expert ids are dropped as the reference drops them."""
    ids = D.ids.clone()
    ids[1, 0], ids[3, 2] = -1, E + 3
    y = mxforge.fused_moe(D.x, D.w1, D.w2, D.tw, ids, validate=False)
    want = ref.fused_moe(D.x, D.L.r1, D.L.r2, D.tw, ids, stage2_input="bf16", out_dtype=torch.float32)
    assert rel_l2(y, want) < ACCUM_TOL


@pytest.mark.parametrize("name", [
    "cpu_moe_stage1_bf16xpk_fp4_obf16_m32_n64_k128_sk2_silu_concat_rwnone_nobias_plain",
    "cpu_moe_stage2_bf16xpk_fp4_obf16_m32_n64_k64_sk2_rwstage2_bias_plain"])
def test_split_k_instance_refuses_a_short_workspace(monkeypatch, name):
    """The ops size the split-K workspace; an instance handed too little (a caller of the raw
    launch, or a sizing bug) names what it needs instead of writing past it."""
    from .op_checks import layer_for
    inst = next(i for i in dispatch.instances() if i.name == name)
    g = torch.Generator().manual_seed(7)
    L = layer_for(inst, 3, g, CPU, dims=(256, 128))
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, L.E, inst.block_m)
    monkeypatch.setattr(ops, "stage1_workspace_bytes", lambda *a: 0)
    monkeypatch.setattr(ops, "stage2_workspace_bytes", lambda *a: 0)
    with pytest.raises(RuntimeError, match=rf"{name}: workspace_bytes < .*T \* .*N \* 4"):
        if inst.op == "moe_stage1":
            ops.moe_stage1(L.x.bfloat16(), L.w1, sort, inst.activation, instance=name)
        else:
            inter = torch.randn(3 * L.topk_ids.shape[1], 128, generator=g).bfloat16()
            ops.moe_stage2(inter, L.w2, sort, instance=name)


@pytest.mark.parametrize("ns", [-1, 2 ** 31])
def test_gemm_delay_hook_rejects_out_of_range(ns):
    """The test hook's delay travels as a 32-bit kernel argument: out of range is an error
    naming the allowed range, and the setting stays as it was (0)."""
    with pytest.raises(InputError, match=r"delay_gemm_epilogues: ns = .* \(allowed: 0 <= ns < 2\^31\)"):
        ops.delay_gemm_epilogues(ns)
    assert ops._GEMM_DELAY_NS == 0


@pytest.mark.parametrize("value, mode", [(None, "auto"), ("", "auto"), ("auto", "auto"), ("1", "on"),
                                         ("on", "on"), ("0", "off"), ("OFF", "off"), ("2", None),
                                         ("yes", None)])
def test_pdl_env_names_its_allowed_values(monkeypatch, value, mode):
    """MXFORGE_PDL sets the mode of programmatic dependent launch a process starts in; a value
    that is not a setting warns, naming the allowed ones, and gives the default (auto)."""
    import warnings
    if value is None:
        monkeypatch.delenv("MXFORGE_PDL", raising=False)
    else:
        monkeypatch.setenv("MXFORGE_PDL", value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ops.pdl_mode_from_env()
    msgs = [str(w.message) for w in caught]
    if mode is None:
        assert got == "auto"
        assert len(msgs) == 1 and f"MXFORGE_PDL='{value}'" in msgs[0] and "allowed: auto" in msgs[0], msgs
    else:
        assert (got, msgs) == (mode, [])


def test_set_dependent_launch_names_its_modes():
    with pytest.raises(InputError, match=r"dependent launch mode 'yes' \(allowed: auto, on, off\)"):
        ops.set_dependent_launch("yes")
    with pytest.raises(InputError, match=r"dependent launch mode 'yes' \(allowed: auto, on, off\)"):
        with ops.dependent_launch_mode("yes"):
            pass
    start = ops.describe_dependent_launch()
    before = ops.set_dependent_launch("off")
    try:
        assert ops.set_dependent_launch("on") == "off"
    finally:
        ops.set_dependent_launch(before)
    assert ops.describe_dependent_launch() == start


def test_dependent_launch_mode_restores_the_mode_before():
    """mxforge.dependent_launch_mode: the mode for its block, the one before after it, also
    when the block raises."""
    before = ops.set_dependent_launch("off")
    try:
        with mxforge.dependent_launch_mode("on") as was:
            assert was == "off" and ops.dependent_launch(10 ** 6)
            with ops.dependent_launch_mode("auto"):
                assert ops.dependent_launch(1) and not ops.dependent_launch(ops.PDL_AUTO_MAX_TOKENS + 1)
            assert ops.dependent_launch(10 ** 6)
        assert not ops.dependent_launch(1)
        with pytest.raises(ValueError, match="in the block"):
            with ops.dependent_launch_mode("on"):
                raise ValueError("in the block")
        assert not ops.dependent_launch(1)
    finally:
        ops.set_dependent_launch(before)
