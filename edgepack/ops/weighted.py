"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: the operators with weights (dense or palette)
and per-channel requantization, and their kernels' scratch sizes.
"""

from __future__ import annotations

import numpy as np

from .. import quant
from ..plan import C, PlanStep, shape4, shape_init
from ..resources import FIRMWARE_DIR
from ..tflite import Model, Operator
from .views import transpose_conv_padding
from .base import (
    Lowering,
    dilation,
    register,
    scale_of,
    zero_point_of,
)


def _runtime_define(name: str) -> int:
    """An integer #define of the runtime's private header (firmware/src/ep_internal.h)."""
    import re

    text = (FIRMWARE_DIR / "src" / "ep_internal.h").read_text(encoding="utf-8")
    m = re.search(rf"#define\s+{name}\s+(\d+)", text)
    return int(m.group(1)) if m else 0


def palette_table_bytes() -> int:
    """The runtime's palette lookup-table scratch (EP_PALETTE_TABLE_BYTES in ep_internal.h)."""
    return _runtime_define("EP_PALETTE_TABLE_BYTES")


def _palette_tile_rows(row_len: int, rows: int) -> int:
    """ep_palette_tile_rows: rows of palette weights CONV_2D decodes at once."""
    t = (_runtime_define("EP_PALETTE_TILE_BYTES") // max(row_len, 1)) & ~3
    return min(max(t, 4), _runtime_define("EP_CH_TILE"), rows)


def conv2d_scratch_bytes(patch_len: int, out_channels: int, palette: bool) -> int:
    """ep_conv2d_s8_get_buffer_size: EP_CH_TILE int32 per-channel sums, a patch area of
    4 * patch_len + 32 bytes (four int8 or two int16 im2col patches), and for palette weights the
    codebook table and one tile of decoded rows.
    tests/test_scratch_sizes.py checks this against the compiled C function."""
    size = 4 * _runtime_define("EP_CH_TILE") + ((4 * patch_len + 15) & ~15) + 16
    if palette:
        size += _runtime_define("EP_CODEBOOK_TABLE_BYTES") + \
            ((_palette_tile_rows(patch_len, out_channels) * patch_len + 3) & ~3)
    return size


def fully_connected_scratch_bytes(input_depth: int, palette: bool) -> int:
    """ep_fully_connected_s8_get_buffer_size: the palette table, then an int16 input row of
    input_depth + 1 elements (a zero pad for pair reads) rounded up to 4 bytes."""
    return (palette_table_bytes() if palette else 0) + (((input_depth + 1) * 2 + 3) & ~3)


def depthwise_conv2d_scratch_bytes(filter_elements: int, out_channels: int, palette: bool) -> int:
    """ep_depthwise_conv2d_s8_get_buffer_size: one int32 per output channel, and for palette
    weights the codebook table and the whole filter (KH * KW * C * M) decoded to int8."""
    size = 4 * out_channels
    if palette:
        size += _runtime_define("EP_CODEBOOK_TABLE_BYTES") + ((filter_elements + 3) & ~3)
    return size


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


def window_params(lw: Lowering, op: Operator, step: PlanStep, out_channels: int, weight_rows: int,
                   extra: dict) -> dict:
    """What CONV_2D and DEPTHWISE_CONV_2D share: shapes, stride, dilation, SAME padding,
    offsets, the activation range, and the requantization, weight and bias arrays."""
    inp, w, out = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    o = op.options
    _, ih, iw, _ = shape4(inp.shape)
    _, kh, kw, _ = w.shape
    _, oh, ow, _ = shape4(out.shape)
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = dilation(o)
    same = o.get("padding") == "SAME"
    lo, hi = quant.activation_range(op.fused_activation, scale_of(out), zero_point_of(out))
    return {
        "input": shape_init(inp.shape), "filter": shape_init(w.shape),
        "output": shape_init(out.shape), **extra, "stride_h": sh, "stride_w": sw,
        "dilation_h": dh, "dilation_w": dw,
        "pad_top": quant.same_padding(ih, oh, sh, kh, dh) if same else 0,
        "pad_left": quant.same_padding(iw, ow, sw, kw, dw) if same else 0,
        "input_offset": -zero_point_of(inp), "output_offset": zero_point_of(out), "act_min": lo, "act_max": hi,
        "requant": lw.requant(op, inp, w, out, out_channels),
        "weights": lw.weights(op, w, weight_rows, step),
        "bias": lw.bias(op, out_channels)}


def lower_conv_2d(lw: Lowering, op: Operator) -> PlanStep:
    oc, kh, kw, wc = lw.t(op.inputs[1]).shape
    step = lw.step(op, "EP_KERNEL_CONV2D", "ep_conv2d_params", [op.inputs[0]])
    step.params = window_params(lw, op, step, oc, oc, {})
    step.scratch_bytes = conv2d_scratch_bytes(kh * kw * wc, oc,
                                              step.weights_form.startswith("palette"))
    return step


def lower_depthwise_conv_2d(lw: Lowering, op: Operator) -> PlanStep:
    ic = shape4(lw.t(op.inputs[0]).shape)[3]
    oc = lw.t(op.inputs[1]).shape[3]
    step = lw.step(op, "EP_KERNEL_DEPTHWISE_CONV2D", "ep_depthwise_conv2d_params",
                      [op.inputs[0]])
    # depthwise weights [1, KH, KW, C*M] are one packed row
    step.params = window_params(lw, op, step, oc, 1, {"depth_multiplier": oc // ic})
    _, kh, kw, _ = lw.t(op.inputs[1]).shape
    step.scratch_bytes = depthwise_conv2d_scratch_bytes(kh * kw * oc, oc,
                                                        step.weights_form.startswith("palette"))
    return step


def lower_fully_connected(lw: Lowering, op: Operator) -> PlanStep:
    inp, w, out = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    out_depth, in_depth = w.shape
    step = lw.step(op, "EP_KERNEL_FULLY_CONNECTED", "ep_fully_connected_params",
                      [op.inputs[0]])
    lo, hi = quant.activation_range(op.fused_activation, scale_of(out), zero_point_of(out))
    wq = w.quantization
    step.params = {
        "batches": inp.size // in_depth, "input_depth": in_depth, "output_depth": out_depth,
        "input_offset": -zero_point_of(inp),
        "weights_offset": -int(wq.zero_point[0]) if wq is not None and not wq.per_channel else 0,
        "output_offset": zero_point_of(out), "act_min": lo, "act_max": hi,
        "requant": lw.requant(op, inp, w, out, out_depth),
        "weights": lw.weights(op, w, out_depth, step),
        "bias": lw.bias(op, out_depth),
        # each row's weight sum, computed here once: the Helium kernel folds input_offset * sum
        # into its accumulators instead of summing the weights on every call
        "weight_sums": C(lw.blob.add(f"ep_op{op.index:03d}_weight_sums",
                                     np.asarray(w.data, np.int64).reshape(out_depth, -1).sum(axis=1)
                                     .astype(np.int32), "int32_t", "weight sums"))}
    step.scratch_bytes = fully_connected_scratch_bytes(
        in_depth, step.weights_form.startswith("palette"))
    return step


register("CONV_2D", lower_conv_2d, _check_weighted)
register("DEPTHWISE_CONV_2D", lower_depthwise_conv_2d, _check_weighted)
register("FULLY_CONNECTED", lower_fully_connected, _check_weighted)


def _check_transpose_conv(model: Model, op: Operator) -> str | None:
    """TRANSPOSE_CONV's inputs: output shape (constant), weights [O, KH, KW, I], input, bias."""
    if len(op.inputs) < 3 or min(op.inputs[:3]) < 0:
        return "needs output shape, weights and input"
    shape_t, w, inp = (model.tensors[i] for i in op.inputs[:3])
    out = model.tensors[op.outputs[0]]
    if inp.dtype != "int8" or inp.quantization is None or inp.quantization.per_channel:
        return f"input '{inp.name}' is not per-tensor int8"
    if not shape_t.is_constant or [int(v) for v in np.asarray(shape_t.data).reshape(-1)] != list(out.shape):
        return "the output shape must be constant and the output tensor's"
    if not w.is_constant or w.dtype != "int8" or w.quantization is None:
        return "weights must be constant quantized int8"
    if len(w.shape) != 4 or len(inp.shape) != 4 or len(out.shape) != 4:
        return "input, weights and output must be 4-D (NHWC, OHWI)"
    if np.any(w.quantization.zero_point != 0):
        return "weights with non-zero zero points are not supported (TFLM int8 is symmetric)"
    if w.shape[3] != inp.shape[3] or w.shape[0] != out.shape[3] or inp.shape[0] != out.shape[0]:
        return f"weights {list(w.shape)} do not connect input {list(inp.shape)} to output {list(out.shape)}"
    if len(op.inputs) > 3 and op.inputs[3] >= 0:
        b = model.tensors[op.inputs[3]]
        if not b.is_constant or b.dtype != "int32" or b.size != out.shape[3]:
            return "the bias must be constant int32, one value per output channel"
    if op.options.get("padding", "SAME") not in ("SAME", "VALID"):
        return f"padding {op.options.get('padding')}"
    return None


def lower_transpose_conv(lw: Lowering, op: Operator) -> PlanStep:
    w, inp, out = lw.t(op.inputs[1]), lw.t(op.inputs[2]), lw.t(op.outputs[0])
    step = lw.step(op, "EP_KERNEL_TRANSPOSE_CONV", "ep_transpose_conv_params", [op.inputs[2]])
    sh, sw = int(op.options.get("stride_h", 1)), int(op.options.get("stride_w", 1))
    padding = op.options.get("padding", "SAME")
    lo, hi = quant.activation_range(op.fused_activation, scale_of(out), zero_point_of(out))
    bias = _bias(lw, op)
    step.params = {
        "input": shape_init(inp.shape), "filter": shape_init(w.shape), "output": shape_init(out.shape),
        "stride_h": sh, "stride_w": sw,
        "pad_top": transpose_conv_padding(padding, out.shape[1], w.shape[1], sh),
        "pad_left": transpose_conv_padding(padding, out.shape[2], w.shape[2], sw),
        "input_offset": -zero_point_of(inp), "output_offset": zero_point_of(out), "act_min": lo, "act_max": hi,
        "requant": lw.requant(op, inp, w, out, out.shape[3]), "weights": lw.weights(op, w, w.shape[0], step),
        "bias": bias}
    return step


def _bias(lw: Lowering, op: Operator) -> C:
    """TRANSPOSE_CONV's bias is its fourth input (CONV_2D's third)."""
    if len(op.inputs) < 4 or op.inputs[3] < 0:
        return C("NULL")
    data = np.asarray(lw.t(op.inputs[3]).data, np.int32).reshape(-1)
    return C(lw.blob.add(f"ep_op{op.index:03d}_bias", data, "int32_t", "bias"))


register("TRANSPOSE_CONV", lower_transpose_conv, _check_transpose_conv, data_inputs=0)
