"""Data makers and comparisons shared by the CPU and GPU op tests.

Tolerances (why they are what they are):
- Quantization, dequantization, packing and sorting are exact: bytes must match the
  reference (both follow docs/ops.md with the same fp32 operations).
- GEMM outputs in bf16: kernels and reference both accumulate exact products in fp32; only
  the summation order differs (~1e-6 relative), then each rounds to bf16 (relative step
  2^-8). Against the unrounded fp32 reference the error is bf16 rounding alone:
  rel. L2 <= 2^-8 = 3.9e-3 (BF16_TOL).
- Stage 2 accumulates the topk routes of a token into a bf16 output, rounding after each
  of up to 8 additions: rel. L2 <= 8 * 2^-9 = 1.6e-2 worst case, ~3e-3 typical
  (ACCUM_TOL = 1.6e-2).
- Re-quantized (pk_fp4) outputs: a summation-order difference can move a value across an
  e2m1 rounding boundary, flipping one code by one step; we require >= 99% identical codes,
  identical scales for >= 99% of blocks, and no element off by more than one step.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import mxforge
from mxforge import dispatch
from mxforge import reference as ref
from mxforge.dispatch import Key, Shape
from mxforge.models import MoeShape

BF16_TOL = 2.0 ** -8
ACCUM_TOL = 8 * 2.0 ** -9


def rel_l2(out: torch.Tensor, expected: torch.Tensor) -> float:
    out, expected = out.double().cpu(), expected.double().cpu()
    assert out.shape == expected.shape, (out.shape, expected.shape)
    assert not torch.isnan(out).any(), "NaN in output (unwritten poisoned element?)"
    return float((out - expected).norm() / expected.norm().clamp_min(1e-30))


def random_mx(E: int, N: int, K: int, g: torch.Generator, elem: str = "e2m1",
              scale_lo: int = 119, scale_hi: int = 127) -> tuple[torch.Tensor, torch.Tensor]:
    """Random MX codes (every code equally likely; padding past K zero) and scales near 1:
    valid checkpoint-like data without quantizing billions of floats."""
    kp = -(-K // 32) * 32
    if elem == "e2m1":
        codes = torch.randint(0, 16, (E, N, kp), generator=g, dtype=torch.uint8, device=g.device)
        codes[..., K:] = 0
        q = codes[..., 0::2] | (codes[..., 1::2] << 4)
    else:
        q = torch.randint(0, 256, (E, N, kp), generator=g, dtype=torch.uint8, device=g.device)
        q = torch.where((q & 0x7F) == 0x7F, q ^ 1, q)  # no NaN codes
        q[..., K:] = 0
    s = torch.randint(scale_lo, scale_hi + 1, (E, N, kp // 32), generator=g, dtype=torch.uint8,
                      device=g.device)
    return q.contiguous(), s


@dataclass
class Layer:
    """A random MoE layer at a model shape: plain reference weights and packed ones."""
    shape: MoeShape
    E: int
    x: torch.Tensor
    topk_ids: torch.Tensor
    topk_weights: torch.Tensor
    w1: mxforge.MoeWeight
    w2: mxforge.MoeWeight
    r1: ref.WeightRef
    r2: ref.WeightRef
    b1: torch.Tensor | None
    b2: torch.Tensor | None


def routing(T: int, E: int, k: int, g: torch.Generator, skew: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """topk_ids [T, k] int32 (distinct experts per token) and normalized weights, on g's
    device. skew="one_expert": every token routes to expert E-1 (in slot 0)."""
    scores = torch.rand(T, E, generator=g, device=g.device)
    if skew == "one_expert":
        scores[:, E - 1] = 2.0
    ids = scores.topk(k, dim=-1).indices
    w = torch.rand(T, k, generator=g, device=g.device) + 0.05
    w = w / w.sum(-1, keepdim=True)
    return ids.to(torch.int32), w.float()


def make_layer(shape: MoeShape, T: int, g: torch.Generator, device: torch.device,
               layout: str = "plain", w_dtype: str = "pk_fp4", E: int | None = None,
               skew: str = "random", scale_range: tuple[int, int] | None = None) -> Layer:
    """scale_range: the weights' scale bytes drawn from [lo, hi] instead of near 1/sqrt(K)."""
    E = E or shape.E
    H, I, k = shape.H, shape.I, shape.topk
    dev = g.device
    x = (torch.randn(T, H, generator=g, device=dev) * 2).to(torch.bfloat16)
    ids, tw = routing(T, E, k, g, skew)
    b1 = torch.randn(E, 2 * I, generator=g, device=dev) * 0.5 if shape.bias else None
    b2 = torch.randn(E, H, generator=g, device=dev) * 0.5 if shape.bias else None
    if w_dtype == "bf16":
        d1 = (torch.randn(E, 2 * I, H, generator=g, device=dev) / H ** 0.5).to(torch.bfloat16)
        d2 = (torch.randn(E, H, I, generator=g, device=dev) / I ** 0.5).to(torch.bfloat16)
        w1 = mxforge.MoeWeight(d1.to(device), None, "bf16", "plain", E, 2 * I, H,
                               b1.to(device) if b1 is not None else None, shape.gate_up)
        w2 = mxforge.MoeWeight(d2.to(device), None, "bf16", "plain", E, H, I,
                               b2.to(device) if b2 is not None else None)
        r1, r2 = ref.WeightRef.from_dense(d1), ref.WeightRef.from_dense(d2)
    else:
        elem = "e2m1" if w_dtype == "pk_fp4" else "e4m3"
        if scale_range is None:
            q1, s1 = random_mx(E, 2 * I, H, g, elem)
            q2, s2 = random_mx(E, H, I, g, elem)
            s1, s2 = s1 - (3 if elem == "e2m1" else 8), s2 - (4 if elem == "e2m1" else 9)
        else:
            q1, s1 = random_mx(E, 2 * I, H, g, elem, *scale_range)
            q2, s2 = random_mx(E, H, I, g, elem, *scale_range)
        w1 = mxforge.mx_weight(q1.to(device), s1.to(device), H, layout, w_dtype,
                               b1.to(device) if b1 is not None else None, shape.gate_up)
        w2 = mxforge.mx_weight(q2.to(device), s2.to(device), I, layout, w_dtype,
                               b2.to(device) if b2 is not None else None)
        r1, r2 = ref.WeightRef.mx(q1, s1, H, elem), ref.WeightRef.mx(q2, s2, I, elem)
    return Layer(shape, E, x.to(device), ids.to(device), tw.to(device), w1, w2, r1, r2, b1, b2)


def assert_requant_close(q: mxforge.MXTensor, expected: torch.Tensor, rows: torch.Tensor | None = None) -> None:
    """q (kernel, re-quantized) against the fp32 values it should encode."""
    want_q, want_s = ref.quantize_mx(expected.float().cpu(), "round_up", "e2m1")
    got_q, got_s = q.data.cpu(), q.scales.cpu()
    if rows is not None:
        got_q, got_s, want_q, want_s = got_q[rows], got_s[rows], want_q[rows], want_s[rows]
    same_scale = (got_s == want_s).float().mean().item()
    assert same_scale >= 0.99, f"only {same_scale:.4f} of scales match"
    got = ref.dequantize_mx(got_q, got_s, q.K)
    want = ref.dequantize_mx(want_q, want_s, q.K)
    codes_equal = (got == want).float().mean().item()
    assert codes_equal >= 0.99, f"only {codes_equal:.4f} of elements match"
    step = ref.e8m0_decode(want_s).repeat_interleave(32, dim=1)[:, :q.K] * 2.0
    assert ((got - want).abs() <= step + 1e-30).all(), "an element is off by more than one step"


# ---- tuned tables (tests/test_dispatch.py, tests/test_robustness.py) ------------------

A4W4_S1 = Key("cpu", "moe_stage1", a="pk_fp4", b="pk_fp4", out="bf16", activation="silu",
              gate_up="concat", routed_weight="none", bias=False, layout="plain")
TP8_S1 = Shape(T=1, N=384, K=3072, E=256, topk=8)


def tuned_row(key: Key, shape: Shape, T_max: int, instance: str) -> dict:
    d = {f: getattr(key, f) for f in dispatch.KEY_FIELDS}
    d.update(N=shape.N, K=shape.K, E=shape.E, topk=shape.topk, T_max=T_max, instance=instance)
    return d


def tuned_csv(rows: list[dict]) -> str:
    lines = [",".join(dispatch.TUNED_COLUMNS)]
    for r in rows:
        lines.append(",".join(str(int(r[c]) if isinstance(r[c], bool) else r[c])
                              for c in dispatch.TUNED_COLUMNS))
    return "\n".join(lines) + "\n"


def write_tuned(path: Path, rows: list[dict]) -> None:
    path.write_text(tuned_csv(rows))


# ---- a copy of the checkout to build in (tests/test_build_faults.py) -------------------

class Checkout:
    """The sources of this checkout (build.py, codegen, templates, csrc, instances, mxforge
    without a module) copied to `path`, with a small instance set `faults` (specs: common.yaml;
    `only` the given globs). Builds there never touch this checkout's module."""
    SOURCES = ("build.py", "codegen", "templates", "csrc", "instances", "mxforge")
    SET = "faults"

    def __init__(self, path: Path, only: list[str]) -> None:
        root = Path(__file__).resolve().parents[1]
        skip = shutil.ignore_patterns("__pycache__", "_C*.so", "_C.manifest.json", ".*.tmp")
        for name in self.SOURCES:
            src = root / name
            if src.is_dir():
                shutil.copytree(src, path / name, ignore=skip)
            else:
                shutil.copy2(src, path / name)
        (path / "instances" / "sets" / f"{self.SET}.yaml").write_text(
            f"specs: [common.yaml]\nonly: {json.dumps(only)}\n")
        self.path = path

    def build_args(self, *extra: str) -> list[str]:
        return ["--set", self.SET, "--target", "cpu", "-j", "2", *extra]

    def start(self, *extra: str, wrapper: str | None = None) -> subprocess.Popen[str]:
        """build.py in its own session (so a test can signal the whole process group);
        `wrapper`: Python code run instead of build.py, with ARGS (the build arguments)
        defined, that imports build itself (fault injection)."""
        args = self.build_args(*extra)
        cmd = ([sys.executable, "-c", f"ARGS = {args!r}\n{wrapper}"] if wrapper
               else [sys.executable, "build.py", *args])
        env = {**os.environ, "MXFORGE_NO_CCACHE": "1", "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(cmd, cwd=self.path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)

    def build(self, *extra: str, ok: bool = True) -> tuple[int, str]:
        proc = self.start(*extra)
        out, _ = proc.communicate(timeout=300)
        assert not ok or proc.returncode == 0, out
        return proc.returncode, out

    def python(self, code: str) -> str:
        """Run Python in the copy (its mxforge package, not this checkout's)."""
        out = subprocess.run([sys.executable, "-c", code], cwd=self.path, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def module_files(self) -> list[Path]:
        return sorted((self.path / "mxforge").glob("_C*.so"))

    def snapshot(self) -> dict[str, int]:
        """mtime of every file under the copy (sources, build/, the installed module)."""
        return {str(p.relative_to(self.path)): p.stat().st_mtime_ns
                for p in self.path.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


class Output:
    """Collects a process's output lines on a thread, so a test can wait for a line while
    the process runs (and act on it: send a signal, start another build)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.lines = proc, []
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self.lines.append("")  # EOF marker
            self._cv.notify_all()

    def wait_for(self, text: str, timeout: float = 120.0) -> bool:
        """True once a line contains `text`; False if the output ends first."""
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                if any(text in ln for ln in self.lines):
                    return True
                if self.lines and self.lines[-1] == "":
                    return False
                left = end - time.monotonic()
                assert left > 0, f"no line with {text!r} after {timeout} s:\n{self.text}"
                self._cv.wait(left)

    def finish(self, timeout: float = 300.0) -> tuple[int, str]:
        rc = self.proc.wait(timeout)
        self._thread.join(timeout)
        return rc, self.text

    @property
    def text(self) -> str:
        return "".join(self.lines)
