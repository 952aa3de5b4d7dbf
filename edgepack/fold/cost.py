"""What a weight tensor costs on the target, in bytes: the fold's cost model.

Data (the board's `[weights]` table, `boards.WeightEncoding`) plus arithmetic; no compiler code
runs here. Three stores:

* "npu-palette" (Vela's Ethos-U55/U65 encoder): weights are reordered into blocks whose gaps are
  filled with zeros; a stream with at most `palette_steps[-1]` distinct values (padding zeros
  included) is coded as ranks by frequency, each either Golomb-Rice coded or raw at
  ceil(log2 P) bits, whichever is shorter, so the cost steps at 2/4/8/16/32 symbols; more values
  are coded raw (about 8 bits). Zero runs: once zeros outnumber the commonest other value
  `zero_run_ratio` times, zeros cost about a bit each and the palette holds the rest.
* "npu-lut" (U85): a lookup table at the steps (2 or 4-bit indices), else 8 bits.
* "packed" (edgepack's CPU runtime): an int8 codebook + rows of indices of ceil(log2 K) bits,
  each row aligned; a depthwise tensor is one row.

Weights come in the model's layout: CONV_2D [O, H, W, I], DEPTHWISE_CONV_2D [1, H, W, C],
FULLY_CONNECTED [O, I].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..boards import WeightEncoding

DENSE_BITS = 8  # a value outside any palette: int8 as is
GOLOMB_RICE_MAX_K = 5


def _round_up(n: int, m: int) -> int:
    return -(-int(n) // max(1, int(m))) * max(1, int(m))


@dataclass
class Layout:
    """How a weight tensor sits in the NPU's weight stream."""

    elements: int  # the tensor's own weights
    padded: int  # elements after the encoder's block padding (>= elements)
    channels: int  # output channels (bias + scale entries)
    traversal: str  # "depth-first", "part-kernel-first" or "depthwise"

    @property
    def padding(self) -> int:
        return self.padded - self.elements


def npu_layout(op_type: str, shape, enc: WeightEncoding) -> Layout:
    """Block padding of the NPU encoder for one weight tensor (see the module doc)."""
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape)) if shape else 1
    if op_type == "DEPTHWISE_CONV_2D" and len(shape) == 4:
        kernel, channels = shape[1] * shape[2], shape[3]
        padded = _round_up(channels, enc.ofm_depth_multiple) * _round_up(
            kernel, enc.kernel_elements_multiple)
        return Layout(n, padded, channels, "depthwise")
    if len(shape) == 4:
        channels, kernel, depth = shape[0], shape[1] * shape[2], shape[3]
    elif len(shape) == 2:
        channels, kernel, depth = shape[0], 1, shape[1]
    else:
        return Layout(n, n, shape[0] if shape else 1, "depth-first")
    ofm = _round_up(channels, enc.ofm_depth_multiple)
    # the encoder takes whichever traversal wastes fewer MACs (part-kernel-first always for
    # shallow inputs)
    depth_first_use = depth / _round_up(depth, enc.ifm_depth_multiple)
    part_kernel_use = (depth / _round_up(depth, enc.part_kernel_ifm_depth_multiple)) * (
        kernel / _round_up(kernel, enc.kernel_elements_multiple))
    if kernel > 1 and (part_kernel_use >= depth_first_use or depth <= 8):
        padded = ofm * _round_up(kernel, enc.kernel_elements_multiple) * _round_up(
            depth, enc.part_kernel_ifm_depth_multiple)
        return Layout(n, padded, channels, "part-kernel-first")
    return Layout(n, ofm * kernel * _round_up(depth, enc.ifm_depth_multiple), channels,
                  "depth-first")


def pads_with_zeros(op_type: str, shape, enc: WeightEncoding) -> bool:
    """Whether the target fills this tensor's stream with zeros (0 then takes a codebook slot)."""
    if enc.store == "packed":
        return False
    return npu_layout(op_type, shape, enc).padding > 0


def _golomb_rice_bits(symbols: np.ndarray, counts: np.ndarray) -> float:
    """Bits of non-negative `symbols` (with `counts`) Golomb-Rice coded with the best parameter."""
    return min(float(np.sum(counts * ((symbols >> k) + 1 + k)))
               for k in range(GOLOMB_RICE_MAX_K + 1))


def _palette_bits(counts: np.ndarray) -> float:
    """Bits of a palette-coded stream with these symbol counts: ranks by frequency, each
    Golomb-Rice coded or raw at ceil(log2 P) bits, whichever is less."""
    counts = np.sort(counts[counts > 0])[::-1]
    p, total = counts.size, float(counts.sum())
    if p <= 1:
        return total  # a bit per weight: a safe upper bound
    return min(total * math.ceil(math.log2(p)), _golomb_rice_bits(np.arange(p), counts))


def _value_bits(values: np.ndarray, counts: np.ndarray) -> float:
    """Bits of a stream without a palette: each value Golomb-Rice coded by magnitude (sign
    folded in), at most 8 bits + 1 each."""
    v = values.astype(np.int64)
    folded = np.where(v >= 0, 2 * v, -2 * v - 1)
    return min(_golomb_rice_bits(folded, counts), float(counts.sum()) * (DENSE_BITS + 1))


def encoded_bytes(op_type: str, values: np.ndarray, enc: WeightEncoding) -> int:
    """Bytes the target stores for int8 weights `values` (the model's layout and shape)."""
    values = np.asarray(values)
    shape = values.shape
    if enc.store == "packed":
        k = int(np.unique(values).size)
        return packed_bytes(op_type, shape, k, enc)
    lay = npu_layout(op_type, shape, enc)
    uniq, counts = np.unique(values.astype(np.int64), return_counts=True)
    counts = counts.astype(np.float64)
    zero = np.flatnonzero(uniq == 0)
    if lay.padding:
        if zero.size:
            counts[zero[0]] += lay.padding
        else:
            uniq, counts = np.append(uniq, 0), np.append(counts, float(lay.padding))
    symbols = int(uniq.size)
    if enc.store == "npu-lut":
        fits = [s for s in enc.palette_steps if symbols <= s]
        bits = math.ceil(math.log2(fits[0])) if fits else DENSE_BITS
        return _stream_bytes(lay.padded * bits, enc)
    is_zero = uniq == 0
    zeros = float(counts[is_zero].sum())
    others, other_values = counts[~is_zero], uniq[~is_zero]

    def coded(vals, cnts):
        top = enc.palette_steps[-1]
        if vals.size <= top:
            return _palette_bits(cnts)
        # more values than a palette holds: the commonest in the palette, the rest escaped
        # and stored at 8 bits; or every value Golomb-Rice coded by magnitude
        order = np.sort(cnts)[::-1]
        escaped = float(order[top:].sum())
        return min(_palette_bits(order[:top]) + escaped * (math.log2(top) + DENSE_BITS),
                   _value_bits(vals, cnts))

    if enc.zero_run_ratio and others.size and zeros > enc.zero_run_ratio * others.max():
        # zero runs: the other values from their own palette, zeros as runs between them (about
        # one run per other value, each run length Golomb-Rice coded)
        runs = max(1.0, min(zeros, float(others.sum()) + 1))
        mean_run = zeros / runs
        bits = coded(other_values, others) + runs * (2 + max(0.0, math.log2(mean_run)))
    else:
        bits = coded(uniq, counts)
    return _stream_bytes(bits, enc)


def _stream_bytes(bits: float, enc: WeightEncoding) -> int:
    return _round_up(math.ceil(bits / 8) + enc.stream_header_bytes, enc.stream_align_bytes)


def packed_bytes(op_type: str, shape, codebook_size: int, enc: WeightEncoding) -> int:
    """edgepack's packed palette form: codebook + rows of indices (see `packing.packed_size`)."""
    n = int(np.prod(shape)) if len(shape) else 1
    widths = [max(1, math.ceil(math.log2(s))) for s in enc.palette_steps]
    need = max(1, math.ceil(math.log2(max(codebook_size, 2))))
    bits = min((w for w in widths if w >= need), default=8)
    rows = 1 if op_type == "DEPTHWISE_CONV_2D" or not len(shape) else int(shape[0])
    align = max(1, enc.row_align_bytes)
    row_bytes = _round_up(math.ceil((n // max(rows, 1)) * bits / 8), align)
    return codebook_size + rows * row_bytes


def dense_bytes(op_type: str, values: np.ndarray, enc: WeightEncoding) -> int:
    """What the tensor as given costs: int8 on the CPU, its own encoding on the NPU."""
    if enc.store == "packed":
        return int(np.asarray(values).size)
    return encoded_bytes(op_type, values, enc)


def symbol_steps(enc: WeightEncoding) -> list[int]:
    """The codebook sizes worth folding to (cost steps), smallest first."""
    return list(enc.palette_steps)
