"""`edgepack run DIR --sim npu-model`: Vela's output model runs as the device would run it. `ethos-u`
operators run in the functional Ethos-U model, every operator Vela leaves on the CPU runs as the
project's own plan step in its C runtime (host build), and the result is bit-exact with TFLM. On a
mismatch the run names the first layer that differs (operator index, name, byte index)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgepack.boards import load_board
from edgepack.build import build
from edgepack.cli import main
from edgepack.fold import fold_model
from edgepack.npu import run_vela_model
from edgepack.npu.compare import compare_layers
from edgepack.npu.debugdb import read_debug_db
from edgepack.npu.host_steps import HostSteps, build_library, cpu_op_runner
from edgepack.npu.runner import read_tflite
from edgepack.sim import choose_sims, golden_vectors, run_project
from edgepack.tflite import read_model, serialize_model
from edgepack.vela import compile_for_board

from .conftest import fixture_path
from .firmware_support import built_project, needs
from .npu_support import U55_CONFIGS, compile_vela, npu_cpu_npu_model, tflm_batch, vela_debug_db

HOST = needs("gcc", "cmake", "ninja")
N_INPUTS = 200


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("run-npu")


@pytest.fixture(scope="module")
def mixed(root) -> Path:
    """The project of the NPU -> CPU -> NPU model for corstone-300 (Ethos-U55-128)."""
    model = root / "mixed.tflite"
    model.write_bytes(npu_cpu_npu_model())
    out = root / "mixed_corstone-300"
    build(str(model), "corstone-300", out, cpu_only=True)
    return out


def _copy(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns("build", "build-host*"))
    return dest


def _folded_bytes(project: Path) -> bytes:
    """The folded model the build compiled (folding is deterministic: same SHA-256 as build.json)."""
    info = json.loads((project / "build.json").read_text())
    folded = serialize_model(fold_model(read_model(info["model"]), board=load_board(info["board"])).model)
    assert hashlib.sha256(folded).hexdigest() == info["folded_model_sha256"]
    return folded


def _vela_with_changed_weight(project: Path, tensor: str, accel: str | None = None) -> tuple[bytes, bytes]:
    """Vela's output and debug database for the project's folded model with the weights of output
    channel 0 of `tensor` negated: a compilation that is wrong in exactly that layer."""
    info = json.loads((project / "build.json").read_text())
    model = fold_model(read_model(info["model"]), board=load_board(info["board"])).model
    t = next(t for t in model.tensors if t.name == tensor)
    data = np.array(t.data)
    data[0] = np.clip(-data[0].astype(np.int32), -127, 127)
    t.data = data
    if accel is not None:
        return compile_vela(serialize_model(model), accel).read_bytes(), vela_debug_db(serialize_model(model), accel)
    result = compile_for_board(serialize_model(model), load_board(info["board"]))
    return result.optimized_model, result.debug_db


def _install(project: Path, vela: tuple[bytes, bytes]) -> None:
    """Replace the project's Vela output (and its debug database) with another compilation."""
    (project / "npu" / "model_vela.tflite").write_bytes(vela[0])
    (project / "npu" / "model_vela_debug.xml").write_bytes(vela[1])


def _vela_ops(project: Path) -> list[str]:
    return _vela_ops_of((project / "npu" / "model_vela.tflite").read_bytes())


def _vela_ops_of(vela: bytes) -> list[str]:
    m = read_tflite(vela)
    names = []
    for op in m.subgraphs[0].operators:
        code = m.operatorCodes[op.opcodeIndex]
        names.append(code.customCode.decode() if code.customCode else str(max(code.builtinCode, code.deprecatedBuiltinCode)))
    return names


def test_vela_leaves_the_9x9_average_pool_between_two_npu_operators_on_the_cpu(mixed):
    info = json.loads((mixed / "build.json").read_text())
    assert info["vela"]["cpu_operators"] == [{"index": 1, "opcode": "AVERAGE_POOL_2D"}]
    assert _vela_ops(mixed) == ["ethos-u", "1", "ethos-u"]  # builtin 1: AVERAGE_POOL_2D
    assert [layer["output_name"] for layer in info["layers"]] == ["conv1", "pool", "output"]


@HOST
def test_npu_model_runs_the_cpu_operator_in_the_projects_c_runtime_and_passes(mixed, capsys):
    rc = main(["run", str(mixed), "--sim", "npu-model", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["passed"]
    (run,) = data["runs"]
    assert run["sim"] == "npu-model"
    assert run["result_line"] == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"
    assert "1 operator Vela left on the CPU in the project's C runtime (host build)" in run["where"]
    assert (mixed / "build-host-steps" / "libedgepack_host_steps.so").is_file()


@HOST
@pytest.mark.parametrize("accel", U55_CONFIGS + ["ethos-u65-256"])
def test_npu_cpu_npu_is_bit_exact_with_tflm_on_200_random_inputs(mixed, accel):
    """The project's plan steps serve Vela's output for any MAC configuration (the CPU operator is
    the same operator of the same folded model)."""
    info = json.loads((mixed / "build.json").read_text())
    host = HostSteps(build_library(mixed), info["layers"], 1, 1)
    vela = compile_vela(_folded_bytes(mixed), accel).read_bytes()
    assert _vela_ops_of(vela) == ["ethos-u", "1", "ethos-u"]
    calls = []
    runner = cpu_op_runner(host, read_tflite(vela), on_output=lambda k, y: calls.append((k, y.shape)))
    x = np.random.default_rng(7).integers(-128, 128, (N_INPUTS, 1, 12, 12, 4), dtype=np.int8)
    got = run_vela_model(vela, [x], runner)[0]
    want = tflm_batch(_folded_bytes(mixed), [x])[0]
    assert got.shape == want.shape == (N_INPUTS, 1, 12, 12, 8)
    np.testing.assert_array_equal(got, want)
    assert calls == [(1, (N_INPUTS, 12 * 12 * 8))]  # plan step 1, the pool, once for the whole batch


@HOST
@pytest.mark.parametrize("tensor, operator, opcode", [("conv1/w", 0, "CONV_2D"), ("conv2/w", 2, "CONV_2D")])
def test_a_wrong_npu_layer_is_named_before_and_after_the_cpu_operator(mixed, tmp_path, tensor, operator, opcode):
    project = _copy(mixed, tmp_path / "fw")
    _install(project, _vela_with_changed_weight(project, tensor))
    (r,) = run_project(project, sim="npu-model")
    assert not r.passed and r.result_line.startswith("EDGEPACK RESULT: FAIL")
    first = r.first_difference
    assert (first["operator"], first["opcode"], first["target"]) == (operator, opcode, "npu")
    assert first["name"] == ("conv1" if operator == 0 else "output")
    assert first["expected"] != first["got"] and first["differing"] > 0
    assert f"first differing layer: operator {operator} {opcode} (npu, output '{first['name']}')" in r.failure


@HOST
@pytest.mark.parametrize("weights, operator, opcode", [
    ("digits_cnn/conv2/Conv2D", 2, "CONV_2D"),  # Vela splits its OFM into two depth stripes
    ("digits_cnn/fc1/MatMul", 5, "FULLY_CONNECTED"),  # after a RESHAPE of the same bytes
    ("digits_cnn/fc2/MatMul", 6, "FULLY_CONNECTED"),  # before the softmax
])
def test_a_wrong_layer_of_the_digits_model_is_named(root, tmp_path, weights, operator, opcode):
    project = _copy(built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "corstone-300"),
                    tmp_path / "fw")
    layer = json.loads((project / "build.json").read_text())["layers"][operator]
    _install(project, _vela_with_changed_weight(project, weights))
    (r,) = run_project(project, sim="npu-model")
    assert not r.passed
    assert (r.first_difference["operator"], r.first_difference["opcode"]) == (operator, opcode)
    assert r.first_difference["name"] == layer["output_name"]
    assert 0 <= r.first_difference["index"] < layer["output_bytes"]


@HOST
def test_a_corrupted_golden_vector_is_blamed_on_the_golden_vectors_not_a_layer(mixed, tmp_path):
    project = _copy(mixed, tmp_path / "fw")
    info = json.loads((project / "build.json").read_text())
    out2 = next(a for a in info["golden_layout"] if a["symbol"] == "ep_golden_out2_0")
    golden = bytearray((project / "data/golden.bin").read_bytes())
    golden[out2["offset"] + 17] = (golden[out2["offset"] + 17] + 1) % 256
    (project / "data/golden.bin").write_bytes(bytes(golden))
    (r,) = run_project(project, sim="npu-model")
    assert not r.passed and r.first_difference is None
    assert "first at input 2 output 0 index 17" in r.result_line
    assert "the CPU path (host build) also differs from the golden outputs: output 0 of input 2 index 17" in r.failure


def test_auto_on_an_npu_board_without_an_fvp_adds_the_functional_model(monkeypatch):
    board = load_board("corstone-300")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no FVP_Corstone_SSE-300_Ethos-U55 here
    assert choose_sims(board, "auto") == ["qemu", "npu-model"]
    assert choose_sims(load_board("corstone-310"), "auto") == ["host", "npu-model"]  # U55-256, no QEMU machine
    assert choose_sims(load_board("corstone-300-u65"), "auto") == ["qemu", "npu-model"]  # U65-256
    assert choose_sims(load_board("corstone-320"), "auto") == ["host"]  # no functional U85 model
    assert choose_sims(load_board("host"), "auto") == ["host"]


@needs("gcc", "cmake", "ninja", "arm-none-eabi-gcc", "qemu-system-arm")
@pytest.mark.skipif(shutil.which("FVP_Corstone_SSE-300_Ethos-U55") is not None, reason="an FVP is installed")
def test_auto_says_it_ran_the_functional_model_because_no_fvp_is_installed(mixed, tmp_path, capsys):
    project = _copy(mixed, tmp_path / "fw")
    rc = main(["run", str(project), "--json"])
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert rc == 0 and [r["sim"] for r in runs] == ["qemu", "npu-model"] and all(r["passed"] for r in runs)
    assert "(--sim auto: no FVP, FVP_Corstone_SSE-300_Ethos-U55 is not on PATH)" in runs[1]["where"]


@HOST
def test_a_project_without_the_host_step_source_is_told_to_rebuild(mixed, tmp_path, capsys):
    project = _copy(mixed, tmp_path / "fw")
    (project / "src" / "host_steps.c").unlink()  # as written by an edgepack before the library
    rc = main(["run", str(project), "--sim", "npu-model"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "src/host_steps.c is missing" in err[0] and "rebuild the project" in err[0]


def _digits_comparison(root, vela: tuple[bytes, bytes]):
    project = built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "corstone-300")
    info = json.loads((project / "build.json").read_text())
    ins, outs = golden_vectors(project, info)
    host = HostSteps(build_library(project), info["layers"], 1, 1)
    return compare_layers(vela[0], [np.stack([row[0] for row in ins])], [np.stack([row[0] for row in outs])], host,
                          read_debug_db(vela[1]))


@HOST
@pytest.mark.parametrize("accel", U55_CONFIGS + ["ethos-u65-256"])
def test_per_layer_comparison_blames_nothing_in_a_correct_compilation_and_the_right_layer_in_a_wrong_one(root, accel):
    """Vela stripes and splits differently per MAC configuration; the comparison follows."""
    project = built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "corstone-300")
    right = _digits_comparison(root, (compile_vela(_folded_bytes(project), accel).read_bytes(),
                                      vela_debug_db(_folded_bytes(project), accel)))
    assert right.reference_matches_golden and right.mismatch is None
    wrong = _digits_comparison(root, _vela_with_changed_weight(project, "digits_cnn/conv2/Conv2D", accel))
    assert (wrong.mismatch.operator, wrong.mismatch.opcode) == (2, "CONV_2D")
