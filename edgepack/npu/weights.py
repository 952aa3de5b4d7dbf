"""Weight and scale/bias streams of Ethos-U55/U65 operations.

Weights: Vela compresses them with its own codec (`ethosu.mlw_codec.decode` inverts it) after
reordering them into the NPU's traversal order.  `weight_order` reproduces that order
(regor/architecture/ethosu55/ethos_u55_weight_encoder.cpp, EthosUWeightOrdering::GetNext, one
stream: cores = 1) so that the decoded stream can be scattered back into OHWI weights.
Rule: rules.WEIGHT_STREAM_ORDER.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from ethosu import mlw_codec

from edgepack.errors import ModelError

DEPTH_FIRST, PART_KERNEL, DEPTHWISE = "depth_first", "part_kernel", "depthwise"


@lru_cache(maxsize=256)
def weight_order(ofm_depth: int, ifm_depth: int, kh: int, kw: int, dil_y: int, dil_x: int,
                 ofm_block_depth: int, traversal: str, ofm_ublock_depth: int, ifm_ublock_depth: int,
                 ifm_bits: int = 8) -> np.ndarray:
    """Flat OHWI index (into an array of shape (ofm_depth, kh, kw, ifm_depth)) of every value of the
    decoded stream, -1 where the stream holds padding.  Depthwise weights are (C, kh, kw, 1)."""
    is_pk = traversal == PART_KERNEL
    is_dw = traversal == DEPTHWISE
    ifm_block_depth = 16 if (is_pk or ifm_bits == 16) else 32
    decomp_x, decomp_y = 8 // dil_x, 8 // dil_y
    sub_round = 4 if is_dw else ((2 if ifm_bits == 16 else 4) if is_pk else 1)
    out: list[int] = []
    app = out.append
    for ofm_block_z in range(0, ofm_depth, ofm_block_depth):
        clipped_ofm = min(ofm_block_depth, ofm_depth - ofm_block_z)
        for ifm_block_z in range(0, 1 if is_dw else ifm_depth, ifm_block_depth):
            if is_dw:
                clipped_ifm = ifm_ublock_depth
            else:
                clipped_ifm = min(ifm_block_depth, ifm_depth - ifm_block_z) if is_pk else ifm_block_depth
            for sky in range(0, kh, decomp_y):
                sub_h = min(kh - sky, decomp_y)
                for skx in range(0, kw, decomp_x):
                    sub_w = min(kw - skx, decomp_x)
                    elems = sub_w * sub_h
                    elems = -(-elems // sub_round) * sub_round
                    outer = clipped_ifm if is_pk else 1
                    inner = 1 if is_pk else clipped_ifm
                    for ifm_ub_outer in range(0, outer, ifm_ublock_depth):
                        for ofm_ub in range(0, clipped_ofm, ofm_ublock_depth):
                            for ke in range(elems):
                                kx, ky = ke % sub_w, ke // sub_w
                                wx, wy = skx + kx, sky + ky
                                for ifm_ub_inner in range(0, inner, ifm_ublock_depth):
                                    ifm_ub = ifm_ub_inner + ifm_ub_outer
                                    for ofm_ub_z in range(ofm_ublock_depth):
                                        o = ofm_block_z + ofm_ub + ofm_ub_z
                                        ok = o < ofm_depth and ky < sub_h
                                        base = ((o * kh + wy) * kw + wx) * ifm_depth
                                        for ifm_ub_z in range(1 if is_dw else ifm_ublock_depth):
                                            i = ifm_block_z + ifm_ub + ifm_ub_z
                                            app(base + i if (ok and i < ifm_depth) else -1)
    return np.asarray(out, dtype=np.int64)


def decode_weights(stream: bytes, ofm_depth: int, ifm_depth: int, kh: int, kw: int, dil_y: int, dil_x: int,
                   ofm_block_depth: int, traversal: str, ofm_ublock_depth: int, ifm_ublock_depth: int,
                   offset: int = 0) -> np.ndarray:
    """Decode one operation's weight stream into int64 weights of shape (ofm_depth, kh, kw, ifm_depth)
    (depthwise: ifm_depth = 1).  `offset` is only used in error messages."""
    order = weight_order(ofm_depth, ifm_depth, kh, kw, dil_y, dil_x, ofm_block_depth, traversal,
                         ofm_ublock_depth, ifm_ublock_depth)
    try:
        values = mlw_codec.decode(bytearray(stream))
    except Exception as e:  # the codec raises on corrupt streams
        raise ModelError(f"command stream offset 0x{offset:06x}: weight stream does not decode ({e})") from None
    if len(values) < len(order):
        raise ModelError(f"command stream offset 0x{offset:06x}: weight stream holds {len(values)} values, "
                         f"the operation needs {len(order)}")
    values = np.asarray(values[:len(order)], dtype=np.int64)
    w = np.zeros(ofm_depth * kh * kw * ifm_depth, dtype=np.int64)
    keep = order >= 0
    w[order[keep]] = values[keep]
    return w.reshape(ofm_depth, kh, kw, ifm_depth)


def decode_scales(data: bytes, channels: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale/bias stream: 10 bytes per OFM channel, little-endian 40-bit signed bias, 32-bit scale,
    6-bit shift (regor ethos_u55_weight_encoder.cpp EncodeBias).  Returns int64 (bias, scale, shift)."""
    if len(data) < 10 * channels:
        raise ModelError(f"command stream offset 0x{offset:06x}: scale stream has {len(data)} bytes, "
                         f"{channels} channels need {10 * channels}")
    a = np.frombuffer(bytes(data[:10 * channels]), dtype=np.uint8).reshape(channels, 10).astype(np.int64)
    bias = sum(a[:, k] << (8 * k) for k in range(5))
    bias = np.where(bias >= 1 << 39, bias - (1 << 40), bias)
    scale = sum(a[:, 5 + k] << (8 * k) for k in range(4))
    shift = a[:, 9] & 0x3F
    return bias, scale, shift
