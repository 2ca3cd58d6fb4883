"""mxforge: ahead-of-time generated MXFP4 MoE kernels behind one typed dispatch table.

    import mxforge
    mxforge.instances()                      # the compiled table
    w1 = mxforge.pack_weight(w1_bf16, gate_up="concat")
    w2 = mxforge.pack_weight(w2_bf16)
    y = mxforge.fused_moe(x, w1, w2, topk_weights, topk_ids, a_dtype="pk_fp4")
"""
from __future__ import annotations

from typing import Any

from . import _loader
from .dispatch import Decision, Instance, Key, Shape, select
from .errors import (InputError, MxforgeError, NoInstanceError, NotBuiltError,
                     TargetUnavailableError)
from .library import (dequantize, fused_moe, fused_quant_sort, moe_1stage, moe_routes, moe_sort,
                      moe_stage1, moe_stage2, mx_weight, pack_weight, quantize, shuffle_scales,
                      unpack_weight, unshuffle_scales)
from .ops import (ROUNDING_MODES, MoeWeight, MXTensor, SortResult, dependent_launch_mode,
                  reference_weight, set_dependent_launch)

__version__ = "0.1.0"


def instances(**filters: Any) -> list[dict[str, Any]]:
    """The compiled dispatch table: one dict per instance (name, target, op, dtypes, tiles,
    split_k, activation, flags), optionally filtered by exact field values."""
    from .dispatch import instances as _rows
    out = []
    for r in _rows(**filters):
        d = {k: getattr(r, k) for k in r.__dataclass_fields__ if k != "index"}
        d["skip_inter_quant"] = r.op == "moe_stage1" and r.a in ("pk_fp4", "fp8") and r.out == "bf16"
        out.append(d)
    return out


def manifest() -> dict[str, Any]:
    """The build manifest embedded in the module (set, targets, instances, compilers, hash)."""
    return _loader.manifest()


__all__ = [
    "ROUNDING_MODES", "Decision", "InputError", "Instance", "Key", "MXTensor", "MoeWeight",
    "MxforgeError", "NoInstanceError", "NotBuiltError", "Shape", "SortResult",
    "TargetUnavailableError", "dependent_launch_mode", "dequantize", "fused_moe",
    "fused_quant_sort", "instances", "manifest", "moe_1stage", "moe_routes", "moe_sort",
    "moe_stage1", "moe_stage2", "mx_weight", "pack_weight", "quantize", "select",
    "set_dependent_launch", "shuffle_scales", "unpack_weight", "unshuffle_scales",
]
