"""A MobileNetV2-style int8 model (tests/mobilenet_model.py) through the whole pipeline: fold
recovers its per-layer clustering through batch-norm folding and per-channel quantization; the
project built for the host runs bit-exactly under ASan/UBSan; built for corstone-300 it runs
bit-exactly under QEMU (CPU path) and in the functional Ethos-U model (Vela's command stream)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgepack.cli import main
from edgepack.fold import fold_model
from edgepack.tflite import parse_model, read_model

from .firmware_support import needs
from .mobilenet_model import mobilenet_v2, small_mobilenet

ARM = needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")
HOST = needs("gcc", "cmake", "ninja")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mobilenet") / "mobilenet_small.tflite"
    path.write_bytes(small_mobilenet().tflite)
    return path


def _tflm(model: bytes, xs) -> np.ndarray:
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model)
    outs = []
    for x in xs:
        it.set_input(x, 0)
        it.invoke()
        outs.append(np.array(it.get_output(0)).ravel())
    return np.stack(outs)


def test_the_full_size_model_is_mobilenet_v2_0_35_as_the_converter_emits_it():
    net = mobilenet_v2()
    model = parse_model(net.tflite, "mobilenet_v2")
    ops = Counter(op.opcode for op in model.operators)
    assert len(net.layers) == 53 and 380_000 < net.weight_count < 420_000
    # 35 1x1 convolutions + the stem, 17 depthwise, 10 residual ADDs, a PAD before each of the
    # 4 stride-2 depthwise convolutions, global average pooling as MEAN, the classifier
    assert ops == {"CONV_2D": 35, "DEPTHWISE_CONV_2D": 17, "ADD": 10, "PAD": 4, "MEAN": 1,
                   "FULLY_CONNECTED": 1, "SOFTMAX": 1}
    assert list(model.tensors[model.inputs[0]].shape) == [1, 96, 96, 3]
    assert list(model.tensors[model.outputs[0]].shape) == [1, 10]
    w = [t for _, t in model.weight_tensors()]
    assert all(t.dtype == "int8" for t in w)
    assert sum(t.quantization.per_channel for t in w) == 52  # all but the classifier
    assert mobilenet_v2().tflite == net.tflite  # deterministic


def test_the_small_variant_runs_in_tflm_and_its_output_depends_on_the_input(small):
    rng = np.random.default_rng(1)
    xs = [rng.integers(-128, 128, (1, 48, 48, 3), dtype=np.int8) for _ in range(4)]
    out = _tflm(small.read_bytes(), xs)
    assert out.shape == (4, 10)
    assert len({row.tobytes() for row in out}) > 1  # not saturated into a constant


def test_fold_recovers_every_layers_clustering(small):
    model = read_model(small)
    fixed = fold_model(model, 16, check_agreement=False)
    assert len(fixed.tensors) == 53
    for ft in fixed.tensors:
        assert ft.folded and ft.codebook.size <= 16, ft.name
        assert ft.sqnr_db >= 35, f"{ft.name}: {ft.sqnr_db:.1f} dB"
    # auto finds each layer's clustering itself: depthwise layers whose 3x3 channels lack the
    # extreme clusters too (they used to be kept dense), the per-tensor classifier losslessly
    auto = fold_model(model, "auto", check_agreement=False)
    assert all(ft.folded for ft in auto.tensors), [ft.reason for ft in auto.tensors if not ft.folded]
    assert max(ft.codebook.size for ft in auto.tensors) <= 18
    assert min(ft.sqnr_db for ft in auto.tensors) >= 35
    fc = auto.tensors[-1]
    assert fc.op_type == "FULLY_CONNECTED" and fc.lossless


def test_auto_keeps_a_never_clustered_network_dense():
    dense = parse_model(mobilenet_v2(clusters=None, input_size=32, last_channels=128).tflite, "dense")
    result = fold_model(dense, "auto", check_agreement=False)
    per_channel = [ft for ft in result.tensors if ft.per_channel]
    assert len(per_channel) == 52 and not any(ft.folded for ft in per_channel)


def _run(capsys, *argv) -> dict:
    rc = main(list(argv) + ["--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0, data
    return data


@HOST
def test_built_for_the_host_it_runs_bit_exactly_under_sanitizers(small, tmp_path, capsys):
    out = tmp_path / "host"
    build = _run(capsys, "build", str(small), "--board", "host", "-o", str(out))
    # every tensor folds except where the packed form would be no smaller (never bigger)
    assert all(f["folded"] or f["target_bytes"] == f["dense_bytes"] for f in build["fold"])
    assert sum(f["folded"] for f in build["fold"]) >= 40 and build["npu"] is None
    data = _run(capsys, "run", str(out), "--sim", "host", "--sanitize")
    (run,) = data["runs"]
    assert run["passed"] and "ASan/UBSan" in run["where"]
    assert run["result_line"] == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"
    assert len(run["layers"]) == len(read_model(small).operators)


@ARM
def test_built_for_corstone_300_it_runs_bit_exactly_under_qemu_and_on_the_npu_model(
        small, tmp_path, capsys):
    out = tmp_path / "c300"
    _run(capsys, "build", str(small), "--board", "corstone-300", "-o", str(out), "--cpu-only")
    info = json.loads((out / "build.json").read_text())
    assert info["vela"]["cpu_operators"] == []  # Vela takes every operator
    assert all(f["folded"] for f in info["fold"])
    assert info["vela"]["folded"]["encoded_weight_bytes"] < info["vela"]["raw"]["encoded_weight_bytes"]
    qemu = _run(capsys, "run", str(out), "--sim", "qemu")["runs"][0]
    assert qemu["passed"], qemu["failure"]
    assert qemu["result_line"] == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"
    ops = Counter(layer["opcode"] for layer in qemu["layers"])
    assert ops["DEPTHWISE_CONV_2D"] == 17 and ops["ADD"] == 10 and ops["MEAN"] == 1
    assert qemu["instructions"] > 10_000_000
    npu = _run(capsys, "run", str(out), "--sim", "npu-model")["runs"][0]
    assert npu["passed"], npu["failure"]
    assert npu["result_line"] == "EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes"


def test_the_agreement_check_gives_the_same_figures_in_one_process_or_two(small, monkeypatch):
    import edgepack.fold.agreement as fold

    model = read_model(small)
    folded = fold_model(model, 16, check_agreement=False).model
    monkeypatch.setattr(fold, "PARALLEL_AGREEMENT_BYTES", 1 << 40)
    one = fold.measure_agreement(model, folded)
    monkeypatch.setattr(fold, "PARALLEL_AGREEMENT_BYTES", 0)
    two = fold.measure_agreement(model, folded)
    assert one == two and one.samples == 32 and one.max_abs_diff > 0
