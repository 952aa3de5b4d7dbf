"""`edgepack build`: what the generated project contains, that it is deterministic, and that
bad input fails with one line before anything is written."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepack import codegen
from edgepack.codegen import rendering
from edgepack import quant
from edgepack.build import build
from edgepack.project import load_build_json
from edgepack.cli import main
from edgepack.tflite import read_model

from .conftest import fixture_path

DIGITS_B = fixture_path("digits_b_cluster16_int8.tflite")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def host_project(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "fw"
    build(str(DIGITS_B), "host", out)
    return out


def test_two_builds_of_the_same_inputs_are_byte_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(str(DIGITS_B), "corstone-300", a)
    build(str(DIGITS_B), "corstone-300", b)
    ta, tb = _tree(a), _tree(b)
    assert sorted(ta) == sorted(tb)
    different = [name for name in ta if ta[name] != tb[name]]
    assert different == []


def test_every_generated_text_file_names_version_and_model_hash(host_project):
    info = load_build_json(host_project)
    sha = read_model(DIGITS_B).sha256
    assert info["model_sha256"] == sha
    texts = [p for p in host_project.rglob("*")
             if p.is_file() and p.suffix in (".c", ".h", ".S", ".txt", ".md", ".ld", ".cmake")]
    assert len(texts) > 10
    for p in texts:
        head = p.read_text(encoding="utf-8")[:400]
        assert "generated, do not edit" in head and sha in head, p


def test_project_carries_the_runtime_and_model_data(host_project):
    assert (host_project / "runtime/include/edgepack.h").is_file()
    assert (host_project / "runtime/src/ep_plan.c").is_file()
    info = load_build_json(host_project)
    model_bin = (host_project / "data/model.bin").read_bytes()
    assert len(model_bin) == info["model_data_bytes"] and len(model_bin) % 16 == 0
    # folding: the weights the firmware stores are at most 0.55x the dense int8 bytes
    assert info["weight_bytes_dense"] == 38160
    assert info["weight_bytes_folded"] <= 0.55 * info["weight_bytes_dense"]
    # conv1 (16x3x3x1) stays dense: 16 codebook bytes + 16 aligned rows would be no smaller
    # than its 144 int8 weights (issue 12: never bigger)
    assert [layer["weights_form"].split()[0] for layer in info["layers"] if layer["weights_form"]] \
        == ["dense", "palette", "palette", "palette"]


def test_every_model_array_is_16_byte_aligned_and_matches_the_folded_weights(host_project):

    text = (host_project / "src/model_data.S").read_text()
    offsets = [int(line.split(",")[1]) for line in text.splitlines() if line.strip().startswith(".incbin \"")]
    assert offsets and all(o % 16 == 0 for o in offsets)
    # the second conv's palette: codebook[indices] reproduces the folded model's weights
    plan = (host_project / "src/model_plan.c").read_text()
    assert "EP_WEIGHTS_PALETTE" in plan and "ep_op002_codebook" in plan


def test_npu_board_project_has_vela_model_and_split(tmp_path):
    out = tmp_path / "fw"
    result = build(str(DIGITS_B), "corstone-300", out)
    assert result.vela is not None
    assert result.vela["folded"]["encoded_weight_bytes"] < result.vela["raw"]["encoded_weight_bytes"]
    vela_c = (out / "npu/vela_model.c").read_text()
    assert "aligned(16)" in vela_c
    assert (out / "npu/model_vela.tflite").read_bytes()[4:8] == b"TFL3"
    readme = (out / "npu/README.md").read_text()
    assert "Where the NPU path was executed" in readme and "| NPU |" in readme
    assert "nowhere" in result.npu_path_executed


def test_arena_planner_never_overlaps_tensors_that_are_live_together():
    model = read_model(DIGITS_B)
    steps, _ = codegen.lower_model(model, {})
    plan = codegen.plan_arena(model, steps)
    bufs = plan.buffers
    for i, a in enumerate(bufs):
        assert a.offset % 16 == 0 and a.offset + a.size <= plan.size
        for b in bufs[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
        if plan.scratch_bytes:
            assert (a.offset + a.size <= plan.scratch_offset
                    or plan.scratch_offset + plan.scratch_bytes <= a.offset)
    assert plan.size < plan.naive_size


def test_quantize_multiplier_matches_tflite():
    assert quant.quantize_multiplier(0.0) == (0, 0)
    assert quant.quantize_multiplier(0.5) == (1 << 30, 0)
    assert quant.quantize_multiplier(1.0) == (1 << 30, 1)
    m, s = quant.quantize_multiplier(0.0123)
    assert abs(m * 2.0 ** (s - 31) - 0.0123) < 1e-9 and (1 << 30) <= m < (1 << 31)
    # rounding up to 2^31 moves to the next exponent
    assert quant.quantize_multiplier(math.nextafter(1.0, 0.0)) == (1 << 30, 1)
    assert quant.quantize_multiplier(1e-12) == (0, 0)


def test_user_input_npy_becomes_the_golden_inputs(tmp_path):
    x = np.load(fixture_path("digits_test.npz"))["x"][:3]
    np.save(tmp_path / "x.npy", x)
    result = build(str(DIGITS_B), "host", tmp_path / "fw", input_npy=str(tmp_path / "x.npy"))
    assert result.golden_count == 3 and "x.npy" in result.golden_source


# --- bad input ----------------------------------------------------------------------------------

def test_existing_directory_is_refused_without_force(tmp_path, capsys):
    out = tmp_path / "fw"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["build", str(DIGITS_B), "--board", "host", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "already exists" in err and "--force" in err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["build", str(DIGITS_B), "--board", "host", "-o", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "build.json").is_file()


def _tiny_board(tmp_path: Path, arena_size: int, model_size: int) -> Path:
    text = f'''
name = "tiny"
description = "a board too small for the digits model"
[cpu]
core = "cortex-m55"
toolchain = "arm-none-eabi"
cflags = ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"]
ldflags = ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"]
[[memory]]
name = "ITCM"
address = 0x10000000
size = 0x80000
holds = ["code", "rodata"]
[[memory]]
name = "DTCM"
address = 0x30000000
size = 0x80000
holds = ["data", "stack"]
[[memory]]
name = "SRAM"
address = 0x31000000
size = {arena_size}
holds = ["arena"]
[[memory]]
name = "DDR"
address = 0x70000000
size = {model_size}
holds = ["model"]
[sim]
qemu_machine = "mps3-an547"
'''
    p = tmp_path / "tiny.toml"
    p.write_text(text)
    return p


def test_arena_larger_than_the_region_names_both_numbers(tmp_path, capsys):
    board = _tiny_board(tmp_path, arena_size=4096, model_size=0x100000)
    out = tmp_path / "fw"
    rc = main(["build", str(DIGITS_B), "--board", str(board), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0
    import re

    m = re.search(r"tensor arena need (\d+) bytes .* region SRAM at 0x31000000 holds 4096 bytes", err)
    assert m and int(m.group(1)) > 4096, err
    assert not out.exists() and list(tmp_path.iterdir()) == [board]


def test_model_larger_than_the_region_names_both_numbers(tmp_path, capsys):
    board = _tiny_board(tmp_path, arena_size=0x100000, model_size=8192)
    out = tmp_path / "fw"
    rc = main(["build", str(DIGITS_B), "--board", str(board), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "model data" in err and "8192 bytes" in err and "DDR" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [board]


def test_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    real = rendering.render
    calls = []

    def render_then_interrupt(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rendering, "render", render_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build(str(DIGITS_B), "host", tmp_path / "fw")
    assert len(calls) == 4
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_forced_rebuild_keeps_the_old_project(tmp_path, monkeypatch):
    out = tmp_path / "fw"
    build(str(DIGITS_B), "host", out)
    before = _tree(out)
    monkeypatch.setattr(rendering, "copy_runtime", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        build(str(DIGITS_B), "host", out, force=True)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["fw"]


def test_an_operator_the_runtime_lacks_is_named_with_index_and_reason(tmp_path, capsys):
    from .conftest import edit_model
    from edgepack.tflite import schema

    def make_tanh(m):
        # turn the SOFTMAX (operator 7) into an operator nobody implements here: SQRT
        codes = m.operatorCodes
        op = m.subgraphs[0].operators[7]
        codes[op.opcodeIndex].builtinCode = schema.BuiltinOperator.SQRT
        codes[op.opcodeIndex].deprecatedBuiltinCode = schema.BuiltinOperator.SQRT
        op.builtinOptionsType = 0
        op.builtinOptions = None

    p = tmp_path / "sqrt.tflite"
    p.write_bytes(edit_model("digits_b_cluster16_int8.tflite", make_tanh))
    rc = main(["build", str(p), "--board", "host", "-o", str(tmp_path / "fw")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0
    assert "operator 7 (SQRT)" in err and "no SQRT kernel" in err
    assert not (tmp_path / "fw").exists()


def test_build_json_output_is_machine_readable(tmp_path, capsys):
    import json

    rc = main(["build", str(DIGITS_B), "--board", "host", "-o", str(tmp_path / "fw"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["arena_bytes"] > 0 and data["board"] == "host"
    assert data["weight_bytes_folded"] < data["weight_bytes_dense"]


def test_help_teaches_with_examples():
    out = subprocess.run([sys.executable, "-m", "edgepack", "build", "--help"],
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0 and "examples:" in out.stdout and "--force" in out.stdout
