"""Operators that move bytes: RESHAPE, SQUEEZE, PAD, PADV2, CONCATENATION.
"""

from __future__ import annotations

import numpy as np

from ..plan import MAX_OP_INPUTS, C, PlanStep, shape_init
from ..tflite import Model, Operator
from .base import (
    Lowering,
    constant_int,
    register,
    same_quantization,
    zero_point_of,
)

TFLM_MAX_CONCATENATION_INPUTS = 10  # kMaxInputNum in TFLM's concatenation.cc


def _check_pad(model: Model, op: Operator) -> str | None:
    pads = constant_int(model, op.inputs[1]) if len(op.inputs) > 1 else None
    if pads is None:
        return "padding amounts must be constant"
    rank = len(model.tensors[op.inputs[0]].shape)
    if pads.size != 2 * rank:
        return f"{pads.size} padding amounts for a rank-{rank} input"
    if np.any(pads < 0):
        return "negative padding is not supported"
    if len(op.inputs) > 2 and op.inputs[2] >= 0 and constant_int(model, op.inputs[2]) is None:
        return "the padding value must be constant"
    return None


def _check_concatenation(model: Model, op: Operator) -> str | None:
    out = model.tensors[op.outputs[0]]
    if op.fused_activation != "NONE":
        return f"fused activation {op.fused_activation} on CONCATENATION is not supported"
    if len(op.inputs) > TFLM_MAX_CONCATENATION_INPUTS:
        return (f"{len(op.inputs)} inputs (TFLM, which computes the golden outputs, takes up to "
                f"{TFLM_MAX_CONCATENATION_INPUTS}; the runtime {MAX_OP_INPUTS})")
    rank = max(len(out.shape), 1)
    axis = int(op.options.get("axis", 0))
    if not -rank <= axis < rank:
        return f"axis {axis} is outside a rank-{rank} output"
    for i in op.inputs:
        t = model.tensors[i]
        if t.is_constant:
            return f"constant input '{t.name}' is not supported yet"
        if len(t.shape) != len(out.shape):
            return f"input '{t.name}' has rank {len(t.shape)}, the output {len(out.shape)}"
        if not same_quantization(t, out):
            return (f"input '{t.name}' is quantized differently from the output "
                    "(the runtime copies bytes; requantizing concatenation is not supported)")
    return None


def _check_reshape(model: Model, op: Operator) -> str | None:
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if inp.size != out.size:
        return f"{inp.size} input values but {out.size} output values"
    return None


def lower_reshape(lw: Lowering, op: Operator) -> PlanStep:
    step = lw.step(op, "EP_KERNEL_RESHAPE", "ep_reshape_params", [op.inputs[0]],
                      {"size": lw.t(op.outputs[0]).size})
    step.in_place = True
    return step


def lower_pad(lw: Lowering, op: Operator) -> PlanStep:
    inp, out = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    pads = np.asarray(lw.t(op.inputs[1]).data, np.int64).reshape(-1, 2)
    before = [0] * (4 - len(pads)) + [int(p) for p in pads[:, 0]]
    value = zero_point_of(out)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = int(np.asarray(lw.t(op.inputs[2]).data).reshape(-1)[0])
    return lw.step(op, "EP_KERNEL_PAD", "ep_pad_params", [op.inputs[0]], {
        "input": shape_init(inp.shape), "output": shape_init(out.shape),
        "before": before, "pad_value": value})


def lower_concatenation(lw: Lowering, op: Operator) -> PlanStep:
    out = lw.t(op.outputs[0])
    shape = [int(d) for d in out.shape] or [1]
    axis = int(op.options.get("axis", 0)) % len(shape)
    sizes = np.array([(lw.t(i).shape or [1])[axis] for i in op.inputs], np.int32)
    sym = lw.blob.add(f"ep_op{op.index:03d}_axis_sizes", sizes, "int32_t", "axis sizes")
    return lw.step(op, "EP_KERNEL_CONCATENATION", "ep_concatenation_params",
                      list(op.inputs), {
                          "num_inputs": len(op.inputs),
                          "outer": int(np.prod(shape[:axis], dtype=np.int64)),
                          "inner": int(np.prod(shape[axis + 1:], dtype=np.int64)),
                          "axis_sizes": C(sym)})


# A byte copy: any rank up to 5, as the 5-D views of a channel shuffle (RESHAPE, TRANSPOSE, RESHAPE)
register("RESHAPE", lower_reshape, _check_reshape, max_rank=5)
register("SQUEEZE", lower_reshape, _check_reshape, max_rank=5)
register("PAD", lower_pad, _check_pad)
register("PADV2", lower_pad, _check_pad)  # PAD with a constant int8 padding value (input 2)
register("CONCATENATION", lower_concatenation, _check_concatenation, data_inputs=None)
