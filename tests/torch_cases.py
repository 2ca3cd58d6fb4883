"""One call of every registered torch op (`torch.ops.mxforge.*`) on a small MiniMax-M2.1
TP=8 layer, for the torch-integration tests on the CPU (test_torch_library.py) and on the
GPU (test_gpu.py): opcheck, torch.compile and CUDA-graph capture use the same calls."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import mxforge
from mxforge.library import ACT, OPS, SORT, WEIGHT
from mxforge.models import PRESETS

from .helpers import make_layer

BLOCK_M = 16  # compiled for every GEMM op (the one-stage kernel too) in the ci and default sets


@dataclass
class OpCase:
    name: str
    args: tuple[Any, ...]
    accumulates: torch.Tensor | None = None  # the `out` an accumulating op adds into

    @property
    def op(self) -> Any:
        return getattr(torch.ops.mxforge, self.name).default

    def run(self) -> tuple[torch.Tensor, ...]:
        """Call the op (on a zeroed `out` for accumulating ops); its results as a tuple."""
        if self.accumulates is not None:
            self.accumulates.zero_()
            self.op(*self.args)
            return (self.accumulates,)
        out = self.op(*self.args)
        return out if isinstance(out, tuple) else (out,)


def op_cases(T: int, g: torch.Generator, device: torch.device) -> list[OpCase]:
    shape = PRESETS["minimax-m2.1-tp8"]
    L = make_layer(shape, T, g, device)
    E, H = L.E, shape.H
    q = mxforge.quantize(L.x)
    sort = mxforge.moe_sort(L.topk_ids, L.topk_weights, E, BLOCK_M)
    inter = mxforge.moe_stage1(q, L.w1, sort, shape.activation)
    zero_buf = torch.ones(T, H, device=device)
    few = 4  # experts to pack: opcheck runs the op several times
    w1_plain = L.w1.data[:few].reshape(few, -1), L.w1.scales[:few].reshape(few, -1)
    out2 = torch.zeros(T, H, dtype=torch.bfloat16, device=device)
    out1 = torch.zeros(T, H, dtype=torch.bfloat16, device=device)
    routing = (L.topk_ids, L.topk_weights, E, BLOCK_M)
    cases = [
        OpCase("quantize", (L.x, "pk_fp4", "round_up", None)),
        OpCase("dequantize", (*ACT.flatten(q), torch.bfloat16, None)),
        OpCase("mx_pack", (*w1_plain, few, L.w1.N, L.w1.K, "shuffled", 0)),
        OpCase("moe_sort", (*routing, None, zero_buf, True)),
        OpCase("fused_quant_sort", (*ACT.flatten(L.x), *routing, "pk_fp4", "round_up", None,
                                    None, True, None)),
        OpCase("moe_stage1", (*ACT.flatten(q), *WEIGHT.flatten(L.w1), *SORT.flatten(sort),
                              shape.activation, "bf16", "none", "round_up", None)),
        OpCase("moe_stage2", (*ACT.flatten(inter), *WEIGHT.flatten(L.w2), *SORT.flatten(sort),
                              out2, "bf16", "stage2", None, "atomic", True), accumulates=out2),
        OpCase("moe_1stage", (*ACT.flatten(q), *WEIGHT.flatten(L.w1), *WEIGHT.flatten(L.w2),
                              *SORT.flatten(sort), shape.activation, out1, "bf16", "stage2", None),
               accumulates=out1),
        OpCase("fused_moe", (L.x, *WEIGHT.flatten(L.w1), *WEIGHT.flatten(L.w2), L.topk_weights,
                             L.topk_ids, shape.activation, "pk_fp4", "bf16", "stage2",
                             "round_up", "auto", None, True, "auto")),
    ]
    assert [c.name for c in cases] == list(OPS), "a registered op has no test case"
    return cases
