"""Spec: the public-model classes issue 16 found refused now build and run bit-exactly against TFLM.

Small models of each class, built with `edgepack build` and run with `edgepack run` (host under
ASan/UBSan, and mps3-an547 under QEMU); the firmware compares every output byte with the golden
outputs TFLM computed at build time:
* float I/O around an int8 graph with a leading TRANSPOSE (a PyTorch-exported NCHW model as the
  TFLite converter writes it): float32 input -> QUANTIZE -> TRANSPOSE -> CONV -> SPACE_TO_DEPTH
  -> DEPTH_TO_SPACE -> RESIZE_BILINEAR -> RESIZE_NEAREST_NEIGHBOR -> STRIDED_SLICE -> REVERSE_V2
  -> MEAN -> FULLY_CONNECTED -> DEQUANTIZE -> float32 output (golden vectors in float32);
* ShuffleNet's channel shuffle: PRELU (per-channel alpha) -> RESHAPE to 5-D -> TRANSPOSE (5-D) -> RESHAPE, then
  SPACE_TO_BATCH_ND -> BATCH_TO_SPACE_ND (with crops) -> MIRROR_PAD, between convolutions,
  then SQUARED_DIFFERENCE against the mean (broadcast) as a layer norm computes its variance;
* a SPLIT-heavy model: CONV -> SPLIT (3 outputs) -> SPLIT_V / UNPACK / SLICE -> PACK ->
  CONCATENATION -> GATHER (constant indices) -> EXPAND_DIMS, with an int32 ARG_MAX as a second
  model output and TRANSPOSE_CONV (stride 2, palette weights) -> MEAN -> FULLY_CONNECTED as a
  third.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from tests.firmware_support import needs
from tests.opmodels import Op, T, run_tflm_outputs
from tests.test_build_ops import SEED, Graph, build_cli, run_cli

OP = tfl.BuiltinOperator
HOST = needs("gcc", "cmake", "ninja")
ARM = needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")


def _add(g: Graph, code, inputs, outputs, options_name=None, options=None, version=1):
    g.ops.append(Op(code, inputs, outputs, options_name, options, version))
    return outputs[0] if len(outputs) == 1 else outputs


def i32(g: Graph, values) -> str:
    return g.const(np.asarray(values, np.int32), np.int32)


def float_transpose_model(seed: int = SEED + 16) -> bytes:
    g = Graph(seed)
    xf = "input_nchw"
    g.tensors[xf] = T([1, 3, 8, 8], np.float32, name=xf)
    x = _add(g, OP.QUANTIZE, [xf], [g.act([1, 3, 8, 8], 1 / 64, -3)], version=2)
    o = tfl.TransposeOptionsT()
    t = _add(g, OP.TRANSPOSE, [x, i32(g, [0, 2, 3, 1])], [g.like(x, [1, 8, 8, 3])], "TransposeOptions", o, 2)
    c = g.conv(t, 8, 3)
    o = tfl.SpaceToDepthOptionsT()
    o.blockSize = 2
    s2d = _add(g, OP.SPACE_TO_DEPTH, [c], [g.like(c, [1, 4, 4, 32])], "SpaceToDepthOptions", o, 2)
    o = tfl.DepthToSpaceOptionsT()
    o.blockSize = 2
    d2s = _add(g, OP.DEPTH_TO_SPACE, [s2d], [g.like(c, [1, 8, 8, 8])], "DepthToSpaceOptions", o, 2)
    o = tfl.ResizeBilinearOptionsT()
    o.halfPixelCenters = True
    up = _add(g, OP.RESIZE_BILINEAR, [d2s, i32(g, [12, 12])], [g.like(c, [1, 12, 12, 8])],
              "ResizeBilinearOptions", o, 3)
    o = tfl.ResizeNearestNeighborOptionsT()
    down = _add(g, OP.RESIZE_NEAREST_NEIGHBOR, [up, i32(g, [6, 6])], [g.like(c, [1, 6, 6, 8])],
                "ResizeNearestNeighborOptions", o, 3)
    o = tfl.StridedSliceOptionsT()
    o.beginMask = 1
    ss = _add(g, OP.STRIDED_SLICE, [down, i32(g, [0, 1, 0, 0]), i32(g, [1, 6, 6, 8]), i32(g, [1, 2, 1, 1])],
              [g.like(c, [1, 3, 6, 8])], "StridedSliceOptions", o, 2)
    rev = _add(g, OP.REVERSE_V2, [ss, i32(g, [2])], [g.like(c, [1, 3, 6, 8])], "ReverseV2Options",
               tfl.ReverseV2OptionsT(), 2)
    fc = g.fully_connected(g.mean(rev, keep_dims=False), 6)
    yf = "output_float"
    g.tensors[yf] = T([1, 6], np.float32, name=yf)
    _add(g, OP.DEQUANTIZE, [fc], [yf], version=2)
    return g.model([xf], [yf])


def split_model(seed: int = SEED + 17) -> bytes:
    g = Graph(seed)
    x = g.act([1, 6, 6, 4])
    c = g.conv(x, 9, 3)
    o = tfl.SplitOptionsT()
    o.numSplits = 3
    a, b, d = _add(g, OP.SPLIT, [i32(g, 3), c], [g.like(c, [1, 6, 6, 3]) for _ in range(3)], "SplitOptions", o, 2)
    o = tfl.SplitVOptionsT()
    o.numSplits = 2
    a1, a2 = _add(g, OP.SPLIT_V, [a, i32(g, [1, -1]), i32(g, 3)], [g.like(a, [1, 6, 6, 1]), g.like(a, [1, 6, 6, 2])],
                  "SplitVOptions", o, 2)
    o = tfl.UnpackOptionsT()
    o.num, o.axis = 3, 3
    rows = _add(g, OP.UNPACK, [b], [g.like(b, [1, 6, 6]) for _ in range(3)], "UnpackOptions", o, 2)
    o = tfl.PackOptionsT()
    o.valuesCount, o.axis = 3, 3
    packed = _add(g, OP.PACK, [rows[2], rows[0], rows[1]], [g.like(b, [1, 6, 6, 3])], "PackOptions", o, 2)
    sl = _add(g, OP.SLICE, [d, i32(g, [0, 0, 0, 1]), i32(g, [1, 6, 6, 2])], [g.like(d, [1, 6, 6, 2])],
              "SliceOptions", tfl.SliceOptionsT(), 2)
    # requantize the parts to one scale, then concatenate
    q = [g.quantize(t) for t in (a1, a2, packed, sl)]
    s, zp = g.tensors[q[0]].s, g.tensors[q[0]].zp
    same = [q[0]] + [_add(g, OP.QUANTIZE, [t], [g.act(g.shape(t), s, zp)], version=2) for t in q[1:]]
    cat = g.concatenation(same, axis=3)  # [1, 6, 6, 8]
    o = tfl.GatherOptionsT()
    o.axis = 3
    gathered = _add(g, OP.GATHER, [cat, i32(g, [7, 0, 3, 3, 5])], [g.like(cat, [1, 6, 6, 5])], "GatherOptions", o, 2)
    arg = "argmax"
    g.tensors[arg] = T([1, 6, 6], np.int32, name=arg)
    o = tfl.ArgMaxOptionsT()
    o.outputType = tfl.TensorType.INT32
    _add(g, OP.ARG_MAX, [gathered, i32(g, [3])], [arg], "ArgMaxOptions", o, 2)
    flat = g.reshape(gathered, [1, 180])
    ex = _add(g, OP.EXPAND_DIMS, [flat, i32(g, [1])], [g.like(flat, [1, 1, 180])], "ExpandDimsOptions",
              tfl.ExpandDimsOptionsT())
    sq = g.reshape(ex, [1, 180])
    tc = transpose_conv(g, cat, 4, 3, 2)
    return g.model([x], [g.fully_connected(sq, 5), arg, g.fully_connected(g.mean(tc, keep_dims=False), 3)])


def transpose_conv(g: Graph, x: str, cout: int, k: int, stride: int) -> str:
    """TRANSPOSE_CONV SAME (output = input * stride), per-channel weights, bias, RELU."""
    n, h, w_, cin = g.shape(x)
    w = g.rng.integers(-127, 128, size=(cout, k, k, cin)).astype(np.int8)
    w_s = np.float32(np.exp(g.rng.uniform(np.log(0.002), np.log(0.02), cout)))
    wt = g.const(w, np.int8, list(map(float, w_s)), 0, 0)
    bias = g.rng.normal(0, 3000, cout).astype(np.int32)
    bt = g.const(bias, np.int32, list(map(float, np.float32(g.scale(x)) * w_s)), 0, 0)
    s_out = float(np.float32(g.scale(x) * float(np.mean(w_s)) * 50 * 73 * np.sqrt(k * k * cin / stride ** 2) / 40))
    out = g.act([n, h * stride, w_ * stride, cout], s_out)
    o = tfl.TransposeConvOptionsT()
    o.padding, o.strideH, o.strideW = tfl.Padding.SAME, stride, stride
    o.fusedActivationFunction = tfl.ActivationFunctionType.RELU
    return _add(g, OP.TRANSPOSE_CONV, [i32(g, [n, h * stride, w_ * stride, cout]), wt, x, bt], [out],
                "TransposeConvOptions", o, 4)


def channel_shuffle_model(seed: int = SEED + 18) -> bytes:
    """ShuffleNet's channel shuffle as converters write it: RESHAPE to 5-D, TRANSPOSE, RESHAPE."""
    g = Graph(seed)
    x = g.act([1, 4, 4, 6])
    c = g.conv(x, 6, 1)
    alpha = g.const(g.rng.integers(-100, 100, size=(1, 1, 6)), np.int8, 0.004, 3)
    c = _add(g, OP.PRELU, [c, alpha], [g.like(c)])
    r5 = g.reshape(c, [1, 4, 4, 2, 3])
    o = tfl.TransposeOptionsT()
    t5 = _add(g, OP.TRANSPOSE, [r5, i32(g, [0, 1, 2, 4, 3])], [g.like(r5, [1, 4, 4, 3, 2])], "TransposeOptions", o, 2)
    shuffled = g.reshape(t5, [1, 4, 4, 6])
    o = tfl.SpaceToBatchNDOptionsT()
    blocks = _add(g, OP.SPACE_TO_BATCH_ND, [shuffled, i32(g, [2, 2]), i32(g, [[0, 0], [0, 0]])],
                  [g.like(shuffled, [4, 2, 2, 6])], "SpaceToBatchNDOptions", o, 2)
    o = tfl.BatchToSpaceNDOptionsT()
    back = _add(g, OP.BATCH_TO_SPACE_ND, [blocks, i32(g, [2, 2]), i32(g, [[0, 1], [1, 0]])],
                [g.like(shuffled, [1, 3, 3, 6])], "BatchToSpaceNDOptions", o, 2)
    o = tfl.MirrorPadOptionsT()
    o.mode = tfl.MirrorPadMode.REFLECT
    mirrored = _add(g, OP.MIRROR_PAD, [back, i32(g, [[0, 0], [2, 1], [1, 2], [0, 0]])],
                    [g.like(shuffled, [1, 6, 6, 6])], "MirrorPadOptions", o, 2)
    out = g.conv(mirrored, 4, 1)
    mean = g.mean(out, keep_dims=True, s_out=g.scale(out))
    sq = g.act([1, 6, 6, 4], g.scale(out) ** 2 * 60, -100)
    spread = _add(g, OP.SQUARED_DIFFERENCE, [out, mean], [sq])  # a layer norm's variance term
    return g.model([x], [g.fully_connected(g.mean(spread, keep_dims=False), 3)])


MODELS = {"float_transpose": float_transpose_model, "split": split_model, "channel_shuffle": channel_shuffle_model}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout_models")
    out = {}
    for name, make in MODELS.items():
        out[name] = root / f"{name}.tflite"
        out[name].write_bytes(make())
    return out


def test_test_models_run_in_tflm_and_are_not_saturated(models):
    rng = np.random.default_rng(5)
    xf = (rng.standard_normal((1, 3, 8, 8)) * 0.5).astype(np.float32)
    (y,) = run_tflm_outputs(models["float_transpose"].read_bytes(), [xf], 1)
    assert y.dtype == np.float32 and len(np.unique(y)) >= 4
    y, arg, tc = run_tflm_outputs(models["split"].read_bytes(),
                                  [rng.integers(-128, 128, (1, 6, 6, 4)).astype(np.int8)], 3)
    assert len(np.unique(y)) >= 3 and arg.dtype == np.int32 and len(np.unique(arg)) >= 2
    assert len(np.unique(tc)) >= 2
    (y,) = run_tflm_outputs(models["channel_shuffle"].read_bytes(),
                            [rng.integers(-128, 128, (1, 4, 4, 6)).astype(np.int8)], 1)
    assert len(np.unique(y)) >= 2


@HOST
@pytest.mark.parametrize("name", list(MODELS))
def test_model_runs_bit_exactly_on_the_host_under_sanitizers(models, name, tmp_path, capsys):
    project = tmp_path / "fw"
    info = build_cli(models[name], project, capsys, "--board", "host", "--clusters", "8")
    forms = {layer["opcode"]: layer["weights_form"] for layer in info["layers"]}
    assert forms.get("TRANSPOSE_CONV", "palette").startswith("palette"), forms
    run = run_cli(project, capsys, "--sim", "host", "--sanitize")
    (result,) = run["runs"]
    assert result["result_line"].startswith("EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes")


@ARM
@pytest.mark.parametrize("name", list(MODELS))
def test_model_runs_bit_exactly_on_mps3_an547_under_qemu(models, name, tmp_path, capsys):
    project = tmp_path / "fw"
    build_cli(models[name], project, capsys, "--board", "mps3-an547", "--clusters", "8")
    run = run_cli(project, capsys, "--sim", "qemu")
    (result,) = run["runs"]
    assert result["result_line"].startswith("EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes")


# --- float --input, and what the lowering refuses: one line naming the operator and the reason ----

@HOST
def test_float_input_array_feeds_a_float_model_and_int8_is_refused(models, tmp_path, capsys):
    from edgepack.cli import main

    rng = np.random.default_rng(9)
    real = tmp_path / "real.npy"
    np.save(real, (rng.standard_normal((2, 3, 8, 8)) * 0.6).astype(np.float32))
    project = tmp_path / "fw"
    info = build_cli(models["float_transpose"], project, capsys, "--board", "host", "--input", str(real))
    assert info["golden_count"] == 2
    run = run_cli(project, capsys, "--sim", "host")
    assert run["runs"][0]["result_line"].startswith("EDGEPACK RESULT: PASS 2/2 inputs, 0 mismatched bytes")
    codes = tmp_path / "codes.npy"
    np.save(codes, rng.integers(-128, 128, (2, 3, 8, 8)).astype(np.int8))
    code = main(["build", str(models["float_transpose"]), "--board", "host", "-o", str(tmp_path / "fw2"),
                 "--input", str(codes)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "is float32; give float32 (real) values" in lines[0], lines


def _refused(make_op):
    def make(g: Graph) -> str:
        x = g.conv(g.act([1, 4, 4, 6]), 6, 1)
        return make_op(g, x)
    return make


def _offset_slice(g, x):
    o = tfl.StridedSliceOptionsT()
    o.offset = True
    return _add(g, OP.STRIDED_SLICE, [x, i32(g, [0, 0, 0, 0]), i32(g, [1, 2, 2, 2]), i32(g, [1, 1, 1, 1])],
                [g.like(x, [1, 2, 2, 2])], "StridedSliceOptions", o, 2)


def _arg_max_int64(g, x):
    o = tfl.ArgMaxOptionsT()
    o.outputType = tfl.TensorType.INT64
    g.tensors["idx"] = T([1, 4, 4], np.int64, name="idx")
    return _add(g, OP.ARG_MAX, [x, i32(g, [3])], ["idx"], "ArgMaxOptions", o, 2)


def _split_twenty(g, x):
    r = g.reshape(x, [1, 4, 4, 6])
    wide = g.concatenation([r, r, r, r], axis=3)  # 24 channels
    o = tfl.UnpackOptionsT()
    o.num, o.axis = 24, 3
    outs = _add(g, OP.UNPACK, [wide], [g.like(wide, [1, 4, 4]) for _ in range(24)], "UnpackOptions", o, 2)
    return g.concatenation(outs[:2], axis=2)


def _transpose_requantizing(g, x):
    return _add(g, OP.TRANSPOSE, [x, i32(g, [0, 3, 1, 2])], [g.act([1, 6, 4, 4])], "TransposeOptions",
                tfl.TransposeOptionsT(), 2)


def _reverse_two_axes(g, x):
    return _add(g, OP.REVERSE_V2, [x, i32(g, [1, 2])], [g.like(x)], "ReverseV2Options", tfl.ReverseV2OptionsT(), 2)


REFUSED = {
    "strided_slice_offset": (_offset_slice, "operator 1 (STRIDED_SLICE): the offset flag is not supported"),
    "arg_max_int64": (_arg_max_int64, "operator 1 (ARG_MAX): int64 output (TFLM writes int32 indices only)"),
    "unpack_24": (_split_twenty, "(UNPACK): 24 outputs (the runtime writes up to 16 per step)"),
    "transpose_requantizing": (_transpose_requantizing, "operator 1 (TRANSPOSE): output 'x"),
    "reverse_two_axes": (_reverse_two_axes, "operator 1 (REVERSE_V2): 2 axes (TFLM's REVERSE_V2 reverses one)"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_option_the_layout_kernels_cannot_honour_stops_the_build_with_one_line(case, tmp_path, capsys):
    from edgepack.cli import main

    make_op, expected = REFUSED[case]
    g = Graph(SEED)
    out_name = _refused(make_op)(g)
    inputs = [n for n, t in g.tensors.items() if t.data is None and not any(n in o.outputs for o in g.ops)]
    model = tmp_path / f"{case}.tflite"
    model.write_bytes(g.model(inputs, [out_name]))
    code = main(["build", str(model), "--board", "host", "-o", str(tmp_path / "fw")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"edgepack: error: {model}: ") and expected in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name]


def test_npu_board_runs_every_operator_vela_leaves_on_the_cpu(models, tmp_path, capsys):
    """On an Ethos-U board Vela leaves SPACE_TO_DEPTH, DEPTH_TO_SPACE, the resizes, REVERSE_V2 and
    the float QUANTIZE / DEQUANTIZE (and MIRROR_PAD, PRELU, SPACE_TO_BATCH_ND ...) on the CPU: the
    build lowers each of them to the runtime instead of stopping at the first."""
    info = build_cli(models["float_transpose"], tmp_path / "fw", capsys, "--board", "corstone-300")
    cpu = [layer["opcode"] for layer in info["layers"] if layer["target"] == "cpu"]
    assert {"QUANTIZE", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
            "REVERSE_V2", "DEQUANTIZE"} <= set(cpu), cpu


def test_operators_the_functional_npu_model_cannot_check_run_on_the_cpu_with_a_warning(models, tmp_path, capsys):
    """The split model on an Ethos-U55: Vela lowers its stride-2 TRANSPOSE_CONV with IFM upscaling
    and its ARG_MAX with int16 lookup tables, which the functional model does not execute, and its
    first command stream writes beyond the scratch Vela planned for it (UNPACK's rank-3 outputs,
    sized 1x6x6 in NHCWB16, are written as 6x6x1). Those operators stay on the CPU, each reason
    one warning line, so the golden outputs check everything the firmware computes."""
    from edgepack.cli import main

    assert main(["build", str(models["split"]), "--board", "corstone-300", "-o", str(tmp_path / "fw"),
                 "--json"]) == 0
    captured = capsys.readouterr()
    kept = json.loads(captured.out)["vela"]["kept_on_cpu_unmodelled"]
    opcodes = {k["opcode"] for k in kept}
    assert {"TRANSPOSE_CONV", "ARG_MAX", "UNPACK"} <= opcodes, kept
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len({k["why"] for k in kept}), warnings
    assert any("IFM upscaling" in w and "TRANSPOSE_CONV" in w for w in warnings), warnings
    assert any("outside the region" in w and "UNPACK" in w for w in warnings), warnings


@ARM
@pytest.mark.parametrize("name", ["float_transpose", "channel_shuffle", "split"])
def test_npu_board_firmware_runs_the_layout_models_co_simulated(models, name, tmp_path, capsys):
    """Float I/O around NPU and CPU steps (float golden vectors, never cast to int8), the
    channel-shuffle model's NPU part, and the split model with the operators the functional model
    cannot check on the CPU: the firmware drives the co-simulated NPU, byte for byte."""
    from edgepack.sim import run_project

    build_cli(models[name], tmp_path / "fw", capsys, "--board", "corstone-300")
    (r,) = run_project(tmp_path / "fw", sim="auto")
    assert r.passed, r.failure or r.result_line
    # per-step counts: Vela's estimate on exactly the NPU steps, measured ticks on the CPU steps
    assert r.layers and all(("npu_estimate_cycles" in layer) == (layer["opcode"] == "ETHOS_U")
                            for layer in r.layers), r.layers
    assert all(layer["count"] > 0 for layer in r.layers if layer["opcode"] != "ETHOS_U")


def test_readme_operator_table_is_the_registry():
    """README's table of TFLM's int8 operators lists exactly the registry's operators as supported."""
    from pathlib import Path

    from edgepack.ops import supported_operators

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| TFLM operator (int8) | edgepack |"):]
    supported, refused = set(), set()
    for row in table.splitlines()[2:]:
        if not row.startswith("|"):
            break
        names, status = row.split("|")[1:3]
        ops = {n.strip().split(" ")[0] for n in names.split(",")}
        (refused if status.strip() == "no" else supported).update(ops)
    assert supported == set(supported_operators()), supported ^ set(supported_operators())
    assert not refused & supported
