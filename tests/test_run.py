"""`edgepack run`: the generated firmware, built with CMake + Ninja for real and run under QEMU
(mps3-an547) and on the host (ASan/UBSan), matches TFLM bit for bit; failures (a mismatch, a
hang, a hard fault, a missing toolchain) are clear and non-zero."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgepack.cli import main
from edgepack.errors import BuildError
from edgepack.project import build_firmware
from edgepack.sim import run_project

from .conftest import INT8_MODELS, fixture_path
from .firmware_support import built_project, needs

ARM = needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")
HOST = needs("gcc", "cmake", "ninja")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("run")


@ARM
@pytest.mark.parametrize("board", ["corstone-300", "mps3-an547"])
@pytest.mark.parametrize("model", INT8_MODELS)
def test_every_fixture_runs_bit_exactly_under_qemu(root, model, board):
    project = built_project(root, fixture_path(model), board)
    (result,) = run_project(project, sim="qemu", timeout=120)
    assert result.passed, result.failure or result.output
    assert result.result_line == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"
    assert [layer["opcode"] for layer in result.layers] == [
        "CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
        "FULLY_CONNECTED", "SOFTMAX"]
    assert result.instructions and result.instructions > 100_000
    # the map file places every region where the board says, within its size
    regions = {m["region"]: m for m in result.memory}
    assert regions["DDR"]["sections"][".edgepack_model"] >= 16_000
    assert regions["SRAM"]["sections"][".edgepack_arena"] == json.loads(
        (project / "build.json").read_text())["arena_bytes"]
    assert all(m["used"] <= m["size"] for m in result.memory)
    for image in ("firmware.elf", "firmware.bin", "firmware.hex", "itcm.bin", "ddr.bin"):
        assert (project / "build" / image).stat().st_size > 0


@ARM
@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an500", "mps2-an505"])
def test_a_generated_project_runs_bit_exactly_on_the_dsp_only_boards(root, board):
    """Cortex-M4 / M7 / M33 (DSP paths, no Helium): the project builds for the board and passes."""
    project = built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), board)
    (result,) = run_project(project, sim="qemu", timeout=120)
    assert result.passed, result.failure or result.output
    assert result.result_line == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"
    assert f"QEMU {board}" in result.where
    assert all(m["used"] <= m["size"] for m in result.memory)


@HOST
@pytest.mark.parametrize("model", INT8_MODELS)
def test_every_fixture_runs_bit_exactly_on_the_host_under_sanitizers(root, model):
    project = built_project(root, fixture_path(model), "host")
    (result,) = run_project(project, sim="host", sanitize=True, timeout=120)
    assert result.passed, result.failure or result.output
    assert "ASan/UBSan" in result.where
    assert "runtime error" not in result.output and "AddressSanitizer" not in result.output


@ARM
def test_auto_runs_qemu_and_the_functional_npu_model_and_the_cli_says_where(root, capsys):
    project = built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "corstone-300")
    rc = main(["run", str(project), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["passed"]
    sims = [r["sim"] for r in data["runs"]]
    assert sims[0] == "qemu" and "npu-model" in sims
    assert "QEMU mps3-an547" in data["runs"][0]["where"]
    assert "functional Ethos-U model" in data["runs"][sims.index("npu-model")]["where"]


def _copy(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns("build", "build-host*"))
    return dest


@ARM
def test_a_wrong_output_fails_with_the_first_differing_index(root, tmp_path, capsys):
    project = _copy(built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "mps3-an547"),
                    tmp_path / "fw")
    info = json.loads((project / "build.json").read_text())
    out1 = next(a for a in info["golden_layout"] if a["symbol"] == "ep_golden_out1_0")
    golden = bytearray((project / "data/golden.bin").read_bytes())
    expected = golden[out1["offset"] + 3]
    golden[out1["offset"] + 3] = (expected + 1) % 256  # TFLM "said" something else at index 3
    (project / "data/golden.bin").write_bytes(bytes(golden))
    rc = main(["run", str(project), "--sim", "qemu"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL 3/4 inputs, 1 mismatched bytes; first at input 1 output 0 index 3" in " ".join(out.split())


def _patch_main(project: Path, before: str, after: str) -> None:
    main_c = project / "src/main.c"
    text = main_c.read_text()
    assert before in text
    main_c.write_text(text.replace(before, after, 1))


@ARM
def test_a_hang_is_a_timeout_not_a_stuck_test(root, tmp_path):
    project = _copy(built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "mps3-an547"),
                    tmp_path / "fw")
    _patch_main(project, "    ep_platform_init();\n", "    ep_platform_init();\n    for (;;) {\n    }\n")
    (result,) = run_project(project, sim="qemu", timeout=3)
    assert not result.passed and "timed out after 3 s" in result.failure


@ARM
def test_a_hard_fault_is_reported_and_exits_non_zero(root, tmp_path):
    project = _copy(built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "mps3-an547"),
                    tmp_path / "fw")
    _patch_main(project, "    ep_platform_init();\n",
                "    ep_platform_init();\n    *(volatile uint32_t *)0xFFFFFFF0u = 1u;\n")
    (result,) = run_project(project, sim="qemu", timeout=30)
    assert not result.passed and result.failure.startswith("Hard fault")
    assert result.exit_code == 3


def test_a_missing_toolchain_names_the_apt_package(root, tmp_path, monkeypatch):
    project = built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "mps3-an547")
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "arm-none-eabi-gcc" else real_which(name, *a, **k))
    with pytest.raises(BuildError, match="apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        build_firmware(project)


def test_run_of_a_directory_that_is_not_a_project_is_a_usage_error(tmp_path, capsys):
    assert main(["run", str(tmp_path)]) == 2
    assert "build.json is missing" in capsys.readouterr().err
