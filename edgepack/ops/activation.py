"""One-input activations and requantization: SOFTMAX, LOGISTIC, TANH, HARD_SWISH, RELU, RELU6,
LEAKY_RELU, QUANTIZE.
"""

from __future__ import annotations

import numpy as np

from .. import quant
from ..plan import C, PlanStep
from ..tflite import Model, Operator
from .base import (
    Lowering,
    register,
    scale_of,
    zero_point_of,
)


def _check_fixed_output(scale: float, zero_point: int):
    def check(model: Model, op: Operator) -> str | None:
        out = model.tensors[op.outputs[0]]
        if abs(scale_of(out) - scale) > 1e-9 * scale or zero_point_of(out) != zero_point:
            return (f"int8 {op.opcode} needs output scale 1/{round(1 / scale)} and zero point "
                    f"{zero_point}, not {scale_of(out):g} and {zero_point_of(out)}")
        return None
    return check


def _check_hard_swish(model: Model, op: Operator) -> str | None:
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if quant.hard_swish_params(scale_of(inp), scale_of(out))[3] > 0:
        return (f"output scale {scale_of(out):g} is at most 1/128 of the input scale "
                f"{scale_of(inp):g} (TFLM needs output_multiplier_exponent <= 0)")
    return None


def lower_softmax(lw: Lowering, op: Operator) -> PlanStep:
    inp = lw.t(op.inputs[0])
    mult, shift, diff_min = quant.softmax_params(float(op.options.get("beta", 1.0)), scale_of(inp))
    depth = int(inp.shape[-1]) if inp.shape else 1
    return lw.step(op, "EP_KERNEL_SOFTMAX", "ep_softmax_params", [op.inputs[0]], {
        "rows": inp.size // depth, "depth": depth, "input_multiplier": mult,
        "input_left_shift": shift, "diff_min": diff_min})


def _sigmoid(lw: Lowering, op: Operator, kernel: str) -> PlanStep:
    inp = lw.t(op.inputs[0])
    mult, shift, radius = quant.sigmoid_params(scale_of(inp))
    return lw.step(op, kernel, "ep_sigmoid_params", [op.inputs[0]], {
        "size": inp.size, "input_zero_point": zero_point_of(inp), "input_range_radius": radius,
        "input_multiplier": mult, "input_left_shift": shift})


def lower_logistic(lw: Lowering, op: Operator) -> PlanStep:
    return _sigmoid(lw, op, "EP_KERNEL_LOGISTIC")


def lower_tanh(lw: Lowering, op: Operator) -> PlanStep:
    return _sigmoid(lw, op, "EP_KERNEL_TANH")


def lower_hard_swish(lw: Lowering, op: Operator) -> PlanStep:
    inp, out = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    rm, re, om, oe = quant.hard_swish_params(scale_of(inp), scale_of(out))
    return lw.step(op, "EP_KERNEL_HARD_SWISH", "ep_hard_swish_params", [op.inputs[0]], {
        "size": inp.size, "input_zero_point": zero_point_of(inp), "output_zero_point": zero_point_of(out),
        "reluish_multiplier_fixedpoint_int16": rm, "reluish_multiplier_exponent": re,
        "output_multiplier_fixedpoint_int16": om, "output_multiplier_exponent": oe})


def lower_relu(lw: Lowering, op: Operator) -> PlanStep:
    inp, out = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    p = quant.relu_params(op.opcode, scale_of(inp), scale_of(out), zero_point_of(inp), zero_point_of(out))
    mode = C("EP_RELU_CLAMP" if p.pop("mode") else "EP_RELU_REQUANTIZE")
    return lw.step(op, "EP_KERNEL_RELU", "ep_relu_params", [op.inputs[0]],
                      {"size": inp.size, "mode": mode, **p})


def lower_leaky_relu(lw: Lowering, op: Operator) -> PlanStep:
    inp, out = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    p = quant.leaky_relu_params(float(op.options.get("alpha", 0.0)), scale_of(inp), scale_of(out))
    return lw.step(op, "EP_KERNEL_LEAKY_RELU", "ep_leaky_relu_params", [op.inputs[0]], {
        "size": inp.size, "input_zero_point": zero_point_of(inp), "output_zero_point": zero_point_of(out), **p})


def _check_float_io(model, op: Operator) -> str | None:
    """QUANTIZE float32 -> int8 or int8 -> int8; DEQUANTIZE int8 -> float32 (per tensor)."""
    float_side = model.tensors[op.outputs[0] if op.opcode == "DEQUANTIZE" else op.inputs[0]]
    int_side = model.tensors[op.inputs[0] if op.opcode == "DEQUANTIZE" else op.outputs[0]]
    if float_side.dtype not in ("int8", "float32"):
        return f"tensor '{float_side.name}' is {float_side.dtype} (int8 or float32 only)"
    if op.opcode == "DEQUANTIZE" and float_side.dtype != "float32":
        return f"DEQUANTIZE to {float_side.dtype} (float32 only)"
    if int_side.dtype != "int8" or int_side.quantization is None or int_side.quantization.per_channel:
        return f"tensor '{int_side.name}' is not per-tensor quantized int8"
    if not 0 < scale_of(int_side) < float("inf"):
        return f"tensor '{int_side.name}' has scale {scale_of(int_side)}"
    return None


def _float_quant_params(t) -> dict:
    """ep_float_quant_params of an int8 tensor (the C initializer prints the float32 scale exactly)."""
    return {"size": t.size, "zero_point": zero_point_of(t), "scale": C(f"{float(np.float32(scale_of(t))).hex()}f")}


def lower_dequantize(lw: Lowering, op: Operator) -> PlanStep:
    return lw.step(op, "EP_KERNEL_DEQUANTIZE", "ep_float_quant_params", [op.inputs[0]],
                   _float_quant_params(lw.t(op.inputs[0])))


def lower_quantize(lw: Lowering, op: Operator) -> PlanStep:
    inp, out = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    if inp.dtype == "float32":  # a model's float input
        return lw.step(op, "EP_KERNEL_QUANTIZE_F32", "ep_float_quant_params", [op.inputs[0]],
                       _float_quant_params(out))
    m, s = quant.requantize_multiplier(scale_of(inp), scale_of(out))
    return lw.step(op, "EP_KERNEL_QUANTIZE", "ep_quantize_params", [op.inputs[0]], {
        "size": inp.size, "input_zero_point": zero_point_of(inp), "output_zero_point": zero_point_of(out),
        "multiplier": m, "shift": s})


def _check_softmax(model: Model, op: Operator) -> str | None:
    # TFLM's Prepare (QuantizeMultiplierGreaterThanOne) aborts unless beta x input scale x 2^26
    # is above 1: a beta of 0 or below kills the interpreter
    beta = float(op.options.get("beta", 1.0))
    if not quant.f32(beta) * quant.f32(scale_of(model.tensors[op.inputs[0]])) * float(1 << 26) > 1:
        return (f"beta {beta:g} with input scale {scale_of(model.tensors[op.inputs[0]]):g} "
                "(TFLM needs beta x input scale x 2^26 above 1)")
    return _check_fixed_output(1 / 256, -128)(model, op)


register("SOFTMAX", lower_softmax, _check_softmax)
register("LOGISTIC", lower_logistic, _check_fixed_output(1 / 256, -128))
register("TANH", lower_tanh, _check_fixed_output(1 / 128, 0))
register("HARD_SWISH", lower_hard_swish, _check_hard_swish)
register("RELU", lower_relu)
register("RELU6", lower_relu)
register("LEAKY_RELU", lower_leaky_relu)
register("QUANTIZE", lower_quantize, _check_float_io, other_dtypes=frozenset({"float32"}))
register("DEQUANTIZE", lower_dequantize, _check_float_io, other_dtypes=frozenset({"float32"}))
