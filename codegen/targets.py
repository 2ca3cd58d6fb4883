"""Targets: where an instance's source comes from, how it is compiled, what it supports.

A target is a name in specs (`cpu`, `sm90`, `gfx942`, `gfx950`). Its template family
picks the folder in templates/ (`cpu` for the OpenMP C++ target, `gpu` for the HIP-dialect
GPU kernels that every GPU target shares), its compiler rule turns the rendered source
into an object (for AMD targets: a code object embedded in a host object, see
codegen/ninja_gen.py).
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
    linker: tuple[str, ...] = ()  # AMD: the ld.lld that links code objects

    @property
    def available(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Target:
    name: str
    family: str        # templates/<family>/
    source_ext: str    # extension of generated sources
    rule: str          # ninja rule compiling them
    doc: str
    template_ext: str  # templates/<family>/<op>.<template_ext>.j2
    runtime: str       # csrc/targets/<runtime>: the target's availability (and loader)
    lds_bytes: int = 0  # shared memory (LDS) per block the tiles may use; 0: not pruned
    offload_arch: str = ""  # AMD: clang --offload-arch
    # (a, b) dtype pairs the arch multiplies as MX natively (dev::MmaInput in
    # csrc/mxforge/device_amd.h), and the K of that MMA atom (block_k must be a multiple)
    native_mx_pairs: tuple[tuple[str, str], ...] = ()
    native_mx_k: int = 0

    def toolchain(self) -> Toolchain:
        return _TOOLCHAINS[self.rule](self)


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    lines = [ln for ln in (out.stdout or out.stderr).splitlines() if ln.strip()]
    return lines[-1].strip() if "nvcc" in cmd[0] else (lines[0].strip() if lines else "unknown")


@functools.cache
def host_cxx(target: Target | None = None) -> Toolchain:
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
def nvcc(target: Target | None = None) -> Toolchain:
    home = cuda_home()
    exe = home / "bin" / "nvcc" if home else None
    if exe is None or not exe.exists():
        return Toolchain((), "", "nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    if cudart_static_dir(home) is None:
        return Toolchain((), "", f"{home} has no libcudart_static.a (lib64/ or lib/)")
    return Toolchain((str(exe),), _version([str(exe)]))


def rocm_home() -> Path | None:
    """A ROCm installation: $ROCM_PATH, else /opt/rocm, when it has llvm/bin/clang."""
    for cand in (os.environ.get("ROCM_PATH"), "/opt/rocm"):
        if cand and (Path(cand) / "llvm" / "bin" / "clang").is_file():
            return Path(cand)
    return None


def _ziglang() -> Path | None:
    """The zig binary of PyPI's ziglang package (its clang has the AMDGPU back end)."""
    try:
        import ziglang  # type: ignore[import-not-found]
    except ImportError:
        return None
    exe = Path(ziglang.__file__).parent / "zig"
    return exe if exe.is_file() else None


# The smallest kernel: the probe that the compiler can target an arch.
_PROBE = "__attribute__((global)) void mxf_probe(int* p) { *p = 1; }\n"
HIP_DEVICE_FLAGS = ("-x", "hip", "-nogpuinc", "-nogpulib", "--cuda-device-only")


def _hip_candidates() -> tuple[list[tuple[tuple[str, ...], tuple[str, ...]]], list[str]]:
    """(clang command, ld.lld command) pairs to try, best first, and why others are absent.
    A ROCm installation's clang is preferred; PyPI's ziglang is the fallback (its driver
    cannot link a code object itself: it runs `lld -flavor gnu`, so the build links with
    `zig ld.lld` directly)."""
    cands: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    absent: list[str] = []
    home = rocm_home()
    if home:
        cands.append(((str(home / "llvm" / "bin" / "clang"),),
                      (str(home / "llvm" / "bin" / "ld.lld"),)))
    else:
        absent.append("no ROCm installation ($ROCM_PATH or /opt/rocm with llvm/bin/clang)")
    zig = _ziglang()
    if zig:
        # zig's clang looks for its own headers (stddef.h, ...) in the wrong place: name it
        cands.append(((str(zig), "clang", "-resource-dir", str(zig.parent / "lib")),
                      (str(zig), "ld.lld")))
    else:
        absent.append("no ziglang (pip install ziglang)")
    return cands, absent


@functools.cache
def hip_clang(target: Target) -> Toolchain:
    """A clang that compiles HIP device code for `target.offload_arch` (checked by compiling
    a probe kernel to assembly) and the ld.lld that links its code objects."""
    arch = target.offload_arch
    cands, absent = _hip_candidates()
    failures: list[str] = []
    for clang, lld in cands:
        try:
            out = subprocess.run([*clang, *HIP_DEVICE_FLAGS, f"--offload-arch={arch}", "-O1",
                                  "-S", "-o", "-", "-"], input=_PROBE, capture_output=True,
                                 text=True, timeout=120)
            ok_lld = subprocess.run([*lld, "--version"], capture_output=True, text=True,
                                    timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired) as e:
            failures.append(f"{' '.join(clang)}: {e}")
            continue
        if out.returncode != 0 or "mxf_probe" not in out.stdout:
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            failures.append(f"{' '.join(clang)} cannot compile for {arch}: {last}")
            continue
        if not ok_lld:
            failures.append(f"{' '.join(lld)} does not run")
            continue
        return Toolchain(clang, _version(list(clang)), linker=lld)
    reasons = "; ".join(failures + absent)
    return Toolchain((), "", f"no clang with the AMDGPU back end for {arch} ({reasons}); "
                     "install ROCm (set ROCM_PATH) or `pip install ziglang`")


_TOOLCHAINS = {"cxx": host_cxx, "nvcc": nvcc, "hip": hip_clang}

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("cpu", "cpu", "cpp", "cxx", "host C++ with OpenMP; the reference target CI runs",
               "cpp", "cpu.cpp"),
        Target("sm90", "gpu", "cu", "nvcc", "NVIDIA Hopper (H100/H200), nvcc sm_90a", "cu",
               "sm90.cu", lds_bytes=227 * 1024),
        Target("gfx942", "gpu", "hip", "hip", "AMD CDNA3 (MI300X), clang HIP, code objects "
               "loaded by the HIP module API", "cu", "amd.cpp", lds_bytes=64 * 1024,
               offload_arch="gfx942"),
        Target("gfx950", "gpu", "hip", "hip", "AMD CDNA4 (MI355X), clang HIP, code objects "
               "loaded by the HIP module API", "cu", "amd.cpp", lds_bytes=160 * 1024,
               offload_arch="gfx950", native_mx_pairs=(("pk_fp4", "pk_fp4"), ("fp8", "pk_fp4")),
               native_mx_k=128),
    )
}
AMD_TARGETS = tuple(t for t, v in TARGETS.items() if v.offload_arch)


def python_ext_suffix() -> str:
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"
