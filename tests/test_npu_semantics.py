"""Specification: a model with an operator the NPU computes differently from TFLM (a standalone
RELU6 whose output quantization differs from its input's: Vela requantizes, TFLM clamps the raw
input) builds with a warning naming it and its difference measured on the golden inputs; its
golden outputs are the device's (TFLM's kept beside them), and the firmware, which drives the
NPU (co-simulated under QEMU), runs bit-exactly against them. With --tflm-semantics the operator
stays on the CPU and the firmware matches TFLM's outputs. A --cpu-only build's firmware drives no
NPU; there Vela's output run beside it (--sim npu-model) differs from TFLM at the RELU6."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepack.cli import main
from edgepack.sim import golden_vectors, run_project

from .firmware_support import needs
from .npu_graphs import relu6_model, residual_model

HOST = needs("gcc", "cmake", "ninja")
QEMU = needs("cmake", "ninja", "arm-none-eabi-gcc", "qemu-system-arm")  # the co-simulated NPU


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("npu-semantics")
    src = root / "relu6.tflite"
    src.write_bytes(relu6_model())
    out = {}
    for key, extra in (("device", []), ("tflm", ["--tflm-semantics"]), ("cpu_only", ["--cpu-only"])):
        proj = root / key
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["build", str(src), "--board", "corstone-300", "-o", str(proj), "--json", *extra])
        assert rc == 0
        out[key] = (proj, err.getvalue(), json.loads((proj / "build.json").read_text()))
    return out


def _golden_bin(proj: Path, info: dict) -> dict[str, np.ndarray]:
    data = (proj / "data" / "golden.bin").read_bytes()
    return {a["symbol"]: np.frombuffer(data, np.int8, a["size"], a["offset"]) for a in info["golden_layout"]}


def test_the_build_warns_naming_the_operator_with_its_measured_difference(built):
    _proj, err, info = built["device"]
    sem = info["npu_semantics"]
    (d,) = sem["divergent"]
    assert (d["operator"], d["opcode"], d["name"]) == (1, "RELU6", "relu6")
    assert d["golden_inputs"] == 4 and 0 < d["differing"] <= 4 * d["elements"] and d["max_difference"] > 0
    assert (f"warning: operator 1 RELU6 ('relu6') runs on the NPU; the NPU computes it differently from TFLM "
            f"(input and output quantization differ): on the 4 golden inputs {d['differing']:,} of "
            f"{4 * d['elements']:,} output bytes differ, by up to {d['max_difference']} steps") in err
    assert "--tflm-semantics would keep them on the CPU: Vela's estimate" in err
    cost = sem["cpu_option"]
    assert cost["operators"] == [1] and cost["cpu_elements"] == d["elements"]
    assert cost["total_cycles_on_npu"] == info["vela"]["folded"]["total_cycles"]


def test_golden_outputs_are_the_devices_and_tflms_are_kept_beside_them(built):
    proj, _err, info = built["device"]
    sem = info["npu_semantics"]
    assert sem["golden_outputs"].startswith("the device's")
    arrays = _golden_bin(proj, info)
    differing = sum(int((arrays[f"ep_golden_out{g}_0"] != arrays[f"ep_golden_tflm_out{g}_0"]).sum())
                    for g in range(info["golden_count"]))
    assert differing == sem["device_vs_tflm"]["differing"] > 0
    report = json.loads((proj / "report.json").read_text())
    assert report["npu_semantics"]["golden_differences"][0]["first"]  # index, device, TFLM
    assert "Where the NPU computes differently from TFLM" in (proj / "report.html").read_text()
    _ins, outs = golden_vectors(proj, info)
    assert np.array_equal(outs[0][0].reshape(-1), arrays["ep_golden_out0_0"])


@QEMU
def test_the_firmware_driving_the_npu_runs_bit_exactly_against_the_devices_golden_outputs(built):
    proj, _err, _info = built["device"]
    (r,) = run_project(proj, sim="cosim")
    assert r.passed, r.failure
    assert r.result_line == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"


@QEMU
def test_with_tflm_semantics_the_operator_runs_on_the_cpu_and_the_firmware_matches_tflm(built):
    proj, err, info = built["tflm"]
    assert info["vela"]["cpu_operators"] == [{"index": 1, "opcode": "RELU6"}]
    assert "operator 1 RELU6 ('relu6') kept on the CPU (--tflm-semantics)" in err
    sem = info["npu_semantics"]
    assert sem["tflm_semantics"] and sem["golden_outputs"].startswith("TFLM")
    assert sem["device_vs_tflm"]["differing"] == 0
    assert not any(a["symbol"].startswith("ep_golden_tflm_out") for a in info["golden_layout"])
    device_info = built["device"][2]
    arrays, device_arrays = _golden_bin(proj, info), _golden_bin(built["device"][0], device_info)
    assert all(np.array_equal(arrays[f"ep_golden_out{g}_0"], device_arrays[f"ep_golden_tflm_out{g}_0"])
               for g in range(4))
    (r,) = run_project(proj, sim="cosim")
    assert r.passed, r.failure


@HOST
def test_a_cpu_only_build_keeps_tflm_and_vela_output_beside_it_differs_at_the_relu6(built):
    """What the warning predicts: Vela's output, run against TFLM's golden outputs, differs and
    the per-layer comparison names the RELU6."""
    proj, err, info = built["cpu_only"]
    assert info["npu_semantics"] is None and "warning" not in err
    (r,) = run_project(proj, sim="npu-model")
    assert not r.passed
    assert (r.first_difference["operator"], r.first_difference["opcode"]) == (1, "RELU6")


def test_a_model_without_divergent_operators_keeps_tflms_golden_outputs(tmp_path):
    src = tmp_path / "residual.tflite"
    src.write_bytes(residual_model())
    assert main(["build", str(src), "--board", "corstone-300", "-o", str(tmp_path / "fw"), "--json"]) == 0
    info = json.loads((tmp_path / "fw" / "build.json").read_text())
    assert info["npu_semantics"]["divergent"] == [] and info["npu_semantics"]["golden_outputs"].startswith("the device's = TFLM's")
    assert not any(a["symbol"].startswith("ep_golden_tflm_out") for a in info["golden_layout"])
