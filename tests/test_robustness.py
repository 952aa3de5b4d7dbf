"""Spec: models public converters write and models mutated beyond sense (issue 16).

Models without weights and 1-D tensors with any quantized_dimension build and run bit-exactly;
what edgepack cannot deploy is refused before any stage runs, in one line naming the file, the
operator or tensor, and the problem, without allocating what a corrupt shape asks for; what
crashes the TFLM interpreter is one line naming the stage, never the death of edgepack.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack.build import tflm_outputs
from edgepack.cli import main
from edgepack.errors import StageError
from edgepack.fold.agreement import tflm_first_outputs_in_process
from edgepack.isolate import run_isolated
from edgepack.sim import run_project
from tests import robust_models
from tests.opmodels import Op, T, graph_model, single_op_model

COMMANDS = ["inspect", "fold", "build"]


def pack(model) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run(capsys, tmp_path, command: str, model_bytes: bytes, *options: str):
    model = tmp_path / "m.tflite"
    model.write_bytes(model_bytes)
    extra = {"inspect": ["--json"], "fold": ["-o", str(tmp_path / "out.tflite")],
             "build": ["--board", "host", "-o", str(tmp_path / "fw")]}[command]
    code = main([command, str(model), *extra, *options])
    out = capsys.readouterr()
    return model, code, out.err


def refused(capsys, tmp_path, command, model_bytes, *words, options=()):
    model, code, err = run(capsys, tmp_path, command, model_bytes, *options)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"edgepack: error: {model}: "), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name]  # nothing half-written
    return lines[0]


@pytest.mark.parametrize("make", [robust_models.add_only, robust_models.conv_bias_axis3],
                         ids=["no_weights", "bias_axis_3"])
def test_public_model_shapes_build_and_run_bit_exactly(make, tmp_path, capsys):
    model, code, err = run(capsys, tmp_path, "build", make())
    assert code == 0, err
    (result,) = run_project(tmp_path / "fw", sim="host", timeout=120)
    assert result.passed and "0 mismatched bytes" in result.result_line, result.result_line


def test_a_model_without_weights_folds_to_itself(tmp_path, capsys):
    model, code, err = run(capsys, tmp_path, "fold", robust_models.add_only())
    assert code == 0, err
    assert (tmp_path / "out.tflite").stat().st_size > 0


def test_bias_with_quantized_dimension_3_reads_as_per_channel_along_its_only_axis():
    from edgepack.tflite import parse_model

    m = parse_model(robust_models.conv_bias_axis3())
    bias = m.tensors[m.operators[0].inputs[2]]
    assert bias.quantization.per_channel and bias.quantization.axis == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_a_huge_dimension_is_refused_at_once(command, tmp_path, capsys):
    start = time.monotonic()
    refused(capsys, tmp_path, command, robust_models.huge_dimension(),
            "[1, 2147483647, 10, 1]", "21,474,836,470 bytes", "limit")
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("command", COMMANDS)
def test_a_batch_of_2_is_refused(command, tmp_path, capsys):
    refused(capsys, tmp_path, command, robust_models.batch2(), "batch of 2", "batch size 1")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_operator_reading_its_own_output_is_refused(command, tmp_path, capsys):
    refused(capsys, tmp_path, command, robust_models.output_feeds_itself(),
            "operator 0 (ADD) reads tensor 1 'y', its own output")


def test_the_board_memory_is_named(tmp_path, capsys):
    # 3 MiB activations: within edgepack's limit, beyond corstone-300's 2 MiB arena region
    model = tmp_path / "m.tflite"
    model.write_bytes(robust_models.add_only((1, 1024, 1024, 3)))
    code = main(["build", str(model), "--board", "corstone-300", "-o", str(tmp_path / "fw")])
    err = capsys.readouterr().err
    assert code == 1 and "board corstone-300's region" in err and "tensor arena" in err, err


def with_quantization(scale, zero_point):
    return single_op_model(tfl.BuiltinOperator.ADD, [T([1, 4], s=scale, zp=zero_point),
                                                     T([1, 4], s=0.1)],
                           [T([1, 4], s=0.1)], "AddOptions", tfl.AddOptionsT())


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), 0.0, -0.5, 1e-45])
def test_scales_must_be_finite_and_positive(scale, tmp_path, capsys):
    refused(capsys, tmp_path, "inspect", with_quantization(scale, 0), "tensor 0 't0' has scale")


@pytest.mark.parametrize("zero_point", [128, -129, 1 << 20])
def test_zero_points_must_fit_the_type(zero_point, tmp_path, capsys):
    refused(capsys, tmp_path, "inspect", with_quantization(0.1, zero_point),
            f"zero point {zero_point}, outside -128..127")


def test_a_subgraph_without_outputs_is_refused(tmp_path, capsys):
    m = graph_model({"x": T([1, 4], s=0.1), "y": T([1, 4], s=0.1)},
                    [Op(tfl.BuiltinOperator.RELU, ["x"], ["y"])], ["x"], [])
    refused(capsys, tmp_path, "build", m, "no outputs")


def test_a_scalar_activation_is_refused(tmp_path, capsys):
    m = graph_model({"x": T([], s=0.1), "y": T([], s=0.1)},
                    [Op(tfl.BuiltinOperator.RELU, ["x"], ["y"])], ["x"], ["y"])
    refused(capsys, tmp_path, "inspect", m, "scalar (rank 0)")


def test_operators_out_of_order_are_refused(tmp_path, capsys):
    tensors = {"x": T([1, 4], s=0.1), "y": T([1, 4], s=0.1), "z": T([1, 4], s=0.1)}
    m = graph_model(tensors, [Op(tfl.BuiltinOperator.RELU, ["y"], ["z"]),
                              Op(tfl.BuiltinOperator.RELU, ["x"], ["y"])], ["x"], ["z"])
    refused(capsys, tmp_path, "fold", m, "operator 0 (RELU) reads tensor 1 'y' before any "
                                         "operator writes it (operator 1 writes it later")


def test_softmax_with_beta_0_is_refused_by_the_build(tmp_path, capsys):
    refused(capsys, tmp_path, "build", robust_models.softmax_beta(0.0), "operator 0 (SOFTMAX)",
            "beta 0")


def test_a_tflm_crash_is_one_line_naming_the_stage():
    # TFLM aborts preparing a SOFTMAX with beta 0: edgepack survives it
    x = [[np.zeros((1, 10), np.int8)]]
    with pytest.raises(StageError, match=r"m\.tflite: golden: the TFLM interpreter crashed "
                                         r"\(SIGABRT\)"):
        run_isolated(tflm_outputs, robust_models.softmax_beta(0.0), x, 1, stage="golden",
                     model="m.tflite")


def test_a_tflm_refusal_is_one_line_with_its_reason():
    big = robust_models.add_only((1, 512, 512, 3))  # more than TFLM's default arena
    with pytest.raises(StageError) as err:
        run_isolated(tflm_first_outputs_in_process, big, [np.zeros((1, 512, 512, 3), np.int8)] * 2,
                     stage="agreement", model="m.tflite")
    text = str(err.value)
    assert "\n" not in text and text.startswith("m.tflite: agreement: the TFLM interpreter "
                                                "refused the model: ")
    assert "failed to allocate tensors" in text and "Requested" in text, text


def test_every_unsupported_operator_is_named_at_once_custom_ones_by_their_code(tmp_path, capsys):
    data = graph_model({"x": T([1, 4], s=0.1), "y": T([1, 4], s=0.1), "z": T([1, 4], s=0.1),
                        "w": T([1, 4], s=0.1)},
                       [Op(tfl.BuiltinOperator.ATAN2, ["x", "x"], ["y"]),
                        Op(tfl.BuiltinOperator.CUSTOM, ["y"], ["z"]),
                        Op(tfl.BuiltinOperator.ATAN2, ["z", "z"], ["w"])],
                       ["x"], ["w"])
    model = tfl.ModelT.InitFromPackedBuf(data, 0)
    for code in model.operatorCodes:
        if code.builtinCode == tfl.BuiltinOperator.CUSTOM:
            code.customCode = b"MyPostProcess"
    line = refused(capsys, tmp_path, "build", pack(model), "3 operators the runtime cannot run",
                   "operators 0 (ATAN2), 2 (ATAN2)",
                   "operator 1 (MyPostProcess): custom operator 'MyPostProcess'")
    assert "CUSTOM" not in line


def test_an_int16_model_names_the_operator(tmp_path, capsys):
    m = single_op_model(tfl.BuiltinOperator.RELU, [T([1, 4], np.int8, s=0.1)],
                        [T([1, 4], np.int8, s=0.1)])
    model = tfl.ModelT.InitFromPackedBuf(m, 0)
    model.subgraphs[0].tensors[0].type = tfl.TensorType.INT16
    model.subgraphs[0].tensors[0].name = b""
    refused(capsys, tmp_path, "inspect", pack(model),
            "int16-activation model (input tensor 0, read by operator 0 (RELU))")


# What bench/fuzz.py found (seed 16), each now refused in one line:

def test_a_bias_with_the_wrong_length_is_refused_by_the_fold(tmp_path, capsys):
    model = tfl.ModelT.InitFromPackedBuf(robust_models.conv_bias_axis3(), 0)
    sg = model.subgraphs[0]
    bias = sg.tensors[sg.operators[0].inputs[2]]
    bias.shape = np.array([2], np.int32)
    model.buffers[bias.buffer].data = np.zeros(8, np.uint8)  # two int32 values
    bias.quantization.scale = bias.quantization.scale[:2]
    bias.quantization.zeroPoint = bias.quantization.zeroPoint[:2]
    refused(capsys, tmp_path, "fold", pack(model), "operator 0 (CONV_2D): bias",
            "does not hold one value per output channel (8)", options=["--clusters", "4"])


def test_an_operator_computing_on_a_constant_it_cannot_place_is_refused(tmp_path, capsys):
    m = graph_model({"c": T([1, 4], s=0.1, data=np.ones((1, 4), np.int8)), "x": T([1, 4], s=0.1),
                     "y": T([1, 4], s=0.1), "z": T([1, 4], s=0.1)},
                    [Op(tfl.BuiltinOperator.ADD, ["x", "x"], ["y"], "AddOptions", tfl.AddOptionsT()),
                     Op(tfl.BuiltinOperator.RELU, ["c"], ["z"])], ["x"], ["y", "z"])
    refused(capsys, tmp_path, "build", m, "operator 1 (RELU): input tensor 'c' is a constant")


def test_a_pool_without_its_options_is_refused(tmp_path, capsys):
    m = graph_model({"x": T([1, 4, 4, 2], s=0.1), "y": T([1, 2, 2, 2], s=0.1)},
                    [Op(tfl.BuiltinOperator.MAX_POOL_2D, ["x"], ["y"], "AddOptions",
                        tfl.AddOptionsT())], ["x"], ["y"])
    refused(capsys, tmp_path, "build", m, "operator 0 (MAX_POOL_2D): no Pool2DOptions")


@pytest.mark.parametrize("stride", [0, -2])
def test_a_stride_below_1_is_refused(stride, tmp_path, capsys):
    o = tfl.Pool2DOptionsT()
    o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = tfl.Padding.VALID, stride, 2, 2, 2
    m = graph_model({"x": T([1, 4, 4, 2], s=0.1), "y": T([1, 2, 2, 2], s=0.1)},
                    [Op(tfl.BuiltinOperator.MAX_POOL_2D, ["x"], ["y"], "Pool2DOptions", o)],
                    ["x"], ["y"])
    refused(capsys, tmp_path, "inspect", m, f"operator 0 (MAX_POOL_2D): option stride_h is {stride}")


def test_a_pad_without_its_paddings_is_refused(tmp_path, capsys):
    m = graph_model({"x": T([1, 4], s=0.1), "y": T([1, 4], s=0.1)},
                    [Op(tfl.BuiltinOperator.PAD, ["x"], ["y"])], ["x"], ["y"])
    refused(capsys, tmp_path, "build", m, "operator 0 (PAD): padding amounts must be constant")
