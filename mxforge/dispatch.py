"""Instance selection: tuned table -> heuristic -> NoInstanceError.

A request is a typed `Key` (target, op, dtype pair, output dtype, epilogue flags, weight
layout) plus a problem `Shape`. Only instances whose every key field matches exactly are
candidates, so a pk_fp4 activation can only ever reach an instance built for pk_fp4
activations. Among the candidates:

1. the tuned table (CSV, see `TUNED_COLUMNS`) picks one for this shape if it has a row;
2. otherwise the heuristic (`heuristic_rank`) ranks them;
3. no candidate at all raises NoInstanceError naming the key and the nearest instances.

Every eager op call selects (fused_moe 5-7 times), so the table is indexed once, the tuned
rows once per version of the files, and decisions are memoized (`select`).
"""
from __future__ import annotations

import contextlib
import contextvars
import csv
import functools
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from . import _loader
from .errors import InputError, NoInstanceError

KEY_FIELDS = ("target", "op", "a", "b", "out", "activation", "gate_up", "routed_weight",
              "bias", "layout")
TUNED_COLUMNS = KEY_FIELDS + ("N", "K", "E", "topk", "T_max", "instance")
# The instance of a moe_1stage row where the tuner found the two stages faster for that
# layer (fused_moe's path auto then runs them: one_stage_choice).
TWO_STAGE = "two_stage"
# The instance of a fused_quant_sort row where the tuner found the split pair (quantize, then
# moe_sort) faster than the fused launch (fused_moe then runs the pair: quant_sort_split).
SPLIT = "split"
DECISIONS = (TWO_STAGE, SPLIT)  # rows that name a path, not an instance
TUNED_DIR = Path(__file__).resolve().parent / "tuned"
_PACKAGE_DIR = str(Path(__file__).parent) + os.sep
# Multiprocessors per GPU target (H100: 132 SMs; MI300X: 304 CUs; MI355X: 256 CUs); the CPU
# target never splits K (threads already cover N tiles).
GPU_PARALLELISM = {"sm90": 132, "gfx942": 304, "gfx950": 256}


@dataclass(frozen=True)
class Instance:
    """One row of the compiled table."""
    index: int
    name: str
    target: str
    op: str
    args_type: str
    a: str
    b: str
    out: str
    block_m: int
    block_n: int
    block_k: int
    split_k: int
    activation: str
    gate_up: str
    routed_weight: str
    bias: bool
    layout: str
    b_path: str  # moe_stage1/2: "smem", "regs", "wgmma", "swap" or "wgmma_regs" ("" elsewhere; not a key: all serve the same calls)
    cluster_k: int = 1  # moe_stage1/2: CTAs of a cluster sharing a tile's K (1: none; not a key)
    n_tiles: int = 1    # moe_stage2: N tiles of its block one CTA computes (1: one; not a key)

    def key(self) -> "Key":
        return Key(**{f: getattr(self, f) for f in KEY_FIELDS})


@dataclass(frozen=True)
class Key:
    """What an op needs from an instance; '' for fields the op does not have."""
    target: str
    op: str
    a: str = ""
    b: str = ""
    out: str = ""
    activation: str = ""
    gate_up: str = ""
    routed_weight: str = ""
    bias: bool = False
    layout: str = ""

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items() if v not in ("", None))


@dataclass(frozen=True)
class Shape:
    T: int = 0      # tokens
    N: int = 0      # GEMM N (stage 1: 2I, stage 2: H)
    K: int = 0      # GEMM K (stage 1: H, stage 2: I)
    E: int = 0      # experts
    topk: int = 1


@dataclass(frozen=True)
class Decision:
    """What select chose and why. Decisions are memoized (select): treat them as read-only."""
    instance: Instance
    source: str  # "tuned", "heuristic" or "named"
    key: Key
    shape: Shape
    candidates: tuple[Instance, ...] = ()  # what the heuristic ranked (the call's candidates)
    notes: tuple[str, ...] = ()

    @property
    def ranked(self) -> list[tuple[Instance, str]]:
        """The candidates best first by the heuristic, each with its reason (explain's list;
        worked out on request: a launch needs only `instance`)."""
        if self.source == "named":
            return [(self.instance, "named by the caller")]
        ranked = sorted(((c, *heuristic_rank(c, self.shape)) for c in self.candidates),
                        key=lambda t: t[1])
        return [(c, why) for c, _, why in ranked]

    def explain(self) -> str:
        lines = [f"request: {self.key.describe()}",
                 f"shape:   T={self.shape.T} N={self.shape.N} K={self.shape.K} "
                 f"E={self.shape.E} topk={self.shape.topk}"]
        lines += [f"note:    {n}" for n in self.notes]
        lines.append(f"chosen:  {self.instance.name}  (by {self.source})")
        ranked = self.ranked
        for inst, why in ranked[:6]:
            mark = "*" if inst is self.instance else " "
            lines.append(f"  {mark} {inst.name}: {why}")
        if len(ranked) > 6:
            lines.append(f"    ... {len(ranked) - 6} more candidates")
        return "\n".join(lines)


@functools.cache
def table() -> tuple[Instance, ...]:
    rows = _loader.module().instances()
    return tuple(Instance(index=i, **{k: r[k] for k in r}) for i, r in enumerate(rows))


@dataclass(frozen=True)
class _Index:
    by_name: dict[str, Instance]
    by_key: dict[Key, tuple[Instance, ...]]


@functools.cache
def _index() -> _Index:
    """The table by name and by key, built once: a call's dispatch looks up, not scans (an
    eager fused_moe call selects 5-7 times among the ~800 instances of the sm90 default set)."""
    by_key: dict[Key, list[Instance]] = {}
    for inst in table():
        by_key.setdefault(inst.key(), []).append(inst)
    return _Index({i.name: i for i in table()}, {k: tuple(v) for k, v in by_key.items()})


def instances(**filters: Any) -> list[Instance]:
    """Compiled instances, filtered by exact field values (e.g. op='moe_stage1', a='pk_fp4')."""
    names = {f.name for f in fields(Instance)}
    bad = set(filters) - names
    if bad:
        raise TypeError(f"unknown instance fields {sorted(bad)} (fields: {sorted(names)})")
    return [i for i in table() if all(getattr(i, k) == v for k, v in filters.items() if v is not None)]


def by_name(name: str) -> Instance:
    inst = _index().by_name.get(name)
    if inst is not None:
        return inst
    raise NoInstanceError(f"no compiled instance named {name!r}; "
                          f"{len(table())} compiled (mxforge.instances())")


def _distance(inst: Instance, key: Key) -> int:
    return sum(getattr(inst, f) != getattr(key, f) for f in KEY_FIELDS)


def nearest(key: Key, n: int = 5) -> list[Instance]:
    same_op = [i for i in table() if i.op == key.op] or list(table())
    return sorted(same_op, key=lambda i: (_distance(i, key), i.name))[:n]


def no_instance(key: Key, shape: Shape | None = None) -> NoInstanceError:
    near = nearest(key)
    lines = [f"no compiled instance for {key.describe()}"]
    if shape is not None:
        lines[0] += f" (T={shape.T}, N={shape.N}, K={shape.K})"
    if near:
        lines.append("nearest compiled instances (differing fields in brackets):")
        for i in near:
            diff = [f"{f}={getattr(i, f)}" for f in KEY_FIELDS if getattr(i, f) != getattr(key, f)]
            lines.append(f"  {i.name} [{', '.join(diff)}]")
    m = _loader.manifest()
    lines.append(f"module built from set '{m.get('set')}' for targets {m.get('targets')}; add an "
                 "instance to a spec in instances/ and rebuild (README: adding an instance)")
    return NoInstanceError("\n".join(lines))


# ---- tuned table ------------------------------------------------------------------------

@dataclass(frozen=True)
class TunedRow:
    key: Key
    N: int
    K: int
    E: int
    topk: int
    T_max: int
    instance: str
    origin: str = ""  # "file:line", for warnings


def tuned_paths() -> list[Path]:
    """$MXFORGE_TUNED (os.pathsep-separated files) first, then mxforge/tuned/*.csv."""
    env = [Path(p) for p in os.environ.get("MXFORGE_TUNED", "").split(os.pathsep) if p]
    try:
        st = TUNED_DIR.stat()  # (its mtime changes when a file is added or removed)
    except OSError:
        return env
    if time.time_ns() - st.st_mtime_ns < 2_000_000_000:
        # a listing this recent may share its time stamp with a change still to come (coarse
        # file-system clocks): list it again rather than trust the cache
        return env + sorted(TUNED_DIR.glob("*.csv"))
    return env + list(_shipped_tables(TUNED_DIR, st.st_mtime_ns, st.st_ino))


@functools.lru_cache(maxsize=8)
def _shipped_tables(folder: Path, mtime_ns: int, inode: int) -> tuple[Path, ...]:
    return tuple(sorted(folder.glob("*.csv")))


def _warn(message: str) -> None:
    """A RuntimeWarning attributed to the caller's code: the first frame outside mxforge
    (a table is read, and a row found stale, at various depths below select)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"mxforge: {message}", RuntimeWarning, stacklevel=level)


def _parse_tuned_row(cells: list[str]) -> tuple[Key, tuple[int, ...], str]:
    """One data row -> (key, (N, K, E, topk, T_max), instance); ValueError says what is wrong."""
    if len(cells) != len(TUNED_COLUMNS):
        raise ValueError(f"{len(cells)} columns, expected {len(TUNED_COLUMNS)}")
    r = dict(zip(TUNED_COLUMNS, cells))
    if r["bias"] not in ("0", "1"):  # anything else would silently read as False
        raise ValueError(f"bias must be 0 or 1, got {r['bias']!r}")
    nums = []
    for c in ("N", "K", "E", "topk", "T_max"):
        if not r[c].isdigit():  # int() would take ' 1', '+1', '1_0'
            raise ValueError(f"{c} must be a non-negative integer, got {r[c]!r}")
        nums.append(int(r[c]))
    if not r["instance"] or not r["target"] or not r["op"]:
        raise ValueError("target, op and instance must not be empty")
    key = Key(**{f: r["bias"] == "1" if f == "bias" else r[f] for f in KEY_FIELDS})
    return key, tuple(nums), r["instance"]


@functools.cache
def _load_tuned(path: Path, mtime_ns: int) -> tuple[TunedRow, ...]:
    """Parse one tuned CSV. A file that cannot be read or has another header is ignored, a
    malformed or duplicate row is skipped; each with a warning naming the file and line."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        _warn(f"ignoring tuned table {path}: {e}")
        return ()
    if not lines or tuple(lines[0]) != TUNED_COLUMNS:
        _warn(f"ignoring tuned table {path}:1: header must be {','.join(TUNED_COLUMNS)}, "
              f"got {','.join(lines[0]) if lines else 'an empty file'}")
        return ()
    rows: list[TunedRow] = []
    first: dict[tuple, int] = {}
    for lineno, cells in enumerate(lines[1:], start=2):
        if not cells:
            continue  # blank line
        try:
            key, (N, K, E, topk, T_max), inst = _parse_tuned_row(cells)
        except ValueError as e:
            _warn(f"tuned table {path}:{lineno}: skipping malformed row: {e}")
            continue
        bm = table_block_m(inst)  # None: not compiled here (warned about if ever asked)
        where = (key, N, K, E, topk, T_max, bm)
        if bm is not None and where in first:  # two answers to one question: the first wins
            _warn(f"tuned table {path}:{lineno}: skipping row that duplicates line "
                  f"{first[where]} (same key, shape, T_max and block_m)")
            continue
        first[where] = lineno
        rows.append(TunedRow(key, N, K, E, topk, T_max, inst, f"{path}:{lineno}"))
    return tuple(rows)


def table_block_m(name: str) -> int | None:
    """block_m of a compiled instance (None if not compiled): stage 2 of two pipelines may
    hold one row per block_m for the same key and shape."""
    inst = _index().by_name.get(name)
    return inst.block_m if inst else None


TunedFiles = tuple[tuple[Path, int], ...]  # (path, mtime_ns) of each table read


_PINNED_FILES: contextvars.ContextVar[TunedFiles | None] = contextvars.ContextVar(
    "mxforge_tuned_files", default=None)


@contextlib.contextmanager
def one_tuned_version() -> Iterator[None]:
    """Within it every select reads the tuned tables as they were on entering (fused_moe: a
    layer's stages decide from one version of the tables, whose block_m they must share,
    and the files are looked at once per layer call instead of once per select)."""
    token = _PINNED_FILES.set(_PINNED_FILES.get() or tuned_files())
    try:
        yield
    finally:
        _PINNED_FILES.reset(token)


def tuned_files() -> TunedFiles:
    """The tuned tables dispatch reads now, each with its modification time: what its parsed
    rows and memoized decisions are keyed on, so an edited, added or removed table takes
    effect on the next call (a few stat calls per select; once per layer inside
    one_tuned_version)."""
    pinned = _PINNED_FILES.get()
    if pinned is not None:
        return pinned
    out = []
    for p in tuned_paths():
        try:
            out.append((p, p.stat().st_mtime_ns))
        except OSError as e:
            _warn(f"ignoring tuned table {p}: {e.strerror}")
    return tuple(out)


def tuned_rows() -> list[TunedRow]:
    return [r for p, mtime in tuned_files() for r in _load_tuned(p, mtime)]


ShapeKey = tuple[Key, int, int, int, int]  # (key, N, K, E, topk): what a tuned row is for


@functools.lru_cache(maxsize=8)
def _tuned_index(files: TunedFiles) -> dict[ShapeKey, tuple[TunedRow, ...]]:
    """The rows of `files` by key and shape, in reading order ($MXFORGE_TUNED first)."""
    index: dict[ShapeKey, list[TunedRow]] = {}
    for p, mtime in files:
        for r in _load_tuned(p, mtime):
            index.setdefault((r.key, r.N, r.K, r.E, r.topk), []).append(r)
    return {k: tuple(v) for k, v in index.items()}


def _tuned_rows_for(key: Key, shape: Shape, files: TunedFiles | None = None) -> list[TunedRow]:
    """The tuned rows for (key, shape) with T_max >= T."""
    index = _tuned_index(tuned_files() if files is None else files)

    def rows_for(k: Key) -> list[TunedRow]:
        return [r for r in index.get((k, shape.N, shape.K, shape.E, shape.topk), ())
                if r.T_max >= shape.T]
    rows = rows_for(key)
    if not rows and key.layout == "pairbits":
        # pairbits kernels differ from plain ones only in how they convert each weight
        # word (csrc/mxforge/layout.h): until tuned in their own rows, they take the tile
        # tuned for the plain layout (the same instance name with the layout swapped),
        # where that twin is compiled (instances/sets/default.yaml leaves out one that
        # spills registers); otherwise the heuristic decides.
        compiled = _index().by_name
        rows = [replace(r, key=key, instance=r.instance.replace("_plain", "_pairbits"),
                        origin=f"{r.origin}, the plain layout's row")
                for r in rows_for(replace(key, layout="plain"))]
        rows = [r for r in rows if r.instance in compiled or r.instance in DECISIONS]
    return rows


def one_stage_choice(key: Key, shape: Shape) -> bool:
    """Whether fused_moe's path auto runs the one-stage kernel for the moe_1stage `key` at
    `shape`: where the tuned row with the smallest T_max >= T names an instance and
    tuned_choice finds a usable one (the tuner found its layer faster than the two stages',
    quant+sort included, same run: tune.py; a stale row is warned about there); with no
    row, or a TWO_STAGE row, two stages. (Not a heuristic: the one-stage kernels measured
    slower than two stages at every T tried, H100 and H200, so untuned shapes keep two.)"""
    if _nearest_row_instance(key, shape) in (None, TWO_STAGE):
        return False
    return tuned_choice(key, shape, candidates(key))[0] is not None


def quant_sort_split(key: Key, shape: Shape) -> bool:
    """Whether fused_moe quantizes and sorts in two launches (quantize, moe_sort) instead of
    the fused one for the fused_quant_sort `key` at `shape` (K = the activations' width):
    where the tuned row with the smallest T_max >= T says SPLIT (the tuner timed both, same
    run, and checked that they give the same bytes: tune.py). With no row, fused (measured
    faster at every T tried, H100 and H200: benchmarks/README.md)."""
    return _nearest_row_instance(key, shape) == SPLIT


def _nearest_row_instance(key: Key, shape: Shape) -> str | None:
    """The instance column (a name or a decision: DECISIONS) of the tuned row for (key,
    shape) with the smallest T_max >= T; None without one."""
    rows = _tuned_rows_for(key, shape)
    return min(rows, key=lambda r: r.T_max).instance if rows else None


def tuned_choice(key: Key, shape: Shape, candidates: Iterable[Instance],
                 files: TunedFiles | None = None) -> tuple[Instance | None, str]:
    """The tuned row for (key, shape) with the smallest T_max >= T among rows whose instance
    is a candidate here. A table may hold rows for several block_m (stage 2 of two
    pipelines shares one key): rows for a block_m the caller excluded are skipped; a row
    naming an instance that is not compiled, or one compiled for another key (a stale
    table), is skipped with a warning naming the row. (A moe_1stage row saying TWO_STAGE or
    a fused_quant_sort row saying SPLIT names no instance: one_stage_choice and
    quant_sort_split read them.)"""
    rows = [r for r in _tuned_rows_for(key, shape, files) if r.instance not in DECISIONS]
    compiled = _index().by_name
    if not rows:
        return None, "no tuned row for this key and shape"
    by = {c.name: c for c in candidates}
    usable = []
    for r in rows:
        if r.instance in by:
            usable.append(r)
        elif r.instance not in compiled:
            _warn(f"tuned row {r.origin} names {r.instance!r}, which this module does not "
                  "have; skipping it")
        elif compiled[r.instance].key() != key:
            _warn(f"tuned row {r.origin} names {r.instance!r}, which serves "
                  f"{compiled[r.instance].key().describe()}, not the row's key; skipping it")
    if not usable:
        return None, f"tuned rows name {sorted({r.instance for r in rows})}, none allowed here"
    row = min(usable, key=lambda r: r.T_max)
    return by[row.instance], f"tuned for T <= {row.T_max} ({row.origin})"


# ---- heuristic --------------------------------------------------------------------------

def rows_per_expert(shape: Shape) -> float:
    routes = shape.T * shape.topk
    active = max(1, min(shape.E or 1, routes))
    return routes / active


# The heuristic's constants, re-derived from the H100 tuned table (mxforge/tuned/sm90-h100.csv;
# scripts/heuristic_agreement.py measures the agreement, README "Dispatch and tuning"):
BLOCK_M_ROWS_FACTOR = 2  # block_m holds at least twice the rows per active expert ...
BLOCK_M_CAP = 64         # ... but no more than 64 while a block_m <= 64 exists
SMALL_BLOCK_M_N = 64     # block_m 16 tiles prefer block_n 64 (twice the CTAs of 128), but for the swapped ones
WGMMA_MIN_ROWS = 64      # sm90: from 64 rows per active expert (prefill) the wgmma tiles ...
WGMMA_MIN_ROWS_A16 = 32  # ... from 32 where the activations are 16-bit (nothing to convert)
WGMMA_BLOCK_M = 128      # ... with block_m up to 128 (the tuned choice at T >= 2048, H200)
WGMMA_REGS_BLOCK_M = 64  # sm90: the wgmma_regs tiles with block_m up to 64 (two CTAs per SM) ...
WGMMA_REGS_MIN_ROWS = 16  # ... first from 16 to below WGMMA_MIN_ROWS rows per active expert, then after the ring
WGMMA_REGS_MIN_ROWS_A16 = 8  # ... from 8 with 16-bit activations, at a block_m of at most 2x the rows
SWAP_MAX_ROWS = 32       # sm90: up to 32 rows per active expert the swapped tiles first ...
SWAP_ROWS_FACTOR = 1     # ... with block_m >= 1 x the rows (16 up to 16 rows, then 32), not 2x
SWAP_CTAS_PER_SM = 2     # sm90: the swapped tile's CTAs per SM (SwapTile::kCtasPerSm)
# sm90, the swapped stage-1 tiles with MX activations at up to one row per active expert, a
# grid of at least one wave: a tile ranks after the one half as wide where the half's grid
# ends its last wave so much fuller that its waves x columns are below this fraction of the
# tile's (benchmarks/README.md, session 41; 0 turns the rule off)
SWAP_STAGE1_WAVE_GAIN = 0.95
N_TILES_MIN_WAVES = 1.5  # stage 2's N loop: the most N tiles per CTA that keep 1.5 waves of CTAs ...
N_TILES_MIN_WAVES_SHORT_K = 1  # ... 1 where K is at most 2 k-tiles (per-tile work is small)
SWAP_SMEM_A = 100 * 1024  # sm90: the swapped tile's activation bytes per CTA (SwapTile::kSmemBudgetA)
# sm90: the k-tiles (block_k 64) of activations that the ring tile's N loop keeps resident,
# per block_m (gemm.cuh, WgmmaTile::kResKTiles): K <= 192 at block_m 128, 448 at 64
WGMMA_RES_K_TILES = {64: 7, 128: 3}
WGMMA_CTAS_PER_SM = 2    # sm90: the ring tile's CTAs per SM (WgmmaTile::kCtasPerSm)


def heuristic_rank(inst: Instance, shape: Shape, explain: bool = True) -> tuple[tuple[Any, ...], str]:
    """Sort key (smaller is better) and a one-line reason ('' with explain=False: select
    needs only the key).

    - block_m: the smallest compiled block_m that holds BLOCK_M_ROWS_FACTOR x the average
      rows per active expert (T*topk / min(E, T*topk)), at most BLOCK_M_CAP; if none
      does, the largest up to the cap; larger ones last. Small blocks waste less padding
      at decode; a block of twice the expected rows absorbs the routing's spread (a
      full-to-overflowing block costs a second, mostly empty one), and past 64 rows the
      tuner found the mma.sync tiles no faster (at >= 32 rows per expert it chose 64 in 18
      of 21 stage-1 rows, 128 in 3).
    - K parts, split_k x cluster_k (GPU stages 1 and 2; 1 elsewhere): doubled while the
      grid, parts included, stays within the GPU (GPU_PARALLELISM SMs/CUs; the swapped
      tiles, two per SM, within SWAP_CTAS_PER_SM x that) and each part keeps >= 2 K tiles;
      clusters before splits (no workspace, no second kernel). The tuner took cluster_k 4
      for MiniMax TP=8 stage 1 at T = 1 (48 tiles of block_n 64) and 2 at T = 2 (96
      tiles), none from T = 4 (H200, 2026-11-30).
    - block_n: SMALL_BLOCK_M_N with block_m 16 but for the swapped tiles (small-T launches:
      more, smaller CTAs keep more SMs busy), else the largest; then block_k 128 (block_k 256
      won only in a few decode cases, and block_k 64 serves dense 16-bit weights).
    - b_path: on sm90 from WGMMA_MIN_ROWS rows per active expert (WGMMA_MIN_ROWS_A16 with
      bf16 activations), wgmma tiles first (with block_m up to WGMMA_BLOCK_M): at T = 2048
      and 8192 (64+ rows per expert) they took 0.67-0.87x the time of the mma.sync tiles on
      both tuned models, every pipeline; at T = 1024 (32 rows per expert) the tuner took them
      for the stages with bf16 activations (0.94x of the whole layer for a16w4 on both
      models) and kept mma.sync where the activations are MX, whose conversion the wgmma
      ring adds (H200, 2026-11-29, benchmarks/README.md); below that, wgmma last. The
      wgmma_regs tiles (weights as the MMAs' register operand) come first from
      WGMMA_REGS_MIN_ROWS to below WGMMA_MIN_ROWS rows per active expert, after the ring
      from there, with block_m up to WGMMA_REGS_BLOCK_M. (Sessions 21-26 put them first
      from 64 to below 128 rows per expert, the tuner's choice for every stage 1 at T = 2048
      then; once the ring's copies took 32-bit offsets (session 26) and its loop one
      barrier per k-tile (session 27), the re-tune at T = 2048 ... 8192 kept them only for
      gpt-oss' a4w4 at T = 2048. The first re-tune of T = 256 ... 1024 over them (session
      28) gave them every stage 1 at 32 rows per expert (T = 1024, block_m 64: the layer
      0.70-0.87x the time of the table before, same run) and, with block_m 32 compiled,
      every stage 1 at 16 (T = 512), while the swapped tiles kept 8 (T = 256); with this
      band the heuristic agrees with the table on the stage-1 block_m in 84 of 85 rows, the
      tile in 84 of 141 and the b_path in 129 of 141 (after the ring at every T: 74, 84,
      116); H200, 2026-12-02.) With 16-bit activations the band starts at
      WGMMA_REGS_MIN_ROWS_A16 for the tiles of block_m at most 2 x the rows: once every warp
      stages its share of the activations (session 31), the re-tune of T = 128 ... 512 gave
      block_m 16 the a16w4 stage 1 at 8 rows per expert (T = 256) on both tuned models (the
      layer 0.93x the time of the swapped tiles, same run) and at 4 on gpt-oss (T = 128,
      0.99x); b_path then agrees in 128 of 153 rows (126 without this). Up to
      SWAP_MAX_ROWS rows per active expert the swapped tiles (b_path swap) first, with block_m
      SWAP_ROWS_FACTOR x the rows (16 up to 16 rows, then 32; not 2x) and their largest
      block_n: the tuner took them for 40 of
      42 stage-1 and 22 of 28 stage-2 choices at T = 1 ... 64 on both tuned models (at most 2
      rows per expert; H200, 2026-11-29), and, once they had become leaner, for every stage at
      T = 128, 256, 512 (4 to 16 rows per expert), block_m 16, block_n 128 (stage 1) and 256
      (stage 2): 0.59-0.94x the layer's time of the mma.sync tiles tuned before (H200,
      2026-11-30, session 16); once block_m 32 ran two CTAs per SM (session 17), for the
      stage-1 rows at 32 rows per expert (T = 1024) with MX activations, block_m 32 (0.94x
      and 0.97x the layer's time of block_m 64 for a4w4 on the two tuned models; the 16-bit
      stages there are prefill); elsewhere last. Then smem before regs (the register path wins
      or loses by shape and T: only a tuned table picks it).
    Re-derived from the H100 tuned table (2026-11-23): block_m agrees in 78 of 81 stage-1
    rows (the earlier rule, one times the rows and no cap: 63), the tile at the tuned
    block_m in 101 of 136 rows (largest block_n and block_k: 90). Against the shipped table
    with its wgmma rows for T >= 2048 (2026-11-29): 81 of 81 and 89 of 135; with the
    H200 re-tune of the small-T rows that took stage-2 split-K and of T = 512 / 1024
    (2026-11-29): 81 and 84 with the single threshold of 64 rows, 81 and 88 with this rule;
    with the swap re-tune of T <= 64 (2026-11-29): 81 of 81, 85 of 135, and b_path at the
    tuned block_m in 121 of 135 (68 without the swap-first rule); with the full re-tune of
    T = 128 ... 512 (2026-11-30): 82 of 82, the tile in 105 of 136 and b_path in 130 of 136
    (with the rule before it, swapped tiles up to 2 rows and block_n 64 at block_m 16: 74,
    70 and 103); with the block_m 32 swapped rows (session 17): 81 of 82, 105 of 136 and
    128 of 136 (the rule before, up to 16 rows at block_m 16: 77, 105 and 124).
    """
    rpe = rows_per_expert(shape)
    wgmma, swap, regs = inst.b_path == "wgmma", inst.b_path == "swap", inst.b_path == "wgmma_regs"
    min_rows = WGMMA_MIN_ROWS_A16 if inst.a in ("bf16", "fp16") else WGMMA_MIN_ROWS
    prefill = inst.target == "sm90" and rpe >= min_rows
    few_rows = inst.target == "sm90" and rpe <= SWAP_MAX_ROWS  # (decode and up to T = 1024 here)
    want_m = (SWAP_ROWS_FACTOR if swap and few_rows else BLOCK_M_ROWS_FACTOR) * rpe
    regs_band = inst.target == "sm90" and rpe < WGMMA_MIN_ROWS and (
        rpe >= WGMMA_REGS_MIN_ROWS
        or (rpe >= WGMMA_REGS_MIN_ROWS_A16 and inst.a in ("bf16", "fp16") and inst.block_m <= want_m))
    if regs_band and regs:  # (ahead of every other tile)
        lead = -1
    elif prefill:
        order = ("wgmma", "wgmma_regs")
        lead = order.index(inst.b_path) if inst.b_path in order else 2 + swap
    elif few_rows:
        lead = 0 if swap else 1 + (wgmma or regs)
    else:
        lead = int(wgmma or swap or regs)
    cap = WGMMA_BLOCK_M if wgmma else WGMMA_REGS_BLOCK_M if regs else BLOCK_M_CAP
    if inst.block_m > cap:
        bm_cost: tuple[int, int] = (2, inst.block_m)
    elif inst.block_m >= min(want_m, cap):
        bm_cost = (0, inst.block_m)
    else:
        bm_cost = (1, -inst.block_m)
    want_split, narrower_fills_waves = 1, False
    if inst.target != "cpu" and inst.op in ("moe_stage1", "moe_stage2") and shape.N and inst.block_n:
        blocks = max(1, min(shape.E or 1, shape.T * shape.topk))
        tiles = blocks * -(-shape.N // inst.block_n)
        k_tiles = -(-shape.K // inst.block_k) if inst.block_k else 1
        wave = GPU_PARALLELISM[inst.target] * (SWAP_CTAS_PER_SM if swap else 1)
        while tiles * want_split * 2 <= wave and k_tiles >= 4 * want_split:
            want_split *= 2
        if (swap and inst.op == "moe_stage1" and inst.a not in ("bf16", "fp16") and rpe <= 1
                and tiles >= wave and inst.block_n >= 64):  # (the swapped tiles' narrowest: 32)
            narrower_fills_waves = (wave_columns(blocks, shape.N, inst.block_n // 2, wave)
                                    < SWAP_STAGE1_WAVE_GAIN * wave_columns(blocks, shape.N, inst.block_n, wave))
    # (clusters before splits: only the swapped tiles have both)
    sk_cost = (abs(inst.split_k * inst.cluster_k - want_split), int(swap and inst.split_k > 1))
    n_cost = ((0, abs(inst.block_n - SMALL_BLOCK_M_N)) if inst.block_m == 16 and not swap
              else (int(narrower_fills_waves), -inst.block_n))
    want_nt = wanted_n_tiles(inst, shape)
    nt_cost = (0, -inst.n_tiles) if inst.n_tiles <= want_nt else (1, inst.n_tiles)
    k_cost = abs(inst.block_k - 128)
    path_cost = int(inst.b_path == "regs")  # the register path only where the tuner chose it
    rank = (lead, bm_cost, sk_cost, n_cost, nt_cost, k_cost, path_cost, inst.name)
    if not explain:
        return rank, ""
    why = (f"block_m {inst.block_m} {'holds' if bm_cost[0] == 0 else 'is not'} "
           f"{BLOCK_M_ROWS_FACTOR} x {rpe:.1f} rows/expert (cap {BLOCK_M_CAP}); "
           f"split_k {inst.split_k} x cluster_k {inst.cluster_k} (wanted {want_split} K parts); "
           f"block_n {inst.block_n}, "
           f"block_k {inst.block_k}")
    if narrower_fills_waves:
        why += (f"; block_n {inst.block_n} after {inst.block_n // 2}, whose grid fills its last wave "
                f"better (SWAP_STAGE1_WAVE_GAIN {SWAP_STAGE1_WAVE_GAIN})")
    if inst.n_tiles > 1 or want_nt > 1:
        why += f"; n_tiles {inst.n_tiles} (wanted up to {want_nt})"
    if wgmma or regs:
        place = ""
        if regs:
            lowest = WGMMA_REGS_MIN_ROWS if rpe >= WGMMA_REGS_MIN_ROWS else WGMMA_REGS_MIN_ROWS_A16
            place = (f", first from {lowest} to below {WGMMA_MIN_ROWS}" if regs_band
                     else ", after the ring")
        why += f"; {inst.b_path} tile ({'prefill' if prefill else 'not prefill'}: {rpe:.0f} rows/expert{place})"
    if swap:
        why += (f"; swapped tile ({'few rows' if few_rows else 'too many rows'}: {rpe:.1f} rows/expert, "
                f"up to {SWAP_MAX_ROWS})")
    return rank, why


def wave_columns(blocks: int, N: int, block_n: int, wave: int) -> int:
    """The waves a grid of `blocks` x N/block_n tiles takes on `wave` CTA slots, times the
    columns of each: a tile's time grows with its columns where the weights' bytes bound it
    (decode), so this compares block_n's critical paths, the last wave's empty slots
    included (384 tiles of 128 columns on 264 slots: 2 waves, 256; of 64: 3 waves, 192)."""
    return -(-blocks * -(-N // block_n) // wave) * block_n


def wanted_n_tiles(inst: Instance, shape: Shape) -> int:
    """The most N tiles per CTA (stage 2's N loop, n_tiles) that keep the grid at
    N_TILES_MIN_WAVES waves of the swapped tile's CTAs (N_TILES_MIN_WAVES_SHORT_K where K is
    at most two k-tiles); 1 where the instance has no N loop or it does not run (the
    activations of the whole K must fit the tile's shared memory: moe.cuh,
    stage2_tiles_per_cta). Blocks: the active experts times the blocks of block_m their
    average rows fill. From the tuner's stage-2 timings of n_tiles 1-12 (H200,
    2026-11-30, session 18): MiniMax TP=8 (K = 192) took 12 at T = 64 ... 1024 (1.4-1.7x
    faster than one tile per CTA), 6 within 5 % but at T = 512 with block_m 16 (6 best),
    and 3 or 6 at T = 8 ... 32 (this rule: 1 at T = 8, where 3 took 0.79x the time);
    gpt-oss-120b (K = 2880) took 2-6 (3 at T = 256 and 512, 6 at 1024: this rule's choices,
    each within 1 % of the best), and 12 was up to 1.2x slower than one tile (too few CTAs)."""
    if inst.op != "moe_stage2" or inst.b_path not in ("swap", "wgmma") or not shape.N or not inst.block_n:
        return 1
    routes = shape.T * shape.topk
    if inst.b_path == "wgmma":
        if not wgmma_n_loop_runs(inst, shape.K):
            return 1
        ctas_per_sm = WGMMA_CTAS_PER_SM
    else:
        rows = min(inst.block_m, -(-max(routes, 1) // 8) * 8)
        if -(-shape.K // inst.block_k) > (SWAP_SMEM_A // (2 * rows) - 16) // inst.block_k:
            return 1
        ctas_per_sm = SWAP_CTAS_PER_SM
    active = max(1, min(shape.E or 1, routes))
    blocks = active * math.ceil(rows_per_expert(shape) / inst.block_m)
    tiles = blocks * -(-shape.N // inst.block_n)
    short_k = inst.block_k and shape.K <= 2 * inst.block_k
    waves = N_TILES_MIN_WAVES_SHORT_K if short_k else N_TILES_MIN_WAVES
    return max(1, int(tiles // (waves * GPU_PARALLELISM[inst.target] * ctas_per_sm)))


def wgmma_n_loop_runs(inst: Instance, K: int) -> bool:
    """Whether a moe_stage2 ring-tile instance with n_tiles > 1 runs its N loop at K: the
    activations of the whole K fit its resident tiles (WGMMA_RES_K_TILES; moe.cuh,
    stage2_tiles_per_cta, which also needs the bf16 rows' 16-byte output rows); elsewhere
    each CTA computes one N tile."""
    return (inst.op == "moe_stage2" and inst.b_path == "wgmma" and inst.n_tiles > 1
            and -(-K // inst.block_k) <= WGMMA_RES_K_TILES.get(inst.block_m, 0))


STAGE2_REDUCES = ("auto", "atomic", "slots")


def slots_supported(inst: Instance) -> bool:
    """Whether a moe_stage2 instance can reduce by route rows (reduce="slots"): one K part
    (split_k 1, cluster_k 1: partial sums would need adding), a bf16 out, block_n a multiple
    of 8. The same rule as MoeSpec::kStage2Slots (csrc/mxforge/gpu/moe.cuh) on every target."""
    return (inst.op == "moe_stage2" and inst.split_k == 1 and inst.cluster_k == 1
            and inst.out == "bf16" and inst.block_n % 8 == 0)


def direct_supported(inst: Instance) -> bool:
    """Whether a stage instance takes direct routing (ops.moe_routes): every cpu instance,
    and on GPUs the decode tiles (b_path regs or swap). The same rule as
    MoeSpec::kDirectRoutes (csrc/mxforge/gpu/moe.cuh)."""
    return inst.op in ("moe_stage1", "moe_stage2") and (inst.target == "cpu" or inst.b_path in ("regs", "swap"))


def stage2_reduce(inst: Instance, requested: str = "auto") -> str:
    """How stage 2 sums a token's routes: "atomic" (every route's row added into the output
    by atomic adds) or "slots" (each route's row stored, rounded to bf16, then summed per
    token in fp32 in slot order by a second kernel: deterministic, one rounding;
    ops.moe_stage2). "auto" is "atomic": the layer with slots measured slower at every T
    (H200, session 23, same runs: gpt-oss-120b 1.00-1.02x from T = 64, 1.03-1.12x at T = 1
    and 8; MiniMax TP=8 1.09-1.21x from T = 8, 1.47-1.50x at T = 1; its stage 2 at T = 8192
    477 -> 697 us: the 2 x 10^8 adds stay in L2, the slot rows, 2 * T * topk * H bytes, go
    through HBM twice; benchmarks/README.md). "slots" is for results that must not depend
    on timing."""
    if requested not in STAGE2_REDUCES:
        raise InputError(f"stage-2 reduce {requested!r} (allowed: {', '.join(STAGE2_REDUCES)})")
    if requested == "slots" and not slots_supported(inst):
        raise InputError(
            f"stage-2 reduce 'slots' needs an instance with split_k 1, cluster_k 1, a bf16 out "
            f"and block_n % 8 == 0; {inst.name} has split_k {inst.split_k}, cluster_k "
            f"{inst.cluster_k}, out {inst.out}, block_n {inst.block_n}")
    return "slots" if requested == "slots" else "atomic"


def candidates(key: Key) -> list[Instance]:
    """Every compiled instance whose key matches exactly."""
    return list(_index().by_key.get(key, ()))


Where = Optional[Callable[[Instance], bool]]


@functools.lru_cache(maxsize=1024)
def compiled_block_m(key: Key, where: Where = None) -> frozenset[int]:
    """The block_m values of the instances for `key` that pass `where`."""
    return frozenset(i.block_m for i in candidates(key) if where is None or where(i))


def select(key: Key, shape: Shape, instance: str | None = None, block_m: int | None = None,
           allowed_block_m: Iterable[int] | None = None, where: Where = None) -> Decision:
    """Choose the instance for `key` at `shape` (or check a named one against the key).

    `block_m` pins the sort's block size (a GEMM must use the block_m its input was sorted
    with); `allowed_block_m` restricts the choice (a pipeline's stages must agree); `where`
    keeps only the instances that have a feature the call needs (slots_supported; a
    function, compared by identity: ops.all_of gives the same one for the same conditions).

    Decisions are memoized (the last SELECT_MEMO calls' arguments with the tuned tables'
    paths and modification times): a serving loop's repeated calls look up their decision
    instead of ranking the candidates again; an edited table is a new memo entry. So a
    tuned row that names an instance this module lacks is warned about once per decision,
    not per call; and `where` should be a module-level function (a new closure per call
    would miss the memo every time, and the memo would keep it alive)."""
    allowed = frozenset(allowed_block_m) if allowed_block_m is not None else None
    if block_m is not None:
        allowed = frozenset({block_m}) if allowed is None else allowed & {block_m}
    if instance is not None:
        return _named(key, shape, instance, allowed, where)
    return _decide(key, shape, allowed, where, tuned_files())


def _named(key: Key, shape: Shape, instance: str, allowed: frozenset[int] | None,
           where: Where) -> Decision:
    inst = by_name(instance)
    if inst.key() != key:
        diff = [f"{f}: instance has {getattr(inst, f)!r}, request needs {getattr(key, f)!r}"
                for f in KEY_FIELDS if getattr(inst, f) != getattr(key, f)]
        raise NoInstanceError(f"instance {instance} does not serve this request: " + "; ".join(diff))
    if allowed is not None and inst.block_m not in allowed:
        raise NoInstanceError(f"instance {instance} has block_m {inst.block_m}; this call "
                              f"needs block_m in {sorted(allowed)}")
    if where is not None and not where(inst):
        raise NoInstanceError(f"instance {instance} does not pass {where.__name__}, which this "
                              "call needs (mxforge.dispatch)")
    return Decision(inst, "named", key, shape, (inst,))


SELECT_MEMO = 8192  # decisions kept: a few model shapes x every T of a serving run


@functools.lru_cache(maxsize=SELECT_MEMO)
def _decide(key: Key, shape: Shape, allowed: frozenset[int] | None, where: Where,
            files: TunedFiles) -> Decision:
    """select's choice among the candidates: the tuned row, else the heuristic's best."""
    pool = _index().by_key.get(key, ())
    all_candidates = pool if where is None else tuple(c for c in pool if where(c))
    if where is not None and not all_candidates and pool:
        raise NoInstanceError(f"none of the {len(pool)} compiled instances for "
                              f"{key.describe()} passes {where.__name__} (mxforge.dispatch)")
    # (memoized with the decision: the index's own tuple where nothing narrows it)
    candidates_ = all_candidates if allowed is None else tuple(
        c for c in all_candidates if c.block_m in allowed)
    if not candidates_:
        if all_candidates and allowed is not None:
            raise NoInstanceError(
                f"no compiled instance for {key.describe()} with block_m in {sorted(allowed)}; "
                f"compiled block_m: {sorted({c.block_m for c in all_candidates})}")
        raise no_instance(key, shape)
    chosen, note = tuned_choice(key, shape, candidates_, files)
    if chosen is not None:
        return Decision(chosen, "tuned", key, shape, candidates_, (note,))
    best = min(candidates_, key=lambda c: heuristic_rank(c, shape, explain=False)[0])
    return Decision(best, "heuristic", key, shape, candidates_, (note,))


def clear_caches() -> None:
    """Forget the compiled table, the parsed tuned tables and every memoized decision (after
    loading another module; tests that swap tables)."""
    for cached in (table, _index, _load_tuned, _shipped_tables, _tuned_index, compiled_block_m,
                   _decide):
        cached.cache_clear()


def describe_instances(rows: Iterable[Instance]) -> str:
    cols = ("name", "op", "a", "b", "out", "block_m", "block_n", "block_k", "split_k",
            "cluster_k", "n_tiles", "activation", "layout", "b_path")
    rows = list(rows)
    widths = {c: max([len(c)] + [len(str(getattr(r, c))) for r in rows]) for c in cols}
    head = "  ".join(c.ljust(widths[c]) for c in cols)
    body = ["  ".join(str(getattr(r, c)).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([head] + body)
