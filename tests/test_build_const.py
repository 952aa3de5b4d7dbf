"""Spec: ADD and MUL whose operand is a constant tensor (full shape or broadcast, first or second
operand, one constant shared by two operators) build and run bit-exactly against TFLM.

The constant lives once in the model data; the plan refers to it as `EP_CONST(k)`
(`ep_model_constants[k]` in model_plan.c) instead of an arena offset, and the arena planner
gives it no space. The model runs on the host under ASan/UBSan, on mps3-an547 under QEMU, and
on corstone-300 through the functional Ethos-U model (Vela takes the elementwise operators).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgepack import codegen
from edgepack.cli import main
from edgepack.tflite import read_model
from tests.firmware_support import needs
from tests.opmodels import run_tflm
from tests.test_build_ops import Graph, build_cli, run_cli

SEED = 20260
OPERATORS = ["CONV_2D", "ADD", "MUL", "ADD", "MUL", "ADD"]


def const_operand_model(seed: int = SEED) -> bytes:
    """x -> CONV 1x1 (something to fold) -> ADD(., full) -> MUL(., per-channel [1,1,1,C]) -> ADD([1,H,1,1] row, .) ->
    MUL(., full: the first ADD's constant again) -> ADD(., scalar [1,1,1,1])."""
    g = Graph(seed)
    rng = np.random.default_rng(seed)
    x = g.act([1, 6, 6, 4])
    full = g.const(rng.integers(-128, 128, size=(1, 6, 6, 4)), np.int8, 0.03, 5)
    chan = g.const(rng.integers(-128, 128, size=(1, 1, 1, 4)), np.int8, 0.02, -3)
    row = g.const(rng.integers(-128, 128, size=(1, 6, 1, 1)), np.int8, 0.05, 0)
    scalar = g.const(np.array([[[[77]]]]), np.int8, 0.01, -10)
    a = g.add(g.conv(x, 4, 1), full)
    m = g.mul(a, chan)
    r = g.add(row, m)  # the constant is the first operand
    m2 = g.mul(r, full)  # shares the first ADD's constant
    return g.model([x], [g.add(m2, scalar)])


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("const_model") / "const_operands.tflite"
    path.write_bytes(const_operand_model())
    return path


def test_the_test_model_is_not_saturated(model_path):
    """Guard: outputs spread over many int8 values, so a wrong constant or offset shows."""
    rng = np.random.default_rng(SEED)
    out = run_tflm(model_path.read_bytes(), [rng.integers(-128, 128, size=(1, 6, 6, 4)).astype(np.int8)])
    assert len(np.unique(out)) >= 16, out


def test_constant_operands_stay_in_the_model_data_not_the_arena(model_path):
    model = read_model(model_path)
    steps, blob = codegen.lower_model(model, {})
    arena = codegen.plan_arena(model, steps)
    constants = {t.index for t in model.tensors if t.is_constant}
    constants -= {model.operators[0].inputs[1], model.operators[0].inputs[2]}  # conv weights, bias
    assert len(constants) == 4
    assert [s.opcode for s in steps] == OPERATORS
    assert set().union(*(s.constants for s in steps)) == constants
    assert not constants & set(arena.offsets)
    # one array per constant tensor, even when two operators read it
    const_arrays = [a for a in blob.arrays if a.what == "constant operands"]
    assert sorted(a.size for a in const_arrays) == [1, 4, 6, 144]


@needs("cmake", "ninja", "gcc")
def test_host_build_runs_bit_exactly_under_sanitizers(model_path, tmp_path, capsys):
    project = tmp_path / "fw"
    info = build_cli(model_path, project, capsys, "--board", "host")
    assert [layer["opcode"] for layer in info["layers"]] == OPERATORS
    plan = (project / "src" / "model_plan.c").read_text()
    assert "ep_model_constants, 4" in plan
    # the second MUL reads its constant as EP_CONST(0), the same as the first ADD
    refs = re.findall(r"_inputs\[\] = \{ ([^}]*) \}", plan)
    assert [r.count("EP_CONST") for r in refs] == [0, 1, 1, 1, 1, 1]
    assert "EP_CONST(0)" in refs[1] and "EP_CONST(0)" in refs[4]
    assert refs[3].startswith("EP_CONST(")  # constant first operand
    run = run_cli(project, capsys, "--sim", "host", "--sanitize")
    (result,) = run["runs"]
    assert result["result_line"].startswith("EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes")
    assert "ASan/UBSan" in result["where"]


@needs("cmake", "ninja", "arm-none-eabi-gcc", "qemu-system-arm")
def test_mps3_an547_build_runs_bit_exactly_under_qemu(model_path, tmp_path, capsys):
    project = tmp_path / "fw"
    build_cli(model_path, project, capsys, "--board", "mps3-an547")
    run = run_cli(project, capsys, "--sim", "qemu")
    (result,) = run["runs"]
    assert result["sim"] == "qemu"
    assert result["result_line"].startswith("EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes")
    assert [layer["opcode"] for layer in result["layers"]] == OPERATORS


@needs("cmake", "ninja", "gcc")
def test_corstone_300_npu_model_runs_bit_exactly(model_path, tmp_path, capsys):
    project = tmp_path / "fw"
    build_cli(model_path, project, capsys, "--board", "corstone-300", "--cpu-only")
    rc = main(["run", str(project), "--sim", "npu-model", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["passed"], data
    (result,) = data["runs"]
    assert result["sim"] == "npu-model"
    assert result["result_line"] == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"
