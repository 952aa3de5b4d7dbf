"""The Corstone FVP path of `edgepack run`.

Where an Arm Corstone FVP is installed, every NPU board whose FVP binary is on PATH runs a
fixture bit-exactly on it. No FVP can be installed on the CI machines (Arm ships them as a
separate download), so those tests skip there, naming the missing binary; what can be checked
without one is checked here: the exact command line edgepack gives the FVP (from the board
file), and that the firmware needs nothing but UART0 to report and EOT to stop, the two things
an FVP run relies on (semihosting may be off on an FVP and is absent on a board).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edgepack.boards import list_boards, load_board
from edgepack.cli import main
from edgepack.project import build_firmware
from edgepack.sim import choose_sims, fvp_command, run_project

from .conftest import fixture_path
from .firmware_support import built_project, needs

ARM = needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")
FVP_BOARDS = sorted(b.name for b in list_boards() if b.npu is not None and b.sim.fvp)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fvp")


def test_every_npu_board_names_its_fvp():
    assert FVP_BOARDS == ["corstone-300", "corstone-300-u65", "corstone-310", "corstone-320"]


@pytest.mark.parametrize("board_name", FVP_BOARDS)
def test_fixture_runs_bit_exactly_on_the_boards_fvp(root, board_name):
    board = load_board(board_name)
    if shutil.which(board.sim.fvp) is None:
        pytest.skip(f"{board.sim.fvp} is not on PATH (Arm's Corstone FVPs are a separate "
                    "download from developer.arm.com; none can be installed here)")
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("cmake") is None:
        pytest.skip("not installed: arm-none-eabi-gcc / cmake")
    project = built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), board_name)
    (result,) = run_project(project, sim="fvp", timeout=300)
    assert result.passed, result.failure or result.output
    assert result.result_line == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"
    assert result.command[0] == shutil.which(board.sim.fvp)
    assert [layer["opcode"] for layer in result.layers][0] == "CONV_2D"
    # auto picks the FVP when it is installed, and still runs the NPU path in the model
    assert choose_sims(board, "auto")[0] == "fvp"


def test_fvp_command_line_for_corstone_300_comes_from_the_board_file(tmp_path):
    board = load_board("corstone-300")
    elf = tmp_path / "build" / "firmware.elf"
    cmd = fvp_command("/opt/fvp/FVP_Corstone_SSE-300_Ethos-U55", elf, board, 120)
    assert cmd == [
        "/opt/fvp/FVP_Corstone_SSE-300_Ethos-U55", "-a", str(elf),
        "-C", "ethosu.num_macs=128",
        "-C", "mps3_board.visualisation.disable-visualisation=1",
        "-C", "mps3_board.telnetterminal0.start_telnet=0",
        "-C", "mps3_board.uart0.out_file=-",
        "-C", "mps3_board.uart0.unbuffered_output=1",
        "-C", "mps3_board.uart0.shutdown_on_eot=1",
        "--stat", "--timelimit", "120"]
    # a board file's own parameters go through unchanged, in order
    assert fvp_command("FVP", elf, load_board("corstone-300-u65"), 7)[4:7] == [
        "ethosu.num_macs=256", "-C", "mps3_board.visualisation.disable-visualisation=1"]
    # the newer Corstone-310/320 FVPs name the board mps4_board
    assert all(not p.startswith("mps3_board.") for p in load_board("corstone-310").sim.fvp_params)


def test_fvp_board_files_send_uart0_to_stdout_and_stop_on_eot():
    for name in FVP_BOARDS:
        params = load_board(name).sim.fvp_params
        prefix = "mps3_board" if name.startswith("corstone-300") else "mps4_board"
        for needed in ("uart0.out_file=-", "uart0.shutdown_on_eot=1",
                       "telnetterminal0.start_telnet=0", "visualisation.disable-visualisation=1"):
            assert f"{prefix}.{needed}" in params, (name, needed)
        assert any(p.split("=")[0].endswith("ethosu.num_macs") for p in params), name


def test_sim_fvp_without_the_fvp_is_one_line_and_exit_1(root, capsys):
    board = load_board("corstone-300")
    if shutil.which(board.sim.fvp):
        pytest.skip(f"{board.sim.fvp} is installed here")
    project = root / "no_fvp"
    assert main(["build", str(fixture_path("digits_b_cluster16_int8.tflite")), "-o",
                 str(project)]) == 0
    capsys.readouterr()
    assert main(["run", str(project), "--sim", "fvp"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edgepack: error: board corstone-300: FVP {board.sim.fvp} is not on PATH "
                   "(Arm's Corstone FVPs are a separate download from developer.arm.com)"]


def _read_until_eot(cmd: list[str], cwd: Path, timeout: float) -> tuple[bytes, bool]:
    """Everything `cmd` writes up to and including EOT (0x04); whether it was still running
    then (it is stopped afterwards: without semihosting nothing else ends QEMU)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\x04" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        time.sleep(0.3)
        running = proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    return out, running


@ARM
def test_firmware_reports_over_uart0_and_ends_with_eot_without_semihosting(root):
    """As on an FVP or a board: QEMU without semihosting, so the only way out is UART0. The
    result line arrives over the UART, EOT is the last byte, and the semihosting exit call that
    follows it (for QEMU's exit status) is skipped by the fault handler instead of faulting."""
    project = built_project(root, fixture_path("digits_b_cluster16_int8.tflite"), "corstone-300")
    build_dir = build_firmware(project)
    cmd = ["qemu-system-arm", "-M", "mps3-an547", "-display", "none", "-serial", "stdio",
           "-monitor", "none", "-kernel", str(build_dir / "firmware.elf")]
    out, running = _read_until_eot(cmd, build_dir, timeout=120)
    text = out.decode("utf-8", "replace")
    assert out.endswith(b"\x04"), text[-500:]
    assert out.count(b"\x04") == 1
    assert text.rstrip("\x04").rstrip().splitlines()[-1] == \
        "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"
    assert "Hard fault" not in text and "Lockup" not in text
    assert running, "the firmware should idle after EOT (the FVP stops on EOT), not crash QEMU"
