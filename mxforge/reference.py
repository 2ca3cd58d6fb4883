"""Pure-torch reference implementations of every mxforge op (docs/ops.md is the contract).

Every kernel test compares against this module, so it favours being obviously right over
being fast, while staying vectorized enough for model-sized tensors (~1e8 elements).
The scalar numerics mirror `csrc/mxforge/numerics.h` bit for bit: scales, element codes
and packed bytes are exact; only GEMM accumulation order (fp32) differs from kernels.

Tensors may live on any device; results come back on the input's device.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor

__all__ = [
    "ROUNDING_MODES", "ELEM_FORMATS", "SENTINEL_SHIFT",
    "e2m1_decode", "e2m1_encode", "e4m3_decode", "e4m3_encode", "e8m0_decode",
    "mx_scale", "scale_down", "quantize_mx", "dequantize_mx",
    "shuffle_scales", "unshuffle_scales", "pack_weights", "unpack_weights",
    "moe_sort", "WeightRef", "gated_activation", "moe_stage1", "moe_stage2", "fused_moe",
]

# Index = mxf::Rounding enum value (ABI).
ROUNDING_MODES = ("round_up", "floor", "ceil", "even")
# Element formats of the MX family: (largest magnitude, largest unbiased exponent).
ELEM_FORMATS = {"e2m1": (6.0, 2), "e4m3": (448.0, 8)}
SENTINEL_SHIFT = 24  # sorted row = (slot << 24) | token (mxf::kTokenBits)

# Rows of a 2-D input processed at once: bounds temporaries (int64 bit twiddling is
# 8 bytes/element) to a few hundred MB on 1e8-element tensors.
_CHUNK_ELEMS = 1 << 22


def _round_up(a: int, b: int) -> int:
    return -(-a // b) * b


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _f32_bits(x: Tensor) -> Tensor:
    """fp32 bit pattern as int64 in [0, 2^32) (C++ uint32 semantics for shifts)."""
    return x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def _bits_f32(u: Tensor) -> Tensor:
    """int64 holding uint32 bits -> fp32 (reinterpret)."""
    u = u & 0xFFFFFFFF
    # int32 cannot hold values >= 2^31; wrap them to the same 32-bit pattern.
    u = torch.where(u >= 1 << 31, u - (1 << 32), u)
    return u.to(torch.int32).view(torch.float32)


def _check_elem(elem: str) -> tuple[float, int]:
    if elem not in ELEM_FORMATS:
        raise ValueError(f"elem must be one of {tuple(ELEM_FORMATS)}, got {elem!r}")
    return ELEM_FORMATS[elem]


# ---- e2m1 (fp4) ----------------------------------------------------------------------

_E2M1_MAG = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def e2m1_decode(codes: Tensor) -> Tensor:
    """e2m1 codes (uint8, low 4 bits used) -> fp32; codes 8..15 are the negatives (8 = -0)."""
    table = torch.tensor(_E2M1_MAG + tuple(-v for v in _E2M1_MAG), dtype=torch.float32,
                         device=codes.device)
    return table[(codes.to(torch.int64) & 15)]


def e2m1_encode(x: Tensor) -> Tensor:
    """fp32 -> e2m1 code (uint8): nearest, ties to even, saturating; NaN -> 0 (mxf::f32_to_e2m1).

    The comparison ladder is the C++ one: `<=` at ties that round down to the even code
    (0.25, 1.25, 2.5, 5), `<` at ties that round up to it (0.75, 1.75, 3.5).
    """
    x = x.to(torch.float32)
    a = x.abs()
    c = ((a > 0.25).to(torch.uint8) + (a >= 0.75).to(torch.uint8) + (a > 1.25).to(torch.uint8)
         + (a >= 1.75).to(torch.uint8) + (a > 2.5).to(torch.uint8)
         + (a >= 3.5).to(torch.uint8) + (a > 5.0).to(torch.uint8))
    # Sign from the bit, not `x < 0`: -0.0 and negatives rounding to zero keep code 8.
    sign = (x.contiguous().view(torch.int32) < 0).to(torch.uint8) * 8
    out = c | sign
    return torch.where(torch.isnan(x), torch.zeros_like(out), out)


# ---- e4m3fn (fp8) --------------------------------------------------------------------

def e4m3_decode(b: Tensor) -> Tensor:
    """e4m3fn bytes -> fp32 (0x7F / 0xFF are NaN; no infinities) (mxf::e4m3_to_f32)."""
    u = b.to(torch.int64) & 0xFF
    sign = (u & 0x80) << 24
    exp = (u >> 3) & 0xF
    man = u & 7
    normal = _bits_f32(sign | ((exp + 120) << 23) | (man << 20))
    sub = man.to(torch.float32) * 0.001953125  # man * 2^-9, exact
    sub = torch.where(sign != 0, -sub, sub)
    out = torch.where(exp == 0, sub, normal)
    nan = (exp == 0xF) & (man == 7)
    return torch.where(nan, torch.full_like(out, float("nan")), out)


def e4m3_encode(x: Tensor) -> Tensor:
    """fp32 -> e4m3fn byte: RNE, saturating to +-448, NaN -> 0x7F (mxf::f32_to_e4m3).

    Integer transliteration of the C++ rather than torch.float8_e4m3fn: torch does not
    saturate (values past 464 become NaN) and we want the rule visible here; the tests
    check both agree after clamping.
    """
    x = x.to(torch.float32).contiguous()
    u = _f32_bits(x)
    sign = (u >> 24) & 0x80
    a = x.abs()
    ua = _f32_bits(a)
    e = (ua >> 23) - 127
    is_sub = e < -6
    # Subnormal e4m3: units of 2^-9. a * 512 is exact and < 8; the remainder is exact too.
    q = torch.where(is_sub, a * 512.0, torch.zeros_like(a))
    qt = torch.trunc(q)
    r_sub = qt.to(torch.int64)
    rem = q - qt
    r_sub = r_sub + ((rem > 0.5) | ((rem == 0.5) & ((r_sub & 1) == 1))).to(torch.int64)
    # Normal: keep 3 mantissa bits, round the 20 dropped bits to nearest even.
    m = ua & 0x7FFFFF
    r_n = ((e + 7) << 3) | (m >> 20)
    rem_n = m & 0xFFFFF
    r_n = r_n + ((rem_n > 0x80000) | ((rem_n == 0x80000) & ((r_n & 1) == 1))).to(torch.int64)
    r_n = torch.clamp(r_n, max=0x7E)
    r = torch.where(is_sub, r_sub, r_n)
    r = torch.where(a >= 448.0, torch.full_like(r, 0x7E), r)  # also catches inf
    out = sign | r
    out = torch.where(torch.isnan(x), torch.full_like(out, 0x7F), out)
    return out.to(torch.uint8)


# ---- e8m0 scales ---------------------------------------------------------------------

def e8m0_decode(s: Tensor) -> Tensor:
    """e8m0 byte -> fp32 2^(s-127); 0 -> 2^-127 (an fp32 subnormal), 255 -> NaN."""
    u = s.to(torch.int64) & 0xFF
    bits = torch.where(u == 0, torch.full_like(u, 0x00400000), u << 23)
    bits = torch.where(u == 255, torch.full_like(u, 0x7FC00000), bits)
    return _bits_f32(bits)


def mx_scale(amax: Tensor, rounding: str = "round_up", elem: str = "e2m1") -> Tensor:
    """Block scale byte from the block amax (fp32, >= 0): exactly mxf::e8m0_scale."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    elem_max, emax = _check_elem(elem)
    amax = amax.to(torch.float32).contiguous()
    if rounding == "round_up":
        # fp32(amax / elem_max) correctly rounded. Divide in fp64 and round once more:
        # double rounding is innocuous for division when 53 >= 2*24 + 2, and this dodges
        # backends that turn division by a scalar into multiplication by its reciprocal.
        q = (amax.to(torch.float64) / elem_max).to(torch.float32)
        qb = _f32_bits(q)
        s = (qb >> 23) + ((qb & 0x7FFFFF) != 0).to(torch.int64)
    else:
        ab = _f32_bits(amax)
        e = ab >> 23
        man = ab & 0x7FFFFF
        if rounding == "ceil":
            e = e + (man != 0).to(torch.int64)
        elif rounding == "even":
            e = e + (man >= 0x400000).to(torch.int64)  # mantissa >= 1.5 rounds up
        s = e - emax
    s = torch.clamp(s, 0, 254)
    s = torch.where(amax == 0, torch.zeros_like(s), s)
    s = torch.where(~torch.isfinite(amax), torch.full_like(s, 255), s)
    return s.to(torch.uint8)


def scale_down(x: Tensor, s: Tensor) -> Tensor:
    """x * 2^(127-s) in fp32, as mxf::scale_down: two power-of-two multiplies, each factor
    a normal fp32 (so subnormal results round exactly as on every target). `s` broadcasts."""
    e = 127 - s.to(torch.int64)
    e1 = torch.div(e, 2, rounding_mode="trunc")  # C++ int division truncates toward zero
    e2 = e - e1
    p1 = _bits_f32((127 + e1) << 23)
    p2 = _bits_f32((127 + e2) << 23)
    return (x.to(torch.float32) * p1) * p2


# ---- MX block quantization -----------------------------------------------------------

def _row_chunks(M: int, row_elems: int) -> Iterator[slice]:
    rows = max(1, _CHUNK_ELEMS // max(1, row_elems))
    for r0 in range(0, M, rows):
        yield slice(r0, min(M, r0 + rows))


def _quantize_rows(x: Tensor, Kp: int, rounding: str, elem: str) -> tuple[Tensor, Tensor]:
    M, K = x.shape
    xf = x.to(torch.float32)
    if Kp != K:  # padding elements quantize as +0 (code 0)
        xf = torch.nn.functional.pad(xf, (0, Kp - K))
    blocks = xf.reshape(M, Kp // 32, 32)
    amax = blocks.abs().amax(dim=-1)
    # NaN anywhere => amax NaN (don't rely on the reduction propagating NaN).
    amax = torch.where(torch.isnan(blocks).any(dim=-1), torch.full_like(amax, float("nan")),
                       amax)
    s = mx_scale(amax, rounding, elem)
    v = scale_down(blocks, s.unsqueeze(-1)).reshape(M, Kp)
    if elem == "e2m1":
        c = e2m1_encode(v)
        q = c[:, 0::2] | (c[:, 1::2] << 4)  # element 2i in the low nibble
    else:
        q = e4m3_encode(v)
    return q.contiguous(), s


def quantize_mx(x: Tensor, rounding: str = "round_up", elem: str = "e2m1"
                ) -> tuple[Tensor, Tensor]:
    """MX 1x32 quantization along the last dim (mxfp4_quant).

    x [..., K] bf16/fp16/fp32 -> (q, scales): e2m1 gives packed q [..., Kp/2]; e4m3 gives
    q [..., Kp] e4m3fn bytes; scales [..., Kp/32] e8m0. Kp = round_up(K, 32).
    """
    _check_elem(elem)
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}")
    if x.dim() < 1:
        raise ValueError("quantize_mx needs at least one dimension")
    lead, K = tuple(x.shape[:-1]), x.shape[-1]
    Kp = _round_up(K, 32)
    x2 = x.reshape(-1, K)
    M = x2.shape[0]
    qcols = Kp // 2 if elem == "e2m1" else Kp
    q = torch.empty(M, qcols, dtype=torch.uint8, device=x.device)
    s = torch.empty(M, Kp // 32, dtype=torch.uint8, device=x.device)
    if Kp > 0:
        for rows in _row_chunks(M, Kp):
            q[rows], s[rows] = _quantize_rows(x2[rows], Kp, rounding, elem)
    return q.reshape(lead + (qcols,)), s.reshape(lead + (Kp // 32,))


def dequantize_mx(q: Tensor, scales: Tensor, K: int, elem: str = "e2m1",
                  out_dtype: torch.dtype = torch.float32) -> Tensor:
    """Inverse of quantize_mx: element * 2^(s-127) in fp32 (NaN for s = 0xFF), then
    out_dtype (round to nearest even); padding past K is dropped. Returns [..., K]."""
    _check_elem(elem)
    Kp = _round_up(K, 32)
    per_byte = 2 if elem == "e2m1" else 1
    if q.shape[-1] != Kp // per_byte or scales.shape[-1] != Kp // 32:
        raise ValueError(f"shapes {tuple(q.shape)}, {tuple(scales.shape)} do not match K={K}")
    lead = tuple(q.shape[:-1])
    q2 = q.reshape(-1, q.shape[-1])
    s2 = scales.reshape(-1, Kp // 32)
    M = q2.shape[0]
    out = torch.empty(M, K, dtype=out_dtype, device=q.device)
    if K > 0:
        for rows in _row_chunks(M, Kp):
            qq = q2[rows]
            if elem == "e2m1":
                codes = torch.stack((qq & 15, qq >> 4), dim=-1).reshape(qq.shape[0], Kp)
                v = e2m1_decode(codes)
            else:
                v = e4m3_decode(qq)
            sc = e8m0_decode(s2[rows])
            v = (v.reshape(-1, Kp // 32, 32) * sc.unsqueeze(-1)).reshape(-1, Kp)
            out[rows] = v[:, :K].to(out_dtype)
    return out.reshape(lead + (K,))


# ---- Scale shuffle and weight layouts ------------------------------------------------

def shuffle_scales(s: Tensor) -> Tensor:
    """aiter e8m0_shuffle of a 2-D scale matrix [R, C] -> [round_up(R,32), round_up(C,8)]
    (padding 127 = 2^0). Flat offset of (r, c) is mxf::shuffled_scale_off."""
    R, C = s.shape
    Rp, Cp = _round_up(R, 32), _round_up(C, 8)
    sp = torch.full((Rp, Cp), 127, dtype=torch.uint8, device=s.device)
    sp[:R, :C] = s
    # r = 32 r0 + 16 r1 + r2, c = 8 c0 + 4 c1 + c2 -> order (r0, c0, c2, r2, c1, r1).
    out = sp.view(Rp // 32, 2, 16, Cp // 8, 2, 4).permute(0, 3, 5, 2, 4, 1)
    return out.contiguous().view(Rp, Cp)


def unshuffle_scales(s_shuf: Tensor, R: int, C: int) -> Tensor:
    """Inverse of shuffle_scales: shuffled [Rp, Cp] (or flat Rp*Cp) -> [R, C]."""
    Rp, Cp = _round_up(R, 32), _round_up(C, 8)
    if s_shuf.numel() != Rp * Cp:
        raise ValueError(f"{s_shuf.numel()} scale bytes, expected {Rp}x{Cp}")
    # Dims of the shuffled view: (r0, c0, c2, r2, c1, r1) -> back to (r0, r1, r2, c0, c1, c2).
    v = s_shuf.contiguous().view(Rp // 32, Cp // 8, 4, 16, 2, 2).permute(0, 5, 3, 1, 4, 2)
    return v.contiguous().view(Rp, Cp)[:R, :C].contiguous()


LAYOUTS = ("plain", "shuffled", "pairbits")

# pairbits (csrc/mxforge/layout.h, PairBits): plain bytes, but each little-endian 32-bit
# word's bits rearranged so that the bf16 pair (code i, code i + 4) comes out of a word as
# the OR over its groups of rotl(word, rot) & mask. Pair i as bf16x2 bits: code i's sign at
# bit 15 and ee.m at bits 6-8, code i + 4's at 31 and 22-24.
_PAIRBITS_GROUPS = ((0, 6, 0x81C081C0), (1, 2, 0x81C081C0), (2, 12, 0x81C081C0),
                    (3, 8, 0x80C080C0), (3, 0, 0x01000100))  # (pair, rot, mask)


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF if r else x


def _pair_bits(w: int, i: int) -> int:
    t = (w << (12 - 4 * i)) & 0xFFFFFFFF
    return (t & 0x80008000) | ((t >> 6) & 0x01C001C0)


def _pairbits_encode_word(w: int) -> int:
    out = 0
    for pair, rot, mask in _PAIRBITS_GROUPS:
        out |= _rotl32(_pair_bits(w, pair) & mask, (32 - rot) % 32)
    return out


# Where natural bit b of a word goes (a permutation of 0..31; tests check it).
PAIRBITS_PERM = tuple(_pairbits_encode_word(1 << b).bit_length() - 1 for b in range(32))


def _permute_word_bits(data: Tensor, perm: tuple[int, ...]) -> Tensor:
    """uint8 [..., n] (n % 4 == 0) as little-endian 32-bit words, bit b moved to perm[b]."""
    shape = data.shape
    w = data.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    out = torch.zeros_like(w)
    for b, d in enumerate(perm):
        out |= ((w >> b) & 1) << d
    out = torch.where(out >= 2 ** 31, out - 2 ** 32, out).to(torch.int32)
    return out.view(torch.uint8).view(shape)


def pairbits_encode(data: Tensor) -> Tensor:
    """Plain MXFP4 code bytes [..., n] (n % 4 == 0) -> the pairbits layout's bytes."""
    return _permute_word_bits(data, PAIRBITS_PERM)


def pairbits_decode(data: Tensor) -> Tensor:
    """Inverse of pairbits_encode."""
    inverse = [0] * 32
    for b, d in enumerate(PAIRBITS_PERM):
        inverse[d] = b
    return _permute_word_bits(data, tuple(inverse))


def _check_packed_shapes(w: Tensor, s: Tensor, N: int, K: int) -> tuple[int, int]:
    Kp = _round_up(K, 32)
    E = w.shape[0]
    if tuple(w.shape) != (E, N, Kp // 2) or tuple(s.shape) != (E, N, Kp // 32):
        raise ValueError(f"expected w [E, {N}, {Kp // 2}] and s [E, {N}, {Kp // 32}], "
                         f"got {tuple(w.shape)} and {tuple(s.shape)}")
    if w.dtype != torch.uint8 or s.dtype != torch.uint8:
        raise ValueError("packed weights and scales are uint8")
    return E, Kp


def pack_weights(w: Tensor, s: Tensor, K: int, layout: str) -> tuple[Tensor, Tensor]:
    """Plain MXFP4 weights w [E, N, Kp/2] + scales [E, N, Kp/32] -> the layout (mx_pack).

    plain: contiguous copies of the same shapes. pairbits: [E, N*Kp/2], [E, N*Kp/32], the
    plain bytes with each 32-bit word's bits rearranged (pairbits_encode). shuffled: [E, Np*Kq/2], [E, Np*Kq/32]
    (Np = round_up(N, 32), Kq = round_up(K, 256); zero codes / scale 127 in padding).
    """
    N = w.shape[1]
    E, Kp = _check_packed_shapes(w, s, N, K)
    if layout == "plain":
        return w.contiguous().clone(), s.contiguous().clone()
    if layout == "pairbits":  # (flat per expert, as mx_pack writes every packed layout)
        return pairbits_encode(w).reshape(E, -1), s.contiguous().clone().reshape(E, -1)
    if layout != "shuffled":
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    Np, Kq = _round_up(N, 32), _round_up(K, 256)
    wp = torch.zeros(E, Np, Kq // 2, dtype=torch.uint8, device=w.device)
    wp[:, :N, : Kp // 2] = w
    # off(n, kb) = (((n/16)*(Kq/64) + kb/32)*16 + n%16)*32 + kb%32: 16-row x 32-byte tiles.
    wt = wp.view(E, Np // 16, 16, Kq // 64, 32).permute(0, 1, 3, 2, 4)
    sp = torch.full((E, Np, Kq // 32), 127, dtype=torch.uint8, device=s.device)
    sp[:, :N, : Kp // 32] = s
    ss = torch.stack([shuffle_scales(sp[e]) for e in range(E)]) if E else sp
    return wt.contiguous().view(E, -1), ss.contiguous().view(E, -1)


def unpack_weights(w_packed: Tensor, s_packed: Tensor, N: int, K: int, layout: str
                   ) -> tuple[Tensor, Tensor]:
    """Inverse of pack_weights: -> plain w [E, N, Kp/2], s [E, N, Kp/32]."""
    Kp = _round_up(K, 32)
    E = w_packed.shape[0]
    if layout in ("plain", "pairbits"):
        w = w_packed.reshape(E, N, Kp // 2).contiguous().clone()
        return (pairbits_decode(w) if layout == "pairbits" else w,
                s_packed.reshape(E, N, Kp // 32).contiguous().clone())
    if layout != "shuffled":
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    Np, Kq = _round_up(N, 32), _round_up(K, 256)
    if w_packed.numel() != E * Np * Kq // 2 or s_packed.numel() != E * Np * Kq // 32:
        raise ValueError("packed sizes do not match (N, K) for the shuffled layout")
    wt = w_packed.contiguous().view(E, Np // 16, Kq // 64, 16, 32).permute(0, 1, 3, 2, 4)
    w = wt.contiguous().view(E, Np, Kq // 2)[:, :N, : Kp // 2].contiguous()
    sv = s_packed.contiguous().view(E, Np * Kq // 32)
    s = torch.stack([unshuffle_scales(sv[e], Np, Kq // 32) for e in range(E)]) if E else \
        sv.view(E, Np, Kq // 32)
    return w, s[:, :N, : Kp // 32].contiguous()


# ---- MoE sorting ---------------------------------------------------------------------

def moe_sort(topk_ids: Tensor, topk_weights: Tensor, E: int, block_m: int,
             expert_mask: Optional[Tensor] = None
             ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """aiter moe_sorting semantics (docs/ops.md, "MoE sorting").

    Returns sorted_ids int32 [P], sorted_weights fp32 [P], sorted_expert_ids int32
    [cdiv(P, block_m)], num_valid_ids int32 [2]; P = T*k + E*block_m - k.
    """
    if topk_ids.dim() != 2 or tuple(topk_weights.shape) != tuple(topk_ids.shape):
        raise ValueError("topk_ids and topk_weights must both be [T, k]")
    T, k = topk_ids.shape
    dev = topk_ids.device
    P = T * k + E * block_m - k
    if P < 0:
        raise ValueError(f"capacity P = {P} < 0 (T={T}, k={k}, E={E}, block_m={block_m})")
    sentinel = (k << SENTINEL_SHIFT) | T
    sorted_ids = torch.full((P,), sentinel, dtype=torch.int32, device=dev)
    sorted_w = torch.zeros(P, dtype=torch.float32, device=dev)
    sorted_eids = torch.full((_cdiv(P, block_m),), -1, dtype=torch.int32, device=dev)

    ids = topk_ids.reshape(-1).to(torch.int64)  # route r = t*k + slot
    wts = topk_weights.reshape(-1).to(torch.float32)
    valid = (ids >= 0) & (ids < E)
    if expert_mask is not None:
        m = expert_mask.to(dev).reshape(-1)
        if m.numel() != E:
            raise ValueError(f"expert_mask has {m.numel()} entries, expected E={E}")
        valid &= (m != 0)[ids.clamp(0, max(E - 1, 0))] if E else valid
    routes = torch.nonzero(valid).reshape(-1)  # increasing t*k + slot
    rid = ids[routes]
    # Stable sort by expert keeps routes of one expert in increasing t*k + slot.
    rid_sorted, order = torch.sort(rid, stable=True)
    routes = routes[order]
    counts = torch.bincount(rid_sorted, minlength=E)[:E] if E else rid_sorted.new_zeros(0)
    padded = (counts + block_m - 1) // block_m * block_m
    start_padded = torch.cumsum(padded, 0) - padded  # first row of each expert
    start_compact = torch.cumsum(counts, 0) - counts
    rank = torch.arange(routes.numel(), device=dev) - start_compact[rid_sorted]
    dest = start_padded[rid_sorted] + rank
    used = int(padded.sum().item()) if E else 0
    if used > P:  # only possible for E < k; the kernels could not hold it either
        raise ValueError(f"{used} sorted rows exceed capacity P = {P}")
    t, slot = routes // k, routes % k
    sorted_ids[dest] = ((slot << SENTINEL_SHIFT) | t).to(torch.int32)
    sorted_w[dest] = wts[routes]
    blocks = torch.repeat_interleave(torch.arange(E, device=dev), padded // block_m)
    sorted_eids[: blocks.numel()] = blocks.to(torch.int32)
    num_valid = torch.tensor([used, T], dtype=torch.int32, device=dev)
    return sorted_ids, sorted_w, sorted_eids, num_valid


# ---- MoE GEMMs -----------------------------------------------------------------------

@dataclass
class WeightRef:
    """Expert weights [E, N, K] for the GEMM references, dequantized one expert at a time
    (E=256 experts of 3072x3072 would not fit in fp32 at once).

    Either MX (`q` plain [E, N, Kp/2] e2m1 or [E, N, Kp] e4m3, `s` [E, N, Kp/32], `K`,
    `elem`) or `dense` [E, N, K] (bf16/fp16/fp32, used as is).
    """
    q: Optional[Tensor] = None
    s: Optional[Tensor] = None
    K: Optional[int] = None
    elem: str = "e2m1"
    dense: Optional[Tensor] = None

    def __post_init__(self) -> None:
        if self.dense is not None:
            if self.q is not None or self.s is not None or self.dense.dim() != 3:
                raise ValueError("WeightRef: give either dense [E, N, K] or (q, s, K)")
            if self.K is None:
                self.K = self.dense.shape[-1]
            return
        if self.q is None or self.s is None or self.K is None:
            raise ValueError("WeightRef: MX weights need q, s and K")
        _check_elem(self.elem)
        Kp = _round_up(self.K, 32)
        per_byte = 2 if self.elem == "e2m1" else 1
        E, N = self.q.shape[:2]
        if (tuple(self.q.shape) != (E, N, Kp // per_byte)
                or tuple(self.s.shape) != (E, N, Kp // 32)):
            raise ValueError(f"WeightRef: q {tuple(self.q.shape)} / s {tuple(self.s.shape)} "
                             f"do not fit K={self.K}, elem={self.elem}")

    @classmethod
    def mx(cls, q: Tensor, s: Tensor, K: int, elem: str = "e2m1") -> "WeightRef":
        return cls(q=q, s=s, K=K, elem=elem)

    @classmethod
    def from_dense(cls, w: Tensor) -> "WeightRef":
        return cls(dense=w)

    @classmethod
    def from_packed(cls, w_packed: Tensor, s_packed: Tensor, N: int, K: int,
                    layout: str) -> "WeightRef":
        """MXFP4 weights in a packed layout (pack_weights output)."""
        w, s = unpack_weights(w_packed, s_packed, N, K, layout)
        return cls(q=w, s=s, K=K, elem="e2m1")

    @property
    def E(self) -> int:
        return (self.dense if self.dense is not None else self.q).shape[0]

    @property
    def N(self) -> int:
        return (self.dense if self.dense is not None else self.q).shape[1]

    def expert(self, e: int) -> Tensor:
        """Expert e's weights, fp32 [N, K]."""
        if self.dense is not None:
            return self.dense[e].to(torch.float32)
        return dequantize_mx(self.q[e], self.s[e], self.K, self.elem, torch.float32)


@contextlib.contextmanager
def _fp32_matmul() -> Iterator[None]:
    """Force true fp32 GEMMs: TF32 on CUDA would make the reference less exact than the
    kernels it judges."""
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def gated_activation(gate: Tensor, up: Tensor, activation: str) -> Tensor:
    """mxf::gated in fp32, same formulas and operation order as activation.h."""
    if activation == "silu":
        return gate / (1.0 + torch.exp(-gate)) * up
    if activation == "gelu":
        return 0.5 * gate * (1.0 + torch.erf(gate * 0.70710678118654752)) * up
    if activation == "swiglu_oai":
        # fmin/fmax (not clamp) because fminf/fmaxf return the non-NaN operand.
        # new_full fills on the device: no host-to-device copy (CUDA-graph capturable).
        g = torch.fmin(gate, gate.new_full((), 7.0))
        u = torch.fmin(torch.fmax(up, up.new_full((), -7.0)), up.new_full((), 7.0))
        return g / (1.0 + torch.exp(-1.702 * g)) * (u + 1.0)
    raise ValueError(f"activation must be silu, gelu or swiglu_oai, got {activation!r}")


def _routes_by_expert(topk_ids: Tensor, E: int, expert_mask: Optional[Tensor]
                      ) -> list[tuple[int, Tensor]]:
    """[(expert, route indices t*k+slot)] for every routed, in-range, unmasked expert."""
    ids = topk_ids.reshape(-1).to(torch.int64)
    valid = (ids >= 0) & (ids < E)
    if expert_mask is not None and E:
        valid &= (expert_mask.to(ids.device).reshape(-1) != 0)[ids.clamp(0, E - 1)]
    routes = torch.nonzero(valid).reshape(-1)
    rid, order = torch.sort(ids[routes], stable=True)
    routes = routes[order]
    experts, counts = torch.unique_consecutive(rid, return_counts=True)
    return list(zip(experts.tolist(), torch.split(routes, counts.tolist())))


def moe_stage1(a: Tensor, w1: WeightRef, topk_ids: Tensor, topk_weights: Tensor,
               activation: str = "silu", gate_up: str = "concat",
               bias: Optional[Tensor] = None, mul_routed_weight: bool = False,
               expert_mask: Optional[Tensor] = None) -> Tensor:
    """Stage 1: per route (t, slot) with expert e, act(gate, up) of
    acc = a[t] @ w1[e].T + bias[e] (fp32), times the routed weight if asked.

    a [T, K] float (already dequantized; bf16/fp16 used as is). Returns fp32 [T, k, I];
    rows of dropped routes (id outside [0, E) or masked expert) are 0.
    """
    if gate_up not in ("concat", "interleaved"):
        raise ValueError(f"gate_up must be concat or interleaved, got {gate_up!r}")
    T, K = a.shape
    k = topk_ids.shape[1]
    N = w1.N
    if w1.K != K or N % 2:
        raise ValueError(f"w1 is [{w1.E}, {N}, {w1.K}], needs K={K} and an even N")
    I = N // 2
    af = a.to(torch.float32)
    wts = topk_weights.reshape(-1).to(torch.float32)
    out = torch.zeros(T * k, I, dtype=torch.float32, device=a.device)
    with _fp32_matmul():
        for e, routes in _routes_by_expert(topk_ids, w1.E, expert_mask):
            acc = af[routes // k] @ w1.expert(e).to(a.device).T
            if bias is not None:
                acc = acc + bias[e].to(torch.float32)
            if gate_up == "concat":
                gate, up = acc[:, :I], acc[:, I:]
            else:
                gate, up = acc[:, 0::2], acc[:, 1::2]
            y = gated_activation(gate, up, activation)
            if mul_routed_weight:
                y = y * wts[routes].unsqueeze(1)
            out[routes] = y
    return out.view(T, k, I)


def moe_stage2(inter: Tensor, w2: WeightRef, topk_ids: Tensor, topk_weights: Tensor,
               bias2: Optional[Tensor] = None, mul_routed_weight: bool = True,
               expert_mask: Optional[Tensor] = None) -> Tensor:
    """Stage 2: out[t] = sum over valid slots of (inter[t, s] @ w2[e].T + bias2[e]) * w.

    inter [T, k, I] (or [T*k, I]) float. Returns fp32 [T, H]; the slot summation order is
    unspecified by the contract, here it is by expert.
    """
    T, k = topk_ids.shape
    I = inter.shape[-1]
    x = inter.reshape(T * k, I).to(torch.float32)
    if w2.K != I:
        raise ValueError(f"w2 is [{w2.E}, {w2.N}, {w2.K}], needs K={I}")
    wts = topk_weights.reshape(-1).to(torch.float32)
    out = torch.zeros(T, w2.N, dtype=torch.float32, device=inter.device)
    with _fp32_matmul():
        for e, routes in _routes_by_expert(topk_ids, w2.E, expert_mask):
            acc = x[routes] @ w2.expert(e).to(inter.device).T
            if bias2 is not None:
                acc = acc + bias2[e].to(torch.float32)
            if mul_routed_weight:
                acc = acc * wts[routes].unsqueeze(1)
            out.index_add_(0, routes // k, acc)
    return out


_FLOAT_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_MX_ELEMS = {"pk_fp4": "e2m1", "fp8": "e4m3"}


def _as_dtype(x: Tensor, dtype: str, rounding: str) -> Tensor:
    """What a kernel sees of x stored as `dtype`: an MX round trip or a float rounding,
    returned in fp32."""
    if dtype in _MX_ELEMS:
        elem = _MX_ELEMS[dtype]
        q, s = quantize_mx(x, rounding, elem)
        return dequantize_mx(q, s, x.shape[-1], elem, torch.float32)
    if dtype in _FLOAT_DTYPES:
        return x.to(_FLOAT_DTYPES[dtype]).to(torch.float32)
    raise ValueError(f"dtype must be one of {tuple(_MX_ELEMS) + tuple(_FLOAT_DTYPES)}, "
                     f"got {dtype!r}")


def fused_moe(x: Tensor, w1: WeightRef, w2: WeightRef, topk_weights: Tensor,
              topk_ids: Tensor, activation: str = "silu", gate_up: str = "concat",
              bias1: Optional[Tensor] = None, bias2: Optional[Tensor] = None,
              a_dtype: str = "pk_fp4", stage2_input: str = "pk_fp4",
              routed_weight: str = "stage2", rounding: str = "round_up",
              expert_mask: Optional[Tensor] = None,
              out_dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """The whole pipeline: quantize x (a_dtype) -> stage 1 -> intermediate as stage2_input
    (bf16 rounding or MX round trip of the fp32 result) -> stage 2 -> out_dtype [T, H].

    a_dtype / stage2_input: "pk_fp4" | "fp8" (MX round trip with `rounding`) or
    "bf16" | "fp16" | "fp32" (rounded to that float type). routed_weight: "none" |
    "stage1" | "stage2".
    """
    if routed_weight not in ("none", "stage1", "stage2"):
        raise ValueError(f"routed_weight must be none, stage1 or stage2, got {routed_weight!r}")
    T = x.shape[0]
    k = topk_ids.shape[1]
    a = _as_dtype(x, a_dtype, rounding)
    inter = moe_stage1(a, w1, topk_ids, topk_weights, activation, gate_up, bias1,
                       routed_weight == "stage1", expert_mask)
    inter = _as_dtype(inter.reshape(T * k, inter.shape[-1]), stage2_input, rounding)
    out = moe_stage2(inter, w2, topk_ids, topk_weights, bias2, routed_weight == "stage2",
                     expert_mask)
    return out.to(out_dtype)
