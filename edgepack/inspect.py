"""`edgepack inspect`: an honest view of a model's weights and how palette-ready they are."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .codebook import CLUSTERED_MAX_VALUES, shared_codebook_size
from .tflite import WEIGHT_OPERATORS, Model, Operator, Tensor

@dataclass
class WeightStats:
    operator: int
    op_type: str
    tensor: int
    name: str
    shape: list[int]
    dtype: str
    granularity: str
    channel_axis: int
    channels: int
    distinct_int8: int  # distinct values in the whole tensor
    max_distinct_per_channel: int  # the most distinct values in any one output channel
    distinct_shared: int  # values a layer-shared codebook needs once channel gains are removed
    shared_hypothesis: str  # which normalisation found them: "layer-wide scale" or "per-channel gain"
    zero_fraction: float
    zero_channels: list[int]  # all-zero output channels (structured pruning)
    verdict: str  # "palette-ready", "clustered-per-channel" or "dense"
    summary: str  # the verdict as one line for people


@dataclass
class OperatorInfo:
    index: int
    op_type: str
    inputs: list[int]
    outputs: list[int]
    output_shape: list[int]
    activation: str


def channel_axis(op: Operator, t: Tensor) -> int:
    q = t.quantization
    if q is not None and q.per_channel:
        return q.axis
    return min(WEIGHT_OPERATORS.get(op.opcode, 0), max(len(t.shape) - 1, 0))


def weight_stats(op: Operator, t: Tensor) -> WeightStats:
    axis = channel_axis(op, t)
    q = np.moveaxis(np.asarray(t.data), axis, 0)
    channels = q.shape[0] if q.ndim else 1
    q = q.reshape(channels, -1).astype(np.int64)
    quant = t.quantization
    if quant is not None and quant.per_channel:
        scales = np.asarray(quant.scale, np.float64)
    else:
        s = float(quant.scale[0]) if quant is not None else 1.0
        scales = np.full(channels, s)
    distinct = int(np.unique(q).size)
    per_channel = max((int(np.unique(row).size) for row in q), default=0)
    count = shared_codebook_size(q, scales, per_channel=bool(quant is not None and quant.per_channel))
    shared, hypothesis = count.values, count.hypothesis
    zero_channels = [int(c) for c in np.flatnonzero(~q.any(axis=1))]
    zero_fraction = float(np.count_nonzero(q == 0) / q.size) if q.size else 0.0
    bits = max(1, int(np.ceil(np.log2(max(shared, 2)))))
    if shared <= CLUSTERED_MAX_VALUES and distinct <= shared:
        verdict = "palette-ready"
        summary = f"already palette-ready: {distinct} layer-shared int8 values ({bits}-bit indices)"
    elif shared <= CLUSTERED_MAX_VALUES:
        verdict = "clustered-per-channel"
        summary = (f"clustered to {shared} values but per-channel: {distinct} distinct int8 "
                   f"in the layer; folding gives a {shared}-entry codebook ({bits}-bit indices)")
    else:
        verdict = "dense"
        summary = f"dense: {distinct} distinct int8 values, no clustering to recover"
    if zero_channels:
        summary += f"; {len(zero_channels)} all-zero channel(s)"
    return WeightStats(
        operator=op.index, op_type=op.opcode, tensor=t.index, name=t.name, shape=list(t.shape),
        dtype=t.dtype, granularity=quant.granularity if quant else "none", channel_axis=axis,
        channels=channels, distinct_int8=distinct, max_distinct_per_channel=per_channel,
        distinct_shared=shared, shared_hypothesis=hypothesis, zero_fraction=zero_fraction,
        zero_channels=zero_channels, verdict=verdict, summary=summary)


def inspect_model(model: Model) -> dict:
    """The whole inspection as plain data (what `--json` prints)."""
    operators = []
    for op in model.operators:
        out_shape = list(model.tensors[op.outputs[0]].shape) if op.outputs else []
        operators.append(asdict(OperatorInfo(op.index, op.name, op.inputs, op.outputs,
                                             out_shape, op.fused_activation)))
    weights = [asdict(weight_stats(op, t)) for op, t in model.weight_tensors()
               if t.dtype in ("int8", "uint8", "int16", "int4")]
    io = lambda idx: {"tensor": idx, "name": model.tensors[idx].name,  # noqa: E731
                      "shape": list(model.tensors[idx].shape), "dtype": model.tensors[idx].dtype}
    return {
        "model": model.path,
        "sha256": model.sha256,
        "inputs": [io(i) for i in model.inputs],
        "outputs": [io(i) for i in model.outputs],
        "operators": operators,
        "weights": weights,
        "total_weights": int(sum(int(np.prod(w["shape"])) for w in weights)),
    }


