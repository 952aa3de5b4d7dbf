"""The build report: report.json (schema edgepack-report/1) and report.html, from real builds.

Every figure is checked against what the build itself recorded (build.json) or recomputes from
the fixture, and the page is loaded in headless Chromium, which must run its script without an
error and show the layer table; the screenshot is kept in tests/_artifacts/.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgepack import report as rp
from edgepack.build import build
from edgepack.cli import main
from edgepack.tflite import read_model
from tests.conftest import fixture_path

ARTIFACTS = Path(__file__).parent / "_artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MODEL = "digits_b_cluster16_int8.tflite"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """One real build per board kind: corstone-300 (Ethos-U55) and mps3-an547 (no NPU)."""
    root = tmp_path_factory.mktemp("report")
    out = {}
    for board in ("corstone-300", "mps3-an547"):
        d = root / board
        build(str(fixture_path(MODEL)), board, d)
        out[board] = d
    return out


def _load(d: Path) -> tuple[dict, dict]:
    return (json.loads((d / "report.json").read_text()), json.loads((d / "build.json").read_text()))


def test_every_build_writes_both_report_files(builds):
    for d in builds.values():
        assert (d / "report.json").is_file() and (d / "report.html").is_file()
        html = (d / "report.html").read_text()
        # self-contained: nothing is fetched from anywhere
        assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in html and "<link" not in html and "src=" not in html


def test_summary_matches_the_build_figures(builds):
    rep, b = _load(builds["corstone-300"])
    assert rep["schema"] == rp.SCHEMA
    assert rep["board"]["name"] == "corstone-300" and rep["board"]["npu"] == "ethos-u55-128"
    assert rep["model"]["sha256"] == read_model(fixture_path(MODEL)).sha256
    w = rep["weights"]
    assert w["dense_int8"] == b["weight_bytes_dense"] == 38160  # fixtures/README: 38,160 weights
    assert w["packed"] == b["weight_bytes_folded"]
    assert w["vela_dense"] == b["vela"]["raw"]["encoded_weight_bytes"]
    assert w["vela_folded"] == b["vela"]["folded"]["encoded_weight_bytes"]
    assert rep["npu_cycles"] == {"before": b["vela"]["raw"]["total_cycles"],
                                 "after": b["vela"]["folded"]["total_cycles"]}
    # a 16-cluster model: 4-bit indices, so about half the dense bytes, and the NPU gains too
    assert w["entropy_bound"] <= w["folded"] <= w["packed"] < 0.55 * w["dense_int8"]
    assert w["vela_folded"] < w["vela_dense"]
    assert rep["npu_cycles"]["after"] < rep["npu_cycles"]["before"]
    assert rep["agreement"]["samples"] == b["fold_agreement"]["samples"]
    assert rep["fits"] is True and rep["problems"] == []
    assert rep["summary"]["folded_vs_dense"] == round(w["packed"] / w["dense_int8"], 4)


def test_memory_regions_are_the_boards_with_the_builds_needs(builds):
    rep, b = _load(builds["corstone-300"])
    names = [r["name"] for r in rep["memory"]]
    assert names == ["ITCM", "DTCM", "SRAM", "DDR"]  # boards/corstone-300.toml, in order
    by_name = {r["name"]: r for r in rep["memory"]}
    for need in b["regions"]:
        # every byte the build placed is accounted for, split by what uses it
        assert sum(by_name[need["region"]]["parts"].values()) >= need["needed"]
    sram = by_name["SRAM"]["parts"]
    assert sram["tensor arena"] == b["arena_bytes"]
    assert sram["NPU arena (Vela)"] == b["vela"]["folded"]["sram_used_bytes"]
    assert by_name["DDR"]["parts"]["model data + golden vectors"] == (b["model_data_bytes"]
                                                                      + b["golden_bytes"])
    for r in rep["memory"]:
        assert r["used"] == sum(r["parts"].values()) and r["free"] == r["size"] - r["used"]


def test_layer_table_has_every_operator_with_its_fold(builds):
    rep, b = _load(builds["corstone-300"])
    model = read_model(fixture_path(MODEL))
    assert [(l["index"], l["op_type"]) for l in rep["layers"]] == \
        [(op.index, op.opcode) for op in model.operators]
    for layer, info in zip(rep["layers"], b["operators"]):
        op = model.operators[layer["index"]]
        assert layer["output_shape"] == list(model.tensors[op.outputs[0]].shape)
        assert layer["arena_offset"] == info["output_offset"]
        assert layer["arena_size"] == model.tensors[op.outputs[0]].size
        assert layer["target"] == info["target"].upper()
        if layer["weight_shape"] is None:
            assert layer["dense_bytes"] == layer["packed_bytes"] == 0
            continue
        w = model.tensors[op.inputs[1]]
        assert layer["weight_shape"] == list(w.shape)
        assert layer["dense_bytes"] == w.data.size
        assert layer["clusters"] <= 16 and layer["index_bits"] == 4
        assert layer["folded_bytes"] == layer["clusters"] + -(-w.data.size * 4 // 8)
        assert layer["sqnr_db"] is None or layer["sqnr_db"] > 20
    assert rep["summary"]["layers"] == {"total": 8, "npu": 8, "cpu": 0, "weights": 4,
                                        "folded": 4}


def test_board_without_npu_reports_cpu_only(builds):
    rep, _ = _load(builds["mps3-an547"])
    assert rep["board"]["npu"] is None and rep["npu_cycles"] is None
    assert rep["weights"]["vela_dense"] is None and rep["weights"]["vela_folded"] is None
    assert {l["target"] for l in rep["layers"]} == {"CPU"}
    html = (builds["mps3-an547"] / "report.html").read_text()
    assert "has no NPU" in html


def test_index_entropy_bound():
    assert rp.index_entropy_bits(np.zeros(100, np.uint8)) == 0.0
    assert rp.index_entropy_bits(np.arange(16, dtype=np.uint8).repeat(4)) == pytest.approx(4.0)
    two = np.array([0] * 75 + [1] * 25, np.uint8)
    assert rp.index_entropy_bits(two) == pytest.approx(0.8112781, abs=1e-6)


def test_report_command_rerenders_identically_from_report_json(builds, tmp_path, capsys):
    d = tmp_path / "copy"
    shutil.copytree(builds["corstone-300"], d)
    html_before = (d / "report.html").read_bytes()
    (d / "report.html").unlink()
    (d / "build.json").unlink()  # report.json alone is enough
    assert main(["report", str(d)]) == 0
    assert (d / "report.html").read_bytes() == html_before
    out = capsys.readouterr().out
    assert "corstone-300" in out and "38,160 B" in out and "fits" in out
    assert main(["report", str(d), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((d / "report.json").read_text())


def test_two_builds_give_byte_identical_reports(builds, tmp_path):
    d = tmp_path / "again"
    build(str(fixture_path(MODEL)), "corstone-300", d)
    for name in ("report.json", "report.html"):
        assert (d / name).read_bytes() == (builds["corstone-300"] / name).read_bytes()


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no report.json here"),
    (lambda d: (d / "report.json").write_text("{not json"), "not a readable edgepack report"),
    (lambda d: (d / "report.json").write_text('{"schema": "other/9"}'), "not an edgepack-report/1"),
    (lambda d: (d / "report.json").write_text('{"schema": "edgepack-report/1"}'),
     "not a readable edgepack report"),
])
def test_report_command_bad_directory_is_one_line_exit_2(tmp_path, capsys, setup, message):
    d = tmp_path / "fw"
    d.mkdir()
    setup(d)
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(d) in err
    assert not (d / "report.html").exists()


def test_report_command_missing_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _first_pixel(path: Path) -> tuple[int, int, int]:
    """RGB of a PNG's top-left pixel (row 0's first pixel is stored unfiltered for every
    PNG filter type, so no unfiltering is needed)."""
    data, pos, idat = path.read_bytes(), 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompressobj().decompress(idat, 16)
    return raw[1], raw[2], raw[3]


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/setup installs it)")
@pytest.mark.parametrize("board", ["corstone-300", "mps3-an547"])
def test_report_opens_in_chromium_and_shows_the_table(builds, tmp_path, board):
    page = (builds[board] / "report.html").resolve().as_uri()
    dom = _chromium("--dump-dom", page, tmp=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the page's script ran to its end (it sorts the table) and nothing threw
    assert 'data-script="ok"' in dom.stdout
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr
    rep = json.loads((builds[board] / "report.json").read_text())
    assert dom.stdout.count("<tr>") == len(rep["layers"]) + 1
    assert dom.stdout.count("<svg") >= 3  # memory, weight bytes, per-layer charts

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"report_{board}.png"
    shot.unlink(missing_ok=True)
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,1700", page,
                    tmp=tmp_path / "profile-shot")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert _png_size(shot) == (1280, 1700)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few KiB
    dark = ARTIFACTS / f"report_{board}_dark.png"
    dark.unlink(missing_ok=True)
    res = _chromium(f"--screenshot={dark}", "--window-size=1280,1700", "--force-dark-mode",
                    "--blink-settings=preferredColorScheme=0", page, tmp=tmp_path / "profile-dark")
    assert res.returncode == 0 and dark.is_file(), res.stderr[-2000:]
    # the page follows the colour scheme: a light and a dark page background
    assert min(_first_pixel(shot)) > 200 and max(_first_pixel(dark)) < 60


def test_run_adds_measured_memory_and_layer_counts(builds, tmp_path, capsys):
    """`edgepack run` (here: the real firmware under QEMU) records what it measured."""
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm / gcc-arm-none-eabi not installed (.ci/setup installs them)")
    d = tmp_path / "fw"
    shutil.copytree(builds["mps3-an547"], d)
    assert main(["run", str(d), "--sim", "qemu"]) == 0
    capsys.readouterr()
    rep = json.loads((d / "report.json").read_text())
    assert rep["memory_source"].startswith("map file")
    (run,) = rep["runs"]
    assert run["sim"] == "qemu" and run["passed"] is True and "PASS" in run["result_line"]
    assert [x["index"] for x in run["layers"]] == [l["index"] for l in rep["layers"]]
    assert all(x["count"] > 0 for x in run["layers"])
    regions = {r["name"]: r for r in rep["memory"]}
    assert regions["ITCM"]["parts"][".text"] > 1000  # code now shows where the board puts it
    assert regions["DDR"]["used"] >= rep["weights"]["packed"]
    html = (d / "report.html").read_text()
    assert "Measured: CPU path under QEMU" in html and "PASS" in html
