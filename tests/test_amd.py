"""AMD targets (gfx942, gfx950) without an AMD GPU: toolchain detection and its errors, spec
constraints, code-object embedding, the ISA checker on compiled instances, and the HIP
loader's error where no HIP runtime exists (the rest of the module still works).

The compile tests build a few instances into a temporary copy of the checkout (never
touching this checkout's mxforge/_C*.so, which the other tests use). They skip cleanly
when no AMDGPU clang (ziglang or ROCm) is installed.
"""
from __future__ import annotations

import ctypes.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codegen import targets as T
from codegen.embed_hsaco import EmbedError, c_string_lines, kernels, template_name
from codegen.schema import tile_lds_bytes
from codegen.spec import SpecError, load_spec_file

ROOT = Path(__file__).resolve().parents[1]
GFX950 = T.TARGETS["gfx950"]
HAVE_CLANG = GFX950.toolchain().available
needs_clang = pytest.mark.skipif(not HAVE_CLANG, reason=f"no AMDGPU clang: {GFX950.toolchain().missing}")

# The tiny set the compile tests build: a gfx950 a4w4 GEMM (scaled MFMA), an a4w4 one-stage
# kernel (scaled MFMA + bf16 MFMA), a gfx942 a16w4 GEMM (bf16 MFMA) and a gfx942 sorter,
# plus the cpu quantizer (to show the cpu target keeps working in the same module).
A4W4 = "gfx950_moe_stage1_pk_fp4xpk_fp4_obf16_m32_n128_k128_sk1_silu_concat_rwnone_nobias_plain"
A16W4 = "gfx942_moe_stage2_bf16xpk_fp4_obf16_m16_n128_k128_rwstage2_nobias_plain"
ONESTAGE = "gfx950_moe_1stage_pk_fp4xpk_fp4_obf16_m16_n128_k128_silu_concat_rwstage2_nobias_plain"
SORT = "gfx942_moe_sort"
CPU_QUANT = "cpu_mxfp4_quant_bf16_opk_fp4"
# ... and, from a test-only spec, fp16 activations with GELU (f16 MFMA, the device erf)
FP16 = "{}_moe_stage1_fp16xpk_fp4_obf16_m32_n64_k64_sk1_gelu_interleaved_rwstage1_bias_plain"
# ... and a split-K stage 2 (its finalize kernel's launcher: the module must load with it; a
# reference to dev::sm_count(), which the AMD host runtime does not define, once broke that)
SPLITK = "gfx950_moe_stage2_bf16xpk_fp4_obf16_m16_n64_k128_sk2_rwstage2_nobias_plain"
ONLY = [CPU_QUANT, SORT, A16W4, FP16.format("gfx942"), FP16.format("gfx950"), ONESTAGE, A4W4, SPLITK]
EXTRA_SPEC = """\
groups:
  - id: fp16_gelu
    op: moe_stage1
    a: fp16
    b: pk_fp4
    out: bf16
    block_m: 32
    block_n: 64
    block_k: 64
    activation: gelu
    gate_up: interleaved
    bias: true
    routed_weight: stage1
    targets: [gfx942, gfx950]
"""


# ---- toolchain -----------------------------------------------------------------------------

@pytest.fixture
def fresh_probe():
    T.hip_clang.cache_clear()
    yield
    T.hip_clang.cache_clear()


def test_toolchain_missing_names_both_options(fresh_probe, monkeypatch):
    monkeypatch.setattr(T, "_hip_candidates", lambda: ([], ["no ROCm installation (...)",
                                                             "no ziglang (pip install ziglang)"]))
    tc = GFX950.toolchain()
    assert not tc.available
    assert "no clang with the AMDGPU back end for gfx950" in tc.missing
    assert "ROCM_PATH" in tc.missing and "pip install ziglang" in tc.missing


def test_toolchain_probe_rejects_a_compiler_without_the_arch(fresh_probe, monkeypatch):
    monkeypatch.setattr(T, "_hip_candidates", lambda: ([(("false",), ("true",))], []))
    tc = T.TARGETS["gfx942"].toolchain()
    assert not tc.available and "false cannot compile for gfx942" in tc.missing


def test_build_reports_missing_toolchain(fresh_probe, monkeypatch):
    import build
    monkeypatch.setattr(T, "_hip_candidates", lambda: ([], ["no ziglang (pip install ziglang)"]))
    with pytest.raises(build.BuildError, match=r"target gfx950: no clang with the AMDGPU back end"):
        build.check_toolchains(["gfx950"])


@needs_clang
def test_toolchain_found_with_linker():
    tc = GFX950.toolchain()
    assert tc.command and tc.linker and "clang" in tc.version


# ---- specs -------------------------------------------------------------------------------

def spec(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text("groups:\n" + textwrap.indent(textwrap.dedent(body), "  "))
    return p


def test_lds_prunes_big_tiles_on_gfx942_only(tmp_path):
    p = spec(tmp_path, """\
        - id: g
          op: moe_stage2
          a: bf16
          b: pk_fp4
          block_m: [64, 128]
          block_n: 128
          block_k: 128
          targets: [sm90, gfx942, gfx950]
        """)
    names = {i.name for i in load_spec_file(p, tuple(T.TARGETS))}
    assert "gfx942_moe_stage2_bf16xpk_fp4_obf16_m128_n128_k128_rwstage2_nobias_plain" not in names
    assert "gfx942_moe_stage2_bf16xpk_fp4_obf16_m64_n128_k128_rwstage2_nobias_plain" in names
    assert "gfx950_moe_stage2_bf16xpk_fp4_obf16_m128_n128_k128_rwstage2_nobias_plain" in names
    assert tile_lds_bytes(128, 128, 128) > 64 * 1024 >= tile_lds_bytes(64, 128, 128)


def test_impossible_arch_combination_is_a_clear_error(tmp_path):
    p = spec(tmp_path, """\
        - id: g
          op: moe_stage1
          a: pk_fp4
          b: pk_fp4
          out: bf16
          block_m: 32
          block_n: 128
          block_k: 64
          activation: silu
          targets: [gfx950]
        """)
    with pytest.raises(SpecError, match=r"target gfx950: pk_fp4xpk_fp4 runs on the scaled MFMA "
                                        r"\(K = 128 per instruction\), block_k 64"):
        load_spec_file(p, tuple(T.TARGETS))
    p = spec(tmp_path, """\
        - id: g
          op: moe_stage2
          a: bf16
          b: pk_fp4
          block_m: 128
          block_n: 128
          block_k: 128
          targets: [gfx942]
        """)
    with pytest.raises(SpecError, match=r"target gfx942: .* needs 71680 bytes of shared memory "
                                        r"\(gfx942 has 65536\)"):
        load_spec_file(p, tuple(T.TARGETS))


def test_ci_matrix_lists_amd_compile_cells():
    out = subprocess.run([sys.executable, str(ROOT / "build.py"), "--ci-matrix"],
                         capture_output=True, text=True, check=True).stdout
    cells = {(c["set"], c["target"]): c for c in json.loads(out)["include"]}
    for t in ("gfx942", "gfx950"):
        assert cells[("default", t)]["runs"] == "compile"


# ---- embedding ---------------------------------------------------------------------------

def test_template_names_from_kernel_symbols():
    assert template_name("_ZN3mxf3gpu17moe_stage1_kernelINS0_7MoeSpecIxEEEvNS_11MoeGemmArgsE") \
        == "moe_stage1_kernel"
    with pytest.raises(EmbedError, match="not a template in namespace mxf::gpu"):
        template_name("_Z4kernILi3EEv4Args")


def test_c_string_lines_round_trip():
    data = bytes(range(256)) + b'??="\\0123'
    pieces = c_string_lines(data, 7)
    text = "".join(p[1:-1] for p in pieces)
    decoded = bytes(text.encode("latin-1").decode("unicode_escape"), "latin-1")
    assert decoded == data


# ---- compiled instances (temporary copy of the checkout) ------------------------------------

@pytest.fixture(scope="module")
def amd_build(tmp_path_factory):
    """A copy of the checkout with the tiny set built for cpu, gfx942 and gfx950."""
    if not HAVE_CLANG:
        pytest.skip(f"no AMDGPU clang: {GFX950.toolchain().missing}")
    root = tmp_path_factory.mktemp("checkout")
    for d in ("codegen", "csrc", "templates", "instances", "mxforge", "scripts"):
        shutil.copytree(ROOT / d, root / d, ignore=shutil.ignore_patterns(
            "__pycache__", "_C*.so", "_C.manifest.json"))
    shutil.copy(ROOT / "build.py", root / "build.py")
    (root / "instances" / "amdtest.yaml").write_text(EXTRA_SPEC)
    (root / "instances" / "sets" / "amdtest.yaml").write_text(
        "specs: [common.yaml, models.yaml, amdtest.yaml]\nonly: " + json.dumps(ONLY) + "\n")
    cmd = [sys.executable, str(root / "build.py"), "--set", "amdtest", "--target",
           "cpu,gfx942,gfx950", "-j", "2"]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root


def test_isa_checker_passes_compiled_instances(amd_build):
    r = subprocess.run([sys.executable, str(amd_build / "scripts" / "check_amd_isa.py"),
                        "--set", "amdtest"], cwd=amd_build, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("gfx")}
    assert "scale_16x16x128_f8f6f4" in rows[A4W4]
    assert "16x16x32_bf16,scale_16x16x128_f8f6f4" in rows[ONESTAGE]
    assert "16x16x16_bf16" in rows[A16W4]
    assert "16x16x16_f16" in rows[FP16.format("gfx942")]
    assert "16x16x32_f16" in rows[FP16.format("gfx950")]
    assert "7 instances, 0 failed" in r.stdout


def test_isa_checker_fails_without_the_mfma_and_with_scratch(amd_build, tmp_path):
    sys.path.insert(0, str(amd_build / "scripts"))
    try:
        import check_amd_isa as C
    finally:
        sys.path.pop(0)
    from codegen.spec import load_set
    inst = next(i for i in load_set(ROOT / "instances", "default", tuple(T.TARGETS), [A4W4]).instances)
    obj = amd_build / "build" / "amdtest" / "obj" / "gfx950"
    assert C.check(inst, obj).problems == []
    shutil.copy(obj / f"{A4W4}.hsaco", tmp_path / f"{A4W4}.hsaco")
    asm = (obj / f"{A4W4}.s").read_text()
    bad = "\n".join(ln for ln in asm.splitlines() if "v_mfma" not in ln)
    bad = bad.replace(".private_segment_fixed_size: 0", ".private_segment_fixed_size: 16")
    (tmp_path / f"{A4W4}.s").write_text(bad)
    problems = C.check(inst, tmp_path).problems
    assert any("no v_mfma_scale_f32_16x16x128_f8f6f4 cbsz:4 blgp:4" in p for p in problems)
    assert any("scratch 16 bytes" in p for p in problems)


def test_code_object_kernels_are_named_by_template(amd_build):
    obj = amd_build / "build" / "amdtest" / "obj"
    ks = kernels((obj / "gfx942" / f"{SORT}.hsaco").read_bytes())
    assert sorted(ks) == ["moe_sort_chunks_kernel", "moe_sort_kernel"]
    ks = kernels((obj / "gfx950" / f"{A4W4}.hsaco").read_bytes())
    assert list(ks) == ["moe_stage1_kernel"]


@pytest.mark.skipif(bool(ctypes.util.find_library("amdhip64")), reason="a HIP runtime is installed")
def test_loader_without_hip_runtime(amd_build):
    """The module imports, the cpu op runs, the AMD targets say why they cannot run, and a
    direct launch returns that message as an error (no crash)."""
    script = textwrap.dedent(f"""
        import torch, mxforge
        from mxforge import _loader
        from mxforge.errors import TargetUnavailableError
        C = _loader.module()
        names = [r["name"] for r in mxforge.instances()]
        assert {ONLY!r} == sorted(names, key={ONLY!r}.index), names
        for t in ("gfx942", "gfx950"):
            why = C.availability(t)
            assert why.startswith("HIP runtime not found: dlopen(libamdhip64.so) failed"), why
        q = mxforge.quantize(torch.randn(4, 64, dtype=torch.bfloat16))
        assert q.dtype == "pk_fp4"
        idx = names.index({A4W4!r})
        try:
            C.launch(idx, C.MoeGemmArgs())
        except RuntimeError as e:
            print("LAUNCH", e)
        inst = [i for i in mxforge.instances() if i["name"] == {SORT!r}][0]
        from mxforge.dispatch import table
        try:
            mxforge.ops._launch([i for i in table() if i.name == {SORT!r}][0], C.SortArgs())
        except TargetUnavailableError as e:
            print("UNAVAILABLE", e)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=amd_build, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "LAUNCH" in r.stdout  # the launcher's argument checks or the loader refused it
    assert f"UNAVAILABLE {SORT}: target gfx942 cannot run here: HIP runtime not found" in r.stdout


@pytest.mark.skipif(bool(ctypes.util.find_library("amdhip64")), reason="a HIP runtime is installed")
def test_launch_reaches_the_loader_error(amd_build):
    """A launch with valid arguments gets past the shared argument checks and fails in the
    loader with the dlopen message."""
    script = textwrap.dedent(f"""
        from mxforge import _loader
        C = _loader.module()
        names = [r["name"] for r in C.instances()]
        a = C.SortArgs()
        a.T, a.topk, a.E, a.block_m = 1, 1, 4, 16
        for f in ("topk_ids", "topk_weights", "sorted_ids", "sorted_weights", "sorted_expert_ids",
                  "num_valid_ids"):
            setattr(a, f, 4096)
        try:
            C.launch(names.index({SORT!r}), a)
        except RuntimeError as e:
            print("ERR", e)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=amd_build, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ERR {SORT}: HIP runtime not found: dlopen(libamdhip64.so) failed" in r.stdout


# ---- AMD kernels run on the host (test backend) ----------------------------------------------

EMULATED = {  # driver name -> instance; EMU* are AMD instances compiled for gpu/emulate.h
    "CPU_SORT": "cpu_moe_sort", "EMU_SORT": "gfx950_moe_sort",
    "CPU_QUANT_FP4": "cpu_mxfp4_quant_bf16_opk_fp4", "CPU_QUANT_FP8": "cpu_mxfp4_quant_bf16_ofp8",
    "CPU_S1": "cpu_moe_stage1_pk_fp4xpk_fp4_obf16_m32_n128_k128_sk1_silu_concat_rwnone_nobias_plain",
    "EMU950_S1": A4W4,
    "EMU942_S1": A4W4.replace("gfx950", "gfx942"),
    "CPU_S2": "cpu_moe_stage2_fp8xpk_fp4_obf16_m32_n128_k128_rwstage2_nobias_plain",
    "EMU950_S2": "gfx950_moe_stage2_fp8xpk_fp4_obf16_m32_n128_k128_rwstage2_nobias_plain",
    # sm90 instances on the 32-lane backend: block_m 32 tiles split their k steps over two
    # warp groups (GemmTile::kWarpsK), fp4 chunks become bf16 pairs through the packed
    # bf16 multiply (emulated as sm_90 rounds it), and sentinel rows are stored as zeros
    # without conversion; the GPU tests check the same on the H100
    "EMU90_S1": A4W4.replace("gfx950", "sm90"),
    "EMU90_S2": "sm90_moe_stage2_fp8xpk_fp4_obf16_m32_n128_k128_rwstage2_nobias_plain",
    # sm90 block_m <= 32 tiles take their fp4 weights as register fragments (gemm.cuh,
    # RegFragB: RegK order, mma.sync on registers, emulated from the PTX fragment layouts);
    # block_k 256 ones split each k-tile's two 128-wide groups over two warp groups, and the
    # last k-tile of stage 1 (H = 352) has a partial group and one past K
    "CPU_S1B": "cpu_moe_stage1_bf16xpk_fp4_obf16_m32_n128_k128_sk1_silu_concat_rwnone_nobias_plain",
    "EMU90_S1B": "sm90_moe_stage1_bf16xpk_fp4_obf16_m32_n64_k256_sk1_silu_concat_rwnone_nobias_plain",
    "CPU_S2B": "cpu_moe_stage2_bf16xpk_fp4_obf16_m32_n128_k128_rwstage2_nobias_plain",
    "EMU90_S2B": "sm90_moe_stage2_bf16xpk_fp4_obf16_m32_n64_k256_rwstage2_nobias_plain",
    # split-K stage 2 (bf16 out summed in an fp32 workspace, then added into out once), on
    # sm90's register path and gfx950's shared-memory path, including empty splits
    "EMU90_S2SK": "sm90_moe_stage2_bf16xpk_fp4_obf16_m16_n64_k128_sk4_rwstage2_nobias_plain_bregs",
    "EMU950_S2SK": "gfx950_moe_stage2_bf16xpk_fp4_obf16_m16_n64_k128_sk2_rwstage2_nobias_plain",
    # sm90's swapped decode tile (gemm.cuh, SwapTile: weights as the 16-row operand, tokens
    # as 8-wide atoms, only the atoms with routes multiplied), its activations in chunks of
    # one round (the backend's small MXF_SWAP_SMEM_A): a4w4 stage 1 with block_m 32 (four
    # token atoms, at most two with routes; 8 warps as 2 x 4, the last k-tile partial and one
    # warp group without a k-tile; its one round fits one chunk: the decode loop, all copies
    # of the k-tile code), stage 2 with 8 x 1 warps over two rounds (two chunks: the chunked
    # loop, a partial N tile), and split-K stage 2
    "EMU90_S1W": "sm90_moe_stage1_pk_fp4xpk_fp4_obf16_m32_n64_k128_sk1_silu_concat_rwnone_nobias_plain_bswap",
    "EMU90_S2W": "sm90_moe_stage2_bf16xpk_fp4_obf16_m16_n256_k128_rwstage2_nobias_plain_bswap",
    "EMU90_S2WSK": "sm90_moe_stage2_bf16xpk_fp4_obf16_m16_n64_k128_sk2_rwstage2_nobias_plain_bswap",
    # ... one CTA walking several N tiles (n_tiles; moe.cuh, stage2_swap_tiles), compiled
    # with the default activation budget (FULL_SMEM_A): activations loaded once
    "EMU90_S2WN3": "sm90_moe_stage2_bf16xpk_fp4_obf16_m16_n256_k128_nt3_rwstage2_nobias_plain_bswap",
    "EMU90_S2WN3B": "sm90_moe_stage2_bf16xpk_fp4_obf16_m32_n128_k128_nt3_rwstage2_bias_pairbits_bswap",
    "EMU90_S2WN6Q": "sm90_moe_stage2_pk_fp4xpk_fp4_obf16_m32_n128_k128_nt6_rwstage2_nobias_plain_bswap",
    "CPU_S2Q": "cpu_moe_stage2_pk_fp4xpk_fp4_obf16_m32_n128_k128_rwstage2_nobias_plain",
    # ... with clusters of CTAs sharing a tile's K range (cluster_k; moe.cuh, cluster_reduce)
    "EMU90_S1WC4": "sm90_moe_stage1_pk_fp4xpk_fp4_obf16_m16_n64_k128_sk1_ck4_silu_concat_rwnone_nobias_plain_bswap",
    "EMU90_S1WC2": "sm90_moe_stage1_bf16xpk_fp4_obf16_m16_n32_k128_sk1_ck2_silu_concat_rwnone_nobias_plain_bswap",
    # ... and a stage 2 with a bias (added once, by rank 0)
    "EMU90_S2WC2B": "sm90_moe_stage2_bf16xpk_fp4_obf16_m16_n64_k128_ck2_rwstage2_bias_plain_bswap",
    "CPU_S2BB": "cpu_moe_stage2_bf16xpk_fp4_obf16_m16_n64_k128_rwstage2_bias_plain",
    # the re-quantizing stage-1 epilogue on both warp sizes against the cpu target's
    "CPU_S1Q": "cpu_moe_stage1_pk_fp4xpk_fp4_opk_fp4_m32_n128_k128_sk1_silu_concat_rwnone_nobias_plain",
    "EMU950_S1Q": "gfx950_moe_stage1_pk_fp4xpk_fp4_opk_fp4_m32_n128_k128_sk1_silu_concat_rwnone_nobias_plain",
    "EMU90_S1WQ": "sm90_moe_stage1_pk_fp4xpk_fp4_opk_fp4_m16_n64_k128_sk1_ck4_silu_concat_rwnone_nobias_plain_bswap",
    # fused quant+sort (decode: 8 lanes per quantized block, the sorter's one-warp path) on
    # 64- and 32-lane warps, against the cpu quantizer and sorter byte for byte
    "EMU950_FQS4": "gfx950_fused_quant_sort_bf16_opk_fp4",
    "EMU950_FQS8": "gfx950_fused_quant_sort_bf16_ofp8",
    "EMU90_FQS4": "sm90_fused_quant_sort_bf16_opk_fp4",
    "EMU90_SORT": "sm90_moe_sort",
    # the pairbits weight layout (layout.h: each word's bits rearranged) on sm90's swapped,
    # register-fragment and natural-order shared-memory tiles and on the cpu target
    "EMU90_S1WP": "sm90_moe_stage1_pk_fp4xpk_fp4_obf16_m32_n64_k128_sk1_silu_concat_rwnone_nobias_pairbits_bswap",
    "EMU90_S2BP": "sm90_moe_stage2_bf16xpk_fp4_obf16_m32_n64_k256_rwstage2_nobias_pairbits",
    "EMU90_S2P": "sm90_moe_stage2_fp8xpk_fp4_obf16_m32_n128_k128_rwstage2_nobias_pairbits",
    "CPU_S1P": "cpu_moe_stage1_pk_fp4xpk_fp4_obf16_m32_n128_k128_sk1_silu_concat_rwnone_nobias_pairbits",
    # stage 2 reducing by route rows (reduce="slots"), block_m 64 with a bias, on both warp
    # sizes and the cpu target
    "CPU_S2SL": "cpu_moe_stage2_bf16xpk_fp4_obf16_m64_n128_k128_rwstage2_bias_plain",
    "EMU950_S2SL": "gfx950_moe_stage2_bf16xpk_fp4_obf16_m64_n128_k128_rwstage2_bias_plain",
    "EMU90_S2SL": "sm90_moe_stage2_bf16xpk_fp4_obf16_m64_n128_k128_rwstage2_bias_plain",
}


# Objects compiled with the swapped tile's default activation budget (the others take a
# small one, so that their runs take the chunked path): the N loop needs the whole K.
FULL_SMEM_A = {"EMU90_S2WN3", "EMU90_S2WN3B", "EMU90_S2WN6Q"}


def test_emulated_amd_kernels_match_cpu(tmp_path):
    """The AMD instances' tile layer end to end on the host: 64-lane wavefronts (sorter
    ballots and scans), 16x16 atoms and their accumulator layout, gfx950's raw MX tiles
    (codes + scales in the rows' padding) with 128-wide k steps over a partial last step,
    the epilogues with 256-thread work-groups. The MFMA arithmetic is the host's (the
    instructions themselves cannot run here); cpu instances give the reference."""
    from codegen import render as R
    from codegen.spec import load_set
    cxx = T.host_cxx().command
    if not cxx:
        pytest.skip("no host C++ compiler")
    iset = load_set(ROOT / "instances", "default", tuple(T.TARGETS), list(EMULATED.values()))
    assert len(iset.instances) == len(EMULATED)
    rendered = R.render(iset.instances, ROOT / "templates", tmp_path / "src",
                        ["cpu", "gfx942", "gfx950", "sm90"], {})
    srcs = [s for ss in rendered.sources.values() for s in ss if not s.name.startswith("registry_")]
    header = [f"mxf::Status mxf_{n}(const void*);" for n in EMULATED.values()]
    header += [f"#define {k} mxf_{n}" for k, n in EMULATED.items()]
    (tmp_path / "amd_emulate_instances.h").write_text('#include "mxforge/registry.h"\n' + "\n".join(header) + "\n")
    base = [*cxx, "-std=c++17", "-O1", f"-I{ROOT / 'csrc'}", f"-I{tmp_path}", "-w"]
    cmds = []
    for s in srcs:
        if s.suffix in (".hip", ".cu"):  # an AMD (sm90) instance, on the host test backend
            warp = "64" if s.suffix == ".hip" else "32"
            budget = [] if s.stem in {EMULATED[k] for k in FULL_SMEM_A} else ["-DMXF_SWAP_SMEM_A=4096"]
            # Each target's objects in a namespace of their own (the preprocessor renames
            # `mxf`): the targets' kernels and launchers are inline functions and templates
            # with the same names and different bodies (warp size, atoms, features), and
            # the linker would otherwise keep one copy for all of them (one target's sorter
            # standing in for another's). The entry functions are plain C++ names.
            ns = f"-Dmxf=mxf_emu_{s.parent.name}"
            cmds.append(base + ["-DMXF_EMULATE", f"-DMXF_EMULATE_WARP={warp}", ns, *budget, "-include",
                                "mxforge/gpu/emulate.h", "-x", "c++", "-c", str(s), "-o", f"{s}.o"])
        else:
            cmds.append(base + ["-fopenmp", "-c", str(s), "-o", f"{s}.o"])
    cmds.append(base + ["-c", str(ROOT / "tests" / "amd_emulate_driver.cpp"), "-o", str(tmp_path / "driver.o")])
    procs = []
    for c in cmds:  # two at a time (CI has 2 cores)
        procs.append(subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        if len(procs) >= 2:
            out = procs.pop(0)
            assert out.wait() == 0, out.stdout.read()[-4000:]
    for out in procs:
        assert out.wait() == 0, out.stdout.read()[-4000:]
    # no inline function or template instance of mxforge's is defined by two targets'
    # objects (it would be linked once for both: the namespaces above); nm comes with the
    # binutils the host compiler links with
    nm = shutil.which("nm")
    assert nm, "nm (binutils) not found beside the host compiler"
    owner: dict[str, str] = {}
    for s in srcs:
        if s.suffix not in (".hip", ".cu"):
            continue
        syms = subprocess.run([nm, "--defined-only", f"{s}.o"], capture_output=True, text=True,
                              check=True).stdout.split("\n")
        weak = {ln.split()[-1] for ln in syms if ln.split()[1:2] in (["W"], ["V"], ["u"])}
        for name in (n for n in weak if "mxf" in n):
            assert owner.setdefault(name, s.parent.name) == s.parent.name, (name, owner[name], s.parent.name)
    assert owner, "nm listed no weak mxforge symbol: the check above saw nothing"
    exe = tmp_path / "driver"
    objs = [f"{s}.o" for s in srcs] + [str(tmp_path / "driver.o")]
    subprocess.run([*cxx, *objs, "-fopenmp", "-pthread", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    for sort in ("SORT", "SORT200", "SORT1000", "SORT2000", "SORT5000", "REQUANT", "PAIRBITS", "DIRECT"):
        assert f"{sort} identical" in r.stdout, r.stdout
    fqs = [ln.split()[1:] for ln in r.stdout.splitlines() if ln.startswith("FQS")]
    assert fqs == [[name, shape, "identical"] for shape in ("K=347+0", "K=352+0", "K=352+1")
                   for name in ("gfx950_fp4", "gfx950_fp8", "sm90_fp4")], r.stdout
    rel = {ln.split()[1]: float(ln.split()[2]) for ln in r.stdout.splitlines() if ln.startswith("REL")}
    assert set(rel) == {"stage1_gfx950", "stage1_gfx942", "stage2_gfx950", "stage1_sm90",
                        "stage2_sm90", "stage1_sm90_a16", "stage2_sm90_a16",
                        "stage2_sm90_a16_sk4", "stage2_gfx950_a16_sk2", "stage1_sm90_swap",
                        "stage2_sm90_a16_swap", "stage2_sm90_a16_swap_sk2", "stage1_sm90_swap_ck4",
                        "stage1_sm90_a16_swap_ck2", "stage2_sm90_a16_swap_ck2_bias",
                        "stage2_sm90_a16_swap_nt3", "stage2_sm90_a16_swap_nt3_bias", "stage2_sm90_swap_nt6",
                        "stage2_sm90_a16_swap_nt3_odd_pitch", "stage2_sm90_a16_swap_nt3_k192"} | {
                            f"stage2_slots_{t}_N{n}_acc{acc}" for t in ("gfx950", "sm90", "sm90_swap_nt3")
                            for n in (352, 347) for acc in (0, 1)}, r.stdout
    for name, err in rel.items():  # bf16 outputs: tests/helpers.py's 2^-8 (stage 2: 8 * 2^-9)
        assert 0 <= err <= (8 * 2**-9 if name.startswith("stage2") else 2**-8), r.stdout
