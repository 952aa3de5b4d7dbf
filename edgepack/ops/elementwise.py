"""Two-input elementwise operators with broadcasting and constant operands: ADD, SUB, MUL,
MAXIMUM, MINIMUM, PRELU, SQUARED_DIFFERENCE.
"""

from __future__ import annotations

from .. import quant
from ..plan import PlanStep, shape4, shape_init
from ..tflite import Model, Operator
from .base import (
    Lowering,
    register,
    scale_of,
    zero_point_of,
)


def _check_binary(model: Model, op: Operator) -> str | None:
    a, b, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    for t in (a, b):
        # A constant operand is read from the model data (EP_CONST), so it must be what an
        # activation would be: int8, quantized per tensor.
        if t.is_constant and t.dtype != "int8":
            return f"constant operand '{t.name}' is {t.dtype}, the runtime computes int8"
        if t.is_constant and (t.quantization is None or t.quantization.per_channel):
            return f"constant operand '{t.name}' needs one int8 scale and zero point"
    o = shape4(out.shape)
    for t in (a, b):
        s = shape4(t.shape)
        if any(d not in (1, od) for d, od in zip(s, o)):
            return (f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast to "
                    f"{list(out.shape)} (each dimension must match the output or be 1)")
    return None


def lower_add(lw: Lowering, op: Operator) -> PlanStep:
    a, b, out = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    p = quant.add_params(scale_of(a), scale_of(b), scale_of(out))
    lo, hi = quant.activation_range(op.fused_activation, scale_of(out), zero_point_of(out))
    return lw.constant_operands(lw.step(op, "EP_KERNEL_ADD", "ep_add_params", op.inputs[:2], {
        "input1": shape_init(a.shape), "input2": shape_init(b.shape),
        "output": shape_init(out.shape), "input1_offset": -zero_point_of(a), "input2_offset": -zero_point_of(b),
        "output_offset": zero_point_of(out), "left_shift": p["left_shift"],
        "input1_multiplier": p["input1_multiplier"], "input1_shift": p["input1_shift"],
        "input2_multiplier": p["input2_multiplier"], "input2_shift": p["input2_shift"],
        "output_multiplier": p["output_multiplier"], "output_shift": p["output_shift"],
        "act_min": lo, "act_max": hi}))


def lower_sub(lw: Lowering, op: Operator) -> PlanStep:
    # TFLM's int8 SUB prepares exactly as ADD does; only the kernel subtracts.
    step = lower_add(lw, op)
    step.kernel, step.params_type = "EP_KERNEL_SUB", "ep_sub_params"
    return step


def _minmax(lw: Lowering, op: Operator, kernel: str) -> PlanStep:
    a, b, out = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    return lw.constant_operands(lw.step(op, kernel, "ep_minmax_params", op.inputs[:2], {
        "input1": shape_init(a.shape), "input2": shape_init(b.shape),
        "output": shape_init(out.shape)}))


def lower_maximum(lw: Lowering, op: Operator) -> PlanStep:
    return _minmax(lw, op, "EP_KERNEL_MAXIMUM")


def lower_minimum(lw: Lowering, op: Operator) -> PlanStep:
    return _minmax(lw, op, "EP_KERNEL_MINIMUM")


def lower_mul(lw: Lowering, op: Operator) -> PlanStep:
    a, b, out = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    m, s = quant.mul_multiplier(scale_of(a), scale_of(b), scale_of(out))
    lo, hi = quant.activation_range(op.fused_activation, scale_of(out), zero_point_of(out))
    return lw.constant_operands(lw.step(op, "EP_KERNEL_MUL", "ep_mul_params", op.inputs[:2], {
        "input1": shape_init(a.shape), "input2": shape_init(b.shape),
        "output": shape_init(out.shape), "input1_offset": -zero_point_of(a), "input2_offset": -zero_point_of(b),
        "output_offset": zero_point_of(out), "output_multiplier": m, "output_shift": s,
        "act_min": lo, "act_max": hi}))


def lower_squared_difference(lw: Lowering, op: Operator) -> PlanStep:
    a, b, out = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    return lw.constant_operands(lw.step(op, "EP_KERNEL_SQUARED_DIFFERENCE", "ep_squared_difference_params",
                                        op.inputs[:2], {
        "input1": shape_init(a.shape), "input2": shape_init(b.shape), "output": shape_init(out.shape),
        "input1_offset": -zero_point_of(a), "input2_offset": -zero_point_of(b), "output_offset": zero_point_of(out),
        **quant.squared_difference_params(scale_of(a), scale_of(b), scale_of(out)),
        "act_min": -128, "act_max": 127}))


def _check_prelu(model: Model, op: Operator) -> str | None:
    inp, alpha, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    if list(inp.shape) != list(out.shape):
        return f"output shape {list(out.shape)} is not the input's {list(inp.shape)}"
    if alpha.dtype != "int8" or alpha.quantization is None or alpha.quantization.per_channel:
        return f"alpha '{alpha.name}' needs one int8 scale and zero point (TFLM reads one)"
    if any(d not in (1, od) for d, od in zip(shape4(alpha.shape), shape4(inp.shape))):
        return f"alpha {list(alpha.shape)} does not broadcast to the input {list(inp.shape)}"
    return None


def lower_prelu(lw: Lowering, op: Operator) -> PlanStep:
    inp, alpha, out = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    return lw.constant_operands(lw.step(op, "EP_KERNEL_PRELU", "ep_prelu_params", op.inputs[:2], {
        "input": shape_init(inp.shape), "alpha": shape_init(alpha.shape), "input_offset": -zero_point_of(inp),
        "alpha_offset": -zero_point_of(alpha), "output_offset": zero_point_of(out),
        **quant.prelu_params(scale_of(inp), scale_of(alpha), scale_of(out))}))


register("ADD", lower_add, _check_binary, data_inputs=2, constant_operands=True)
register("SUB", lower_sub, _check_binary, data_inputs=2, constant_operands=True)
register("MUL", lower_mul, _check_binary, data_inputs=2, constant_operands=True)
register("MAXIMUM", lower_maximum, _check_binary, data_inputs=2, constant_operands=True)
register("MINIMUM", lower_minimum, _check_binary, data_inputs=2, constant_operands=True)
register("PRELU", lower_prelu, _check_prelu, data_inputs=2, constant_operands=True)
register("SQUARED_DIFFERENCE", lower_squared_difference, _check_binary, data_inputs=2, constant_operands=True)
