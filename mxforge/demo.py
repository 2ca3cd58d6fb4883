"""`mxforge demo`: the dispatch table and a small fused_moe against the torch reference."""
from __future__ import annotations

import time

import torch

from . import _loader, reference
from .dispatch import describe_instances, instances
from .models import preset
from .library import fused_moe, pack_weight
from .ops import reference_weight


def rel_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


def run_demo(model: str, T: int, E: int | None) -> int:
    m = preset(model)
    E = E or m.E
    device = torch.device("cuda" if torch.cuda.is_available() and "sm90" in
                          _loader.manifest()["targets"] else "cpu")
    target = "sm90" if device.type == "cuda" else "cpu"
    rows = [r for r in instances(target=target)]
    print(describe_instances(rows))
    print(f"{len(rows)} {target} instances (set '{_loader.manifest()['set']}')\n")

    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, m.H, generator=g).to(torch.bfloat16).to(device)
    w1 = (torch.randn(E, 2 * m.I, m.H, generator=g) / m.H ** 0.5).to(device)
    w2 = (torch.randn(E, m.H, m.I, generator=g) / m.I ** 0.5).to(device)
    b1 = torch.randn(E, 2 * m.I, generator=g).to(device) * 0.1 if m.bias else None
    b2 = torch.randn(E, m.H, generator=g).to(device) * 0.1 if m.bias else None
    logits = torch.randn(T, E, generator=g).to(device)
    topk_w, topk_ids = logits.softmax(-1).topk(m.topk, dim=-1)
    topk_ids = topk_ids.to(torch.int32)
    W1 = pack_weight(w1, bias=b1, gate_up=m.gate_up)
    W2 = pack_weight(w2, bias=b2)
    print(f"{model}: T={T} H={m.H} I={m.I} E={E} topk={m.topk} {m.activation} "
          f"{m.gate_up} bias={m.bias} on {target}")
    print(f"{'dtype pair':22s} {'path':10s} {'ms':>8s} {'rel. L2 vs reference':>22s}")
    worst = 0.0
    for a_dtype, s2 in (("pk_fp4", "bf16"), ("pk_fp4", "pk_fp4"), ("bf16", "bf16")):
        for path in ("two_stage", "one_stage"):
            if path == "one_stage" and s2 != "bf16":
                continue
            kwargs = dict(activation=m.activation, a_dtype=a_dtype, stage2_input=s2)
            try:
                t0 = time.perf_counter()
                y = fused_moe(x, W1, W2, topk_w, topk_ids, path=path, **kwargs)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) * 1e3
            except Exception as e:  # noqa: BLE001 - the demo reports what the build lacks
                print(f"{a_dtype + ' x pk_fp4 -> ' + s2:22s} {path:10s} not available: "
                      f"{str(e).splitlines()[0]}")
                continue
            ref = reference.fused_moe(x.float().cpu(), reference_weight(W1), reference_weight(W2),
                                      topk_w.cpu(), topk_ids.cpu(), gate_up=m.gate_up,
                                      activation=m.activation, a_dtype=a_dtype,
                                      stage2_input=s2, bias1=b1.cpu() if b1 is not None else None,
                                      bias2=b2.cpu() if b2 is not None else None)
            err = rel_l2(y.cpu(), ref)
            worst = max(worst, err)
            print(f"{a_dtype + ' x pk_fp4 -> ' + s2:22s} {path:10s} {ms:8.2f} {err:22.2e}")
    ok = worst < 2e-2
    print(f"\nworst relative L2 error {worst:.2e} ({'ok' if ok else 'TOO LARGE'}: the kernels "
          "compute the reference's math; only fp32 summation order and bf16 rounding differ)")
    return 0 if ok else 1
