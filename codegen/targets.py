"""Targets: where an instance's source comes from, how it is compiled, what it supports.

A target is a name in specs (`cpu`, `sm90`, ...). Its template family picks the folder in
templates/ (`cpu` for the OpenMP C++ target, `gpu` for the HIP-dialect GPU kernels that
every GPU target shares), its compiler rule turns the rendered source into an object.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Toolchain:
    """A compiler found on this machine, or why none was."""
    command: tuple[str, ...]
    version: str
    missing: str = ""  # non-empty: unavailable, and why

    @property
    def available(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Target:
    name: str
    family: str      # templates/<family>/
    source_ext: str  # extension of generated sources
    rule: str        # ninja rule compiling them
    doc: str

    def toolchain(self) -> Toolchain:
        return _TOOLCHAINS[self.rule]()


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    lines = [ln for ln in (out.stdout or out.stderr).splitlines() if ln.strip()]
    return lines[-1].strip() if "nvcc" in cmd[0] else (lines[0].strip() if lines else "unknown")


@functools.cache
def host_cxx() -> Toolchain:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        return Toolchain((), "", "no C++ compiler (set CXX or install g++)")
    return Toolchain((cxx,), _version([cxx]))


def cuda_home() -> Path | None:
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            return Path(os.environ[env])
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        # /usr/local/bin/nvcc may be a wrapper script: look inside for the real path.
        if real.parent.name != "bin" or not (real.parent.parent / "include").exists():
            try:
                for tok in real.read_text(errors="ignore").split():
                    if tok.endswith("/bin/nvcc") and Path(tok).exists():
                        return Path(tok).parent.parent
            except OSError:
                pass
        return real.parent.parent
    for cand in sorted(Path("/usr/local").glob("cuda*"), reverse=True):
        if (cand / "bin" / "nvcc").exists():
            return cand
    return None


@functools.cache
def nvcc() -> Toolchain:
    home = cuda_home()
    exe = home / "bin" / "nvcc" if home else None
    if exe is None or not exe.exists():
        return Toolchain((), "", "nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    if not (home / "lib64" / "libcudart_static.a").exists() and \
            not (home / "lib" / "libcudart_static.a").exists():
        return Toolchain((), "", f"{home} has no libcudart_static.a")
    return Toolchain((str(exe),), _version([str(exe)]))


_TOOLCHAINS = {"cxx": host_cxx, "nvcc": nvcc}

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("cpu", "cpu", "cpp", "cxx", "host C++ with OpenMP; the reference target CI runs"),
        Target("sm90", "gpu", "cu", "nvcc", "NVIDIA Hopper (H100/H200), nvcc sm_90a"),
    )
}


def python_ext_suffix() -> str:
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"
