"""The ops as torch custom ops (`torch.ops.mxforge.*`) and the public entry points.

`mxforge.fused_moe`, `mxforge.quantize`, ... are thin wrappers: they flatten the typed
operands (MXTensor, MoeWeight, SortResult) into tensors and scalars, call the registered
op, and rebuild typed results. The op's kernel is the eager implementation in `ops.py`
(validation, dispatch, launch on the current stream); its fake (meta) implementation
computes output shapes only. So `torch.compile(fullgraph=True)` traces a model that calls
`mxforge.fused_moe` into one graph node per op, with no graph break, and the data-dependent
checks (expert ids in range) run inside the op, where they belong.

Schemas are built from one fragment per operand kind (`ACT`, `WEIGHT`, `SORT`) so that
flattening, rebuilding and the schema text cannot drift apart. Ops that accumulate into a
caller's buffer (`moe_stage2`, `moe_1stage`, the sorters' `zero_buf`) declare the mutation
(`Tensor(a!)`) and return nothing for it; the wrapper returns the buffer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from . import ops
from .errors import InputError
from .ops import MoeWeight, MXTensor, SortResult, cdiv, round_up, sort_capacity

Activation = ops.Activation

_LIB = torch.library.Library("mxforge", "DEF")


@dataclass(frozen=True)
class Codec:
    """How one typed operand crosses the op boundary: its schema fields and the
    (flatten, rebuild) pair between the Python object and those fields."""
    schema: str  # fields with "{p}" for the parameter name
    flatten: Callable[[Any], tuple[Any, ...]]
    rebuild: Callable[..., Any]

    @property
    def arity(self) -> int:
        return self.schema.count(",") + 1

    def fields(self, name: str) -> str:
        return self.schema.format(p=name)


def _flatten_act(a: Activation) -> tuple[Any, ...]:
    if isinstance(a, MXTensor):
        return a.data, a.scales, a.dtype, a.K
    ops.dtype_of(a)  # a clear InputError for anything but a bf16/fp16/fp32 tensor
    return a, None, "", a.shape[-1] if a.dim() else 0


def _rebuild_act(data: torch.Tensor, scales: torch.Tensor | None, dtype: str, K: int) -> Activation:
    return data if scales is None else MXTensor(data, scales, dtype, K)


def _flatten_weight(w: MoeWeight) -> tuple[Any, ...]:
    ops.check_weight("weights", w)
    return w.data, w.scales, w.bias, w.dtype, w.layout, w.E, w.N, w.K, w.gate_up


def _flatten_sort(s: SortResult) -> tuple[Any, ...]:
    if not isinstance(s, SortResult):
        raise InputError(f"sort: expected a SortResult from moe_sort, got {type(s).__name__}")
    return tuple(s)


ACT = Codec("Tensor {p}, Tensor? {p}_scales, str {p}_dtype, SymInt {p}_K", _flatten_act, _rebuild_act)
WEIGHT = Codec("Tensor {p}, Tensor? {p}_scales, Tensor? {p}_bias, str {p}_dtype, str {p}_layout, "
               "SymInt {p}_E, SymInt {p}_N, SymInt {p}_K, str? {p}_gate_up",
               _flatten_weight,
               lambda data, scales, bias, dtype, layout, E, N, K, gate_up:
               MoeWeight(data, scales, dtype, layout, E, N, K, bias, gate_up))
SORT = Codec("Tensor? {p}_ids, Tensor? {p}_weights, Tensor? {p}_expert_ids, Tensor? {p}_num_valid, "
             "SymInt {p}_T, SymInt {p}_topk, SymInt {p}_E, SymInt {p}_block_m, "
             "Tensor? {p}_topk_ids, Tensor? {p}_expert_mask, Tensor? {p}_topk_weights, bool {p}_direct",
             _flatten_sort, SortResult)
TENSOR = Codec("Tensor {p}", lambda t: (t,), lambda t: t)
SORT_OUT = "(Tensor, Tensor, Tensor, Tensor)"


def _split(args: Sequence[Any], *codecs: Codec) -> list[Any]:
    """Rebuild the leading typed operands from flat op arguments; the rest follow as-is."""
    out, i = [], 0
    for c in codecs:
        out.append(c.rebuild(*args[i:i + c.arity]))
        i += c.arity
    return out + list(args[i:])


def _define(name: str, params: str, returns: str, kernel: Callable[..., Any],
            fake: Callable[..., Any]) -> None:
    _LIB.define(f"{name}({params}) -> {returns}")
    torch.library.impl(_LIB, name, "CompositeExplicitAutograd")(kernel)
    torch.library.register_fake(f"mxforge::{name}", lib=_LIB)(fake)


def _mx_empty(x: torch.Tensor, rows: Any, K: Any, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    kp = round_up(K, 32)
    return (x.new_empty(rows, kp // 2 if dtype == "pk_fp4" else kp, dtype=torch.uint8),
            x.new_empty(rows, kp // 32, dtype=torch.uint8))


def _sort_empty(ids: torch.Tensor, E: Any, block_m: Any) -> tuple[torch.Tensor, ...]:
    T, k = ids.shape
    P = sort_capacity(T, k, E, block_m)
    return (ids.new_empty(P, dtype=torch.int32), ids.new_empty(P, dtype=torch.float32),
            ids.new_empty(cdiv(P, block_m), dtype=torch.int32), ids.new_empty(2, dtype=torch.int32))


def _none_tensor(x: torch.Tensor) -> torch.Tensor:
    """Stands for an absent output (ops may not return None or alias an input)."""
    return x.new_empty(0, dtype=torch.uint8)


# ---- quantization -----------------------------------------------------------------------

def _quantize_kernel(x, dtype, rounding, instance):
    q = ops.quantize(x, dtype, rounding, instance)
    return q.data, q.scales


_define("quantize", "Tensor x, str dtype, str rounding, str? instance", "(Tensor, Tensor)",
        _quantize_kernel, lambda x, dtype, rounding, instance: _mx_empty(x, x.shape[0], x.shape[1], dtype))


def quantize(x: torch.Tensor, dtype: str = "pk_fp4", rounding: str = "round_up",
             instance: str | None = None) -> MXTensor:
    """MX-quantize rows of x [M, K] (bf16/fp16/fp32) with 1x32 e8m0 scales."""
    ops.check_rows("x", x)
    q, s = torch.ops.mxforge.quantize(x, dtype, rounding, instance)
    return MXTensor(q, s, dtype, x.shape[1])


_define("dequantize", ACT.fields("q") + ", ScalarType out_dtype, str? instance", "Tensor",
        lambda *a: ops.dequantize(*_split(a, ACT)),
        lambda *a: a[0].new_empty(a[0].shape[0], a[3], dtype=a[ACT.arity]))


def dequantize(q: MXTensor, dtype: torch.dtype = torch.bfloat16,
               instance: str | None = None) -> torch.Tensor:
    """The inverse of quantize: [M, K] in bf16 or fp32."""
    if not isinstance(q, MXTensor):
        raise InputError(f"q: expected an MXTensor, got {type(q).__name__}")
    return torch.ops.mxforge.dequantize(*ACT.flatten(q), dtype, instance)


# ---- weight packing ---------------------------------------------------------------------

def _pack_kernel(src_w, src_s, E, N, K, layout, direction):
    w, s = ops._pack(src_w if src_w.numel() else None, src_s, E, N, K, layout, direction)
    return (w if w is not None else _none_tensor(src_s)), s


def _pack_fake(src_w, src_s, E, N, K, layout, direction):
    wb, sb = ops.layout_sizes(layout if direction == 0 else "plain", N, K)
    w = src_s.new_empty(E, wb, dtype=torch.uint8) if src_w.numel() else _none_tensor(src_s)
    return w, src_s.new_empty(E, sb, dtype=torch.uint8)


_define("mx_pack", "Tensor src_w, Tensor src_s, SymInt E, SymInt N, SymInt K, str layout, "
        "int direction", "(Tensor, Tensor)", _pack_kernel, _pack_fake)


def _pack(src_w: torch.Tensor | None, src_s: torch.Tensor, E: int, N: int, K: int, layout: str,
          direction: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Between the plain and `layout` placements of MX weights (0: to, 1: back);
    src_w None converts scales only."""
    ops.check("scales", src_s, dtypes=(torch.uint8,))
    ops.layout_sizes(layout, N, K)  # a clear error for an unknown layout
    w, s = torch.ops.mxforge.mx_pack(src_w if src_w is not None else _none_tensor(src_s), src_s,
                                     E, N, K, layout, direction)
    return (w if src_w is not None else None), s


def shuffle_scales(s: torch.Tensor) -> torch.Tensor:
    """e8m0 scales [R, C] -> aiter-shuffled [round_up(R, 32) * round_up(C, 8)] (flat)."""
    ops.check("scales", s, dtypes=(torch.uint8,), shape=(None, None))
    R, C = s.shape
    return _pack(None, s, 1, R, C * 32, "shuffled", 0)[1].view(-1)


def unshuffle_scales(s: torch.Tensor, R: int, C: int) -> torch.Tensor:
    """The inverse of shuffle_scales: [R, C]."""
    ops.check("scales", s, dtypes=(torch.uint8,))
    return _pack(None, s.reshape(1, -1), 1, R, C * 32, "shuffled", 1)[1].view(R, C)


def mx_weight(q: torch.Tensor, scales: torch.Tensor, K: int, layout: str = "plain",
              dtype: str = "pk_fp4", bias: torch.Tensor | None = None,
              gate_up: str | None = None) -> MoeWeight:
    """Pack already-quantized weights (q [E, N, Kp/2] or fp8 [E, N, Kp], scales
    [E, N, Kp/32], plain row-major, e.g. from an MXFP4 checkpoint) for `layout`."""
    if dtype not in ops.MX_DTYPES:
        raise InputError(f"weight dtype {dtype!r} (allowed: {', '.join(ops.MX_DTYPES)}, or "
                         "pack_weight(w, 'bf16') for dense weights)")
    kp = round_up(K, 32)
    ops.check("q", q, dtypes=(torch.uint8,),
              shape=(None, None, kp // 2 if dtype == "pk_fp4" else kp))
    E, N = q.shape[:2]
    ops.check("scales", scales, dtypes=(torch.uint8,), shape=(E, N, kp // 32), device=q.device)
    if layout != "plain" and dtype != "pk_fp4":
        raise InputError(f"layout {layout} exists for pk_fp4 weights only")
    if layout == "plain":
        w, s = q, scales
    else:
        w, s = _pack(q.reshape(E, -1), scales.reshape(E, -1), E, N, K, layout, 0)
    return MoeWeight(w, s, dtype, layout, E, N, K, _bias(bias, E, N, q.device), gate_up)


def _bias(bias: torch.Tensor | None, E: int, N: int, device: torch.device) -> torch.Tensor | None:
    if bias is None:
        return None
    ops.check("bias", bias, dtypes=(torch.float32, torch.bfloat16, torch.float16), shape=(E, N),
              device=device, contiguous=False)
    return bias.to(torch.float32).contiguous()


def pack_weight(w: torch.Tensor, dtype: str = "pk_fp4", layout: str = "plain",
                rounding: str = "round_up", bias: torch.Tensor | None = None,
                gate_up: str | None = None) -> MoeWeight:
    """Quantize dense expert weights w [E, N, K] to `dtype` and pack them for `layout`."""
    ops.check("w", w, dtypes=tuple(ops.TORCH_DTYPES), shape=(None, None, None))
    if gate_up not in (None, "concat", "interleaved"):
        raise InputError(f"gate_up {gate_up!r} (allowed: concat, interleaved, None for w2)")
    E, N, K = w.shape
    if dtype == "bf16":
        if layout != "plain":
            raise InputError(f"layout {layout} exists for pk_fp4 weights only")
        return MoeWeight(w.to(torch.bfloat16).contiguous(), None, "bf16", "plain", E, N, K,
                         _bias(bias, E, N, w.device), gate_up)
    q = quantize(w.reshape(E * N, K), dtype, rounding)
    return mx_weight(q.data.view(E, N, -1), q.scales.view(E, N, -1), K, layout, dtype, bias, gate_up)


def unpack_weight(w: MoeWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """MX weights back to plain (q [E, N, Kp/2], scales [E, N, Kp/32])."""
    if w.scales is None:
        raise InputError("unpack_weight: dense weights have no MX packing")
    kp = round_up(w.K, 32)
    if w.layout == "plain":
        return w.data, w.scales
    q, s = _pack(w.data, w.scales, w.E, w.N, w.K, w.layout, 1)
    assert q is not None
    return q.view(w.E, w.N, kp // 2), s.view(w.E, w.N, kp // 32)


# ---- sorting ----------------------------------------------------------------------------

_SORT_TAIL = "Tensor? expert_mask, Tensor(a!)? zero_buf, bool validate"


def _sort_kernel(ids, weights, E, block_m, expert_mask, zero_buf, validate):
    return tuple(ops.moe_sort(ids, weights, E, block_m, expert_mask, zero_buf, validate))[:4]


_define("moe_sort", f"Tensor topk_ids, Tensor topk_weights, SymInt E, SymInt block_m, {_SORT_TAIL}",
        SORT_OUT, _sort_kernel, lambda ids, w, E, bm, *_: _sort_empty(ids, E, bm))


def _checked_routing(topk_ids: torch.Tensor) -> tuple[int, int]:
    ops.check("topk_ids", topk_ids, dtypes=(torch.int32,), shape=(None, None))
    return topk_ids.shape[0], topk_ids.shape[1]


def moe_sort(topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int, block_m: int,
             expert_mask: torch.Tensor | None = None, zero_buf: torch.Tensor | None = None,
             validate: bool = True) -> SortResult:
    """aiter moe_sorting semantics (docs/ops.md); optionally zeroes `zero_buf`."""
    T, k = _checked_routing(topk_ids)
    res = torch.ops.mxforge.moe_sort(topk_ids, topk_weights, E, block_m, expert_mask, zero_buf,
                                     validate)
    return SortResult(*res, T, k, E, block_m, topk_ids, expert_mask)


def moe_routes(topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int, block_m: int,
               expert_mask: torch.Tensor | None = None, validate: bool = True) -> SortResult:
    """Direct routing for moe_stage1 / moe_stage2: no kernel runs here; block b of the stages
    is route b alone (docs/ops.md, "Direct routing"; for decode).
    validate=True reads the expert ids' range on the host (pass False under torch.compile:
    the stages then drop ids outside [0, E), as moe_sort does)."""
    return ops.moe_routes(topk_ids, topk_weights, E, block_m, expert_mask, validate)


def _fqs_kernel(*a):
    x, ids, weights, E, block_m, dtype, rounding, mask, zero_buf, validate, inst = _split(a, ACT)
    q, s = ops.fused_quant_sort(x, ids, weights, E, block_m, dtype, rounding, mask, zero_buf,
                                validate, inst)
    head = (q.data, q.scales) if not isinstance(x, MXTensor) else (_none_tensor(ids), _none_tensor(ids))
    return head + tuple(s)[:4]


def _fqs_fake(*a):
    x, ids, weights, E, block_m, dtype, *_ = _split(a, ACT)
    if isinstance(x, MXTensor):
        head = (_none_tensor(ids), _none_tensor(ids))
    else:
        head = _mx_empty(x, x.shape[0], x.shape[1], dtype)
    return head + _sort_empty(ids, E, block_m)


_define("fused_quant_sort", ACT.fields("x") + ", Tensor topk_ids, Tensor topk_weights, SymInt E, "
        f"SymInt block_m, str dtype, str rounding, {_SORT_TAIL}, str? instance",
        "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", _fqs_kernel, _fqs_fake)


def fused_quant_sort(x: Activation, topk_ids: torch.Tensor, topk_weights: torch.Tensor, E: int,
                     block_m: int, dtype: str = "pk_fp4", rounding: str = "round_up",
                     expert_mask: torch.Tensor | None = None, zero_buf: torch.Tensor | None = None,
                     validate: bool = True, instance: str | None = None) -> tuple[MXTensor, SortResult]:
    """Quantize x and sort the routes in one entry (byte-identical to quantize + moe_sort).
    A pre-quantized MXTensor x takes the sort-only path."""
    T, k = _checked_routing(topk_ids)
    if not isinstance(x, MXTensor):
        ops.check_rows("x", x)
    q, s, *res = torch.ops.mxforge.fused_quant_sort(*ACT.flatten(x), topk_ids, topk_weights, E,
                                                    block_m, dtype, rounding, expert_mask,
                                                    zero_buf, validate, instance)
    mx = x if isinstance(x, MXTensor) else MXTensor(q, s, dtype, x.shape[1])
    return mx, SortResult(*res, T, k, E, block_m, topk_ids, expert_mask)


# ---- GEMM stages ------------------------------------------------------------------------

def _stage1_kernel(*a):
    out = ops.moe_stage1(*_split(a, ACT, WEIGHT, SORT))
    return (out.data, out.scales) if isinstance(out, MXTensor) else (out, _none_tensor(out))


def _stage1_fake(*a):
    x, w1, sort, activation, out_dtype, *_ = _split(a, ACT, WEIGHT, SORT)
    rows, I = sort.T * sort.topk, w1.N // 2
    if out_dtype == "pk_fp4":
        return _mx_empty(w1.data, rows, I, out_dtype)
    out = w1.data.new_empty(rows, I, dtype=ops.OUT_TORCH.get(out_dtype, torch.bfloat16))
    return out, _none_tensor(out)


_define("moe_stage1", f"{ACT.fields('a')}, {WEIGHT.fields('w1')}, {SORT.fields('sort')}, "
        "str activation, str out_dtype, str routed_weight, str rounding, str? instance, "
        "Tensor(a!)? zero_buf=None",
        "(Tensor, Tensor)", _stage1_kernel, _stage1_fake)


def moe_stage1(a: Activation, w1: MoeWeight, sort: SortResult, activation: str = "silu",
               out_dtype: str = "bf16", routed_weight: str = "none", rounding: str = "round_up",
               instance: str | None = None, zero_buf: torch.Tensor | None = None) -> Activation:
    out, scales = torch.ops.mxforge.moe_stage1(*ACT.flatten(a), *WEIGHT.flatten(w1),
                                               *SORT.flatten(sort), activation, out_dtype,
                                               routed_weight, rounding, instance, zero_buf)
    return MXTensor(out, scales, out_dtype, w1.N // 2) if out_dtype == "pk_fp4" else out


moe_stage1.__doc__ = ops.moe_stage1.__doc__  # one text for the op and its torch wrapper


def _out_for(sort: SortResult, w: MoeWeight, out: torch.Tensor | None, out_dtype: str,
             empty: bool = False) -> torch.Tensor:
    if out is not None:
        return out
    if out_dtype not in ops.OUT_TORCH:
        raise InputError(f"out_dtype {out_dtype!r} (allowed: {', '.join(ops.OUT_TORCH)})")
    if empty:
        return ops._empty(sort.T, w.N, dtype=ops.OUT_TORCH[out_dtype], device=w.device)
    return torch.zeros(sort.T, w.N, dtype=ops.OUT_TORCH[out_dtype], device=w.device)


def _accumulating(name: str, params: str, call: Callable[..., Any]) -> None:
    """An op that adds into the caller's `out` (declared mutated) and returns nothing."""
    _define(name, params, "()", lambda *a: (call(*a), None)[1], lambda *a: None)


_accumulating("moe_stage2", f"{ACT.fields('inter')}, {WEIGHT.fields('w2')}, {SORT.fields('sort')}, "
              "Tensor(a!) out, str out_dtype, str routed_weight, str? instance, str reduce=\"auto\", "
              "bool accumulate=True",
              lambda *a: ops.moe_stage2(*_split(a, ACT, WEIGHT, SORT)))


def moe_stage2(inter: Activation, w2: MoeWeight, sort: SortResult, out: torch.Tensor | None = None,
               out_dtype: str = "bf16", routed_weight: str = "stage2",
               instance: str | None = None, reduce: str = "auto",
               accumulate: bool = True) -> torch.Tensor:
    if out is None:  # (written over, as ops.moe_stage2 does)
        out = _out_for(sort, ops.check_weight("w2", w2), None, out_dtype, empty=True)
        accumulate = False
    torch.ops.mxforge.moe_stage2(*ACT.flatten(inter), *WEIGHT.flatten(w2), *SORT.flatten(sort),
                                 out, out_dtype, routed_weight, instance, reduce, accumulate)
    return out


moe_stage2.__doc__ = ops.moe_stage2.__doc__  # one text for the op and its torch wrapper


_accumulating("moe_1stage", f"{ACT.fields('a')}, {WEIGHT.fields('w1')}, {WEIGHT.fields('w2')}, "
              f"{SORT.fields('sort')}, str activation, Tensor(a!) out, str out_dtype, "
              "str routed_weight, str? instance",
              lambda *a: ops.moe_1stage(*_split(a, ACT, WEIGHT, WEIGHT, SORT)))


def moe_1stage(a: Activation, w1: MoeWeight, w2: MoeWeight, sort: SortResult,
               activation: str = "silu", out: torch.Tensor | None = None, out_dtype: str = "bf16",
               routed_weight: str = "stage2", instance: str | None = None) -> torch.Tensor:
    """Stage 1 (bf16 intermediate) and stage 2 in one launch: returns out [T, H] (+=)."""
    out = _out_for(sort, ops.check_weight("w2", w2), out, out_dtype)
    torch.ops.mxforge.moe_1stage(*ACT.flatten(a), *WEIGHT.flatten(w1), *WEIGHT.flatten(w2),
                                 *SORT.flatten(sort), activation, out, out_dtype, routed_weight,
                                 instance)
    return out


# ---- the whole layer --------------------------------------------------------------------

_FUSED_TAIL = ("str activation, str a_dtype, str stage2_input, str routed_weight, str rounding, "
               "str path, Tensor? expert_mask, bool validate, str stage2_reduce=\"auto\", "
               "str routing=\"auto\"")


def _fused_moe_kernel(*a):
    x, w1, w2, weights, ids, *tail = _split(a, TENSOR, WEIGHT, WEIGHT)
    # (activation ... validate, then stage2_reduce and routing, which the dispatcher leaves
    # out where they hold their schema defaults)
    *rest, expert_mask, validate = tail[:8]
    reduce = tail[8] if len(tail) > 8 else "auto"
    routing = tail[9] if len(tail) > 9 else "auto"
    return ops.fused_moe(x, w1, w2, weights, ids, *rest, expert_mask=expert_mask,
                         validate=validate, stage2_reduce=reduce, routing=routing)


_define("fused_moe", f"Tensor x, {WEIGHT.fields('w1')}, {WEIGHT.fields('w2')}, "
        f"Tensor topk_weights, Tensor topk_ids, {_FUSED_TAIL}", "Tensor", _fused_moe_kernel,
        lambda x, *_: x.new_empty(x.shape, dtype=torch.bfloat16))


def fused_moe(x: torch.Tensor, w1: MoeWeight, w2: MoeWeight, topk_weights: torch.Tensor,
              topk_ids: torch.Tensor, activation: str = "silu", a_dtype: str = "pk_fp4",
              stage2_input: str = "bf16", routed_weight: str = "stage2",
              rounding: str = "round_up", path: str = "auto",
              expert_mask: torch.Tensor | None = None, impl: str = "kernel",
              validate: bool = True, stage2_reduce: str = "auto",
              routing: str = "auto") -> torch.Tensor:
    if impl != "kernel":  # the reference, or ops' error naming the allowed values
        return ops.fused_moe(x, w1, w2, topk_weights, topk_ids, activation, a_dtype,
                             stage2_input, routed_weight, rounding, path, expert_mask, impl,
                             validate, stage2_reduce, routing)
    ops.check_rows("x", x)
    return torch.ops.mxforge.fused_moe(x, *WEIGHT.flatten(ops.check_weight("w1", w1)),
                                       *WEIGHT.flatten(ops.check_weight("w2", w2)), topk_weights,
                                       topk_ids, activation, a_dtype, stage2_input, routed_weight,
                                       rounding, path, expert_mask, validate, stage2_reduce,
                                       routing)


fused_moe.__doc__ = ops.fused_moe.__doc__  # one text for the op and its torch wrapper


OPS = ("quantize", "dequantize", "mx_pack", "moe_sort", "fused_quant_sort", "moe_stage1",
       "moe_stage2", "moe_1stage", "fused_moe")
