"""Spec fuzzing: random, mutated and hostile spec files against codegen's front half.

The property (docs/reliability.md): whatever bytes a spec or set file holds, loading and
rendering either succeeds and renders byte-identical sources twice, or raises `SpecError`
naming the file and a line in it (with the allowed values where a value is bad) and
writes nothing. Any other exception, a hang, or a file written for an invalid spec fails.

Hypothesis runs derandomized (a fixed seed: the same cases on every run, never flaky) with
a fixed number of examples per test; MXFORGE_FUZZ_EXAMPLES=N scales every test to N
examples and MXFORGE_FUZZ_RANDOM=1 draws new cases (both for local fuzzing sessions). Each
test records how many cases it ran (the "generated cases" section of the pytest summary).
"""
from __future__ import annotations

import itertools
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import schema
from codegen.render import render, source_hash
from codegen.spec import (MAX_COMBINATIONS, MAX_DEPTH, MAX_INSTANCES, MAX_VALUES, SpecError,
                          load_set)
from codegen.targets import TARGETS

ROOT = Path(__file__).resolve().parents[1]
LINE_BREAKS = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what YAML counts as one
TARGET_NAMES = tuple(TARGETS)

# Strings aimed at the C++ sources, the shell, Jinja and the terminal.
HOSTILE = [
    '"; system("rm -rf /"); //', "a'b\"c", "\\", "trailing\\", "x;y", "$(touch /tmp/pwned)",
    "`id`", "line\nbreak", "*/ int x; /*", "#include </etc/passwd>", "\x00", "nul\x00byte",
    "ünïcödé ✓ 𝔘", "\u202etxt.exe", "\r\n", "{{ 7*7 }}", "{% raw %}", "%s%n", "A" * 10_000,
    "", " ", "cpu ", "CPU", "16", "-1", "1e3", "0x10", "~", "null", "!!python/object",
]


# ---- the harness: the build's codegen front half on one spec file ----------------------

def fuzz_settings(n: int) -> settings:
    return settings(max_examples=int(os.environ.get("MXFORGE_FUZZ_EXAMPLES", 0)) or n,
                    derandomize=not os.environ.get("MXFORGE_FUZZ_RANDOM"), database=None,
                    deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def run_cases(strategy: st.SearchStrategy, check: Callable[[Any], None], n: int,
              record_cases: Callable[[int], None]) -> None:
    """Run `check` on `n` generated cases; record and assert how many ran (hypothesis
    stops early only if the strategy runs out of distinct cases, which these never do)."""
    ran = 0

    @fuzz_settings(n)
    @given(strategy)
    def prop(case: Any) -> None:
        nonlocal ran
        ran += 1
        check(case)

    prop()
    record_cases(ran)
    assert ran >= fuzz_settings(n).max_examples


def codegen(spec: str | bytes, tmp: Path) -> tuple[list[str] | SpecError, Path, Path]:
    """Write spec as specs/x.yaml (named by the set specs/sets/s.yaml), load the set and,
    if it loads, render it into out/ for every target. Returns (instance names or the
    SpecError, spec path, out dir); any other exception propagates and fails the test."""
    specs, out = tmp / "specs", tmp / "out"
    (specs / "sets").mkdir(parents=True)
    out.mkdir()
    path = specs / "x.yaml"
    path.write_bytes(spec.encode("utf-8", "surrogatepass") if isinstance(spec, str) else spec)
    (specs / "sets" / "s.yaml").write_text("specs: [x.yaml]\n")
    try:
        iset = load_set(specs, "s", TARGET_NAMES)
    except SpecError as e:
        assert_located(e, path, spec)
        assert not any(out.rglob("*")), "codegen wrote files for an invalid spec"
        return e, path, out
    manifest = {"set": "s", "source_hash": source_hash(ROOT, iset.spec_files)}
    first = render(iset.instances, ROOT / "templates", out / "a", TARGET_NAMES, manifest)
    render(iset.instances, ROOT / "templates", out / "b", TARGET_NAMES, manifest)
    files = sorted(p.relative_to(out / "a") for p in (out / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out / "b") for p in (out / "b").rglob("*") if p.is_file())
    for f in files:
        assert (out / "a" / f).read_bytes() == (out / "b" / f).read_bytes(), f"{f} differs"
    per_target = {t: sum(i.target == t for i in iset.instances) for t in TARGET_NAMES}
    assert first.written == len(files) == len(iset.instances) + len(TARGET_NAMES) + 1
    assert render(iset.instances, ROOT / "templates", out / "a", TARGET_NAMES, manifest).written == 0
    assert sum(per_target.values()) == len(iset.instances)
    return [i.name for i in iset.instances], path, out


def codegen_result(spec: str | bytes) -> list[str] | SpecError:
    with tempfile.TemporaryDirectory() as d:
        return codegen(spec, Path(d))[0]


def assert_located(e: SpecError, path: Path, text: str | bytes) -> None:
    """An error names the spec (or its set) file and a line in it, in one line of text."""
    assert e.file in (str(path), str(path.parent / "sets" / "s.yaml")), e
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    n_lines = len(LINE_BREAKS.split(text))
    assert 1 <= e.line <= n_lines + 1 and e.col >= 1, e
    assert "\n" not in e.message and "\r" not in e.message, repr(e.message)
    assert len(e.message) < 600, f"message of {len(e.message)} chars"
    assert "<codegen." not in e.message, e.message  # an internal object's repr
    if any(w in e.message for w in ("bad value", "does not apply", "missing required field",
                                    "': empty list")):
        assert "allowed" in e.message, e.message


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1 << 16)


# ---- strategies -----------------------------------------------------------------------

def field_value(draw: st.DrawFn, allowed: tuple[Any, ...], max_list: int = 2) -> Any:
    """A scalar from `allowed` or a non-empty list of distinct ones."""
    if draw(st.booleans()):
        return draw(st.sampled_from(allowed))
    return draw(st.lists(st.sampled_from(allowed), min_size=1, max_size=max_list, unique=True))


@st.composite
def valid_groups(draw: st.DrawFn, gid: str = "g", op: str | None = None) -> dict[str, Any]:
    """A schema-valid group (values from the allowed lists; lists of <= 2 values, so the
    product stays far below the combination limit). Every combination may still break a
    constraint: `expected_names` says what it should expand to."""
    op_name = op or draw(st.sampled_from(sorted(schema.OPS)))
    g: dict[str, Any] = {"id": gid, "op": op_name, "targets": field_value(draw, TARGET_NAMES)}
    for f in schema.OPS[op_name].fields:
        if f.default is None or draw(st.booleans()):
            g[f.name] = field_value(draw, f.allowed)
    keys = list(g)
    order = draw(st.permutations(keys))  # field order in the file must not matter
    return {k: g[k] for k in order}


def allowed_combination(c: dict[str, Any]) -> bool:
    """The README's constraints, written independently of codegen/schema.py."""
    if c.get("layout") == "pairbits" and c["targets"] not in ("cpu", "sm90"):
        return False  # (GEMMs and mx_pack alike)
    if c["op"] not in ("moe_stage1", "moe_stage2", "moe_1stage"):
        return True
    pairs = {("pk_fp4", "pk_fp4"), ("bf16", "pk_fp4"), ("fp16", "pk_fp4"), ("fp8", "pk_fp4"),
             ("fp8", "fp8"), ("bf16", "bf16")}
    bm, bn, bk = c["block_m"], c["block_n"], c["block_k"]
    # shared memory of a tile (docs: A and B tiles of 16-bit rows padded by 8, or the fp32
    # staging tile, plus the row arrays) against each target's limit
    lds = max(2 * (bm + bn) * (bk + 8), 4 * bm * (bn + 8)) + 4 * (3 * bm + bn)
    limit = {"sm90": 227 * 1024, "gfx942": 64 * 1024, "gfx950": 160 * 1024}.get(c["targets"])
    scaled_mfma = c["targets"] == "gfx950" and (c["a"], c["b"]) in {("pk_fp4", "pk_fp4"), ("fp8", "pk_fp4")}
    return ((c["a"], c["b"]) in pairs
            and not (c.get("split_k", 1) > 1 and c["a"] == "pk_fp4")
            and not (c["op"] == "moe_stage2" and c.get("split_k", 1) > 1 and c["a"] not in ("bf16", "fp16"))
            and not (c["layout"] != "plain" and c["b"] != "pk_fp4")
            and not (c["op"] == "moe_stage1" and c["out"] == "pk_fp4" and bn < 64)
            and not (limit is not None and lds > limit)
            and not (scaled_mfma and bk % 128)
            and not (c.get("b_path", "smem") == "regs"
                     and not (c["targets"] == "sm90" and c["b"] == "pk_fp4" and c["a"] != "fp16"
                              and bm <= 32 and bk % 128 == 0))
            # swap: as regs, and 8 warps of 32 weight rows (16 with block_m 32) split over
            # N and K
            and not (c.get("b_path", "smem") == "swap"
                     and not (c["targets"] == "sm90" and c["b"] == "pk_fp4" and c["a"] != "fp16"
                              and c["a"] in ("pk_fp4", "bf16")
                              and bm <= 32 and bk % 128 == 0 and bn in (32, 64, 128, 256)
                              and not (bm == 32 and bn > 128)))
            # cluster_k > 1: the swapped tile on sm90 only, never with split_k
            and not (c.get("cluster_k", 1) > 1
                     and not (c["targets"] == "sm90" and c.get("b_path", "smem") == "swap"
                              and c.get("split_k", 1) == 1))
            # n_tiles > 1: stage 2's swapped tile with one warp group (8 warps x 32 weight
            # rows at block_m 16, x 16 at block_m 32), or its ring tile with a bf16 out, and
            # one K part, on sm90
            and not (c.get("n_tiles", 1) > 1
                     and not (c["targets"] == "sm90"
                              and ((c.get("b_path", "smem") == "swap" and (bm, bn) in ((16, 256), (32, 128)))
                                   or (c.get("b_path", "smem") == "wgmma" and c.get("out", "bf16") == "bf16"))
                              and c.get("split_k", 1) == 1 and c.get("cluster_k", 1) == 1))
            # wgmma: two warpgroups of m64 x (64 or 128) columns each, block_k 64
            and not (c.get("b_path", "smem") == "wgmma"
                     and not (c["targets"] == "sm90" and c["b"] == "pk_fp4" and c["a"] != "fp16"
                              and bm in (64, 128) and bk == 64 and bn * bm // 128 in (64, 128)))
            # wgmma_regs: two warpgroups of 64 weight rows, the block's tokens as the MMAs' N
            and not (c.get("b_path", "smem") == "wgmma_regs"
                     and not (c["targets"] == "sm90" and c["b"] == "pk_fp4" and c["a"] in ("pk_fp4", "bf16")
                              and bm in (16, 32, 64, 128) and bn == 128 and bk == 128)))


def expands(g: dict[str, Any]) -> bool:
    return bool(expected_combinations(g))


def expected_combinations(g: dict[str, Any]) -> set[tuple]:
    """The group's valid combinations (target, op and every field, defaults filled in)."""
    op = schema.OPS[g["op"]]
    axes = {"targets": g["targets"]}
    for f in op.fields:
        axes[f.name] = g.get(f.name, f.default)
    lists = {k: v if isinstance(v, list) else [v] for k, v in axes.items()}
    combos = (dict(zip(lists, combo)) for combo in itertools.product(*lists.values()))
    return {(g["op"],) + tuple(c.items()) for c in combos if allowed_combination({"op": g["op"], **c})}


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 3))
    doc: dict[str, Any] = {"groups": [draw(valid_groups(f"g{i}")) for i in range(n)]}
    if draw(st.booleans()):
        doc["description"] = draw(st.sampled_from(HOSTILE[:19]) | st.text(max_size=40))
    return doc


def wrong_type(v: Any) -> list[Any]:
    """Values of another YAML type than v (and than every allowed value of its field)."""
    if isinstance(v, bool):
        return [int(v), str(v).lower(), None, [[v]]]
    if isinstance(v, int):
        return [str(v), float(v), True, None, {"v": v}, [[v]]]
    return [1, True, None, 1.5, {"k": v}, [[v]], [v, [v]]]


# Each mutation makes a valid document invalid; `hint` is a phrase the error must contain.
@st.composite
def invalid_docs(draw: st.DrawFn) -> tuple[str, str, Any]:
    doc = draw(valid_docs().filter(lambda d: all(map(expands, d["groups"]))))
    groups = doc["groups"]
    i = draw(st.integers(0, len(groups) - 1))
    g = groups[i]
    op = schema.OPS[g["op"]]
    kind = draw(st.sampled_from([
        "wrong_type", "unknown_field", "duplicate_id", "split_k_pk_fp4", "hostile_value",
        "hostile_id", "missing_required", "empty_list", "listed_twice", "bad_op",
        "non_mapping_doc", "top_level_unknown", "group_not_mapping", "groups_not_list",
        "explosion", "bad_description"]))
    fields = [k for k in g if k != "id"]
    hint = ""
    if kind == "wrong_type":
        k = draw(st.sampled_from(fields))
        v = g[k][0] if isinstance(g[k], list) else g[k]
        g[k] = draw(st.sampled_from(wrong_type(v)))
        hint = f"field '{k}'"
    elif kind == "unknown_field":
        known = set(schema.GROUP_KEYS) | {f.name for f in op.fields}
        k = draw((st.sampled_from(HOSTILE) | st.text(min_size=1, max_size=20)).filter(
            lambda s: s not in known))
        g[k] = draw(st.sampled_from([1, "x", [1], None]))
        hint = "does not apply"
    elif kind == "duplicate_id":
        other = draw(valid_groups(g["id"]).filter(expands))
        groups.insert(draw(st.integers(i + 1, len(groups))), other)
        hint = f"group id '{g['id']}' used twice"
    elif kind == "split_k_pk_fp4":
        g = draw(valid_groups(g["id"], "moe_stage1"))
        g.update(a="pk_fp4", b="pk_fp4", layout="plain",
                 split_k=draw(st.sampled_from([2, 4, 8, [2, 8], [4, 2]])))
        groups[i] = g
        hint = "split_k > 1 is invalid with pk_fp4 activations"
    elif kind == "hostile_value":
        k = draw(st.sampled_from(fields))
        allowed = {"op": tuple(schema.OPS), "targets": TARGET_NAMES}.get(k) or op.field(k).allowed
        g[k] = draw((st.sampled_from(HOSTILE) | st.text(max_size=50)).filter(
            lambda s: s not in allowed))
        hint = f"field '{k}'"
    elif kind == "hostile_id":
        g["id"] = draw((st.sampled_from(HOSTILE) | st.text(max_size=80)).filter(
            lambda s: not schema.IDENT.match(s)))
        hint = "field 'id'"
    elif kind == "missing_required":
        required = ["id", "op", "targets"] + [f.name for f in op.fields if f.default is None]
        k = draw(st.sampled_from([k for k in required if k in g]))
        del g[k]
        hint = "missing required field"
    elif kind == "empty_list":
        k = draw(st.sampled_from([f for f in fields if f != "op"]))
        g[k] = []
        hint = "empty list"
    elif kind == "listed_twice":
        k = draw(st.sampled_from([f for f in fields if f != "op"]))
        v = g[k][0] if isinstance(g[k], list) else g[k]
        g[k] = [v, v]
        hint = "listed twice"
    elif kind == "bad_op":
        g["op"] = draw(st.sampled_from(["moe_stage3", "MOE_SORT", "", "moe_sort "]))
        hint = "field 'op'"
    elif kind == "non_mapping_doc":
        doc = draw(st.sampled_from([[doc], "groups", 3, 1.5, True, [[1, 2]], ["groups"]]))
        hint = "a spec file is a mapping"
    elif kind == "top_level_unknown":
        doc[draw(st.sampled_from(["group", "Groups", "include", "<<x"]))] = 1
        hint = "unknown"
    elif kind == "group_not_mapping":
        groups[i] = draw(st.sampled_from(["g", 1, None, [g]]))
        hint = "a group must be a mapping"
    elif kind == "groups_not_list":
        doc["groups"] = draw(st.sampled_from([{}, [], "g", 1, None, {"id": "g"}]))
        hint = "'groups' must be a non-empty list"
    elif kind == "explosion":
        g = {"id": g["id"], "op": "moe_stage1", "targets": list(TARGET_NAMES)}
        for f in schema.OPS["moe_stage1"].fields:
            g[f.name] = list(f.allowed)
        groups[i] = g
        hint = f"(limit {MAX_COMBINATIONS})"
    elif kind == "bad_description":
        doc["description"] = draw(st.sampled_from([[1], {"a": 1}, 3, None]))
        hint = "field 'description'"
    return kind, hint, doc


HOSTILE_SNIPPETS = HOSTILE + [": ", "- ", "&a ", "*a", "!!int ", "!!python/name:os.system",
                              "? ", "|", ">", "{", "[", "]", "}", "---", "...", "\t", "<<: ",
                              "%YAML 1.1\n", "@", "'", '"', "#", "\ufeff", "\x85", "\u2028"]


@st.composite
def text_mutations(draw: st.DrawFn) -> str:
    """A valid spec's text with a few characters inserted, deleted or replaced."""
    text = dump(draw(valid_docs()))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(text)))
        end = min(len(text), pos + draw(st.integers(0, 12)))
        snippet = draw(st.sampled_from(HOSTILE_SNIPPETS) | st.text(max_size=8))
        text = text[:pos] + snippet + text[end:]
    return text


# ---- properties -----------------------------------------------------------------------

def test_valid_specs_expand_as_specified_and_render_identically(record_cases) -> None:
    def check(doc: dict[str, Any]) -> None:
        want = [expected_combinations(g) for g in doc["groups"]]
        got = codegen_result(dump(doc))
        if not all(want):  # some group breaks a constraint in every combination
            assert isinstance(got, SpecError) and "every combination is invalid" in got.message
            return
        if sum(map(len, want)) != len(set().union(*want)):  # two groups make one instance
            assert isinstance(got, SpecError) and "duplicate instance" in got.message
            return
        assert not isinstance(got, SpecError), got
        assert len(got) == len(set(got)) == sum(map(len, want))

    run_cases(valid_docs(), check, 250, record_cases)


def test_invalid_specs_raise_located_errors_and_write_nothing(record_cases) -> None:
    seen: set[str] = set()

    def check(case: tuple[str, str, Any]) -> None:
        kind, hint, doc = case
        seen.add(kind)
        got = codegen_result(dump(doc))
        assert isinstance(got, SpecError), f"{kind}: accepted {got}"
        assert hint in got.message or kind == "duplicate_id" and "duplicate" in got.message, \
            f"{kind}: {got}"

    run_cases(invalid_docs(), check, 400, record_cases)
    assert len(seen) == 16  # every mutation kind was drawn


def test_mutated_text_never_crashes(record_cases) -> None:
    run_cases(text_mutations(), codegen_result, 200, record_cases)


def test_binary_garbage_is_a_located_error(record_cases) -> None:
    def check(data: bytes) -> None:
        assert isinstance(codegen_result(data), SpecError)

    prefixes = st.sampled_from([b"", b"groups:\n", b"groups:\n  - ", b"\xef\xbb\xbf", b"%YAML 1.2\n"])
    run_cases(st.tuples(prefixes, st.binary(max_size=400)).map(b"".join), check, 150, record_cases)


@st.composite
def set_files(draw: st.DrawFn) -> str:
    """A set file with hostile `specs`, `only` or `exclude` entries."""
    name = draw(st.sampled_from(HOSTILE) | st.text(max_size=300) |
                st.sampled_from(["x.yaml/../x.yaml", "/etc/passwd", "a" * 300 + ".yaml",
                                 "sets/s.yaml", "../specs/x.yaml", "x.yml", "./x.yaml"]))
    key = draw(st.sampled_from(["specs", "only", "exclude", "description", "bogus"]))
    doc: dict[str, Any] = {"specs": ["x.yaml"]}
    doc[key] = draw(st.sampled_from([[name], name, [name, name], {name: 1}, None, 7]))
    return dump(doc)


def test_hostile_set_files_are_located_errors(record_cases) -> None:
    good = dump({"groups": [{"id": "q", "op": "moe_sort", "targets": ["cpu"]}]})

    def check(set_text: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            specs = Path(d)
            (specs / "sets").mkdir()
            (specs / "x.yaml").write_text(good)
            set_path = specs / "sets" / "s.yaml"
            set_path.write_text(set_text)
            try:
                load_set(specs, "s", TARGET_NAMES)
            except SpecError as e:
                assert e.file == str(set_path) and e.line >= 1 and "\n" not in e.message, e

    run_cases(set_files(), check, 150, record_cases)


# ---- limits: explosions and bombs are rejected quickly --------------------------------

def billion_laughs(depth: int, fanout: int, use: str) -> str:
    """`depth` levels of lists, each holding `fanout` aliases of the level below:
    fanout**depth values from a few hundred bytes."""
    lines = ["a0: &a0 [cpu]"]
    for d in range(1, depth + 1):
        lines.append(f"a{d}: &a{d} [{', '.join([f'*a{d - 1}'] * fanout)}]")
    return "\n".join(lines) + f"\ngroups:\n  - id: g\n    op: moe_sort\n    targets: {use}\n"


@pytest.mark.parametrize("depth, fanout", [(9, 10), (30, 2), (5, 1000), (2, 400)])
def test_alias_bombs_are_rejected_quickly(tmp_path: Path, depth: int, fanout: int) -> None:
    text = billion_laughs(depth, fanout, f"*a{depth}")
    t0 = time.monotonic()
    got, _, _ = codegen(text, tmp_path)
    assert time.monotonic() - t0 < 2.0
    assert isinstance(got, SpecError)
    if fanout ** depth > MAX_VALUES:
        assert f"more than {MAX_VALUES} values" in got.message


@pytest.mark.parametrize("text, phrase", [
    ("groups: &a [*a]\n", "contains it (a cycle)"),
    ("groups:\n  - &g {id: g, op: moe_sort, targets: [cpu], x: [*g]}\n", "a cycle"),
    ("groups: " + "[" * 100_000 + "]" * 100_000 + "\n", f"deeper than {MAX_DEPTH}"),
    ("groups:\n" + "  - " * 40 + "x\n", f"deeper than {MAX_DEPTH}"),
], ids=["list_cycle", "map_cycle", "flow_100k", "block_40"])
def test_cycles_and_deep_nesting_are_located_errors(tmp_path: Path, text: str, phrase: str) -> None:
    got, _, _ = codegen(text, tmp_path)
    assert isinstance(got, SpecError) and phrase in got.message


def test_aliases_within_the_limits_work(tmp_path: Path) -> None:
    text = ("groups:\n  - id: a\n    op: mxfp4_quant\n    a: &dt [bf16, fp16]\n"
            "    targets: &t [cpu]\n  - id: b\n    op: fused_quant_sort\n    a: *dt\n    targets: *t\n")
    got, _, _ = codegen(text, tmp_path)
    assert got == ["cpu_fused_quant_sort_bf16_opk_fp4", "cpu_fused_quant_sort_fp16_opk_fp4",
                   "cpu_mxfp4_quant_bf16_opk_fp4", "cpu_mxfp4_quant_fp16_opk_fp4"]


def test_instance_total_is_capped(tmp_path: Path) -> None:
    """Groups under the per-group limit that together pass MAX_INSTANCES: an error naming
    the group that crosses it, in about the time it takes to expand the limit."""
    group = {"op": "moe_stage1", "targets": ["cpu", "sm90"], "a": ["bf16", "fp16"],
             "b": "pk_fp4", "out": "bf16", "block_m": [16, 32, 64, 128], "block_n": [32, 64, 128, 256],
             "block_k": [32, 64, 128, 256], "split_k": [1, 2, 4, 8], "activation": ["silu", "gelu", "swiglu_oai"]}
    per_group = 2 * 2 * 4 * 4 * 4 * 4 * 3
    assert per_group <= MAX_COMBINATIONS
    n = MAX_INSTANCES // per_group + 1
    doc = {"groups": [{"id": f"g{i}", **group} for i in range(n)]}
    t0 = time.monotonic()
    got, _, _ = codegen(dump(doc), tmp_path)
    assert time.monotonic() - t0 < 10.0
    assert isinstance(got, SpecError) and f"limit of {MAX_INSTANCES} instances" in got.message
    text = dump(doc).splitlines()
    assert text[got.line - 1] == f"- id: g{n - 1}"  # the group that crosses the limit


def test_many_small_groups_hit_a_limit_quickly(tmp_path: Path) -> None:
    body = "".join(f"  - {{id: g{i}, op: moe_sort, targets: [cpu]}}\n" for i in range(20_000))
    t0 = time.monotonic()
    got, _, _ = codegen("groups:\n" + body, tmp_path)
    assert time.monotonic() - t0 < 10.0
    assert isinstance(got, SpecError) and "more than" in got.message


# ---- regressions: inputs that crashed or hung codegen before the fixes ---------------

@pytest.mark.parametrize("value, phrase", [
    ("!!int abc", "invalid int value 'abc'"),        # ValueError from the constructor
    ("!!bool abc", "invalid bool value 'abc'"),      # KeyError
    ("!!float abc", "invalid float value 'abc'"),    # ValueError
    ("1" * 5000, "invalid int value"),               # past sys.int_max_str_digits
    ("!!timestamp 2001-01-01", "unsupported YAML tag"),
    ("!!map [cpu]", "unsupported YAML tag"),          # a tag that does not fit the node
    ("[cpu, !!binary aGk=]", "unsupported YAML tag"),
], ids=["int_tag", "bool_tag", "float_tag", "5000_digits", "timestamp", "map_on_list", "binary"])
def test_regression_scalar_constructor_errors(tmp_path: Path, value: str, phrase: str) -> None:
    got, path, _ = codegen(f"groups:\n  - id: g\n    op: moe_sort\n    targets: {value}\n", tmp_path)
    assert isinstance(got, SpecError) and phrase in got.message and got.line == 4, got


def test_regression_reader_error_has_the_line(tmp_path: Path) -> None:
    got, _, _ = codegen("groups:\n  - id: g\x00\n", tmp_path)
    assert isinstance(got, SpecError) and (got.line, got.col) == (2, 10) and "#x0000" in got.message


def test_regression_messages_show_values_not_objects(tmp_path: Path) -> None:
    got, _, _ = codegen("groups:\n  - id: [a, {b: 1}]\n    op: moe_sort\n    targets: [cpu]\n", tmp_path)
    assert isinstance(got, SpecError) and "bad value ['a', {'b': 1}]" in got.message


def test_regression_spec_path_cannot_inject_code(tmp_path: Path) -> None:
    """Instance sources name their spec file in a comment: a spec folder whose name holds
    a newline, `*/` or a trailing backslash must not end the comment."""
    specs = tmp_path / "evil\n#error injected */\\"
    (specs / "sets").mkdir(parents=True)
    (specs / "x.yaml").write_text("groups:\n  - {id: q, op: moe_sort, targets: [cpu, sm90]}\n")
    (specs / "sets" / "s.yaml").write_text("specs: [x.yaml]\n")
    iset = load_set(specs, "s", TARGET_NAMES)
    render(iset.instances, ROOT / "templates", tmp_path / "out", TARGET_NAMES, {})
    srcs = list((tmp_path / "out").rglob("*_moe_sort.*"))
    assert len(srcs) == 2
    for src in srcs:
        text = src.read_text()
        assert "#error" not in "".join(line[:6] for line in text.splitlines())
        assert not [ln for ln in text.splitlines() if "evil" in ln and ln.endswith("\\")]


@pytest.mark.parametrize("name", ["a" * 300 + ".yaml", "x\x00.yaml", "x\n.yaml", "x.yaml;rm -rf",
                                  "$(id).yaml", "sub/../x.yaml"],
                         ids=["300_chars", "nul", "newline", "semicolon", "subshell", "dotdot"])
def test_regression_hostile_spec_names_in_sets(tmp_path: Path, name: str) -> None:
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "s.yaml").write_text(dump({"specs": [name]}))
    with pytest.raises(SpecError, match="allowed: a relative path") as ei:
        load_set(tmp_path, "s", TARGET_NAMES)
    assert ei.value.line == 2  # the list item
