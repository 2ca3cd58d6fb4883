"""Dispatch: tuned table, heuristic, NoInstanceError, typed routing; registry and manifest."""
from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import mxforge
from mxforge import _loader, dispatch
from mxforge.dispatch import Key, Shape, select

from .helpers import A4W4_S1, TP8_S1, tuned_row, write_tuned

ROOT = Path(__file__).resolve().parents[1]


def test_table_rows_have_every_field():
    rows = mxforge.instances()
    assert rows and len(rows) == len(_loader.manifest()["instances"])
    for r in rows:
        assert set(r) >= {"name", "target", "op", "a", "b", "out", "block_m", "block_n", "block_k",
                          "split_k", "activation", "gate_up", "routed_weight", "bias", "layout",
                          "b_path", "skip_inter_quant"}
    assert {r["name"] for r in rows} == set(_loader.manifest()["instances"])


def test_manifest_matches_checkout():
    m = mxforge.manifest()
    assert m["set"] and "cpu" in m["targets"] and m["compilers"]["cpu"]
    assert len(m["source_hash"]) == 64
    assert _loader.stale_reason() is None
    beside = json.loads((ROOT / "mxforge" / "_C.manifest.json").read_text())
    assert beside == m


def test_heuristic_block_m_follows_rows_per_expert():
    small = select(A4W4_S1, TP8_S1)
    big = select(A4W4_S1, Shape(T=8192, N=384, K=3072, E=256, topk=8))
    bms = sorted({i.block_m for i in dispatch.candidates(A4W4_S1)})
    assert small.source == "heuristic" and small.instance.block_m == bms[0]
    assert big.instance.block_m == max(b for b in bms if b <= dispatch.BLOCK_M_CAP)
    assert "block_m" in small.explain() and small.instance.name in small.explain()


def _synthetic(op: str, bm: int, bn: int, bk: int, sk: int = 1) -> dispatch.Instance:
    return dispatch.Instance(0, f"sm90_{op}_m{bm}_n{bn}_k{bk}_sk{sk}", "sm90", op, "", "pk_fp4",
                             "pk_fp4", "bf16", bm, bn, bk, sk, "silu", "concat", "none", False, "plain",
                             "smem")


@pytest.mark.parametrize("T, want", [(1, (16, 64, 128)), (64, (16, 64, 128)),     # 2 rows/expert
                                     (512, (32, 128, 128)),                       # 16: 2x -> 32
                                     (1024, (64, 128, 128)),                      # 32: 2x -> 64
                                     (8192, (64, 128, 128))])                     # 256: cap 64
def test_heuristic_rule_re_derived_from_the_tuned_table(T, want):
    """The rule of dispatch.heuristic_rank on a synthetic instance set (independent of the
    compiled one): block_m >= 2 x rows per expert, capped at 64; block_n 64 at block_m 16,
    else the largest; block_k 128 (stage 2: no split-K)."""
    insts = [_synthetic("moe_stage2", bm, bn, bk) for bm in (16, 32, 64, 128) for bn in (32, 64, 128)
             for bk in (128, 256)]
    shape = Shape(T=T, N=3072, K=192, E=256, topk=8)
    best = min(insts, key=lambda i: dispatch.heuristic_rank(i, shape)[0])
    assert (best.block_m, best.block_n, best.block_k) == want


def test_tuned_table_hit_and_t_ranges(tuned_file):
    cands = dispatch.candidates(A4W4_S1)
    largest = max(cands, key=lambda i: i.block_m)
    smallest = min(cands, key=lambda i: i.block_m)
    write_tuned(tuned_file, [tuned_row(A4W4_S1, TP8_S1, 4, largest.name),
                             tuned_row(A4W4_S1, TP8_S1, 1 << 30, smallest.name)])
    d = select(A4W4_S1, TP8_S1)
    assert d.source == "tuned" and d.instance.name == largest.name
    d = select(A4W4_S1, Shape(T=100, N=384, K=3072, E=256, topk=8))
    assert d.source == "tuned" and d.instance.name == smallest.name
    # another shape has no row: heuristic
    assert select(A4W4_S1, Shape(T=1, N=768, K=3072, E=256, topk=8)).source == "heuristic"


def test_tuned_row_for_missing_instance_warns_and_falls_to_heuristic(tuned_file):
    write_tuned(tuned_file, [tuned_row(A4W4_S1, TP8_S1, 64, "cpu_not_an_instance")])
    with pytest.warns(RuntimeWarning, match="cpu_not_an_instance") as caught:
        d = select(A4W4_S1, TP8_S1)
    assert d.source == "heuristic"
    # (attributed to the caller's line, not to a line of mxforge)
    assert [w.filename for w in caught] == [__file__], [(w.filename, w.lineno) for w in caught]


def test_pairbits_weights_take_the_plain_rows_tile(tuned_file):
    # no pairbits rows: the plain row's instance with the layout swapped, where compiled;
    # a plain row whose twin is not compiled leaves the choice to the heuristic, silently
    pb = dataclasses.replace(A4W4_S1, layout="pairbits")
    twins = {i.name.replace("_pairbits", "_plain") for i in dispatch.candidates(pb)}
    plain = dispatch.candidates(A4W4_S1)
    with_twin = next(i for i in plain if i.name in twins)
    without = next(i for i in plain if i.name not in twins)
    write_tuned(tuned_file, [tuned_row(A4W4_S1, TP8_S1, 4, with_twin.name),
                             tuned_row(A4W4_S1, TP8_S1, 1 << 30, without.name)])
    d = select(pb, TP8_S1)
    assert d.source == "tuned" and d.instance.name == with_twin.name.replace("_plain", "_pairbits")
    assert d.instance.layout == "pairbits" and "the plain layout's row" in d.notes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select(pb, Shape(T=100, N=384, K=3072, E=256, topk=8)).source == "heuristic"
    # a pairbits row of its own is used instead of the plain rows
    write_tuned(tuned_file, [tuned_row(A4W4_S1, TP8_S1, 4, with_twin.name),
                             tuned_row(pb, TP8_S1, 4, d.instance.name)])
    d = select(pb, TP8_S1)
    assert d.source == "tuned" and "plain layout" not in d.notes[0]


def test_tuned_rows_for_other_block_m_are_skipped(tuned_file):
    # one key, two rows (e.g. stage 2 tuned for two pipelines at different block_m): the
    # caller's block_m decides which row applies, silently.
    cands = dispatch.candidates(A4W4_S1)
    bms = sorted({i.block_m for i in cands})
    a = next(i for i in cands if i.block_m == bms[0])
    b = next(i for i in cands if i.block_m == bms[-1])
    write_tuned(tuned_file, [tuned_row(A4W4_S1, TP8_S1, 64, a.name),
                             tuned_row(A4W4_S1, TP8_S1, 64, b.name)])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select(A4W4_S1, TP8_S1, block_m=bms[-1]).instance.name == b.name
        assert select(A4W4_S1, TP8_S1, block_m=bms[0]).instance.name == a.name
        d = select(A4W4_S1, TP8_S1, allowed_block_m=[bms[1]])
    assert d.source == "heuristic" and d.instance.block_m == bms[1]


@pytest.mark.parametrize("text", ["", "garbage\n1,2\n", "target,op\ncpu,moe_stage1\n",
                                  ",".join(dispatch.TUNED_COLUMNS) + "\n" + "x," * 15 + "notint\n"])
def test_malformed_tuned_table_is_ignored_with_warning(tuned_file, text):
    tuned_file.write_text(text)
    with pytest.warns(RuntimeWarning, match=str(tuned_file)) as caught:
        d = select(A4W4_S1, TP8_S1)
    assert d.source == "heuristic"
    assert {w.filename for w in caught} == {__file__}


def test_no_instance_error_names_key_and_nearest():
    key = Key("cpu", "moe_stage1", a="pk_fp4", b="pk_fp4", out="bf16", activation="gelu",
              gate_up="concat", routed_weight="none", bias=False, layout="plain")
    with pytest.raises(mxforge.NoInstanceError) as ei:
        select(key, TP8_S1)
    msg = str(ei.value)
    assert "activation=gelu" in msg and "a=pk_fp4" in msg
    assert "nearest compiled instances" in msg and "[activation=silu]" in msg


def test_fp4_activations_never_reach_other_pipelines():
    """For every compiled GEMM key, selection returns an instance with that exact a dtype,
    and asking for a4w4 where only other activation dtypes exist raises."""
    for inst in dispatch.table():
        if inst.op.startswith("moe_") and inst.op != "moe_sort":
            d = select(inst.key(), Shape(T=7, N=384, K=3072, E=256, topk=8))
            assert d.instance.a == inst.a and d.instance.b == inst.b
    gemm_keys = {i.key() for i in dispatch.table() if i.op == "moe_stage1"}
    no_fp4 = next(k for k in gemm_keys if k.a == "bf16" and
                  all(j.a != "pk_fp4" or j.key() != Key(**{**k.__dict__, "a": "pk_fp4"})
                      for j in dispatch.table()))
    with pytest.raises(mxforge.NoInstanceError):
        select(Key(**{**no_fp4.__dict__, "a": "pk_fp4"}), TP8_S1)


def test_named_instance_must_match_key():
    bf16 = next(i for i in dispatch.table() if i.op == "moe_stage1" and i.a == "bf16")
    with pytest.raises(mxforge.NoInstanceError, match="does not serve this request"):
        select(A4W4_S1, TP8_S1, instance=bf16.name)


def test_raw_uint8_activation_is_rejected():
    with pytest.raises(mxforge.InputError, match="raw uint8 is ambiguous"):
        mxforge.ops.dtype_of(torch.zeros(2, 16, dtype=torch.uint8))


def test_split_k_never_with_fp4_activations():
    assert not [i for i in dispatch.table() if i.a == "pk_fp4" and i.split_k > 1]
    # stage 2 splits 16-bit activations only (fp8 neither)
    assert not [i for i in dispatch.table()
                if i.op == "moe_stage2" and i.split_k > 1 and i.a not in ("bf16", "fp16")]


def test_explain_cli():
    out = subprocess.run([sys.executable, "-m", "mxforge", "explain", "--op", "moe_stage1",
                          "--a", "pk_fp4", "--b", "pk_fp4", "--out", "bf16", "--model",
                          "minimax-m2.1-tp8", "--T", "1", "4096"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("chosen:") == 2 and "by heuristic" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "mxforge", "explain", "--op", "moe_stage1",
                          "--a", "pk_fp4", "--b", "pk_fp4", "--out", "bf16", "--activation",
                          "gelu", "--model", "minimax-m2.1-tp8", "--T", "1"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no compiled instance" in bad.stderr


def test_coverage_per_layout():
    """`mxforge coverage --layout`: the ci set has the MiniMax a4w4/a16w4 GEMMs in pairbits
    (block_m 32) and no gpt-oss ones: covered and NONE, naming the missing key."""
    from mxforge.cli import coverage_rows
    rows = {(m, p): w for m, p, w in coverage_rows("cpu", layout="pairbits")}
    assert rows[("minimax-m2.1-tp8", "a4w4 -> bf16 inter")].startswith("T = 1..8192 (two-stage, block_m [32])")
    assert rows[("gpt-oss-120b", "a16w4")].startswith("NONE") and "layout=pairbits" in rows[("gpt-oss-120b", "a16w4")]
    plain = {(m, p): w for m, p, w in coverage_rows("cpu")}
    assert plain[("gpt-oss-120b", "a16w4")].startswith("T = 1..8192")


def test_noop_rebuild_is_fast_and_touches_nothing():
    """A no-op rebuild writes no source, compiles nothing and leaves the module alone (the
    checks that matter); its wall time, interpreter start and imports included, is bounded
    loosely (about 2 s on CI's two cores, where a 2 s bound failed at 2.17 s under load), so
    only a no-op gone pathologically slow fails it."""
    m = mxforge.manifest()
    module = Path(_loader.module().__file__)
    before = module.stat().st_mtime_ns
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "build.py", "--set", m["set"], "--target",
                          ",".join(m["targets"])], capture_output=True, text=True, cwd=ROOT)
    dt = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert " 0 sources written" in out.stdout and "up to date" in out.stdout
    assert module.stat().st_mtime_ns == before
    assert dt < 15.0, f"no-op rebuild took {dt:.2f} s"


def test_bad_spec_fails_build_with_location(tmp_path):
    out = subprocess.run([sys.executable, "build.py", "--set", "no_such_set"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "no instance set 'no_such_set'" in out.stderr
    out = subprocess.run([sys.executable, "build.py", "--set", "ci", "--target", "tpu"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "unknown target 'tpu'" in out.stderr


def test_bad_spec_file_prints_located_error(tmp_path):
    (tmp_path / "sets").mkdir()
    (tmp_path / "bad.yaml").write_text("groups:\n  - id: g\n    op: moe_sort\n    targets: [cpu, xpu]\n")
    (tmp_path / "sets" / "s.yaml").write_text("specs: [bad.yaml]\n")
    out = subprocess.run([sys.executable, "build.py", "--specs", str(tmp_path), "--set", "s",
                          "--list"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert f"{tmp_path / 'bad.yaml'}:4:" in out.stderr
    assert "field 'targets'" in out.stderr and "'xpu'" in out.stderr and "allowed: cpu" in out.stderr


@pytest.mark.parametrize("layout", ["plain", "pairbits"])
def test_tune_table_is_what_dispatch_reads(tuned_file, layout):
    """mxforge.tune.write_table's rows are found by select(): the tuner and dispatch agree
    on the format and the keys, per weight layout (the GPU run itself is scripts/gpu-bench)."""
    from mxforge.models import preset
    from mxforge.tune import Choice, _keys, write_table
    shape = preset("minimax-m2.1-tp8")
    k1, k2 = _keys("cpu", shape, "pk_fp4", "bf16", layout)
    assert k1.layout == k2.layout == layout
    s1 = [i for i in dispatch.candidates(k1)]
    bm = max({i.block_m for i in s1} & {i.block_m for i in dispatch.candidates(k2)})
    i1 = next(i for i in s1 if i.block_m == bm)
    i2 = next(i for i in dispatch.candidates(k2) if i.block_m == bm)
    write_table(tuned_file, [Choice(shape.name, "a4w4-bf16inter", 4, bm, i1.name, i2.name, 1.0, 1.0,
                              2.0, 0.0, layout)], {shape.name: shape}, "cpu")
    d1 = select(k1, Shape(T=3, N=2 * shape.I, K=shape.H, E=shape.E, topk=shape.topk))
    d2 = select(k2, Shape(T=3, N=shape.H, K=shape.I, E=shape.E, topk=shape.topk), block_m=bm)
    assert (d1.source, d1.instance.name) == ("tuned", i1.name)
    assert (d2.source, d2.instance.name) == ("tuned", i2.name)
    assert select(k1, Shape(T=5, N=2 * shape.I, K=shape.H, E=shape.E, topk=shape.topk)).source \
        == "heuristic"  # past T_max = 4


@pytest.mark.parametrize("tuned_layer, dispatch_layer, kept", [(90.0, 100.0, False), (99.5, 100.0, True),
                                                         (103.0, 100.0, True)])
def test_tune_keeps_dispatchs_pair_unless_the_layer_is_faster(monkeypatch, tuned_layer, dispatch_layer, kept):
    """mxforge tune's layer check (tune._layer_check): the pair the stage sums chose replaces
    the one dispatch takes only where its whole-layer time is faster by more than
    LAYER_MARGIN; otherwise dispatch's pair (verified against the reference) is the choice.
    The timings are scripted; select, the keys and the candidates are the real ones."""
    from types import SimpleNamespace

    from mxforge import ops
    from mxforge import tune as tn
    from mxforge.models import preset
    shape = preset("minimax-m2.1-tp8")
    T = 4
    k1, k2 = tn._keys("cpu", shape, "pk_fp4", "bf16")
    s1 = Shape(T=T, N=2 * shape.I, K=shape.H, E=shape.E, topk=shape.topk)
    s2 = Shape(T=T, N=shape.H, K=shape.I, E=shape.E, topk=shape.topk)
    bm = ops._common_block_m([k1, k2], s1)
    n1, n2 = select(k1, s1, block_m=bm).instance.name, select(k2, s2, block_m=bm).instance.name
    both = {i.block_m for i in dispatch.candidates(k2)}
    o1 = next(i for i in dispatch.candidates(k1) if i.name != n1 and i.block_m in both)
    o2 = next(i.name for i in dispatch.candidates(k2) if i.block_m == o1.block_m)
    layer = {(o1.block_m, o1.name, o2): tuned_layer, (bm, n1, n2): dispatch_layer}
    verified = []
    monkeypatch.setattr(tn, "_prepare", lambda *a: (None, None))
    monkeypatch.setattr(tn, "_time_graph", lambda fn, rot: 10.0)
    monkeypatch.setattr(ops, "moe_stage1", lambda *a, **k: None)
    monkeypatch.setattr(tn, "_layer_us", lambda L, xs, r, b, i1, i2, *a: layer[(b, i1, i2)])
    monkeypatch.setattr(tn, "_verify", lambda L, prep, i1, i2, *a: verified.append((i1, i2)) or 0.002)
    best = tn.Choice(shape.name, "a4w4-bf16inter", T, o1.block_m, o1.name, o2, 3.0, 4.0, 0.0, 0.001)
    L = SimpleNamespace(shape=shape, w1=None, w2=None)
    tn._layer_check(best, L, [torch.zeros(T, 1)], [None], None, k1, k2, "pk_fp4", "bf16", 1)
    assert (best.tuned_layer_us, best.dispatch_layer_us, best.dispatch_us) == (tuned_layer, dispatch_layer, 20.0)
    assert (best.dispatch_stage1, best.dispatch_stage2) == (n1, n2)
    assert best.kept_dispatch == kept
    want = (bm, n1, n2, 10.0, 10.0, 0.002) if kept else (o1.block_m, o1.name, o2, 3.0, 4.0, 0.001)
    assert (best.block_m, best.stage1, best.stage2, best.stage1_us, best.stage2_us, best.err) == want
    assert verified == ([(n1, n2)] if kept else [])
    # the stage sums chose dispatch's own pair: no layer timings, nothing to decide
    same = tn.Choice(shape.name, "a4w4-bf16inter", T, bm, n1, n2, 3.0, 4.0, 0.0, 0.0)
    tn._layer_check(same, L, [torch.zeros(T, 1)], [None], None, k1, k2, "pk_fp4", "bf16", 1)
    assert same.same_as_dispatch and not same.kept_dispatch and not best.same_as_dispatch


def test_tune_names_the_list_tokens_its_rows_serve_untimed():
    """A row serves every T above the next smaller row's T_max: mxforge tune says which T of
    the default list a sparser --T list leaves to rows timed elsewhere (MiniMax TP=4's T = 4
    rows at T = 2: 1.20x the heuristic's layer, benchmarks/README.md, session 39)."""
    from mxforge.tune import DEFAULT_TOKENS, untimed_list_tokens
    assert untimed_list_tokens(DEFAULT_TOKENS) == {}
    assert untimed_list_tokens((16, 1, 4)) == {4: [2], 16: [8]}
    assert untimed_list_tokens((4,)) == {4: [1, 2]}
    assert untimed_list_tokens((1, 3, 64)) == {3: [2], 64: [4, 8, 16, 32]}
    assert untimed_list_tokens((8192, 1024)) == {1024: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
                                                 8192: [2048, 4096]}


def test_one_stage_rows_steer_fused_moe_auto(tuned_file, monkeypatch, rng):
    """mxforge tune times the one-stage kernel's layer against the two stages' and writes a
    moe_1stage row: the instance where it won, dispatch.TWO_STAGE where it lost. fused_moe's
    path auto follows the row for T up to its T_max (ops.layer_path), and with no row (or a
    TWO_STAGE one, or an explicit path) runs two stages; a TWO_STAGE row is no instance for
    select()."""
    from mxforge import ops
    from mxforge.models import preset
    from mxforge.tune import Choice, _keys, _one_stage_key, write_table

    from .helpers import make_layer
    shape = dataclasses.replace(preset("minimax-m2.1-tp8"), E=16)
    k1, k2 = _keys("cpu", shape, "pk_fp4", "bf16")
    k_one = _one_stage_key("cpu", shape, "pk_fp4")
    one = next(i for i in dispatch.candidates(k_one) if i.block_m == 16)
    i1 = next(i for i in dispatch.candidates(k1) if i.block_m == 16)
    i2 = next(i for i in dispatch.candidates(k2) if i.block_m == 16)

    def choice(T: int, one_us: float) -> Choice:
        return Choice(shape.name, "a4w4-bf16inter", T, 16, i1.name, i2.name, 1.0, 1.0, 2.0, 0.0,
                      two_stage_us=3.0, one_stage=one.name, one_stage_us=one_us)
    write_table(tuned_file, [choice(2, 2.5), choice(8, 3.5)], {shape.name: shape}, "cpu")
    rows = list(csv.DictReader(tuned_file.open()))
    assert [(r["op"], r["T_max"], r["instance"]) for r in rows if r["op"] == "moe_1stage"] == \
        [("moe_1stage", "2", one.name), ("moe_1stage", "8", dispatch.TWO_STAGE)]
    s1 = Shape(T=1, N=2 * shape.I, K=shape.H, E=shape.E, topk=shape.topk)
    assert dispatch.one_stage_choice(k_one, s1)
    assert not dispatch.one_stage_choice(k_one, dataclasses.replace(s1, T=5))  # the TWO_STAGE row
    assert not dispatch.one_stage_choice(k_one, dataclasses.replace(s1, T=9))  # past every row
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (a TWO_STAGE row is not a missing instance)
        assert select(k_one, dataclasses.replace(s1, T=5)).source == "heuristic"
    assert select(k_one, s1).instance.name == one.name
    # a row naming an instance this module does not have: warned about, two stages
    next(r for r in rows if r["op"] == "moe_1stage")["instance"] = "cpu_moe_1stage_not_compiled"
    write_tuned(tuned_file, rows)
    dispatch.clear_caches()
    with pytest.warns(RuntimeWarning, match="cpu_moe_1stage_not_compiled"):
        assert not dispatch.one_stage_choice(k_one, s1)
    write_table(tuned_file, [choice(2, 2.5), choice(8, 3.5)], {shape.name: shape}, "cpu")
    dispatch.clear_caches()

    L = make_layer(shape, 2, rng, torch.device("cpu"))
    ran = []
    real = ops.one_stage_layer
    monkeypatch.setattr(ops, "one_stage_layer", lambda *a, **k: ran.append(1) or real(*a, **k))
    want = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, path="two_stage")
    got = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids)  # auto, T = 2
    assert ran == [1] and float((got.double() - want.double()).norm() / want.double().norm()) < 1e-2
    mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, path="two_stage")
    mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids, stage2_input="pk_fp4")
    assert ran == [1]


def test_quant_sort_rows_steer_fused_moe(tuned_file, monkeypatch, rng):
    """mxforge tune times quant+sort fused against the split pair (quantize, then moe_sort)
    and writes a fused_quant_sort row (K = H, N = 0): the fused instance where it won,
    dispatch.SPLIT where the pair did. fused_moe follows the row for T up to its T_max (the
    same bytes either way, so the same output); with no row, or past it, the fused launch.
    A SPLIT row is no instance for select(), and merge_tuned keeps the row as it is."""
    from mxforge import ops
    from mxforge.models import preset
    from mxforge.tune import Choice, _keys, write_table

    from .helpers import make_layer
    shape = dataclasses.replace(preset("minimax-m2.1-tp8"), E=16)
    k1, k2 = _keys("cpu", shape, "pk_fp4", "bf16")
    kq = ops.quant_sort_key("cpu", "bf16", "pk_fp4")
    fused = dispatch.candidates(kq)[0]
    i1 = next(i for i in dispatch.candidates(k1) if i.block_m == 16)
    i2 = next(i for i in dispatch.candidates(k2) if i.block_m == 16)

    def choice(T: int, qs: str) -> Choice:
        return Choice(shape.name, "a4w4-bf16inter", T, 16, i1.name, i2.name, 1.0, 1.0, 2.0, 0.0,
                      quant_sort=qs, fused_quant_sort_us=3.0, split_quant_sort_us=2.0)
    write_table(tuned_file, [choice(2, dispatch.SPLIT), choice(8, fused.name)], {shape.name: shape}, "cpu")
    rows = [r for r in csv.DictReader(tuned_file.open()) if r["op"] == "fused_quant_sort"]
    assert [(r["a"], r["out"], r["N"], r["K"], r["T_max"], r["instance"]) for r in rows] == \
        [("bf16", "pk_fp4", "0", str(shape.H), "2", dispatch.SPLIT),
         ("bf16", "pk_fp4", "0", str(shape.H), "8", fused.name)]
    q = Shape(T=1, K=shape.H, E=shape.E, topk=shape.topk)
    assert dispatch.quant_sort_split(kq, q)
    assert not dispatch.quant_sort_split(kq, dataclasses.replace(q, T=5))  # the fused row
    assert not dispatch.quant_sort_split(kq, dataclasses.replace(q, T=9))  # past every row
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (a SPLIT row is not a missing instance)
        assert select(kq, q).instance.name == fused.name

    L = make_layer(shape, 2, rng, torch.device("cpu"))
    split_calls = []
    real = ops.quantize
    monkeypatch.setattr(ops, "quantize", lambda *a, **k: split_calls.append(1) or real(*a, **k))
    got = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids)  # T = 2: the SPLIT row
    assert split_calls == [1]
    write_table(tuned_file, [choice(2, fused.name)], {shape.name: shape}, "cpu")
    dispatch.clear_caches()
    want = mxforge.fused_moe(L.x, L.w1, L.w2, L.topk_weights, L.topk_ids)
    assert split_calls == [1] and torch.equal(got, want)

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from merge_tuned import as_layout
    finally:
        sys.path.pop(0)
    assert as_layout(rows[0], "pairbits") == rows[0]


def test_bench_torch_baseline_per_expert_matches_grouped():
    """mxforge bench's torch baseline is the faster of _grouped_mm and one matmul per touched
    expert (its row ranges from expert_ranges, worked out on the host): both compute the same
    layer (bias or not, experts without routes skipped)."""
    from types import SimpleNamespace

    from mxforge.bench import Layer, expert_ranges, torch_moe
    from mxforge.models import MoeShape
    g = torch.Generator().manual_seed(3)
    ids = torch.tensor([[0, 3], [3, 2], [0, 3], [2, 0], [3, 0]], dtype=torch.int32)  # expert 1: none
    assert expert_ranges(ids, 5) == [(0, 0, 4), (2, 4, 6), (3, 6, 10)]
    w = torch.rand(5, 2, generator=g) + 0.1
    for bias in (False, True):
        shape = MoeShape("t", 16, 8, 5, 2, "silu", "concat", bias)
        rnd = lambda *s: (torch.randn(*s, generator=g) * 0.5).to(torch.bfloat16)  # noqa: E731
        b1, b2 = (rnd(5, 16).float(), rnd(5, 16).float()) if bias else (None, None)
        L = Layer(shape, SimpleNamespace(bias=b1), SimpleNamespace(bias=b2), rnd(5, 16, 16), rnd(5, 8, 16))
        x = rnd(5, 16)
        grouped = torch_moe(L, x, ids, w).double()
        per_expert = torch_moe(L, x, ids, w, expert_ranges(ids, 5)).double()
        assert float((per_expert - grouped).norm() / grouped.norm()) < 1e-2, bias


def _bench_rows_both_paths() -> list:
    from mxforge.bench import Row
    return [Row("m", "a16w4", T, 10.0 * T, 1.0, 0.1, 1.0, 10.0, 1.0, 1.0, 50.0, 5.0, 0.01, "dev",
                "pairbits", "atomic", path) for T in (1, 8) for path in ("two_stage", "one_stage")]


def test_bench_rows_name_their_path_in_the_table_and_csv(tmp_path):
    """mxforge bench's rows of both paths (--path two_stage one_stage): the path column in
    the printed row and the CSV."""
    from mxforge.bench import Ceilings, format_row, write_csv
    rows = _bench_rows_both_paths()
    assert "one_stage" in format_row(rows[1]).split()
    write_csv(tmp_path / "b.csv", Ceilings(1000.0, 500.0), rows)
    got = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert [(r["T"], r["path"]) for r in got] == [("1", "two_stage"), ("1", "one_stage"),
                                                 ("8", "two_stage"), ("8", "one_stage")]


def test_bench_plot_lands_where_asked(tmp_path):
    """The plot of rows of both paths is written at the path asked for and nowhere else (its
    loop once reused the output path's name and saved to a file called one_stage).
    matplotlib: requirements-dev.txt, the `bench` extra."""
    pytest.importorskip("matplotlib")
    from mxforge.bench import plot
    plot(tmp_path / "b.png", _bench_rows_both_paths())
    assert [p.name for p in tmp_path.iterdir()] == ["b.png"] and (tmp_path / "b.png").stat().st_size > 0


def test_bench_and_tune_need_a_gpu():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from mxforge.bench import bench
    from mxforge.tune import tune
    with pytest.raises(mxforge.MxforgeError, match="CUDA GPU"):
        bench("minimax-m2.1-tp8")
    with pytest.raises(mxforge.MxforgeError, match="CUDA GPU"):
        tune("minimax-m2.1-tp8")


def test_heuristic_agreement_script_reads_the_shipped_table():
    """scripts/heuristic_agreement.py (the README's measure of the heuristic against a tuned
    table) runs without a GPU and counts every GEMM row of the table it reads (not the rows
    that choose a path: moe_1stage, fused_quant_sort; until session 39 those were in its
    denominators)."""
    table = ROOT / "mxforge" / "tuned" / "sm90-h100.csv"
    with open(table, newline="") as fh:
        ops_ = [r["op"] for r in csv.DictReader(fh)]
    gemms = sum(op in ("moe_stage1", "moe_stage2") for op in ops_)
    stage1 = ops_.count("moe_stage1")
    assert 0 < gemms < len(ops_)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "heuristic_agreement.py"), str(table)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"/{stage1} rows;" in out.stdout and "at the tuned block_m in " in out.stdout, out.stdout
    assert f"/{gemms} GEMM rows; b_path there in " in out.stdout and out.stdout.rstrip().endswith(f"/{gemms}"), \
        out.stdout


def test_heuristic_prefers_the_shared_memory_path():
    """Two instances that differ only in b_path serve the same calls; without a tuned row
    the heuristic takes smem (regs wins or loses by shape and T: only the tuner picks it)."""
    # (the regs instance's name sorts first, so the last tie-breaker, the name, cannot be
    # what puts smem first)
    base = dict(index=0, name="sm90_b_smem", target="sm90", op="moe_stage1", args_type="MoeGemmArgs",
                a="pk_fp4", b="pk_fp4", out="bf16", block_m=16, block_n=64, block_k=128, split_k=1,
                activation="silu", gate_up="concat", routed_weight="none", bias=False, layout="plain")
    smem = dispatch.Instance(**base, b_path="smem")
    regs = dispatch.Instance(**{**base, "index": 1, "name": "sm90_a_regs"}, b_path="regs")
    assert smem.key() == regs.key()
    shape = Shape(T=1, N=384, K=3072, E=256, topk=8)
    ranked = sorted([regs, smem], key=lambda i: dispatch.heuristic_rank(i, shape)[0])
    assert [i.b_path for i in ranked] == ["smem", "regs"]


def make_tile_candidates(a: str) -> list[dispatch.Instance]:
    """regs, smem and swap stage-1 tiles of one sm90 key: block_m 16/32/64 x block_n 64/128."""
    base = dict(target="sm90", op="moe_stage1", args_type="MoeGemmArgs", a=a, b="pk_fp4",
                out="bf16", block_k=128, split_k=1, activation="silu", gate_up="concat",
                routed_weight="none", bias=False, layout="plain")
    return [dispatch.Instance(index=i, name=f"sm90_{path}_m{bm}_n{bn}", b_path=path, block_m=bm,
                              block_n=bn, **base)
            for i, (path, bm, bn) in enumerate([(p, bm, bn) for p in ("regs", "smem", "swap")
                                                for bm in (16, 32, 64) for bn in (64, 128)])]


def test_heuristic_takes_swapped_tiles_up_to_32_rows_per_expert():
    """sm90 up to SWAP_MAX_ROWS (32) rows per active expert: the swapped tile (b_path swap)
    before smem, regs and wgmma tiles of the same key, with block_m >= the rows (16 up to 16
    rows, then 32: SWAP_ROWS_FACTOR 1) and its largest block_n (the tuned choices at T = 128
    ... 1024 on both tuned models, H200); from more rows per expert, or where 16-bit
    activations make it prefill (WGMMA_MIN_ROWS_A16, 32 rows), after smem, whose block_m
    follows the rows (2x, as before)."""
    cands = make_tile_candidates("bf16")

    def best(T: int, among: list[dispatch.Instance] = cands) -> dispatch.Instance:
        shape = Shape(T=T, N=384, K=3072, E=256, topk=8)
        return min(among, key=lambda i: dispatch.heuristic_rank(i, shape)[0])

    # 8 routes per token over 256 experts: 1 row per expert at T = 1, 2 at 64, 16 at 512, 32 at 1024
    for T in (64, 128, 512):
        assert (best(T).b_path, best(T).block_m, best(T).block_n) == ("swap", 16, 128), T
    # (at T = 1, 24 tiles of block_n 128 want 8 K parts, 48 of 64 want 4: none compiled here,
    # so the one that misses by less)
    def why1(i: dispatch.Instance) -> str:
        return dispatch.heuristic_rank(i, Shape(T=1, N=384, K=3072, E=256, topk=8))[1]
    swap128 = next(c for c in cands if c.b_path == "swap" and c.block_m == 16 and c.block_n == 128)
    assert "wanted 4 K parts" in why1(best(1)) and "wanted 8 K parts" in why1(swap128)
    assert (best(1).b_path, best(1).block_m, best(1).block_n) == ("swap", 16, 64)
    assert (best(1024).b_path, best(1024).block_m) == ("smem", 64)
    why = dispatch.heuristic_rank(best(1), Shape(T=1, N=384, K=3072, E=256, topk=8))[1]
    assert "swapped tile (few rows: 1.0 rows/expert, up to 32)" in why
    # without swapped tiles, 16 rows per expert keep the smem tile of block_m 2 x 16
    pick = best(512, [c for c in cands if c.b_path != "swap"])
    assert (pick.b_path, pick.block_m) == ("smem", 32)
    # MX activations: 32 rows per expert (T = 1024) are not prefill, so the swapped tile with
    # block_m 32; 64 rows (T = 2048) are, and smem's block_m 64 comes first (no wgmma here)
    mx = make_tile_candidates("pk_fp4")
    assert (best(512, mx).b_path, best(512, mx).block_m) == ("swap", 16)
    assert (best(1024, mx).b_path, best(1024, mx).block_m, best(1024, mx).block_n) == ("swap", 32, 128)
    assert (best(2048, mx).b_path, best(2048, mx).block_m) == ("smem", 64)


def test_heuristic_narrows_swapped_stage1_tiles_that_leave_a_wave_half_empty(monkeypatch):
    """The swapped stage-1 tile with MX activations at up to one row per active expert, on a
    grid of at least one wave (264 CTA slots on sm90): block_n halves where the half's waves
    x columns (dispatch.wave_columns) are below SWAP_STAGE1_WAVE_GAIN (0.95) of the tile's,
    else the largest as elsewhere. The cases are session 41's layer A/B (H200): 64 won at
    MiniMax TP=1 T = 2 (0.92x / 0.98x the layer with 128), TP=4 T = 8 (0.96x / 0.99x) and
    gpt-oss-20b T = 8 (0.90x / 0.92x), where this rule takes it, and lost or tied where it
    keeps 128; with bf16 activations 64 lost in 8 of 9 rows (1.04-1.10x; 0.98x at
    gpt-oss-20b T = 8)."""
    cands = [c for c in make_tile_candidates("pk_fp4") if c.b_path == "swap" and c.block_m == 16]
    cands.append(dataclasses.replace(cands[0], index=99, name="sm90_swap_m16_n32", block_n=32))
    a16 = [dataclasses.replace(c, a="bf16") for c in cands]
    stage2 = [dataclasses.replace(c, op="moe_stage2") for c in cands]
    tp1 = dict(N=3072, K=3072, E=256, topk=8)
    tp4 = dict(N=768, K=3072, E=256, topk=8)
    oss20b = dict(N=5760, K=2880, E=32, topk=4)

    def block_n(T: int, dims: dict, among: list[dispatch.Instance] = cands) -> int:
        shape = Shape(T=T, **dims)
        return min(among, key=lambda i: dispatch.heuristic_rank(i, shape)[0]).block_n

    # TP=1, T = 2: 16 experts x 24 tiles of 128 = 384 on 264 slots, 2 waves x 128 columns;
    # of 64, 768 tiles in 3 waves x 64 = 192 (0.75x); of 32, 1536 in 6 x 32 = 192 (no gain)
    assert dispatch.wave_columns(16, 3072, 128, 264) == 256
    assert dispatch.wave_columns(16, 3072, 64, 264) == dispatch.wave_columns(16, 3072, 32, 264) == 192
    assert [block_n(T, tp1) for T in (1, 2, 4, 8, 16, 32, 64)] == [128, 64, 128, 128, 128, 128, 128]
    assert [block_n(T, tp4) for T in (8, 16, 32)] == [64, 128, 128]
    assert [block_n(T, oss20b) for T in (4, 8, 16)] == [128, 64, 128]  # (T = 16: 2 rows per expert)
    n128 = next(c for c in cands if c.block_n == 128)
    assert "block_n 128 after 64" in dispatch.heuristic_rank(n128, Shape(T=2, **tp1))[1]
    assert "after" not in dispatch.heuristic_rank(n128, Shape(T=4, **tp1))[1]
    assert [block_n(T, tp1, a16) for T in (2, 4)] == [128, 128]
    assert block_n(2, tp1, stage2) == 128
    monkeypatch.setattr(dispatch, "SWAP_STAGE1_WAVE_GAIN", 0)
    assert [block_n(T, dims) for T, dims in ((2, tp1), (8, tp4), (8, oss20b))] == [128, 128, 128]


def test_heuristic_sizes_clusters_to_one_wave_of_swapped_tiles():
    """The swapped tiles want K parts (split_k x cluster_k) doubled while the grid stays
    within SWAP_CTAS_PER_SM CTAs per SM, clusters before splits: MiniMax TP=8 stage 1 (48
    tiles of block_n 64 at T = 1) takes cluster_k 4, at T = 2 (96 tiles) 2, from T = 4 none
    (the tuned choices, H200)."""
    base = dict(target="sm90", op="moe_stage1", args_type="MoeGemmArgs", a="bf16", b="pk_fp4",
                out="bf16", block_m=16, block_n=64, block_k=128, activation="silu",
                gate_up="concat", routed_weight="none", bias=False, layout="plain", b_path="swap")
    cands = [dispatch.Instance(index=i, name=f"sm90_sk{sk}_ck{ck}", split_k=sk, cluster_k=ck, **base)
             for i, (sk, ck) in enumerate([(1, 1), (2, 1), (4, 1), (1, 2), (1, 4)])]

    def best(T: int) -> dispatch.Instance:
        shape = Shape(T=T, N=384, K=3072, E=256, topk=8)
        return min(cands, key=lambda i: dispatch.heuristic_rank(i, shape)[0])

    assert (best(1).split_k, best(1).cluster_k) == (1, 4)
    assert (best(2).split_k, best(2).cluster_k) == (1, 2)
    assert (best(4).split_k, best(4).cluster_k) == (1, 1) and best(64).cluster_k == 1
    # without clusters compiled, the same K parts by split_k
    no_clusters = [c for c in cands if c.cluster_k == 1]
    shape1 = Shape(T=1, N=384, K=3072, E=256, topk=8)
    assert min(no_clusters, key=lambda i: dispatch.heuristic_rank(i, shape1)[0]).split_k == 4
    assert "cluster_k 4 (wanted 4 K parts)" in dispatch.heuristic_rank(best(1), shape1)[1]


def test_heuristic_sizes_stage2_n_tiles_to_the_grid():
    """Stage 2's N loop (n_tiles): the most N tiles per CTA that keep N_TILES_MIN_WAVES waves
    of swapped CTAs (one where K is at most two k-tiles): MiniMax TP=8 (K = 192) takes 6 at
    T = 64 and 512 with block_m 16 and 12 with block_m 32, one tile at decode; gpt-oss-120b
    (K = 2880) 3 at T = 256 and 6 at 1024 (the tuner's choices or within 5 % of them, H200,
    session 18). Instances without an N loop want one, and so do those whose K does not fit
    the activations' shared memory (block_m 32 at K = 2880: one staged tile per CTA)."""
    base = dict(target="sm90", op="moe_stage2", args_type="MoeGemmArgs", a="bf16", b="pk_fp4",
                out="bf16", block_k=128, split_k=1, activation="", gate_up="", routed_weight="stage2",
                bias=False, layout="plain", b_path="swap")

    def best(T: int, bm: int, N: int, K: int, E: int, topk: int) -> int:
        cands = [dispatch.Instance(index=i, name=f"sm90_nt{nt}", block_m=bm, block_n=256 if bm == 16 else 128,
                                   n_tiles=nt, **base) for i, nt in enumerate((1, 3, 6, 12))]
        shape = Shape(T=T, N=N, K=K, E=E, topk=topk)
        return min(cands, key=lambda i: dispatch.heuristic_rank(i, shape)[0]).n_tiles

    assert [best(T, 16, 3072, 192, 256, 8) for T in (1, 8, 64, 512)] == [1, 1, 6, 6]
    assert best(512, 32, 3072, 192, 256, 8) == 12 and best(1024, 32, 3072, 192, 256, 8) == 12
    assert best(256, 16, 2880, 2880, 128, 4) == 3 and best(1024, 16, 2880, 2880, 128, 4) == 6
    assert best(1024, 32, 2880, 2880, 128, 4) == 1
    smem = dispatch.Instance(index=0, name="sm90_smem", block_m=16, block_n=256, **{**base, "b_path": "smem"})
    assert dispatch.wanted_n_tiles(smem, Shape(T=512, N=3072, K=192, E=256, topk=8)) == 1
    shape = Shape(T=512, N=3072, K=192, E=256, topk=8)
    inst = dispatch.Instance(index=0, name="sm90_nt6", block_m=16, block_n=256, n_tiles=6, **base)
    assert "n_tiles 6 (wanted up to 11)" in dispatch.heuristic_rank(inst, shape)[1]


def test_heuristic_sizes_the_ring_tiles_n_loop():
    """The ring tile's stage-2 N loop (b_path wgmma with n_tiles; moe.cuh, stage2_wgmma_tiles)
    runs where the activations of the whole K fit its resident tiles: K <= 192 at block_m
    128, <= 448 at 64 (gemm.cuh, WgmmaTile::kResKTiles with block_k 64). There the same
    1.5-wave rule at two CTAs per SM gives MiniMax TP=8 (K = 192) 8 at T = 2048 (the tuned
    rows' n_tiles, H200, session 25); past that K one tile per CTA."""
    base = dict(target="sm90", op="moe_stage2", args_type="MoeGemmArgs", a="pk_fp4", b="pk_fp4",
                out="bf16", block_n=128, block_k=64, split_k=1, activation="", gate_up="",
                routed_weight="stage2", bias=False, layout="plain", b_path="wgmma")

    def inst(bm: int, nt: int) -> dispatch.Instance:
        return dispatch.Instance(index=0, name=f"sm90_m{bm}_nt{nt}", block_m=bm, n_tiles=nt, **base)

    assert dispatch.wgmma_n_loop_runs(inst(128, 8), 192) and not dispatch.wgmma_n_loop_runs(inst(128, 8), 193)
    assert dispatch.wgmma_n_loop_runs(inst(64, 4), 448) and not dispatch.wgmma_n_loop_runs(inst(64, 4), 449)
    assert not dispatch.wgmma_n_loop_runs(inst(128, 1), 192)  # (no loop: one tile)
    shape = Shape(T=2048, N=3072, K=192, E=256, topk=8)
    cands = [inst(128, nt) for nt in (1, 4, 8)]
    assert min(cands, key=lambda i: dispatch.heuristic_rank(i, shape)[0]).n_tiles == 8
    long_k = Shape(T=2048, N=3072, K=384, E=256, topk=8)
    assert dispatch.wanted_n_tiles(inst(128, 8), long_k) == 1
    assert min(cands, key=lambda i: dispatch.heuristic_rank(i, long_k)[0]).n_tiles == 1
    assert dispatch.wanted_n_tiles(inst(64, 8), long_k) > 1


def minimax_stage1_candidates(tiles: list[tuple[int, int, str]]) -> list[dispatch.Instance]:
    """sm90 MiniMax-shaped stage-1 instances (bf16 x pk_fp4, silu), one per (block_m,
    block_k, b_path), block_n 128."""
    base = dict(target="sm90", op="moe_stage1", args_type="MoeGemmArgs", a="bf16", b="pk_fp4",
                out="bf16", split_k=1, activation="silu", gate_up="concat", routed_weight="none",
                bias=False, layout="plain")
    return [dispatch.Instance(index=i, name=f"sm90_{path}_m{bm}_k{bk}", block_m=bm, block_n=128,
                              block_k=bk, b_path=path, **base) for i, (bm, bk, path) in enumerate(tiles)]


def heuristic_best(cands: list[dispatch.Instance], T: int, a: str) -> dispatch.Instance:
    """The heuristic's choice among cands (activations `a`) for MiniMax TP=8 stage 1 at T."""
    shape = Shape(T=T, N=384, K=3072, E=256, topk=8)
    pool = [dataclasses.replace(i, a=a) for i in cands]
    return min(pool, key=lambda i: dispatch.heuristic_rank(i, shape)[0])


def test_heuristic_takes_wgmma_tiles_for_prefill_only():
    """sm90 from WGMMA_MIN_ROWS rows per active expert (WGMMA_MIN_ROWS_A16 for bf16
    activations): the wgmma tile, block_m 128 at T >= 2048 and 64 at 32 rows per expert (the
    tuned choices on both tuned models); below it, never a wgmma tile."""
    cands = minimax_stage1_candidates([(16, 128, "smem"), (32, 128, "smem"), (64, 128, "smem"),
                                       (128, 128, "smem"), (64, 64, "wgmma"), (128, 64, "wgmma")])

    def best(T: int, a: str = "bf16") -> dispatch.Instance:
        return heuristic_best(cands, T, a)

    # 8 routes/token over 256 experts: 64 rows per expert from T = 2048
    assert (best(2048).b_path, best(2048).block_m) == ("wgmma", 128)
    assert (best(8192).b_path, best(8192).block_m) == ("wgmma", 128)
    assert (best(1024).b_path, best(1024).block_m) == ("wgmma", 64)  # 32 rows/expert, bf16 A
    assert (best(1024, "pk_fp4").b_path, best(1024, "pk_fp4").block_m) == ("smem", 64)  # MX A
    assert (best(2048, "pk_fp4").b_path, best(2048, "pk_fp4").block_m) == ("wgmma", 128)
    assert best(512).b_path == "smem"  # 16 rows/expert
    assert (best(1).b_path, best(1).block_m) == ("smem", 16)
    assert "wgmma tile (prefill" in dispatch.heuristic_rank(best(2048), Shape(T=2048, N=384, K=3072, E=256, topk=8))[1]


def test_heuristic_takes_wgmma_regs_tiles_in_their_band():
    """sm90 from WGMMA_REGS_MIN_ROWS to below WGMMA_MIN_ROWS rows per active expert the
    wgmma_regs tiles first, block_m 2 x the rows up to WGMMA_REGS_BLOCK_M (session 28's
    re-tune: block_m 32 at 16 rows, 64 at 32, for every stage 1 of both tuned models); from
    WGMMA_MIN_ROWS the wgmma ring with block_m up to 128 first and the wgmma_regs tiles after
    it (the re-tune of session 27 kept them only for gpt-oss' a4w4 at T = 2048); below the
    band the swapped tiles, but with bf16 activations from WGMMA_REGS_MIN_ROWS_A16 rows the
    wgmma_regs tile of block_m up to 2 x the rows (session 31: block_m 16 at 8 rows); a
    larger wgmma_regs block_m stays behind the swapped tiles there."""
    cands = minimax_stage1_candidates([(64, 128, "smem"), (64, 64, "wgmma"), (128, 64, "wgmma"),
                                       (16, 128, "swap"), (32, 128, "swap"), (16, 128, "wgmma_regs"),
                                       (32, 128, "wgmma_regs"), (64, 128, "wgmma_regs"),
                                       (128, 128, "wgmma_regs")])

    def best(T: int, a: str = "bf16") -> dispatch.Instance:
        return heuristic_best(cands, T, a)

    for a in ("bf16", "pk_fp4"):  # 64 rows per expert at T = 2048, 128 at 4096
        for T in (2048, 4096, 8192):
            assert (best(T, a).b_path, best(T, a).block_m) == ("wgmma", 128), (a, T)
        assert (best(1024, a).b_path, best(1024, a).block_m) == ("wgmma_regs", 64), a  # 32 rows/expert
        assert (best(512, a).b_path, best(512, a).block_m) == ("wgmma_regs", 32), a    # 16
    assert (best(256).b_path, best(256).block_m) == ("wgmma_regs", 16)                # 8, bf16 A
    assert (best(256, "pk_fp4").b_path, best(256, "pk_fp4").block_m) == ("swap", 16)  # 8, MX A
    assert (best(128).b_path, best(128).block_m) == ("swap", 16)                      # 4, bf16 A
    why = dispatch.heuristic_rank(best(256), Shape(T=256, N=384, K=3072, E=256, topk=8))[1]
    assert "wgmma_regs tile (not prefill: 8 rows/expert, first from 8 to below 64)" in why
    no_m16 = [c for c in cands if (c.block_m, c.b_path) != (16, "wgmma_regs")]
    assert (heuristic_best(no_m16, 256, "bf16").b_path, heuristic_best(no_m16, 256, "bf16").block_m) == ("swap", 16)
    why = dispatch.heuristic_rank(best(512), Shape(T=512, N=384, K=3072, E=256, topk=8))[1]
    assert "wgmma_regs tile (not prefill: 16 rows/expert, first from 16 to below 64)" in why
    regs_only = minimax_stage1_candidates([(64, 128, "smem"), (64, 128, "wgmma_regs"), (128, 128, "wgmma_regs")])
    pick = heuristic_best(regs_only, 2048, "bf16")
    assert (pick.b_path, pick.block_m) == ("wgmma_regs", 64)  # (no ring compiled: block_m up to 64)
    why = dispatch.heuristic_rank(pick, Shape(T=2048, N=384, K=3072, E=256, topk=8))[1]
    assert "wgmma_regs tile (prefill: 64 rows/expert, after the ring)" in why


def test_merge_tuned_as_layout(tmp_path):
    """scripts/merge_tuned.py --as-layout plain: rows tuned on pairbits weights replace the
    plain rows asking the same question, instance names with the layout part swapped (the
    b_path suffix kept); a name without its layout part is refused, the table untouched."""
    cols = list(dispatch.TUNED_COLUMNS)
    base = dict(target="sm90", op="moe_stage1", a="pk_fp4", b="pk_fp4", out="bf16", activation="silu",
                gate_up="concat", routed_weight="none", bias="0", N="384", K="3072", E="256",
                topk="8", T_max="512")

    def write(path: Path, rows: list[dict[str, str]]) -> Path:
        path.write_text(",".join(cols) + "\n" + "".join(",".join(r[c] for c in cols) + "\n" for r in rows))
        return path

    table = write(tmp_path / "table.csv", [
        {**base, "layout": "plain", "instance": "sm90_s1_m32_n128_k128_plain"},
        {**base, "layout": "plain", "T_max": "1024", "instance": "sm90_s1_m64_n128_k128_plain"}])
    new = write(tmp_path / "new.csv", [{**base, "layout": "pairbits", "instance": "sm90_s1_m16_n128_k128_pairbits_bswap"}])
    script = str(ROOT / "scripts" / "merge_tuned.py")
    r = subprocess.run([sys.executable, script, str(table), str(new), "--as-layout", "plain"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "1 rows replaced (1 with another instance), 0 appended" in r.stdout
    got = list(csv.DictReader(open(table, newline="")))
    assert [(g["layout"], g["T_max"], g["instance"]) for g in got] == [
        ("plain", "512", "sm90_s1_m16_n128_k128_plain_bswap"), ("plain", "1024", "sm90_s1_m64_n128_k128_plain")]
    before = table.read_bytes()
    bad = write(tmp_path / "bad.csv", [{**base, "layout": "pairbits", "instance": "sm90_s1_m16_n128_k128_bswap"}])
    r = subprocess.run([sys.executable, script, str(table), str(bad), "--as-layout", "plain"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "does not name its layout 'pairbits'" in r.stderr
    assert table.read_bytes() == before
    # a moe_1stage row saying two_stage (no instance) takes the layout column only
    one = {**base, "op": "moe_1stage", "routed_weight": "stage2", "layout": "pairbits",
           "instance": dispatch.TWO_STAGE}
    r = subprocess.run([sys.executable, script, str(table), str(write(tmp_path / "one.csv", [one])),
                        "--as-layout", "plain"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = list(csv.DictReader(open(table, newline="")))
    assert (got[-1]["op"], got[-1]["layout"], got[-1]["instance"]) == ("moe_1stage", "plain", dispatch.TWO_STAGE)


def test_stage2_reduce_rule():
    """reduce="auto" is the atomic adds (the slot sums measured slower); "slots" exists on
    instances with one K part, a bf16 out and block_n % 8 == 0 (moe.cuh's
    MoeSpec::kStage2Slots), and asking for it elsewhere names why."""
    base = dict(index=0, name="sm90_s2", target="sm90", op="moe_stage2", args_type="MoeGemmArgs",
                a="bf16", b="pk_fp4", out="bf16", block_m=64, block_n=128, block_k=128, split_k=1,
                activation="", gate_up="", routed_weight="stage2", bias=False, layout="pairbits",
                b_path="wgmma_regs")
    inst = dispatch.Instance(**base)
    assert dispatch.slots_supported(inst)
    assert dispatch.stage2_reduce(inst) == "atomic"
    assert dispatch.stage2_reduce(inst, "slots") == "slots"
    for change in ({"block_m": 16, "b_path": "swap", "n_tiles": 12}, {"block_m": 32, "b_path": "regs"}):
        assert dispatch.slots_supported(dispatch.Instance(**{**base, **change})), change
    for change in ({"split_k": 2}, {"block_m": 16, "b_path": "swap", "cluster_k": 2},
                   {"out": "fp32"}, {"block_n": 36}):
        other = dispatch.Instance(**{**base, **change})
        assert not dispatch.slots_supported(other), change
        assert dispatch.stage2_reduce(other) == "atomic"
        with pytest.raises(mxforge.InputError, match="'slots' needs an instance with split_k 1, cluster_k 1"):
            dispatch.stage2_reduce(other, "slots")
    with pytest.raises(mxforge.InputError, match=r"\(allowed: auto, atomic, slots\)"):
        dispatch.stage2_reduce(inst, "fast")


def test_tune_only_globs_accumulate():
    """`mxforge tune --only` given once with several globs or repeated (scripts/gpu-retune
    repeats it): every glob is kept, not the last flag's alone (session 31 tuned the last
    glob's instances only and wrote a table 1.5x slower than the heuristic)."""
    from mxforge.cli import parser
    args = parser().parse_args(["tune", "--model", "gpt-oss-120b", "--only", "a*", "b*", "--only", "c*"])
    assert args.only == ["a*", "b*", "c*"]
    assert parser().parse_args(["tune", "--model", "gpt-oss-120b"]).only is None


# ---- dispatch's memo and indexes (host cost per call: scripts/host_overhead.py) ----------

def sm90_default_table() -> tuple[dispatch.Instance, ...]:
    """The default set's sm90 instances as dispatch sees them (from the specs: no module)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from heuristic_agreement import instances
    return tuple(instances("default", "sm90"))


@pytest.fixture
def sm90_table(monkeypatch):
    """dispatch searching the sm90 default set's ~800 instances with the shipped tuned table
    (what it searches on an H100/H200), caches cleared before and after."""
    import functools
    rows = sm90_default_table()
    monkeypatch.setattr(dispatch, "table", functools.cache(lambda: rows))
    dispatch.clear_caches()
    yield rows
    dispatch.clear_caches()


def test_dispatch_indexes_match_a_scan_of_the_table(sm90_table):
    """candidates() and by_name() look up an index built once; it must hold exactly what a
    scan of the table finds, for every key of the table (and nothing for a key it lacks)."""
    keys = {i.key() for i in sm90_table}
    assert len(keys) > 50
    for key in keys:
        assert dispatch.candidates(key) == [i for i in sm90_table if i.key() == key]
    for inst in sm90_table[::37]:
        assert dispatch.by_name(inst.name) is inst
    assert dispatch.candidates(dataclasses.replace(A4W4_S1, target="sm90", layout="none")) == []


def _presets_stage_keys() -> list[tuple[Key, Shape]]:
    from mxforge.models import PRESETS
    out = []
    for m in PRESETS.values():
        for a, s2 in (("pk_fp4", "pk_fp4"), ("pk_fp4", "bf16"), ("bf16", "bf16")):
            for layout in ("plain", "pairbits"):
                k1 = Key("sm90", "moe_stage1", a=a, b="pk_fp4", out=s2, activation=m.activation,
                         gate_up=m.gate_up, routed_weight="none", bias=m.bias, layout=layout)
                k2 = Key("sm90", "moe_stage2", a=s2, b="pk_fp4", out="bf16",
                         routed_weight="stage2", bias=m.bias, layout=layout)
                out += [(k1, Shape(N=2 * m.I, K=m.H, E=m.E, topk=m.topk)),
                        (k2, Shape(N=m.H, K=m.I, E=m.E, topk=m.topk))]
    return out


def test_memoized_decisions_are_the_ranked_ones(sm90_table):
    """Every preset's stage keys (both layouts), T = 1 ... 8192 and a pinned block_m: select's
    answer, asked twice (the second from the memo), is the shipped tuned row where one
    serves the call and the heuristic's first otherwise, worked out here by a scan of the
    table and of the parsed rows — the memo and the indexes change the cost, not the
    answer."""
    rows = dispatch.tuned_rows()
    assert rows, "the shipped tuned table"
    tuned_hits = 0
    for key, base in _presets_stage_keys():
        cands = [i for i in sm90_table if i.key() == key]
        for T in (1, 2, 3, 8, 33, 100, 512, 1000, 4096, 8192):
            shape = dataclasses.replace(base, T=T)
            for bm in (None, 32):
                among = [c for c in cands if bm is None or c.block_m == bm]
                if not among:
                    continue
                names = {c.name for c in among}
                plain = dataclasses.replace(key, layout="plain")
                fits = [r for r in rows if (r.N, r.K, r.E, r.topk) == (shape.N, shape.K, shape.E, shape.topk)
                        and r.T_max >= T]
                own = [r for r in fits if r.key == key and r.instance in names]
                twin = [r for r in fits if r.key == plain and key.layout == "pairbits"
                        and r.instance.replace("_plain", "_pairbits") in names]
                usable = own or ([] if [r for r in fits if r.key == key] else twin)
                if usable:
                    want = min(usable, key=lambda r: r.T_max).instance.replace("_plain", f"_{key.layout}")
                    tuned_hits += 1
                else:
                    want = min(among, key=lambda i: dispatch.heuristic_rank(i, shape)[0]).name
                for _ in range(2):
                    got = select(key, shape, block_m=bm)
                    assert got.instance.name == want, (key, shape, bm, got.explain())
    assert tuned_hits > 100  # (the shipped rows were exercised, not only the heuristic)


def test_a_memo_hit_ranks_nothing(sm90_table, monkeypatch):
    """The second identical select is a lookup: the heuristic is not run again (what made an
    eager fused_moe call cost ~12 ms of host time on the sm90 table before the memo)."""
    calls = []
    rank = dispatch.heuristic_rank
    monkeypatch.setattr(dispatch, "heuristic_rank", lambda *a, **k: calls.append(1) or rank(*a, **k))
    key, shape = _presets_stage_keys()[0]
    shape = dataclasses.replace(shape, T=77, N=shape.N + 64)  # (a shape no tuned row answers)
    first = select(key, shape)
    assert first.source == "heuristic" and calls, "the first call ranks the candidates"
    calls.clear()
    assert select(key, shape) is first and not calls
    # explain() still ranks them all, on request
    assert first.instance.name in first.explain() and len(calls) == len(first.candidates) > 6
    # a tuned decision: the second call reads no rows again
    key, shape = next((k, dataclasses.replace(s, T=1)) for k, s in _presets_stage_keys()
                      if select(k, dataclasses.replace(s, T=1)).source == "tuned")
    dispatch.clear_caches()
    looked = []
    rows_for = dispatch._tuned_rows_for
    monkeypatch.setattr(dispatch, "_tuned_rows_for", lambda *a: looked.append(1) or rows_for(*a))
    first = select(key, shape)
    assert first.source == "tuned" and looked
    looked.clear()
    assert select(key, shape) is first and not looked


def test_memoized_decisions_follow_an_edited_tuned_table(tuned_file):
    """The memo is keyed on the tables' paths and modification times: a row written, changed
    or removed after a decision was memoized is what the next call sees."""
    import os
    cands = sorted(dispatch.candidates(A4W4_S1), key=lambda i: i.name)
    write_tuned(tuned_file, [])  # (a header, no rows)
    assert select(A4W4_S1, TP8_S1).source == "heuristic"  # (memoized)
    for n, inst in enumerate((cands[0], cands[-1])):
        write_tuned(tuned_file, [tuned_row(A4W4_S1, TP8_S1, 64, inst.name)])
        os.utime(tuned_file, ns=(1, 10**9 * (n + 1)))  # (distinct times however fast the writes)
        d = select(A4W4_S1, TP8_S1)
        assert (d.source, d.instance.name) == ("tuned", inst.name)
    write_tuned(tuned_file, [])
    os.utime(tuned_file, ns=(1, 10**9 * 3))
    assert select(A4W4_S1, TP8_S1).source == "heuristic"


def test_fused_moe_reads_one_version_of_the_tuned_tables(monkeypatch, rng):
    """A layer's stages share a block_m: inside fused_moe every select reads the tables as
    they were when the call began (dispatch.one_tuned_version), so the files are looked at
    once per call, however many decisions it makes."""
    looked = []
    paths = dispatch.tuned_paths
    monkeypatch.setattr(dispatch, "tuned_paths", lambda: looked.append(1) or paths())
    E, H, I, k, T = 4, 64, 32, 2, 3
    w1 = mxforge.pack_weight(torch.randn(E, 2 * I, H, generator=rng).bfloat16())
    w2 = mxforge.pack_weight(torch.randn(E, H, I, generator=rng).bfloat16())
    x = torch.randn(T, H, generator=rng).bfloat16()
    ids = torch.randint(0, E, (T, k), generator=rng, dtype=torch.int32)
    for a in ("pk_fp4", "bf16"):
        looked.clear()
        mxforge.fused_moe(x, w1, w2, torch.rand(T, k, generator=rng), ids, a_dtype=a)
        assert len(looked) == 1, a
    assert ops_all_of_is_stable()


def ops_all_of_is_stable() -> bool:
    """ops.all_of gives the same function for the same conditions (select's memo compares
    `where` by identity: a new closure per call would make every call a miss)."""
    from mxforge import ops
    a = ops.all_of(ops.no_atomic_splits, dispatch.direct_supported)
    return a is ops.all_of(ops.no_atomic_splits, dispatch.direct_supported)


def test_a_table_added_to_the_tuned_folder_is_read_by_the_next_call(tuned_file):
    """mxforge/tuned/ is listed again when its modification time changes (a file added or
    removed), so a table dropped into it steers the next select, memo or not."""
    import os
    write_tuned(tuned_file, [])
    folder = dispatch.TUNED_DIR
    folder.mkdir()
    assert select(A4W4_S1, TP8_S1).source == "heuristic"
    inst = sorted(dispatch.candidates(A4W4_S1), key=lambda i: i.name)[-1]
    write_tuned(folder / "new.csv", [tuned_row(A4W4_S1, TP8_S1, 64, inst.name)])
    os.utime(folder, ns=(1, 10**9))  # (a listing time of its own however fast the writes)
    d = select(A4W4_S1, TP8_S1)
    assert (d.source, d.instance.name) == ("tuned", inst.name)
    (folder / "new.csv").unlink()
    os.utime(folder, ns=(1, 2 * 10**9))
    assert select(A4W4_S1, TP8_S1).source == "heuristic"


def test_a_named_instance_must_pass_the_calls_condition(sm90_table):
    """select(instance=...) with a `where` (a feature the call needs, e.g. direct routing)
    refuses a named instance without it, naming both."""
    key, shape = _presets_stage_keys()[0]
    swap = next(i for i in dispatch.candidates(key) if i.b_path == "swap")
    wgmma = next(i for i in dispatch.candidates(key) if i.b_path == "wgmma")
    assert select(key, shape, swap.name, where=dispatch.direct_supported).source == "named"
    with pytest.raises(mxforge.NoInstanceError, match=f"{wgmma.name} does not pass direct_supported"):
        select(key, shape, wgmma.name, where=dispatch.direct_supported)


def test_a_tuned_folder_changed_just_now_is_listed_again(tuned_file):
    """A folder whose modification time is under 2 s old is listed on every call: a file added
    in the same tick of a coarse file-system clock as the cached listing is not missed."""
    import os
    import time
    write_tuned(tuned_file, [])
    folder = dispatch.TUNED_DIR
    folder.mkdir()
    now = time.time_ns()
    os.utime(folder, ns=(now, now))
    assert select(A4W4_S1, TP8_S1).source == "heuristic"
    inst = sorted(dispatch.candidates(A4W4_S1), key=lambda i: i.name)[-1]
    write_tuned(folder / "new.csv", [tuned_row(A4W4_S1, TP8_S1, 64, inst.name)])
    os.utime(folder, ns=(now, now))  # (the same time stamp as the listing before)
    assert select(A4W4_S1, TP8_S1).instance.name == inst.name
