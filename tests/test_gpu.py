"""sm90 instances against the torch reference on a Hopper GPU (scripts/gpu-check).

Skipped cleanly where there is no Hopper GPU or the module has no sm90 code. The reference
runs on the GPU too (fp32, TF32 off), so every token count up to 8192 stays affordable.
"""
from __future__ import annotations

import os

import pytest
import torch

import mxforge
from mxforge import _loader
from mxforge import reference as ref
from mxforge.dispatch import direct_supported, instances, slots_supported, wgmma_n_loop_runs
from mxforge.models import PRESETS

from .helpers import ACCUM_TOL, make_layer, random_mx, rel_l2, routing
from .op_checks import CHECKS, DIRECT_CASES, MX_ELEM, check_direct_routing, check_fused_moe

pytestmark = pytest.mark.gpu


def _gpu_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    if torch.cuda.get_device_capability()[0] != 9:
        return f"device is sm_{''.join(map(str, torch.cuda.get_device_capability()))}, not Hopper"
    try:
        targets = _loader.manifest()["targets"]
    except mxforge.MxforgeError as e:
        return str(e)
    return None if "sm90" in targets else f"module built for {targets}, not sm90"


REASON = _gpu_reason()
if REASON:
    pytest.skip(f"sm90 tests: {REASON}", allow_module_level=True)

GPU = torch.device("cuda")
TOKENS = [1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
if os.environ.get("MXFORGE_GPU_TOKENS"):
    TOKENS = [int(t) for t in os.environ["MXFORGE_GPU_TOKENS"].split(",")]
GEMMS = [i for i in instances(target="sm90") if i.op in CHECKS]


@pytest.fixture(autouse=True)
def poisoned_outputs():
    mxforge.ops.poison_outputs(True)
    yield
    mxforge.ops.poison_outputs(False)


@pytest.fixture
def grng():
    seed = int.from_bytes(os.urandom(4), "little")
    g = torch.Generator(device=GPU).manual_seed(seed)
    return g


@pytest.mark.parametrize("inst", instances(target="sm90", op="mxfp4_quant"), ids=lambda i: i.name)
def test_quant(inst, grng):
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[inst.a]
    for K in (32, 100, 192, 384, 2880, 3072):
        x = (torch.randn(67, K, generator=grng, device=GPU) *
             torch.logspace(-5, 5, 67, device=GPU).unsqueeze(1))
        x[3, 5], x[4, K - 1], x[5] = float("nan"), float("inf"), 0.0
        x = x.to(dt)
        for mode in mxforge.ROUNDING_MODES:
            q = mxforge.quantize(x, inst.out, mode, instance=inst.name)
            wq, ws = ref.quantize_mx(x.cpu(), mode, MX_ELEM[inst.out])
            assert torch.equal(q.scales.cpu(), ws) and torch.equal(q.data.cpu(), wq), (K, mode)
        # the same rows one element into a wider tensor: row starts not aligned for the
        # lanes' vector loads (the element-by-element path)
        xs = torch.cat([x[:, :1], x], 1)[:, 1:]
        assert xs.data_ptr() % 8 != 0 and torch.allclose(xs, x, rtol=0, atol=0, equal_nan=True)
        q = mxforge.quantize(xs, inst.out, instance=inst.name)
        wq, ws = ref.quantize_mx(x.cpu(), "round_up", MX_ELEM[inst.out])
        assert torch.equal(q.scales.cpu(), ws) and torch.equal(q.data.cpu(), wq), (K, "offset rows")
    # more blocks than kQuantLaneBlocks (quant.cuh): one thread per block, not 8 lanes
    x = (torch.randn(1100, 2016, generator=grng, device=GPU) * 50).to(dt)
    x[7, 100] = float("nan")
    for mode in ("even", "round_up"):  # (round_up last: the offset rows below)
        q = mxforge.quantize(x, inst.out, mode, instance=inst.name)
        wq, ws = ref.quantize_mx(x.cpu(), mode, MX_ELEM[inst.out])
        assert torch.equal(q.scales.cpu(), ws) and torch.equal(q.data.cpu(), wq), ("many blocks", mode)
    q = mxforge.quantize(torch.cat([x[:, :1], x], 1)[:, 1:], inst.out, instance=inst.name)
    assert torch.equal(q.scales.cpu(), ws) and torch.equal(q.data.cpu(), wq), "many blocks, offset rows"


@pytest.mark.parametrize("inst", instances(target="sm90", op="mxfp4_dequant"), ids=lambda i: i.name)
def test_dequant(inst, grng):
    q, s = random_mx(1, 33, 2880, grng, MX_ELEM[inst.a], 100, 150)
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[inst.out]
    y = mxforge.dequantize(mxforge.MXTensor(q[0], s[0], inst.a, 2880), dt, instance=inst.name)
    want = ref.dequantize_mx(q[0].cpu(), s[0].cpu(), 2880, MX_ELEM[inst.a]).to(dt)
    assert torch.equal(y.cpu(), want)


@pytest.mark.parametrize("layout", ["shuffled", "pairbits"])
def test_pack_and_shuffle(layout, grng):
    for N, K in ((384, 3072), (3072, 192), (5760, 2880), (50, 100)):
        q, s = random_mx(2, N, K, grng)
        w = mxforge.mx_weight(q, s, K, layout)
        wq, ws = ref.pack_weights(q.cpu(), s.cpu(), K, layout)
        assert torch.equal(w.data.cpu(), wq) and torch.equal(w.scales.cpu(), ws)
        q2, s2 = mxforge.unpack_weight(w)
        assert torch.equal(q2, q) and torch.equal(s2, s)
    sc = torch.randint(0, 255, (2880, 90), dtype=torch.uint8, device=GPU, generator=grng)
    assert torch.equal(mxforge.shuffle_scales(sc).cpu(), ref.shuffle_scales(sc.cpu()).reshape(-1))


@pytest.mark.parametrize("E, k", [(256, 8), (128, 4)])
@pytest.mark.parametrize("block_m", [16, 32, 64, 128])
def test_sort_matches_cpu_reference(E, k, block_m, grng):
    for T in [0] + TOKENS:
        for skew in ("random", "one_expert"):
            ids, w = routing(T, E, k, grng, skew)
            got = mxforge.moe_sort(ids, w, E, block_m)
            want = ref.moe_sort(ids.cpu(), w.cpu(), E, block_m)
            for g_, w_ in zip(got[:4], want):
                assert torch.equal(g_.cpu(), w_), (T, skew)


@pytest.mark.parametrize("inst", instances(target="sm90", op="fused_quant_sort"), ids=lambda i: i.name)
def test_fused_quant_sort_byte_identical(inst, grng):
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[inst.a]
    for T in TOKENS:
        x = (torch.randn(T, 3072, generator=grng, device=GPU) * 3).to(dt)
        ids, w = routing(T, 256, 8, grng)
        q, s = mxforge.fused_quant_sort(x, ids, w, 256, 32, inst.out, instance=inst.name)
        q_ref, s_ref = mxforge.quantize(x, inst.out), mxforge.moe_sort(ids, w, 256, 32)
        assert torch.equal(q.data, q_ref.data) and torch.equal(q.scales, q_ref.scales), T
        for a, b in zip(s[:4], s_ref[:4]):
            assert torch.equal(a, b), T


@pytest.mark.parametrize("inst", GEMMS, ids=lambda i: i.name)
def test_gemm_instance_all_token_counts(inst, grng):
    for T in TOKENS:
        CHECKS[inst.op](inst, T, grng, GPU, which=T)
    CHECKS[inst.op](inst, 256, grng, GPU, which=0, skew="one_expert")


# Direct routing (moe_routes: a block per route, read from topk_ids; no sort launch) on
# every stage instance, one edge case each in turn (op_checks.direct_case: duplicates, a
# masked expert and ids outside [0, E), every route on one expert), at T * topk = 32 routes
# (a decode count: fused_moe's auto takes direct routing up to 80 routes on MiniMax TP=8's
# shape, 4 on gpt-oss', ops.layer_routing; the layer test below runs all of them) and T = 1.
@pytest.mark.parametrize("inst", [i for i in GEMMS if direct_supported(i)], ids=lambda i: i.name)
def test_gemm_instance_direct_routing(inst, grng):
    from .op_checks import shape_for
    case = DIRECT_CASES[sum(map(ord, inst.name)) % len(DIRECT_CASES)]
    check_direct_routing(inst, 32 // shape_for(inst).topk, case, grng, GPU)
    check_direct_routing(inst, 1, "random", grng, GPU)


def test_direct_routing_needs_a_decode_tile(grng):
    """A prefill tile (b_path smem, wgmma, wgmma_regs) pinned under direct routing: a clear
    error naming it, before any launch (unpinned, the stages pick among the decode tiles)."""
    from .op_checks import activation_operand, shape_for
    inst = next(i for i in GEMMS if i.op == "moe_stage1" and not direct_supported(i))
    L = make_layer(shape_for(inst), 2, grng, GPU, layout=inst.layout or "plain")
    a, _ = activation_operand(L.x, inst.a)
    direct = mxforge.moe_routes(L.topk_ids, L.topk_weights, L.E, inst.block_m)
    with pytest.raises(mxforge.InputError, match=f"instance {inst.name} does not take direct routing"):
        mxforge.moe_stage1(a, L.w1, direct, inst.activation, out_dtype=inst.out,
                           routed_weight=inst.routed_weight, instance=inst.name)


@pytest.mark.parametrize("model", ["minimax-m2.1-tp8", "gpt-oss-120b"])
@pytest.mark.parametrize("a_dtype, stage2_input", [("pk_fp4", "bf16"), ("pk_fp4", "pk_fp4"),
                                                    ("bf16", "bf16")])
@pytest.mark.parametrize("layout", ["plain", "pairbits"])
def test_fused_moe_direct_routing(model, a_dtype, stage2_input, layout, grng):
    """The layer on direct routing (out poisoned: stage 1 zeroes it) at every T that auto
    takes it for (ops.layer_routing: MiniMax TP=8 T <= 10, gpt-oss T = 1), and at two larger
    T (asked for: any T works)."""
    from types import SimpleNamespace

    from mxforge.ops import layer_routing
    sh = PRESETS[model]
    w1 = SimpleNamespace(N=2 * sh.I, K=sh.H)  # (the rule reads w1's N and K only)
    auto = [T for T in range(1, 65) if layer_routing("auto", w1, T, sh.topk, a_dtype="bf16") == "direct"]
    assert auto, f"auto takes direct routing at no T <= 64 for {model}"
    for T in [*auto, 37, 300]:
        check_fused_moe(model, T, a_dtype, stage2_input, "two_stage", grng, GPU, layout=layout,
                        routing="direct")


# Dims that no tile divides: H = 2912 (stage 1 K / 32 = 91, not a multiple of any block_k;
# stage 2 N = 2912, not a multiple of 64 or 128), I = 224 (stage 2 K / 32 = 7; stage 1
# N = 448). The model shapes above are all multiples of 64, so K and N tails, the zero
# fill past K and the partial last k-tile are checked here.
ODD_DIMS = (2912, 224)


@pytest.mark.parametrize("inst", GEMMS, ids=lambda i: i.name)
def test_gemm_instance_odd_dims(inst, grng):
    for T in (1, 37, 300):
        CHECKS[inst.op](inst, T, grng, GPU, dims=ODD_DIMS)


# A bf16 output whose rows are not 16-byte aligned (H = 2900: row pitch % 8 = 4) takes the
# stage-2 epilogue's pair adds instead of its 8-wide reductions (moe.cuh,
# accumulate_epilogue), and on the wgmma tiles the staged epilogue instead of the bf16 rows
# (rows16_epilogue, which the model shapes and H = 2912 take); the model shapes above take
# the reductions.
@pytest.mark.parametrize("inst", [i for i in GEMMS if i.op == "moe_stage2"], ids=lambda i: i.name)
def test_stage2_unaligned_output_rows(inst, grng):
    for T in (37, 300):
        CHECKS[inst.op](inst, T, grng, GPU, dims=(2900, 224))


# Stage 2's N loop on the ring tile (b_path wgmma with n_tiles > 1: gemm.cuh,
# gemm_mainloop_wgmma_tiles) at K = 160 (a partial last k-tile of the resident activations)
# and N = 2912 (a partial last N tile; CTAs with fewer tiles than n_tiles); the model
# shapes above run it at K = 192 and, block_m 64, the odd dims at K = 224. The loop runs
# there (dispatch.wgmma_n_loop_runs, moe.cuh's stage2_tiles_per_cta), so this is not the
# one-tile path that K = 224 takes at block_m 128.
@pytest.mark.parametrize("inst", [i for i in GEMMS if i.b_path == "wgmma" and i.n_tiles > 1], ids=lambda i: i.name)
def test_stage2_wgmma_n_loop(inst, grng):
    assert wgmma_n_loop_runs(inst, 160)
    for T in (1, 37, 300, 2048):
        CHECKS[inst.op](inst, T, grng, GPU, which=T, dims=(2912, 160))
    CHECKS[inst.op](inst, 512, grng, GPU, which=0, skew="one_expert", dims=(2912, 160))


# Weight scales above 2^1 take a second bf16 multiply (mx.cuh, E2m1PairScale) and, in the
# swapped decode tile, their own copy of the main loop (gemm.cuh, SwapMma::run); the
# scales above stay near 1/sqrt(K). Here scale bytes 118 .. 136 (2^-9 .. 2^9).
@pytest.mark.parametrize("inst", GEMMS, ids=lambda i: i.name)
def test_gemm_instance_wide_scales(inst, grng):
    for T in (1, 129):
        CHECKS[inst.op](inst, T, grng, GPU, which=T, scale_range=(118, 136))


# Stage 2 reducing by route rows (reduce="slots": moe.cuh, slots_epilogue and the slot sum
# kernel) on every instance that has them: the model shapes, odd dims, unaligned output rows
# (H = 2900: the sum's element stores), out accumulating from random values (check_stage2).
SLOTS = [i for i in GEMMS if slots_supported(i)]


@pytest.mark.parametrize("inst", SLOTS, ids=lambda i: i.name)
def test_stage2_slots(inst, grng):
    for T, dims in ((1, None), (300, None), (2048, None), (37, ODD_DIMS), (129, (2900, 224))):
        CHECKS["moe_stage2"](inst, T, grng, GPU, T, dims=dims, reduce="slots")


@pytest.mark.parametrize("model", ["minimax-m2.1-tp8", "gpt-oss-120b"])
@pytest.mark.parametrize("a_dtype, stage2_input", [("pk_fp4", "bf16"), ("pk_fp4", "pk_fp4"),
                                                    ("bf16", "bf16")])
@pytest.mark.parametrize("T", [1, 64, 2048])
def test_fused_moe_slots_deterministic(model, a_dtype, stage2_input, T, grng):
    """stage2_reduce="slots" (block_m >= 64 at every T): the layer is bit-for-bit the same
    twice (no atomics anywhere: the shipped block_m >= 64 stage-1 instances have split_k 1),
    within the tolerance of the reference, with half the experts masked too."""
    shape = PRESETS[model]
    L = make_layer(shape, T, grng, GPU, layout="pairbits")
    mask = (torch.arange(shape.E, device=GPU) % 2 == 0).to(torch.int32)
    for m in (None, mask):
        def run() -> torch.Tensor:
            return mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids,
                                     activation=shape.activation, a_dtype=a_dtype,
                                     stage2_input=stage2_input, stage2_reduce="slots", expert_mask=m)
        y = run()
        assert torch.equal(y, run())
        want = ref.fused_moe(L.x, L.r1, L.r2, L.topk_weights, L.topk_ids, shape.activation,
                             shape.gate_up, L.b1, L.b2, a_dtype=a_dtype, stage2_input=stage2_input,
                             out_dtype=torch.float32, expert_mask=m)
        err = rel_l2(y, want)
        assert err <= (ACCUM_TOL if stage2_input == "bf16" else 3e-2), err


@pytest.mark.parametrize("model", sorted(PRESETS))
@pytest.mark.parametrize("a_dtype, stage2_input", [("pk_fp4", "bf16"), ("pk_fp4", "pk_fp4"),
                                                    ("bf16", "bf16"), ("fp8", "bf16")])
@pytest.mark.parametrize("layout", ["plain", "pairbits"])
def test_fused_moe(model, a_dtype, stage2_input, layout, grng):
    """The layer (path and routing auto: the tuned table's picks where it has rows for the
    preset, the heuristic's elsewhere) at every T of TOKENS, on every model preset."""
    for T in TOKENS:
        check_fused_moe(model, T, a_dtype, stage2_input, "auto", grng, GPU, layout=layout)


# The one-stage path (path="one_stage", ops.one_stage_layer: the sort zeroes out, then
# moe_1stage) on the shapes that have one-stage instances (MiniMax: instances/models.yaml,
# decode_1stage), both layouts.
@pytest.mark.parametrize("model", ["minimax-m2.1-tp8", "minimax-m2.1-tp4"])
@pytest.mark.parametrize("layout", ["plain", "pairbits"])
@pytest.mark.parametrize("a_dtype", ["pk_fp4", "bf16"])
def test_fused_moe_one_stage(model, layout, a_dtype, grng):
    for T in TOKENS:
        check_fused_moe(model, T, a_dtype, "bf16", "one_stage", grng, GPU, layout=layout)


# quant+sort as the split pair (quantize, then moe_sort) where the tuned table says so (a
# fused_quant_sort row saying split: dispatch.quant_sort_split): the split pair ran, and the
# layer matches the reference as the fused launch's does.
@pytest.mark.parametrize("model", ["minimax-m2.1-tp8", "gpt-oss-120b"])
@pytest.mark.parametrize("a_dtype", ["pk_fp4", "fp8"])
def test_fused_moe_split_quant_sort(model, a_dtype, grng, tuned_file, monkeypatch):
    from mxforge import dispatch, ops
    shape = PRESETS[model]
    tuned_file.write_text(",".join(dispatch.TUNED_COLUMNS) + "\n" +
                          f"sm90,fused_quant_sort,bf16,,{a_dtype},,,,0,,0,{shape.H},{shape.E},{shape.topk},"
                          f"{1 << 30},{dispatch.SPLIT}\n")
    calls = []
    real = ops.quantize
    monkeypatch.setattr(ops, "quantize", lambda *a, **k: calls.append(1) or real(*a, **k))
    for T in (1, 64, 512):
        check_fused_moe(model, T, a_dtype, "bf16", "two_stage", grng, GPU)
        assert len(calls) == 1, T
        calls.clear()


def test_fused_moe_cuda_graph(grng):
    from .helpers import make_layer
    from mxforge.models import PRESETS
    L = make_layer(PRESETS["minimax-m2.1-tp8"], 16, grng, GPU)
    eager = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids)  # warm-up
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids)
    graph.replay()
    torch.cuda.synchronize()
    err = float((y.double() - eager.double()).norm() / eager.double().norm())
    assert err < 1e-2  # bf16 atomics accumulate in another order


# (the one-stage path where it has instances: MiniMax, a bf16 intermediate; auto routes bf16
# activations directly at MiniMax T = 1 and gpt-oss T = 1 (ops.layer_routing), and direct
# routing is asked for pk_fp4 ones)
BACK_TO_BACK = [(m, T, a, s2, path)
                for m, T in [("minimax-m2.1-tp8", 1), ("gpt-oss-120b", 1), ("gpt-oss-120b", 4), ("minimax-m2.1-tp8", 64)]
                for a, s2 in [("pk_fp4", "pk_fp4"), ("bf16", "bf16")]
                for path in ("auto", "one_stage", "direct")
                if path == "auto" or (path == "one_stage" and s2 == "bf16" and m.startswith("minimax"))
                or (path == "direct" and a == "pk_fp4" and T * PRESETS[m].topk <= 32)]


@pytest.mark.parametrize("model, T, a_dtype, stage2_input, path", BACK_TO_BACK)
@pytest.mark.parametrize("delay_ns", [0, 20_000])
def test_fused_moe_layers_back_to_back_in_a_graph(model, T, a_dtype, stage2_input, delay_ns, path, grng):
    """Programmatic dependent launch (device.h, wait_prior_grids; on here at every T, as
    mxforge.dependent_launch_mode("on"); the default, auto, takes it at decode, T <= 8): a kernel may
    start before the one before it has finished and must wait before it reads what that one
    (or any earlier one) wrote. Three layers, each on the previous one's
    output, captured in one CUDA graph with nothing between their kernels (outputs not
    poisoned, as in production), replayed on two inputs: each layer's output matches the
    reference on the input that layer got. A kernel reading early would see the previous
    layer's or replay's data; with delay_ns the GEMMs' CTAs sleep between letting the next
    kernel launch and writing their results, which widens that window. On an H200
    (scripts/gpu-mutation, benchmarks/2026-11-30-h200-pdl/checks/v2-*) removing the wait of
    stage 1, of stage 2 or of the sort kernel each failed 4 to 16 of these cases; a first
    version whose stage 2 read its routes before waiting failed at gpt-oss-120b T = 1.
    path one_stage: the sort and the one-stage kernel (MiniMax, a bf16 intermediate); path
    direct: two stages on direct routing (stage 1 zeroes the layer's out, after its wait)."""
    from .helpers import ACCUM_TOL, make_layer, rel_l2
    from mxforge.models import PRESETS
    mxforge.ops.poison_outputs(False)
    shape = PRESETS[model]
    L = make_layer(shape, T, grng, GPU)

    def layers(x: torch.Tensor) -> list[torch.Tensor]:
        ys = []
        for _ in range(3):
            x = mxforge.fused_moe(x, L.w1, L.w2, L.topk_weights, L.topk_ids, activation=shape.activation,
                                  a_dtype=a_dtype, stage2_input=stage2_input,
                                  path="two_stage" if path == "direct" else path,
                                  routing="direct" if path == "direct" else "auto")
            ys.append(x)
        return ys

    x = L.x.clone()
    mxforge.ops.delay_gemm_epilogues(delay_ns)
    try:
        with mxforge.dependent_launch_mode("on"):
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                layers(x)  # warm-up
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                ys = layers(x)
    finally:
        mxforge.ops.delay_gemm_epilogues(0)
    tol = ACCUM_TOL if stage2_input == "bf16" else 3e-2
    for replay in range(2):
        x.copy_((torch.randn(x.shape, generator=grng, device=GPU) * 2).to(torch.bfloat16))
        graph.replay()
        torch.cuda.synchronize()
        inputs = [x] + ys[:-1]
        for layer, (xin, y) in enumerate(zip(inputs, ys)):
            want = ref.fused_moe(xin, L.r1, L.r2, L.topk_weights, L.topk_ids, shape.activation,
                                 shape.gate_up, L.b1, L.b2, a_dtype=a_dtype,
                                 stage2_input=stage2_input, out_dtype=torch.float32)
            err = rel_l2(y, want)
            assert err <= tol, f"replay {replay}, layer {layer}: rel. L2 {err:.3e}"


def _programmatic_edges(graph: torch.cuda.CUDAGraph) -> int:
    """Edges of a captured CUDA graph that are programmatic dependencies (a kernel launched
    with programmatic dependent launch after another), read with the driver's
    cuGraphGetEdges_v2 (CUgraphEdgeData: from_port, to_port, type, 5 reserved bytes)."""
    import ctypes
    get = ctypes.CDLL("libcuda.so.1").cuGraphGetEdges_v2
    get.argtypes = [ctypes.c_void_p] * 4 + [ctypes.POINTER(ctypes.c_size_t)]
    get.restype = ctypes.c_int
    raw = ctypes.c_void_p(graph.raw_cuda_graph())
    n = ctypes.c_size_t(0)
    assert get(raw, None, None, None, ctypes.byref(n)) == 0
    src, dst = (ctypes.c_void_p * n.value)(), (ctypes.c_void_p * n.value)()
    data = (ctypes.c_uint8 * (8 * n.value))()
    assert get(raw, src, dst, data, ctypes.byref(n)) == 0
    return sum(1 for i in range(n.value) if data[8 * i + 2] != 0 or data[8 * i] != 0)


_PDL_LIMIT = mxforge.ops.PDL_AUTO_MAX_TOKENS


@pytest.mark.parametrize("mode, T, wanted", [("auto", 1, True), ("auto", _PDL_LIMIT, True),
                                             ("auto", _PDL_LIMIT + 1, False), ("off", 1, False),
                                             ("on", 64, True)])
def test_dependent_launch_reaches_the_launches(mode, T, wanted, grng):
    """mxforge.set_dependent_launch's decision (per op, ops.dependent_launch) reaches the
    kernels' launches: a fused_moe layer captured in a CUDA graph has programmatic edges
    between its kernels where it is allowed and none where it is not."""
    if not hasattr(torch.cuda.CUDAGraph, "raw_cuda_graph"):
        pytest.skip("this torch's CUDAGraph has no keep_graph / raw_cuda_graph")
    shape = PRESETS["minimax-m2.1-tp8"]
    L = make_layer(shape, T, grng, GPU)
    with mxforge.dependent_launch_mode(mode):
        for a_dtype in ("pk_fp4", "bf16"):
            def layer() -> torch.Tensor:
                return mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids,
                                         activation=shape.activation, a_dtype=a_dtype)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                layer()  # warm-up
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph(keep_graph=True)
            with torch.cuda.graph(graph):
                layer()
            edges = _programmatic_edges(graph)
            assert (edges > 0) == wanted, f"{a_dtype}: {edges} programmatic edges"


# ---- torch integration: opcheck, CUDA-graph capture of every op, torch.compile -------------

# Ops whose GPU results depend on the order of atomic additions (stage 2's bf16 atomics,
# split-K's fp32 atomics) are compared within the accumulation tolerance; the rest exactly.
EXACT_OPS = ("quantize", "dequantize", "mx_pack", "moe_sort", "fused_quant_sort")


@pytest.fixture(scope="module")
def gpu_cases():
    from .torch_cases import op_cases
    g = torch.Generator(device=GPU).manual_seed(int.from_bytes(os.urandom(4), "little"))
    return {c.name: c for c in op_cases(16, g, GPU)}


def _assert_same(name, got, want):
    from .helpers import ACCUM_TOL, rel_l2
    for a, b in zip(got, want):
        if name in EXACT_OPS or a.dtype == torch.uint8:
            assert torch.equal(a, b), name
        else:
            assert rel_l2(a, b) < ACCUM_TOL, name


@pytest.mark.parametrize("name", ["quantize", "dequantize", "mx_pack", "moe_sort",
                                  "fused_quant_sort", "moe_stage1", "moe_stage2", "moe_1stage",
                                  "fused_moe"])
def test_op_cuda_graph_and_opcheck(gpu_cases, name):
    """Each op: opcheck with CUDA tensors; captured in a CUDA graph, its outputs poisoned,
    then replayed twice: the replay recomputes every output exactly as eager does (no host
    sync, nothing frozen at capture time)."""
    from .helpers import ACCUM_TOL
    c = gpu_cases[name]
    eager = [t.clone() for t in c.run()]
    if name in EXACT_OPS:
        torch.library.opcheck(c.op, c.args)
    else:  # eager and traced calls may add their atomics in another order
        scale = max(float(t.float().abs().max()) for t in eager if t.is_floating_point())
        torch.library.opcheck(c.op, c.args, rtol=ACCUM_TOL, atol=ACCUM_TOL * scale)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        c.run()  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        res = c.op(*c.args)
    outs = (c.accumulates,) if c.accumulates is not None else (res if isinstance(res, tuple) else (res,))
    for _ in range(2):
        for t in outs:
            if c.accumulates is not None:
                t.zero_()  # the op adds into out
            else:
                t.view(torch.uint8).fill_(0xFF)  # poison: replay must rewrite every byte
        graph.replay()
        torch.cuda.synchronize()
        _assert_same(name, outs, eager)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compile_fused_moe(mode, grng):
    """torch.compile with inductor, fullgraph (no graph break); reduce-overhead also runs
    the compiled graph under CUDA graphs."""
    from .helpers import ACCUM_TOL, make_layer, rel_l2
    from mxforge.models import PRESETS
    L = make_layer(PRESETS["gpt-oss-120b"], 8, grng, GPU)

    def layer(x, topk_weights, topk_ids):
        return mxforge.fused_moe(x, L.w1, L.w2, topk_weights, topk_ids, activation="swiglu_oai")

    compiled = torch.compile(layer, fullgraph=True, mode=mode)
    eager = layer(L.x, L.topk_weights, L.topk_ids)
    for _ in range(3):
        got = compiled(L.x, L.topk_weights, L.topk_ids)
        torch.cuda.synchronize()
        assert rel_l2(got, eager) < ACCUM_TOL


def test_operands_on_two_devices_are_rejected(grng):
    """CPU and CUDA operands mixed: a clear error before any kernel sees a foreign pointer."""
    from .helpers import make_layer
    from mxforge.models import PRESETS
    L = make_layer(PRESETS["minimax-m2.1-tp8"], 4, grng, GPU, E=16)
    cpu = torch.device("cpu")
    with pytest.raises(mxforge.InputError, match=r"topk_ids: on cpu, expected cuda"):
        mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights.to(cpu), L.topk_ids.to(cpu))
    with pytest.raises(mxforge.InputError, match=r"topk_weights: on cpu, expected cuda"):
        mxforge.moe_sort(L.topk_ids, L.topk_weights.to(cpu), 16, 32)
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, 16, 32)
    with pytest.raises(mxforge.InputError, match=r"a: on cpu, weights on cuda"):
        mxforge.moe_stage1(L.x.to(cpu), L.w1, sort)
    with pytest.raises(mxforge.InputError, match=r"x: on cpu, topk_ids on cuda"):
        mxforge.fused_quant_sort(L.x.to(cpu), L.topk_ids, L.topk_weights, 16, 32)
