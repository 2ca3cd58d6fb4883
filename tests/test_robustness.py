"""Malformed tuned tables and manifests: a clear error or a warning naming the file and
line, never a wrong kernel (docs/reliability.md).

Every tuned-table case ends in a dispatch decision that is checked to be a compiled
instance of the requested key (so of the requested dtype pair); every manifest case must
make `_loader.stale_reason()` (and so `mxforge check`) name the manifest file.
"""
from __future__ import annotations

import csv
import json
import re
import types
import warnings
from pathlib import Path
from typing import Callable

import pytest

from mxforge import _loader, cli, dispatch
from mxforge.dispatch import select
from mxforge.errors import NotBuiltError

from .helpers import A4W4_S1, TP8_S1, tuned_csv, tuned_row

HEADER = ",".join(dispatch.TUNED_COLUMNS)


def a4w4_instances() -> tuple[str, str, str]:
    """(smallest block_m, largest block_m, an instance of another key). At T=1 the
    heuristic picks the smallest block_m, so a used tuned row shows as the largest."""
    cands = sorted(dispatch.candidates(A4W4_S1), key=lambda i: (i.block_m, i.name))
    other = next(i for i in dispatch.table() if i.op == "moe_stage1" and i.a == "bf16")
    return cands[0].name, cands[-1].name, other.name


def good_row(instance: str | None = None) -> str:
    """A valid data line (no header) for A4W4_S1 at TP8_S1, by default the largest block_m."""
    return tuned_csv([tuned_row(A4W4_S1, TP8_S1, 1 << 20, instance or a4w4_instances()[1])]
                     ).splitlines()[1]


def replace_cell(line: str, column: str, value: str) -> str:
    cells = line.split(",")
    cells[dispatch.TUNED_COLUMNS.index(column)] = value
    return ",".join(cells)


# Each case: (name, file content from the good row, expected source, warning pattern with
# {path}:{line} where the warning must name a line; "" = no warning at all).
Case = tuple[str, Callable[[str], str | bytes], str, str]
CASES: list[Case] = [
    ("valid", lambda g: f"{HEADER}\n{g}\n", "tuned", ""),
    ("valid_crlf", lambda g: f"{HEADER}\r\n{g}\r\n", "tuned", ""),
    ("blank_lines", lambda g: f"{HEADER}\n\n{g}\n\n", "tuned", ""),
    ("empty_file", lambda g: "", "heuristic", r"{path}:1: header"),
    ("header_only", lambda g: f"{HEADER}\n", "heuristic", ""),
    ("header_renamed", lambda g: HEADER.replace("T_max", "Tmax") + f"\n{g}\n", "heuristic",
     r"{path}:1: header"),
    ("header_extra_column", lambda g: HEADER + ",us\n" + g + ",1.0\n", "heuristic", r"{path}:1: header"),
    ("header_reordered", lambda g: HEADER.replace("N,K", "K,N") + f"\n{g}\n", "heuristic",
     r"{path}:1: header"),
    ("bom", lambda g: f"\ufeff{HEADER}\n{g}\n", "heuristic", r"{path}:1: header"),
    ("truncated_in_header", lambda g: HEADER[:30], "heuristic", r"{path}:1: header"),
    ("truncated_last_row", lambda g: f"{HEADER}\n{g}\n{g[:40]}", "tuned", r"{path}:3: .*columns"),
    ("too_many_columns", lambda g: f"{HEADER}\n{g},extra\n", "heuristic", r"{path}:2: .*17 columns"),
    ("too_few_columns", lambda g: f"{HEADER}\n{g.rsplit(',', 1)[0]}\n", "heuristic",
     r"{path}:2: .*15 columns"),
    ("non_numeric_N", lambda g: f"{HEADER}\n{replace_cell(g, 'N', 'N/A')}\n", "heuristic",
     r"{path}:2: .*N must be"),
    ("negative_T_max", lambda g: f"{HEADER}\n{replace_cell(g, 'T_max', '-1')}\n", "heuristic",
     r"{path}:2: .*T_max must be"),
    ("float_T_max", lambda g: f"{HEADER}\n{replace_cell(g, 'T_max', '64.0')}\n", "heuristic",
     r"{path}:2: .*T_max must be"),
    ("spaced_E", lambda g: f"{HEADER}\n{replace_cell(g, 'E', ' 256')}\n", "heuristic",
     r"{path}:2: .*E must be"),
    ("bias_true", lambda g: f"{HEADER}\n{replace_cell(g, 'bias', 'true')}\n", "heuristic",
     r"{path}:2: .*bias must be 0 or 1"),
    ("empty_instance", lambda g: f"{HEADER}\n{replace_cell(g, 'instance', '')}\n", "heuristic",
     r"{path}:2: .*must not be empty"),
    ("unknown_instance", lambda g: f"{HEADER}\n{replace_cell(g, 'instance', 'cpu_moe_stage1_nope')}\n",
     "heuristic", r"{path}:2 names 'cpu_moe_stage1_nope', which this module does not have"),
    ("instance_of_other_target", lambda g: f"{HEADER}\n" + replace_cell(
        g, "instance", g.rsplit(",", 1)[1].replace("cpu_", "sm90_", 1)) + "\n", "heuristic",
     r"{path}:2 names 'sm90_.*does not have"),
    ("instance_of_other_key", lambda g: f"{HEADER}\n{replace_cell(g, 'instance', a4w4_instances()[2])}\n",
     "heuristic", r"{path}:2 names 'cpu_moe_stage1_bf16x.*which serves .*a=bf16.*not the row's key"),
    ("row_for_other_target", lambda g: f"{HEADER}\n{replace_cell(g, 'target', 'sm90')}\n",
     "heuristic", ""),
    ("row_for_other_shape", lambda g: f"{HEADER}\n{replace_cell(g, 'K', '4096')}\n", "heuristic", ""),
    ("duplicate_row", lambda g: f"{HEADER}\n{g}\n{g}\n", "tuned", r"{path}:3: .*duplicates line 2"),
    ("quoted_newline_in_target", lambda g: f'{HEADER}\n"cpu\n",{g.split(",", 1)[1]}\n', "heuristic", ""),
    ("nul_byte", lambda g: f"{HEADER}\n{g}\x00\n", "heuristic", r"{path}:2 names '.*\\x00'"),
    ("binary_garbage", lambda g: bytes(range(256)) * 4, "heuristic", r"ignoring tuned table {path}"),
    ("latin1", lambda g: f"{HEADER}\n{g}\n# caf\xe9\n".encode("latin-1"), "heuristic",
     r"ignoring tuned table {path}"),
]


@pytest.mark.parametrize("name, content, source, warning", CASES, ids=[c[0] for c in CASES])
def test_malformed_tuned_tables_never_select_a_wrong_kernel(tuned_file: Path, name: str, content,
                                                            source: str, warning: str) -> None:
    data = content(good_row())
    tuned_file.write_bytes(data if isinstance(data, bytes) else data.encode())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = select(A4W4_S1, TP8_S1)
    assert d.instance in dispatch.candidates(A4W4_S1)  # the key, so the dtype pair, matches
    assert (d.instance.a, d.instance.b) == ("pk_fp4", "pk_fp4")
    assert d.source == source, d.explain()
    if source == "tuned":
        assert d.instance.name == a4w4_instances()[1] and str(tuned_file) in d.notes[0]
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if not warning:
        assert not msgs, msgs
    else:
        pattern = warning.format(path=re.escape(str(tuned_file)))
        assert any(re.search(pattern, m) for m in msgs), (pattern, msgs)


def test_duplicate_rows_keep_the_first_answer(tuned_file: Path, monkeypatch) -> None:
    # the ci set has one a4w4 instance per block_m: pretend both rows' instances share one
    monkeypatch.setattr(dispatch, "table_block_m", lambda name: 32)
    small, large, _ = a4w4_instances()
    tuned_file.write_text(f"{HEADER}\n{good_row(small)}\n{good_row(large)}\n")
    with pytest.warns(RuntimeWarning, match=f"{re.escape(str(tuned_file))}:3: .*duplicates line 2"):
        d = select(A4W4_S1, TP8_S1)
    assert (d.source, d.instance.name) == ("tuned", small)


def test_unreadable_tuned_paths_warn_with_the_path(tuned_file: Path, monkeypatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    monkeypatch.setenv("MXFORGE_TUNED", f"{tmp_path}:{missing}")  # a folder and a missing file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = select(A4W4_S1, TP8_S1)
    msgs = " | ".join(str(w.message) for w in caught)
    assert f"ignoring tuned table {tmp_path}:" in msgs and f"ignoring tuned table {missing}:" in msgs
    assert d.source == "heuristic" and d.instance in dispatch.candidates(A4W4_S1)


def test_shipped_tuned_tables_are_clean() -> None:
    """Every row of mxforge/tuned/*.csv parses, and no (key, shape, T_max, block_m) has two
    answers (mxforge tune once wrote both pipelines' stage-2 picks; dispatch now skips the
    second with a warning, so a conflicting shipped table would warn on every sm90 run)."""
    paths = sorted(dispatch.TUNED_DIR.glob("*.csv"))
    assert paths
    for path in paths:
        with open(path, newline="") as fh:
            lines = list(csv.reader(fh))
        assert tuple(lines[0]) == dispatch.TUNED_COLUMNS
        seen: dict[tuple, int] = {}
        for lineno, cells in enumerate(lines[1:], start=2):
            key, nums, inst = dispatch._parse_tuned_row(cells)
            # (a moe_1stage row may say two_stage, a fused_quant_sort row split: no instance)
            assert inst in dispatch.DECISIONS or inst.startswith(f"{key.target}_{key.op}_"), (path, lineno)
            bm = re.search(r"_m(\d+)_", inst)  # (fused_quant_sort has no block_m)
            question = (key, nums, bm.group(1) if bm else "")
            assert question not in seen, f"{path}:{lineno} duplicates line {seen[question]}"
            seen[question] = lineno


def test_tune_writes_one_row_per_question(tuned_file: Path) -> None:
    """Two pipelines whose stage 2 asks the same question: one row, the faster instance."""
    from mxforge.models import preset
    from mxforge.tune import Choice, _keys, write_table
    shape = preset("minimax-m2.1-tp8")
    k1, k2 = _keys("cpu", shape, "pk_fp4", "bf16")
    bm = 32
    s1 = next(i.name for i in dispatch.candidates(k1) if i.block_m == bm)
    s1b = next(i.name for i in dispatch.candidates(_keys("cpu", shape, "bf16", "bf16")[0])
               if i.block_m == bm)
    s2 = [i.name for i in dispatch.candidates(k2) if i.block_m == bm]
    assert len(s2) >= 1
    fast, slow = s2[0], "cpu_slow_stage2_m32_placeholder"
    write_table(tuned_file, [
        Choice(shape.name, "a4w4-bf16inter", 4, bm, s1, slow, 1.0, 9.0, 0.0, 0.0),
        Choice(shape.name, "a16w4", 4, bm, s1b, fast, 1.0, 2.0, 0.0, 0.0)],
        {shape.name: shape}, "cpu")
    rows = list(csv.reader(tuned_file.open()))[1:]
    stage2 = [r for r in rows if r[1] == "moe_stage2"]
    assert len(rows) == 3 and [r[-1] for r in stage2] == [fast]


# ---- the manifest ---------------------------------------------------------------------

@pytest.fixture
def manifest_copy(tmp_path: Path, monkeypatch) -> Path:
    """_loader.MANIFEST_FILE pointed at a copy of the installed manifest file."""
    path = tmp_path / "_C.manifest.json"
    path.write_text(json.dumps(_loader.manifest(), indent=1, sort_keys=True))
    monkeypatch.setattr(_loader, "MANIFEST_FILE", path)
    return path


def _without(field: str) -> Callable[[dict], object]:
    return lambda m: {k: v for k, v in m.items() if k != field}


MANIFEST_CASES: list[tuple[str, Callable[[dict], object] | bytes | None, str]] = [
    ("missing", None, "is missing"),
    ("empty", b"", "not valid JSON"),
    ("truncated", lambda m: json.dumps(m)[: len(json.dumps(m)) // 2], "not valid JSON"),
    ("binary", bytes(range(256)), "unreadable or not valid JSON"),
    ("a_list", lambda m: [m], "is a JSON list, not an object"),
    ("no_source_hash", _without("source_hash"), "lacks or mistypes field(s) source_hash"),
    ("no_instances", _without("instances"), "lacks or mistypes field(s) instances"),
    ("instances_not_a_list", lambda m: {**m, "instances": "all"}, "mistypes field(s) instances"),
    ("one_instance_less", lambda m: {**m, "instances": m["instances"][1:]},
     "differs in instances): torn or partial install"),
    ("other_set", lambda m: {**m, "set": "default"}, "differs in set"),
]


@pytest.mark.parametrize("name, make, phrase", MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_bad_manifest_file_is_stale_with_the_file_named(manifest_copy: Path, name: str, make,
                                                        phrase: str, capsys) -> None:
    assert _loader.stale_reason() is None  # the copy itself matches
    if make is None:
        manifest_copy.unlink()
    elif isinstance(make, bytes):
        manifest_copy.write_bytes(make)
    else:
        made = make(_loader.manifest())
        manifest_copy.write_text(made if isinstance(made, str) else json.dumps(made))
    why = _loader.stale_reason()
    assert why and str(manifest_copy) in why and phrase in why, why
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert f"STALE: {manifest_copy}" in out


def _fake_module(text: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(__file__="/x/_C.so", manifest=lambda: text, instances=lambda: [])


EMBEDDED_CASES = [("{", "not valid JSON"), ("[]", "is a JSON list"),
                  ('{"set": "ci"}', "lacks or mistypes field(s) targets, instances")]


@pytest.mark.parametrize("text, phrase", EMBEDDED_CASES, ids=["corrupt", "a_list", "fields"])
def test_bad_compiled_in_manifest_is_not_built(monkeypatch, text: str, phrase: str) -> None:
    monkeypatch.setattr(_loader, "module", lambda: _fake_module(text))
    _loader.manifest.cache_clear()
    try:
        with pytest.raises(NotBuiltError, match=re.escape(phrase)) as ei:
            _loader.manifest()
        assert "/x/_C.so" in str(ei.value) and "rebuild" in str(ei.value)
    finally:
        _loader.manifest.cache_clear()


@pytest.fixture
def built_from(monkeypatch, tmp_path: Path) -> Callable[[dict], None]:
    """Make the loader believe the module was built with manifest m (both the compiled-in
    manifest and the file beside it)."""
    def use(m: dict) -> None:
        path = tmp_path / "_C.manifest.json"
        path.write_text(json.dumps(m))
        monkeypatch.setattr(_loader, "MANIFEST_FILE", path)
        monkeypatch.setattr(_loader, "manifest", lambda: m)
    return use


def test_changed_sources_are_named(built_from) -> None:
    m = json.loads(json.dumps(_loader.manifest()))
    spec = m["spec_files"][-1]
    m["source_files"][spec] = "0" * 64
    m["source_files"]["templates/cpu/gone.cpp.j2"] = "1" * 64
    m["source_hash"] = "2" * 64
    built_from(m)
    why = _loader.stale_reason()
    assert why and f"changed: {spec}, templates/cpu/gone.cpp.j2" in why
    assert f"python build.py --set {m['set']} --target {','.join(m['targets'])}" in why


def test_sources_without_digests_or_gone(built_from) -> None:
    m = json.loads(json.dumps(_loader.manifest()))
    built_from({**{k: v for k, v in m.items() if k != "source_files"}, "source_hash": "0" * 64})
    assert "changed: specs/templates/csrc/codegen" in (_loader.stale_reason() or "")
    built_from({**m, "spec_files": m["spec_files"] + ["instances/gone.yaml"]})
    assert f"are gone: {_loader.CHECKOUT / 'instances/gone.yaml'}" in (_loader.stale_reason() or "")


def test_set_file_is_part_of_the_source_hash() -> None:
    """Editing a set's only/exclude changes what is built, so it must make the module stale."""
    m = _loader.manifest()
    assert f"instances/sets/{m['set']}.yaml" in m["spec_files"]
    assert f"instances/sets/{m['set']}.yaml" in m["source_files"]


def test_case_counts(record_cases) -> None:
    """The malformed files this module feeds the runtime (docs/reliability.md)."""
    record_cases(len(CASES) + len(MANIFEST_CASES) + len(EMBEDDED_CASES))
    assert len({c[0] for c in CASES}) == len(CASES)
    assert len({c[0] for c in MANIFEST_CASES}) == len(MANIFEST_CASES)
