"""Palette index packing shared by the fold stage (Python) and the C runtime (firmware/).

The format (also in firmware/README.md, "Packed index format"):

* A weight tensor in TFLite element order ([O,KH,KW,I] conv, [O,I] fully connected,
  [1,KH,KW,C*M] depthwise) is split into rows along dimension 0: one row per output channel
  for conv / fully connected, a single row for depthwise.
* Each row's indices form a little-endian bit stream: element j occupies bits
  [j*b, (j+1)*b), bit 0 being the least significant bit of the row's first byte
  (LSB-first; for b = 4 element 0 is the low nibble of byte 0, as in CMSIS-NN int4).
* Each row starts on a 4-byte boundary: row stride = ceil(row_len * b / 32) * 4 bytes.
  Padding bits are zero.

Vectorised with numpy: packing 10^7 indices takes well under a second.
"""

from __future__ import annotations

import numpy as np

__all__ = ["row_stride", "pack_indices", "unpack_indices", "packed_size"]


def _check_bits(bits: int) -> int:
    bits = int(bits)
    if not 1 <= bits <= 8:
        raise ValueError(f"index width must be 1..8 bits, got {bits}")
    return bits


def row_stride(row_len: int, bits: int) -> int:
    """Bytes between the starts of two consecutive packed rows (a multiple of 4)."""
    bits = _check_bits(bits)
    if row_len < 0:
        raise ValueError("row_len must be >= 0")
    return ((int(row_len) * bits + 31) // 32) * 4


def packed_size(rows: int, row_len: int, bits: int) -> int:
    """Total bytes of a packed tensor of `rows` rows."""
    return int(rows) * row_stride(row_len, bits)


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """Pack uint8 indices of shape [rows, row_len] into the runtime's bit format."""
    bits = _check_bits(bits)
    idx = np.asarray(indices)
    if idx.ndim != 2:
        raise ValueError(f"indices must be 2-D [rows, row_len], got shape {idx.shape}")
    if idx.size and (idx.min() < 0 or int(idx.max()) >= (1 << bits)):
        raise ValueError(f"an index does not fit in {bits} bits")
    idx = idx.astype(np.uint8, copy=False)
    rows, row_len = idx.shape
    stride = row_stride(row_len, bits)
    if rows == 0 or stride == 0:
        return b""
    if bits == 8:
        out = np.zeros((rows, stride), np.uint8)
        out[:, :row_len] = idx
        return out.tobytes()
    if bits == 4:
        out = np.zeros((rows, stride), np.uint8)
        lo = idx[:, 0::2]
        hi = idx[:, 1::2]
        packed = lo.copy()
        packed[:, : hi.shape[1]] |= hi << 4
        out[:, : packed.shape[1]] = packed
        return out.tobytes()
    # General path: explode to bits (LSB first), pad each row, repack little-endian.
    shifts = np.arange(bits, dtype=np.uint8)
    bitplane = ((idx[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(rows, row_len * bits)
    padded = np.zeros((rows, stride * 8), np.uint8)
    padded[:, : row_len * bits] = bitplane
    return np.packbits(padded, axis=1, bitorder="little").tobytes()


def unpack_indices(data, bits: int, rows: int, row_len: int) -> np.ndarray:
    """Inverse of pack_indices: uint8 array of shape [rows, row_len]."""
    bits = _check_bits(bits)
    stride = row_stride(row_len, bits)
    buf = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.astype(np.uint8, copy=False).ravel()
    need = rows * stride
    if buf.size < need:
        raise ValueError(f"packed data has {buf.size} bytes, {need} needed")
    if rows == 0 or row_len == 0:
        return np.zeros((rows, row_len), np.uint8)
    mat = buf[:need].reshape(rows, stride)
    if bits == 8:
        return mat[:, :row_len].copy()
    if bits == 4:
        out = np.empty((rows, stride * 2), np.uint8)
        out[:, 0::2] = mat & 0x0F
        out[:, 1::2] = mat >> 4
        return out[:, :row_len].copy()
    bitplane = np.unpackbits(mat, axis=1, bitorder="little")[:, : row_len * bits]
    bitplane = bitplane.reshape(rows, row_len, bits)
    weights = (1 << np.arange(bits, dtype=np.uint16)).astype(np.uint16)
    return (bitplane.astype(np.uint16) @ weights).astype(np.uint8)
