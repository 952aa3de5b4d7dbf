"""The NPU-vs-TFLM audit: random single-operator int8 models of every operator kind Vela 5.2 places
on the Ethos-U55/U65, compiled by Vela, run in the functional model and in TFLM (the oracle).

    case = random_case("CONV_2D", np.random.default_rng(1))
    result = run_case(case, "ethos-u55-128")   # CaseResult: on NPU?, bytes differing, max |difference|

Each generator draws shapes, quantization (scales log-uniform over two decades, zero points in
[-30, 30]), fused activations and, per kind, kernel sizes up to 12 (Vela splits kernels taller or
wider than 8 into sub-kernels), strides up to 3 and dilations up to 2, broadcast and unequal input
scales. `case.features` records what a divergence rule may depend on. Used by
tests/test_npu_audit.py (a fixed seeded sample per kind) and bench/npu_audit.py (the wide sweep).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from edgepack.errors import ModelError
from edgepack.npu import run_vela_model
from edgepack.npu.runner import read_tflite

from .npu_support import compile_vela, tflm_batch, tflm_cpu_runner
from .opmodels import T, single_op_model

BO = tfl.BuiltinOperator
AF = tfl.ActivationFunctionType
ACCELERATORS = ["ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256"]
ACTIVATIONS = {"NONE": AF.NONE, "RELU": AF.RELU, "RELU6": AF.RELU6, "RELU_N1_TO_1": AF.RELU_N1_TO_1}


@dataclass
class AuditCase:
    kind: str
    model: bytes
    input_shapes: list[tuple[int, ...]]
    features: dict = field(default_factory=dict)
    input_range: tuple[int, int] = (-128, 127)  # int8 values the random inputs take


@dataclass
class CaseResult:
    kind: str
    accelerator: str
    on_npu: bool  # Vela put the operator on the NPU (else the audit does not apply)
    differing: int  # output bytes that differ from TFLM, over all inputs (-1: not executable)
    max_difference: int  # largest |NPU - TFLM| in quantized steps
    features: dict


def _q(rng, lo=0.01, hi=0.5):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), int(rng.integers(-30, 31))


def _hw(rng, lo=1, hi=12):
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _act(rng, allowed=("NONE", "RELU", "RELU6")):
    name = str(rng.choice(list(allowed)))
    return name, ACTIVATIONS[name]


def _out_len(size, k, stride, dil, same):
    return -(-size // stride) if same else (size - (k - 1) * dil - 1) // stride + 1


def _conv_like(rng, kind):
    depthwise, fc = kind == "DEPTHWISE_CONV_2D", kind == "FULLY_CONNECTED"
    act_name, act = _act(rng)
    s_in, zp_in = _q(rng, 0.01, 0.1)
    s_out, zp_out = _q(rng, 0.02, 0.5)
    if fc:
        cin, cout, batch = int(rng.integers(1, 80)), int(rng.integers(1, 40)), 1
        ws = float(np.exp(rng.uniform(np.log(0.002), np.log(0.02))))
        o = tfl.FullyConnectedOptionsT()
        o.fusedActivationFunction = act
        model = single_op_model(BO.FULLY_CONNECTED, [
            T([batch, cin], s=s_in, zp=zp_in), T([cout, cin], s=ws, data=rng.integers(-127, 128, (cout, cin))),
            T([cout], np.int32, s=s_in * ws, data=rng.integers(-5000, 5000, cout))],
            [T([batch, cout], s=s_out, zp=zp_out)], "FullyConnectedOptions", o, 4)
        return AuditCase(kind, model, [(batch, cin)], {"activation": act_name, "cin": cin, "cout": cout})
    same = bool(rng.integers(0, 2))
    kh, kw = int(rng.integers(1, 13)), int(rng.integers(1, 13))
    sy, sx = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dil = int(rng.integers(1, 3)) if max(kh, kw) <= 6 else 1  # dilated 5x5/6x6: split as well
    h = int(rng.integers(max(kh, 2), kh * dil + 12))
    w = int(rng.integers(max(kw, 2), kw * dil + 12))
    h, w = max(h, (kh - 1) * dil + 1), max(w, (kw - 1) * dil + 1)
    oh, ow = _out_len(h, kh, sy, dil, same), _out_len(w, kw, sx, dil, same)
    cin = int(rng.integers(1, 24))
    cout = cin if depthwise else int(rng.integers(1, 40))
    ws = list(np.exp(rng.uniform(np.log(0.002), np.log(0.02), cout)))
    pad = tfl.Padding.SAME if same else tfl.Padding.VALID
    if depthwise:
        o = tfl.DepthwiseConv2DOptionsT()
        o.depthMultiplier = 1
        wt = T([1, kh, kw, cout], s=ws, qdim=3, data=rng.integers(-127, 128, (1, kh, kw, cout)))
        opcode, opts, version = BO.DEPTHWISE_CONV_2D, "DepthwiseConv2DOptions", 2
    else:
        o = tfl.Conv2DOptionsT()
        wt = T([cout, kh, kw, cin], s=ws, data=rng.integers(-127, 128, (cout, kh, kw, cin)))
        opcode, opts, version = BO.CONV_2D, "Conv2DOptions", 3
    o.padding, o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor = pad, sy, sx, dil, dil
    o.fusedActivationFunction = act
    model = single_op_model(opcode, [
        T([1, h, w, cin], s=s_in, zp=zp_in), wt,
        T([cout], np.int32, s=[s_in * x for x in ws], data=rng.integers(-5000, 5000, cout))],
        [T([1, oh, ow, cout], s=s_out, zp=zp_out)], opts, o, version)
    return AuditCase(kind, model, [(1, h, w, cin)], {
        "activation": act_name, "kernel": (kh, kw), "stride": (sy, sx), "dilation": dil,
        "padding": "SAME" if same else "VALID", "split_kernel": max(kh, kw) * dil > 8})


def _pool(rng, kind):
    act_name, act = _act(rng)
    same = bool(rng.integers(0, 2))
    kh, kw = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    sy, sx = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    h, w = int(rng.integers(kh, kh + 12)), int(rng.integers(kw, kw + 12))
    c = int(rng.integers(1, 24))
    s, zp = _q(rng)
    o = tfl.Pool2DOptionsT()
    o.padding = tfl.Padding.SAME if same else tfl.Padding.VALID
    o.strideH, o.strideW, o.filterHeight, o.filterWidth, o.fusedActivationFunction = sy, sx, kh, kw, act
    oh, ow = _out_len(h, kh, sy, 1, same), _out_len(w, kw, sx, 1, same)
    opcode = BO.AVERAGE_POOL_2D if kind == "AVERAGE_POOL_2D" else BO.MAX_POOL_2D
    # TFLite pooling requires equal input and output quantization
    model = single_op_model(opcode, [T([1, h, w, c], s=s, zp=zp)], [T([1, oh, ow, c], s=s, zp=zp)],
                            "Pool2DOptions", o, 2)
    return AuditCase(kind, model, [(1, h, w, c)], {"activation": act_name, "kernel": (kh, kw),
                                                   "stride": (sy, sx), "padding": "SAME" if same else "VALID"})


def _binary(rng, kind):
    act_name, act = _act(rng) if kind in ("ADD", "SUB", "MUL") else ("NONE", AF.NONE)
    h, w = _hw(rng, 1, 10)
    c = int(rng.integers(1, 20))
    shape = [1, h, w, c]
    broadcast = str(rng.choice(["none", "scalar", "channel", "row", "first"]))
    shape2 = {"none": shape, "scalar": [1, 1, 1, 1], "channel": [1, 1, 1, c], "row": [1, 1, w, c],
              "first": shape}[broadcast]
    shape1 = [1, 1, 1, c] if broadcast == "first" else shape
    equal = bool(rng.integers(0, 2)) or kind in ("MAXIMUM", "MINIMUM")
    s1, zp1 = _q(rng)
    s2, zp2 = (s1, zp1) if equal else _q(rng)
    so, zpo = (s1, zp1) if kind in ("MAXIMUM", "MINIMUM") else _q(rng, 0.01, 1.0)
    opts = {"ADD": ("AddOptions", tfl.AddOptionsT()), "SUB": ("SubOptions", tfl.SubOptionsT()),
            "MUL": ("MulOptions", tfl.MulOptionsT()), "MAXIMUM": (None, None), "MINIMUM": (None, None)}[kind]
    if opts[1] is not None:
        opts[1].fusedActivationFunction = act
    model = single_op_model(getattr(BO, kind), [T(shape1, s=s1, zp=zp1), T(shape2, s=s2, zp=zp2)],
                            [T(shape, s=so, zp=zpo)], opts[0], opts[1], 2 if kind in ("SUB", "MUL") else 1)
    return AuditCase(kind, model, [tuple(shape1), tuple(shape2)],
                     {"activation": act_name, "broadcast": broadcast, "equal_input_scales": equal})


def _unary(rng, kind):
    h, w = _hw(rng, 1, 10)
    c = int(rng.integers(1, 24))
    shape = [1, h, w, c]
    s_in, zp_in = _q(rng, 0.01, 0.2)
    equal = bool(rng.integers(0, 2))
    s_out, zp_out = (s_in, zp_in) if equal else _q(rng, 0.01, 0.2)
    opts, version = (None, None), 1
    if kind == "LOGISTIC":
        s_out, zp_out, equal = 1 / 256, -128, False
    elif kind == "TANH":
        s_out, zp_out, equal = 1 / 128, 0, False
    elif kind == "SOFTMAX":
        o = tfl.SoftmaxOptionsT()
        o.beta = float(rng.choice([1.0, 0.5, 2.0]))
        s_out, zp_out, equal, opts = 1 / 256, -128, False, ("SoftmaxOptions", o)
    elif kind == "LEAKY_RELU":
        o = tfl.LeakyReluOptionsT()
        o.alpha = float(rng.uniform(0.01, 0.5))
        opts, version = ("LeakyReluOptions", o), 2
    elif kind in ("RELU", "RELU6", "HARD_SWISH"):
        version = 2
    model = single_op_model(getattr(BO, kind), [T(shape, s=s_in, zp=zp_in)], [T(shape, s=s_out, zp=zp_out)],
                            opts[0], opts[1], version)
    return AuditCase(kind, model, [tuple(shape)], {"equal_quantization": equal})


def _mean(rng, kind):
    h, w = _hw(rng, 1, 12)
    c = int(rng.integers(1, 24))
    s_in, zp_in = _q(rng)
    equal = bool(rng.integers(0, 2))
    s_out, zp_out = (s_in, zp_in) if equal else _q(rng)
    o = tfl.ReducerOptionsT()
    o.keepDims = True
    model = single_op_model(BO.MEAN, [T([1, h, w, c], s=s_in, zp=zp_in), T([2], np.int32, data=np.array([1, 2], np.int32))],
                            [T([1, 1, 1, c], s=s_out, zp=zp_out)], "ReducerOptions", o, 2)
    return AuditCase(kind, model, [(1, h, w, c)], {"equal_quantization": equal, "window": h * w})


def _resize(rng, kind):
    h, w = _hw(rng, 1, 6)
    c = int(rng.integers(1, 8))
    factor = int(rng.choice([2, 4]))
    align = bool(rng.integers(0, 2))
    s, zp = _q(rng)
    if kind == "RESIZE_BILINEAR":
        o = tfl.ResizeBilinearOptionsT()
        o.alignCorners, o.halfPixelCenters = align, (not align) and bool(rng.integers(0, 2))
        opts = "ResizeBilinearOptions"
    else:
        o = tfl.ResizeNearestNeighborOptionsT()
        o.alignCorners, o.halfPixelCenters = align, (not align) and bool(rng.integers(0, 2))
        opts = "ResizeNearestNeighborOptions"
    size = np.array([h * factor, w * factor], np.int32)
    model = single_op_model(getattr(BO, kind), [T([1, h, w, c], s=s, zp=zp), T([2], np.int32, data=size)],
                            [T([1, h * factor, w * factor, c], s=s, zp=zp)], opts, o, 3)
    return AuditCase(kind, model, [(1, h, w, c)], {"factor": factor, "align_corners": align,
                                                   "half_pixel_centers": bool(o.halfPixelCenters)})


def _concat(rng, kind):
    h, w = _hw(rng, 1, 8)
    c1, c2 = int(rng.integers(1, 16)), int(rng.integers(1, 16))
    s1, zp1 = _q(rng)  # TFLM's int8 CONCATENATION requires equal quantization (it refuses others)
    s2, zp2, so, zpo, equal = s1, zp1, s1, zp1, True
    o = tfl.ConcatenationOptionsT()
    o.axis = 3
    model = single_op_model(BO.CONCATENATION, [T([1, h, w, c1], s=s1, zp=zp1), T([1, h, w, c2], s=s2, zp=zp2)],
                            [T([1, h, w, c1 + c2], s=so, zp=zpo)], "ConcatenationOptions", o)
    return AuditCase(kind, model, [(1, h, w, c1), (1, h, w, c2)], {"equal_quantization": equal})


def _pad(rng, kind):
    h, w = _hw(rng, 1, 8)
    c = int(rng.integers(1, 16))
    p = rng.integers(0, 3, (4, 2))
    p[0] = p[3] = 0
    s, zp = _q(rng)
    model = single_op_model(BO.PAD, [T([1, h, w, c], s=s, zp=zp), T([4, 2], np.int32, data=p.astype(np.int32))],
                            [T([1, h + int(p[1].sum()), w + int(p[2].sum()), c], s=s, zp=zp)], "PadOptions",
                            tfl.PadOptionsT(), 2)
    return AuditCase(kind, model, [(1, h, w, c)], {"pads": p[1:3].tolist()})


def _simple(rng, kind):
    """One-input operators whose options are constants: ABS, RSQRT, QUANTIZE, SLICE,
    STRIDED_SLICE, TRANSPOSE, EXPAND_DIMS, RESHAPE, SQUEEZE, MIRROR_PAD, PRELU, ARG_MAX."""
    h, w = _hw(rng, 1, 8)
    c = int(rng.integers(1, 12))
    shape = [1, h, w, c]
    s_in, zp_in = _q(rng, 0.01, 0.2)
    s_out, zp_out = _q(rng, 0.01, 0.2)
    ins, out_shape, opts, version, features, rng_in = [], shape, (None, None), 1, {}, (-128, 127)
    out_t = None
    if kind in ("ABS", "QUANTIZE"):
        pass
    elif kind == "RSQRT":
        zp_in = -128  # real values >= 0; the inputs below start above it
        s_out, zp_out = float(1 / np.sqrt(s_in)) / 200, -128
        rng_in = (-127, 127)
    elif kind in ("SLICE", "STRIDED_SLICE"):
        b = [0, int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(0, c))]
        size = [1, int(rng.integers(1, h - b[1] + 1)), int(rng.integers(1, w - b[2] + 1)), int(rng.integers(1, c - b[3] + 1))]
        s_out, zp_out = s_in, zp_in
        if kind == "SLICE":
            ins = [T([4], np.int32, data=np.array(b, np.int32)), T([4], np.int32, data=np.array(size, np.int32))]
            out_shape = size
        else:
            stride = [1, int(rng.integers(1, 3)), int(rng.integers(1, 3)), 1]
            end = [b[i] + size[i] for i in range(4)]
            out_shape = [-(-size[i] // stride[i]) for i in range(4)]
            ins = [T([4], np.int32, data=np.array(b, np.int32)), T([4], np.int32, data=np.array(end, np.int32)),
                   T([4], np.int32, data=np.array(stride, np.int32))]
            opts = ("StridedSliceOptions", tfl.StridedSliceOptionsT())
            features = {"strides": stride[1:3]}
    elif kind == "TRANSPOSE":
        perm = [0] + [int(v) + 1 for v in rng.permutation(3)]
        ins = [T([4], np.int32, data=np.array(perm, np.int32))]
        out_shape = [shape[p] for p in perm]
        s_out, zp_out, features = s_in, zp_in, {"perm": perm}
        opts = ("TransposeOptions", tfl.TransposeOptionsT())
    elif kind == "EXPAND_DIMS":
        ins = [T([1], np.int32, data=np.array([1], np.int32))]
        shape = [1, h * w, c]
        out_shape = [1, 1, h * w, c]
        s_out, zp_out = s_in, zp_in
    elif kind == "RESHAPE":
        out_shape = [1, h * w, c, 1]
        ins = [T([4], np.int32, data=np.array(out_shape, np.int32))]
        s_out, zp_out = s_in, zp_in
    elif kind == "SQUEEZE":
        shape = [1, h, 1, c]
        out_shape = [1, h, c]
        o = tfl.SqueezeOptionsT()
        o.squeezeDims = [2]
        opts, s_out, zp_out = ("SqueezeOptions", o), s_in, zp_in
    elif kind == "MIRROR_PAD":
        mode = int(rng.integers(0, 2))  # REFLECT, SYMMETRIC
        lim = 0 if mode == 0 else 1
        p = np.zeros((4, 2), np.int32)
        p[1] = rng.integers(0, min(h - 1 + lim, 2) + 1, 2)
        p[2] = rng.integers(0, min(w - 1 + lim, 2) + 1, 2)
        ins = [T([4, 2], np.int32, data=p)]
        out_shape = [1, h + int(p[1].sum()), w + int(p[2].sum()), c]
        o = tfl.MirrorPadOptionsT()
        o.mode = mode
        opts, s_out, zp_out, version = ("MirrorPadOptions", o), s_in, zp_in, 2
        features = {"mode": ["REFLECT", "SYMMETRIC"][mode]}
    elif kind == "PRELU":
        s_a = float(rng.uniform(0.002, 0.01))
        ins = [T([1, 1, c], s=s_a, zp=0, data=rng.integers(-127, 128, (1, 1, c)))]
    elif kind == "ARG_MAX":
        ins = [T([1], np.int32, data=np.array([3], np.int32))]
        out_shape = [1, h, w]
        o = tfl.ArgMaxOptionsT()
        o.outputType = tfl.TensorType.INT32
        opts, version = ("ArgMaxOptions", o), 2
        out_t = T(out_shape, np.int32)
    model = single_op_model(getattr(BO, kind), [T(shape, s=s_in, zp=zp_in), *ins],
                            [out_t or T(out_shape, s=s_out, zp=zp_out)], opts[0], opts[1], version)
    return AuditCase(kind, model, [tuple(shape)], features, rng_in)


def _multi(rng, kind):
    """SPLIT, SPLIT_V, UNPACK (several outputs), PACK (several inputs), SQUARED_DIFFERENCE,
    BATCH_MATMUL, TRANSPOSE_CONV."""
    h, w = _hw(rng, 1, 8)
    c = int(rng.integers(1, 12))
    s, zp = _q(rng, 0.01, 0.2)
    if kind == "SPLIT":
        n = int(rng.choice([2, 3]))
        c = n * int(rng.integers(1, 5))
        o = tfl.SplitOptionsT()
        o.numSplits = n
        model = single_op_model(BO.SPLIT, [T([], np.int32, data=np.array(3, np.int32)), T([1, h, w, c], s=s, zp=zp)],
                                [T([1, h, w, c // n], s=s, zp=zp) for _ in range(n)], "SplitOptions", o)
        return AuditCase(kind, model, [(1, h, w, c)], {"splits": n})
    if kind == "SPLIT_V":
        sizes = [int(v) for v in rng.integers(1, 5, 2)]
        o = tfl.SplitVOptionsT()
        o.numSplits = 2
        model = single_op_model(BO.SPLIT_V, [T([1, h, w, sum(sizes)], s=s, zp=zp),
                                             T([2], np.int32, data=np.array(sizes, np.int32)),
                                             T([], np.int32, data=np.array(3, np.int32))],
                                [T([1, h, w, k], s=s, zp=zp) for k in sizes], "SplitVOptions", o)
        return AuditCase(kind, model, [(1, h, w, sum(sizes))], {"sizes": sizes})
    if kind == "UNPACK":
        n = int(rng.integers(2, 4))
        o = tfl.UnpackOptionsT()
        o.num, o.axis = n, 1
        model = single_op_model(BO.UNPACK, [T([1, n, w, c], s=s, zp=zp)], [T([1, w, c], s=s, zp=zp) for _ in range(n)],
                                "UnpackOptions", o)
        return AuditCase(kind, model, [(1, n, w, c)], {"num": n})
    if kind == "PACK":
        n = int(rng.integers(2, 4))
        o = tfl.PackOptionsT()
        o.valuesCount, o.axis = n, 1
        model = single_op_model(BO.PACK, [T([1, w, c], s=s, zp=zp) for _ in range(n)], [T([1, n, w, c], s=s, zp=zp)],
                                "PackOptions", o)
        return AuditCase(kind, model, [(1, w, c)] * n, {"num": n})
    if kind == "SQUARED_DIFFERENCE":
        s2, zp2 = _q(rng, 0.01, 0.2)
        so = float(max(s, s2) ** 2 * 128)
        model = single_op_model(BO.SQUARED_DIFFERENCE, [T([1, h, w, c], s=s, zp=zp), T([1, h, w, c], s=s2, zp=zp2)],
                                [T([1, h, w, c], s=so, zp=-128)])
        return AuditCase(kind, model, [(1, h, w, c), (1, h, w, c)], {"equal_input_scales": False})
    if kind == "BATCH_MATMUL":
        m_, k_, n_ = int(rng.integers(1, 10)), int(rng.integers(1, 20)), int(rng.integers(1, 10))
        s2, zp2 = _q(rng, 0.01, 0.2)
        o = tfl.BatchMatMulOptionsT()
        so = s * s2 * k_ * 8
        model = single_op_model(BO.BATCH_MATMUL, [T([1, m_, k_], s=s, zp=zp), T([1, k_, n_], s=s2, zp=0)],
                                [T([1, m_, n_], s=so, zp=0)], "BatchMatMulOptions", o)
        return AuditCase(kind, model, [(1, m_, k_), (1, k_, n_)], {"m": m_, "k": k_, "n": n_})
    # TRANSPOSE_CONV: stride 1-2, SAME or VALID, kernel up to 5
    stride = int(rng.integers(1, 3))
    k = int(rng.integers(1, 6))
    same = bool(rng.integers(0, 2))
    cout = int(rng.integers(1, 16))
    oh = h * stride if same else (h - 1) * stride + k
    ow = w * stride if same else (w - 1) * stride + k
    ws = list(np.exp(rng.uniform(np.log(0.002), np.log(0.02), cout)))
    o = tfl.TransposeConvOptionsT()
    o.padding, o.strideH, o.strideW = tfl.Padding.SAME if same else tfl.Padding.VALID, stride, stride
    model = single_op_model(BO.TRANSPOSE_CONV, [
        T([4], np.int32, data=np.array([1, oh, ow, cout], np.int32)),
        T([cout, k, k, c], s=ws, data=rng.integers(-127, 128, (cout, k, k, c))),
        T([1, h, w, c], s=s, zp=zp)], [T([1, oh, ow, cout], s=float(s * 0.02 * k), zp=0)],
        "TransposeConvOptions", o, 3)
    return AuditCase(kind, model, [(1, h, w, c)], {"stride": stride, "kernel": k, "padding": "SAME" if same else "VALID"})


GENERATORS = {
    "CONV_2D": _conv_like, "DEPTHWISE_CONV_2D": _conv_like, "FULLY_CONNECTED": _conv_like,
    "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool,
    "ADD": _binary, "SUB": _binary, "MUL": _binary, "MAXIMUM": _binary, "MINIMUM": _binary,
    "RELU": _unary, "RELU6": _unary, "LEAKY_RELU": _unary, "HARD_SWISH": _unary, "LOGISTIC": _unary,
    "TANH": _unary, "SOFTMAX": _unary, "MEAN": _mean,
    "RESIZE_BILINEAR": _resize, "RESIZE_NEAREST_NEIGHBOR": _resize,
    "CONCATENATION": _concat, "PAD": _pad,
    **{k: _simple for k in ("ABS", "RSQRT", "QUANTIZE", "SLICE", "STRIDED_SLICE", "TRANSPOSE",
                            "EXPAND_DIMS", "RESHAPE", "SQUEEZE", "MIRROR_PAD", "PRELU", "ARG_MAX")},
    **{k: _multi for k in ("SPLIT", "SPLIT_V", "UNPACK", "PACK", "SQUARED_DIFFERENCE", "BATCH_MATMUL",
                           "TRANSPOSE_CONV")},
}
KINDS = sorted(GENERATORS)


def random_case(kind: str, rng: np.random.Generator) -> AuditCase:
    return GENERATORS[kind](rng, kind)


def run_case(case: AuditCase, accelerator: str, n_inputs: int = 16, seed: int = 0) -> CaseResult:
    """Compile with Vela for `accelerator`, run `n_inputs` random inputs in the functional model and in
    TFLM; operators Vela leaves on the CPU are reported with on_npu False (and run in TFLM)."""
    vela = compile_vela(case.model, accelerator)
    m = read_tflite(vela.read_bytes())
    codes = m.operatorCodes
    on_npu = all((codes[op.opcodeIndex].customCode or b"") == b"ethos-u" for op in m.subgraphs[0].operators)
    rng = np.random.default_rng(seed)
    lo, hi = case.input_range
    xs = [rng.integers(lo, hi + 1, (n_inputs, *shape), dtype=np.int8) for shape in case.input_shapes]
    want = [np.asarray(y).astype(np.int64) for y in tflm_batch(case.model, xs)]
    if not on_npu:
        return CaseResult(case.kind, accelerator, False, 0, 0, case.features)
    try:
        got = [np.asarray(y).astype(np.int64) for y in run_vela_model(vela, xs, tflm_cpu_runner(vela))]
    except ModelError as err:  # a feature the functional model does not execute (never guessed)
        return CaseResult(case.kind, accelerator, True, -1, -1, dict(case.features, unmodelled=str(err)))
    diffs = [np.abs(g.reshape(w.shape) - w) for g, w in zip(got, want)]
    return CaseResult(case.kind, accelerator, True, int(sum((d > 0).sum() for d in diffs)),
                      int(max(d.max(initial=0) for d in diffs)), case.features)
