"""One validation pass over a model read through the schema, before any stage runs: what every
later stage (inspect, fold, Vela, lowering, the arena, TFLM) may then take for granted.

- the subgraph has inputs and outputs, and every operator names an output;
- every tensor an operator or the graph uses has positive dimensions (no scalar activations)
  and a byte size within `MAX_TENSOR_BYTES` (and, given a board, within its arena's region);
- quantization: finite positive scales (within MIN_SCALE..MAX_SCALE), zero points that fit the tensor's type;
- the graph inputs operators compute on have a batch of 1;
- operators run in order: each reads only tensors that are constant, variable, graph inputs or
  written by an earlier operator (so no cycle, no operator reading its own output), and each
  tensor is written once;
- float options are finite; strides, dilations and window sizes at least 1.

`tflite.parse_model` has already checked the file's structure (vector lengths, index ranges,
buffer sizes). May import: errors, tflite, boards.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .boards import BoardSpec
from .errors import ModelError
from .tflite import NUMPY_DTYPES, Model, Operator, Tensor, read_model

# One tensor's bytes: far beyond any microcontroller's memory (a 224x224x96 int8 activation is
# 4.6 MiB), small enough that every stage may allocate it, and TFLM's arena several of them.
MAX_TENSOR_BYTES = 64 << 20
# Scales of trained models lie within about 1e-12..1e4 (a bias's is the product of two); far
# outside, products and quotients of scales leave float32's normal range and the offline
# arithmetic (multipliers, the fold's clustering) stops meaning anything.
MIN_SCALE, MAX_SCALE = 1e-20, 1e20
# strides, dilations and window sizes: a 0 divides by zero, a negative one walks backwards
WINDOW_OPTIONS = {"stride_h", "stride_w", "stride_d", "dilation_hfactor", "dilation_wfactor",
                  "dilation_dfactor", "filter_height", "filter_width"}
ZERO_POINT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
                     "int4": (-8, 7)}
INT32_RANGE = (-2**31, 2**31 - 1)


def load_model(path: str | os.PathLike, board: BoardSpec | None = None) -> Model:
    """Read a `.tflite` file and validate it (see the module doc): the entry of every command."""
    model = read_model(path)
    validate_model(model, board)
    return model


def tensor_label(t: Tensor) -> str:
    return f"tensor {t.index} '{t.name}'" if t.name else f"tensor {t.index}"


def byte_size(t: Tensor) -> int:
    """Bytes of the tensor's data, in Python integers (no overflow on huge dimensions)."""
    itemsize = np.dtype(NUMPY_DTYPES[t.dtype]).itemsize if t.dtype in NUMPY_DTYPES else 1
    return math.prod(t.shape) * itemsize


def validate_model(model: Model, board: BoardSpec | None = None) -> None:
    """Raise `ModelError` (one line naming the file and the problem) on the first problem."""
    def fail(message: str):
        raise ModelError(message, model.path)

    if not model.inputs:
        fail("the subgraph has no inputs")
    if not model.outputs:
        fail("the subgraph has no outputs")
    used = _used_tensors(model)
    for idx in sorted(used):
        _check_tensor(model, model.tensors[idx], used[idx], board, fail)
    # the batch: of graph inputs an operator computes on (its input 0); a weight tensor given
    # as a graph input has no batch (its first axis is output channels)
    data_inputs = {op.inputs[0] for op in model.operators if op.inputs}
    for idx in model.inputs:
        t = model.tensors[idx]
        if idx in data_inputs and len(t.shape) >= 2 and t.shape[0] != 1:
            fail(f"graph input {tensor_label(t)} has a batch of {t.shape[0]} (shape "
                 f"{list(t.shape)}); edgepack deploys batch 1: export the model with batch size 1")
    _check_order(model, fail)
    for op in model.operators:
        for key, value in op.options.items():
            if isinstance(value, float) and not math.isfinite(value):
                fail(f"operator {op.index} ({op.name}): option {key} is {value}")
            if key in WINDOW_OPTIONS and isinstance(value, int) and value < 1:
                fail(f"operator {op.index} ({op.name}): option {key} is {value}; it must be at "
                     "least 1")


def _used_tensors(model: Model) -> dict[int, Operator | None]:
    """Tensor index -> the first operator that uses it (None: a graph input or output only)."""
    used: dict[int, Operator | None] = {i: None for i in model.inputs + model.outputs}
    for op in model.operators:
        for idx in op.inputs + op.outputs:
            if idx >= 0 and used.get(idx) is None:
                used[idx] = op
    return used


def _check_tensor(model: Model, t: Tensor, op: Operator | None, board, fail) -> None:
    where = f"operator {op.index} ({op.name}): " if op is not None else ""
    label = tensor_label(t)
    if any(d <= 0 for d in t.shape):
        fail(f"{where}{label} has shape {list(t.shape)}; every dimension must be positive")
    if not t.shape and not t.is_constant:
        fail(f"{where}{label} is a scalar (rank 0) activation; edgepack needs shaped activations")
    size = byte_size(t)
    if size > MAX_TENSOR_BYTES:
        fail(f"{where}{label} of shape {list(t.shape)} needs {size:,} bytes, more than "
             f"edgepack's limit of {MAX_TENSOR_BYTES >> 20} MiB for one tensor")
    if board is not None and not t.is_constant:
        region = board.region_for("arena")
        if size > region.size:
            fail(f"{where}{label} of shape {list(t.shape)} needs {size:,} bytes, more than board "
                 f"{board.name}'s region {region.name} for the tensor arena holds "
                 f"({region.size:,} bytes)")
    q = t.quantization
    if q is None:
        return
    bad = ~np.isfinite(q.scale) | (q.scale < MIN_SCALE) | (q.scale > MAX_SCALE)
    if bad.any():
        fail(f"{where}{label} has scale {float(q.scale[np.argmax(bad)])!r}; scales must be "
             f"finite and positive, within {MIN_SCALE:g}..{MAX_SCALE:g}")
    low, high = ZERO_POINT_RANGES.get(t.dtype, INT32_RANGE)
    outside = (q.zero_point < low) | (q.zero_point > high)
    if outside.any():
        fail(f"{where}{label} ({t.dtype}) has zero point {int(q.zero_point[np.argmax(outside)])}, "
             f"outside {low}..{high}")


def _check_order(model: Model, fail) -> None:
    """Operators run in their listed order (as TFLite's): every input is ready before it is read."""
    ready = {t.index for t in model.tensors if t.is_constant or t.is_variable}
    ready.update(model.inputs)
    writer: dict[int, int] = {}
    for op in model.operators:
        if not op.outputs:
            fail(f"operator {op.index} ({op.name}) has no output")
        for idx in op.inputs:
            if idx < 0 or idx in ready:
                continue
            t = model.tensors[idx]
            if idx in op.outputs:
                fail(f"operator {op.index} ({op.name}) reads {tensor_label(t)}, its own output")
            later = [o.index for o in model.operators if idx in o.outputs]
            fail(f"operator {op.index} ({op.name}) reads {tensor_label(t)} before any operator "
                 "writes it" + (f" (operator {later[0]} writes it later: a cycle or operators "
                                "out of order)" if later else ""))
        for idx in op.outputs:
            t = model.tensors[idx] if idx >= 0 else None
            if t is None:
                fail(f"operator {op.index} ({op.name}) has an omitted (-1) output")
            if idx in writer:
                fail(f"{tensor_label(t)} is written by operators {writer[idx]} and {op.index}")
            if t.is_constant or idx in model.inputs:
                what = "constant" if t.is_constant else "graph input"
                fail(f"operator {op.index} ({op.name}) writes {tensor_label(t)}, a {what}")
            writer[idx] = op.index
            ready.add(idx)
    for idx in model.inputs:
        if model.tensors[idx].is_constant:
            fail(f"graph input {tensor_label(model.tensors[idx])} is a constant")
    for idx in model.outputs:
        t = model.tensors[idx]
        if t.is_constant:
            fail(f"graph output {tensor_label(t)} is a constant")
        if idx not in ready:
            fail(f"graph output {tensor_label(t)} is written by no operator")
