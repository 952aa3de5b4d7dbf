"""Pooling: MAX_POOL_2D, AVERAGE_POOL_2D, and MEAN over height and width.
"""

from __future__ import annotations

from .. import quant
from ..plan import C, PlanStep, shape4, shape_init
from ..tflite import Model, Operator
from .base import (
    Lowering,
    constant_int,
    register,
    scale_of,
    zero_point_of,
)


def _check_pool(model: Model, op: Operator) -> str | None:
    if len(model.tensors[op.inputs[0]].shape) != 4:
        return "input must be 4-D (NHWC)"
    if "filter_height" not in op.options or "filter_width" not in op.options:
        return "no Pool2DOptions (the filter size)"
    return None


def _check_mean(model: Model, op: Operator) -> str | None:
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if len(inp.shape) != 4:
        return f"input of rank {len(inp.shape)}; the runtime's MEAN reduces 4-D NHWC over H and W"
    axes = constant_int(model, op.inputs[1]) if len(op.inputs) > 1 else None
    if axes is None:
        return "reduction axes must be constant"
    if sorted({int(a) % 4 for a in axes}) != [1, 2]:
        return (f"reduces over axes {[int(a) for a in axes]}; the runtime's MEAN reduces over "
                "H and W (axes 1, 2) only")
    if out.size != inp.shape[0] * inp.shape[3]:
        return f"output shape {list(out.shape)} is not [N, C] or [N, 1, 1, C]"
    return None


def _pool(lw: Lowering, op: Operator, kernel: str) -> PlanStep:
    inp, out = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    o = op.options
    _, ih, iw, _ = shape4(inp.shape)
    _, oh, ow, _ = shape4(out.shape)
    fh, fw = o["filter_height"], o["filter_width"]
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    same = o.get("padding") == "SAME"
    lo, hi = quant.activation_range(op.fused_activation, scale_of(out), zero_point_of(out))
    return lw.step(op, kernel, "ep_pool_params", [op.inputs[0]], {
        "input": shape_init(inp.shape), "output": shape_init(out.shape),
        "filter_h": fh, "filter_w": fw, "stride_h": sh, "stride_w": sw,
        "pad_top": quant.same_padding(ih, oh, sh, fh, 1) if same else 0,
        "pad_left": quant.same_padding(iw, ow, sw, fw, 1) if same else 0,
        "act_min": lo, "act_max": hi})


def lower_max_pool_2d(lw: Lowering, op: Operator) -> PlanStep:
    return _pool(lw, op, "EP_KERNEL_MAX_POOL2D")


def lower_average_pool_2d(lw: Lowering, op: Operator) -> PlanStep:
    return _pool(lw, op, "EP_KERNEL_AVG_POOL2D")


def lower_mean(lw: Lowering, op: Operator) -> PlanStep:
    inp, out = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    _, h, w, _ = inp.shape
    m, s = quant.mean_multiplier(scale_of(inp), scale_of(out), h * w)
    return lw.step(op, "EP_KERNEL_MEAN", "ep_mean_params", [op.inputs[0]], {
        "input": shape_init(inp.shape), "mode": C("EP_MEAN_TFLM"),
        "input_zero_point": zero_point_of(inp), "output_zero_point": zero_point_of(out),
        "multiplier": m, "shift": s})


register("MAX_POOL_2D", lower_max_pool_2d, _check_pool)
register("AVERAGE_POOL_2D", lower_average_pool_2d, _check_pool)
register("MEAN", lower_mean, _check_mean)
