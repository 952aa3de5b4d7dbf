"""What the commands print, as a user's terminal or a CI script sees it: with --json only one
JSON document on stdout (progress and messages go elsewhere); without it, text that stays
readable in 80 columns (no line longer, tables not wrapped into pieces). Each command runs as
its own process, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import fixture_path
from .firmware_support import needs

MODEL = fixture_path("digits_b_cluster16_int8.tflite")
ARM = needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")


def edgepack(*argv: str, columns: int = 80, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS=str(columns), TERM="dumb")
    return subprocess.run([sys.executable, "-m", "edgepack", *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=600)


def _fits(text: str, columns: int = 80) -> list[str]:
    return [ln for ln in text.splitlines() if len(ln.rstrip()) > columns]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "fw"
    r = edgepack("build", MODEL, "--board", "corstone-300", "-o", out, "--cpu-only", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert info["board"] == "corstone-300"
    return out


def test_build_text_fits_80_columns_with_labelled_rows(tmp_path):
    r = edgepack("build", MODEL, "-o", "fw", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _fits(r.stdout) == []
    lines = r.stdout.splitlines()
    assert lines[0].startswith("model      ")  # long paths fold inside the value column
    for label in ("project", "board", "fold", "agreement", "Vela", "operators", "NPU path", "arena", "golden"):
        assert any(ln.startswith(f"{label} ") for ln in lines), label
    table = [ln for ln in lines if ln.startswith("│")]
    assert [ln.split("│")[1].strip() for ln in table] == ["DTCM", "SRAM", "DDR"]
    assert lines[-1] == "next: edgepack run fw"


@pytest.mark.parametrize("argv", [
    ("inspect", MODEL, "--json"),
    ("boards", "--json"),
    ("boards", "--board", "corstone-300", "--json"),
])
def test_json_stdout_is_exactly_one_document(argv):
    r = edgepack(*argv)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)


def test_fold_json_is_exactly_one_document(tmp_path):
    r = edgepack("fold", MODEL, "-o", tmp_path / "f.tflite", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == str(tmp_path / "f.tflite")


def test_report_json_is_exactly_one_document(project):
    r = edgepack("report", project, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == "edgepack-report/1"


@ARM
def test_run_json_and_text(project):
    r = edgepack("run", project, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["passed"] and [run["sim"] for run in info["runs"]] == ["qemu", "npu-model"]
    r = edgepack("run", project, "--sim", "qemu")
    assert r.returncode == 0, r.stderr
    assert _fits(r.stdout) == []
    lines = r.stdout.splitlines()
    assert lines[0].startswith("PASS CPU path under QEMU mps3-an547")
    assert lines[1].startswith("  EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes (")
    # one row per layer: index, operator, count, all on one line
    rows = [ln.split() for ln in lines if ln.startswith("    ") and ln.split()[0].isdigit()]
    assert [row[1] for row in rows] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D",
                                        "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    assert all(int(row[2].replace(",", "")) > 0 for row in rows)
    regions = [ln.split()[0] for ln in lines if ln.startswith("    ") and not ln.split()[0].isdigit()]
    assert regions[:1] == ["#"] and {"ITCM", "DTCM", "SRAM", "DDR"} <= set(regions)


def test_inspect_fold_boards_and_report_text_fit_80_columns(tmp_path, project):
    for argv in (("inspect", MODEL), ("fold", MODEL, "-o", tmp_path / "f.tflite"),
                 ("boards",), ("report", project)):
        r = edgepack(*argv)
        assert r.returncode == 0, r.stderr
        assert _fits(r.stdout) == [], argv
