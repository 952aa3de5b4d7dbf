"""Spec: every runtime kernel matches the TFLM interpreter bit for bit.

For each kernel, EP_RUNTIME_CONFIGS (default 300) random configurations are drawn from a seeded
generator: shapes, strides, paddings, dilations, zero points, scales, activations, and for
CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED both weight forms with every index width 1-8.
Each configuration becomes a single-operator int8 model run by TFLM; the runtime (loaded with
ctypes, see runtime_harness.py) must produce zero mismatched output bytes.

Reproduce a failure: EP_TEST_SEED=<seed> EP_TEST_ONLY=<config index> pytest -k <kernel>.
The same tests run under AddressSanitizer + UBSan in test_runtime_sanitized.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack.quant import (ACTIVATIONS, activation_range, add_params, conv_multipliers, conv_output_size,
                            fc_multipliers, hard_swish_params, leaky_relu_params, mean_multiplier, mul_multiplier,
                            relu_params, requantize_multiplier, same_padding, sigmoid_params, softmax_params)
from tests.opmodels import T, run_tflm, single_op_model
from tests.runtime_harness import Runtime, Weights

SEED = int(os.environ.get("EP_TEST_SEED", "20261122"))
N_CONFIGS = int(os.environ.get("EP_RUNTIME_CONFIGS", "300"))
ONLY = os.environ.get("EP_TEST_ONLY")
OP = tfl.BuiltinOperator
PADDINGS = ("SAME", "VALID")


@pytest.fixture(scope="module")
def rt():
    return Runtime()


@pytest.fixture(scope="module")
def rt_lut():
    """A build whose palette kernels always use the per-index lookup path (never the pair table)."""
    return Runtime(defines=("EP_PALETTE_FORCE_LUT",))


def configs(kernel_id: int):
    idx = [int(ONLY)] if ONLY is not None else range(N_CONFIGS)
    for i in idx:
        yield i, np.random.default_rng([SEED, kernel_id, i])


def fused(act: str) -> int:
    """The schema's ActivationFunctionType of an activation name (quant.ACTIVATIONS)."""
    return getattr(tfl.ActivationFunctionType, act)


@dataclass
class Window:
    """A sliding window over an input: filter, stride, dilation and padding, with the input and
    output sizes TFLite derives from them."""

    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    h: int
    w: int
    padding: str
    oh: int
    ow: int

    @property
    def pad(self) -> tuple[int, int]:
        return (same_padding(self.h, self.oh, self.sh, self.kh, self.dh),
                same_padding(self.w, self.ow, self.sw, self.kw, self.dw))

    def set_options(self, opts) -> None:
        """Padding, strides and dilation (Conv2D / DepthwiseConv2D) or filter size (Pool2D)."""
        opts.padding, opts.strideH, opts.strideW = getattr(tfl.Padding, self.padding), self.sh, self.sw
        if hasattr(opts, "dilationHFactor"):
            opts.dilationHFactor, opts.dilationWFactor = self.dh, self.dw
        else:
            opts.filterHeight, opts.filterWidth = self.kh, self.kw


def draw_window(rng, max_hw: int, dilated: bool = True) -> Window:
    """Filter 1-5, stride 1-3, dilation 1-3 (or 1), input 1..max_hw-1, SAME or VALID (VALID
    inputs grown to hold one dilated filter)."""
    kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dh, dw = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) if dilated else (1, 1)
    h, w = int(rng.integers(1, max_hw)), int(rng.integers(1, max_hw))
    padding = str(rng.choice(PADDINGS))
    if padding == "VALID":
        h, w = max(h, (kh - 1) * dh + 1), max(w, (kw - 1) * dw + 1)
    return Window(kh, kw, sh, sw, dh, dw, h, w, padding,
                  conv_output_size(padding, h, kh, sh, dh), conv_output_size(padding, w, kw, sw, dw))


def log_uniform(rng, lo, hi):
    return float(np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def i8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)


def compare(failures, name, i, expected, got, info=""):
    expected = np.asarray(expected).astype(np.int8).ravel()
    got = np.asarray(got).astype(np.int8).ravel()
    if expected.shape != got.shape or np.any(expected != got):
        n = int(np.sum(expected != got)) if expected.shape == got.shape else -1
        failures.append(f"{name} config {i} (seed {SEED}): {n} mismatched bytes {info}")


def report(failures, total):
    assert not failures, f"{len(failures)} of {total} configurations mismatch:\n" + "\n".join(failures[:20])


@dataclass
class Requantizing:
    """A random one-input, one-output operator that changes scale and zero point, run by TFLM."""

    x: np.ndarray
    s_in: float
    zp_in: int
    s_out: float
    zp_out: int
    expected: np.ndarray


def draw_requantizing(rng, opcode: int, s_in_range: tuple, log_ratio_range: tuple, version: int = 1):
    """Input [1-3, 1-99] with a log-uniform scale in s_in_range, output scale s_in * e^u for u
    uniform in log_ratio_range, random zero points."""
    shape = [int(rng.integers(1, 4)), int(rng.integers(1, 100))]
    s_in = log_uniform(rng, *s_in_range)
    s_out = float(np.float32(s_in * np.exp(rng.uniform(*log_ratio_range))))
    zp_in, zp_out = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    x = i8(rng, shape)
    model = single_op_model(opcode, [T(shape, s=s_in, zp=zp_in)], [T(shape, s=s_out, zp=zp_out)],
                            version=version)
    return Requantizing(x, s_in, zp_in, s_out, zp_out, run_tflm(model, [x]))


def random_weights_palette(rng, shape, bits):
    """A palette tensor: K <= 2^bits random codes, random indices; returns (codebook, indices)."""
    k = int(rng.integers(1, (1 << bits) + 1))
    codebook = rng.integers(-127, 128, size=k).astype(np.int8)
    indices = rng.integers(0, k, size=shape).astype(np.uint8)
    return codebook, indices


def weight_forms(rng, i, shape, rows):
    """(dense tensor, [Weights...]) covering dense and palette with bits = 1 + i % 8."""
    bits = 1 + i % 8
    codebook, indices = random_weights_palette(rng, shape, bits)
    pal = Weights.palette_form(codebook, indices, bits, shape, rows)
    return pal.dense, [Weights.dense_form(pal.dense), pal]


# ------------------------------------------------------------------------------ CONV_2D
def test_conv2d(rt, rt_lut):
    failures = []
    for i, rng in configs(1):
        n = int(rng.integers(1, 3))
        cin, cout = int(rng.integers(1, 17)), int(rng.integers(1, 17))
        win = draw_window(rng, 13)
        kh, kw, h, w, oh, ow = win.kh, win.kw, win.h, win.w, win.oh, win.ow
        s_in = log_uniform(rng, 0.002, 0.2)
        zp_in = int(rng.integers(-128, 128))
        per_channel = bool(rng.integers(0, 2))
        w_scales = [log_uniform(rng, 0.001, 0.05) for _ in range(cout if per_channel else 1)]
        s_out = float(np.float32(s_in * np.mean(w_scales) * rng.uniform(2, 60) * np.sqrt(kh * kw * cin)))
        zp_out = int(rng.integers(-128, 128))
        act = str(rng.choice(ACTIVATIONS))
        fshape = (cout, kh, kw, cin)
        dense, forms = weight_forms(rng, i, fshape, cout)
        bias = rng.integers(-20000, 20000, size=cout).astype(np.int32) if rng.integers(0, 4) else None
        x = i8(rng, (n, h, w, cin))
        opts = tfl.Conv2DOptionsT()
        win.set_options(opts)
        opts.fusedActivationFunction = fused(act)
        bias_t = None if bias is None else T([cout], np.int32, [s_in * ws for ws in w_scales], 0, bias, 0)
        model = single_op_model(OP.CONV_2D, [T([n, h, w, cin], s=s_in, zp=zp_in),
                                             T(list(fshape), s=w_scales, zp=0, data=dense, qdim=0), bias_t],
                                [T([n, oh, ow, cout], s=s_out, zp=zp_out)], "Conv2DOptions", opts, version=3)
        expected = run_tflm(model, [x])
        mult, shift = conv_multipliers(s_in, w_scales, s_out)
        lo, hi = activation_range(act, s_out, zp_out)
        for r, wf in [(rt, forms[0]), (rt, forms[1]), (rt_lut, forms[1])]:
            got = r.conv2d(x, wf, bias, mult, shift, filter_shape=fshape, out_shape=(n, oh, ow, cout),
                           stride=(win.sh, win.sw), dilation=(win.dh, win.dw), pad=win.pad,
                           input_offset=-zp_in, output_offset=zp_out, act=(lo, hi))
            compare(failures, "conv2d", i, expected, got, f"form={wf.form} bits={wf.bits} lut={r is rt_lut}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ DEPTHWISE_CONV_2D
def test_depthwise_conv2d(rt):
    failures = []
    for i, rng in configs(2):
        n = int(rng.integers(1, 3))
        cin, mult_d = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        cout = cin * mult_d
        win = draw_window(rng, 13)
        kh, kw, h, w, oh, ow = win.kh, win.kw, win.h, win.w, win.oh, win.ow
        s_in = log_uniform(rng, 0.002, 0.2)
        zp_in = int(rng.integers(-128, 128))
        per_channel = bool(rng.integers(0, 2))
        w_scales = [log_uniform(rng, 0.001, 0.05) for _ in range(cout if per_channel else 1)]
        s_out = float(np.float32(s_in * np.mean(w_scales) * rng.uniform(2, 40) * np.sqrt(kh * kw)))
        zp_out = int(rng.integers(-128, 128))
        act = str(rng.choice(ACTIVATIONS))
        fshape = (1, kh, kw, cout)
        dense, forms = weight_forms(rng, i, fshape, 1)
        bias = rng.integers(-20000, 20000, size=cout).astype(np.int32)  # TFLM crashes without a depthwise bias
        x = i8(rng, (n, h, w, cin))
        opts = tfl.DepthwiseConv2DOptionsT()
        win.set_options(opts)
        opts.depthMultiplier, opts.fusedActivationFunction = mult_d, fused(act)
        bias_t = None if bias is None else T([cout], np.int32, [s_in * ws for ws in w_scales], 0, bias, 0)
        model = single_op_model(OP.DEPTHWISE_CONV_2D, [T([n, h, w, cin], s=s_in, zp=zp_in),
                                                       T(list(fshape), s=w_scales, zp=0, data=dense, qdim=3), bias_t],
                                [T([n, oh, ow, cout], s=s_out, zp=zp_out)], "DepthwiseConv2DOptions", opts,
                                version=3)
        expected = run_tflm(model, [x])
        m, s = conv_multipliers(s_in, w_scales, s_out)
        lo, hi = activation_range(act, s_out, zp_out)
        for wf in forms:
            got = rt.depthwise_conv2d(x, wf, bias, m, s, filter_shape=fshape, out_shape=(n, oh, ow, cout),
                                      depth_multiplier=mult_d, stride=(win.sh, win.sw), dilation=(win.dh, win.dw),
                                      pad=win.pad,
                                      input_offset=-zp_in, output_offset=zp_out, act=(lo, hi))
            compare(failures, "depthwise", i, expected, got, f"form={wf.form} bits={wf.bits}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ FULLY_CONNECTED
def test_fully_connected(rt, rt_lut):
    failures = []
    for i, rng in configs(3):
        batches = int(rng.integers(1, 4))
        din, dout = int(rng.integers(1, 200)), int(rng.integers(1, 40))
        s_in = log_uniform(rng, 0.002, 0.2)
        zp_in = int(rng.integers(-128, 128))
        per_channel = bool(rng.integers(0, 2))
        w_scales = [log_uniform(rng, 0.001, 0.05) for _ in range(dout if per_channel else 1)]
        s_out = float(np.float32(s_in * np.mean(w_scales) * rng.uniform(2, 60) * np.sqrt(din)))
        zp_out = int(rng.integers(-128, 128))
        act = str(rng.choice(ACTIVATIONS))
        dense, forms = weight_forms(rng, i, (dout, din), dout)
        bias = rng.integers(-20000, 20000, size=dout).astype(np.int32) if rng.integers(0, 4) else None
        x = i8(rng, (batches, din))
        opts = tfl.FullyConnectedOptionsT()
        opts.fusedActivationFunction = fused(act)
        bias_t = None if bias is None else T([dout], np.int32, [s_in * ws for ws in w_scales], 0, bias, 0)
        model = single_op_model(OP.FULLY_CONNECTED, [T([batches, din], s=s_in, zp=zp_in),
                                                     T([dout, din], s=w_scales, zp=0, data=dense, qdim=0), bias_t],
                                [T([batches, dout], s=s_out, zp=zp_out)], "FullyConnectedOptions", opts,
                                version=4)
        expected = run_tflm(model, [x])
        m, s = fc_multipliers(s_in, w_scales, s_out)
        lo, hi = activation_range(act, s_out, zp_out)
        for r, wf in [(rt, forms[0]), (rt, forms[1]), (rt_lut, forms[1])]:
            got = r.fully_connected(x, wf, bias, m, s, batches=batches, input_depth=din, output_depth=dout,
                                    input_offset=-zp_in, output_offset=zp_out, act=(lo, hi))
            compare(failures, "fc", i, expected, got, f"form={wf.form} bits={wf.bits} lut={r is rt_lut}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ pools
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d(rt, kind):
    failures = []
    for i, rng in configs(4 if kind == "max" else 5):
        n = int(rng.integers(1, 3))
        c = int(rng.integers(1, 17))
        win = draw_window(rng, 17, dilated=False)
        h, w, oh, ow = win.h, win.w, win.oh, win.ow
        s = log_uniform(rng, 0.002, 0.2)
        zp = int(rng.integers(-128, 128))
        act = str(rng.choice(ACTIVATIONS))
        x = i8(rng, (n, h, w, c))
        opts = tfl.Pool2DOptionsT()
        win.set_options(opts)
        opts.fusedActivationFunction = fused(act)
        code = OP.MAX_POOL_2D if kind == "max" else OP.AVERAGE_POOL_2D
        model = single_op_model(code, [T([n, h, w, c], s=s, zp=zp)], [T([n, oh, ow, c], s=s, zp=zp)],
                                "Pool2DOptions", opts, version=2)
        expected = run_tflm(model, [x])
        got = rt.pool(kind, x, out_shape=(n, oh, ow, c), filt=(win.kh, win.kw), stride=(win.sh, win.sw), pad=win.pad,
                      act=activation_range(act, s, zp))
        compare(failures, f"{kind}pool", i, expected, got)
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ MEAN
def test_mean(rt):
    failures = []
    for i, rng in configs(6):
        n, h, w, c = (int(rng.integers(1, 3)), int(rng.integers(1, 12)), int(rng.integers(1, 12)),
                      int(rng.integers(1, 17)))
        keep = bool(rng.integers(0, 4))  # mostly keep_dims (the MobileNet global-pool form)
        same = (not keep) and bool(rng.integers(0, 2))
        s_in = log_uniform(rng, 0.002, 0.2)
        zp_in = int(rng.integers(-128, 128))
        s_out = s_in if same else log_uniform(rng, 0.002, 0.2)
        zp_out = zp_in if same else int(rng.integers(-128, 128))
        x = i8(rng, (n, h, w, c))
        opts = tfl.ReducerOptionsT()
        opts.keepDims = keep
        out_shape = [n, 1, 1, c] if keep else [n, c]
        model = single_op_model(OP.MEAN, [T([n, h, w, c], s=s_in, zp=zp_in),
                                          T([2], np.int32, data=np.array([1, 2], np.int32))],
                                [T(out_shape, s=s_out, zp=zp_out)], "ReducerOptions", opts, version=2)
        expected = run_tflm(model, [x])
        m, sh = mean_multiplier(s_in, s_out, h * w)
        got = rt.mean(x, mode=0, input_zero_point=zp_in, output_zero_point=zp_out, multiplier=m, shift=sh)
        compare(failures, "mean", i, expected, got, f"keep={keep} same={same}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ ADD / MUL
def broadcast_shapes(rng):
    out = [int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 9))]
    mode = int(rng.integers(0, 3))
    if mode == 0:
        return out, list(out), list(out)
    a = [d if rng.integers(0, 2) else 1 for d in out]
    b = [d if (rng.integers(0, 2) or a[k] == 1) else 1 for k, d in enumerate(out)]
    b = [out[k] if a[k] == 1 and b[k] == 1 and rng.integers(0, 2) else b[k] for k in range(4)]
    out = [max(x, y) for x, y in zip(a, b)]
    return out, a, b


@pytest.mark.parametrize("kind", ["add", "mul"])
def test_add_mul(rt, kind):
    failures = []
    for i, rng in configs(7 if kind == "add" else 8):
        out, a, b = broadcast_shapes(rng)
        s1, s2 = log_uniform(rng, 0.002, 0.2), log_uniform(rng, 0.002, 0.2)
        if kind == "add":
            s_out = float(np.float32((s1 + s2) * rng.uniform(0.5, 2.5)))
        else:
            s_out = float(np.float32(s1 * s2 * 128 * rng.uniform(0.3, 4)))
        z1, z2, zo = (int(rng.integers(-128, 128)) for _ in range(3))
        act = str(rng.choice(ACTIVATIONS))
        x1, x2 = i8(rng, a), i8(rng, b)
        if kind == "add":
            opts = tfl.AddOptionsT()
            opts.fusedActivationFunction = fused(act)
            model = single_op_model(OP.ADD, [T(a, s=s1, zp=z1), T(b, s=s2, zp=z2)], [T(out, s=s_out, zp=zo)],
                                    "AddOptions", opts, version=2)
        else:
            opts = tfl.MulOptionsT()
            opts.fusedActivationFunction = fused(act)
            model = single_op_model(OP.MUL, [T(a, s=s1, zp=z1), T(b, s=s2, zp=z2)], [T(out, s=s_out, zp=zo)],
                                    "MulOptions", opts, version=2)
        expected = run_tflm(model, [x1, x2])
        lo, hi = activation_range(act, s_out, zo)
        if kind == "add":
            got = rt.add(x1, x2, out_shape=out, input1_offset=-z1, input2_offset=-z2, output_offset=zo,
                         act_min=lo, act_max=hi, **add_params(s1, s2, s_out))
        else:
            m, sh = mul_multiplier(s1, s2, s_out)
            got = rt.mul(x1, x2, out_shape=out, input1_offset=-z1, input2_offset=-z2, output_offset=zo,
                         output_multiplier=m, output_shift=sh, act_min=lo, act_max=hi)
        compare(failures, kind, i, expected, got, f"{a}x{b}->{out}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ SOFTMAX
def test_softmax(rt):
    failures = []
    for i, rng in configs(9):
        rows, depth = int(rng.integers(1, 6)), int(rng.integers(1, 300))
        s_in = log_uniform(rng, 0.001, 0.5)
        zp_in = int(rng.integers(-128, 128))
        beta = float(rng.choice([1.0, 1.0, float(np.float32(rng.uniform(0.1, 3.0)))]))
        x = i8(rng, (rows, depth))
        opts = tfl.SoftmaxOptionsT()
        opts.beta = beta
        model = single_op_model(OP.SOFTMAX, [T([rows, depth], s=s_in, zp=zp_in)],
                                [T([rows, depth], s=1.0 / 256, zp=-128)], "SoftmaxOptions", opts, version=2)
        expected = run_tflm(model, [x])
        m, sh, dmin = softmax_params(beta, s_in)
        got = rt.softmax(x, input_multiplier=m, input_left_shift=sh, diff_min=dmin)
        compare(failures, "softmax", i, expected, got, f"beta={beta} s={s_in}")
    report(failures, N_CONFIGS)


def test_softmax_wide_input_scale(rt):
    """beta * input scale >= 16: the capped multiplier 2^31 - 1 keeps TFLM's left shift of 31
    (QuantizeMultiplier saturates to 30 only in TFLite's single-rounding build), and the kernel
    still matches TFLM where neighbours differ by one step."""
    failures = []
    for i, s_in in enumerate([16.0, 40.0, 64.0, 1000.0]):
        x = np.tile(np.array([[100, 99, 100, 98, -128, 127, 126, 127]], np.int8), (3, 1))
        opts = tfl.SoftmaxOptionsT()
        opts.beta = 1.0
        model = single_op_model(OP.SOFTMAX, [T(list(x.shape), s=s_in, zp=0)],
                                [T(list(x.shape), s=1.0 / 256, zp=-128)], "SoftmaxOptions", opts, version=2)
        m, sh, dmin = softmax_params(1.0, s_in)
        assert (sh, dmin) == (31, 0), (s_in, m, sh, dmin)
        got = rt.softmax(x, input_multiplier=m, input_left_shift=sh, diff_min=dmin)
        compare(failures, "softmax-wide", i, run_tflm(model, [x]), got, f"s={s_in}")
    report(failures, 4)


# ------------------------------------------------------------------------------ LOGISTIC / TANH
@pytest.mark.parametrize("kind", ["logistic", "tanh"])
def test_logistic_tanh(rt, kind):
    failures = []
    for i, rng in configs(10 if kind == "logistic" else 11):
        shape = [int(rng.integers(1, 4)), int(rng.integers(1, 100))]
        s_in = log_uniform(rng, 0.001, 0.5)
        zp_in = int(rng.integers(-128, 128))
        x = i8(rng, shape)
        out_t = T(shape, s=1.0 / 256, zp=-128) if kind == "logistic" else T(shape, s=1.0 / 128, zp=0)
        model = single_op_model(OP.LOGISTIC if kind == "logistic" else OP.TANH, [T(shape, s=s_in, zp=zp_in)],
                                [out_t], version=2)
        expected = run_tflm(model, [x])
        m, sh, radius = sigmoid_params(s_in)
        got = rt.sigmoid(kind, x, input_zero_point=zp_in, input_range_radius=radius, input_multiplier=m,
                         input_left_shift=sh)
        compare(failures, kind, i, expected, got, f"s={s_in}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ HARD_SWISH
def test_hard_swish(rt):
    failures = []
    for i, rng in configs(12):
        c = draw_requantizing(rng, OP.HARD_SWISH, (0.001, 0.5), (-1.5, 1.0))
        rm, re, om, oe = hard_swish_params(c.s_in, c.s_out)
        got = rt.hard_swish(c.x, input_zero_point=c.zp_in, output_zero_point=c.zp_out,
                            reluish_multiplier_fixedpoint_int16=rm, reluish_multiplier_exponent=re,
                            output_multiplier_fixedpoint_int16=om, output_multiplier_exponent=oe)
        compare(failures, "hard_swish", i, c.expected, got, f"s_in={c.s_in} s_out={c.s_out}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ PAD
def test_pad(rt):
    failures = []
    for i, rng in configs(13):
        shape = [int(rng.integers(1, 3)), int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 9))]
        pads = rng.integers(0, 4, size=(4, 2)).astype(np.int32)
        out = [d + int(p[0] + p[1]) for d, p in zip(shape, pads)]
        s, zp = log_uniform(rng, 0.002, 0.2), int(rng.integers(-128, 128))
        x = i8(rng, shape)
        model = single_op_model(OP.PAD, [T(shape, s=s, zp=zp), T([4, 2], np.int32, data=pads)], [T(out, s=s, zp=zp)],
                                "PadOptions", tfl.PadOptionsT(), version=2)
        expected = run_tflm(model, [x])
        got = rt.pad(x, out_shape=out, before=[int(p) for p in pads[:, 0]], pad_value=zp)
        compare(failures, "pad", i, expected, got)
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ CONCATENATION
def test_concatenation(rt):
    failures = []
    for i, rng in configs(14):
        rank = int(rng.integers(1, 5))
        shape = [int(rng.integers(1, 6)) for _ in range(rank)]
        axis = int(rng.integers(-rank, rank))
        k = int(rng.integers(1, 5))
        shapes = []
        for _ in range(k):
            s2 = list(shape)
            s2[axis] = int(rng.integers(1, 6))
            shapes.append(s2)
        out = list(shape)
        out[axis] = sum(s2[axis] for s2 in shapes)
        s, zp = log_uniform(rng, 0.002, 0.2), int(rng.integers(-128, 128))
        xs = [i8(rng, s2) for s2 in shapes]
        opts = tfl.ConcatenationOptionsT()
        opts.axis = axis
        model = single_op_model(OP.CONCATENATION, [T(s2, s=s, zp=zp) for s2 in shapes], [T(out, s=s, zp=zp)],
                                "ConcatenationOptions", opts, version=3)
        expected = run_tflm(model, xs)
        got = rt.concatenation(xs, axis)
        compare(failures, "concatenation", i, expected, got, f"{shapes} axis {axis}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ RESHAPE
def test_reshape(rt):
    failures = []
    for i, rng in configs(15):
        shape = [int(rng.integers(1, 6)) for _ in range(int(rng.integers(1, 5)))]
        total = int(np.prod(shape))
        out = [total] if rng.integers(0, 2) else [1, total]
        s, zp = log_uniform(rng, 0.002, 0.2), int(rng.integers(-128, 128))
        x = i8(rng, shape)
        opts = tfl.ReshapeOptionsT()
        opts.newShape = out
        model = single_op_model(OP.RESHAPE, [T(shape, s=s, zp=zp), T([len(out)], np.int32, data=np.array(out))],
                                [T(out, s=s, zp=zp)], "ReshapeOptions", opts)
        expected = run_tflm(model, [x])
        got = rt.reshape(x, out)
        compare(failures, "reshape", i, expected, got)
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ QUANTIZE (int8 -> int8)
def test_quantize(rt):
    failures = []
    for i, rng in configs(16):
        c = draw_requantizing(rng, OP.QUANTIZE, (0.002, 0.2), (-2, 2), version=2)
        m, sh = requantize_multiplier(c.s_in, c.s_out)
        got = rt.quantize(c.x, input_zero_point=c.zp_in, output_zero_point=c.zp_out, multiplier=m, shift=sh)
        compare(failures, "quantize", i, c.expected, got)
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ SUB
def test_sub(rt):
    """TFLM's int8 SUB: ADD's Prepare arithmetic, input2 subtracted; broadcasting both ways."""
    failures = []
    for i, rng in configs(17):
        out, a, b = broadcast_shapes(rng)
        s1, s2 = log_uniform(rng, 0.002, 0.2), log_uniform(rng, 0.002, 0.2)
        s_out = float(np.float32((s1 + s2) * rng.uniform(0.5, 2.5)))
        z1, z2, zo = (int(rng.integers(-128, 128)) for _ in range(3))
        act = str(rng.choice(ACTIVATIONS))
        x1, x2 = i8(rng, a), i8(rng, b)
        opts = tfl.SubOptionsT()
        opts.fusedActivationFunction = fused(act)
        model = single_op_model(OP.SUB, [T(a, s=s1, zp=z1), T(b, s=s2, zp=z2)], [T(out, s=s_out, zp=zo)],
                                "SubOptions", opts, version=2)
        expected = run_tflm(model, [x1, x2])
        lo, hi = activation_range(act, s_out, zo)
        got = rt.sub(x1, x2, out_shape=out, input1_offset=-z1, input2_offset=-z2, output_offset=zo,
                     act_min=lo, act_max=hi, **add_params(s1, s2, s_out))
        compare(failures, "sub", i, expected, got, f"{a}x{b}->{out} act={act}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ MAXIMUM / MINIMUM
@pytest.mark.parametrize("kind", ["maximum", "minimum"])
def test_maximum_minimum(rt, kind):
    """Raw int8 comparison with broadcasting (inputs and output share one quantization)."""
    failures = []
    for i, rng in configs(20 if kind == "maximum" else 21):
        out, a, b = broadcast_shapes(rng)
        s, zp = log_uniform(rng, 0.002, 0.2), int(rng.integers(-128, 128))
        x1, x2 = i8(rng, a), i8(rng, b)
        if rng.integers(0, 4) == 0:  # many ties
            x2 = np.broadcast_to(x1, out)[tuple(slice(0, d) for d in b)].copy()
        model = single_op_model(OP.MAXIMUM if kind == "maximum" else OP.MINIMUM,
                                [T(a, s=s, zp=zp), T(b, s=s, zp=zp)], [T(out, s=s, zp=zp)], version=2)
        expected = run_tflm(model, [x1, x2])
        got = rt.minmax(kind, x1, x2, out_shape=out)
        compare(failures, kind, i, expected, got, f"{a}x{b}->{out}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ RELU / RELU6
@pytest.mark.parametrize("kind", ["RELU", "RELU6"])
def test_relu(rt, kind):
    """Standalone RELU requantizes then clamps; TFLM's RELU6 clamps in the input quantization
    (half the configurations keep the quantization, as converters emit them)."""
    failures = []
    for i, rng in configs(18 if kind == "RELU" else 22):
        same = bool(rng.integers(0, 2))
        c = draw_requantizing(rng, getattr(OP, kind), (0.002, 0.2), (0.0, 0.0) if same else (-1.5, 1.5), version=2)
        if same:  # draw_requantizing drew independent zero points; rebuild with the input's
            model = single_op_model(getattr(OP, kind), [T(list(c.x.shape), s=c.s_in, zp=c.zp_in)],
                                    [T(list(c.x.shape), s=c.s_in, zp=c.zp_in)], version=2)
            c.s_out, c.zp_out, c.expected = c.s_in, c.zp_in, run_tflm(model, [c.x])
        got = rt.relu(c.x, **relu_params(kind, c.s_in, c.s_out, c.zp_in, c.zp_out))
        compare(failures, kind, i, c.expected, got, f"s_in={c.s_in} s_out={c.s_out} zp={c.zp_in},{c.zp_out}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ LEAKY_RELU
def test_leaky_relu(rt):
    """Identity and alpha multipliers from float32 products; alpha in [-1, 1.5] (0 and negative
    included), random scales and zero points."""
    failures = []
    for i, rng in configs(19):
        shape = [int(rng.integers(1, 4)), int(rng.integers(1, 100))]
        s_in = log_uniform(rng, 0.002, 0.2)
        s_out = float(np.float32(s_in * np.exp(rng.uniform(-1.5, 1.5))))
        zp_in, zp_out = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        alpha = float(np.float32(rng.choice([0.0, 0.01, 0.1, 0.2, 0.3, rng.uniform(-1.0, 1.5)])))
        x = i8(rng, shape)
        opts = tfl.LeakyReluOptionsT()
        opts.alpha = alpha
        model = single_op_model(OP.LEAKY_RELU, [T(shape, s=s_in, zp=zp_in)], [T(shape, s=s_out, zp=zp_out)],
                                "LeakyReluOptions", opts, version=2)
        expected = run_tflm(model, [x])
        got = rt.leaky_relu(x, input_zero_point=zp_in, output_zero_point=zp_out,
                            **leaky_relu_params(alpha, s_in, s_out))
        compare(failures, "leaky_relu", i, expected, got, f"alpha={alpha} s_in={s_in} s_out={s_out}")
    report(failures, N_CONFIGS)
