"""The ops: validate tensors, select an instance, allocate outputs, launch.

Every op takes torch tensors (CPU tensors run the `cpu` target, CUDA tensors on a Hopper GPU
the `sm90` target), checks dtype, shape, device, contiguity and index ranges, and raises
`InputError` naming the argument and what was expected. Quantized operands travel as
`MXTensor` (activations) and `MoeWeight` (weights): they carry their dtype and layout, so a
pk_fp4 activation can only reach a pk_fp4-activation instance and a weight packed for one
layout can only reach instances built for that layout.
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Union

import torch

from . import _loader
from .dispatch import (STAGE2_REDUCES, Decision, Instance, Key, Shape, by_name, compiled_block_m,
                       direct_supported, no_instance, one_stage_choice, one_tuned_version,
                       quant_sort_split, select, slots_supported, stage2_reduce)
from .errors import InputError, NoInstanceError, TargetUnavailableError

ROUNDING_MODES = ("round_up", "floor", "ceil", "even")
MX_DTYPES = ("pk_fp4", "fp8")
W_DTYPES = ("pk_fp4", "fp8", "bf16")
TORCH_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
OUT_TORCH = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
TOKEN_LIMIT = 1 << 24  # sorted rows encode the token in 24 bits
ROUTINGS = ("auto", "sorted", "direct")
# fused_moe's routing "auto" takes direct routing with 16-bit activations up to this many
# w1 elements over all routes, T * topk * (w1's N * K per expert): ~100M, 53 MB of fp4 weights
# and scales that stage 1 reads (layer_routing; measured on an H200: benchmarks/README.md,
# sessions 35 to 37)
DIRECT_ROUTING_AUTO_ELEMS = 3 << 25


_POISON = False
_GEMM_DELAY_NS = 0
# Programmatic dependent launch on sm90 (csrc/mxforge/device.h): a kernel's CTAs may start
# while the kernel before it on the stream finishes. Modes: "auto" (the default) allows it
# for ops on at most PDL_AUTO_MAX_TOKENS tokens, "on" for every op, "off" for none. The
# environment's MXFORGE_PDL sets the mode a process starts in; set_dependent_launch changes it.
PDL_ENV = "MXFORGE_PDL"
PDL_MODES = ("auto", "on", "off")
_PDL_ENV_VALUES = {"": "auto", "auto": "auto", "on": "on", "1": "on", "off": "off", "0": "off"}
# auto's limit: on an H200 (benchmarks/README.md, sessions 37 and 38), with layers back to
# back in a CUDA graph PDL made every layer measured at T = 1 ... 8 faster (MiniMax TP=8,
# TP=4, gpt-oss-120b, three pipelines: 0.90-0.995x; with a torch kernel between layers
# 0.94-1.01x, one 1.03x reading that four rounds put at 1.00x), but gpt-oss-120b's a16w4
# layer 1.03x slower at T = 16 and its a4w4 layer 1.02-1.04x at T = 32 ... 128 (MiniMax TP=8
# still gained 3 % at T = 16).
PDL_AUTO_MAX_TOKENS = 8


def pdl_mode_from_env() -> str:
    """The mode MXFORGE_PDL names (unset: auto); any other value warns, naming the allowed
    ones, and gives auto."""
    value = os.environ.get(PDL_ENV, "")
    if value.strip().lower() in _PDL_ENV_VALUES:
        return _PDL_ENV_VALUES[value.strip().lower()]
    warnings.warn(f"{PDL_ENV}={value!r} is not a setting (allowed: auto, the default; 1 or on; "
                  "0 or off): programmatic dependent launch stays on auto", stacklevel=2)
    return "auto"


_PDL_MODE = pdl_mode_from_env()


def set_dependent_launch(mode: str) -> str:
    """Set where programmatic dependent launch is allowed (sm90): "auto" (ops on at most
    PDL_AUTO_MAX_TOKENS tokens: decode), "on" or "off"; returns the mode before. It applies
    to launches from then on (a CUDA graph keeps what it captured)."""
    global _PDL_MODE
    if mode not in PDL_MODES:
        raise InputError(f"dependent launch mode {mode!r} (allowed: {', '.join(PDL_MODES)})")
    before, _PDL_MODE = _PDL_MODE, mode
    return before


@contextlib.contextmanager
def dependent_launch_mode(mode: str) -> Iterator[str]:
    """`with dependent_launch_mode("off"):` -- set_dependent_launch(mode) for the block (a bad
    mode raises before it), the mode before restored after it, also when it raises; yields
    the mode before."""
    before = set_dependent_launch(mode)
    try:
        yield before
    finally:
        set_dependent_launch(before)


def describe_dependent_launch() -> str:
    """The mode of programmatic dependent launch now (auto, on, off; set_dependent_launch)."""
    if _PDL_MODE == "auto":
        return f"auto (on at T <= {PDL_AUTO_MAX_TOKENS})"
    return _PDL_MODE


def dependent_launch(tokens: int | None) -> bool:
    """Whether an op on `tokens` tokens launches its kernels with programmatic dependent
    launch allowed; None: an op with no token count (weight packing), on only in mode "on"."""
    if _PDL_MODE != "auto":
        return _PDL_MODE == "on"
    return tokens is not None and tokens <= PDL_AUTO_MAX_TOKENS


def poison_outputs(enabled: bool) -> None:
    """Fill every output the ops allocate with 0xFF bytes (NaN for floats, NaN scales) before
    launching, so a test sees any element a kernel failed to write. Off by default."""
    global _POISON
    _POISON = enabled


def delay_gemm_epilogues(ns: int) -> None:
    """Test hook (sm90): every stage-1 / stage-2 CTA sleeps `ns` nanoseconds after letting
    the next kernel launch (programmatic dependent launch) and before its epilogue writes,
    which widens the window in which a next kernel that read them without waiting would see
    stale data. 0 (the default) in production; no effect on other targets, which launch in
    stream order."""
    global _GEMM_DELAY_NS
    if not 0 <= ns < 2 ** 31:
        raise InputError(f"delay_gemm_epilogues: ns = {ns} (allowed: 0 <= ns < 2^31)")
    _GEMM_DELAY_NS = ns


def _empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = torch.empty(*shape, dtype=dtype, device=device)
    if _POISON and t.numel():
        t.view(torch.uint8).fill_(0xFF)
    return t


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def round_up(a: int, b: int) -> int:
    return cdiv(a, b) * b


# ---- typed operands ---------------------------------------------------------------------

@dataclass(frozen=True)
class MXTensor:
    """MX-quantized rows: `data` uint8 [M, Kp/2] (pk_fp4) or [M, Kp] (fp8 e4m3 bytes),
    `scales` uint8 e8m0 [M, Kp/32], logical length K (Kp = round_up(K, 32))."""
    data: torch.Tensor
    scales: torch.Tensor
    dtype: str
    K: int

    def __post_init__(self) -> None:
        if self.dtype not in MX_DTYPES:
            raise InputError(f"MXTensor dtype {self.dtype!r} (allowed: {', '.join(MX_DTYPES)})")
        kp = round_up(self.K, 32)
        width = kp // 2 if self.dtype == "pk_fp4" else kp
        check("MXTensor.data", self.data, dtypes=(torch.uint8,), shape=(None, width))
        check("MXTensor.scales", self.scales, dtypes=(torch.uint8,),
              shape=(self.data.shape[0], kp // 32), device=self.data.device)

    @property
    def rows(self) -> int:
        return self.data.shape[0]

    @property
    def device(self) -> torch.device:
        return self.data.device


@dataclass(frozen=True)
class MoeWeight:
    """One GEMM's expert weights [E, N, K] packed for `layout`.

    pk_fp4/fp8: `data` uint8 and `scales` uint8 as the layout places them (docs/ops.md);
    bf16: `data` bf16 [E, N, K], no scales. `bias` fp32 [E, N] or None. `gate_up` says how
    w1 stores gate and up rows (None for w2)."""
    data: torch.Tensor
    scales: torch.Tensor | None
    dtype: str
    layout: str
    E: int
    N: int
    K: int
    bias: torch.Tensor | None = None
    gate_up: str | None = None

    def __post_init__(self) -> None:
        """Sizes, dtypes and devices must be what the kernels will read: a weight built by
        hand, or packed for another layout, fails here rather than reading out of bounds."""
        if self.dtype not in W_DTYPES:
            raise InputError(f"MoeWeight dtype {self.dtype!r} (allowed: {', '.join(W_DTYPES)})")
        if self.dtype != "pk_fp4" and self.layout != "plain":
            raise InputError(f"MoeWeight layout {self.layout} exists for pk_fp4 weights only")
        if self.gate_up not in (None, "concat", "interleaved"):
            raise InputError(f"MoeWeight gate_up {self.gate_up!r} (allowed: concat, interleaved, "
                             "None for w2)")
        if min(self.E, self.N, self.K) < 1:
            raise InputError(f"MoeWeight [E={self.E}, N={self.N}, K={self.K}]: every dimension "
                             "must be positive")
        dev = self.data.device
        if self.dtype == "bf16":
            check("MoeWeight.data", self.data, dtypes=(torch.bfloat16,),
                  shape=(self.E, self.N, self.K))
            if self.scales is not None:
                raise InputError("MoeWeight: bf16 weights have no scales")
        else:
            wb, sb = layout_sizes(self.layout, self.N, self.K)
            if self.dtype == "fp8":
                wb *= 2
            for name, t, per_expert in (("data", self.data, wb), ("scales", self.scales, sb)):
                check(f"MoeWeight.{name}", t, dtypes=(torch.uint8,), device=dev)
                if t.dim() < 1 or t.shape[0] != self.E or t.numel() != self.E * per_expert:
                    raise InputError(
                        f"MoeWeight.{name}: shape {list(t.shape)} holds {t.numel()} bytes; "
                        f"{self.dtype} [E={self.E}, N={self.N}, K={self.K}] in layout "
                        f"{self.layout} needs [{self.E}, ...] with {per_expert} bytes per expert "
                        "(packed for another layout or shape?)")
        if self.bias is not None:
            check("MoeWeight.bias", self.bias, dtypes=(torch.float32,), shape=(self.E, self.N),
                  device=dev)

    @property
    def device(self) -> torch.device:
        return self.data.device


Activation = Union[torch.Tensor, MXTensor]


class SortResult(NamedTuple):
    sorted_ids: torch.Tensor
    sorted_weights: torch.Tensor
    sorted_expert_ids: torch.Tensor
    num_valid_ids: torch.Tensor
    T: int
    topk: int
    E: int
    block_m: int
    # the routing it sorted: stage 2's reduction by route rows (reduce="slots") sums the
    # kept routes of each token (None in a SortResult built without them: then no slots)
    topk_ids: torch.Tensor | None = None
    expert_mask: torch.Tensor | None = None
    # direct routing (moe_routes): no sorted arrays (None); block b of the stages is route b
    # alone, read from topk_ids and topk_weights
    topk_weights: torch.Tensor | None = None
    direct: bool = False


# ---- validation -------------------------------------------------------------------------

def check(name: str, t: Any, *, dtypes: tuple[torch.dtype, ...] | None = None,
          shape: tuple[int | None, ...] | None = None, device: torch.device | None = None,
          contiguous: bool = True) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        raise InputError(f"{name}: dtype {t.dtype}, expected {' or '.join(map(str, dtypes))}")
    if shape is not None:
        ok = t.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, t.shape))
        if not ok:
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise InputError(f"{name}: shape {list(t.shape)}, expected {want}")
    if device is not None and t.device != device:
        raise InputError(f"{name}: on {t.device}, expected {device} (all operands on one device)")
    if contiguous and not t.is_contiguous():
        raise InputError(f"{name}: not contiguous (strides {t.stride()}); call .contiguous()")
    return t


def check_rows(name: str, t: torch.Tensor) -> None:
    """2-D activations may have a row stride, but elements of a row must be adjacent."""
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise InputError(f"{name}: expected a 2-D tensor [rows, K], got shape {list(t.shape)}")
    if t.shape[1] > 1 and t.stride(1) != 1:
        raise InputError(f"{name}: the last dimension must be contiguous (strides {t.stride()})")


AMD_ARCHS = ("gfx942", "gfx950")  # targets named by the GPU's arch (codegen/targets.py)


def target_of(device: torch.device) -> str:
    """The target whose instances run on `device` (a clear error where none does)."""
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        return _gpu_target(device.index if device.index is not None else torch.cuda.current_device())
    raise TargetUnavailableError(f"tensors on {device}: no mxforge target runs there "
                                 "(cpu tensors use the cpu target, Hopper CUDA tensors sm90, "
                                 "MI300X/MI355X ROCm tensors gfx942/gfx950)")


@functools.cache
def _gpu_target(index: int) -> str:
    """target_of a GPU, asked of torch once per device (each op's key names its target, a
    layer call asks ~12 times; errors are not cached)."""
    device = torch.device("cuda", index)
    if torch.version.hip:
        # ROCm torch shows AMD GPUs as "cuda" devices; the arch name picks the target
        # ("gfx942:sramecc+:xnack-" -> gfx942). Not exercised here: no AMD GPU to test on.
        arch = torch.cuda.get_device_properties(device).gcnArchName.split(":")[0]
        if arch in AMD_ARCHS:
            return arch
        raise TargetUnavailableError(f"{device} is {arch}; mxforge has AMD code for "
                                     f"{', '.join(AMD_ARCHS)} only")
    major, minor = torch.cuda.get_device_capability(device)
    if major == 9:
        return "sm90"
    raise TargetUnavailableError(f"{device} is sm_{major}{minor}; mxforge has GPU code for "
                                 "sm90 (Hopper) only")


def stream_of(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0


def capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def rounding_index(rounding: str) -> int:
    if rounding not in ROUNDING_MODES:
        raise InputError(f"rounding {rounding!r} (allowed: {', '.join(ROUNDING_MODES)})")
    return ROUNDING_MODES.index(rounding)


def dtype_of(a: Activation) -> str:
    if isinstance(a, MXTensor):
        return a.dtype
    if isinstance(a, torch.Tensor):
        if a.dtype in TORCH_DTYPES:
            return TORCH_DTYPES[a.dtype]
        raise InputError(f"activation dtype {a.dtype}: pass bf16/fp16 tensors, or an MXTensor "
                         "from mxforge.quantize for pk_fp4/fp8 (raw uint8 is ambiguous)")
    raise InputError(f"activation: expected a torch.Tensor or MXTensor, got {type(a).__name__}")


def _launch(decision: Decision | Instance, args: Any) -> None:
    """Launch a selected instance; a Decision carries the token count that decides programmatic
    dependent launch (a bare Instance has none: on only in mode "on")."""
    inst = decision.instance if isinstance(decision, Decision) else decision
    why = _loader.module().availability(inst.target)
    if why is not None:
        raise TargetUnavailableError(f"{inst.name}: target {inst.target} cannot run here: {why}")
    tokens = None
    if isinstance(decision, Decision) and inst.op != "mx_pack":
        tokens = decision.shape.T
    _loader.module().launch(inst.index, args, dependent_launch(tokens))


# ---- quantization -----------------------------------------------------------------------

def _quant_args(C: Any, rows: int, K: int, device: torch.device) -> Any:
    args = C.QuantArgs()
    args.M, args.K, args.stream = rows, K, stream_of(device)
    return args


def quantize(x: torch.Tensor, dtype: str = "pk_fp4", rounding: str = "round_up",
             instance: str | None = None) -> MXTensor:
    """MX-quantize rows of x [M, K] (bf16/fp16/fp32) with 1x32 e8m0 scales."""
    check_rows("x", x)
    if dtype not in MX_DTYPES:
        raise InputError(f"dtype {dtype!r} (allowed: {', '.join(MX_DTYPES)})")
    M, K = x.shape
    key = Key(target_of(x.device), "mxfp4_quant", a=dtype_of(x), out=dtype)
    d = select(key, Shape(T=M, K=K), instance)
    kp = round_up(K, 32)
    q = _empty(M, kp // 2 if dtype == "pk_fp4" else kp, dtype=torch.uint8, device=x.device)
    s = _empty(M, kp // 32, dtype=torch.uint8, device=x.device)
    C = _loader.module()
    args = _quant_args(C, M, K, x.device)
    args.x, args.x_stride = x.data_ptr(), x.stride(0) if M > 1 else K
    args.q, args.q_stride, args.scales, args.scale_stride = q.data_ptr(), q.shape[1], s.data_ptr(), s.shape[1]
    args.rounding = rounding_index(rounding)
    if M:
        _launch(d, args)
    return MXTensor(q, s, dtype, K)


def dequantize(q: MXTensor, dtype: torch.dtype = torch.bfloat16,
               instance: str | None = None) -> torch.Tensor:
    """The inverse of quantize: [M, K] in bf16 or fp32."""
    if not isinstance(q, MXTensor):
        raise InputError(f"q: expected an MXTensor, got {type(q).__name__}")
    out_name = {torch.bfloat16: "bf16", torch.float32: "fp32"}.get(dtype)
    if out_name is None:
        raise InputError(f"dequantize dtype {dtype} (allowed: torch.bfloat16, torch.float32)")
    key = Key(target_of(q.device), "mxfp4_dequant", a=q.dtype, out=out_name)
    d = select(key, Shape(T=q.rows, K=q.K), instance)
    y = _empty(q.rows, q.K, dtype=dtype, device=q.device)
    C = _loader.module()
    args = _quant_args(C, q.rows, q.K, q.device)
    args.y, args.x_stride = y.data_ptr(), q.K
    args.q, args.q_stride = q.data.data_ptr(), q.data.shape[1]
    args.scales, args.scale_stride = q.scales.data_ptr(), q.scales.shape[1]
    if q.rows:
        _launch(d, args)
    return y


# ---- weights ----------------------------------------------------------------------------

def layout_sizes(layout: str, N: int, K: int) -> tuple[int, int]:
    """Bytes per expert of (weights, scales) in a layout (csrc/mxforge/layout.h)."""
    kp = round_up(K, 32)
    if layout in ("plain", "pairbits"):  # (pairbits: plain bytes, bits within words moved)
        return N * kp // 2, N * kp // 32
    if layout == "shuffled":
        np_, kq = round_up(N, 32), round_up(kp, 256)
        return np_ * kq // 2, np_ * kq // 32
    raise InputError(f"layout {layout!r} (allowed: plain, shuffled, pairbits)")


def _pack(src_w: torch.Tensor | None, src_s: torch.Tensor, E: int, N: int, K: int,
          layout: str, direction: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    device = src_s.device
    wb, sb = layout_sizes(layout, N, K)
    pwb, psb = layout_sizes("plain", N, K)
    dst_wb, dst_sb = (wb, sb) if direction == 0 else (pwb, psb)
    dst_w = _empty(E, dst_wb, dtype=torch.uint8, device=device) if src_w is not None else None
    dst_s = _empty(E, dst_sb, dtype=torch.uint8, device=device)
    d = select(Key(target_of(device), "mx_pack", layout=layout), Shape(N=N, K=K, E=E), None)
    C = _loader.module()
    args = C.PackArgs()
    args.src_w = src_w.data_ptr() if src_w is not None else 0
    args.dst_w = dst_w.data_ptr() if dst_w is not None else 0
    args.src_s, args.dst_s = src_s.data_ptr(), dst_s.data_ptr()
    args.E, args.N, args.K, args.direction, args.stream = E, N, K, direction, stream_of(device)
    if E and N:
        _launch(d, args)
    return dst_w, dst_s


def reference_weight(w: MoeWeight) -> Any:
    """The torch reference's view of packed weights (mxforge.reference.WeightRef), unpacked
    by the reference's own torch code, not by a kernel."""
    from . import reference
    if w.scales is None:
        return reference.WeightRef.from_dense(w.data)
    if w.layout == "plain":
        return reference.WeightRef.mx(w.data, w.scales, w.K, "e2m1" if w.dtype == "pk_fp4" else "e4m3")
    return reference.WeightRef.from_packed(w.data, w.scales, w.N, w.K, w.layout)


# ---- sorting ----------------------------------------------------------------------------

def sort_capacity(T: int, topk: int, E: int, block_m: int) -> int:
    return T * topk + E * block_m - topk


def sort_workspace_bytes(target: str, T: int, topk: int, E: int) -> int:
    """Scratch of the GPU sorter: per-expert counters and offsets (csrc/mxforge/gpu/sort.cuh)."""
    return 0 if target == "cpu" else 4 * (2 * E + 2)


def _check_routing(topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int,
                   expert_mask: torch.Tensor | None, validate: bool) -> tuple[int, int]:
    check("topk_ids", topk_ids, dtypes=(torch.int32,), shape=(None, None))
    T, k = topk_ids.shape
    check("topk_weights", topk_weights, dtypes=(torch.float32,), shape=(T, k), device=topk_ids.device)
    if not 1 <= k <= 64:
        raise InputError(f"topk_ids: top-k {k} outside [1, 64]")
    if T >= TOKEN_LIMIT:
        raise InputError(f"topk_ids: {T} tokens; sorted rows encode tokens in 24 bits (< {TOKEN_LIMIT})")
    if E < 1:
        raise InputError(f"E = {E}: need at least one expert")
    if expert_mask is not None:
        check("expert_mask", expert_mask, dtypes=(torch.int32,), shape=(E,), device=topk_ids.device)
    if validate and T and not capturing(topk_ids.device):
        # (one read back to the host: on a GPU it waits for the ids, the one synchronisation
        # an eager call makes; validate=False or graph capture skip it)
        lo, hi = torch.stack(torch.aminmax(topk_ids)).tolist()
        if lo < 0 or hi >= E:
            bad = lo if lo < 0 else hi
            raise InputError(f"topk_ids: expert id {bad} outside [0, {E}) "
                             f"(pass validate=False to drop such routes instead)")
    return T, k


def _sort_args(C: Any, topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int, block_m: int,
               expert_mask: torch.Tensor | None, zero_buf: torch.Tensor | None) -> tuple[Any, SortResult, torch.Tensor]:
    T, k = topk_ids.shape
    device = topk_ids.device
    P = sort_capacity(T, k, E, block_m)
    res = SortResult(_empty(P, dtype=torch.int32, device=device),
                     _empty(P, dtype=torch.float32, device=device),
                     _empty(cdiv(P, block_m), dtype=torch.int32, device=device),
                     _empty(2, dtype=torch.int32, device=device), T, k, E, block_m,
                     topk_ids, expert_mask)
    ws = _empty(max(1, sort_workspace_bytes(target_of(device), T, k, E)), dtype=torch.uint8,
                     device=device)
    a = C.SortArgs()
    a.topk_ids, a.topk_weights = topk_ids.data_ptr(), topk_weights.data_ptr()
    a.expert_mask = expert_mask.data_ptr() if expert_mask is not None else 0
    a.sorted_ids, a.sorted_weights = res.sorted_ids.data_ptr(), res.sorted_weights.data_ptr()
    a.sorted_expert_ids, a.num_valid_ids = res.sorted_expert_ids.data_ptr(), res.num_valid_ids.data_ptr()
    if zero_buf is not None:
        check("zero_buf", zero_buf, device=device)
        a.zero_buf, a.zero_bytes = zero_buf.data_ptr(), zero_buf.numel() * zero_buf.element_size()
    a.workspace, a.workspace_bytes = ws.data_ptr(), ws.numel()
    a.T, a.topk, a.E, a.block_m, a.stream = T, k, E, block_m, stream_of(device)
    return a, res, ws


def _check_block_m(block_m: int) -> None:
    if block_m not in (16, 32, 64, 128):
        raise InputError(f"block_m {block_m} (allowed: 16, 32, 64, 128)")


def moe_sort(topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int, block_m: int,
             expert_mask: torch.Tensor | None = None, zero_buf: torch.Tensor | None = None,
             validate: bool = True) -> SortResult:
    """aiter moe_sorting semantics (docs/ops.md); optionally zeroes `zero_buf`."""
    _check_block_m(block_m)
    T, k = _check_routing(topk_ids, topk_weights, E, expert_mask, validate)
    d = select(Key(target_of(topk_ids.device), "moe_sort"), Shape(T=T, E=E, topk=k), None)
    C = _loader.module()
    args, res, _ws = _sort_args(C, topk_ids, topk_weights, E, block_m, expert_mask, zero_buf)
    _launch(d, args)
    return res


def moe_routes(topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int, block_m: int,
               expert_mask: torch.Tensor | None = None, validate: bool = True) -> SortResult:
    """Direct routing: what moe_stage1 / moe_stage2 take instead of moe_sort's result. Nothing
    runs here: block b of the stages is route b alone (its expert topk_ids[b]), which a CTA
    reads in one round trip, so a decode layer runs without the sort launch. Each route's
    row is the one the sorted blocks give, bit for bit; an expert's weights are read once
    per route instead of once per block, so this is for decode (fused_moe's routing="auto"
    takes it up to DIRECT_ROUTING_AUTO_ELEMS w1 elements over the routes with 16-bit
    activations: layer_routing). block_m is the
    instances' (each block pads one route to block_m rows). docs/ops.md, "Direct routing"."""
    _check_block_m(block_m)
    T, k = _check_routing(topk_ids, topk_weights, E, expert_mask, validate)
    return SortResult(None, None, None, None, T, k, E, block_m, topk_ids, expert_mask,
                      topk_weights, True)


def quant_sort_key(target: str, x_dtype: str, out: str) -> Key:
    """The key of fused_quant_sort: x's dtype in, the MX dtype out (its tuned rows also say
    whether fused_moe runs the fused launch or the split pair: dispatch.quant_sort_split)."""
    return Key(target, "fused_quant_sort", a=x_dtype, out=out)


def fused_quant_sort(x: Activation, topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int,
                     block_m: int, dtype: str = "pk_fp4", rounding: str = "round_up",
                     expert_mask: torch.Tensor | None = None, zero_buf: torch.Tensor | None = None,
                     validate: bool = True, instance: str | None = None) -> tuple[MXTensor, SortResult]:
    """Quantize x and sort the routes in one entry (byte-identical to quantize + moe_sort).
    A pre-quantized MXTensor x takes the sort-only path."""
    _check_block_m(block_m)
    T, k = _check_routing(topk_ids, topk_weights, E, expert_mask, validate)
    C = _loader.module()
    if isinstance(x, MXTensor):
        if x.rows != T:
            raise InputError(f"x: {x.rows} rows, topk_ids has {T}")
        if x.device != topk_ids.device:
            raise InputError(f"x: on {x.device}, topk_ids on {topk_ids.device}")
        q, a_name, key_out = x, "bf16", x.dtype
    else:
        check_rows("x", x)
        if x.shape[0] != T:
            raise InputError(f"x: {x.shape[0]} rows, topk_ids has {T}")
        if x.device != topk_ids.device:
            raise InputError(f"x: on {x.device}, topk_ids on {topk_ids.device}")
        if dtype not in MX_DTYPES:
            raise InputError(f"dtype {dtype!r} (allowed: {', '.join(MX_DTYPES)})")
        K = x.shape[1]
        kp = round_up(K, 32)
        q = MXTensor(_empty(T, kp // 2 if dtype == "pk_fp4" else kp, dtype=torch.uint8,
                                 device=x.device),
                     _empty(T, kp // 32, dtype=torch.uint8, device=x.device), dtype, K)
        a_name, key_out = dtype_of(x), dtype
    key = quant_sort_key(target_of(topk_ids.device), a_name, key_out)
    d = select(key, Shape(T=T, E=E, topk=k, K=q.K), instance)
    sargs, res, _ws = _sort_args(C, topk_ids, topk_weights, E, block_m, expert_mask, zero_buf)
    qargs = _quant_args(C, T, q.K, topk_ids.device)
    if not isinstance(x, MXTensor):
        qargs.x, qargs.x_stride = x.data_ptr(), x.stride(0) if T > 1 else q.K
    qargs.q, qargs.q_stride = q.data.data_ptr(), q.data.shape[1]
    qargs.scales, qargs.scale_stride = q.scales.data_ptr(), q.scales.shape[1]
    qargs.rounding = rounding_index(rounding)
    args = C.FusedQuantSortArgs()
    args.quant, args.sort = qargs, sargs
    _launch(d, args)
    return q, res


# ---- GEMM stages ------------------------------------------------------------------------

def check_weight(name: str, w: Any) -> MoeWeight:
    """`w` itself, or an InputError naming the argument when it is not a MoeWeight."""
    if not isinstance(w, MoeWeight):
        raise InputError(f"{name}: expected a MoeWeight (mxforge.pack_weight / mx_weight), "
                         f"got {type(w).__name__}")
    return w


def _gemm_key(target: str, op: str, a: Activation, w: MoeWeight, out: str, activation: str = "",
              routed_weight: str = "", bias: bool = False) -> Key:
    check_weight("weights", w)
    return Key(target, op, a=dtype_of(a), b=w.dtype, out=out, activation=activation,
               gate_up=(w.gate_up or "concat") if op != "moe_stage2" else "",
               routed_weight=routed_weight, bias=bias, layout=w.layout)


def _check_sort(sort: SortResult, device: torch.device, block_m: int) -> None:
    if not isinstance(sort, SortResult):
        raise InputError(f"sort: expected a SortResult from moe_sort, got {type(sort).__name__}")
    if sort.direct:  # (the routing itself; no sorted arrays)
        checks = [("topk_ids", sort.topk_ids, torch.int32, (sort.T, sort.topk)),
                  ("topk_weights", sort.topk_weights, torch.float32, (sort.T, sort.topk))]
        if sort.expert_mask is not None:
            checks.append(("expert_mask", sort.expert_mask, torch.int32, (sort.E,)))
    else:
        P = sort_capacity(sort.T, sort.topk, sort.E, sort.block_m)
        checks = [("sorted_ids", sort.sorted_ids, torch.int32, (P,)),
                  ("sorted_weights", sort.sorted_weights, torch.float32, (P,)),
                  ("sorted_expert_ids", sort.sorted_expert_ids, torch.int32, (cdiv(P, sort.block_m),)),
                  ("num_valid_ids", sort.num_valid_ids, torch.int32, (2,))]
    for name, t, dt, shape in checks:
        check(f"sort.{name}", t, dtypes=(dt,), shape=shape, device=device)
    if sort.block_m != block_m:
        raise InputError(f"sort: sorted with block_m {sort.block_m}, but the selected instance "
                         f"has block_m {block_m}; sort with block_m={block_m}")


def _a_operand(args: Any, a: Activation, rows: int, K: int, name: str,
               device: torch.device) -> None:
    if a.device != device:
        raise InputError(f"{name}: on {a.device}, weights on {device} (all operands on one device)")
    if isinstance(a, MXTensor):
        if a.rows != rows or a.K != K:
            raise InputError(f"{name}: MXTensor [{a.rows} rows, K={a.K}], expected [{rows}, K={K}]")
        args.a, args.a_stride = a.data.data_ptr(), a.data.shape[1]
        args.a_scales, args.a_scale_stride = a.scales.data_ptr(), a.scales.shape[1]
    else:
        check_rows(name, a)
        if tuple(a.shape) != (rows, K):
            raise InputError(f"{name}: shape {list(a.shape)}, expected [{rows}, {K}]")
        args.a, args.a_stride = a.data_ptr(), a.stride(0) if rows > 1 else K


def _weights(args: Any, w: MoeWeight, second: bool = False) -> None:
    data = w.data.data_ptr()
    scales = w.scales.data_ptr() if w.scales is not None else 0
    bias = w.bias.data_ptr() if w.bias is not None else 0
    if second:
        args.b2, args.b2_scales, args.bias2 = data, scales, bias
    else:
        args.b, args.b_scales, args.bias = data, scales, bias


def _routing_where(sort: SortResult, instance: str | None) -> Any:
    """select's `where` for a stage's routing: direct routing runs on the instances that take
    it (dispatch.direct_supported); a pinned instance that does not is named in the error."""
    if not (isinstance(sort, SortResult) and sort.direct):
        return None
    if instance is not None and not direct_supported(by_name(instance)):
        raise InputError(f"instance {instance} does not take direct routing (moe_routes): on GPUs "
                         "only the decode tiles (b_path regs or swap) do; use moe_sort")
    return direct_supported


def _sorted(args: Any, sort: SortResult) -> None:
    args.T, args.topk, args.E = sort.T, sort.topk, sort.E
    if sort.direct:  # (a block per route)
        args.direct_routes, args.max_blocks = 1, sort.T * sort.topk
        args.topk_ids, args.topk_weights = sort.topk_ids.data_ptr(), sort.topk_weights.data_ptr()
        args.expert_mask = sort.expert_mask.data_ptr() if sort.expert_mask is not None else 0
        return
    args.sorted_ids, args.sorted_weights = sort.sorted_ids.data_ptr(), sort.sorted_weights.data_ptr()
    args.sorted_expert_ids, args.num_valid_ids = (sort.sorted_expert_ids.data_ptr(),
                                                  sort.num_valid_ids.data_ptr())
    args.max_blocks = sort.sorted_expert_ids.numel()


def stage1_workspace_bytes(inst: Instance, rows: int, N: int) -> int:
    """split_k > 1: fp32 partial sums; the cpu target keeps one slab per split (summed in a
    fixed order), GPUs accumulate atomically into one."""
    if inst.split_k <= 1:
        return 0
    slabs = inst.split_k if inst.target == "cpu" else 1
    return slabs * rows * N * 4


def stage2_workspace_bytes(inst: Instance, T: int, N: int) -> int:
    """split_k > 1 with a bf16 out: fp32 sums [T, N], added into out with one rounding (every
    target); an fp32 out takes the partial sums directly."""
    return 4 * T * N if inst.split_k > 1 and inst.out == "bf16" else 0


def moe_stage1(a: Activation, w1: MoeWeight, sort: SortResult, activation: str = "silu",
               out_dtype: str = "bf16", routed_weight: str = "none", rounding: str = "round_up",
               instance: str | None = None, zero_buf: torch.Tensor | None = None) -> Activation:
    """Gate/up GEMM + activation: [T*topk, I] bf16, or an MXTensor when out_dtype='pk_fp4'.

    zero_buf: with direct routing (moe_routes), a tensor the launch zeroes, e.g. the layer's
    out that stage 2 then adds into (with moe_sort's blocks the sort zeroes it: moe_sort's
    zero_buf)."""
    device = w1.device if isinstance(w1, MoeWeight) else None
    key = _gemm_key(target_of(w1.device) if device else "", "moe_stage1", a, w1, out_dtype,
                    activation, routed_weight, w1.bias is not None)
    if w1.N % 2:
        raise InputError(f"w1: N = {w1.N} must be even (gate and up)")
    I = w1.N // 2
    if zero_buf is not None and not (isinstance(sort, SortResult) and sort.direct):
        raise InputError("zero_buf: moe_stage1 zeroes it under direct routing (moe_routes) only; "
                         "with moe_sort's blocks pass it to moe_sort (zero_buf=), whose launch zeroes it")
    shape = Shape(T=sort.T, N=w1.N, K=w1.K, E=w1.E, topk=sort.topk)
    d = select(key, shape, instance, block_m=sort.block_m, where=_routing_where(sort, instance))
    _check_sort(sort, w1.device, d.instance.block_m)
    if sort.E != w1.E:
        raise InputError(f"sort: E = {sort.E}, w1 has {w1.E} experts")
    C = _loader.module()
    args = C.MoeGemmArgs()
    _a_operand(args, a, sort.T, w1.K, "a", w1.device)
    _weights(args, w1)
    _sorted(args, sort)
    rows = sort.T * sort.topk
    if out_dtype == "pk_fp4":
        ip = round_up(I, 32)
        out: Activation = MXTensor(_empty(rows, ip // 2, dtype=torch.uint8, device=device),
                                   _empty(rows, ip // 32, dtype=torch.uint8, device=device),
                                   "pk_fp4", I)
        args.out, args.out_stride = out.data.data_ptr(), ip // 2
        args.out_scales, args.out_scale_stride = out.scales.data_ptr(), ip // 32
    else:
        out = _empty(rows, I, dtype=OUT_TORCH[out_dtype], device=device)
        args.out, args.out_stride = out.data_ptr(), I
    ws = _empty(max(1, stage1_workspace_bytes(d.instance, rows, w1.N)), dtype=torch.uint8,
                     device=device)
    args.workspace, args.workspace_bytes = ws.data_ptr(), ws.numel()
    if zero_buf is not None:
        check("zero_buf", zero_buf, device=device)
        args.zero_buf, args.zero_bytes = zero_buf.data_ptr(), zero_buf.numel() * zero_buf.element_size()
    args.N, args.K, args.rounding, args.stream = w1.N, w1.K, rounding_index(rounding), stream_of(device)
    args.test_delay_ns = _GEMM_DELAY_NS
    if rows:
        _launch(d, args)
    return out


def stage2_plan(w2: MoeWeight, sort: SortResult, out_dtype: str = "bf16",
                routed_weight: str = "stage2", a_dtype: str = "bf16", instance: str | None = None,
                reduce: str = "auto") -> tuple[Decision, str]:
    """The stage-2 instance a call with these operands gets, and its reduction ("atomic" or
    "slots"; dispatch.stage2_reduce) -- what moe_stage2 runs, decided before it runs."""
    check_weight("w2", w2)
    if not isinstance(sort, SortResult):
        raise InputError(f"sort: expected a SortResult from moe_sort, got {type(sort).__name__}")
    key = Key(target_of(w2.device), "moe_stage2", a=a_dtype, b=w2.dtype, out=out_dtype,
              routed_weight=routed_weight, bias=w2.bias is not None, layout=w2.layout)
    shape = Shape(T=sort.T, N=w2.N, K=w2.K, E=w2.E, topk=sort.topk)
    where = all_of(_routing_where(sort, instance),
                   slots_supported if reduce == "slots" and instance is None else None)
    d = select(key, shape, instance, block_m=sort.block_m, where=where)
    how = stage2_reduce(d.instance, reduce)
    if how == "slots" and sort.topk_ids is None:
        raise InputError("reduce='slots' sums each token's kept routes: the SortResult must "
                         "carry its topk_ids (moe_sort / fused_quant_sort set them)")
    return d, how


def moe_stage2(inter: Activation, w2: MoeWeight, sort: SortResult, out: torch.Tensor | None = None,
               out_dtype: str = "bf16", routed_weight: str = "stage2",
               instance: str | None = None, reduce: str = "auto",
               accumulate: bool = True) -> torch.Tensor:
    """Down GEMM + routed-weight multiply + the sum over each token's routes: returns out
    [T, H], added into (accumulate=True) or written over (accumulate=False, or out None).

    reduce: "atomic" adds every route's row into out by atomic adds (bf16 adds round each
    time; their order is the GPU's); "slots" stores each route's row, rounded to bf16, in a
    [T*topk, H] buffer and a second kernel sums each token's rows in fp32 in slot order
    (deterministic, one rounding; 2 * T * topk * H bytes of scratch); "auto" picks by
    dispatch.stage2_reduce. slots exists on instances with block_m >= 64, split_k 1 and a
    bf16 out."""
    d, how = stage2_plan(w2, sort, out_dtype, routed_weight, dtype_of(inter), instance, reduce)
    device = w2.device
    _check_sort(sort, w2.device, d.instance.block_m)
    if sort.E != w2.E:
        raise InputError(f"sort: E = {sort.E}, w2 has {w2.E} experts")
    if out is None:
        out, accumulate = _empty(sort.T, w2.N, dtype=OUT_TORCH[out_dtype], device=device), False
    check("out", out, dtypes=(OUT_TORCH[out_dtype],), shape=(sort.T, w2.N), device=device)
    if not accumulate and how == "atomic":
        out.zero_()
    C = _loader.module()
    args = C.MoeGemmArgs()
    _a_operand(args, inter, sort.T * sort.topk, w2.K, "inter", w2.device)
    _weights(args, w2)
    _sorted(args, sort)
    args.out, args.out_stride = out.data_ptr(), w2.N
    ws = _empty(max(1, stage2_workspace_bytes(d.instance, sort.T, w2.N)), dtype=torch.uint8,
                device=device)
    args.workspace, args.workspace_bytes = ws.data_ptr(), ws.numel()
    if how == "slots":
        check("sort.topk_ids", sort.topk_ids, dtypes=(torch.int32,), shape=(sort.T, sort.topk),
              device=device)
        if sort.expert_mask is not None:
            check("sort.expert_mask", sort.expert_mask, dtypes=(torch.int32,), shape=(sort.E,),
                  device=device)
        pitch = round_up(w2.N, 8)
        slots = _empty(sort.T * sort.topk, pitch, dtype=torch.bfloat16, device=device)
        args.slots, args.slots_stride, args.slots_accumulate = slots.data_ptr(), pitch, int(accumulate)
        args.topk_ids = sort.topk_ids.data_ptr()
        args.expert_mask = sort.expert_mask.data_ptr() if sort.expert_mask is not None else 0
    args.N, args.K, args.stream = w2.N, w2.K, stream_of(device)
    args.test_delay_ns = _GEMM_DELAY_NS
    if sort.T:
        _launch(d, args)
    return out


def moe_1stage(a: Activation, w1: MoeWeight, w2: MoeWeight, sort: SortResult,
               activation: str = "silu", out: torch.Tensor | None = None, out_dtype: str = "bf16",
               routed_weight: str = "stage2", instance: str | None = None) -> torch.Tensor:
    """Stage 1 (bf16 intermediate) and stage 2 in one launch: returns out [T, H] (+=)."""
    check_weight("w1", w1), check_weight("w2", w2)
    if (w2.dtype, w2.layout) != (w1.dtype, w1.layout) or (w1.bias is None) != (w2.bias is None):
        raise InputError(f"w1 ({w1.dtype}, {w1.layout}, bias={w1.bias is not None}) and w2 "
                         f"({w2.dtype}, {w2.layout}, bias={w2.bias is not None}) must match "
                         "for the one-stage kernel")
    key = _gemm_key(target_of(w1.device), "moe_1stage", a, w1, out_dtype, activation,
                    routed_weight, w1.bias is not None)
    if w2.device != w1.device:
        raise InputError(f"w2: on {w2.device}, w1 on {w1.device} (all operands on one device)")
    if w2.K * 2 != w1.N or w2.E != w1.E:
        raise InputError(f"w2 [{w2.E}, {w2.N}, {w2.K}] does not follow w1 [{w1.E}, {w1.N}, "
                         f"{w1.K}] (need w2.K = w1.N / 2, same E)")
    if isinstance(sort, SortResult) and sort.direct:
        raise InputError("moe_1stage: direct routing (moe_routes) is the two stages' (the one-stage "
                         "kernel adds into out, which the sort launch zeroes); use moe_sort")
    shape = Shape(T=sort.T, N=w1.N, K=w1.K, E=w1.E, topk=sort.topk)
    d = select(key, shape, instance, block_m=sort.block_m)
    _check_sort(sort, w1.device, d.instance.block_m)
    device = w1.device
    if out is None:
        out = torch.zeros(sort.T, w2.N, dtype=OUT_TORCH[out_dtype], device=device)
    check("out", out, dtypes=(OUT_TORCH[out_dtype],), shape=(sort.T, w2.N), device=device)
    C = _loader.module()
    args = C.MoeGemmArgs()
    _a_operand(args, a, sort.T, w1.K, "a", w1.device)
    _weights(args, w1)
    _weights(args, w2, second=True)
    _sorted(args, sort)
    args.out, args.out_stride = out.data_ptr(), w2.N
    args.N, args.K, args.N2, args.stream = w1.N, w1.K, w2.N, stream_of(device)
    if sort.T:
        _launch(d, args)
    return out


# ---- the whole layer --------------------------------------------------------------------

def _quant_sort(x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int,
                block_m: int, a_name: str, rounding: str, expert_mask: torch.Tensor | None,
                zero_buf: torch.Tensor | None) -> tuple[Activation, SortResult]:
    """A layer's first step: quant+sort (MX activations: the fused launch, or quantize and
    moe_sort where the tuned table says the split pair is faster: dispatch.quant_sort_split;
    the same bytes either way) or the sort alone."""
    if a_name in MX_DTYPES:
        key = quant_sort_key(target_of(x.device), dtype_of(x), a_name)
        if quant_sort_split(key, Shape(T=x.shape[0], K=x.shape[1], E=E, topk=topk_ids.shape[1])):
            return (quantize(x, a_name, rounding),
                    moe_sort(topk_ids, topk_weights, E, block_m, expert_mask, zero_buf=zero_buf,
                             validate=False))
        return fused_quant_sort(x, topk_ids, topk_weights, E, block_m, a_name, rounding,
                                expert_mask, zero_buf=zero_buf, validate=False)
    return x, moe_sort(topk_ids, topk_weights, E, block_m, expert_mask, zero_buf=zero_buf,
                       validate=False)


def one_stage_layer(x: torch.Tensor, w1: MoeWeight, w2: MoeWeight, topk_weights: torch.Tensor,
                    topk_ids: torch.Tensor, activation: str, a_name: str, routed_weight: str,
                    rounding: str = "round_up", expert_mask: torch.Tensor | None = None,
                    instance: str | None = None) -> torch.Tensor:
    """fused_moe's one-stage path on checked operands: quant+sort (zeroing out), then
    moe_1stage. `instance` pins the kernel (mxforge tune)."""
    T, H = x.shape
    E, k = w1.E, topk_ids.shape[1]
    shape = Shape(T=T, N=w1.N, K=w1.K, E=E, topk=k)
    key = _layer_key("moe_1stage", a_name, w1, "bf16", activation, routed_weight)
    if instance is None:
        block_m = _common_block_m([key], shape)
        one = select(key, shape, block_m=block_m).instance
    else:
        one = select(key, shape, instance).instance
        block_m = one.block_m
    out = _empty(T, H, dtype=torch.bfloat16, device=x.device)
    a, sort = _quant_sort(x, topk_ids, topk_weights, E, block_m, a_name, rounding, expert_mask, out)
    return moe_1stage(a, w1, w2, sort, activation, out=out, routed_weight=routed_weight, instance=one.name)


def layer_path(w1: MoeWeight, T: int, topk: int, a_dtype: str, stage2_input: str,
               activation: str, routed_weight: str, path: str, stage2_reduce: str = "auto") -> str:
    """The kernels fused_moe runs for `path`: "one_stage" or "two_stage". auto = one stage
    where the tuned table says its layer was the faster at this shape and T
    (dispatch.one_stage_choice; a bf16 intermediate and stage 2's atomic adds only), else
    two stages."""
    if path not in ("auto", "two_stage", "one_stage"):
        raise InputError(f"path {path!r} (allowed: auto, two_stage, one_stage)")
    if path != "auto":
        return path
    if stage2_input != "bf16" or stage2_reduce == "slots":
        return "two_stage"
    key = _layer_key("moe_1stage", a_dtype, w1, "bf16", activation, routed_weight)
    shape = Shape(T=T, N=w1.N, K=w1.K, E=w1.E, topk=topk)
    return "one_stage" if one_stage_choice(key, shape) else "two_stage"


def layer_routing(routing: str, w1: MoeWeight, T: int, topk: int, a_dtype: str) -> str:
    """How fused_moe's two-stage path routes: "sorted" (moe_sort, or the fused quant+sort,
    before the stages) or "direct" (moe_routes: a block per route, no sort launch).

    auto = direct where the activations are 16-bit (the sort is then a launch of its own,
    which direct routing removes: three launches become two) and the routes' w1 elements,
    T * topk * w1.N * w1.K, are at most DIRECT_ROUTING_AUTO_ELEMS (~100M). Under direct
    routing each route is a block of its own: its CTAs read their expert's w1 even where
    another route has the same expert, and each CTA pays ~0.5 us more to start (its rows
    are not laid out for it); both grow with routes x w1 (the CTAs, the waves, the bytes),
    while the launch saved is fixed. H200, direct / sorted, a16w4 (benchmarks/README.md,
    sessions 35 to 37), by that product: MiniMax TP=8 (w1 1.2M elements per expert)
    0.89x / 0.92-0.93x / 0.95x / 0.97-0.98x / 0.99x at T = 1 / 2 / 4 / 8 / 10 (9M ... 94M),
    0.98x at T = 11 (104M, just past the line), 1.04-1.05x at T = 16 (151M); TP=4 (2.4M)
    0.92-0.93x / 0.93x / 0.97-0.98x / 0.95x at T = 1 / 2 / 4 / 5 (19M ... 94M), 1.06x at
    T = 8 (151M); gpt-oss-120b and -20b (16.6M) 0.98-1.00x at T = 1 (66M), 1.00x at T = 2
    (133M), 1.02-1.19x at T = 4 ... 16 (265M ... 1062M). MX activations keep the one
    quant+sort launch (they need a launch to quantize anyway; direct measured 1.02x ...
    1.24x there). fused_moe then keeps auto's direct only where both stages' own picks take
    direct routing (dispatch.direct_supported: the GPU decode tiles) and stage 2 adds."""
    if routing not in ROUTINGS:
        raise InputError(f"routing {routing!r} (allowed: {', '.join(ROUTINGS)})")
    if routing != "auto":
        return routing
    few = T * topk * w1.N * w1.K <= DIRECT_ROUTING_AUTO_ELEMS
    return "direct" if few and a_dtype not in MX_DTYPES else "sorted"


def _common_block_m(keys: list[Key], shape: Shape, wheres: list[Any] | None = None) -> int:
    """The block_m every stage of a pipeline has, chosen by the first stage's ranking;
    `wheres` (one per key, or None) keeps only the instances a stage accepts (select's
    `where`)."""
    wheres = wheres or [None] * len(keys)
    sets = []
    for k, where in zip(keys, wheres):
        bms = compiled_block_m(k, where)
        if not bms:
            raise no_instance(k, shape)
        sets.append(bms)
    common = frozenset.intersection(*sets)
    if not common:
        raise NoInstanceError("no block_m is compiled for every stage of this pipeline: " +
                              "; ".join(f"{k.op} has {sorted(s)}" for k, s in zip(keys, sets)))
    return select(keys[0], shape, allowed_block_m=common, where=wheres[0]).instance.block_m


def no_atomic_splits(inst: Instance) -> bool:
    """split_k 1: no partial sums added by atomics (whose order is the GPU's). A cluster's
    CTAs add theirs in rank order (cluster_k: deterministic)."""
    return inst.split_k == 1


def _layer_key(op: str, a: str, w: MoeWeight, out: str, activation: str, routed_weight: str) -> Key:
    """The key of one of fused_moe's stages (w: the stage's weights; stage 2 has no gate_up)."""
    return Key(target_of(w.device), op, a=a, b=w.dtype, out=out, activation=activation,
               gate_up="" if op == "moe_stage2" else (w.gate_up or "concat"),
               routed_weight=routed_weight, bias=w.bias is not None, layout=w.layout)


def _stage1_key(w1: MoeWeight, a_dtype: str, stage2_input: str, activation: str,
                routed_weight: str) -> Key:
    return _layer_key("moe_stage1", a_dtype, w1, stage2_input, activation,
                      "stage1" if routed_weight == "stage1" else "none")


def two_stage_block_m(w1: MoeWeight, w2: MoeWeight, T: int, topk: int, a_dtype: str,
                      stage2_input: str, activation: str = "silu", routed_weight: str = "stage2",
                      stage2_reduce: str = "auto", direct: bool = False) -> int:
    """The block_m fused_moe sorts with on its two-stage path (a_dtype as instances name it:
    pk_fp4, fp8, bf16, fp16): stage 1's choice among the block_m values both stages have;
    with stage2_reduce="slots" (deterministic) only those with a stage 1 without atomic
    splits and a stage 2 with the slot sums; with direct routing only those of instances
    that take it (dispatch.direct_supported)."""
    k1 = _stage1_key(w1, a_dtype, stage2_input, activation, routed_weight)
    k2 = _layer_key("moe_stage2", stage2_input, w2, "bf16", "",
                    "stage2" if routed_weight == "stage2" else "none")
    slots = stage2_reduce == "slots"
    wheres = [all_of(no_atomic_splits if slots else None, direct_supported if direct else None),
              all_of(slots_supported if slots else None, direct_supported if direct else None)]
    return _common_block_m([k1, k2], Shape(T=T, N=w1.N, K=w1.K, E=w1.E, topk=topk), wheres)


@functools.lru_cache(maxsize=64)
def all_of(*preds: Any) -> Any:
    """One select `where` that holds where every given predicate does (None: no condition);
    the same function for the same predicates, so that select's memo recognises it."""
    ps = [p for p in preds if p is not None]
    if len(ps) < 2:
        return ps[0] if ps else None
    def where(inst: Instance) -> bool:
        return all(p(inst) for p in ps)
    where.__name__ = " and ".join(p.__name__ for p in ps)
    return where


@one_tuned_version()  # (every stage decides from one version of the tuned tables)
def fused_moe(x: torch.Tensor, w1: MoeWeight, w2: MoeWeight, topk_weights: torch.Tensor,
              topk_ids: torch.Tensor, activation: str = "silu", a_dtype: str = "pk_fp4",
              stage2_input: str = "bf16", routed_weight: str = "stage2",
              rounding: str = "round_up", path: str = "auto",
              expert_mask: torch.Tensor | None = None, impl: str = "kernel",
              validate: bool = True, stage2_reduce: str = "auto",
              routing: str = "auto") -> torch.Tensor:
    """The whole MoE layer: x [T, H] bf16 -> [T, H] bf16.

    a_dtype: activation dtype of stage 1 (pk_fp4 = a4w4, fp8 = a8w4, bf16 = a16w4).
    stage2_input: bf16 (skip-inter-quant: stage 1 writes bf16, stage 2 runs a16w4) or
    pk_fp4 (stage 1 re-quantizes, stage 2 runs a4w4). routed_weight: stage1 or stage2.
    path: auto | two_stage | one_stage. impl="torch" runs mxforge.reference (by name only).
    stage2_reduce: auto | atomic | slots, how stage 2 sums each token's routes (moe_stage2's
    `reduce`; two_stage only).
    routing: auto | sorted | direct (two_stage only): moe_sort before the stages, or direct
    routing (moe_routes: no sort launch, a block per route); auto = layer_routing.
    validate: check that every expert id is in [0, E) first, an InputError naming the id
    otherwise; it reads the ids' min and max back to the host, which on a GPU waits for
    topk_ids (the one synchronisation of an eager call; skipped while a CUDA graph is
    captured). validate=False drops such routes instead, as the reference does.
    The host's own work per call (checks, dispatch, allocations) is ~0.1 ms:
    scripts/host_overhead.py.
    """
    if impl == "torch":
        from . import reference
        return reference.fused_moe(x, reference_weight(w1), reference_weight(w2), topk_weights,
                                   topk_ids, activation=activation, gate_up=w1.gate_up or "concat",
                                   bias1=w1.bias, bias2=w2.bias, a_dtype=a_dtype,
                                   stage2_input=stage2_input, routed_weight=routed_weight,
                                   rounding=rounding, expert_mask=expert_mask)
    if impl != "kernel":
        raise InputError(f"impl {impl!r} (allowed: kernel, torch)")
    check_rows("x", x)
    check("x", x, dtypes=(torch.bfloat16, torch.float16), contiguous=False)
    check_weight("w1", w1), check_weight("w2", w2)
    T, H = x.shape
    if (w1.K, w2.N) != (H, H) or w2.K * 2 != w1.N or w1.E != w2.E:
        raise InputError(f"weights do not fit x [T, {H}]: w1 [{w1.E}, {w1.N}, {w1.K}] must be "
                         f"[E, 2I, {H}] and w2 [{w2.E}, {w2.N}, {w2.K}] must be [E, {H}, I]")
    if a_dtype not in ("pk_fp4", "fp8", "bf16", "fp16"):
        raise InputError(f"a_dtype {a_dtype!r} (allowed: pk_fp4, fp8, bf16, fp16)")
    if stage2_input not in ("bf16", "pk_fp4"):
        raise InputError(f"stage2_input {stage2_input!r} (allowed: bf16, pk_fp4)")
    if routed_weight not in ("stage1", "stage2"):
        raise InputError(f"routed_weight {routed_weight!r} (allowed: stage1, stage2)")
    if stage2_reduce not in STAGE2_REDUCES:
        raise InputError(f"stage2_reduce {stage2_reduce!r} (allowed: {', '.join(STAGE2_REDUCES)})")
    target_of(x.device)  # (a clear error for a device no target serves)
    E = w1.E
    check("topk_ids", topk_ids, device=x.device, contiguous=False)
    T_, k = _check_routing(topk_ids, topk_weights, E, expert_mask, validate)
    if T_ != T:
        raise InputError(f"topk_ids: {T_} rows, x has {T}")
    for name, dev in (("w1", w1.device), ("w2", w2.device)):
        if dev != x.device:
            raise InputError(f"{name}: on {dev}, x on {x.device} (all operands on one device)")
    a_name = TORCH_DTYPES[x.dtype] if a_dtype in ("bf16", "fp16") else a_dtype
    if a_dtype in ("bf16", "fp16") and a_name != a_dtype:
        raise InputError(f"a_dtype {a_dtype} but x is {x.dtype}")
    bias = w1.bias is not None
    if bias != (w2.bias is not None):
        raise InputError("w1 and w2 must both have biases or neither")
    s1_shape = Shape(T=T, N=w1.N, K=w1.K, E=E, topk=k)
    routed = layer_routing(routing, w1, T, k, a_name)  # (checks `routing`)
    use_one = layer_path(w1, T, k, a_name, stage2_input, activation, routed_weight, path,
                         stage2_reduce) == "one_stage"
    if use_one and stage2_input != "bf16":
        raise InputError("path one_stage keeps the intermediate in bf16: stage2_input must be bf16")
    if use_one and stage2_reduce == "slots":
        raise InputError("stage2_reduce 'slots' is a two-stage path's (the one-stage kernel adds)")
    if use_one and routing == "direct":
        raise InputError("routing 'direct' is the two-stage path's (the one-stage kernel's out is "
                         "zeroed by the sort launch)")
    if use_one:
        return one_stage_layer(x, w1, w2, topk_weights, topk_ids, activation, a_name, routed_weight,
                               rounding, expert_mask)
    out = _empty(T, H, dtype=torch.bfloat16, device=x.device)
    rw2 = "stage2" if routed_weight == "stage2" else "none"
    block_m = two_stage_block_m(w1, w2, T, k, a_name, stage2_input, activation,
                                routed_weight, stage2_reduce, direct=routing == "direct")
    # (decided before the sort: with slots, stage 2 writes out whole, so the sort need
    # not zero it)
    probe = SortResult(*([None] * 4), T, k, E, block_m, topk_ids, expert_mask)
    reduce = stage2_plan(w2, probe, "bf16", rw2, stage2_input, None, stage2_reduce)[1]
    zero_buf = out if reduce == "atomic" else None
    k1 = _stage1_key(w1, a_name, stage2_input, activation, routed_weight)
    k2 = _layer_key("moe_stage2", stage2_input, w2, "bf16", "", rw2)
    direct = routed == "direct"
    if direct and routing == "auto":  # (auto: only where both stages' own picks take it)
        direct = reduce != "slots" and all(
            direct_supported(select(key, Shape(T=T, N=w.N, K=w.K, E=E, topk=k), block_m=block_m).instance)
            for key, w in ((k1, w1), (k2, w2)))
    if direct:  # (stage 1 zeroes out: no sort launch)
        a = quantize(x, a_name, rounding) if a_name in MX_DTYPES else x
        sort = moe_routes(topk_ids, topk_weights, E, block_m, expert_mask, validate=False)
        s1_zero = zero_buf
    else:
        a, sort = _quant_sort(x, topk_ids, topk_weights, E, block_m, a_name, rounding, expert_mask, zero_buf)
        s1_zero = None
    # (slots: a stage 1 without atomic splits, so that the whole layer is deterministic)
    s1 = select(k1, s1_shape, block_m=block_m,
                where=all_of(no_atomic_splits, direct_supported if direct else None)
                ).instance.name if reduce == "slots" else None
    inter = moe_stage1(a, w1, sort, activation, stage2_input,
                       "stage1" if routed_weight == "stage1" else "none", rounding, instance=s1,
                       zero_buf=s1_zero)
    return moe_stage2(inter, w2, sort, out=out, routed_weight=rw2, reduce=reduce,
                      accumulate=reduce == "atomic")

