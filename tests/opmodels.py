"""Single-operator int8 TFLite models built in memory, run by the TFLM interpreter (the oracle).

Reusable by any test: describe tensors with `T`, build with `single_op_model`, run with
`run_tflm`. Also the offline parameter arithmetic TFLM performs in Prepare (QuantizeMultiplier,
activation ranges, padding), mirrored in Python.

    model = single_op_model(tfl.BuiltinOperator.ADD, [T([1, 4], s=0.1, zp=3), T([1, 4], s=0.2, zp=-1)],
                            [T([1, 4], s=0.3, zp=0)], "AddOptions", tfl.AddOptionsT())
    y = run_tflm(model, [x1, x2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl

_TYPES = {np.dtype(np.int8): tfl.TensorType.INT8, np.dtype(np.int32): tfl.TensorType.INT32,
          np.dtype(np.float32): tfl.TensorType.FLOAT32, np.dtype(np.int64): tfl.TensorType.INT64}


@dataclass
class T:
    """A tensor: shape, dtype, quantization (scale scalar or per-channel list), constant data."""

    shape: list
    dtype: type = np.int8
    s: float | list | None = None
    zp: int | list = 0
    data: np.ndarray | None = None
    qdim: int = 0
    name: str = ""


def single_op_model(opcode: int, inputs: list, outputs: list, options_name: str | None = None,
                    options=None, version: int = 1) -> bytes:
    """Bytes of a one-operator TFLite model. Inputs without data are graph inputs (in order);
    an input of None is an omitted optional input (index -1)."""
    model = tfl.ModelT()
    model.version = 3
    model.description = "edgepack single-op test model"
    oc = tfl.OperatorCodeT()
    oc.builtinCode = opcode
    oc.deprecatedBuiltinCode = min(opcode, 127)
    oc.version = version
    model.operatorCodes = [oc]
    model.buffers = [tfl.BufferT()]
    sg = tfl.SubGraphT()
    sg.tensors = []
    graph_inputs = []

    def add_tensor(t: T) -> int:
        tt = tfl.TensorT()
        tt.shape = np.asarray(t.shape, np.int32)
        tt.type = _TYPES[np.dtype(t.dtype)]
        tt.name = (t.name or f"t{len(sg.tensors)}").encode()
        buf = tfl.BufferT()
        if t.data is not None:
            arr = np.ascontiguousarray(np.asarray(t.data, dtype=t.dtype).reshape(t.shape))
            buf.data = np.frombuffer(arr.tobytes(), np.uint8)
        model.buffers.append(buf)
        tt.buffer = len(model.buffers) - 1
        if t.s is not None:
            q = tfl.QuantizationParametersT()
            scales = np.atleast_1d(np.asarray(t.s, np.float32))
            zps = np.atleast_1d(np.asarray(t.zp, np.int64))
            if zps.size == 1 and scales.size > 1:
                zps = np.repeat(zps, scales.size)
            q.scale = scales
            q.zeroPoint = zps
            q.quantizedDimension = t.qdim
            tt.quantization = q
        sg.tensors.append(tt)
        return len(sg.tensors) - 1

    in_idx = []
    for t in inputs:
        if t is None:
            in_idx.append(-1)
            continue
        i = add_tensor(t)
        in_idx.append(i)
        if t.data is None:
            graph_inputs.append(i)
    out_idx = [add_tensor(t) for t in outputs]
    op = tfl.OperatorT()
    op.opcodeIndex = 0
    op.inputs = np.asarray(in_idx, np.int32)
    op.outputs = np.asarray(out_idx, np.int32)
    if options_name is not None:
        op.builtinOptionsType = getattr(tfl.BuiltinOptions, options_name)
        op.builtinOptions = options
    sg.operators = [op]
    sg.inputs = np.asarray(graph_inputs, np.int32)
    sg.outputs = np.asarray(out_idx, np.int32)
    sg.name = b"main"
    model.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_tflm(model_bytes: bytes, inputs: list, arena_size: int = 1 << 20) -> np.ndarray:
    """Run a model once in the TFLM interpreter; returns output 0."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
    for i, x in enumerate(inputs):
        it.set_input(np.ascontiguousarray(x), i)
    it.invoke()
    return np.array(it.get_output(0))


# --------------------------------------------------------------------------------------
# TFLite Prepare-time arithmetic, mirrored (names as in tensorflow/lite/kernels/internal)
# --------------------------------------------------------------------------------------

def tflite_round(x: float) -> int:
    """std::round: half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """QuantizeMultiplier: (Q31 multiplier, shift) with m = q * 2^shift."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def activation_range(act: int, scale: float, zp: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 (float arithmetic as TFLite does it)."""
    qmin, qmax = -128, 127

    def q(f):
        return zp + tflite_round(float(np.float32(f) / np.float32(scale)))

    A = tfl.ActivationFunctionType
    if act == A.RELU:
        return max(qmin, q(0.0)), qmax
    if act == A.RELU6:
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == A.RELU_N1_TO_1:
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    return qmin, qmax


def out_size(padding: int, in_size: int, filt: int, stride: int, dilation: int) -> int:
    eff = (filt - 1) * dilation + 1
    if padding == tfl.Padding.SAME:
        return (in_size + stride - 1) // stride
    return (in_size + stride - eff) // stride


def pad_before(in_size: int, filt: int, stride: int, dilation: int, out: int) -> int:
    """ComputePaddingWithOffset: the top/left padding."""
    eff = (filt - 1) * dilation + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1) * (1 << (total_signed_bits - input_integer_bits))
                          / (1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def sigmoid_params(in_scale: float) -> tuple[int, int, int]:
    """LOGISTIC/TANH int8 Prepare: (input_multiplier, input_left_shift, input_range_radius)."""
    real = float(np.float32(in_scale)) * float(1 << (31 - 4))
    q, shift = math.frexp(real)
    mult = tflite_round(q * (1 << 31))
    return int(mult), int(shift), calculate_input_radius(4, shift, 31)


def softmax_params(beta: float, in_scale: float) -> tuple[int, int, int]:
    """SOFTMAX int8 Prepare: (input_multiplier, input_left_shift, diff_min)."""
    max_real = float((1 << 31) - 1)
    real = min(float(np.float32(beta)) * float(np.float32(in_scale)) * float(1 << (31 - 5)), max_real)
    mult, shift = quantize_multiplier(real)  # QuantizeMultiplierGreaterThanOne
    diff_min = -calculate_input_radius(5, shift, 31)
    return mult, shift, diff_min


def downscale_int32_to_int16_multiplier(m: int) -> int:
    if m >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16


def hard_swish_params(in_scale: float, out_scale: float) -> tuple[int, int, int, int]:
    """HARD_SWISH Prepare (float32 arithmetic): (reluish_m16, reluish_exp, out_m16, out_exp)."""
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(in_scale)
    reluish_scale = f32(3.0) / f32(32768.0)
    out_m = hires / f32(out_scale)
    relu_m = hires / reluish_scale
    om, oe = quantize_multiplier(float(out_m))
    rm, re = quantize_multiplier(float(relu_m))
    return downscale_int32_to_int16_multiplier(rm), re, downscale_int32_to_int16_multiplier(om), oe


def add_params(s1: float, s2: float, so: float) -> dict:
    """ADD int8 Prepare: left_shift 20 and the three multipliers."""
    s1, s2, so = (float(np.float32(v)) for v in (s1, s2, so))
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / (float(1 << 20) * so))
    return dict(left_shift=20, input1_multiplier=m1, input1_shift=sh1, input2_multiplier=m2, input2_shift=sh2,
                output_multiplier=mo, output_shift=sho)


def conv_multipliers(in_scale: float, w_scales, out_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (or per-tensor) QuantizeMultiplier(in * w[c] / out), in double as TFLM does."""
    ms, ss = [], []
    for ws in np.atleast_1d(np.asarray(w_scales, np.float32)):
        m, s = quantize_multiplier(float(np.float32(in_scale)) * float(ws) / float(np.float32(out_scale)))
        ms.append(m)
        ss.append(s)
    return np.asarray(ms, np.int32), np.asarray(ss, np.int32)


def mean_multiplier(in_scale: float, out_scale: float, num_elements: int) -> tuple[int, int]:
    """MEAN (TFLM QuantizedMeanOrSum): QuantizeMultiplier(in/out) with 1/num_elements folded in."""
    m, s = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    k = min(num_elements.bit_length() - 1, 32, 31 + s)
    return int((m << k) // num_elements), int(s - k)


def fc_multipliers(s_in: float, w_scales, s_out: float) -> tuple[np.ndarray, np.ndarray]:
    """TFLM FULLY_CONNECTED: per-tensor multiplies the float32 scales in float first
    (GetQuantizedConvolutionMultipler); per-channel as conv."""
    w_scales = list(np.atleast_1d(w_scales))
    if len(w_scales) == 1:
        prod = float(np.float32(s_in) * np.float32(w_scales[0]))
        m, s = quantize_multiplier(prod / float(np.float32(s_out)))
        return np.asarray([m], np.int32), np.asarray([s], np.int32)
    return conv_multipliers(s_in, w_scales, s_out)


# --------------------------------------------------------------------------------------
# Multi-operator graphs
# --------------------------------------------------------------------------------------

@dataclass
class Op:
    """One operator of a `graph_model`: inputs/outputs name tensors of the graph (None: omitted)."""

    opcode: int
    inputs: list
    outputs: list
    options_name: str | None = None
    options: object = None
    version: int = 1


def graph_model(tensors: dict, ops: list, inputs: list, outputs: list) -> bytes:
    """Bytes of a TFLite model of several operators. `tensors` maps a name to its `T` (the name is
    the tensor's name in the model); `inputs`/`outputs` name the graph's inputs and outputs."""
    model = tfl.ModelT()
    model.version = 3
    model.description = "edgepack multi-op test model"
    model.buffers = [tfl.BufferT()]
    codes: dict[tuple[int, int], int] = {}
    model.operatorCodes = []
    sg = tfl.SubGraphT()
    sg.tensors = []
    index: dict[str, int] = {}
    for name, t in tensors.items():
        tt = tfl.TensorT()
        tt.shape = np.asarray(t.shape, np.int32)
        tt.type = _TYPES[np.dtype(t.dtype)]
        tt.name = name.encode()
        buf = tfl.BufferT()
        if t.data is not None:
            arr = np.ascontiguousarray(np.asarray(t.data, dtype=t.dtype).reshape(t.shape))
            buf.data = np.frombuffer(arr.tobytes(), np.uint8)
        model.buffers.append(buf)
        tt.buffer = len(model.buffers) - 1
        if t.s is not None:
            q = tfl.QuantizationParametersT()
            scales = np.atleast_1d(np.asarray(t.s, np.float32))
            zps = np.atleast_1d(np.asarray(t.zp, np.int64))
            if zps.size == 1 and scales.size > 1:
                zps = np.repeat(zps, scales.size)
            q.scale, q.zeroPoint, q.quantizedDimension = scales, zps, t.qdim
            tt.quantization = q
        index[name] = len(sg.tensors)
        sg.tensors.append(tt)
    sg.operators = []
    for o in ops:
        key = (o.opcode, o.version)
        if key not in codes:
            oc = tfl.OperatorCodeT()
            oc.builtinCode = o.opcode
            oc.deprecatedBuiltinCode = min(o.opcode, 127)
            oc.version = o.version
            codes[key] = len(model.operatorCodes)
            model.operatorCodes.append(oc)
        op = tfl.OperatorT()
        op.opcodeIndex = codes[key]
        op.inputs = np.asarray([-1 if n is None else index[n] for n in o.inputs], np.int32)
        op.outputs = np.asarray([index[n] for n in o.outputs], np.int32)
        if o.options_name is not None:
            op.builtinOptionsType = getattr(tfl.BuiltinOptions, o.options_name)
            op.builtinOptions = o.options
        sg.operators.append(op)
    sg.inputs = np.asarray([index[n] for n in inputs], np.int32)
    sg.outputs = np.asarray([index[n] for n in outputs], np.int32)
    sg.name = b"main"
    model.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
