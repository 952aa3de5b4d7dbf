"""Spec: edgepack.packing round-trips every index width 1-8 and matches the documented layout."""
import time

import numpy as np
import pytest

from edgepack.packing import pack_indices, row_stride, unpack_indices


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("rows,row_len", [(1, 1), (3, 7), (5, 31), (2, 33), (7, 127), (4, 1000), (1, 0)])
def test_roundtrip(bits, rows, row_len):
    rng = np.random.default_rng(bits * 1000 + rows * 10 + row_len)
    idx = rng.integers(0, 1 << bits, size=(rows, row_len), dtype=np.uint8)
    data = pack_indices(idx, bits)
    assert len(data) == rows * row_stride(row_len, bits)
    assert len(data) % 4 == 0
    np.testing.assert_array_equal(unpack_indices(data, bits, rows, row_len), idx)


@pytest.mark.parametrize("bits", range(1, 9))
def test_layout_lsb_first_rows_word_aligned(bits):
    rng = np.random.default_rng(bits)
    rows, row_len = 3, 11
    idx = rng.integers(0, 1 << bits, size=(rows, row_len), dtype=np.uint8)
    data = np.frombuffer(pack_indices(idx, bits), np.uint8)
    stride = row_stride(row_len, bits)
    assert stride == -(-row_len * bits // 32) * 4
    for r in range(rows):
        row = data[r * stride:(r + 1) * stride]
        as_int = int.from_bytes(row.tobytes(), "little")
        for j in range(row_len):
            assert (as_int >> (j * bits)) & ((1 << bits) - 1) == idx[r, j]
        assert as_int >> (row_len * bits) == 0  # padding bits are zero


def test_int4_nibble_order():
    assert pack_indices(np.array([[1, 2, 3]], np.uint8), 4) == bytes([0x21, 0x03, 0, 0])


def test_rejects_out_of_range():
    with pytest.raises(ValueError):
        pack_indices(np.array([[4]], np.uint8), 2)
    with pytest.raises(ValueError):
        row_stride(4, 9)


@pytest.mark.parametrize("bits", [3, 4])
def test_fast_for_ten_million(bits):
    idx = np.random.default_rng(0).integers(0, 1 << bits, size=(1000, 10000), dtype=np.uint8)
    t = time.perf_counter()
    data = pack_indices(idx, bits)
    back = unpack_indices(data, bits, 1000, 10000)
    assert time.perf_counter() - t < 10.0
    np.testing.assert_array_equal(back, idx)
