"""Operators that rearrange int8 values without arithmetic (TRANSPOSE, SPACE_TO_DEPTH,
DEPTH_TO_SPACE, STRIDED_SLICE, SLICE, REVERSE_V2, SPLIT, SPLIT_V, UNPACK, PACK, GATHER,
SPACE_TO_BATCH_ND, BATCH_TO_SPACE_ND, MIRROR_PAD, EXPAND_DIMS, RESIZE_NEAREST_NEIGHBOR) or pick
indices (ARG_MAX, ARG_MIN), and RESIZE_BILINEAR: their support checks and lowerings. The index
arithmetic is `views.py`'s.
"""

from __future__ import annotations

import numpy as np

from ..plan import MAX_OP_INPUTS, C, PlanStep, shape_init
from ..tflite import Model, Operator
from .base import Lowering, constant_int, register, same_quantization
from .views import (MAX_OUTPUTS, axis_params, batch_space_params, depth_to_space_params, gather_params,
                    mirror_pad_params, reverse_params, slice_params, space_to_depth_params, split_params,
                    strided_slice_params, transpose_params)


# --------------------------------------------------------------------------------------------
# Support checks: one line why an instance cannot run, or None
# --------------------------------------------------------------------------------------------

def _tensor(model: Model, i: int):
    return model.tensors[i]


def _split_data(op: Operator) -> int:
    """The data input (SPLIT takes the axis first)."""
    return op.inputs[1] if op.opcode == "SPLIT" and len(op.inputs) > 1 else op.inputs[0]


def _same_quantization_io(model: Model, op: Operator) -> str | None:
    """These kernels copy bytes, as TFLM's do: input and every output share one quantization."""
    inp = _tensor(model, _split_data(op))
    for o in op.outputs:
        if not same_quantization(inp, _tensor(model, o)):
            return (f"output '{_tensor(model, o).name}' is quantized differently from the input "
                    "(the kernel copies bytes, as TFLM's does)")
    return None


def _checked(compute):
    """A support check from a parameter computation: its ValueError is the reason; the output
    shape it predicts must be the model's."""
    def check(model: Model, op: Operator) -> str | None:
        reason = _same_quantization_io(model, op) if op.opcode not in ("ARG_MAX", "ARG_MIN") else None
        if reason:
            return reason
        try:
            compute(model, op)
        except ValueError as e:
            return str(e)
        return None
    return check


def _expect_shape(model: Model, t: int, shape) -> None:
    got = [int(d) for d in _tensor(model, t).shape]
    if got != [int(d) for d in shape]:
        raise ValueError(f"output shape {got} is not the {[int(d) for d in shape]} the operator computes")


def _values(model: Model, op: Operator, k: int, what: str) -> np.ndarray:
    """The values of constant input k (flattened int64), or ValueError with the reason."""
    if len(op.inputs) <= k or op.inputs[k] < 0:
        raise ValueError(f"no {what} input")
    values = constant_int(model, op.inputs[k])
    if values is None:
        raise ValueError(f"the {what} must be constant")
    return values


# --------------------------------------------------------------------------------------------
# Parameters per operator (raise ValueError with the reason)
# --------------------------------------------------------------------------------------------

def _transpose(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    perm = [int(p) for p in _values(model, op, 1, "permutation")]
    params = transpose_params(shape, perm)
    _expect_shape(model, op.outputs[0], [shape[p % len(shape)] for p in perm])
    return params


def _space_to_depth(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    if len(shape) != 4:
        raise ValueError(f"a rank-{len(shape)} input (SPACE_TO_DEPTH takes NHWC)")
    b = int(op.options.get("block_size", 0))
    params = space_to_depth_params(shape, b)
    _expect_shape(model, op.outputs[0], [shape[0], shape[1] // b, shape[2] // b, shape[3] * b * b])
    return params


def _depth_to_space(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    if len(shape) != 4:
        raise ValueError(f"a rank-{len(shape)} input (DEPTH_TO_SPACE takes NHWC)")
    b = int(op.options.get("block_size", 0))
    params = depth_to_space_params(shape, b)
    _expect_shape(model, op.outputs[0], [shape[0], shape[1] * b, shape[2] * b, shape[3] // (b * b)])
    return params


def _strided_slice(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    begin, end, strides = (_values(model, op, k, what) for k, what in ((1, "begin"), (2, "end"), (3, "strides")))
    o = op.options
    if int(o.get("ellipsis_mask", 0)) or int(o.get("new_axis_mask", 0)):
        raise ValueError("ellipsis_mask / new_axis_mask are not supported (TFLM ignores them)")
    if o.get("offset", False):
        raise ValueError("the offset flag is not supported (TFLM's Prepare sizes the output without it)")
    if not len(begin) == len(end) == len(strides) == len(shape):
        raise ValueError(f"{len(begin)} begin values for a rank-{len(shape)} input (TFLM reads one per dimension)")
    params, out = strided_slice_params(shape, begin, end, strides, int(o.get("begin_mask", 0)),
                                       int(o.get("end_mask", 0)), int(o.get("shrink_axis_mask", 0)))
    _expect_shape(model, op.outputs[0], out)
    return params


def _slice(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    params, out = slice_params(shape, _values(model, op, 1, "begin"), _values(model, op, 2, "size"))
    _expect_shape(model, op.outputs[0], out)
    return params


def _reverse(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    axes = _values(model, op, 1, "axis")
    if axes.size != 1:
        raise ValueError(f"{axes.size} axes (TFLM's REVERSE_V2 reverses one)")
    _expect_shape(model, op.outputs[0], shape)
    return reverse_params(shape, axes)


def _split(model: Model, op: Operator) -> dict:
    if op.opcode == "SPLIT":
        axis_values, data = _values(model, op, 0, "axis"), op.inputs[1]
        shape = _tensor(model, data).shape
        n = int(op.options.get("num_splits", 0))
        axis = int(axis_values[0])
        d = shape[axis % len(shape)] if shape else 0
        if n < 1 or d % n:
            raise ValueError(f"{n} splits of an axis of size {d}")
        sizes = [d // n] * n
    elif op.opcode == "SPLIT_V":
        data = op.inputs[0]
        shape = _tensor(model, data).shape
        sizes = [int(v) for v in _values(model, op, 1, "size_splits")]
        axis = int(_values(model, op, 2, "axis")[0])
    else:  # UNPACK
        data = op.inputs[0]
        shape = _tensor(model, data).shape
        axis = int(op.options.get("axis", 0))
        sizes = [1] * (shape[axis % len(shape)] if shape else 0)
    if len(op.outputs) != len(sizes):
        raise ValueError(f"{len(op.outputs)} outputs for {len(sizes)} parts")
    if len(sizes) > MAX_OUTPUTS:
        raise ValueError(f"{len(sizes)} outputs (the runtime writes up to {MAX_OUTPUTS} per step)")
    params = split_params(shape, axis, sizes)
    axis %= len(shape)
    for o, size in zip(op.outputs, params["axis_sizes"]):
        out = list(shape)
        out[axis] = size
        if op.opcode == "UNPACK":
            del out[axis]
        _expect_shape(model, o, out)
    return params


def _pack(model: Model, op: Operator) -> dict:
    shape = list(_tensor(model, op.inputs[0]).shape)
    axis = int(op.options.get("axis", 0))
    axis = axis + len(shape) + 1 if axis < 0 else axis
    if not 0 <= axis <= len(shape):
        raise ValueError(f"axis {axis} outside a rank-{len(shape) + 1} output")
    if len(op.inputs) > MAX_OP_INPUTS:
        raise ValueError(f"{len(op.inputs)} inputs (the runtime takes up to {MAX_OP_INPUTS})")
    for i in op.inputs:
        t = _tensor(model, i)
        if t.is_constant:
            raise ValueError(f"constant input '{t.name}' is not supported yet")
        if list(t.shape) != shape or not same_quantization(t, _tensor(model, op.outputs[0])):
            raise ValueError(f"input '{t.name}' differs in shape or quantization from the first")
    _expect_shape(model, op.outputs[0], shape[:axis] + [len(op.inputs)] + shape[axis:])
    return {"num_inputs": len(op.inputs), "outer": int(np.prod(shape[:axis], dtype=np.int64)),
            "inner": int(np.prod(shape[axis:], dtype=np.int64))}


def _gather(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    indices = _tensor(model, op.inputs[1])
    if indices.dtype not in ("int32", "int64") or not indices.is_constant and indices.dtype != "int32":
        raise ValueError(f"indices of type {indices.dtype} (constant int32/int64 or int32 at run time)")
    if op.inputs[1] in model.inputs:
        raise ValueError("indices given as a model input (the build cannot draw valid golden indices)")
    if indices.is_constant:
        values = np.asarray(indices.data).reshape(-1)
        axis = int(op.options.get("axis", 0))
        d = shape[axis % len(shape)] if shape else 0
        if values.size and (values.min() < 0 or values.max() >= d):
            raise ValueError(f"an index outside [0, {d}) (TFLM fails the invocation)")
    params, out = gather_params(shape, indices.shape, int(op.options.get("axis", 0)),
                                int(op.options.get("batch_dims", 0)))
    _expect_shape(model, op.outputs[0], out)
    return params


def _batch_space(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    block = _values(model, op, 1, "block shape")
    pads = _values(model, op, 2, "paddings" if op.opcode == "SPACE_TO_BATCH_ND" else "crops")
    if op.opcode == "SPACE_TO_BATCH_ND" and np.any(pads != 0):
        raise ValueError("non-zero paddings (TFLM pads with an unset value, neither the zero point "
                         "nor stable: 0 or 1 seen; golden outputs would be arbitrary)")
    params, out = batch_space_params(op.opcode, shape, block, pads)
    _expect_shape(model, op.outputs[0], out)
    return params


def _mirror_pad(model: Model, op: Operator) -> dict:
    shape = _tensor(model, op.inputs[0]).shape
    mode = op.options.get("mode", "REFLECT")
    mode = {0: "REFLECT", 1: "SYMMETRIC"}.get(mode, mode)  # the schema's MirrorPadMode, by value or name
    params, out = mirror_pad_params(shape, _values(model, op, 1, "paddings"), str(mode))
    _expect_shape(model, op.outputs[0], out)
    return params


def _expand_dims(model: Model, op: Operator) -> dict:
    inp, out = _tensor(model, op.inputs[0]), _tensor(model, op.outputs[0])
    if inp.size != out.size:
        raise ValueError(f"{inp.size} input values but {out.size} output values")
    return {"size": out.size}


def _resize(model: Model, op: Operator) -> dict:
    inp, out = _tensor(model, op.inputs[0]), _tensor(model, op.outputs[0])
    if len(inp.shape) != 4 or len(out.shape) != 4:
        raise ValueError("input and output must be NHWC")
    size = _values(model, op, 1, "size")
    if [int(v) for v in size] != [int(out.shape[1]), int(out.shape[2])]:
        raise ValueError(f"size {list(size)} is not the output's {list(out.shape[1:3])}")
    align, half = bool(op.options.get("align_corners", False)), bool(op.options.get("half_pixel_centers", False))
    if align and half:
        raise ValueError("align_corners with half_pixel_centers (TFLM requires one or neither)")
    if out.shape[0] != inp.shape[0] or out.shape[3] != inp.shape[3]:
        raise ValueError(f"output {list(out.shape)} changes batch or channels of input {list(inp.shape)}")
    return {"input": shape_init(inp.shape), "output": shape_init(out.shape), "align_corners": int(align),
            "half_pixel_centers": int(half)}


def _arg(model: Model, op: Operator) -> dict:
    inp, out = _tensor(model, op.inputs[0]), _tensor(model, op.outputs[0])
    if inp.dtype != "int8":
        raise ValueError(f"tensor '{inp.name}' is {inp.dtype}, the runtime computes int8")
    if out.dtype != "int32":
        raise ValueError(f"{out.dtype} output (TFLM writes int32 indices only)")
    axis_values = _values(model, op, 1, "axis")
    if axis_values.size != 1:
        raise ValueError(f"{axis_values.size} axes")
    axis = int(axis_values[0])
    params = axis_params(inp.shape, axis)
    _expect_shape(model, op.outputs[0], [d for k, d in enumerate(inp.shape) if k != axis % len(inp.shape)])
    return params


# --------------------------------------------------------------------------------------------
# Lowerings
# --------------------------------------------------------------------------------------------

def lower_transpose(lw: Lowering, op: Operator) -> PlanStep:
    compute = {"TRANSPOSE": _transpose, "SPACE_TO_DEPTH": _space_to_depth,
               "DEPTH_TO_SPACE": _depth_to_space}[op.opcode]
    return lw.step(op, "EP_KERNEL_TRANSPOSE", "ep_transpose_params", [op.inputs[0]], compute(lw.model, op))


def lower_strided_slice(lw: Lowering, op: Operator) -> PlanStep:
    compute = {"STRIDED_SLICE": _strided_slice, "SLICE": _slice, "REVERSE_V2": _reverse}[op.opcode]
    return lw.step(op, "EP_KERNEL_STRIDED_SLICE", "ep_strided_slice_params", [op.inputs[0]],
                   compute(lw.model, op))


def lower_split(lw: Lowering, op: Operator) -> PlanStep:
    params = _split(lw.model, op)
    sym = lw.blob.add(f"ep_op{op.index:03d}_axis_sizes", np.asarray(params["axis_sizes"], np.int32), "int32_t",
                      "axis sizes")
    step = lw.step(op, "EP_KERNEL_SPLIT", "ep_split_params", [_split_data(op)], {**params, "axis_sizes": C(sym)})
    step.several_outputs = list(op.outputs)
    return step


def lower_pack(lw: Lowering, op: Operator) -> PlanStep:
    params = _pack(lw.model, op)
    sizes = np.ones(params["num_inputs"], np.int32)
    sym = lw.blob.add(f"ep_op{op.index:03d}_axis_sizes", sizes, "int32_t", "axis sizes")
    return lw.step(op, "EP_KERNEL_CONCATENATION", "ep_concatenation_params", list(op.inputs),
                   {**params, "axis_sizes": C(sym)})


def lower_gather(lw: Lowering, op: Operator) -> PlanStep:
    params = _gather(lw.model, op)
    step = lw.step(op, "EP_KERNEL_GATHER", "ep_gather_params", [op.inputs[0], op.inputs[1]], params)
    indices = lw.t(op.inputs[1])
    if indices.is_constant:
        # int32 values in the model data; the plan's constant table holds byte pointers
        raw = np.ascontiguousarray(np.asarray(indices.data).reshape(-1).astype("<i4")).view(np.int8)
        step.constants[op.inputs[1]] = lw.blob.add(f"ep_op{op.index:03d}_indices", raw, "int8_t", "gather indices")
    return step


def lower_batch_space(lw: Lowering, op: Operator) -> PlanStep:
    return lw.step(op, f"EP_KERNEL_{op.opcode}", "ep_batch_space_params", [op.inputs[0]], _batch_space(lw.model, op))


def lower_mirror_pad(lw: Lowering, op: Operator) -> PlanStep:
    return lw.step(op, "EP_KERNEL_MIRROR_PAD", "ep_mirror_pad_params", [op.inputs[0]], _mirror_pad(lw.model, op))


def lower_expand_dims(lw: Lowering, op: Operator) -> PlanStep:
    step = lw.step(op, "EP_KERNEL_RESHAPE", "ep_reshape_params", [op.inputs[0]], _expand_dims(lw.model, op))
    step.in_place = True
    return step


def lower_resize(lw: Lowering, op: Operator) -> PlanStep:
    kernel = "EP_KERNEL_RESIZE_BILINEAR" if op.opcode == "RESIZE_BILINEAR" else "EP_KERNEL_RESIZE_NEAREST_NEIGHBOR"
    return lw.step(op, kernel, "ep_resize_params", [op.inputs[0]], _resize(lw.model, op))


def lower_arg(lw: Lowering, op: Operator) -> PlanStep:
    kernel = "EP_KERNEL_ARG_MAX" if op.opcode == "ARG_MAX" else "EP_KERNEL_ARG_MIN"
    return lw.step(op, kernel, "ep_arg_params", [op.inputs[0]], _arg(lw.model, op))


register("TRANSPOSE", lower_transpose, _checked(_transpose), max_rank=5)
register("SPACE_TO_DEPTH", lower_transpose, _checked(_space_to_depth))
register("DEPTH_TO_SPACE", lower_transpose, _checked(_depth_to_space))
register("STRIDED_SLICE", lower_strided_slice, _checked(_strided_slice))
register("SLICE", lower_strided_slice, _checked(_slice), max_rank=5)
register("REVERSE_V2", lower_strided_slice, _checked(_reverse), max_rank=5)
register("SPLIT", lower_split, _checked(_split), data_inputs=0, several_outputs=True)
register("SPLIT_V", lower_split, _checked(_split), several_outputs=True)
register("UNPACK", lower_split, _checked(_split), several_outputs=True)
register("PACK", lower_pack, _checked(_pack), data_inputs=None)
register("GATHER", lower_gather, _checked(_gather))
register("MIRROR_PAD", lower_mirror_pad, _checked(_mirror_pad))
register("SPACE_TO_BATCH_ND", lower_batch_space, _checked(_batch_space))
register("BATCH_TO_SPACE_ND", lower_batch_space, _checked(_batch_space))
register("EXPAND_DIMS", lower_expand_dims, _checked(_expand_dims), max_rank=5)
register("RESIZE_NEAREST_NEIGHBOR", lower_resize, _checked(_resize))
register("RESIZE_BILINEAR", lower_resize, _checked(_resize))
register("ARG_MAX", lower_arg, _checked(_arg), other_dtypes=frozenset({"int32", "int64"}))
register("ARG_MIN", lower_arg, _checked(_arg), other_dtypes=frozenset({"int32", "int64"}))
