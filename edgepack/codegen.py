"""Generate the C firmware project: lower the model to runtime kernel calls, plan the arena,
lay out the constant data, and render the jinja2 templates in `templates/`.

Everything the firmware computes offline is computed here, in Python, once: requantization
multipliers and shifts (TFLite's QuantizeMultiplier, bit-exact.md), padding, activation
ranges, softmax constants, and the arena offsets. The templates only lay the results out.

Determinism: nothing here reads the clock or the environment; every collection is emitted in
a fixed order, so two builds of the same inputs are byte-identical.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, quant
from .errors import BuildError
from .packing import pack_indices
from .resources import FIRMWARE_DIR, TEMPLATES_DIR
from .tflite import Model, Operator, Tensor

ALIGN = 16  # model arrays and arena tensors: what Vela, TFLM and MVE loads like


# --- quantization arithmetic, computed offline (edgepack/quant.py) ----------------------------

# Kept importable from here: tests and other stages know these names from codegen.
quantize_multiplier = quant.quantize_multiplier
activation_range = quant.activation_range
_tflite_round = quant.tflite_round
_same_padding = quant.same_padding


def _dilation(options: dict) -> tuple[int, int]:
    # the schema's dilationHFactor becomes "dilation_hfactor" in our snake_case options
    return (int(options.get("dilation_hfactor", options.get("dilation_h_factor", 1))),
            int(options.get("dilation_wfactor", options.get("dilation_w_factor", 1))))


def palette_table_bytes() -> int:
    """The runtime's palette lookup-table scratch (EP_PALETTE_TABLE_BYTES in ep_internal.h)."""
    import re

    text = (FIRMWARE_DIR / "src" / "ep_internal.h").read_text(encoding="utf-8")
    m = re.search(r"#define\s+EP_PALETTE_TABLE_BYTES\s+(\d+)", text)
    return int(m.group(1)) if m else 0


def conv2d_scratch_bytes(patch_len: int, palette: bool) -> int:
    """ep_conv2d_s8_get_buffer_size: the palette table, then an int16 im2col patch of
    patch_len + 1 elements (a zero pad for pair reads) rounded up to 4 bytes.
    tests/test_scratch_sizes.py checks this against the compiled C function."""
    return (palette_table_bytes() if palette else 0) + (((patch_len + 1) * 2 + 3) & ~3)


def fully_connected_scratch_bytes(input_depth: int, palette: bool) -> int:
    """ep_fully_connected_s8_get_buffer_size: as CONV_2D with the input row for the patch."""
    return conv2d_scratch_bytes(input_depth, palette)


def depthwise_conv2d_scratch_bytes(palette: bool) -> int:
    """ep_depthwise_conv2d_s8_get_buffer_size: only palette weights need scratch (the table)."""
    return palette_table_bytes() if palette else 0


def _shape4(shape) -> tuple[int, int, int, int]:
    """A tensor shape as NHWC: lower ranks keep their dimensions last, 1 in front."""
    dims = [int(d) for d in shape] or [1]
    if len(dims) > 4:
        raise ValueError(shape)
    return tuple([1] * (4 - len(dims)) + dims)


# --- weights in palette form ------------------------------------------------------------------

@dataclass
class PaletteWeights:
    """A weight tensor as an int8 codebook and per-element indices (TFLite element order)."""

    codebook: np.ndarray  # int8 [K]
    indices: np.ndarray  # uint8, the weight tensor's shape
    bits: int


# --- model data: one binary blob in the board's model region ----------------------------------

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


# --- lowering: one runtime kernel call per operator -------------------------------------------

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


def _shape_init(shape) -> dict:
    n, h, w, c = _shape4(shape)
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

    @property
    def symbol(self) -> str:
        return f"op{self.index:03d}"


SUPPORTED_OPERATORS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
                       "AVERAGE_POOL_2D", "MEAN", "RESHAPE", "SQUEEZE", "SOFTMAX", "ADD", "MUL",
                       "PAD", "LOGISTIC", "TANH", "HARD_SWISH", "CONCATENATION", "QUANTIZE", "SUB",
                       "RELU", "RELU6", "LEAKY_RELU", "MAXIMUM", "MINIMUM")
BINARY_OPERATORS = ("ADD", "MUL", "SUB", "MAXIMUM", "MINIMUM")  # two data inputs, broadcasting
MAX_OP_INPUTS = 16  # EP_MAX_OP_INPUTS in edgepack.h
TFLM_MAX_CONCATENATION_INPUTS = 10  # kMaxInputNum in TFLM's concatenation.cc


def _scale(t: Tensor) -> float:
    return float(t.quantization.scale[0]) if t.quantization is not None else 1.0


def _zp(t: Tensor) -> int:
    return int(t.quantization.zero_point[0]) if t.quantization is not None else 0


def _same_quantization(a: Tensor, b: Tensor) -> bool:
    return np.float32(_scale(a)) == np.float32(_scale(b)) and _zp(a) == _zp(b)


def _constant_int(model: Model, index: int) -> np.ndarray | None:
    if index < 0 or not model.tensors[index].is_constant:
        return None
    return np.asarray(model.tensors[index].data).astype(np.int64).reshape(-1)


def _check_weighted(model: Model, op: Operator) -> str | None:
    if len(op.inputs) < 2 or op.inputs[1] < 0 or not model.tensors[op.inputs[1]].is_constant:
        return "weights that are not constant are not supported"
    w = model.tensors[op.inputs[1]]
    if w.dtype != "int8":
        return f"{w.dtype} weights are not supported (int8 only)"
    if w.quantization is None:
        return f"weights '{w.name}' have no quantization"
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = model.tensors[op.inputs[2]]
        if not b.is_constant:
            return "a bias that is not constant is not supported"
        if b.dtype != "int32":
            return f"{b.dtype} bias is not supported (int32 only)"
    inp = model.tensors[op.inputs[0]]
    if op.opcode == "FULLY_CONNECTED":
        if len(w.shape) != 2:
            return f"weights of rank {len(w.shape)} (expected [outputs, inputs])"
        if op.options.get("weights_format", 0) not in (0, "DEFAULT"):  # 1: SHUFFLED4x16INT8
            return f"weights format {op.options['weights_format']} (shuffled) is not supported"
        if inp.size % w.shape[1]:
            return f"input of {inp.size} values is not a multiple of the {w.shape[1]} weights a row"
        if w.quantization.per_channel and np.any(w.quantization.zero_point != 0):
            return "per-channel weights with non-zero zero points are not supported"
        return None
    if len(w.shape) != 4 or len(inp.shape) != 4:
        return "input and weights must be 4-D (NHWC, OHWI)"
    if np.any(w.quantization.zero_point != 0):
        return "weights with non-zero zero points are not supported (TFLM int8 is symmetric)"
    if op.opcode == "CONV_2D" and w.shape[3] != inp.shape[3]:
        return (f"grouped convolution ({inp.shape[3]} input channels, filter has {w.shape[3]}) "
                "is not supported")
    if op.opcode == "DEPTHWISE_CONV_2D":
        mult = op.options.get("depth_multiplier", 1)
        if w.shape[3] % inp.shape[3] or (mult and w.shape[3] != inp.shape[3] * mult):
            return (f"{w.shape[3]} output channels are not {inp.shape[3]} input channels times "
                    f"depth multiplier {mult}")
    return None


def _check_pool(model: Model, op: Operator) -> str | None:
    if len(model.tensors[op.inputs[0]].shape) != 4:
        return "input must be 4-D (NHWC)"
    return None


def _check_mean(model: Model, op: Operator) -> str | None:
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if len(inp.shape) != 4:
        return f"input of rank {len(inp.shape)}; the runtime's MEAN reduces 4-D NHWC over H and W"
    axes = _constant_int(model, op.inputs[1]) if len(op.inputs) > 1 else None
    if axes is None:
        return "reduction axes must be constant"
    if sorted({int(a) % 4 for a in axes}) != [1, 2]:
        return (f"reduces over axes {[int(a) for a in axes]}; the runtime's MEAN reduces over "
                "H and W (axes 1, 2) only")
    if out.size != inp.shape[0] * inp.shape[3]:
        return f"output shape {list(out.shape)} is not [N, C] or [N, 1, 1, C]"
    return None


def _check_binary(model: Model, op: Operator) -> str | None:
    a, b, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    for t in (a, b):
        # A constant operand is read from the model data (EP_CONST), so it must be what an
        # activation would be: int8, quantized per tensor.
        if t.is_constant and t.dtype != "int8":
            return f"constant operand '{t.name}' is {t.dtype}, the runtime computes int8"
        if t.is_constant and (t.quantization is None or t.quantization.per_channel):
            return f"constant operand '{t.name}' needs one int8 scale and zero point"
    o = _shape4(out.shape)
    for t in (a, b):
        s = _shape4(t.shape)
        if any(d not in (1, od) for d, od in zip(s, o)):
            return (f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast to "
                    f"{list(out.shape)} (each dimension must match the output or be 1)")
    return None


def _check_fixed_output(scale: float, zero_point: int):
    def check(model: Model, op: Operator) -> str | None:
        out = model.tensors[op.outputs[0]]
        if abs(_scale(out) - scale) > 1e-9 * scale or _zp(out) != zero_point:
            return (f"int8 {op.opcode} needs output scale 1/{round(1 / scale)} and zero point "
                    f"{zero_point}, not {_scale(out):g} and {_zp(out)}")
        return None
    return check


def _check_hard_swish(model: Model, op: Operator) -> str | None:
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if quant.hard_swish_params(_scale(inp), _scale(out))[3] > 0:
        return (f"output scale {_scale(out):g} is at most 1/128 of the input scale "
                f"{_scale(inp):g} (TFLM needs output_multiplier_exponent <= 0)")
    return None


def _check_pad(model: Model, op: Operator) -> str | None:
    pads = _constant_int(model, op.inputs[1])
    if pads is None:
        return "padding amounts must be constant"
    rank = len(model.tensors[op.inputs[0]].shape)
    if pads.size != 2 * rank:
        return f"{pads.size} padding amounts for a rank-{rank} input"
    if np.any(pads < 0):
        return "negative padding is not supported"
    if len(op.inputs) > 2 and op.inputs[2] >= 0 and _constant_int(model, op.inputs[2]) is None:
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
        if not _same_quantization(t, out):
            return (f"input '{t.name}' is quantized differently from the output "
                    "(the runtime copies bytes; requantizing concatenation is not supported)")
    return None


def _check_reshape(model: Model, op: Operator) -> str | None:
    inp, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if inp.size != out.size:
        return f"{inp.size} input values but {out.size} output values"
    return None


_OP_CHECKS = {
    "CONV_2D": _check_weighted, "DEPTHWISE_CONV_2D": _check_weighted,
    "FULLY_CONNECTED": _check_weighted, "MAX_POOL_2D": _check_pool, "AVERAGE_POOL_2D": _check_pool,
    "MEAN": _check_mean, "ADD": _check_binary, "MUL": _check_binary, "SUB": _check_binary,
    "MAXIMUM": _check_binary, "MINIMUM": _check_binary,
    "SOFTMAX": _check_fixed_output(1 / 256, -128), "LOGISTIC": _check_fixed_output(1 / 256, -128),
    "TANH": _check_fixed_output(1 / 128, 0), "HARD_SWISH": _check_hard_swish, "PAD": _check_pad,
    "CONCATENATION": _check_concatenation, "RESHAPE": _check_reshape, "SQUEEZE": _check_reshape,
}


def unsupported_reason(model: Model, op: Operator) -> str | None:
    """Why edgepack's runtime cannot run `op`, or None when it can: every option a lowering
    would otherwise have to guess about is checked here, before anything is folded or written."""
    if op.opcode == "RELU_N1_TO_1":
        return ("TFLM, which computes the golden outputs the build checks against, has no "
                "RELU_N1_TO_1 kernel (clamp with MINIMUM and MAXIMUM instead)")
    if op.opcode not in SUPPORTED_OPERATORS:
        return f"edgepack's runtime has no {op.opcode} kernel"
    if len(op.outputs) != 1:
        return f"{len(op.outputs)} outputs (the runtime's kernels write one)"
    if not op.inputs or op.inputs[0] < 0:
        return "no input tensor"
    for idx in op.inputs + op.outputs:
        if idx >= 0 and len(model.tensors[idx].shape) > 4:
            t = model.tensors[idx]
            return f"tensor '{t.name}' has rank {len(t.shape)}, the runtime handles up to 4"
    # The tensors the kernel computes on; weights, axes and paddings are the op checks' part.
    n_data = len(op.inputs) if op.opcode == "CONCATENATION" else 2 if op.opcode in BINARY_OPERATORS else 1
    for idx in op.inputs[:n_data] + op.outputs:
        t = model.tensors[idx]
        if t.is_constant:
            continue
        if t.dtype != "int8":
            return f"tensor '{t.name}' is {t.dtype}, the runtime computes int8"
        if t.quantization is None:
            return f"int8 tensor '{t.name}' has no quantization"
        if t.quantization.per_channel:
            return f"activation tensor '{t.name}' is quantized per channel"
    act = op.fused_activation
    if act not in quant.ACTIVATIONS:
        return f"fused activation {act} is not supported"
    check = _OP_CHECKS.get(op.opcode)
    return check(model, op) if check is not None else None


class _Lowering:
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
        mult, shift = multipliers(_scale(inp), scales, _scale(out))
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

    def lower(self, op: Operator) -> PlanStep:
        return getattr(self, "lower_" + op.opcode.lower())(op)

    def _step(self, op, kernel, ptype, inputs, params=None) -> PlanStep:
        return PlanStep(op.index, op.opcode, kernel, ptype, params or {}, inputs, op.outputs[0])

    def _window_params(self, op: Operator, step: PlanStep, out_channels: int, weight_rows: int,
                       extra: dict) -> dict:
        """What CONV_2D and DEPTHWISE_CONV_2D share: shapes, stride, dilation, SAME padding,
        offsets, the activation range, and the requantization, weight and bias arrays."""
        inp, w, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        o = op.options
        _, ih, iw, _ = _shape4(inp.shape)
        _, kh, kw, _ = w.shape
        _, oh, ow, _ = _shape4(out.shape)
        sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
        dh, dw = _dilation(o)
        same = o.get("padding") == "SAME"
        lo, hi = activation_range(op.fused_activation, _scale(out), _zp(out))
        return {
            "input": _shape_init(inp.shape), "filter": _shape_init(w.shape),
            "output": _shape_init(out.shape), **extra, "stride_h": sh, "stride_w": sw,
            "dilation_h": dh, "dilation_w": dw,
            "pad_top": _same_padding(ih, oh, sh, kh, dh) if same else 0,
            "pad_left": _same_padding(iw, ow, sw, kw, dw) if same else 0,
            "input_offset": -_zp(inp), "output_offset": _zp(out), "act_min": lo, "act_max": hi,
            "requant": self.requant(op, inp, w, out, out_channels),
            "weights": self.weights(op, w, weight_rows, step),
            "bias": self.bias(op, out_channels)}

    def lower_conv_2d(self, op: Operator) -> PlanStep:
        oc, kh, kw, wc = self.t(op.inputs[1]).shape
        step = self._step(op, "EP_KERNEL_CONV2D", "ep_conv2d_params", [op.inputs[0]])
        step.params = self._window_params(op, step, oc, oc, {})
        step.scratch_bytes = conv2d_scratch_bytes(kh * kw * wc,
                                                  step.weights_form.startswith("palette"))
        return step

    def lower_depthwise_conv_2d(self, op: Operator) -> PlanStep:
        ic = _shape4(self.t(op.inputs[0]).shape)[3]
        oc = self.t(op.inputs[1]).shape[3]
        step = self._step(op, "EP_KERNEL_DEPTHWISE_CONV2D", "ep_depthwise_conv2d_params",
                          [op.inputs[0]])
        # depthwise weights [1, KH, KW, C*M] are one packed row
        step.params = self._window_params(op, step, oc, 1, {"depth_multiplier": oc // ic})
        step.scratch_bytes = depthwise_conv2d_scratch_bytes(step.weights_form.startswith("palette"))
        return step

    def lower_fully_connected(self, op: Operator) -> PlanStep:
        inp, w, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        out_depth, in_depth = w.shape
        step = self._step(op, "EP_KERNEL_FULLY_CONNECTED", "ep_fully_connected_params",
                          [op.inputs[0]])
        lo, hi = activation_range(op.fused_activation, _scale(out), _zp(out))
        wq = w.quantization
        step.params = {
            "batches": inp.size // in_depth, "input_depth": in_depth, "output_depth": out_depth,
            "input_offset": -_zp(inp),
            "weights_offset": -int(wq.zero_point[0]) if wq is not None and not wq.per_channel else 0,
            "output_offset": _zp(out), "act_min": lo, "act_max": hi,
            "requant": self.requant(op, inp, w, out, out_depth),
            "weights": self.weights(op, w, out_depth, step),
            "bias": self.bias(op, out_depth)}
        step.scratch_bytes = fully_connected_scratch_bytes(
            in_depth, step.weights_form.startswith("palette"))
        return step

    def _pool(self, op: Operator, kernel: str) -> PlanStep:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        o = op.options
        _, ih, iw, _ = _shape4(inp.shape)
        _, oh, ow, _ = _shape4(out.shape)
        fh, fw = o["filter_height"], o["filter_width"]
        sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
        same = o.get("padding") == "SAME"
        lo, hi = activation_range(op.fused_activation, _scale(out), _zp(out))
        return self._step(op, kernel, "ep_pool_params", [op.inputs[0]], {
            "input": _shape_init(inp.shape), "output": _shape_init(out.shape),
            "filter_h": fh, "filter_w": fw, "stride_h": sh, "stride_w": sw,
            "pad_top": _same_padding(ih, oh, sh, fh, 1) if same else 0,
            "pad_left": _same_padding(iw, ow, sw, fw, 1) if same else 0,
            "act_min": lo, "act_max": hi})

    def lower_max_pool_2d(self, op: Operator) -> PlanStep:
        return self._pool(op, "EP_KERNEL_MAX_POOL2D")

    def lower_average_pool_2d(self, op: Operator) -> PlanStep:
        return self._pool(op, "EP_KERNEL_AVG_POOL2D")

    def lower_reshape(self, op: Operator) -> PlanStep:
        step = self._step(op, "EP_KERNEL_RESHAPE", "ep_reshape_params", [op.inputs[0]],
                          {"size": self.t(op.outputs[0]).size})
        step.in_place = True
        return step

    lower_squeeze = lower_reshape

    def lower_softmax(self, op: Operator) -> PlanStep:
        inp = self.t(op.inputs[0])
        mult, shift, diff_min = quant.softmax_params(float(op.options.get("beta", 1.0)), _scale(inp))
        depth = int(inp.shape[-1]) if inp.shape else 1
        return self._step(op, "EP_KERNEL_SOFTMAX", "ep_softmax_params", [op.inputs[0]], {
            "rows": inp.size // depth, "depth": depth, "input_multiplier": mult,
            "input_left_shift": shift, "diff_min": diff_min})

    def lower_add(self, op: Operator) -> PlanStep:
        a, b, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        p = quant.add_params(_scale(a), _scale(b), _scale(out))
        lo, hi = activation_range(op.fused_activation, _scale(out), _zp(out))
        return self.constant_operands(self._step(op, "EP_KERNEL_ADD", "ep_add_params", op.inputs[:2], {
            "input1": _shape_init(a.shape), "input2": _shape_init(b.shape),
            "output": _shape_init(out.shape), "input1_offset": -_zp(a), "input2_offset": -_zp(b),
            "output_offset": _zp(out), "left_shift": p["left_shift"],
            "input1_multiplier": p["input1_multiplier"], "input1_shift": p["input1_shift"],
            "input2_multiplier": p["input2_multiplier"], "input2_shift": p["input2_shift"],
            "output_multiplier": p["output_multiplier"], "output_shift": p["output_shift"],
            "act_min": lo, "act_max": hi}))

    def lower_sub(self, op: Operator) -> PlanStep:
        # TFLM's int8 SUB prepares exactly as ADD does; only the kernel subtracts.
        step = self.lower_add(op)
        step.kernel, step.params_type = "EP_KERNEL_SUB", "ep_sub_params"
        return step

    def _minmax(self, op: Operator, kernel: str) -> PlanStep:
        a, b, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        return self.constant_operands(self._step(op, kernel, "ep_minmax_params", op.inputs[:2], {
            "input1": _shape_init(a.shape), "input2": _shape_init(b.shape),
            "output": _shape_init(out.shape)}))

    def lower_maximum(self, op: Operator) -> PlanStep:
        return self._minmax(op, "EP_KERNEL_MAXIMUM")

    def lower_minimum(self, op: Operator) -> PlanStep:
        return self._minmax(op, "EP_KERNEL_MINIMUM")

    def lower_relu(self, op: Operator) -> PlanStep:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        p = quant.relu_params(op.opcode, _scale(inp), _scale(out), _zp(inp), _zp(out))
        mode = C("EP_RELU_CLAMP" if p.pop("mode") else "EP_RELU_REQUANTIZE")
        return self._step(op, "EP_KERNEL_RELU", "ep_relu_params", [op.inputs[0]],
                          {"size": inp.size, "mode": mode, **p})

    lower_relu6 = lower_relu

    def lower_leaky_relu(self, op: Operator) -> PlanStep:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        p = quant.leaky_relu_params(float(op.options.get("alpha", 0.0)), _scale(inp), _scale(out))
        return self._step(op, "EP_KERNEL_LEAKY_RELU", "ep_leaky_relu_params", [op.inputs[0]], {
            "size": inp.size, "input_zero_point": _zp(inp), "output_zero_point": _zp(out), **p})

    def lower_mul(self, op: Operator) -> PlanStep:
        a, b, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        m, s = quant.mul_multiplier(_scale(a), _scale(b), _scale(out))
        lo, hi = activation_range(op.fused_activation, _scale(out), _zp(out))
        return self.constant_operands(self._step(op, "EP_KERNEL_MUL", "ep_mul_params", op.inputs[:2], {
            "input1": _shape_init(a.shape), "input2": _shape_init(b.shape),
            "output": _shape_init(out.shape), "input1_offset": -_zp(a), "input2_offset": -_zp(b),
            "output_offset": _zp(out), "output_multiplier": m, "output_shift": s,
            "act_min": lo, "act_max": hi}))

    def lower_pad(self, op: Operator) -> PlanStep:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        pads = np.asarray(self.t(op.inputs[1]).data, np.int64).reshape(-1, 2)
        before = [0] * (4 - len(pads)) + [int(p) for p in pads[:, 0]]
        value = _zp(out)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(np.asarray(self.t(op.inputs[2]).data).reshape(-1)[0])
        return self._step(op, "EP_KERNEL_PAD", "ep_pad_params", [op.inputs[0]], {
            "input": _shape_init(inp.shape), "output": _shape_init(out.shape),
            "before": before, "pad_value": value})

    def _sigmoid(self, op: Operator, kernel: str) -> PlanStep:
        inp = self.t(op.inputs[0])
        mult, shift, radius = quant.sigmoid_params(_scale(inp))
        return self._step(op, kernel, "ep_sigmoid_params", [op.inputs[0]], {
            "size": inp.size, "input_zero_point": _zp(inp), "input_range_radius": radius,
            "input_multiplier": mult, "input_left_shift": shift})

    def lower_logistic(self, op: Operator) -> PlanStep:
        return self._sigmoid(op, "EP_KERNEL_LOGISTIC")

    def lower_tanh(self, op: Operator) -> PlanStep:
        return self._sigmoid(op, "EP_KERNEL_TANH")

    def lower_hard_swish(self, op: Operator) -> PlanStep:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        rm, re, om, oe = quant.hard_swish_params(_scale(inp), _scale(out))
        return self._step(op, "EP_KERNEL_HARD_SWISH", "ep_hard_swish_params", [op.inputs[0]], {
            "size": inp.size, "input_zero_point": _zp(inp), "output_zero_point": _zp(out),
            "reluish_multiplier_fixedpoint_int16": rm, "reluish_multiplier_exponent": re,
            "output_multiplier_fixedpoint_int16": om, "output_multiplier_exponent": oe})

    def lower_mean(self, op: Operator) -> PlanStep:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        _, h, w, _ = inp.shape
        m, s = quant.mean_multiplier(_scale(inp), _scale(out), h * w)
        return self._step(op, "EP_KERNEL_MEAN", "ep_mean_params", [op.inputs[0]], {
            "input": _shape_init(inp.shape), "mode": C("EP_MEAN_TFLM"),
            "input_zero_point": _zp(inp), "output_zero_point": _zp(out),
            "multiplier": m, "shift": s})

    def lower_concatenation(self, op: Operator) -> PlanStep:
        out = self.t(op.outputs[0])
        shape = [int(d) for d in out.shape] or [1]
        axis = int(op.options.get("axis", 0)) % len(shape)
        sizes = np.array([(self.t(i).shape or [1])[axis] for i in op.inputs], np.int32)
        sym = self.blob.add(f"ep_op{op.index:03d}_axis_sizes", sizes, "int32_t", "axis sizes")
        return self._step(op, "EP_KERNEL_CONCATENATION", "ep_concatenation_params",
                          list(op.inputs), {
                              "num_inputs": len(op.inputs),
                              "outer": int(np.prod(shape[:axis], dtype=np.int64)),
                              "inner": int(np.prod(shape[axis + 1:], dtype=np.int64)),
                              "axis_sizes": C(sym)})

    def lower_quantize(self, op: Operator) -> PlanStep:
        inp, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        m, s = quant.requantize_multiplier(_scale(inp), _scale(out))
        return self._step(op, "EP_KERNEL_QUANTIZE", "ep_quantize_params", [op.inputs[0]], {
            "size": inp.size, "input_zero_point": _zp(inp), "output_zero_point": _zp(out),
            "multiplier": m, "shift": s})


def lower_model(model: Model, palettes: dict[int, PaletteWeights]) -> tuple[list[PlanStep], DataBlob]:
    """One PlanStep per operator, and the model data blob their parameters point into."""
    blob = DataBlob("model")
    lowering = _Lowering(model, palettes, blob)
    steps = []
    for op in model.operators:
        reason = unsupported_reason(model, op)
        if reason is not None:
            raise BuildError(f"operator {op.index} ({op.name}): {reason}", model.path)
        steps.append(lowering.lower(op))
    return steps, blob


# --- the arena planner ------------------------------------------------------------------------

@dataclass
class ArenaBuffer:
    tensors: list[int]  # tensor indices sharing these bytes (an in-place chain)
    size: int
    first: int  # first step that writes (or -1: a model input)
    last: int  # last step that reads (len(steps): a model output)
    offset: int = -1


@dataclass
class ArenaPlan:
    size: int  # total arena bytes, scratch included
    offsets: dict[int, int]  # tensor index -> byte offset
    scratch_offset: int
    scratch_bytes: int
    buffers: list[ArenaBuffer]
    naive_size: int  # every tensor in its own place: what planning saved


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def plan_arena(model: Model, steps: list[PlanStep]) -> ArenaPlan:
    """Place every activation tensor in one arena from the tensors' lifetimes: largest first,
    each into the best-fitting gap (the smallest one it fits) among the buffers already placed
    whose lifetimes overlap its own. Kernel scratch lives through every step."""
    end = len(steps)
    owner: dict[int, ArenaBuffer] = {}
    buffers: list[ArenaBuffer] = []

    def buffer_of(t: int, first: int) -> ArenaBuffer:
        if t not in owner:
            b = ArenaBuffer([t], _align(max(model.tensors[t].size, 1)), first, first)
            owner[t] = b
            buffers.append(b)
        return owner[t]

    for t in model.inputs:
        buffer_of(t, -1)
    for i, step in enumerate(steps):
        for t in step.inputs:
            if t in step.constants:  # in the model data, not the arena
                continue
            buffer_of(t, -1).last = max(owner[t].last, i)
        src = owner.get(step.inputs[0]) if step.inputs else None
        # A reshape may run in place when its input dies here and is not a model output.
        if (step.in_place and src is not None and src.last == i
                and step.inputs[0] not in model.outputs and step.output not in owner
                and _align(max(model.tensors[step.output].size, 1)) <= src.size):
            owner[step.output] = src
            src.tensors.append(step.output)
        else:
            buffer_of(step.output, i)
    for t in model.outputs:
        owner[t].last = end
    scratch = _align(max([s.scratch_bytes for s in steps] + [0]))
    scratch_buf = ArenaBuffer([], scratch, -1, end) if scratch else None

    placed: list[ArenaBuffer] = []
    order = sorted(buffers + ([scratch_buf] if scratch_buf else []),
                   key=lambda b: (-b.size, b.tensors[0] if b.tensors else -1))
    for b in order:
        live = sorted((p for p in placed if p.first <= b.last and b.first <= p.last),
                      key=lambda p: p.offset)
        best, best_gap, cursor = None, None, 0
        for p in live:
            gap = p.offset - cursor
            if gap >= b.size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, p.offset + p.size)
        b.offset = best if best is not None else cursor
        placed.append(b)
    size = max([b.offset + b.size for b in placed] + [0])
    offsets = {t: b.offset for b in buffers for t in b.tensors}
    return ArenaPlan(size=size, offsets=dict(sorted(offsets.items())),
                     scratch_offset=scratch_buf.offset if scratch_buf else 0,
                     scratch_bytes=scratch, buffers=buffers,
                     naive_size=sum(b.size for b in buffers) + scratch)


# --- rendering --------------------------------------------------------------------------------

def file_header(model: Model, comment: str = "//") -> str:
    """The first lines of every generated file."""
    lines = [f"edgepack {__version__}: generated, do not edit.",
             f"model sha256 {model.sha256}"]
    if comment == "/*":
        return "/*\n" + "".join(f" * {line}\n" for line in lines) + " */"
    return "\n".join(f"{comment} {line}" for line in lines)


def _jinja_env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True, autoescape=False)


def runtime_sources() -> list[Path]:
    """The runtime files a project needs, relative to firmware/ (all kernels: the plan runner
    dispatches to any of them; --gc-sections drops what a model does not call)."""
    files = sorted((FIRMWARE_DIR / "include").glob("*.h")) + sorted((FIRMWARE_DIR / "src").glob("*.[ch]"))
    return [p.relative_to(FIRMWARE_DIR) for p in files]


def copy_runtime(dest: Path, model: Model) -> list[str]:
    """Copy the runtime into dest/runtime with the generated-file header prepended."""
    out = []
    for rel in runtime_sources():
        target = dest / "runtime" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (FIRMWARE_DIR / rel).read_text(encoding="utf-8")
        target.write_text(file_header(model, "/*") + "\n/* copied from edgepack's firmware/"
                          + rel.as_posix() + " */\n" + text, encoding="utf-8")
        out.append(("runtime" / rel).as_posix())
    return out


def render(template: str, dest: Path, **context) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = _jinja_env().get_template(template).render(**context)
    dest.write_text(text, encoding="utf-8")


def c_bytes(data: bytes, per_line: int = 16) -> str:
    """Bytes as C initializer text, per_line values a line."""
    lines = []
    for i in range(0, len(data), per_line):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ",")
    return "\n".join(lines)


def params_text(step: PlanStep) -> str:
    return c_initializer(step.params)


def as_dict(obj) -> dict:
    return asdict(obj)


# --- the project ------------------------------------------------------------------------------

# Output sections of the linker script, by what the board's regions hold.
SECTION_HOLDS = [(".text", "code"), (".rodata", "rodata"), (".ARM.extab", "rodata"),
                 (".ARM.exidx", "rodata"), (".data", "rodata"), (".edgepack_model", "model")]


def load_images(board) -> list[dict]:
    """One binary image per memory region with load data, the code region first:
    what objcopy extracts for a board's loader (the MPS3 SD card, a flash programmer)."""
    images: dict[str, dict] = {}
    for section, holds in SECTION_HOLDS:
        r = board.region_for(holds)
        img = images.setdefault(r.name, {"region": r.name, "address": r.address,
                                         "file": f"{r.name.lower()}.bin", "sections": []})
        img["sections"].append(section)
    code = board.region_for("code").name
    return sorted(images.values(), key=lambda i: (i["region"] != code, i["address"]))


def write_project(dest: Path, *, model: Model, board, steps: list[PlanStep], arena: ArenaPlan,
                  blob: DataBlob, golden: DataBlob, model_data: bytes, golden_data: bytes,
                  golden_input_symbols, golden_output_symbols, result, vela_model: bytes | None,
                  placement: dict[int, str], stack_size: int, heap_size: int,
                  uart_base: int) -> list[str]:
    """Render every file of the project into `dest` (an empty directory); returns their paths."""
    host = board.cpu.toolchain == "host"
    model_name = Path(model.path).stem
    ctx = dict(
        header_c=file_header(model, "/*"), header_hash=file_header(model, "#"),
        header_asm=file_header(model, "/*"), board=board, model_name=model_name,
        host_board=host, steps=[], arena=arena, golden_count=len(golden_input_symbols),
        inputs=[{"offset": arena.offsets[t], "size": model.tensors[t].size} for t in model.inputs],
        outputs=[{"offset": arena.offsets[t], "size": model.tensors[t].size} for t in model.outputs],
        model_arrays=blob.arrays, golden_arrays=golden.arrays,
        golden_input_symbols=golden_input_symbols, golden_output_symbols=golden_output_symbols,
        npu=board.npu is not None and vela_model is not None, result=result,
        stack_size=stack_size, heap_size=heap_size, uart_base=uart_base,
        images=[] if host else load_images(board), placement=placement)
    # Constant operands: plan->constants[k], referred to as EP_CONST(k) in the op's inputs.
    constants: list[str] = []
    for s in steps:
        constants += [sym for sym in s.constants.values() if sym not in constants]
    ctx["constants"] = constants
    for s in steps:
        ctx["steps"].append(dict(
            index=s.index, opcode=s.opcode, kernel=s.kernel, params_type=s.params_type,
            params_text=c_initializer(s.params), symbol=s.symbol, weights_form=s.weights_form,
            input_offsets=[f"EP_CONST({constants.index(s.constants[t])})" if t in s.constants
                           else arena.offsets[t] for t in s.inputs],
            output_offset=arena.offsets[s.output],
            target=placement.get(s.index, "cpu")))
    files = copy_runtime(dest, model)
    ctx["runtime_c"] = [f for f in files if f.endswith(".c")]

    (dest / "data").mkdir(parents=True, exist_ok=True)
    (dest / "data" / "model.bin").write_bytes(model_data)
    (dest / "data" / "golden.bin").write_bytes(golden_data)
    files += ["data/model.bin", "data/golden.bin"]

    plan = [("CMakeLists.txt.j2", "CMakeLists.txt"), ("README.md.j2", "README.md"),
            ("main.c.j2", "src/main.c"), ("model.h.j2", "src/model.h"),
            ("model_plan.c.j2", "src/model_plan.c"), ("platform.h.j2", "src/platform.h"),
            ("platform_host.c.j2", "src/platform_host.c")]
    if not host:
        plan += [("startup.c.j2", "src/startup.c"), ("platform_arm.c.j2", "src/platform_arm.c"),
                 ("cmake/arm-none-eabi.cmake.j2", "cmake/arm-none-eabi.cmake"),
                 ("linker.ld.j2", f"linker/{board.name}.ld")]
    for template, target in plan:
        extra = {}
        if template == "linker.ld.j2":
            extra = dict(regions=board.memory, arena_bytes=arena.size,
                         place={h: board.region_for(h).name for h in
                                ("code", "rodata", "model", "data", "stack", "arena")})
        render(template, dest / target, **ctx, **extra)
        files.append(target)
    render("data.S.j2", dest / "src/model_data.S", **ctx, what="Model data", file="model.bin",
           size=len(model_data), section=".edgepack.model", arrays=blob.arrays)
    render("data.S.j2", dest / "src/golden_data.S", **ctx, what="Golden vectors",
           file="golden.bin", size=len(golden_data), section=".edgepack.golden",
           arrays=golden.arrays)
    files += ["src/model_data.S", "src/golden_data.S"]
    if ctx["npu"]:
        render("vela_model.c.j2", dest / "npu/vela_model.c", **ctx, vela_size=len(vela_model),
               vela_bytes=c_bytes(vela_model))
        render("vela_model.h.j2", dest / "npu/vela_model.h", **ctx, vela_size=len(vela_model))
        render("npu_README.md.j2", dest / "npu/README.md", **ctx, vela_size=len(vela_model))
        render("host_steps.c.j2", dest / "src/host_steps.c", **ctx)
        files.append("src/host_steps.c")
        (dest / "npu" / "model_vela.tflite").write_bytes(vela_model)
        files += ["npu/vela_model.c", "npu/vela_model.h", "npu/README.md", "npu/model_vela.tflite"]
    from . import flash

    for rel, text in flash.board_files(board, ctx["images"], model):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text, encoding="utf-8")
        files.append(rel)
    return sorted(files)
