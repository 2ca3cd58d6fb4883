"""Spec validation, expansion, naming and rendering (pure codegen, no torch, no module)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from codegen import schema
from codegen.render import render, source_hash
from codegen.spec import SpecError, load_set, load_spec_file
from codegen.targets import TARGETS

ROOT = Path(__file__).resolve().parents[1]
TARGET_NAMES = tuple(TARGETS)

GOOD_GROUP = """\
groups:
  - id: g
    op: moe_stage1
    a: pk_fp4
    b: pk_fp4
    out: bf16
    block_m: [16, 32]
    block_n: 64
    block_k: 128
    activation: silu
    targets: [cpu]
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as ei:
        load_spec_file(write(tmp_path, text), TARGET_NAMES)
    return ei.value


def test_good_group_expands_cartesian(tmp_path: Path) -> None:
    insts = load_spec_file(write(tmp_path, GOOD_GROUP), TARGET_NAMES)
    assert [i.name for i in insts] == [
        "cpu_moe_stage1_pk_fp4xpk_fp4_obf16_m16_n64_k128_sk1_silu_concat_rwnone_nobias_plain",
        "cpu_moe_stage1_pk_fp4xpk_fp4_obf16_m32_n64_k128_sk1_silu_concat_rwnone_nobias_plain",
    ]
    assert insts[0].source.endswith("spec.yaml:2")


@pytest.mark.parametrize("bad, field, value, line, col", [
    ("block_m: [16, 32]", "block_m", "48", 7, 19),
    ("a: pk_fp4", "a", "'int4'", 4, 8),
    ("activation: silu", "activation", "'relu'", 10, 17),
])
def test_bad_value_names_file_line_column_field_and_allowed(tmp_path: Path, bad: str, field: str,
                                                           value: str, line: int, col: int) -> None:
    text = GOOD_GROUP.replace(bad, {"block_m": "block_m: [16, 48]", "a": "a: int4",
                                    "activation": "activation: relu"}[field])
    e = error_of(tmp_path, text)
    allowed = schema.OPS["moe_stage1"].field(field).allowed  # type: ignore[union-attr]
    assert (e.line, e.col) == (line, col)
    assert f"field '{field}'" in e.message and value in e.message
    assert "allowed: " + ", ".join(map(str, allowed)) in e.message
    assert str(e).startswith(f"{tmp_path / 'spec.yaml'}:{line}:{col}:")


def test_unknown_field_lists_allowed_fields(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP + "    tile_q: 3\n")
    assert "field 'tile_q' does not apply to op 'moe_stage1'" in e.message
    assert "block_m" in e.message and e.line == 12


def test_field_not_applicable_to_op(tmp_path: Path) -> None:
    e = error_of(tmp_path, """\
        groups:
          - id: s
            op: moe_sort
            block_m: 32
            targets: [cpu]
        """)
    assert "field 'block_m' does not apply to op 'moe_sort'" in e.message and e.line == 4


def test_missing_required_field(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP.replace("    activation: silu\n", ""))
    assert "missing required field 'activation'" in e.message
    assert "allowed: silu, gelu, swiglu_oai" in e.message


def test_split_k_with_fp4_activations_is_invalid(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP.replace("block_k: 128", "block_k: 128\n    split_k: 2"))
    assert "split_k > 1 is invalid with pk_fp4 activations" in e.message


def test_stage2_split_k_takes_16_bit_activations_only(tmp_path: Path) -> None:
    s2 = textwrap.dedent("""\
        groups:
          - id: s2
            op: moe_stage2
            a: pk_fp4
            b: pk_fp4
            block_m: 32
            block_n: 128
            block_k: 128
            split_k: 2
            targets: [cpu]
        """)
    e = error_of(tmp_path, s2)
    assert "split_k > 1 is invalid with pk_fp4 activations" in e.message
    e = error_of(tmp_path, s2.replace("a: pk_fp4", "a: fp8"))
    assert "split_k > 1 is invalid with fp8 activations in moe_stage2" in e.message
    assert "bf16 or fp16 activations only" in e.message
    # in a list: split only for the 16-bit activations; split_k 1 keeps the names that
    # predate the field (no `sk` in stage-2 names, so tuned tables still match)
    both = s2.replace("a: pk_fp4", "a: [pk_fp4, bf16, fp16, fp8]").replace("split_k: 2", "split_k: [1, 2]")
    names = sorted(i.name for i in load_spec_file(write(tmp_path, both), TARGET_NAMES))
    assert [n for n in names if "_sk" in n] == [
        "cpu_moe_stage2_bf16xpk_fp4_obf16_m32_n128_k128_sk2_rwstage2_nobias_plain",
        "cpu_moe_stage2_fp16xpk_fp4_obf16_m32_n128_k128_sk2_rwstage2_nobias_plain"]
    assert "cpu_moe_stage2_bf16xpk_fp4_obf16_m32_n128_k128_rwstage2_nobias_plain" in names
    assert len(names) == 6


def test_b_path_regs_is_sm90_only_and_named(tmp_path: Path) -> None:
    regs = GOOD_GROUP.replace("block_k: 128", "block_k: 128\n    b_path: regs")
    e = error_of(tmp_path, regs)  # targets: [cpu]
    assert "b_path regs exists on target sm90 only (target cpu" in e.message
    e = error_of(tmp_path, regs.replace("[cpu]", "[sm90]").replace("block_m: [16, 32]", "block_m: 64"))
    assert "b_path regs needs block_m <= 32 and block_k a multiple of 128" in e.message
    e = error_of(tmp_path, regs.replace("[cpu]", "[sm90]").replace("block_k: 128", "block_k: 64"))
    assert "block_k 64" in e.message
    names = [i.name for i in load_spec_file(write(tmp_path, regs.replace("[cpu]", "[sm90]")), TARGET_NAMES)]
    assert names and all(n.endswith("_plain_bregs") for n in names)
    # the default path keeps the names that existed before the field (tuned tables use them)
    plain = [i.name for i in load_spec_file(write(tmp_path, GOOD_GROUP), TARGET_NAMES)]
    assert plain and all(n.endswith("_plain") for n in plain)
    # in a list, the combinations regs cannot serve are pruned, smem kept
    both = GOOD_GROUP.replace("block_k: 128", "block_k: 128\n    b_path: [smem, regs]").replace(
        "block_m: [16, 32]", "block_m: [32, 64]").replace("[cpu]", "[sm90]")
    names = sorted(i.name for i in load_spec_file(write(tmp_path, both), TARGET_NAMES))
    assert [n.endswith("_bregs") for n in names] == [False, True, False]  # m32 smem/regs, m64 smem


def test_pairbits_layout_on_cpu_and_sm90_only(tmp_path: Path) -> None:
    pb = GOOD_GROUP.replace("block_k: 128", "block_k: 128\n    layout: pairbits")
    names = [i.name for i in load_spec_file(write(tmp_path, pb.replace("[cpu]", "[cpu, sm90]")), TARGET_NAMES)]
    assert len(names) == 4 and all(n.endswith("_pairbits") for n in names)
    e = error_of(tmp_path, pb.replace("[cpu]", "[gfx950]"))
    assert "layout pairbits exists on targets cpu, sm90 only (target gfx950" in e.message
    e = error_of(tmp_path, pb.replace("b: pk_fp4", "b: bf16").replace("a: pk_fp4", "a: bf16"))
    assert "layout pairbits exists for pk_fp4 weights only" in e.message
    # in a list, gfx targets keep plain and drop pairbits
    both = pb.replace("layout: pairbits", "layout: [plain, pairbits]").replace("[cpu]", "[sm90, gfx942]")
    names = sorted(i.name for i in load_spec_file(write(tmp_path, both), TARGET_NAMES))
    assert [n for n in names if n.startswith("gfx942")] and not [n for n in names if "gfx942" in n and "pairbits" in n]
    assert len([n for n in names if n.startswith("sm90") and n.endswith("_pairbits")]) == 2


def test_b_path_swap_is_sm90_only_with_its_tiles(tmp_path: Path) -> None:
    swap = GOOD_GROUP.replace("block_k: 128", "block_k: 128\n    b_path: swap")
    e = error_of(tmp_path, swap)  # targets: [cpu]
    assert "b_path swap exists on target sm90 only (target cpu" in e.message
    sm90 = swap.replace("[cpu]", "[sm90]")
    e = error_of(tmp_path, sm90.replace("block_m: [16, 32]", "block_m: 64"))
    assert "b_path swap needs block_m <= 32 and block_k a multiple of 128" in e.message
    e = error_of(tmp_path, sm90.replace("block_n: 64", "block_n: 16"))  # 32 weight rows per warp
    assert "b_path swap needs block_n 32, 64, 128 or 256" in e.message and "asked block_n 16" in e.message
    e = error_of(tmp_path, sm90.replace("b: pk_fp4", "b: fp8").replace("a: pk_fp4", "a: fp8"))
    assert "b_path swap needs pk_fp4 weights and a bf16 MMA input" in e.message
    e = error_of(tmp_path, sm90.replace("a: pk_fp4", "a: fp8"))  # fp8 activations never ran
    assert "b_path swap takes pk_fp4 or bf16 activations (the ones run on a GPU); asked a=fp8" in e.message
    names = [i.name for i in load_spec_file(write(tmp_path, sm90), TARGET_NAMES)]
    assert len(names) == 2 and all(n.endswith("_plain_bswap") for n in names)
    # block_m 32: 16 weight rows per warp, so at most 128 columns (8 warps); in a list of
    # block_m the combination is pruned, alone it is an error
    wide = sm90.replace("block_n: 64", "block_n: 256")
    names = [i.name for i in load_spec_file(write(tmp_path, wide), TARGET_NAMES)]
    assert names == ["sm90_moe_stage1_pk_fp4xpk_fp4_obf16_m16_n256_k128_sk1_silu_concat_rwnone_nobias_plain_bswap"]
    e = error_of(tmp_path, wide.replace("block_m: [16, 32]", "block_m: 32"))
    assert "b_path swap with block_m 32 needs block_n 32, 64 or 128" in e.message and "asked block_n 256" in e.message


def test_cluster_k_is_sm90_swap_only_and_takes_fp4_activations(tmp_path: Path) -> None:
    swap = GOOD_GROUP.replace("block_k: 128", "block_k: 128\n    b_path: swap\n    cluster_k: 4").replace(
        "[cpu]", "[sm90]")
    # pk_fp4 activations may take clusters (the sum is whole before the epilogue), and the
    # name carries ck only when > 1, after sk
    names = [i.name for i in load_spec_file(write(tmp_path, swap), TARGET_NAMES)]
    assert names == [f"sm90_moe_stage1_pk_fp4xpk_fp4_obf16_m{m}_n64_k128_sk1_ck4_silu_concat_rwnone_nobias_plain_bswap"
                     for m in (16, 32)]
    one = [i.name for i in load_spec_file(write(tmp_path, swap.replace("cluster_k: 4", "cluster_k: 1")),
                                          TARGET_NAMES)]
    assert all("_ck" not in n for n in one)
    e = error_of(tmp_path, swap.replace("b_path: swap", "b_path: regs"))
    assert "cluster_k 4 exists on target sm90 with b_path swap only (asked target sm90, b_path regs" in e.message
    e = error_of(tmp_path, swap.replace("[sm90]", "[cpu]").replace("    b_path: swap\n", ""))
    assert "cluster_k 4 exists on target sm90 with b_path swap only (asked target cpu, b_path smem" in e.message
    e = error_of(tmp_path, swap.replace("a: pk_fp4", "a: bf16").replace("cluster_k: 4", "cluster_k: 2\n    split_k: 2"))
    assert "cluster_k 2 and split_k 2 both split K: choose one" in e.message
    e = error_of(tmp_path, swap.replace("cluster_k: 4", "cluster_k: 8"))
    assert "cluster_k" in e.message and "8" in e.message


NT_GROUP = """\
groups:
  - id: g
    op: moe_stage2
    a: bf16
    b: pk_fp4
    block_m: [16, 32]
    block_n: [128, 256]
    block_k: 128
    n_tiles: 6
    b_path: swap
    targets: [sm90]
"""


def test_n_tiles_is_stage2_swap_with_one_warp_group(tmp_path: Path) -> None:
    # in a list, the combinations without one warp group (m16 n128; m32 n256: no swapped
    # tile at all) are pruned; the name carries nt only when > 1, after ck
    names = [i.name for i in load_spec_file(write(tmp_path, NT_GROUP), TARGET_NAMES)]
    assert names == ["sm90_moe_stage2_bf16xpk_fp4_obf16_m16_n256_k128_nt6_rwstage2_nobias_plain_bswap",
                     "sm90_moe_stage2_bf16xpk_fp4_obf16_m32_n128_k128_nt6_rwstage2_nobias_plain_bswap"]
    one = [i.name for i in load_spec_file(write(tmp_path, NT_GROUP.replace("n_tiles: 6", "n_tiles: 1")),
                                          TARGET_NAMES)]
    assert len(one) == 3 and all("_nt" not in n for n in one)
    alone = NT_GROUP.replace("block_m: [16, 32]", "block_m: 16").replace("block_n: [128, 256]", "block_n: 128")
    e = error_of(tmp_path, alone)
    assert ("n_tiles 6 exists on target sm90 with b_path swap, block_n 256 (block_m 16) or 128 (block_m 32), "
            "or with b_path wgmma and out bf16; split_k 1 and cluster_k 1 only (asked target sm90, b_path swap, "
            "block_m 16, block_n 128") in e.message
    e = error_of(tmp_path, alone.replace("block_n: 128", "block_n: 256").replace("    b_path: swap\n", ""))
    assert "b_path smem" in e.message and "use n_tiles 1" in e.message
    e = error_of(tmp_path, alone.replace("block_n: 128", "block_n: 256").replace("n_tiles: 6", "n_tiles: 6\n    split_k: 2"))
    assert "split_k 2" in e.message
    e = error_of(tmp_path, NT_GROUP.replace("n_tiles: 6", "n_tiles: 5"))
    assert "n_tiles" in e.message and "5" in e.message


def test_n_tiles_on_the_wgmma_ring_tile_needs_a_bf16_out(tmp_path: Path) -> None:
    # stage 2's N loop on the ring tile (gemm.cuh, gemm_mainloop_wgmma_tiles): its sums
    # leave as bf16 rows, so an fp32 out is refused with what exists
    ring = (NT_GROUP.replace("block_m: [16, 32]", "block_m: [64, 128]").replace("block_n: [128, 256]", "block_n: 128")
            .replace("block_k: 128", "block_k: 64").replace("b_path: swap", "b_path: wgmma"))
    names = [i.name for i in load_spec_file(write(tmp_path, ring), TARGET_NAMES)]
    assert names == ["sm90_moe_stage2_bf16xpk_fp4_obf16_m64_n128_k64_nt6_rwstage2_nobias_plain_bwgmma",
                     "sm90_moe_stage2_bf16xpk_fp4_obf16_m128_n128_k64_nt6_rwstage2_nobias_plain_bwgmma"]
    e = error_of(tmp_path, ring.replace("block_m: [64, 128]", "block_m: 128").replace("b: pk_fp4", "b: pk_fp4\n    out: fp32"))
    assert "or with b_path wgmma and out bf16" in e.message and "out fp32" in e.message


def test_default_set_clusters_only_swapped_sm90_tiles() -> None:
    iset = load_set(ROOT / "instances", "default", TARGET_NAMES, ["sm90_*"])
    clustered = [i for i in iset.instances if i.get("cluster_k", 1) > 1]
    assert clustered and any(i.get("a") == "pk_fp4" and i.get("out") == "pk_fp4" for i in clustered)
    assert all(i.get("b_path") == "swap" and i.get("split_k") == 1 for i in clustered)


def test_b_path_wgmma_is_sm90_only_with_its_tiles(tmp_path: Path) -> None:
    wg = GOOD_GROUP.replace("block_k: 128", "block_k: 64\n    b_path: wgmma").replace(
        "block_m: [16, 32]", "block_m: 128").replace("block_n: 64", "block_n: 128")
    e = error_of(tmp_path, wg)  # targets: [cpu]
    assert "b_path wgmma exists on target sm90 only (target cpu" in e.message
    sm90 = wg.replace("[cpu]", "[sm90]")
    for bad in (("block_m: 128", "block_m: 32"), ("block_k: 64", "block_k: 128"),
                ("block_n: 128", "block_n: 256")):  # 256 columns per warpgroup at block_m 128
        e = error_of(tmp_path, sm90.replace(*bad))
        assert "b_path wgmma needs block_m 64 or 128, block_k 64" in e.message, bad
        assert "asked block_m" in e.message
    for a, b in (("fp16", "pk_fp4"), ("bf16", "bf16"), ("fp8", "fp8")):  # not run on a GPU
        e = error_of(tmp_path, sm90.replace("a: pk_fp4", f"a: {a}").replace("b: pk_fp4", f"b: {b}"))
        assert f"b_path wgmma needs pk_fp4 weights and pk_fp4, bf16 or fp8 activations; asked a={a}, b={b}" in e.message
    names = [i.name for i in load_spec_file(write(tmp_path, sm90), TARGET_NAMES)]
    assert names == ["sm90_moe_stage1_pk_fp4xpk_fp4_obf16_m128_n128_k64_sk1_silu_concat_rwnone_nobias_plain_bwgmma"]
    # block_m 64: the two warpgroups split block_n, so 256 columns are 128 each
    m64 = sm90.replace("block_m: 128", "block_m: 64").replace("block_n: 128", "block_n: 256")
    assert len(load_spec_file(write(tmp_path, m64), TARGET_NAMES)) == 1


def test_lists_prune_invalid_combinations(tmp_path: Path) -> None:
    text = GOOD_GROUP.replace("a: pk_fp4", "a: [pk_fp4, bf16]").replace(
        "block_k: 128", "block_k: 128\n    split_k: [1, 2]")
    names = [i.name for i in load_spec_file(write(tmp_path, text), TARGET_NAMES)]
    assert not any("pk_fp4xpk_fp4" in n and "_sk2_" in n for n in names)
    assert any("bf16xpk_fp4" in n and "_sk2_" in n for n in names)
    assert len(names) == 2 * 3  # block_m x (fp4 sk1, bf16 sk1, bf16 sk2)


def test_unsupported_dtype_pair(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP.replace("b: pk_fp4", "b: bf16"))
    assert "dtype pair pk_fp4xbf16 is not supported" in e.message and "a4w4" not in e.message


def test_bad_target(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP.replace("targets: [cpu]", "targets: [cpu, sm80]"))
    assert "field 'targets'" in e.message and "'sm80'" in e.message
    assert "allowed: " + ", ".join(TARGET_NAMES) in e.message


@pytest.mark.parametrize("hostile", ['"x; rm -rf /"', '"a\\"b"', '"g\\nid"', "'1abc'", "'a b'"])
def test_group_id_must_be_identifier(tmp_path: Path, hostile: str) -> None:
    e = error_of(tmp_path, GOOD_GROUP.replace("id: g", f"id: {hostile}"))
    assert "field 'id'" in e.message and "identifier" in e.message or "invalid YAML" in e.message


def test_duplicate_key_and_duplicate_group(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP + "    block_n: 128\n")
    assert "duplicate key 'block_n'" in e.message and "first at line 8" in e.message
    body = GOOD_GROUP.split("groups:\n", 1)[1]
    e = error_of(tmp_path, GOOD_GROUP + body)
    assert "group id 'g' used twice" in e.message


def test_duplicate_value_in_list(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP.replace("[16, 32]", "[16, 16]"))
    assert "value 16 listed twice" in e.message


def test_wrong_types(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP.replace("block_n: 64", "block_n: '64'"))
    assert "field 'block_n': bad value '64'" in e.message
    e = error_of(tmp_path, GOOD_GROUP.replace("block_n: 64", "block_n: {a: 1}"))
    assert "bad value a mapping" in e.message
    e = error_of(tmp_path, "groups: 3\n")
    assert "'groups' must be a non-empty list" in e.message


def test_bool_is_not_int(tmp_path: Path) -> None:
    e = error_of(tmp_path, GOOD_GROUP.replace("block_n: 64", "block_n: true"))
    assert "field 'block_n': bad value True" in e.message


def test_invalid_yaml_and_unsafe_tags(tmp_path: Path) -> None:
    e = error_of(tmp_path, "groups: [\n")
    assert "invalid YAML" in e.message
    e = error_of(tmp_path, "groups:\n  - !!python/object:os.system {}\n")
    assert "unsupported YAML tag" in e.message or "invalid" in e.message


def test_huge_product_rejected(tmp_path: Path) -> None:
    text = GOOD_GROUP.replace("block_n: 64", "block_n: [16, 32, 64, 128, 256]").replace(
        "block_k: 128", "block_k: [32, 64, 128, 256]").replace(
        "activation: silu", "activation: [silu, gelu, swiglu_oai]\n    gate_up: [concat, interleaved]\n"
        "    bias: [false, true]\n    out: [bf16, pk_fp4]").replace("    out: bf16\n", "").replace(
        "a: pk_fp4", "a: [pk_fp4, bf16, fp16, fp8]").replace(
        "block_m: [16, 32]", "block_m: [16, 32, 64, 128]").replace(
        "targets: [cpu]", "targets: [cpu, sm90]\n    split_k: [1, 2, 4, 8]\n    layout: [plain, shuffled]")
    e = error_of(tmp_path, text)
    assert "combinations (limit" in e.message


def test_empty_and_non_utf8_files(tmp_path: Path) -> None:
    e = error_of(tmp_path, "")
    assert "empty spec file" in e.message
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe groups")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec_file(p, TARGET_NAMES)


def test_set_errors(tmp_path: Path) -> None:
    (tmp_path / "sets").mkdir()
    write(tmp_path, GOOD_GROUP, "a.yaml")
    write(tmp_path / "sets", "specs: [a.yaml]\nbogus: 1\n", "s1.yaml")
    with pytest.raises(SpecError, match="unknown set field 'bogus'"):
        load_set(tmp_path, "s1", TARGET_NAMES)
    write(tmp_path / "sets", "specs: [../etc/passwd]\n", "s2.yaml")
    with pytest.raises(SpecError, match="relative path"):
        load_set(tmp_path, "s2", TARGET_NAMES)
    write(tmp_path / "sets", "specs: [a.yaml, a.yaml]\n", "s3.yaml")
    with pytest.raises(SpecError, match="duplicate instance"):
        load_set(tmp_path, "s3", TARGET_NAMES)
    write(tmp_path / "sets", "specs: [a.yaml]\nonly: ['*sm90*']\n", "s4.yaml")
    with pytest.raises(SpecError, match="selects no instance"):
        load_set(tmp_path, "s4", TARGET_NAMES)
    with pytest.raises(SpecError, match="no instance set 'nope'"):
        load_set(tmp_path, "nope", TARGET_NAMES)


def test_set_filters(tmp_path: Path) -> None:
    (tmp_path / "sets").mkdir()
    write(tmp_path, GOOD_GROUP, "a.yaml")
    write(tmp_path / "sets", "specs: [a.yaml]\n", "s.yaml")
    s = load_set(tmp_path, "s", TARGET_NAMES, exclude=["*_m16_*"])
    assert [i.get("block_m") for i in s.instances] == [32]


def test_repo_sets_load_and_names_are_identifiers() -> None:
    for path in sorted((ROOT / "instances" / "sets").glob("*.yaml")):
        s = load_set(ROOT / "instances", path.stem, TARGET_NAMES)
        assert s.instances
        for i in s.instances:
            assert schema.IDENT.match(i.name[:64]) and i.name.replace("_", "").isalnum()
            assert i.target in i.name and i.op in i.name


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    s = load_set(ROOT / "instances", "ci", TARGET_NAMES)
    manifest = {"set": "ci", "source_hash": source_hash(ROOT, s.spec_files)}
    r1 = render(s.instances, ROOT / "templates", tmp_path / "a", ["cpu"], manifest)
    r2 = render(s.instances, ROOT / "templates", tmp_path / "b", ["cpu"], manifest)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    cpu = [i for i in s.instances if i.target == "cpu"]
    assert files_a == files_b and len(files_a) == len(cpu) + 2  # + registry, module_targets
    for f in files_a:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    # a second render into the same folder writes nothing
    r3 = render(s.instances, ROOT / "templates", tmp_path / "a", ["cpu"], manifest)
    assert r1.written == r2.written == len(files_a) and r3.written == 0
