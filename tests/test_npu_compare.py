"""Specification: when the NPU path differs, `edgepack run --sim npu-model` names the operator that
really differs, through Vela's debug database (command-stream offset -> input operator), however
Vela orders, fuses or places the operations: a residual block whose branches Vela runs in the other
order, a CONCATENATION (and RESHAPE) Vela runs in place with no operation of its own, and one
layer's data corrupted inside Vela's output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgepack.build import build
from edgepack.npu.debugdb import read_debug_db
from edgepack.sim import run_project

from .firmware_support import needs
from .npu_graphs import concat_model, corrupt_npu_bias, fused_relu_model, residual_model

HOST = needs("gcc", "cmake", "ninja")
BOARDS = ["corstone-300", "corstone-300-u65"]


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("npu-compare")
    out = {}
    for name, model in (("residual", residual_model()), ("concat", concat_model()), ("fused", fused_relu_model())):
        src = root / f"{name}.tflite"
        src.write_bytes(model)
        for board in BOARDS:
            out[(name, board)] = root / f"{name}_{board}"
            build(str(src), board, out[(name, board)], cpu_only=True)  # the npu-model run + comparison
    return out


def _db(project: Path):
    return read_debug_db((project / "npu" / "model_vela_debug.xml").read_bytes())


def _execution_order(project: Path) -> list[int]:
    ops = _db(project).operations
    return [ops[key].operators[0] for key in sorted(ops)]


def _corrupted_run(project: Path, tmp_path: Path, operator: int):
    fw = tmp_path / "fw"
    shutil.copytree(project, fw, ignore=shutil.ignore_patterns("build", "build-host*"))
    vela = fw / "npu" / "model_vela.tflite"
    vela.write_bytes(corrupt_npu_bias(vela.read_bytes(), _db(fw), operator))
    (r,) = run_project(fw, sim="npu-model")
    return r


@pytest.mark.parametrize("board", BOARDS)
def test_vela_runs_the_second_branch_before_the_first_and_the_concatenation_in_place(projects, board):
    assert _execution_order(projects[("residual", board)]) == [0, 2, 1, 3]
    # the CONCATENATION (3) and RESHAPE (4) have no NPU operation: 1 and 2 write into the slices
    assert _execution_order(projects[("concat", board)]) == [0, 1, 2, 5]


@HOST
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("model", ["residual", "concat"])
def test_correct_compilations_pass(projects, model, board):
    (r,) = run_project(projects[(model, board)], sim="npu-model")
    assert r.passed, r.failure


@HOST
@pytest.mark.parametrize("model, operator, name, board", [
    ("residual", 1, "a", "corstone-300"),  # runs after operator 2: execution order blamed the ADD
    ("residual", 1, "a", "corstone-300-u65"),
    ("residual", 2, "b", "corstone-300"),
    ("concat", 2, "b", "corstone-300"),  # writes the second half of the in-place CONCATENATION
    ("concat", 2, "b", "corstone-300-u65"),
    ("concat", 5, "out", "corstone-300"),  # after the RESHAPE of the concatenation
])
def test_a_layer_corrupted_in_vela_output_is_named(projects, tmp_path, model, board, operator, name):
    r = _corrupted_run(projects[(model, board)], tmp_path, operator)
    assert not r.passed and r.result_line.startswith("EDGEPACK RESULT: FAIL")
    first = r.first_difference
    assert (first["operator"], first["opcode"], first["name"], first["target"]) == (operator, "CONV_2D", name, "npu")
    assert first["expected"] != first["got"]
    info = json.loads((projects[(model, board)] / "build.json").read_text())
    assert "npu/model_vela_debug.xml" in info["files"]
    assert f"first differing layer: operator {operator} CONV_2D (npu, output '{name}')" in r.failure


@HOST
@pytest.mark.parametrize("board", BOARDS)
def test_a_convolution_vela_fused_with_the_relu_after_it_is_named_with_the_relu(projects, tmp_path, board):
    """One NPU operation computes operators 0 and 1; its OFM is the RELU's output, so a wrong
    convolution shows as the RELU's layer, named with the operator it is fused with."""
    project = projects[("fused", board)]
    assert _db(project).operations[min(_db(project).operations)].operators == (0, 1)
    r = _corrupted_run(project, tmp_path, 0)
    first = r.first_difference
    assert (first["operator"], first["opcode"], first["name"]) == (1, "RELU", "relu")
    assert first["fused_with"] == [{"operator": 0, "opcode": "CONV_2D"}]
    assert "operator 1 RELU (npu, output 'relu') fused by Vela with operator 0 CONV_2D, at input" in r.failure


@HOST
def test_a_project_without_the_debug_database_is_told_to_rebuild(projects, tmp_path):
    fw = tmp_path / "fw"
    shutil.copytree(projects[("residual", "corstone-300")], fw, ignore=shutil.ignore_patterns("build", "build-host*"))
    vela = fw / "npu" / "model_vela.tflite"
    vela.write_bytes(corrupt_npu_bias(vela.read_bytes(), _db(fw), 1))
    (fw / "npu" / "model_vela_debug.xml").unlink()
    (r,) = run_project(fw, sim="npu-model")
    assert not r.passed and r.first_difference is None
    assert "no per-layer comparison: npu/model_vela_debug.xml is missing" in r.failure and "rebuild" in r.failure
