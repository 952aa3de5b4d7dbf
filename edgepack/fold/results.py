"""What folding returns: codebooks, folded tensors, the end-to-end agreement, the result.

May import: errors, tflite.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..tflite import Model

Progress = Callable[[int, int, str], None]


@dataclass
class Codebook:
    """The int8 values a layer's weights take, sorted ascending, all distinct."""

    values: np.ndarray  # int8

    @property
    def size(self) -> int:
        return int(self.values.size)

    @property
    def index_bits(self) -> int:
        """Bits of one packed index (1..8): what `edgepack.packing.pack_indices` wants."""
        return max(1, math.ceil(math.log2(max(self.size, 1))))


@dataclass
class WeightFold:
    """The fold of one weight matrix ([C, N], channel first), before it goes back in a model."""

    codebook: Codebook
    indices: np.ndarray  # uint8 [C, N]
    scales: np.ndarray  # float32 [C] (or [1] per tensor): real = scales[c] * codebook[index]
    sqnr_db: float  # weight signal-to-quantization-noise against the original real weights
    hypothesis: str  # "lossless", "layer-wide scale" or "per-channel gain"

    @property
    def int8(self) -> np.ndarray:
        return self.codebook.values[self.indices]


@dataclass
class FoldedTensor:
    operator: int  # the (first) operator that owns the weights
    op_type: str
    tensor: int
    name: str
    shape: tuple[int, ...]
    channel_axis: int
    per_channel: bool  # per-channel scales in the folded model (per-tensor inputs stay so)
    folded: bool  # False: kept dense int8 (see `reason`)
    reason: str  # why it was folded to this K, or why it was kept dense
    codebook: Codebook | None  # None when kept dense
    indices: np.ndarray | None  # uint8, the tensor's shape and element order; None when dense
    scales: np.ndarray  # float32 per channel (length 1 per tensor), as in the folded model
    sqnr_db: float  # inf when lossless
    hypothesis: str
    distinct_before: int  # distinct int8 values in the input tensor
    zeros: int  # zero weights in the input tensor (all still zero)
    zeros_added: int  # non-zero weights that became zero (zero was their nearest value)
    zero_channels: list[int]  # all-zero output channels
    dense_bytes: int = 0  # the tensor as given, on the target (cost model)
    target_bytes: int = 0  # as stored on the target (= dense_bytes when kept dense)
    channel_sqnr_db: float = math.inf  # the worst output channel's weight SQNR
    pads_zeros: bool = False  # the target pads this tensor with zeros (0 takes a palette slot)
    shared_values: int = 0  # values a layer-shared codebook needs (edgepack.codebook)

    @property
    def clusters(self) -> int:
        return self.codebook.size if self.codebook is not None else self.distinct_before

    @property
    def index_bits(self) -> int:
        return self.codebook.index_bits if self.codebook is not None else 8

    @property
    def lossless(self) -> bool:
        return math.isinf(self.sqnr_db)


@dataclass
class Agreement:
    """End-to-end: folded against unfolded model through the TFLM interpreter."""

    samples: int
    source: str  # where the inputs came from
    mean_abs_diff: float  # output int8 steps, averaged over every output element
    max_abs_diff: int
    top1_agreement: float  # fraction of inputs whose arg-max output is the same
    classifier: bool = True  # more than one output value per input: top-1 means something
    accuracy: float | None = None  # the folded model's top-1 accuracy on --labels
    given_accuracy: float | None = None  # the model as given on the same labels

    @property
    def top1_changed(self) -> int:
        return round((1 - self.top1_agreement) * self.samples) if self.classifier else 0


@dataclass
class TradeoffPoint:
    """One assignment of codebooks the fold tried: its bytes on the target and its agreement."""

    target_bytes: int
    top1_agreement: float
    mean_abs_diff: float
    accuracy: float | None
    label: str  # what it was ("all dense", "budget step 12/80", "gate: 3 layers backed off")


@dataclass
class Gate:
    """The end-to-end check against the model as given, and what it changed."""

    budget: str  # what had to hold, in words
    held: bool
    backed_off: list[str]  # tensors returned to dense (or a larger K) to make it hold
    runs: int  # TFLM passes over the calibration inputs (the model as given included)


@dataclass
class FoldResult:
    model: Model  # the folded model: a standard TFLite model
    tensors: list[FoldedTensor]
    agreement: Agreement | None
    clusters: int | str
    max_error_db: float | None
    target: str = ""  # the board whose cost model priced the tensors
    budget: float | None = None  # --budget as a fraction
    gate: Gate | None = None
    tradeoff: list[TradeoffPoint] = field(default_factory=list)

    @property
    def dense_bytes(self) -> int:
        return sum(t.dense_bytes for t in self.tensors)

    @property
    def target_bytes(self) -> int:
        return sum(t.target_bytes for t in self.tensors)

    def to_json(self) -> dict:
        def num(x: float):
            return None if math.isinf(x) else round(float(x), 3)

        weights = []
        for t in self.tensors:
            weights.append({
                "operator": t.operator, "op_type": t.op_type, "tensor": t.tensor, "name": t.name,
                "shape": list(t.shape), "channel_axis": t.channel_axis, "folded": t.folded,
                "reason": t.reason, "per_channel": t.per_channel,
                "clusters": t.clusters, "index_bits": t.index_bits,
                "codebook": t.codebook.values.tolist() if t.codebook is not None else None,
                "sqnr_db": num(t.sqnr_db), "lossless": t.lossless, "hypothesis": t.hypothesis,
                "distinct_before": t.distinct_before, "zeros": t.zeros,
                "zeros_added": t.zeros_added, "zero_channels": t.zero_channels,
                "dense_bytes": t.dense_bytes, "target_bytes": t.target_bytes,
                "channel_sqnr_db": num(t.channel_sqnr_db), "pads_zeros": t.pads_zeros,
                "shared_values": t.shared_values,
            })
        a = self.agreement
        return {
            "model": self.model.path,
            "clusters": self.clusters,
            "max_error_db": self.max_error_db,
            "weights": weights,
            "folded_tensors": sum(t.folded for t in self.tensors),
            "min_sqnr_db": num(min((t.sqnr_db for t in self.tensors if t.folded),
                                   default=math.inf)),
            "target": self.target, "budget": self.budget,
            "dense_bytes": self.dense_bytes, "target_bytes": self.target_bytes,
            "agreement": None if a is None else agreement_json(a),
            "gate": None if self.gate is None else asdict(self.gate),
            "tradeoff": [asdict(p) for p in self.tradeoff],
        }


def agreement_json(a: Agreement) -> dict:
    return {"samples": a.samples, "source": a.source,
            "mean_abs_diff": round(a.mean_abs_diff, 6), "max_abs_diff": a.max_abs_diff,
            "top1_agreement": round(a.top1_agreement, 6), "top1_changed": a.top1_changed,
            "classifier": a.classifier, "accuracy": a.accuracy,
            "given_accuracy": a.given_accuracy}


