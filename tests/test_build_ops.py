"""Spec: every operator the runtime has goes through `edgepack build` and runs bit-exactly
against TFLM, and every option a lowering cannot honour stops the build with one line.

Multi-operator int8 models are built here with the flatbuffers builder (tests/opmodels.py
`graph_model`), weights and quantization drawn from a seed:
* a MobileNetV2-like block: CONV 3x3 s2 RELU6 -> DEPTHWISE 3x3 RELU6 -> CONV 1x1 -> ADD residual
  -> HARD_SWISH -> PAD -> AVERAGE_POOL -> MEAN (keep_dims) -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX
* a gating model: CONV RELU -> TANH, LOGISTIC -> MEAN (keep_dims) -> MUL (broadcast) ->
  CONCATENATION (channels, then height) -> QUANTIZE -> MAX_POOL -> MEAN (no keep_dims) -> FC
  RELU_N1_TO_1
* an elementwise model: CONV -> MEAN (keep_dims) -> SUB (broadcast) -> LEAKY_RELU -> MAXIMUM
  (constant operand) -> RELU (requantizing) -> RELU6 -> MINIMUM (rank-1 constant) -> MEAN -> FC
Each is built with `edgepack build --board host` and run with `edgepack run --sim host
--sanitize` (ASan/UBSan), dense and folded (`--clusters 8`, and `--clusters 5` for 3-bit
palette indices); the gating and elementwise models also for mps3-an547 under QEMU. The firmware compares with
the golden outputs TFLM computed at build time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack.cli import main
from edgepack.resources import FIRMWARE_DIR
from edgepack.quant import conv_output_size
from tests.firmware_support import needs
from tests.opmodels import Op, T, graph_model, run_tflm

OP = tfl.BuiltinOperator
ACT = tfl.ActivationFunctionType
HOST = needs("gcc", "cmake", "ninja")
ARM = needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")
SEED = 20261122


def f32(x: float) -> float:
    return float(np.float32(x))


class Graph:
    """An int8 graph under construction. Each method adds one operator and returns its output
    tensor's name; output scales follow the expected spread of the result so that values stay
    mostly inside int8 (a saturated layer would make bit-exactness trivial)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, T] = {}
        self.ops: list[Op] = []
        self.int16: list[str] = []  # tensors retyped to int16 after building (refusal tests)

    # -- tensors
    def _name(self, prefix: str) -> str:
        return f"{prefix}{len(self.tensors)}"

    def act(self, shape, s: float | None = None, zp: int | None = None) -> str:
        name = self._name("x")
        s = f32(np.exp(self.rng.uniform(np.log(0.01), np.log(0.1)))) if s is None else f32(s)
        zp = int(self.rng.integers(-30, 31)) if zp is None else int(zp)
        self.tensors[name] = T(list(shape), s=s, zp=zp, name=name)
        return name

    def like(self, x: str, shape=None) -> str:
        t = self.tensors[x]
        return self.act(shape or t.shape, t.s, t.zp)

    def const(self, data, dtype, s=None, zp=0, qdim=0) -> str:
        name = self._name("c")
        data = np.asarray(data, dtype)
        self.tensors[name] = T(list(data.shape), dtype, s, zp, data, qdim, name)
        return name

    def shape(self, x: str) -> list[int]:
        return list(self.tensors[x].shape)

    def scale(self, x: str) -> float:
        return float(self.tensors[x].s)

    def _op(self, code, inputs, output, options_name=None, options=None, version=1) -> str:
        self.ops.append(Op(code, inputs, [output], options_name, options, version))
        return output

    # -- weighted operators
    def _weights(self, shape, channels: int, fan_in: int, x: str):
        w = self.rng.integers(-127, 128, size=shape).astype(np.int8)
        w_s = np.float32(np.exp(self.rng.uniform(np.log(0.002), np.log(0.02), channels)))
        acc_std = 50.0 * 73.0 * np.sqrt(fan_in)  # |x - zp| ~ 50, uniform int8 weights ~ 73
        bias = (self.rng.normal(0, 0.3 * acc_std, channels)).astype(np.int32)
        s_out = f32(self.scale(x) * float(np.mean(w_s)) * acc_std / 40.0
                    * self.rng.uniform(0.7, 1.3))
        return w, w_s, bias, s_out

    def conv(self, x, cout, k, stride=1, act=ACT.NONE, padding=tfl.Padding.SAME, dilation=1) -> str:
        n, h, w_, cin = self.shape(x)
        w, w_s, bias, s_out = self._weights((cout, k, k, cin), cout, k * k * cin, x)
        wt = self.const(w, np.int8, list(map(float, w_s)), 0, 0)
        bt = self.const(bias, np.int32, list(map(float, np.float32(self.scale(x)) * w_s)), 0, 0)
        pad = "SAME" if padding == tfl.Padding.SAME else "VALID"
        oh, ow = (conv_output_size(pad, d, k, stride, dilation) for d in (h, w_))
        out = self.act([n, oh, ow, cout], s_out)
        o = tfl.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW, o.fusedActivationFunction = padding, stride, stride, act
        o.dilationHFactor = o.dilationWFactor = dilation
        return self._op(OP.CONV_2D, [x, wt, bt], out, "Conv2DOptions", o, 3)

    def depthwise(self, x, k, stride=1, act=ACT.NONE, multiplier=1, dilation=1) -> str:
        n, h, w_, c = self.shape(x)
        cout = c * multiplier
        w, w_s, bias, s_out = self._weights((1, k, k, cout), cout, k * k, x)
        wt = self.const(w, np.int8, list(map(float, w_s)), 0, 3)
        bt = self.const(bias, np.int32, list(map(float, np.float32(self.scale(x)) * w_s)), 0, 0)
        oh, ow = (conv_output_size("SAME", d, k, stride, dilation) for d in (h, w_))
        out = self.act([n, oh, ow, cout], s_out)
        o = tfl.DepthwiseConv2DOptionsT()
        o.padding, o.strideH, o.strideW = tfl.Padding.SAME, stride, stride
        o.depthMultiplier, o.fusedActivationFunction = multiplier, act
        o.dilationHFactor = o.dilationWFactor = dilation
        return self._op(OP.DEPTHWISE_CONV_2D, [x, wt, bt], out, "DepthwiseConv2DOptions", o, 3)

    def fully_connected(self, x, units, act=ACT.NONE, per_channel=False) -> str:
        shape = self.shape(x)
        din = shape[-1]
        # per-tensor weights by default, as converters write them
        w, w_s, bias, s_out = self._weights((units, din), units if per_channel else 1, din, x)
        scales = list(map(float, w_s)) if per_channel else float(w_s[0])
        wt = self.const(w, np.int8, scales, 0)
        if not per_channel:
            bias = bias[:1].repeat(units) + np.arange(units, dtype=np.int32) * 37
        bt = self.const(bias, np.int32, list(map(float, np.float32(self.scale(x)) * w_s)), 0)
        out = self.act([int(np.prod(shape)) // din, units], s_out)
        o = tfl.FullyConnectedOptionsT()
        o.fusedActivationFunction = act
        return self._op(OP.FULLY_CONNECTED, [x, wt, bt], out, "FullyConnectedOptions", o, 4)

    # -- elementwise and the rest
    def add(self, a, b, act=ACT.NONE) -> str:
        s = f32(np.hypot(self.scale(a), self.scale(b)) * self.rng.uniform(0.9, 1.3))
        out = self.act(list(np.broadcast_shapes(tuple(self.shape(a)), tuple(self.shape(b)))), s)
        o = tfl.AddOptionsT()
        o.fusedActivationFunction = act
        return self._op(OP.ADD, [a, b], out, "AddOptions", o, 2)

    def sub(self, a, b, act=ACT.NONE) -> str:
        s = f32(np.hypot(self.scale(a), self.scale(b)) * self.rng.uniform(0.9, 1.3))
        out = self.act(list(np.broadcast_shapes(tuple(self.shape(a)), tuple(self.shape(b)))), s)
        o = tfl.SubOptionsT()
        o.fusedActivationFunction = act
        return self._op(OP.SUB, [a, b], out, "SubOptions", o, 2)

    def minmax(self, kind: str, a, b) -> str:
        """MAXIMUM / MINIMUM: the output takes a's quantization (converters give all three one)."""
        shape = list(np.broadcast_shapes(tuple(self.shape(a)), tuple(self.shape(b))))
        code = OP.MAXIMUM if kind == "maximum" else OP.MINIMUM
        return self._op(code, [a, b], self.like(a, shape), version=2)

    def relu(self, x, kind: str = "RELU", same: bool = False, s_out=None, zp_out=None) -> str:
        """Standalone RELU / RELU6; `same` keeps x's quantization (what TFLM's RELU6 assumes)."""
        s_out = s_out or self.scale(x) * self.rng.uniform(0.5, 1.5)
        out = self.like(x) if same else self.act(self.shape(x), s_out, zp_out)
        return self._op(getattr(OP, kind), [x], out, version=2)

    def leaky_relu(self, x, alpha: float) -> str:
        o = tfl.LeakyReluOptionsT()
        o.alpha = alpha
        out = self.act(self.shape(x), self.scale(x) * self.rng.uniform(0.6, 1.2))
        return self._op(OP.LEAKY_RELU, [x], out, "LeakyReluOptions", o, 2)

    def mul(self, a, b, s_out=None, zp_out=None, act=ACT.NONE) -> str:
        s = s_out or f32(self.scale(a) * self.scale(b) * 40 * self.rng.uniform(0.8, 1.5))
        shape = list(np.broadcast_shapes(tuple(self.shape(a)), tuple(self.shape(b))))
        out = self.act(shape, s, zp_out)
        o = tfl.MulOptionsT()
        o.fusedActivationFunction = act
        return self._op(OP.MUL, [a, b], out, "MulOptions", o, 2)

    def hard_swish(self, x) -> str:
        out = self.act(self.shape(x), self.scale(x) * self.rng.uniform(0.5, 1.0))
        return self._op(OP.HARD_SWISH, [x], out)

    def logistic(self, x) -> str:
        return self._op(OP.LOGISTIC, [x], self.act(self.shape(x), 1 / 256, -128), version=2)

    def tanh(self, x) -> str:
        return self._op(OP.TANH, [x], self.act(self.shape(x), 1 / 128, 0), version=2)

    def pad(self, x, pads) -> str:
        out_shape = [d + a + b for d, (a, b) in zip(self.shape(x), pads)]
        p = self.const(np.asarray(pads, np.int32), np.int32)
        return self._op(OP.PAD, [x, p], self.like(x, out_shape), "PadOptions", tfl.PadOptionsT(), 2)

    def pool(self, x, kind, k, stride, act=ACT.NONE, padding=tfl.Padding.VALID) -> str:
        n, h, w, c = self.shape(x)
        pad = "SAME" if padding == tfl.Padding.SAME else "VALID"
        out = self.like(x, [n, conv_output_size(pad, h, k, stride), conv_output_size(pad, w, k, stride), c])
        o = tfl.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = padding, stride, stride, k, k
        o.fusedActivationFunction = act
        code = OP.MAX_POOL_2D if kind == "max" else OP.AVERAGE_POOL_2D
        return self._op(code, [x], out, "Pool2DOptions", o, 2)

    def mean(self, x, keep_dims: bool, axes=(1, 2), s_out=None) -> str:
        n, _, _, c = self.shape(x)
        s = s_out or self.scale(x) * self.rng.uniform(0.3, 0.8)
        out = self.act([n, 1, 1, c] if keep_dims else [n, c], s)
        o = tfl.ReducerOptionsT()
        o.keepDims = keep_dims
        ax = self.const(np.asarray(axes, np.int32), np.int32)
        return self._op(OP.MEAN, [x, ax], out, "ReducerOptions", o, 2)

    def reshape(self, x, shape) -> str:
        o = tfl.ReshapeOptionsT()
        o.newShape = list(shape)
        s = self.const(np.asarray(shape, np.int32), np.int32)
        return self._op(OP.RESHAPE, [x, s], self.like(x, list(shape)), "ReshapeOptions", o)

    def concatenation(self, xs, axis, act=ACT.NONE) -> str:
        shape = self.shape(xs[0])
        shape[axis] = sum(self.shape(x)[axis] for x in xs)
        o = tfl.ConcatenationOptionsT()
        o.axis, o.fusedActivationFunction = axis, act
        return self._op(OP.CONCATENATION, list(xs), self.like(xs[0], shape), "ConcatenationOptions",
                        o, 3)

    def quantize(self, x) -> str:
        out = self.act(self.shape(x), self.scale(x) * np.exp(self.rng.uniform(-3, 3)))
        return self._op(OP.QUANTIZE, [x], out, version=2)

    def softmax(self, x, beta=1.0) -> str:
        o = tfl.SoftmaxOptionsT()
        o.beta = beta
        return self._op(OP.SOFTMAX, [x], self.act(self.shape(x), 1 / 256, -128), "SoftmaxOptions",
                        o, 2)

    def model(self, inputs, outputs) -> bytes:
        data = graph_model(self.tensors, self.ops, inputs, outputs)
        if not self.int16:
            return data
        m = tfl.ModelT.InitFromPackedBuf(data, 0)
        for t in m.subgraphs[0].tensors:
            if t.name.decode() in self.int16:
                t.type = tfl.TensorType.INT16
        b = flatbuffers.Builder(1 << 16)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def mobilenet_block(seed: int = SEED) -> bytes:
    g = Graph(seed)
    x = g.act([1, 16, 16, 3], 1 / 64, 0)
    c1 = g.conv(x, 8, 3, stride=2, act=ACT.RELU6)
    dw = g.depthwise(c1, 3, act=ACT.RELU6)
    pw = g.conv(dw, 8, 1)
    res = g.add(pw, c1)
    hs = g.hard_swish(res)
    p = g.pad(hs, [(0, 0), (1, 1), (1, 1), (0, 0)])
    ap = g.pool(p, "avg", 2, 2, act=ACT.RELU)
    m = g.mean(ap, keep_dims=True)
    r = g.reshape(m, [1, 8])
    fc = g.fully_connected(r, 10)
    return g.model([x], [g.softmax(fc)])


def gating_model(seed: int = SEED + 1) -> bytes:
    g = Graph(seed)
    x = g.act([1, 6, 6, 4])
    c = g.conv(x, 4, 1, act=ACT.RELU, padding=tfl.Padding.VALID)
    t = g.tanh(c)
    gate = g.mean(g.logistic(c), keep_dims=True)  # squeeze-and-excite style [1,1,1,4]
    m = g.mul(t, gate, s_out=1 / 128, zp_out=0)  # shares tanh's quantization: concatenable
    cat = g.concatenation([m, t], axis=3)
    cat_h = g.concatenation([cat, cat], axis=-3)
    q = g.quantize(cat_h)
    mp = g.pool(q, "max", 2, 2)
    mean = g.mean(mp, keep_dims=False)
    return g.model([x], [g.fully_connected(mean, 5, act=ACT.RELU_N1_TO_1)])


def elementwise_model(seed: int = SEED + 2) -> bytes:
    g = Graph(seed)
    x = g.act([1, 6, 6, 4], 1 / 128)  # keeps the activations within a few units, where RELU6 bites
    c = g.conv(x, 6, 3)
    centred = g.sub(c, g.mean(c, keep_dims=True, s_out=g.scale(c)))  # broadcast [1,1,1,6]
    lr = g.leaky_relu(centred, 0.2)
    t = g.tensors[lr]
    floor = g.const(g.rng.integers(-60, 20, size=(1, 1, 1, 6)), np.int8, t.s, t.zp)
    # RELU into 6/60 a step: RELU6 keeps 60 levels and clips the largest values
    r = g.relu(g.minmax("maximum", lr, floor), s_out=6 / 60, zp_out=-20)
    r6 = g.relu(r, "RELU6", same=True)
    t = g.tensors[r6]
    ceiling = g.const(g.rng.integers(0, 100, size=(6,)), np.int8, t.s, t.zp)
    mn = g.minmax("minimum", r6, ceiling)
    return g.model([x], [g.fully_connected(g.mean(mn, keep_dims=False), 5)])


MODELS = {"mobilenet_block": mobilenet_block, "gating": gating_model, "elementwise": elementwise_model}
OPERATORS = {"mobilenet_block": ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "HARD_SWISH",
                                 "PAD", "AVERAGE_POOL_2D", "MEAN", "RESHAPE", "FULLY_CONNECTED",
                                 "SOFTMAX"],
             "gating": ["CONV_2D", "TANH", "LOGISTIC", "MEAN", "MUL", "CONCATENATION",
                        "CONCATENATION", "QUANTIZE", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED"],
             "elementwise": ["CONV_2D", "MEAN", "SUB", "LEAKY_RELU", "MAXIMUM", "RELU", "RELU6",
                             "MINIMUM", "MEAN", "FULLY_CONNECTED"]}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ops_models")
    out = {}
    for name, make in MODELS.items():
        out[name] = root / f"{name}.tflite"
        out[name].write_bytes(make())
    return out


def build_cli(model: Path, out: Path, capsys, *extra) -> dict:
    code = main(["build", str(model), "-o", str(out), "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((out / "build.json").read_text())


def run_cli(project: Path, capsys, *extra) -> dict:
    code = main(["run", str(project), "--json", *extra])
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert code == 0 and info["passed"], captured.out[-3000:] + captured.err[-2000:]
    return info


def test_test_models_are_not_saturated(models):
    """Guard for the specs below: the outputs TFLM computes spread over many int8 values for
    random inputs, so a wrong multiplier or offset anywhere shows up as a mismatch."""
    rng = np.random.default_rng(SEED)
    for name, path in models.items():
        data = path.read_bytes()
        x = rng.integers(-128, 128, size=(1, 16, 16, 3) if name == "mobilenet_block" else (1, 6, 6, 4))
        outs = [run_tflm(data, [x.astype(np.int8)]) for _ in range(1)]
        assert len(np.unique(outs[0])) >= 4, (name, outs[0])


def assert_palettes(forms: list[str], clusters: int, odd_bits: int) -> None:
    """Every weight tensor folded to at most `clusters` codes, indices ceil(log2 K) bits wide,
    and at least one of them `odd_bits` wide; except tensors kept dense because their packed
    form would be no smaller (a 4x1x1x4 convolution: 16 bytes either way; never bigger)."""
    assert forms, "no weighted layer"
    widths = []
    for form in forms:
        if form == "dense int8":
            continue
        kind, bits, k = form.split()
        bits, k = int(bits.removesuffix("-bit")), int(k.removeprefix("K="))
        assert kind == "palette" and k <= clusters and bits == max(1, (k - 1).bit_length()), form
        widths.append(bits)
    assert odd_bits in widths, forms


# (model, --clusters): dense, 3-bit and 5-bit palettes for the block; the gating model dense
# here and 3-bit under QEMU below (two cores in CI: each host run builds with ASan, ~20 s).
HOST_RUNS = [("mobilenet_block", "auto"), ("mobilenet_block", "8"), ("mobilenet_block", "20"),
             ("gating", "auto"), ("elementwise", "auto")]


@HOST
@pytest.mark.parametrize("name,clusters", HOST_RUNS)
def test_every_operator_runs_bit_exactly_on_the_host_under_sanitizers(models, name, clusters,
                                                                      tmp_path, capsys):
    project = tmp_path / "fw"
    info = build_cli(models[name], project, capsys, "--board", "host", "--clusters", clusters)
    assert [layer["opcode"] for layer in info["layers"]] == OPERATORS[name]
    forms = [layer["weights_form"] for layer in info["layers"] if layer["weights_form"]]
    if clusters == "auto" and name == "mobilenet_block":
        # auto keeps a tensor of many distinct values dense (the first conv: 216 weights)
        assert "dense int8" in forms, forms
    elif clusters != "auto":
        assert_palettes(forms, int(clusters), {"8": 3, "20": 5}[clusters])
    run = run_cli(project, capsys, "--sim", "host", "--sanitize")
    (result,) = run["runs"]
    assert result["result_line"].startswith("EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes")
    assert "ASan/UBSan" in result["where"]


@ARM
@pytest.mark.parametrize("name", ["gating", "elementwise"])
def test_model_runs_bit_exactly_on_mps3_an547_under_qemu(models, name, tmp_path, capsys):
    project = tmp_path / "fw"
    info = build_cli(models[name], project, capsys, "--board", "mps3-an547", "--clusters", "5")
    assert_palettes([layer["weights_form"] for layer in info["layers"] if layer["weights_form"]], 5, 3)
    run = run_cli(project, capsys, "--sim", "qemu")
    (result,) = run["runs"]
    assert result["sim"] == "qemu"
    assert result["result_line"].startswith("EDGEPACK RESULT: PASS 4/4 inputs, 0 mismatched bytes")
    assert [layer["opcode"] for layer in result["layers"]] == OPERATORS[name]


# --- what the lowering refuses: one line naming the operator, its index and the reason ----------

def _refused_concat_activation(g):
    x = g.quantize(g.act([1, 4, 4, 2]))
    return g.concatenation([x, x], axis=3, act=ACT.RELU)


def _refused_concat_of_eleven(g):
    x = g.quantize(g.act([1, 2]))
    return g.concatenation([x] * 11, axis=1)


def _refused_mean_over_channels(g):
    return g.mean(g.quantize(g.act([1, 4, 4, 2])), keep_dims=True, axes=(3,))


def _refused_mean_axes_not_constant(g):
    x = g.quantize(g.act([1, 4, 4, 2]))
    axes = "axes"
    g.tensors[axes] = T([2], np.int32, name=axes)
    g.ops.append(Op(OP.MEAN, [x, axes], [g.act([1, 2])], "ReducerOptions", tfl.ReducerOptionsT(), 2))
    g.ops[-1].options.keepDims = False
    return g.ops[-1].outputs[0]


def _refused_per_channel_constant_operand(g):
    x = g.quantize(g.act([1, 4, 4, 2]))
    c = g.const(np.ones((1, 4, 4, 2)), np.int8, 0.1, 0)
    out = g.add(x, c)
    g.tensors[c].s, g.tensors[c].zp, g.tensors[c].qdim = [0.1, 0.2], [0, 0], 3  # per channel
    return out


def _refused_weights_not_constant(g):
    x = g.act([1, 4, 4, 2])
    w = g.act([3, 1, 1, 2], 0.01, 0)
    g.tensors[w].name = w
    out = g.act([1, 4, 4, 3])
    o = tfl.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW = tfl.Padding.SAME, 1, 1
    g._op(OP.CONV_2D, [x, w, None], out, "Conv2DOptions", o, 3)
    return out


def _refused_float_weights(g):
    x = g.quantize(g.act([1, 4, 4, 2]))
    w = g.const(np.ones((3, 1, 1, 2)), np.float32)
    out = g.act([1, 4, 4, 3])
    o = tfl.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW = tfl.Padding.SAME, 1, 1
    return g._op(OP.CONV_2D, [x, w, None], out, "Conv2DOptions", o, 3)


def _refused_fused_tanh(g):
    return g.conv(g.quantize(g.act([1, 4, 4, 2])), 3, 1, act=ACT.TANH)


def _refused_broadcast(g):
    a = g.quantize(g.act([1, 2, 1, 3]))
    b = g.quantize(g.act([1, 4, 1, 3]))
    o = tfl.AddOptionsT()
    return g._op(OP.ADD, [a, b], g.act([1, 4, 1, 3]), "AddOptions", o, 2)


def _refused_tanh_output_scale(g):
    x = g.quantize(g.act([1, 8]))
    return g._op(OP.TANH, [x], g.act([1, 8], 1 / 256, -128), version=2)


def _refused_hard_swish_scale(g):
    x = g.quantize(g.act([1, 8]))
    return g._op(OP.HARD_SWISH, [x], g.act([1, 8], g.scale(x) / 300, 0))


def _refused_concat_quantization(g):
    x = g.quantize(g.act([1, 4, 4, 2]))
    y = g.quantize(x)
    return g.concatenation([x, y], axis=3)


def _refused_int16_activations(g):
    x = g.quantize(g.act([1, 8]))
    y = g._op(OP.QUANTIZE, [x], g.act([1, 8]), version=2)
    g.int16.append(y)
    return g._op(OP.QUANTIZE, [y], g.act([1, 8]), version=2)


def _refused_unknown_operator(g):
    x = g.quantize(g.act([1, 8]))
    return g._op(OP.DIV, [x, x], g.act([1, 8]))


def _refused_relu_n1_to_1(g):
    return g.relu(g.quantize(g.act([1, 8])), "RELU_N1_TO_1")


REFUSED = {
    "concat_activation": (_refused_concat_activation, "operator 1 (CONCATENATION): fused activation RELU"),
    "concat_of_eleven": (_refused_concat_of_eleven, "operator 1 (CONCATENATION): 11 inputs (TFLM"),
    "mean_over_channels": (_refused_mean_over_channels, "operator 1 (MEAN): reduces over axes [3]"),
    "mean_axes_not_constant": (_refused_mean_axes_not_constant, "operator 1 (MEAN): reduction axes must be constant"),
    "per_channel_constant_operand": (_refused_per_channel_constant_operand,
                                     "operator 1 (ADD): constant operand 'c"),
    "weights_not_constant": (_refused_weights_not_constant, "operator 0 (CONV_2D): weights that are not constant"),
    "float_weights": (_refused_float_weights, "operator 1 (CONV_2D): float32 weights are not supported"),
    "fused_tanh": (_refused_fused_tanh, "operator 1 (CONV_2D): fused activation TANH is not supported"),
    "broadcast": (_refused_broadcast, "operator 2 (ADD): shapes [1, 2, 1, 3] and [1, 4, 1, 3] do not broadcast"),
    "tanh_output_scale": (_refused_tanh_output_scale, "operator 1 (TANH): int8 TANH needs output scale 1/128"),
    "hard_swish_scale": (_refused_hard_swish_scale, "operator 1 (HARD_SWISH): output scale"),
    "concat_quantization": (_refused_concat_quantization, "operator 2 (CONCATENATION): input 'x"),
    "int16_activations": (_refused_int16_activations, "int16 activations at operator 1 (QUANTIZE"),
    "unknown_operator": (_refused_unknown_operator,
                         "operator 1 (DIV): edgepack's runtime has no DIV kernel"),
    "relu_n1_to_1": (_refused_relu_n1_to_1, "operator 1 (RELU_N1_TO_1): TFLM, which computes the golden"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_option_the_runtime_cannot_honour_stops_the_build_with_one_line(case, tmp_path, capsys):
    make, expected = REFUSED[case]
    g = Graph(SEED)
    out_name = make(g)
    inputs = [n for n, t in g.tensors.items() if t.data is None and not any(n in o.outputs for o in g.ops)]
    model = tmp_path / f"{case}.tflite"
    model.write_bytes(g.model(inputs, [out_name]))
    code = main(["build", str(model), "--board", "host", "-o", str(tmp_path / "fw")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"edgepack: error: {model}: ") and expected in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name]  # nothing half-written


# --- the lowering across its option space: many random operators, one compiled program -------

def _random_shape(rng, rank=None, hi=6):
    rank = int(rng.integers(1, 5)) if rank is None else rank
    return [int(rng.integers(1, hi + 1)) for _ in range(rank)]


def _random_operator(g: Graph, rng, kind: str, i: int) -> tuple[list[str], str]:
    """Random operator `i` of `kind` on fresh graph inputs; returns (inputs, output). Every
    fourth one takes an extreme: a 40x40 MEAN window, a 10-input CONCATENATION."""
    acts = [ACT.NONE, ACT.RELU, ACT.RELU6, ACT.RELU_N1_TO_1]

    def inp(shape):
        return g.act(shape, np.exp(rng.uniform(np.log(0.002), np.log(0.2))), int(rng.integers(-128, 128)))

    if kind in ("tanh", "logistic", "hard_swish", "quantize"):
        x = inp(_random_shape(rng, hi=9))
        return [x], getattr(g, kind)(x)
    if kind == "softmax":
        x = inp([int(rng.integers(1, 4)), int(rng.integers(1, 40))])
        return [x], g.softmax(x, beta=float(rng.choice([1.0, f32(rng.uniform(0.2, 2.0))])))
    if kind == "mean":
        hw = 40 if i % 4 == 3 else 9
        x = inp([int(rng.integers(1, 3)), int(rng.integers(1, hw)), int(rng.integers(1, hw)),
                 int(rng.integers(1, 9))])
        same = bool(rng.integers(0, 2))
        axes = [(1, 2), (2, 1), (-3, -2)][int(rng.integers(0, 3))]
        return [x], g.mean(x, keep_dims=bool(rng.integers(0, 2)), axes=axes,
                           s_out=g.scale(x) if same else None)
    if kind == "concatenation":
        shape = _random_shape(rng)
        axis = int(rng.integers(-len(shape), len(shape)))
        first = inp(shape)
        xs = [first]
        for _ in range(int(rng.integers(0, 4)) if i % 4 else 9):
            s2 = list(shape)
            s2[axis] = int(rng.integers(1, 5))
            xs.append(g.like(first, s2))
        return xs, g.concatenation(xs, axis)
    if kind in ("relu", "relu6"):
        x = inp(_random_shape(rng, hi=9))
        return [x], g.relu(x, kind.upper(), same=kind == "relu6" and bool(rng.integers(0, 2)))
    if kind == "leaky_relu":
        x = inp(_random_shape(rng, hi=9))
        return [x], g.leaky_relu(x, f32(rng.choice([0.01, 0.2, rng.uniform(-1, 1.5)])))
    if kind in ("maximum", "minimum"):
        out = _random_shape(rng, rank=int(rng.integers(1, 5)))
        a = [d if rng.integers(0, 3) else 1 for d in out]
        b = [d if rng.integers(0, 3) else 1 for d in out][len(out) - int(rng.integers(1, len(out) + 1)):]
        xa = inp(a)
        xb = g.like(xa, b)
        return [xa, xb], g.minmax(kind, xa, xb)
    if kind in ("add", "mul", "sub"):
        out = _random_shape(rng, rank=int(rng.integers(1, 5)))
        a = [d if rng.integers(0, 3) else 1 for d in out]
        b = [d if rng.integers(0, 3) else 1 for d in out][len(out) - int(rng.integers(1, len(out) + 1)):]
        xa, xb = inp(a), inp(b)
        return [xa, xb], getattr(g, kind)(xa, xb, act=int(rng.choice(acts)))
    if kind == "pad":
        x = inp(_random_shape(rng))
        pads = [(int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in g.shape(x)]
        return [x], g.pad(x, pads)
    if kind in ("max_pool", "avg_pool"):
        k = int(rng.integers(1, 4))
        x = inp([int(rng.integers(1, 3)), int(rng.integers(k, 10)), int(rng.integers(k, 10)),
                 int(rng.integers(1, 6))])
        return [x], g.pool(x, kind[:3], k, int(rng.integers(1, 3)), act=int(rng.choice(acts)),
                           padding=int(rng.choice([tfl.Padding.SAME, tfl.Padding.VALID])))
    if kind in ("conv", "depthwise"):
        x = inp([1, int(rng.integers(5, 10)), int(rng.integers(5, 10)), int(rng.integers(1, 6))])
        dilation = int(rng.choice([1, 1, 2]))
        if kind == "conv":
            return [x], g.conv(x, int(rng.integers(1, 6)), int(rng.integers(1, 4)),
                               int(rng.integers(1, 3)), act=int(rng.choice(acts)), dilation=dilation,
                               padding=int(rng.choice([tfl.Padding.SAME, tfl.Padding.VALID])))
        return [x], g.depthwise(x, int(rng.integers(1, 4)), int(rng.integers(1, 3)),
                                act=int(rng.choice(acts)), multiplier=int(rng.integers(1, 3)),
                                dilation=dilation)
    if kind == "fully_connected":
        x = inp([int(rng.integers(1, 3)), int(rng.integers(1, 30))])
        return [x], g.fully_connected(x, int(rng.integers(1, 12)), act=int(rng.choice(acts)),
                                      per_channel=bool(rng.integers(0, 2)))
    raise ValueError(kind)


KINDS = ["tanh", "logistic", "hard_swish", "quantize", "softmax", "mean", "concatenation", "add",
         "mul", "pad", "max_pool", "avg_pool", "conv", "depthwise", "fully_connected", "sub", "relu",
         "relu6", "leaky_relu", "maximum", "minimum"]
PER_KIND = 16


def _c_values(data: np.ndarray) -> str:
    return "{" + ", ".join(str(int(v)) for v in np.asarray(data).ravel()) + "}"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_lowered_parameters_match_tflm_for_random_operators(tmp_path):
    """Each random operator is lowered by codegen (params, model arrays, arena plan), run by
    ep_plan_run in one host program built with ASan/UBSan, and compared with TFLM."""
    from edgepack import codegen, ops, plan
    from edgepack.tflite import read_model

    chunks, calls, names = [], [], []
    max_arena = 16
    for kind_id, kind in enumerate(KINDS):
        for i in range(PER_KIND):
            rng = np.random.default_rng([SEED, 99, kind_id, i])
            g = Graph(int(rng.integers(1 << 30)))
            inputs, output = _random_operator(g, rng, kind, i)
            path = tmp_path / f"{kind}_{i}.tflite"
            path.write_bytes(g.model(inputs, [output]))
            xs = [rng.integers(-128, 128, size=g.shape(x)).astype(np.int8) for x in inputs]
            expected = run_tflm(path.read_bytes(), xs)
            model = read_model(path)
            assert ops.unsupported_reason(model, model.operators[0]) is None, (kind, i)
            steps, blob = codegen.lower_model(model, {})
            arena = codegen.plan_arena(model, steps)
            max_arena = max(max_arena, arena.size)
            p = f"ep_t{len(names)}_"
            raw = blob.to_bytes()
            dtypes = {"int8_t": np.int8, "uint8_t": np.uint8, "int32_t": np.int32}
            for a in blob.arrays:
                values = np.frombuffer(raw[a.offset:a.offset + a.size], dtypes[a.ctype])
                chunks.append(f"static const {a.ctype} {a.symbol.replace('ep_op', p)}[] = {_c_values(values)};")
            (step,) = steps
            chunks.append(f"static const {step.params_type} {p}params = "
                          f"{plan.c_initializer(step.params).replace('ep_op', p)};")
            chunks.append(f"static const int32_t {p}inputs[] = "
                          f"{_c_values([arena.offsets[t] for t in step.inputs])};")
            chunks.append(f"static const ep_op {p}op = {{{step.kernel}, &{p}params, {len(step.inputs)}, "
                          f"{p}inputs, {arena.offsets[step.output]}, 0, NULL}};")
            chunks.append(f"static const ep_plan {p}plan = {{&{p}op, 1, {arena.size}, "
                          f"{arena.scratch_offset}, {arena.scratch_bytes}, NULL, 0}};")
            loads = []
            for k, (t, x) in enumerate(zip(model.inputs, xs)):
                chunks.append(f"static const int8_t {p}x{k}[] = {_c_values(x)};")
                loads.append(f"memcpy(arena + {arena.offsets[t]}, {p}x{k}, {x.size});")
            chunks.append(f"static const int8_t {p}expected[] = {_c_values(expected.astype(np.int8))};")
            out_off, out_size = arena.offsets[model.outputs[0]], expected.size
            calls.append(f"    memset(arena, 0x5a, sizeof arena_words); {' '.join(loads)}\n"
                         f"    st = ep_plan_run(&{p}plan, arena, {arena.size}, NULL, NULL);\n"
                         f"    printf(\"%d %d\\n\", (int)st, count_mismatches(arena + {out_off}, "
                         f"{p}expected, {out_size}));")
            names.append(f"{kind} {i}")
    source = "\n".join([
        "#include <stdio.h>", "#include <string.h>", '#include "edgepack.h"', "",
        f"static int32_t arena_words[{max_arena // 4 + 4}];", *chunks, "",
        "static int count_mismatches(const uint8_t *got, const int8_t *want, int n)", "{",
        "    int i, bad = 0;", "    for (i = 0; i < n; ++i) bad += (int8_t)got[i] != want[i];",
        "    return bad;", "}", "", "int main(void)", "{",
        "    uint8_t *arena = (uint8_t *)arena_words;", "    ep_status st;", *calls,
        "    return 0;", "}", ""])
    (tmp_path / "ops.c").write_text(source)
    sources = sorted(str(p) for p in (FIRMWARE_DIR / "src").glob("*.c"))
    exe = tmp_path / "ops"
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all"]
    cc = subprocess.run(["gcc", *flags, "-I", str(FIRMWARE_DIR / "include"),
                         str(tmp_path / "ops.c"), *sources, "-o", str(exe)], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    results = [tuple(map(int, line.split())) for line in run.stdout.splitlines()]
    assert len(results) == len(names)
    failures = [f"{name}: status {st}, {bad} mismatched bytes"
                for name, (st, bad) in zip(names, results) if st != 0 or bad]
    assert failures == [], failures
