"""Model presets (shared/reference/mxfp4-moe.md): MoE shapes per rank."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MoeShape:
    name: str
    H: int           # hidden size (stage 1 K, stage 2 N)
    I: int           # MoE intermediate size per rank (stage 1 N = 2I, stage 2 K)
    E: int           # experts
    topk: int
    activation: str  # silu | swiglu_oai
    gate_up: str     # concat | interleaved
    bias: bool


PRESETS: dict[str, MoeShape] = {
    s.name: s for s in (
        MoeShape("minimax-m2.1-tp1", 3072, 1536, 256, 8, "silu", "concat", False),
        MoeShape("minimax-m2.1-tp4", 3072, 384, 256, 8, "silu", "concat", False),
        MoeShape("minimax-m2.1-tp8", 3072, 192, 256, 8, "silu", "concat", False),
        MoeShape("gpt-oss-120b", 2880, 2880, 128, 4, "swiglu_oai", "interleaved", True),
        MoeShape("gpt-oss-20b", 2880, 2880, 32, 4, "swiglu_oai", "interleaved", True),
    )
}


def preset(name: str) -> MoeShape:
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r} (presets: {', '.join(PRESETS)})")
    return PRESETS[name]
