"""Every cpu instance against the torch reference, at the model shapes, plus edge cases."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import mxforge
from mxforge import reference as ref
from mxforge.dispatch import instances, slots_supported
from mxforge.ops import TOKEN_LIMIT

from .helpers import ACCUM_TOL, make_layer, random_mx, rel_l2, routing
from .op_checks import CHECKS, DIRECT_CASES, MX_ELEM, check_direct_routing, check_fused_moe
from mxforge.models import PRESETS

CPU = torch.device("cpu")
GEMMS = [i for i in instances(target="cpu") if i.op in CHECKS]


@pytest.fixture(autouse=True)
def poisoned_outputs():
    mxforge.ops.poison_outputs(True)
    yield
    mxforge.ops.poison_outputs(False)


# ---- quantization ------------------------------------------------------------------------

@pytest.mark.parametrize("inst", instances(target="cpu", op="mxfp4_quant"), ids=lambda i: i.name)
@pytest.mark.parametrize("K", [32, 100, 192, 384, 2880])
def test_quant_bit_exact(inst, K, rng):
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[inst.a]
    x = torch.randn(7, K, generator=rng) * torch.logspace(-6, 6, 7).unsqueeze(1)
    x[1, 3] = 0.0
    x[2] = 0.0                                   # an all-zero row
    x[3, 5] = float("nan")                       # NaN poisons its block only
    x[4, K - 1] = float("inf")
    x = x.to(dt)
    for mode in mxforge.ROUNDING_MODES:
        q = mxforge.quantize(x, inst.out, rounding=mode, instance=inst.name)
        want_q, want_s = ref.quantize_mx(x, mode, MX_ELEM[inst.out])
        assert torch.equal(q.scales, want_s), f"scales differ ({mode})"
        assert torch.equal(q.data, want_q), f"codes differ ({mode})"
        assert q.scales[3, 5 // 32] == 0xFF and q.scales[4, (K - 1) // 32] == 0xFF


@pytest.mark.parametrize("inst", instances(target="cpu", op="mxfp4_dequant"), ids=lambda i: i.name)
@pytest.mark.parametrize("K", [64, 90, 192, 2880])
def test_dequant_exact(inst, K, rng):
    q, s = random_mx(1, 9, K, rng, MX_ELEM[inst.a], scale_lo=100, scale_hi=150)
    s[0, 2, 0] = 0xFF
    mx = mxforge.MXTensor(q[0], s[0], inst.a, K)
    out_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[inst.out]
    y = mxforge.dequantize(mx, out_dtype, instance=inst.name)
    want = ref.dequantize_mx(q[0], s[0], K, MX_ELEM[inst.a], torch.float32).to(out_dtype)
    assert torch.equal(y.isnan(), want.isnan()) and y.isnan()[2, :32].all()
    assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(want))


# ---- packing -------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["shuffled", "pairbits"])
@pytest.mark.parametrize("N, K", [(384, 3072), (3072, 192), (5760, 2880), (50, 100)])
def test_pack_matches_reference_and_inverts(N, K, layout, rng):
    E = 3
    q, s = random_mx(E, N, K, rng)
    w = mxforge.mx_weight(q, s, K, layout)
    want_w, want_s = ref.pack_weights(q, s, K, layout)
    assert torch.equal(w.data, want_w) and torch.equal(w.scales, want_s)
    q2, s2 = mxforge.unpack_weight(w)
    assert torch.equal(q2, q) and torch.equal(s2, s)


@pytest.mark.parametrize("R, C", [(32, 8), (192, 6), (384, 12), (2880, 90), (7, 3)])
def test_shuffle_scales(R, C, rng):
    s = torch.randint(0, 255, (R, C), generator=rng, dtype=torch.uint8)
    sh = mxforge.shuffle_scales(s)
    assert torch.equal(sh, ref.shuffle_scales(s).reshape(-1))
    assert torch.equal(mxforge.unshuffle_scales(sh, R, C), s)


# ---- sorting -------------------------------------------------------------------------------

def assert_sort_equal(got: mxforge.SortResult, want: tuple) -> None:
    for name, g, w in zip(("sorted_ids", "sorted_weights", "sorted_expert_ids", "num_valid_ids"),
                          got[:4], want):
        assert torch.equal(g.cpu(), w), f"{name} differs"


def assert_blocks_fit_the_grid(got: mxforge.SortResult, T: int, k: int, block_m: int) -> None:
    """The GPU GEMMs launch min(T*k, sorted blocks) CTAs along x (grid_blocks in
    csrc/mxforge/gpu/moe.cuh): every block below num_valid_ids[0] / block_m must hold a route,
    so there can be no more than T*k of them."""
    nb = int(got.num_valid_ids[0]) // block_m
    assert nb <= min(T * k, got.sorted_expert_ids.numel())
    tokens = got.sorted_ids[: nb * block_m].view(nb, block_m) & (TOKEN_LIMIT - 1)
    assert bool((tokens < T).any(dim=1).all())


@pytest.mark.parametrize("T, E, k, block_m", [(0, 8, 2, 16), (1, 256, 8, 16), (3, 256, 8, 32),
                                              (64, 128, 4, 64), (513, 32, 4, 128), (200, 7, 3, 16)])
@pytest.mark.parametrize("skew", ["random", "one_expert"])
def test_sort_matches_reference(T, E, k, block_m, skew, rng):
    ids, w = routing(T, E, k, rng, skew)
    got = mxforge.moe_sort(ids, w, E, block_m)
    assert_sort_equal(got, ref.moe_sort(ids, w, E, block_m))
    nv = int(got.num_valid_ids[0])
    assert nv % block_m == 0 and int(got.num_valid_ids[1]) == T
    assert_blocks_fit_the_grid(got, T, k, block_m)


def test_sort_expert_mask_and_zero_buf(rng):
    T, E, k = 33, 16, 4
    ids, w = routing(T, E, k, rng)
    mask = (torch.arange(E) % 3 != 0).to(torch.int32)
    buf = torch.full((T, 64), 7.0)
    got = mxforge.moe_sort(ids, w, E, 32, expert_mask=mask, zero_buf=buf)
    assert_sort_equal(got, ref.moe_sort(ids, w, E, 32, mask))
    assert (buf == 0).all()
    used = got.sorted_expert_ids[: int(got.num_valid_ids[0]) // 32]
    assert not (used % 3 == 0).any()
    assert_blocks_fit_the_grid(got, T, k, 32)


def test_sort_rejects_out_of_range_ids(rng):
    ids, w = routing(4, 8, 2, rng)
    ids[2, 1] = 8
    with pytest.raises(mxforge.InputError, match=r"expert id 8 outside \[0, 8\)"):
        mxforge.moe_sort(ids, w, 8, 16)
    got = mxforge.moe_sort(ids, w, 8, 16, validate=False)  # dropped, as the reference does
    assert_sort_equal(got, ref.moe_sort(ids, w, 8, 16))
    assert_blocks_fit_the_grid(got, 4, 2, 16)


@pytest.mark.parametrize("inst", instances(target="cpu", op="fused_quant_sort"), ids=lambda i: i.name)
@pytest.mark.parametrize("T", [1, 5, 130])
def test_fused_quant_sort_is_byte_identical(inst, T, rng):
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[inst.a]
    x = (torch.randn(T, 3072, generator=rng) * 3).to(dt)
    ids, w = routing(T, 256, 8, rng)
    q, s = mxforge.fused_quant_sort(x, ids, w, 256, 32, inst.out, instance=inst.name)
    q_ref = mxforge.quantize(x, inst.out)
    s_ref = mxforge.moe_sort(ids, w, 256, 32)
    assert torch.equal(q.data, q_ref.data) and torch.equal(q.scales, q_ref.scales)
    assert_sort_equal(s, tuple(t.cpu() for t in s_ref[:4]))
    q2, s2 = mxforge.fused_quant_sort(q_ref, ids, w, 256, 32)  # pre-quantized: sort only
    assert q2 is q_ref
    assert_sort_equal(s2, tuple(t.cpu() for t in s_ref[:4]))


# ---- GEMM stages: every instance --------------------------------------------------------

@pytest.mark.parametrize("inst", GEMMS, ids=lambda i: i.name)
def test_gemm_instance(inst, rng):
    which = sum(map(ord, inst.name))  # spread instances over TP=8 (K/32=6) and TP=4 (12)
    CHECKS[inst.op](inst, 3, rng, CPU, which)


@pytest.mark.parametrize("op", ["moe_stage1", "moe_stage2"])
@pytest.mark.parametrize("skew, T", [("one_expert", 40), ("random", 1)])
def test_gemm_skewed_and_single_token(op, skew, T, rng):
    inst = next(i for i in GEMMS if i.op == op and i.a == "pk_fp4" and i.block_m == 32
                and i.layout == "plain" and not i.bias and i.out == "bf16")
    CHECKS[op](inst, T, rng, CPU, 0, skew)


# ---- stage 2 reducing by route rows (reduce="slots") ---------------------------------------

SLOTS = [i for i in GEMMS if slots_supported(i)]
# (one instance per activation dtype, block_m and bias: the cpu code is the same for all)
SLOTS_SAMPLE = list({(i.a, i.block_m, i.bias): i for i in SLOTS}.values())


def test_the_ci_set_has_slot_instances():
    assert {i.block_m for i in SLOTS} >= {16, 32, 64}, [i.name for i in SLOTS]


@pytest.mark.parametrize("inst", SLOTS_SAMPLE, ids=lambda i: i.name)
def test_stage2_slots(inst, rng):
    # (out accumulates from random values: check_stage2)
    CHECKS["moe_stage2"](inst, 5, rng, CPU, sum(map(ord, inst.name)), reduce="slots")


def _stage2_operands(rng, T: int = 37, E: int | None = None):
    inst = next(i for i in SLOTS if i.a == "bf16" and i.b == "pk_fp4" and i.block_m == 64)
    L = make_layer(PRESETS["minimax-m2.1-tp8"], T, rng, CPU, E=E)
    inter = (torch.randn(T * L.shape.topk, L.shape.I, generator=rng) * 2).to(torch.bfloat16)
    return inst, L, inter


def test_stage2_slots_and_atomic_write_over_or_add(rng):
    """out=None and accumulate=False write out whole (the outputs are poisoned first: any
    element left unwritten is NaN); accumulate=True adds; both reductions agree with the
    reference and with each other."""
    inst, L, inter = _stage2_operands(rng)
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, L.E, inst.block_m)
    want = ref.moe_stage2(inter.float(), L.r2, L.topk_ids, L.topk_weights)
    got = {}
    for how in ("slots", "atomic"):
        y = mxforge.moe_stage2(inter, L.w2, sort, instance=inst.name, reduce=how)
        assert rel_l2(y, want) <= ACCUM_TOL, how
        five = torch.full_like(y, 5.0)
        over = mxforge.moe_stage2(inter, L.w2, sort, out=five.clone(), instance=inst.name,
                                  reduce=how, accumulate=False)
        assert torch.equal(over, y), how
        added = mxforge.moe_stage2(inter, L.w2, sort, out=five.clone(), instance=inst.name, reduce=how)
        assert rel_l2(added, want + 5.0) <= ACCUM_TOL, how
        got[how] = y
    # (the two differ only in rounding: slots round each route's row and the sum, the cpu
    # target's adds round k times; which is closer to the reference varies with the data)
    assert rel_l2(got["slots"], got["atomic"]) <= ACCUM_TOL


def test_stage2_slots_drop_masked_and_out_of_range_routes(rng):
    """Routes the sort dropped (a masked expert, an id outside [0, E)) have no slot row
    (the buffer is poisoned): the sum must skip them by the sorter's own rule."""
    inst, L, inter = _stage2_operands(rng, T=80, E=16)
    ids = L.topk_ids.clone()
    ids[3, 2], ids[40, 0] = 16, -1
    mask = (torch.arange(16) % 5 != 1).to(torch.int32)
    sort = mxforge.moe_sort(ids, L.topk_weights, 16, inst.block_m, expert_mask=mask, validate=False)
    want = ref.moe_stage2(inter.float(), L.r2, ids, L.topk_weights, expert_mask=mask)
    y = mxforge.moe_stage2(inter, L.w2, sort, instance=inst.name, reduce="slots")
    assert rel_l2(y, want) <= ACCUM_TOL


@pytest.mark.parametrize("T", [1, 64])
def test_fused_moe_slots(T, rng):
    """stage2_reduce="slots" (with an expert mask) against the reference, at T = 1 (block_m
    16) and 64 (block_m 64)."""
    mask = (torch.arange(16) % 4 != 2).to(torch.int32)
    for how in ("slots", "auto", "atomic"):
        check_fused_moe("minimax-m2.1-tp8", T, "pk_fp4", "bf16", "two_stage", rng, CPU, E=16,
                        stage2_reduce=how, expert_mask=mask)


def test_slots_errors(rng):
    inst, L, inter = _stage2_operands(rng, T=5)
    # a split-K instance (its splits' partial sums are added: no slot rows)
    shape = dataclasses.replace(PRESETS["minimax-m2.1-tp8"], bias=True)
    Lb = make_layer(shape, 5, rng, CPU, E=16)
    split = next(i for i in GEMMS if i.op == "moe_stage2" and i.split_k > 1 and i.a == "bf16"
                 and i.bias and i.out == "bf16")
    sort = mxforge.moe_sort(Lb.topk_ids, Lb.topk_weights, 16, split.block_m)
    with pytest.raises(mxforge.InputError, match=rf"'slots' needs .*split_k 1.*{split.name} has "
                                                 rf"split_k {split.split_k}"):
        mxforge.moe_stage2(inter, Lb.w2, sort, instance=split.name, reduce="slots")
    with pytest.raises(mxforge.InputError, match=r"reduce 'sum' \(allowed: auto, atomic, slots\)"):
        mxforge.moe_stage2(inter, L.w2, sort, reduce="sum")
    sort64 = mxforge.moe_sort(L.topk_ids, L.topk_weights, L.E, inst.block_m)
    bare = sort64._replace(topk_ids=None)
    with pytest.raises(mxforge.InputError, match="must carry its topk_ids"):
        mxforge.moe_stage2(inter, L.w2, bare, instance=inst.name, reduce="slots")
    y = mxforge.moe_stage2(inter, L.w2, bare, instance=inst.name)  # auto: the atomic adds
    assert torch.isfinite(y).all()
    with pytest.raises(mxforge.InputError, match=r"stage2_reduce 'both' \(allowed: auto, atomic, slots\)"):
        mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, stage2_reduce="both")
    with pytest.raises(mxforge.InputError, match="one-stage kernel adds"):
        mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, path="one_stage",
                          stage2_reduce="slots")


# ---- the whole layer --------------------------------------------------------------------

@pytest.mark.parametrize("model", ["minimax-m2.1-tp8", "minimax-m2.1-tp4", "gpt-oss-120b"])
@pytest.mark.parametrize("a_dtype, stage2_input", [("pk_fp4", "bf16"), ("pk_fp4", "pk_fp4"),
                                                    ("bf16", "bf16")])
def test_fused_moe_model_shapes(model, a_dtype, stage2_input, rng):
    check_fused_moe(model, 4, a_dtype, stage2_input, "two_stage", rng, CPU)


@pytest.mark.parametrize("model", ["minimax-m2.1-tp8", "gpt-oss-120b"])
def test_fused_moe_one_stage(model, rng):
    check_fused_moe(model, 2, "pk_fp4", "bf16", "one_stage", rng, CPU)


@pytest.mark.parametrize("T", [0, 1])
def test_fused_moe_tiny_batches(T, rng):
    y = check_fused_moe("minimax-m2.1-tp8", T, "pk_fp4", "bf16", "auto", rng, CPU)
    assert y.shape == (T, 3072)


def test_fused_moe_all_tokens_one_expert_and_empty_experts(rng):
    # 24 tokens over 16 experts with k=8, every token on expert 15: most experts get no rows
    check_fused_moe("minimax-m2.1-tp8", 24, "pk_fp4", "bf16", "two_stage", rng, CPU,
                    skew="one_expert", E=16)


@pytest.mark.parametrize("layout", ["shuffled", "pairbits"])
def test_fused_moe_packed_layout(layout, rng):
    check_fused_moe("minimax-m2.1-tp8", 3, "pk_fp4", "bf16", "two_stage", rng, CPU,
                    layout=layout, E=32)


def test_fused_moe_nan_row_stays_in_its_row(rng):
    shape = PRESETS["minimax-m2.1-tp8"]
    L = make_layer(shape, 4, rng, CPU, E=16)
    L.x[1, 10] = float("nan")
    y = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids)
    want = ref.fused_moe(L.x, L.r1, L.r2, L.topk_weights, L.topk_ids, out_dtype=torch.float32,
                         stage2_input="bf16")
    assert y[1].isnan().all() and want[1].isnan().all()
    ok = torch.tensor([0, 2, 3])
    assert not y[ok].isnan().any()
    assert float((y[ok].double() - want[ok].double()).norm() / want[ok].double().norm()) < 1.6e-2


def test_torch_path_only_by_name(rng):
    shape = PRESETS["minimax-m2.1-tp8"]
    L = make_layer(shape, 2, rng, CPU, E=8)
    y_k = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids)
    y_t = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, impl="torch")
    assert float((y_k.double() - y_t.double()).norm() / y_t.double().norm()) < 1.6e-2
    with pytest.raises(mxforge.InputError, match="impl 'auto'"):
        mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, impl="auto")


# ---- direct routing (moe_routes: no sort launch) ---------------------------------------------
# The cpu target sorts inside the stage (it has no launch to save), so these check the
# contract and its plumbing: the GPU code runs in tests/test_amd.py (emulated, both warp
# sizes) and tests/test_gpu.py.

# (MiniMax-shaped instances: the gpt-oss ones take 15 s each here and run the same code)
DIRECT_SAMPLE = list({(i.op, i.a, i.out, i.split_k > 1): i for i in GEMMS
                      if i.op in ("moe_stage1", "moe_stage2") and not i.bias
                      and i.activation in ("", "silu") and i.gate_up in ("", "concat")}.values())


@pytest.mark.parametrize("inst", DIRECT_SAMPLE, ids=lambda i: i.name)
@pytest.mark.parametrize("case", DIRECT_CASES)
def test_direct_routing_matches_sorted(inst, case, rng):
    check_direct_routing(inst, 4, case, rng, CPU)


@pytest.mark.parametrize("T", [1, 4, 11])
@pytest.mark.parametrize("a_dtype, stage2_input", [("bf16", "bf16"), ("pk_fp4", "pk_fp4")])
def test_fused_moe_direct_routing(T, a_dtype, stage2_input, rng):
    """routing="direct" (the out buffer is poisoned: stage 1 must zero it) and "auto" (direct
    for bf16 activations at T = 1 and 4, sorted at 11) against the reference; T * topk = 8,
    32, 88."""
    for routing in ("direct", "auto", "sorted"):
        check_fused_moe("minimax-m2.1-tp8", T, a_dtype, stage2_input, "two_stage", rng, CPU,
                        routing=routing)


def test_layer_routing_rule(rng):
    from mxforge.ops import layer_routing
    small = make_layer(PRESETS["minimax-m2.1-tp8"], 1, rng, CPU, E=8).w1  # 384 x 3072 per expert
    big = make_layer(PRESETS["gpt-oss-20b"], 1, rng, CPU, E=4).w1  # 5760 x 2880
    # (the routes' w1 elements: T * topk * 1,179,648 here, at most 3 * 2^25 for direct)
    assert layer_routing("auto", small, 8, 8, "bf16") == "direct"  # 75M
    assert layer_routing("auto", small, 10, 8, "bf16") == "direct"  # 94M
    assert layer_routing("auto", small, 11, 8, "bf16") == "sorted"  # 104M
    assert layer_routing("auto", small, 16, 8, "bf16") == "sorted"  # 151M (measured 1.05x)
    assert layer_routing("auto", big, 1, 4, "bf16") == "direct"  # 66M (measured 0.99x)
    assert layer_routing("auto", big, 2, 4, "bf16") == "sorted"  # 133M: many CTAs per route
    assert layer_routing("auto", small, 1, 8, "pk_fp4") == "sorted"  # one quant+sort launch anyway
    assert layer_routing("direct", small, 1, 8, "pk_fp4") == "direct"
    assert layer_routing("direct", big, 300, 4, "bf16") == "direct"  # (asked for: any T)
    assert layer_routing("sorted", small, 1, 8, "bf16") == "sorted"


def test_direct_routing_errors(rng):
    L = make_layer(PRESETS["minimax-m2.1-tp8"], 5, rng, CPU, E=16)
    with pytest.raises(mxforge.InputError, match=r"routing 'fast' \(allowed: auto, sorted, direct\)"):
        mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, routing="fast")
    ids, w = L.topk_ids[:4].contiguous(), L.topk_weights[:4].contiguous()
    with pytest.raises(mxforge.InputError, match=r"expert id 16 outside \[0, 16\)"):
        bad = ids.clone()
        bad[1, 1] = 16
        mxforge.moe_routes(bad, w, 16, 16)
    with pytest.raises(mxforge.InputError, match="block_m 48"):
        mxforge.moe_routes(ids, w, 16, 48)
    with pytest.raises(mxforge.InputError, match=r"topk_weights: shape \[4, 7\], expected \[4, 8\]"):
        mxforge.moe_routes(ids, w[:, :7].contiguous(), 16, 16)
    direct = mxforge.moe_routes(ids, w, 16, 16)
    x = L.x[:4].contiguous()
    with pytest.raises(mxforge.InputError, match="moe_1stage: direct routing .* use moe_sort"):
        mxforge.moe_1stage(x, L.w1, L.w2, direct)
    with pytest.raises(mxforge.InputError, match="routing 'direct' is the two-stage path's"):
        mxforge.fused_moe(x, L.w1, L.w2, w, ids, path="one_stage", routing="direct")
    # stage 1 zeroes a buffer only where no sort launch does
    with pytest.raises(mxforge.InputError, match="zero_buf: moe_stage1 zeroes it under direct routing"):
        mxforge.moe_stage1(x, L.w1, mxforge.moe_sort(ids, w, 16, 16), zero_buf=torch.empty(4, 8))
    # a direct SortResult carries no sorted arrays; its block_m must be the instance's
    s1 = next(i for i in GEMMS if (i.op, i.a, i.b, i.out, i.layout, i.activation, i.gate_up, i.bias) ==
              ("moe_stage1", "bf16", "pk_fp4", "bf16", "plain", "silu", "concat", False)
              and i.routed_weight == "none" and i.block_m != 16)
    with pytest.raises(mxforge.NoInstanceError, match=rf"has block_m {s1.block_m}; this call needs "
                                                      r"block_m in \[16\]"):
        mxforge.moe_stage1(x, L.w1, direct, instance=s1.name)


def test_direct_routing_with_slots_and_masks(rng):
    """routing="direct" with stage2_reduce="slots" (block_m and both stages among the
    instances that take both) and an expert mask, against the reference."""
    mask = (torch.arange(16) % 4 != 2).to(torch.int32)
    for how in ("slots", "atomic"):
        check_fused_moe("minimax-m2.1-tp8", 3, "bf16", "bf16", "two_stage", rng, CPU, E=16,
                        stage2_reduce=how, expert_mask=mask, routing="direct")


@pytest.mark.parametrize("mode", ["auto", "on", "off"])
def test_dependent_launch_per_op(mode, monkeypatch, rng):
    """Programmatic dependent launch is decided per op (ops.dependent_launch) and reaches the
    module's launch entry with every launch: on auto for the ops of a layer on at most
    PDL_AUTO_MAX_TOKENS tokens (all of its launches) and not past it, never for weight
    packing (its quantize is an op on E * N rows); "on" / "off" for every op. The CPU target
    ignores the flag (its results are the reference's either way), so this runs the real
    module with it."""
    from mxforge import _loader, ops
    C = _loader.module()
    seen: list[tuple[str, bool]] = []

    class Recorder:
        def __getattr__(self, name):
            return getattr(C, name)

        def launch(self, index, args, dependent_launch):
            seen.append((type(args).__name__, dependent_launch))
            C.launch(index, args, dependent_launch=dependent_launch)

    monkeypatch.setattr(_loader, "module", lambda: Recorder())
    with ops.dependent_launch_mode(mode):
        limit = ops.PDL_AUTO_MAX_TOKENS
        for T in (1, limit, limit + 1):
            for a_dtype, routing in (("pk_fp4", "auto"), ("bf16", "direct"), ("bf16", "sorted")):
                seen.clear()
                check_fused_moe("minimax-m2.1-tp8", T, a_dtype, "bf16", "two_stage", rng, CPU,
                                E=16, routing=routing)
                want = mode == "on" or (mode == "auto" and T <= limit)
                layer = [s for s in seen if s[0] != "PackArgs"]  # (make_layer packs the weights)
                assert len(layer) >= 2 and all(d == want for _, d in layer), (T, a_dtype, routing, seen)
        seen.clear()
        mxforge.pack_weight(torch.randn(2, 64, 64, generator=rng).to(torch.bfloat16), layout="shuffled")
        packs = [d for kind, d in seen if kind == "PackArgs"]
        assert packs and all(d == (mode == "on") for d in packs), seen
