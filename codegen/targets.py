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


def _is_cuda_home(p: Path) -> bool:
    return (p / "bin" / "nvcc").is_file() and (p / "include" / "cuda_runtime.h").is_file()


def _nvcc_wrapper_target(nvcc: Path) -> Path | None:
    """/usr/local/bin/nvcc is often a shell wrapper (`exec /usr/local/cuda-X/bin/nvcc`):
    find the toolkit it execs."""
    try:
        if nvcc.stat().st_size > 64 * 1024:  # a real compiler binary, not a wrapper script
            return None
        for tok in nvcc.read_text(errors="ignore").split():
            if tok.endswith("/bin/nvcc") and _is_cuda_home(Path(tok).parent.parent):
                return Path(tok).parent.parent
    except OSError:
        pass
    return None


def cuda_home() -> Path | None:
    """The CUDA toolkit: $CUDA_HOME / $CUDA_PATH, else the one behind `nvcc` on PATH, else
    the newest /usr/local/cuda*. A candidate must have bin/nvcc and include/cuda_runtime.h."""
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            return Path(os.environ[env])
    exe = shutil.which("nvcc")
    if exe:
        real = Path(exe).resolve()
        if _is_cuda_home(real.parent.parent):
            return real.parent.parent
        wrapped = _nvcc_wrapper_target(real)
        if wrapped:
            return wrapped
    for cand in sorted(Path("/usr/local").glob("cuda*"), reverse=True):
        if _is_cuda_home(cand):
            return cand
    return None


def cudart_static_dir(home: Path) -> Path | None:
    """The folder holding libcudart_static.a (lib64 on most installs, lib on some)."""
    for sub in ("lib64", "lib", "targets/x86_64-linux/lib"):
        if (home / sub / "libcudart_static.a").exists():
            return home / sub
    return None


@functools.cache
def nvcc() -> Toolchain:
    home = cuda_home()
    exe = home / "bin" / "nvcc" if home else None
    if exe is None or not exe.exists():
        return Toolchain((), "", "nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    if cudart_static_dir(home) is None:
        return Toolchain((), "", f"{home} has no libcudart_static.a (lib64/ or lib/)")
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
