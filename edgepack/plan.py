"""The lowered plan's data model: one PlanStep per kernel call, the model-data blob its
parameters point into, and C initializer text. Shared by the operator registry (which
builds steps), the code generator (which lays them out) and the report.

May import: nothing of edgepack's but errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALIGN = 16  # model arrays and arena tensors: what Vela, TFLM and MVE loads like
MAX_OP_INPUTS = 16  # EP_MAX_OP_INPUTS in edgepack.h
MAX_OP_OUTPUTS = 16  # EP_MAX_OP_OUTPUTS in edgepack.h


def shape4(shape) -> tuple[int, int, int, int]:
    """A tensor shape as NHWC: lower ranks keep their dimensions last, 1 in front."""
    dims = [int(d) for d in shape] or [1]
    if len(dims) > 4:
        raise ValueError(shape)
    return tuple([1] * (4 - len(dims)) + dims)


@dataclass
class PaletteWeights:
    """A weight tensor as an int8 codebook and per-element indices (TFLite element order)."""

    codebook: np.ndarray  # int8 [K]
    indices: np.ndarray  # uint8, the weight tensor's shape
    bits: int


@dataclass
class DataArray:
    symbol: str
    ctype: str  # "int8_t", "int32_t", "uint8_t"
    offset: int
    size: int
    what: str  # for the layout table: "codebook", "indices", "weights", "bias", ...


@dataclass
class DataBlob:
    """Arrays packed back to back at 16-byte boundaries into one binary file."""

    name: str
    arrays: list[DataArray] = field(default_factory=list)
    _chunks: list[bytes] = field(default_factory=list, repr=False)
    size: int = 0

    def add(self, symbol: str, data: np.ndarray | bytes, ctype: str, what: str) -> str:
        raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        pad = (-self.size) % ALIGN
        if pad:
            self._chunks.append(b"\0" * pad)
            self.size += pad
        self.arrays.append(DataArray(symbol, ctype, self.size, len(raw), what))
        self._chunks.append(raw)
        self.size += len(raw)
        return symbol

    def to_bytes(self) -> bytes:
        out = b"".join(self._chunks)
        return out + b"\0" * ((-len(out)) % ALIGN)

    def bytes_by_kind(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for a in self.arrays:
            totals[a.what] = totals.get(a.what, 0) + a.size
        return dict(sorted(totals.items()))


class C:
    """A C expression emitted verbatim inside a designated initializer."""

    def __init__(self, text: str):
        self.text = text


def c_initializer(value, indent: int = 4) -> str:
    """Python dict/list/int -> a C99 (designated) initializer, fields in insertion order."""
    pad = " " * indent
    if isinstance(value, C):
        return value.text
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, dict):
        if not value:
            return "{0}"
        items = [f"{pad}.{k} = {c_initializer(v, indent + 4)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * (indent - 4) + "}"
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(c_initializer(v, indent) for v in value) + "}"
    raise TypeError(type(value))


def shape_init(shape) -> dict:
    n, h, w, c = shape4(shape)
    return {"n": n, "h": h, "w": w, "c": c}


@dataclass
class PlanStep:
    index: int  # the TFLite operator index
    opcode: str
    kernel: str  # EP_KERNEL_* name
    params_type: str  # ep_*_params
    params: dict  # the initializer
    inputs: list[int]  # activation tensor indices the kernel reads, in order
    output: int  # tensor written
    scratch_bytes: int = 0
    weights_form: str = ""  # "palette 4-bit K=16", "dense", ""
    weight_bytes: int = 0  # bytes of weights in the model data (codebook + indices, or dense)
    dense_weight_bytes: int = 0  # the same weights as int8
    in_place: bool = False  # output may share the input's buffer (RESHAPE)
    constants: dict[int, str] = field(default_factory=dict)  # constant input tensor -> model data symbol
    several_outputs: list[int] = field(default_factory=list)  # SPLIT: every tensor written (output first)

    @property
    def outputs(self) -> list[int]:
        """The tensors the step writes."""
        return self.several_outputs or [self.output]

    @property
    def symbol(self) -> str:
        return f"op{self.index:03d}"
