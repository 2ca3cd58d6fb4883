"""The vocabulary of instance specs: ops, their fields, allowed values and constraints.

Everything a spec may say is declared here once; validation, expansion, naming, the
registry and the docs' spec reference all read these tables.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .targets import TARGETS

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

DTYPES = ("bf16", "fp16", "fp32", "fp8", "pk_fp4")
ACTIVATIONS = ("silu", "gelu", "swiglu_oai")
GATE_UP = ("concat", "interleaved")
ROUTED_WEIGHT = ("none", "stage1", "stage2")
LAYOUTS = ("plain", "shuffled", "pairbits")
# pairbits: the plain layout with each 32-bit word's e2m1 codes rearranged for the sm90
# register-fragment conversion (csrc/mxforge/layout.h); the cpu target reads it too.
PAIRBITS_TARGETS = ("cpu", "sm90")
BLOCK_M = (16, 32, 64, 128)
BLOCK_N = (16, 32, 64, 128, 256)
BLOCK_K = (32, 64, 128, 256)
SPLIT_K = (1, 2, 4, 8)
CLUSTER_K = (1, 2, 4)
N_TILES = (1, 2, 3, 4, 6, 8, 12)

# GEMM dtype pairs (a = activation, b = weight) every GEMM op may be built for.
GEMM_PAIRS = {
    ("pk_fp4", "pk_fp4"): "a4w4",
    ("bf16", "pk_fp4"): "a16w4",
    ("fp16", "pk_fp4"): "a16w4",
    ("fp8", "pk_fp4"): "a8w4",
    ("fp8", "fp8"): "a8w8",
    ("bf16", "bf16"): "a16w16",
}


@dataclass(frozen=True)
class Field:
    name: str
    allowed: tuple[Any, ...]
    default: Any = None  # None: required
    doc: str = ""


def _f(name: str, allowed: tuple[Any, ...], default: Any = None, doc: str = "") -> Field:
    return Field(name, allowed, default, doc)


A_GEMM = _f("a", ("bf16", "fp16", "fp8", "pk_fp4"), doc="activation dtype")
B_GEMM = _f("b", ("pk_fp4", "fp8", "bf16"), doc="weight dtype")
BM = _f("block_m", BLOCK_M, doc="rows of a sorted block (the sort's padding unit)")
BN = _f("block_n", BLOCK_N, doc="GEMM N tile")
BK = _f("block_k", BLOCK_K, doc="GEMM K tile (a multiple of the 32-element scale block)")
CLUSTER = _f("cluster_k", CLUSTER_K, 1,
             "CTAs of a thread block cluster that share one output tile's K range, their partial "
             "sums added in the cluster's shared memory before the epilogue (sm90, b_path swap; "
             "allowed with pk_fp4 activations: unlike split_k, no partial sum leaves the kernel; "
             "names carry `ck` only when > 1)")
N_TILES_F = _f("n_tiles", N_TILES, 1,
               "output tiles (block_n columns each) of its sorted block that one CTA computes "
               "one after another, the activations loaded once and the next tile's weights "
               "loading during this tile's epilogue (sm90 moe_stage2: b_path swap with one warp "
               "group, block_n 256 with block_m 16, 128 with block_m 32; or b_path wgmma with a "
               "bf16 out, where the whole K's activations fit its resident tiles (K <= 192 at "
               "block_m 128, 448 at block_m 64), else one tile per CTA; split_k and cluster_k "
               "1; names carry `nt` only when > 1)")
BIAS = _f("bias", (False, True), False, "add a per-expert fp32 bias to the GEMM output")
LAYOUT = _f("layout", LAYOUTS, "plain", "weight layout the instance reads (docs/ops.md)")
ACT = _f("activation", ACTIVATIONS, doc="gate activation")
GU = _f("gate_up", GATE_UP, "concat", "how gate and up rows are stored in w1")
B_PATH = _f("b_path", ("smem", "regs", "wgmma", "swap", "wgmma_regs"), "smem",
            "the main loop, named by how the weights reach the MMAs: smem = dequantized into "
            "shared memory by the CTA, mma.sync; regs = loaded and converted in registers by "
            "each warp (sm90, block_m <= 32, block_k a multiple of 128; gemm.cuh, RegFragB); "
            "wgmma = raw bytes through a cp.async ring, converted into swizzled shared tiles "
            "that warpgroup MMAs read (sm90, pk_fp4 weights with pk_fp4, bf16 or fp8 "
            "activations, block_m 64 or 128, block_k 64 (the ring's "
            "shared memory), "
            "64 or 128 columns per warpgroup; gemm.cuh, WgmmaTile); swap = the decode tile: "
            "weights as the 16-row MMA operand and the block's tokens as 8-wide atoms, "
            "activations resident in shared memory, each warp streaming its own weight rows "
            "a k-tile ahead (sm90, pk_fp4 weights with pk_fp4 or bf16 activations, "
            "block_m 16 or 32, block_n 32/64/128/256 (up to 128 with block_m 32), block_k a "
            "multiple of 128; gemm.cuh, "
            "SwapTile); wgmma_regs = prefill with the swapped roles on warpgroup MMAs: each "
            "warp's 16 weight rows loaded and converted in registers as the MMA's A operand, "
            "the block's tokens its N from a swizzled shared tile (sm90, pk_fp4 weights with "
            "pk_fp4 or bf16 activations, block_m 16, 32, 64 or 128, block_n 128, block_k 128; "
            "gemm.cuh, WgmmaRegsTile)")


@dataclass(frozen=True)
class OpSpec:
    name: str
    doc: str
    fields: tuple[Field, ...]
    args_type: str

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


OPS: dict[str, OpSpec] = {
    op.name: op
    for op in (
        OpSpec("mxfp4_quant", "MX block quantization (1x32 e8m0): pk_fp4 = MXFP4, fp8 = MXFP8",
               (_f("a", ("bf16", "fp16", "fp32"), doc="input dtype"),
                _f("out", ("pk_fp4", "fp8"), "pk_fp4", "element format")), "QuantArgs"),
        OpSpec("mxfp4_dequant", "MX block dequantization",
               (_f("a", ("pk_fp4", "fp8"), doc="quantized input"),
                _f("out", ("bf16", "fp32"), doc="output dtype")), "QuantArgs"),
        OpSpec("mx_pack", "weight/scale layout conversion between plain and `layout`",
               (_f("layout", ("shuffled", "pairbits"), doc="target layout"),), "PackArgs"),
        OpSpec("moe_sort", "MoE sorting (aiter moe_sorting semantics)", (), "SortArgs"),
        OpSpec("fused_quant_sort", "activation quantization and MoE sorting in one launch",
               (_f("a", ("bf16", "fp16"), doc="input dtype"),
                _f("out", ("pk_fp4", "fp8"), "pk_fp4", "element format")),
               "FusedQuantSortArgs"),
        OpSpec("moe_stage1", "gate/up GEMM + activation",
               (A_GEMM, B_GEMM, _f("out", ("bf16", "pk_fp4"), doc="intermediate dtype"),
                BM, BN, BK, _f("split_k", SPLIT_K, 1, "K splits (never with pk_fp4 activations)"),
                CLUSTER, ACT, GU, BIAS, _f("routed_weight", ("none", "stage1"), "none",
                                  "multiply by the routed weight here"), LAYOUT, B_PATH),
               "MoeGemmArgs"),
        OpSpec("moe_stage2", "down GEMM + routed-weight multiply + accumulation per token",
               (A_GEMM, B_GEMM, _f("out", ("bf16", "fp32"), "bf16", "output dtype"),
                BM, BN, BK,
                _f("split_k", SPLIT_K, 1, "K splits (bf16/fp16 activations only; names carry "
                   "`sk` only when > 1)"),
                CLUSTER, N_TILES_F, BIAS, _f("routed_weight", ("none", "stage2"), "stage2",
                                                "multiply by the routed weight here"), LAYOUT, B_PATH),
               "MoeGemmArgs"),
        OpSpec("moe_1stage", "stage 1 and stage 2 fused in one launch (decode)",
               (A_GEMM, B_GEMM, _f("out", ("bf16", "fp32"), "bf16", "output dtype"),
                BM, BN, BK, ACT, GU, BIAS,
                _f("routed_weight", ROUTED_WEIGHT, "stage2", "where the routed weight applies"),
                LAYOUT),
               "MoeGemmArgs"),
    )
}
GEMM_OPS = ("moe_stage1", "moe_stage2", "moe_1stage")
TARGETS_FIELD = "targets"
GROUP_KEYS = ("id", "op", TARGETS_FIELD)  # keys of a group besides the op's fields


@dataclass(frozen=True)
class Constraint:
    """A rule over one expanded combination; `check` returns an error reason or None."""
    name: str
    check: Callable[[dict[str, Any]], str | None]


def _pair(c: dict[str, Any]) -> str | None:
    if c["op"] in GEMM_OPS and (c["a"], c["b"]) not in GEMM_PAIRS:
        pairs = ", ".join(f"{a}x{b}" for a, b in GEMM_PAIRS)
        return f"dtype pair {c['a']}x{c['b']} is not supported (supported: {pairs})"
    return None


def _split_k(c: dict[str, Any]) -> str | None:
    sk = c.get("split_k", 1)
    if sk > 1 and c.get("a") == "pk_fp4":
        return "split_k > 1 is invalid with pk_fp4 activations (a4w4 never takes split-K)"
    if sk > 1 and c["op"] == "moe_stage2" and c.get("a") not in ("bf16", "fp16"):
        return (f"split_k > 1 is invalid with {c['a']} activations in moe_stage2 (stage-2 "
                "split-K takes bf16 or fp16 activations only)")
    return None


def _cluster_k(c: dict[str, Any]) -> str | None:
    ck = c.get("cluster_k", 1)
    if ck == 1:
        return None
    if c["target"] != "sm90" or c.get("b_path") != "swap":
        return (f"cluster_k {ck} exists on target sm90 with b_path swap only (asked target "
                f"{c['target']}, b_path {c.get('b_path', 'smem')}; use cluster_k 1)")
    if c.get("split_k", 1) != 1:
        return f"cluster_k {ck} and split_k {c['split_k']} both split K: choose one"
    return None


def _n_tiles(c: dict[str, Any]) -> str | None:
    nt = c.get("n_tiles", 1)
    if nt == 1:
        return None
    one_group = {16: 256, 32: 128}.get(c["block_m"])
    swap_ok = c.get("b_path") == "swap" and c["block_n"] == one_group
    # the ring tile's N loop: its sums leave as bf16 rows (moe.cuh, stage2_wgmma_tiles)
    wgmma_ok = c.get("b_path") == "wgmma" and c.get("out") == "bf16"
    if (c["target"] != "sm90" or not (swap_ok or wgmma_ok)
            or c.get("split_k", 1) != 1 or c.get("cluster_k", 1) != 1):
        return (f"n_tiles {nt} exists on target sm90 with b_path swap, block_n 256 (block_m 16) "
                f"or 128 (block_m 32), or with b_path wgmma and out bf16; split_k 1 and "
                f"cluster_k 1 only (asked target {c['target']}, b_path "
                f"{c.get('b_path', 'smem')}, block_m {c['block_m']}, block_n {c['block_n']}, "
                f"out {c.get('out')}, split_k {c.get('split_k', 1)}, cluster_k "
                f"{c.get('cluster_k', 1)}; use n_tiles 1)")
    return None


def _layout(c: dict[str, Any]) -> str | None:
    if c["op"] in GEMM_OPS and c["b"] != "pk_fp4" and c["layout"] != "plain":
        return f"layout {c['layout']} exists for pk_fp4 weights only (b={c['b']})"
    if c.get("layout") == "pairbits" and c["target"] not in PAIRBITS_TARGETS:
        return (f"layout pairbits exists on targets {', '.join(PAIRBITS_TARGETS)} only (target "
                f"{c['target']}; use layout plain or shuffled)")
    return None


def _b_path(c: dict[str, Any]) -> str | None:
    path = c.get("b_path", "smem")
    if path == "smem":
        return None
    if c["target"] != "sm90":
        return f"b_path {path} exists on target sm90 only (target {c['target']}; use b_path smem)"
    if path in ("regs", "swap"):
        if c["b"] != "pk_fp4" or c["a"] == "fp16":
            return (f"b_path {path} needs pk_fp4 weights and a bf16 MMA input (a in pk_fp4, bf16, "
                    f"fp8); asked a={c['a']}, b={c['b']}")
        if c["block_m"] > 32 or c["block_k"] % 128:
            return (f"b_path {path} needs block_m <= 32 and block_k a multiple of 128 (asked "
                    f"block_m {c['block_m']}, block_k {c['block_k']})")
        # swap: the activation dtypes that ran on a GPU (fp8's conversion path has not);
        # 8 warps of 32 weight rows each, split over N and K
        if path == "swap" and c["a"] not in ("pk_fp4", "bf16"):
            return (f"b_path swap takes pk_fp4 or bf16 activations (the ones run on a GPU); "
                    f"asked a={c['a']}")
        if path == "swap" and c["block_n"] not in (32, 64, 128, 256):
            return (f"b_path swap needs block_n 32, 64, 128 or 256 (32 weight rows per warp, 8 "
                    f"warps); asked block_n {c['block_n']}")
        if path == "swap" and c["block_m"] == 32 and c["block_n"] > 128:
            return (f"b_path swap with block_m 32 needs block_n 32, 64 or 128 (16 weight rows "
                    f"per warp, 8 warps); asked block_n {c['block_n']}")
        return None
    if path == "wgmma_regs":
        if c["b"] != "pk_fp4" or c["a"] not in ("pk_fp4", "bf16"):
            return (f"b_path wgmma_regs needs pk_fp4 weights and pk_fp4 or bf16 activations; "
                    f"asked a={c['a']}, b={c['b']}")
        if c["block_m"] not in (16, 32, 64, 128) or c["block_n"] != 128 or c["block_k"] != 128:
            return (f"b_path wgmma_regs needs block_m 16, 32, 64 or 128, block_n 128 (two warpgroups of 64 "
                    f"weight rows) and block_k 128; asked block_m {c['block_m']}, block_n "
                    f"{c['block_n']}, block_k {c['block_k']}")
        return None
    # wgmma: the dtype pairs that ran on a GPU; two warpgroups, one per 64 rows (block_m
    # 128) or per half of block_n (block_m 64)
    if c["b"] != "pk_fp4" or c["a"] == "fp16":
        return (f"b_path wgmma needs pk_fp4 weights and pk_fp4, bf16 or fp8 activations; "
                f"asked a={c['a']}, b={c['b']}")
    per_wg = c["block_n"] // (2 // (c["block_m"] // 64)) if c["block_m"] in (64, 128) else 0
    if c["block_m"] not in (64, 128) or c["block_k"] != 64 or per_wg not in (64, 128):
        return (f"b_path wgmma needs block_m 64 or 128, block_k 64 and 64 or 128 "
                f"columns per warpgroup (block_n 64/128 with block_m 128, 128/256 with block_m "
                f"64); asked block_m {c['block_m']}, block_n {c['block_n']}, block_k {c['block_k']}")
    return None


def _requant(c: dict[str, Any]) -> str | None:
    if c["op"] == "moe_stage1" and c["out"] == "pk_fp4" and c["block_n"] < 64:
        return "re-quantized output needs block_n >= 64 (32 output columns per scale block)"
    return None


def tile_lds_bytes(block_m: int, block_n: int, block_k: int) -> int:
    """Shared memory of a GEMM tile: GemmTile::kSmem (csrc/mxforge/gpu/gemm.cuh: the A and
    B tiles of 16-bit rows padded by 8, or the fp32 staging tile) plus the kernels' row
    arrays (MXF_MOE_SHARED in moe.cuh). check_amd_isa.py compares it with the compiler's.
    A `b_path: regs` tile (sm90) needs less (two A tiles instead of A and B), so the bound
    is conservative there; a `b_path: wgmma` tile sizes its ring from its own budget (two
    CTAs per SM, WgmmaTile::kSmem), which block_k 64 keeps under the limit."""
    tiles = max(2 * (block_m + block_n) * (block_k + 8), 4 * block_m * (block_n + 8))
    return tiles + 4 * (3 * block_m + block_n)


def _lds(c: dict[str, Any]) -> str | None:
    limit = TARGETS[c["target"]].lds_bytes
    if c["op"] in GEMM_OPS and limit:
        need = tile_lds_bytes(c["block_m"], c["block_n"], c["block_k"])
        if need > limit:
            return (f"target {c['target']}: a block_m {c['block_m']} x block_n {c['block_n']} x "
                    f"block_k {c['block_k']} tile needs {need} bytes of shared memory "
                    f"({c['target']} has {limit})")
    return None


def _native_mx(c: dict[str, Any]) -> str | None:
    t = TARGETS[c["target"]]
    if c["op"] in GEMM_OPS and (c["a"], c["b"]) in t.native_mx_pairs and c["block_k"] % t.native_mx_k:
        return (f"target {c['target']}: {c['a']}x{c['b']} runs on the scaled MFMA "
                f"(K = {t.native_mx_k} per instruction), block_k {c['block_k']} is not a "
                f"multiple of {t.native_mx_k}")
    return None


CONSTRAINTS: tuple[Constraint, ...] = (
    Constraint("dtype_pair", _pair),
    Constraint("split_k", _split_k),
    Constraint("cluster_k", _cluster_k),
    Constraint("n_tiles", _n_tiles),
    Constraint("layout", _layout),
    Constraint("b_path", _b_path),
    Constraint("requant_tile", _requant),
    Constraint("target_lds", _lds),
    Constraint("target_native_mx_k", _native_mx),
)

# Short codes used in canonical names (every field appears, in this order).
NAME_ORDER = ("a", "b", "out", "block_m", "block_n", "block_k", "split_k", "cluster_k", "n_tiles", "activation",
              "gate_up", "routed_weight", "bias", "layout", "b_path")


def default_of(op: str, name: str) -> Any:
    f = OPS[op].field(name)
    return None if f is None else f.default

