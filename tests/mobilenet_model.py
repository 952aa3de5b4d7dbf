"""An int8 MobileNetV2-style model, built in memory as the TFLite converter would emit it.

    from tests.mobilenet_model import mobilenet_v2
    net = mobilenet_v2()                      # alpha 0.35, 96x96x3, 10 classes: 53 weight tensors
    small = mobilenet_v2(**SMALL)             # the variant the tests build and run
    Path("m.tflite").write_bytes(net.tflite)

The graph is Keras' MobileNetV2: CONV 3x3 s2 RELU6; inverted residual blocks (1x1 expand RELU6,
[PAD +] DEPTHWISE 3x3 RELU6 s1/s2, 1x1 project, ADD when stride 1 and channels match); a final
1x1 CONV RELU6; MEAN over H and W (what the converter emits for GlobalAveragePooling2D);
FULLY_CONNECTED; SOFTMAX. Stride-2 depthwise convolutions are preceded by an explicit PAD and use
VALID padding, as Keras' `correct_pad` + ZeroPadding2D converts.

Weights are what clustering-aware training and batch-norm folding leave behind: each layer is
clustered to one float codebook of 16 values; batch normalisation, folded in, multiplies each
output channel by its own gain and adds a bias. Gains and biases are real batch-norm folds: the
per-channel mean and deviation of the layer's output on calibration inputs, with random gamma and
beta. Weights are then quantized per channel (symmetric, scale = max|w| / 127), biases to int32
with scale = input scale x weight scale; FULLY_CONNECTED is per tensor, as the converter's default.
Activation ranges come from a float simulation of the network (with int8 fake quantization of
every activation) on random calibration inputs: asymmetric int8, 0 exactly representable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from .opmodels import Op, T, graph_model

# (expansion, output channels, repeats, first stride): MobileNetV2's bottleneck table
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

# The small variant the tests build and run on the host, QEMU and the NPU model: the same graph
# (every block, residual ADDs, PADs of even and odd sizes, MEAN over 2x2), a quarter of the pixels
# and a narrower head.
SMALL = dict(input_size=48, last_channels=256)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Keras' _make_divisible: round to a multiple of 8, never more than 10 % down."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


@dataclass
class LayerInfo:
    """One weight layer of the generated network."""

    name: str
    op_type: str
    weight_shape: tuple
    clusters: int | None


@dataclass
class MobileNet:
    """The generated model and what went into it."""

    tflite: bytes
    input_shape: tuple
    layers: list[LayerInfo] = field(default_factory=list)

    @property
    def weight_count(self) -> int:
        return int(sum(np.prod(layer.weight_shape) for layer in self.layers))


# ------------------------------------------------------------------------------------------
# float reference ops (NHWC), used only to calibrate ranges and batch-norm statistics
# ------------------------------------------------------------------------------------------

def _same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, k: int, stride: int, padding: str) -> np.ndarray:
    """[N, OH, OW, C, k, k] patches of x (zero padded for SAME)."""
    if padding == "SAME" and k > 1:
        ph, pw = _same_pads(x.shape[1], k, stride), _same_pads(x.shape[2], k, stride)
        x = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    return win[:, ::stride, ::stride]


def conv2d(x: np.ndarray, w: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """x [N,H,W,I], w [O,k,k,I] -> [N,OH,OW,O] (no bias)."""
    k = w.shape[1]
    if k == 1:
        return np.einsum("nhwi,oi->nhwo", x[:, ::stride, ::stride], w[:, 0, 0, :], optimize=True)
    win = _windows(x, k, stride, padding)  # [N,OH,OW,I,kh,kw]
    return np.einsum("nhwiyx,oyxi->nhwo", win, w, optimize=True)


def depthwise(x: np.ndarray, w: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """x [N,H,W,C], w [1,k,k,C] -> [N,OH,OW,C]."""
    win = _windows(x, w.shape[1], stride, padding)
    return np.einsum("nhwcyx,yxc->nhwc", win, w[0], optimize=True)


def _range_params(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) for [lo, hi] widened to hold 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max(hi - lo, 1e-6) / 255.0
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return float(np.float32(scale)), zp


def _fake_quant(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return (np.clip(np.round(x / scale) + zp, -128, 127) - zp) * scale


# ------------------------------------------------------------------------------------------
# the generator
# ------------------------------------------------------------------------------------------

class _Builder:
    def __init__(self, rng: np.random.Generator, calib: np.ndarray, clusters: int):
        self.rng, self.clusters = rng, clusters
        self.tensors: dict[str, T] = {}
        self.ops: list[Op] = []
        self.layers: list[LayerInfo] = []
        self.values: dict[str, np.ndarray] = {}  # float activations (fake-quantized) by name
        self.quant: dict[str, tuple[float, int]] = {}

    def activation(self, name: str, value: np.ndarray, shape: tuple, qrange=None) -> str:
        scale, zp = _range_params(*(qrange or (value.min(), value.max())))
        self.tensors[name] = T(list(shape), np.int8, scale, zp)
        self.values[name] = _fake_quant(value, scale, zp)
        self.quant[name] = (scale, zp)
        return name

    def clustered(self, shape: tuple) -> np.ndarray:
        """Weights drawn from one layer-wide float codebook (more mass near zero); with
        `clusters` None, never clustered (normal weights: the dense baseline)."""
        if self.clusters is None:
            return self.rng.normal(0.0, 1.0, shape)
        codebook = np.sort(self.rng.normal(0.0, 1.0, self.clusters))
        p = np.exp(-codebook ** 2)
        return codebook[self.rng.choice(self.clusters, size=shape, p=p / p.sum())]

    def weight_layer(self, kind: str, name: str, x: str, out_ch: int, k: int = 1,
                     stride: int = 1, padding: str = "SAME", relu6: bool = True) -> str:
        xv = self.values[x]
        in_ch = xv.shape[-1]
        if kind == "DEPTHWISE_CONV_2D":
            raw = self.clustered((1, k, k, in_ch))
            y = depthwise(xv, raw, stride, padding)
        else:
            raw = self.clustered((out_ch, k, k, in_ch))
            y = conv2d(xv, raw, stride, padding)
        # batch norm on the layer's own statistics, folded into weights and bias
        mu = y.reshape(-1, y.shape[-1]).mean(axis=0)
        sd = y.reshape(-1, y.shape[-1]).std(axis=0) + 1e-3
        gamma = self.rng.uniform(0.5, 1.5, mu.size) if relu6 else self.rng.uniform(0.3, 1.0, mu.size)
        beta = self.rng.normal(0.5, 0.5, mu.size) if relu6 else self.rng.normal(0.0, 0.2, mu.size)
        gain = gamma / sd
        axis = 3 if kind == "DEPTHWISE_CONV_2D" else 0
        bshape = [1, 1, 1, 1]
        bshape[axis] = -1
        w = raw * gain.reshape(bshape)
        b = beta - mu * gain
        # per-channel symmetric int8
        peak = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
        w_scale = (peak / 127.0).astype(np.float32)
        qw = np.clip(np.round(w / w_scale.reshape(bshape)), -127, 127).astype(np.int8)
        in_scale, _ = self.quant[x]
        b_scale = np.float32(in_scale) * w_scale.astype(np.float64)
        qb = np.round(b / b_scale).astype(np.int32)
        wq = qw * w_scale.reshape(bshape).astype(np.float64)  # what the int8 model computes with
        bq = qb * b_scale
        if kind == "DEPTHWISE_CONV_2D":
            y = depthwise(xv, wq, stride, padding) + bq
        else:
            y = conv2d(xv, wq, stride, padding) + bq
        if relu6:
            y = np.clip(y, 0.0, 6.0)
        wname, bname = f"{name}/weights", f"{name}/bias"
        self.tensors[wname] = T(list(qw.shape), np.int8, list(w_scale), 0, qw, qdim=axis)
        self.tensors[bname] = T([qb.size], np.int32, list(b_scale.astype(np.float32)), 0, qb)
        out = self.activation(name, y, (1,) + y.shape[1:])
        act = tfl.ActivationFunctionType.RELU6 if relu6 else tfl.ActivationFunctionType.NONE
        if kind == "DEPTHWISE_CONV_2D":
            opts = tfl.DepthwiseConv2DOptionsT()
            opts.depthMultiplier = 1
            code, options_name, version = tfl.BuiltinOperator.DEPTHWISE_CONV_2D, "DepthwiseConv2DOptions", 3
        else:
            opts = tfl.Conv2DOptionsT()
            code, options_name, version = tfl.BuiltinOperator.CONV_2D, "Conv2DOptions", 3
        opts.padding = tfl.Padding.SAME if padding == "SAME" else tfl.Padding.VALID
        opts.strideW = opts.strideH = stride
        opts.dilationWFactor = opts.dilationHFactor = 1
        opts.fusedActivationFunction = act
        self.ops.append(Op(code, [x, wname, bname], [out], options_name, opts, version))
        self.layers.append(LayerInfo(wname, kind, tuple(qw.shape), self.clusters))
        return out

    def pad(self, name: str, x: str) -> str:
        """Keras' correct_pad for a stride-2 3x3 kernel: one row/column after on even sizes."""
        xv = self.values[x]
        h, w = xv.shape[1:3]
        pads = np.array([[0, 0], [h % 2, 1], [w % 2, 1], [0, 0]], np.int32)
        self.tensors[f"{name}/paddings"] = T([4, 2], np.int32, data=pads)
        scale, zp = self.quant[x]
        y = np.pad(xv, [tuple(p) for p in pads])
        self.tensors[name] = T([1, *y.shape[1:]], np.int8, scale, zp)
        self.values[name], self.quant[name] = y, (scale, zp)
        self.ops.append(Op(tfl.BuiltinOperator.PAD, [x, f"{name}/paddings"], [name],
                           "PadOptions", tfl.PadOptionsT(), 2))
        return name

    def add(self, name: str, a: str, b: str) -> str:
        y = self.values[a] + self.values[b]
        out = self.activation(name, y, (1,) + y.shape[1:])
        opts = tfl.AddOptionsT()
        opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
        self.ops.append(Op(tfl.BuiltinOperator.ADD, [a, b], [out], "AddOptions", opts, 2))
        return out


def mobilenet_v2(input_size: int = 96, alpha: float = 0.35, classes: int = 10,
                 last_channels: int = 1280, blocks=BLOCKS, clusters: int | None = 16,
                 calibration: int = 4, seed: int = 0) -> MobileNet:
    """An int8 MobileNetV2 (Keras' layer sizes for `alpha`; `last_channels` 1280 as Keras keeps
    for alpha <= 1) of `input_size` x `input_size` x 3, every weight layer clustered to
    `clusters` values before batch-norm folding (None: never clustered); deterministic for a
    given seed."""
    rng = np.random.default_rng(seed)
    calib = rng.uniform(-1.0, 1.0, (calibration, input_size, input_size, 3))
    g = _Builder(rng, calib, clusters)
    # inputs in [-1, 1] as MobileNetV2's preprocessing gives, quantized as the converter does
    g.tensors["input"] = T([1, input_size, input_size, 3], np.int8, float(np.float32(2 / 255)), -1)
    g.values["input"] = _fake_quant(calib, float(np.float32(2 / 255)), -1)
    g.quant["input"] = (float(np.float32(2 / 255)), -1)

    x = g.weight_layer("CONV_2D", "stem", "input", make_divisible(32 * alpha), k=3, stride=2)
    in_ch = make_divisible(32 * alpha)
    block = 0
    for t, c, n, s in blocks:
        out_ch = make_divisible(int(c * alpha))
        for i in range(n):
            stride = s if i == 0 else 1
            prefix = f"block_{block}"
            h = x
            if t != 1:
                h = g.weight_layer("CONV_2D", f"{prefix}_expand", h, in_ch * t)
            if stride == 2:
                h = g.pad(f"{prefix}_pad", h)
            h = g.weight_layer("DEPTHWISE_CONV_2D", f"{prefix}_depthwise", h, in_ch * t, k=3,
                               stride=stride, padding="VALID" if stride == 2 else "SAME")
            h = g.weight_layer("CONV_2D", f"{prefix}_project", h, out_ch, relu6=False)
            if stride == 1 and in_ch == out_ch:
                h = g.add(f"{prefix}_add", x, h)
            x, in_ch = h, out_ch
            block += 1
    x = g.weight_layer("CONV_2D", "head", x, last_channels)

    # global average pooling: MEAN over H and W, keep_dims false
    xv = g.values[x]
    g.tensors["pool/axes"] = T([2], np.int32, data=np.array([1, 2], np.int32))
    pooled = g.activation("pool", xv.mean(axis=(1, 2)), (1, last_channels))
    opts = tfl.ReducerOptionsT()
    opts.keepDims = False
    g.ops.append(Op(tfl.BuiltinOperator.MEAN, [x, "pool/axes"], [pooled], "ReducerOptions", opts, 2))

    # classifier: clustered, no batch norm, per-tensor (the converter's default for FC)
    raw = g.clustered((classes, last_channels)) / np.sqrt(last_channels)
    w_scale = np.float32(np.abs(raw).max() / 127.0)
    qw = np.clip(np.round(raw / w_scale), -127, 127).astype(np.int8)
    in_scale, _ = g.quant[pooled]
    b_scale = float(np.float32(in_scale) * w_scale)
    qb = np.round(rng.normal(0, 0.1, classes) / b_scale).astype(np.int32)
    logits = g.values[pooled] @ (qw * float(w_scale)).T + qb * b_scale
    g.tensors["logits/weights"] = T([classes, last_channels], np.int8, float(w_scale), 0, qw)
    g.tensors["logits/bias"] = T([classes], np.int32, b_scale, 0, qb)
    g.activation("logits", logits, (1, classes))
    fc = tfl.FullyConnectedOptionsT()
    fc.fusedActivationFunction = tfl.ActivationFunctionType.NONE
    g.ops.append(Op(tfl.BuiltinOperator.FULLY_CONNECTED, ["pool", "logits/weights", "logits/bias"],
                    ["logits"], "FullyConnectedOptions", fc, 4))
    g.layers.append(LayerInfo("logits/weights", "FULLY_CONNECTED", qw.shape, clusters))

    g.tensors["probabilities"] = T([1, classes], np.int8, 1 / 256, -128)
    sm = tfl.SoftmaxOptionsT()
    sm.beta = 1.0
    g.ops.append(Op(tfl.BuiltinOperator.SOFTMAX, ["logits"], ["probabilities"], "SoftmaxOptions", sm, 2))
    model = graph_model(g.tensors, g.ops, ["input"], ["probabilities"])
    return MobileNet(model, (1, input_size, input_size, 3), g.layers)


def small_mobilenet(seed: int = 0) -> MobileNet:
    """The reduced variant (32x32 input, 256 head channels)."""
    return mobilenet_v2(seed=seed, **SMALL)
