"""Spec: on NPU boards the firmware drives the Ethos-U. `edgepack run` without an FVP runs the real
firmware ELF under QEMU mps3-an547 with the NPU co-simulated (edgepack/npu/cosim.py): the
firmware's driver programs the registers at their real address, the command streams run in the
functional model against the firmware's memory, CPU steps run between NPU steps, and outputs
match the golden vectors byte for byte. Every problem ends the run with one line naming the
step and the cause: a wrong region, a configuration mismatch, an absent NPU.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from edgepack.boards import load_board
from edgepack.build import build
from edgepack.project import build_firmware
from edgepack.sim import run_project, run_qemu, run_qemu_cosim

from .conftest import fixture_path
from .firmware_support import needs
from .mobilenet_model import small_mobilenet
from .npu_support import npu_cpu_npu_model

pytestmark = needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")
FIXTURES = ["digits_a_baseline_int8.tflite", "digits_b_cluster16_int8.tflite",
            "digits_b_cluster16_int8_pertensor.tflite", "digits_c_prune50_cluster16_sp_int8.tflite"]
BOARDS = ["corstone-300", "corstone-300-u65"]
COSIM = "co-simulated (edgepack's functional Ethos-U55 model under QEMU)"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cosim")


def _build(root: Path, model: Path, board: str, **kw) -> Path:
    out = root / f"{model.stem}_{board}{'_cpu' if kw.get('cpu_only') else ''}"
    if not (out / "build.json").exists():
        build(str(model), board, out, **kw)
    return out


def _assert_cosim_pass(project: Path):
    info = json.loads((project / "build.json").read_text())
    (r,) = run_project(project)  # auto: no FVP here, so QEMU with the NPU co-simulated
    assert r.sim == "cosim" and r.npu_ran == COSIM, r.where
    assert r.passed, r.failure + "\n" + r.output[-2000:]
    assert r.result_line == f"EDGEPACK RESULT: PASS {info['golden_count']}/{info['golden_count']} inputs, 0 mismatched bytes"
    assert r.npu_streams == len(info["npu_steps"]) * info["golden_count"]  # the firmware kicked every stream
    return info, r


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_models_run_with_the_firmware_driving_the_cosimulated_npu(root, name, board):
    project = _build(root, fixture_path(name), board)
    info, r = _assert_cosim_pass(project)
    assert info["plan_kind"] == "mixed"
    assert [layer["kernel"] for layer in info["layers"]] == ["EP_KERNEL_ETHOSU"]  # all on the NPU
    # the NPU step's time is Vela's estimate, kept apart from the CPU's count
    assert r.layers[0]["npu_estimate_cycles"] == info["npu_steps"][0]["estimated_cycles"] * info["golden_count"] > 0


def test_cpu_steps_run_between_npu_steps(root):
    model = root / "npu_cpu_npu.tflite"
    model.write_bytes(npu_cpu_npu_model())
    project = _build(root, model, "corstone-300")
    info, _run = _assert_cosim_pass(project)
    kinds = [layer["runs_on"] for layer in info["layers"]]
    assert kinds[0] == "npu" and kinds[-1] == "npu" and "cpu" in kinds[1:-1], kinds
    assert len(info["npu_steps"]) >= 2


def test_mobilenet_v2_runs_with_the_cosimulated_npu(root):
    model = root / "mobilenet_small.tflite"
    model.write_bytes(small_mobilenet().tflite)
    _assert_cosim_pass(_build(root, model, "corstone-300"))


def test_cpu_only_firmware_still_runs_every_operator_on_the_cpu(root):
    # (tests/test_run.py runs every fixture's --cpu-only firmware for corstone-300 under QEMU)
    project = _build(root, fixture_path(FIXTURES[1]), "corstone-300-u65", cpu_only=True)
    info = json.loads((project / "build.json").read_text())
    assert info["plan_kind"] == "cpu" and not info["npu_steps"]
    assert all(layer["runs_on"] == "cpu" for layer in info["layers"])
    results = run_project(project, sim="qemu")
    assert results[0].passed, results[0].failure


def test_plain_qemu_has_no_npu_and_the_firmware_says_so(root):
    project = _build(root, fixture_path(FIXTURES[0]), "corstone-300")
    r = run_qemu(build_firmware(project), load_board("corstone-300"), 60)
    assert not r.passed
    assert r.failure == "FAIL NPU init: NPU absent (ID register reads 0) (status -17)"


def test_an_npu_of_another_configuration_is_refused(root):
    project = _build(root, fixture_path(FIXTURES[0]), "corstone-300")
    info = json.loads((project / "build.json").read_text())
    r = run_qemu_cosim(build_firmware(project), load_board("corstone-300"), info, 60, accelerator="ethos-u55-256")
    assert not r.passed and r.npu_streams == 0
    assert r.failure == ("FAIL step 0 (0 ETHOS_U) on input 0: payload compiled for another NPU configuration "
                         "(CONFIG) (status -21)")


def _broken_project(root: Path, dest: Path, region: int, delta: int) -> tuple[Path, dict]:
    """The digits project with NPU region `region`'s arena offset moved by `delta` in model_plan.c."""
    shutil.copytree(_build(root, fixture_path(FIXTURES[0]), "corstone-300"), dest,
                    ignore=shutil.ignore_patterns("build", "build-*"))
    info = json.loads((dest / "build.json").read_text())
    r = info["npu_steps"][0]["regions"][region]
    plan = dest / "src" / "model_plan.c"
    text = plan.read_text()
    old = f".arena_offset = {r['arena_offset']},\n        .bytes = {r['bytes']}\n"
    assert text.count(old) >= 1
    # the region's entry is the (region)-th "{ .address = ..." of the initializer: replace that one
    head, sep, tail = text.partition(".regions = {{")
    parts = tail.split(".address = ")
    parts[region + 1] = parts[region + 1].replace(old, f".arena_offset = {r['arena_offset'] + delta},\n"
                                                      f"        .bytes = {r['bytes']}\n", 1)
    plan.write_text(head + sep + ".address = ".join(parts))
    return dest, info


def test_a_region_moved_inside_the_arena_is_named_by_the_cosimulation(root, tmp_path):
    # the input region 16 bytes lower: aligned and inside the arena, so the firmware cannot tell;
    # the co-simulation checks every base pointer against the plan before running the stream
    project, info = _broken_project(root, tmp_path / "moved", 3, -16)
    r = run_qemu_cosim(build_firmware(project), load_board("corstone-300"), info, 60)
    assert not r.passed and r.npu_streams == 0
    assert re.fullmatch(r"step 0 \(ETHOS_U, operators 0-7\): region 3 \(input serving_default_input:0\) "
                        r"base pointer 0x[0-9a-f]{8} is not the plan's 0x[0-9a-f]{8} \(arena \+ 4528\)",
                        r.failure), r.failure


def test_a_region_outside_the_arena_is_refused_by_the_firmware(root, tmp_path):
    project, info = _broken_project(root, tmp_path / "outside", 1, 64)
    r = run_qemu_cosim(build_firmware(project), load_board("corstone-300"), info, 60)
    assert not r.passed and r.npu_streams == 0
    assert r.failure == ("FAIL step 0 (0 ETHOS_U) on input 0: command stream or region misaligned or outside "
                         "the arena (status -23)")
