#!/usr/bin/env python3
"""mxforge build front door: specs -> sources -> ninja -> one extension mxforge/_C*.so.

    python build.py --set ci --target cpu            # build and install the ci set
    python build.py --set default --target cpu,sm90 -j 8
    python build.py --set ci --target cpu --list     # the instances it would build
    python build.py --set ci --target cpu --dry-run  # render + plan, compile nothing

The build is locked (concurrent builds wait), resumable (ninja keeps finished objects) and
atomic (the module and its manifest are replaced by rename, never half-written).
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from codegen import render as R  # noqa: E402
from codegen.instance import Instance  # noqa: E402
from codegen.ninja_gen import compiler_launcher, write_ninja  # noqa: E402
from codegen.spec import SpecError, load_set  # noqa: E402
from codegen.targets import TARGETS, python_ext_suffix  # noqa: E402

INSTANCES = ROOT / "instances"
TEMPLATES = ROOT / "templates"
BUILD = ROOT / "build"
PACKAGE = ROOT / "mxforge"
MANIFEST_NAME = "_C.manifest.json"


class BuildError(Exception):
    pass


@contextmanager
def build_lock() -> Iterator[int]:
    """One build at a time per checkout: the module location is shared by all sets.

    Yields the lock's file descriptor, which the compilers inherit (run_ninja): flock
    belongs to the open file, so it is released only when the last process holding it
    exits. A build killed with SIGKILL leaves its compilers running (ninja starts them in
    their own process groups); they keep the lock until they finish, and the next build
    waits instead of compiling the same objects alongside them. Hence no explicit unlock."""
    BUILD.mkdir(exist_ok=True)
    with open(BUILD / ".lock", "a") as fh:  # "a": a no-op build must not touch the file
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("mxforge build: another build holds build/.lock; waiting ...", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield fh.fileno()


def run_ninja(cmd: list[str], lock_fd: int, chosen: list[Instance], out_dir: Path) -> None:
    """Run ninja with its output echoed; on failure, name the instances that failed to
    compile with their spec group and generated source. Ctrl-C stops ninja (which stops
    and waits for its compilers) before the lock is released."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", pass_fds=(lock_fd,))
    failed: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith("FAILED: "):  # "FAILED: [code=1] out ..." in newer ninja
                failed += [t for t in line.split()[1:] if not t.startswith("[code=")]
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    if rc == 0:
        return
    by_name = {i.name: i for i in chosen}
    what = []
    for obj in failed:
        inst = by_name.get(Path(obj).stem)
        if inst is None:
            what.append(obj)
            continue
        src = out_dir / inst.target / f"{inst.name}.{TARGETS[inst.target].source_ext}"
        what.append(f"{inst.name} (group '{inst.group}' at {os.path.relpath(inst.source, ROOT)}; "
                    f"source {os.path.relpath(src, ROOT)})")
    raise BuildError(f"compilation failed (ninja exit {rc})"
                     + (f": {'; '.join(what)}" if what else "")
                     + "; the compiler's messages above give the source line")


def remove_install_leftovers() -> None:
    """Temporary copies a killed build left in mxforge/ (install_atomically): under the
    lock no other build is writing one."""
    for tmp in PACKAGE.glob("._C*.tmp"):
        tmp.unlink(missing_ok=True)


def parse_targets(text: str) -> list[str]:
    targets = [t.strip() for t in text.split(",") if t.strip()]
    for t in targets:
        if t not in TARGETS:
            raise BuildError(f"unknown target '{t}' (targets: {', '.join(TARGETS)})")
    if not targets:
        raise BuildError(f"no target given (targets: {', '.join(TARGETS)})")
    return list(dict.fromkeys(targets))


def check_toolchains(targets: list[str]) -> dict[str, str]:
    versions = {}
    for t in targets:
        tc = TARGETS[t].toolchain()
        if not tc.available:
            raise BuildError(f"target {t}: {tc.missing}")
        versions[t] = tc.version
    return versions


def ninja_command() -> list[str]:
    exe = shutil.which("ninja")
    if exe:
        return [exe]
    try:
        import ninja  # noqa: F401
    except ImportError:
        raise BuildError("ninja not found (pip install ninja)") from None
    return [sys.executable, "-m", "ninja"]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def install_atomically(src: Path, dst: Path) -> bool:
    """Copy src over dst by rename; False if dst already has the same bytes."""
    if file_digest(src) == file_digest(dst):
        return False
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dst)
    return True


def ninja_log_size(out_dir: Path) -> int:
    log = out_dir / ".ninja_log"
    return log.stat().st_size if log.exists() else 0


def summarize(out_dir: Path, counts: dict[str, int], log_offset: int) -> None:
    """Per target: instances, compile time of this run (the lines ninja appended to its log
    since `log_offset`: start/end in ms, output path) and the size of its objects in the
    module; then the slowest units of this run."""
    log = out_dir / ".ninja_log"
    ran: dict[str, float] = {}
    if log.exists():
        with open(log, "rb") as fh:
            fh.seek(log_offset)
            lines = fh.read().decode(errors="replace").splitlines()
        for line in lines:
            parts = line.split("\t")
            if len(parts) >= 4 and parts[0].isdigit():
                ran[parts[3]] = (int(parts[1]) - int(parts[0])) / 1000
    for t, n in counts.items():
        secs = sum(v for o, v in ran.items() if f"/obj/{t}/" in o)
        size = sum(f.stat().st_size for f in (out_dir / "obj" / t).rglob("*.o"))
        print(f"mxforge build: target {t}: {n} instances, compiled in {secs:.1f} s this run "
              f"(sum over units), objects {size / 1e6:.1f} MB")
    for o, v in sorted(ran.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {v:6.1f} s  {Path(o).name}")


def ci_matrix(specs: Path = INSTANCES) -> list[dict[str, str]]:
    """The CI matrix: one cell per (instance set, target) that the set has instances for.
    `runs` says what a runner without accelerators can do with the cell."""
    cells = []
    for path in sorted((specs / "sets").glob("*.yaml")):
        iset = load_set(specs, path.stem, tuple(TARGETS))
        for t in sorted({i.target for i in iset.instances}):
            cells.append({"set": path.stem, "target": t,
                          "runs": "tests" if t == "cpu" else "compile",
                          "instances": str(sum(i.target == t for i in iset.instances))})
    return cells


def build(set_name: str, targets: list[str], jobs: int | None, list_only: bool,
          dry_run: bool, only: list[str], exclude: list[str], specs: Path = INSTANCES,
          install: bool = True) -> int:
    t0 = time.monotonic()
    iset = load_set(specs, set_name, tuple(TARGETS), only, exclude)
    chosen = [i for i in iset.instances if i.target in targets]
    for t in targets:
        if not any(i.target == t for i in chosen):
            have = sorted({i.target for i in iset.instances})
            raise BuildError(f"set '{set_name}' has no instances for target {t} "
                             f"(it has: {', '.join(have) or 'none'})")
    if list_only:
        for i in chosen:
            print(i.name)
        print(f"# {len(chosen)} instances", file=sys.stderr)
        return 0
    versions = check_toolchains(targets)
    out_dir = BUILD / set_name
    hashed = (iset.set_file, *iset.spec_files)
    manifest = {
        "set": set_name, "targets": targets, "compilers": versions,
        "instances": [i.name for i in chosen],
        "source_hash": R.source_hash(ROOT, hashed),
        "spec_files": [os.path.relpath(p, ROOT) for p in hashed],
        "source_files": R.source_digests(ROOT, hashed),
        "python_ext_suffix": python_ext_suffix(),
        "only": list(only), "exclude": list(exclude),  # command-line globs, for rebuild hints
    }
    launcher = compiler_launcher()
    if Path(launcher).name.startswith("sccache"):  # its daemon must not inherit the lock
        subprocess.run([launcher, "--start-server"], capture_output=True)
    with build_lock() as lock_fd:
        rendered = R.render(chosen, TEMPLATES, out_dir, targets, manifest)
        module = out_dir / f"_C{python_ext_suffix()}"
        text = write_ninja(ROOT, out_dir, rendered.sources, module)
        R.write_if_changed(out_dir / "build.ninja", text)
        print(f"mxforge build: set {set_name}, targets {','.join(targets)}: {len(chosen)} "
              f"instances, {rendered.written} sources written, {rendered.unchanged} unchanged",
              flush=True)
        if dry_run:
            print(f"dry run: build file {out_dir / 'build.ninja'}; nothing compiled")
            return 0
        cmd = ninja_command() + ["-f", str(out_dir / "build.ninja")]
        if jobs:
            cmd += ["-j", str(jobs)]
        log_offset = ninja_log_size(out_dir)
        run_ninja(cmd, lock_fd, chosen, out_dir)
        man_tmp = out_dir / MANIFEST_NAME
        R.write_if_changed(man_tmp, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if install:
            remove_install_leftovers()
            changed = install_atomically(module, PACKAGE / f"_C{python_ext_suffix()}")
            install_atomically(man_tmp, PACKAGE / MANIFEST_NAME)
    summarize(out_dir, {t: sum(i.target == t for i in chosen) for t in targets}, log_offset)
    dt = time.monotonic() - t0
    size = module.stat().st_size
    if not install:
        print(f"mxforge build: compiled {os.path.relpath(module, ROOT)} ({size / 1e6:.1f} MB) "
              f"in {dt:.1f} s; not installed (--no-install)")
        return 0
    print(f"mxforge build: {'installed' if changed else 'up to date'} "
          f"mxforge/_C{python_ext_suffix()} ({size / 1e6:.1f} MB) in {dt:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="default", help="instance set (instances/sets/NAME.yaml)")
    ap.add_argument("--target", default="cpu", help="comma-separated targets: " + ", ".join(TARGETS))
    ap.add_argument("-j", "--jobs", type=int, default=None, help="parallel compile jobs")
    ap.add_argument("--list", action="store_true", help="print the instances and exit")
    ap.add_argument("--dry-run", action="store_true", help="render and plan, compile nothing")
    ap.add_argument("--only", action="append", default=[], metavar="GLOB",
                    help="keep only instances whose canonical name matches (repeatable)")
    ap.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="drop instances whose canonical name matches (repeatable)")
    ap.add_argument("--no-install", action="store_true",
                    help="compile and link under build/SET/ only; leave mxforge/_C as it is")
    ap.add_argument("--ci-matrix", action="store_true",
                    help="print the CI matrix (instance set x target) as JSON and exit")
    ap.add_argument("--specs", type=Path, default=INSTANCES,
                    help="folder of spec files with sets/ (default: instances/)")
    args = ap.parse_args(argv)
    try:
        if args.ci_matrix:
            print(json.dumps({"include": ci_matrix(args.specs.resolve())}))
            return 0
        return build(args.set, parse_targets(args.target), args.jobs, args.list, args.dry_run,
                     args.only, args.exclude, args.specs.resolve(), not args.no_install)
    except (SpecError, BuildError, R.RenderError) as e:
        print(f"mxforge build: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mxforge build: interrupted; run the same command again to resume (finished "
              "objects are kept; the installed module is only ever replaced whole)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
