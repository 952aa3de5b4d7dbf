"""The operator registry's machinery: what every operator spec holds, the checks all
operators share, and the lowering context (model data, requantization, weights, bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import quant
from ..errors import BuildError
from ..packing import pack_indices
from ..plan import C, DataBlob, PaletteWeights, PlanStep
from ..tflite import Model, Operator, Tensor


def scale_of(t: Tensor) -> float:
    return float(t.quantization.scale[0]) if t.quantization is not None else 1.0


def zero_point_of(t: Tensor) -> int:
    return int(t.quantization.zero_point[0]) if t.quantization is not None else 0


def same_quantization(a: Tensor, b: Tensor) -> bool:
    return np.float32(scale_of(a)) == np.float32(scale_of(b)) and zero_point_of(a) == zero_point_of(b)


def constant_int(model: Model, index: int) -> np.ndarray | None:
    if index < 0 or not model.tensors[index].is_constant:
        return None
    return np.asarray(model.tensors[index].data).astype(np.int64).reshape(-1)


def dilation(options: dict) -> tuple[int, int]:
    # the schema's dilationHFactor becomes "dilation_hfactor" in our snake_case options
    return (int(options.get("dilation_hfactor", options.get("dilation_h_factor", 1))),
            int(options.get("dilation_wfactor", options.get("dilation_w_factor", 1))))


Check = Callable[[Model, Operator], "str | None"]


@dataclass(frozen=True)
class OperatorSpec:
    """One operator the runtime runs: its TFLite opcode, the check that says in one line why a
    given instance cannot run (None when it can), and its lowering to a kernel call."""

    opcode: str
    lower: Callable[["Lowering", Operator], PlanStep]
    check: Check | None = None
    data_inputs: int | None = 1  # inputs that are activations (None: all of them)
    several_outputs: bool = False  # SPLIT, SPLIT_V, UNPACK: the kernel writes every output
    max_rank: int = 4  # highest tensor rank the kernel (and TFLM's) takes
    other_dtypes: frozenset = frozenset()  # activation dtypes besides int8 the op's check vets
    constant_operands: bool = False  # a data input may be constant (the lowering puts it in
    # the model data with Lowering.constant_operands); otherwise it must be an activation


OPERATORS: dict[str, OperatorSpec] = {}

# Operators refused on purpose, with the reason (a kernel would be easy; checking it is not).
REFUSED = {"RELU_N1_TO_1": ("TFLM, which computes the golden outputs the build checks against, has "
                            "no RELU_N1_TO_1 kernel (clamp with MINIMUM and MAXIMUM instead)")}


def register(opcode: str, lower, check: Check | None = None, data_inputs: int | None = 1, *,
             several_outputs: bool = False, max_rank: int = 4, other_dtypes: frozenset = frozenset(),
             constant_operands: bool = False) -> None:
    if opcode in OPERATORS:
        raise ValueError(f"operator {opcode} registered twice")
    OPERATORS[opcode] = OperatorSpec(opcode, lower, check, data_inputs, several_outputs, max_rank,
                                     other_dtypes, constant_operands)


def supported_operators() -> list[str]:
    """The opcodes edgepack's runtime runs, sorted."""
    return sorted(OPERATORS)


def unsupported_reason(model: Model, op: Operator) -> str | None:
    """Why edgepack's runtime cannot run `op`, or None when it can: every option a lowering
    would otherwise have to guess about is checked here, before anything is folded or written."""
    if op.opcode in REFUSED:
        return REFUSED[op.opcode]
    spec = OPERATORS.get(op.opcode)
    if spec is None:
        if op.opcode == "CUSTOM":
            return f"custom operator '{op.custom_code or ''}': edgepack's runtime has no kernel for it"
        return f"edgepack's runtime has no {op.opcode} kernel"
    if len(op.outputs) != 1 and not spec.several_outputs:
        return f"{len(op.outputs)} outputs (the runtime's kernels write one)"
    if not op.outputs:
        return "no output tensor"
    if not op.inputs or op.inputs[0] < 0:
        return "no input tensor"
    for idx in op.inputs + op.outputs:
        if idx >= 0 and len(model.tensors[idx].shape) > spec.max_rank:
            t = model.tensors[idx]
            return f"tensor '{t.name}' has rank {len(t.shape)}, {op.opcode} runs up to {spec.max_rank}"
    # The tensors the kernel computes on; weights, axes and paddings are the op checks' part.
    n_data = len(op.inputs) if spec.data_inputs is None else spec.data_inputs
    if len(op.inputs) < n_data or any(i < 0 for i in op.inputs[:n_data]):
        return f"{n_data} input tensors needed, the operator names {op.inputs}"
    for idx in op.inputs[:n_data] + op.outputs:
        t = model.tensors[idx]
        if t.dtype in spec.other_dtypes and not t.is_constant:
            continue
        if t.is_constant and spec.constant_operands:
            continue
        if t.is_constant:
            return f"input tensor '{t.name}' is a constant; the runtime's {op.opcode} reads activations"
        if t.dtype != "int8":
            return f"tensor '{t.name}' is {t.dtype}, the runtime computes int8"
        if t.quantization is None:
            return f"int8 tensor '{t.name}' has no quantization"
        if t.quantization.per_channel:
            return f"activation tensor '{t.name}' is quantized per channel"
    act = op.fused_activation
    if act not in quant.ACTIVATIONS:
        return f"fused activation {act} is not supported"
    return spec.check(model, op) if spec.check is not None else None


def unsupported_operators(model: Model) -> list[tuple[Operator, str]]:
    """Every operator the runtime cannot run, with the reason, in model order."""
    found = []
    for op in model.operators:
        reason = unsupported_reason(model, op)
        if reason is not None:
            found.append((op, reason))
    return found


def describe_unsupported(found: list[tuple[Operator, str]]) -> str:
    """`unsupported_operators`' answer as one line: every operator named, each reason once."""
    if len(found) == 1:
        op, reason = found[0]
        return f"operator {op.index} ({op.name}): {reason}"
    by_reason: dict[str, list[Operator]] = {}
    for op, reason in found:
        by_reason.setdefault(reason, []).append(op)
    parts = []
    for reason, ops in by_reason.items():
        named = ", ".join(f"{op.index} ({op.name})" for op in ops)
        parts.append(f"operator{'s' if len(ops) > 1 else ''} {named}: {reason}")
    return f"{len(found)} operators the runtime cannot run: " + "; ".join(parts)


class Lowering:
    """What lowering an operator needs beyond the operator: the model, the folded weights' palettes,
    and the model-data blob that parameters point into."""

    def __init__(self, model: Model, palettes: dict[int, PaletteWeights], blob: DataBlob):
        self.model, self.palettes, self.blob = model, palettes, blob
        self.constant_symbols: dict[int, str] = {}  # tensor index -> model data symbol

    def constant_operands(self, step: PlanStep) -> PlanStep:
        """Put the step's constant inputs into the model data, once per tensor: the plan refers
        to them as EP_CONST(k) instead of an arena offset."""
        for i in step.inputs:
            t = self.t(i)
            if not t.is_constant:
                continue
            if i not in self.constant_symbols:
                data = np.ascontiguousarray(t.data, np.int8).reshape(-1)
                self.constant_symbols[i] = self.blob.add(f"ep_const_t{i:04d}", data, "int8_t",
                                                         "constant operands")
            step.constants[i] = self.constant_symbols[i]
        return step

    def t(self, i: int) -> Tensor:
        return self.model.tensors[i]

    def requant(self, op: Operator, inp: Tensor, w: Tensor, out: Tensor, channels: int) -> dict:
        wq = w.quantization
        scales = np.asarray(wq.scale, np.float32) if wq is not None else np.ones(1, np.float32)
        multipliers = quant.fc_multipliers if op.opcode == "FULLY_CONNECTED" else quant.conv_multipliers
        mult, shift = multipliers(scale_of(inp), scales, scale_of(out))
        if mult.size not in (1, channels):
            raise BuildError(f"operator {op.index} ({op.opcode}): {mult.size} weight scales for "
                             f"{channels} output channels", self.model.path)
        s = f"op{op.index:03d}"
        return {"multiplier": C(self.blob.add(f"ep_{s}_multiplier", mult, "int32_t", "requant")),
                "shift": C(self.blob.add(f"ep_{s}_shift", shift, "int32_t", "requant")),
                "count": int(mult.size)}

    def weights(self, op: Operator, w: Tensor, rows: int, step: PlanStep) -> dict:
        s = f"op{op.index:03d}"
        dense = np.ascontiguousarray(w.data, np.int8)
        step.dense_weight_bytes = dense.size
        pal = self.palettes.get(w.index)
        if pal is None:
            sym = self.blob.add(f"ep_{s}_weights", dense, "int8_t", "dense weights")
            step.weights_form, step.weight_bytes = "dense int8", dense.size
            return {"form": C("EP_WEIGHTS_DENSE"), "bits": 8, "num_codes": 0,
                    "data_bytes": dense.size, "codebook": C("NULL"), "data": C(sym)}
        codebook = np.asarray(pal.codebook, np.int8)
        idx = np.asarray(pal.indices, np.uint8).reshape(rows, -1)
        if not np.array_equal(codebook[idx].reshape(dense.shape), dense):
            raise BuildError(f"operator {op.index} ({op.opcode}): palette of tensor '{w.name}' "
                             "does not reproduce its weights", self.model.path)
        packed = pack_indices(idx, pal.bits)
        cb = self.blob.add(f"ep_{s}_codebook", codebook, "int8_t", "codebooks")
        ix = self.blob.add(f"ep_{s}_indices", packed, "uint8_t", "packed indices")
        step.weights_form = f"palette {pal.bits}-bit K={codebook.size}"
        step.weight_bytes = codebook.size + len(packed)
        return {"form": C("EP_WEIGHTS_PALETTE"), "bits": int(pal.bits),
                "num_codes": int(codebook.size), "data_bytes": len(packed),
                "codebook": C(cb), "data": C(ix)}

    def bias(self, op: Operator, channels: int) -> C:
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return C("NULL")
        b = self.t(op.inputs[2])
        data = np.asarray(b.data, np.int32).reshape(-1)
        if data.size != channels:
            raise BuildError(f"operator {op.index} ({op.opcode}): bias has {data.size} values "
                             f"for {channels} channels", self.model.path)
        return C(self.blob.add(f"ep_op{op.index:03d}_bias", data, "int32_t", "bias"))

    def step(self, op, kernel, ptype, inputs, params=None) -> PlanStep:
        return PlanStep(op.index, op.opcode, kernel, ptype, params or {}, inputs, op.outputs[0])
