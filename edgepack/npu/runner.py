"""Entry points: run Vela's raw output (npz) or Vela's tflite output in the functional NPU model."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from edgepack.errors import ModelError

from .machine import run_command_stream

_NP_DTYPES = {1: np.int8, 2: np.int16, 4: np.int32}


def _batched(inputs: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]]) -> tuple[list[np.ndarray], int, bool]:
    """Accept either single inferences (shape == model shape) or a leading batch dimension."""
    out, batch, batched = [], None, False
    for x, shape in zip(inputs, shapes):
        x = np.asarray(x)
        n = int(np.prod(shape))
        if x.size == n and (x.ndim == len(shape) or x.ndim <= 1 or x.shape == tuple(shape)):
            b, xb = 1, x.reshape(1, n)
        elif x.size % n == 0 and x.shape[0] * n == x.size:
            b, xb, batched = x.shape[0], x.reshape(x.shape[0], n), True
        else:
            raise ModelError(f"input of shape {x.shape} does not fit the model input {tuple(shape)}")
        if batch not in (None, b):
            raise ModelError("inputs have different batch sizes")
        batch = b
        out.append(xb)
    return out, batch or 1, batched


def _to_bytes(x: np.ndarray) -> np.ndarray:
    """(B, n) array -> (B, n*itemsize) little-endian bytes."""
    x = np.ascontiguousarray(x.astype(x.dtype.newbyteorder("<"), copy=False))
    return x.view(np.uint8).reshape(x.shape[0], -1)


def run_vela_raw(npz, inputs: Sequence[np.ndarray], trace=None) -> list[np.ndarray]:
    """Run Vela's `--output-format raw` output (the `<name>_vela.npz` path or a loaded NpzFile) on
    `inputs` (one array per model input, in order; either the model's input shape or with a leading
    batch dimension B).  Returns one array per output (int8/int16/int32 as the output's element size),
    of the output's shape, with the leading batch dimension if the inputs had one."""
    d = np.load(npz, allow_pickle=True) if isinstance(npz, (str, os.PathLike)) else npz
    cmd = d["cmd_data"].tobytes()  # never bytes()/item(): they drop trailing zero bytes
    weights = np.frombuffer(d["weight_data"].tobytes(), dtype=np.uint8)[None, :]
    in_shapes = [tuple(int(v) for v in s) for s in d["input_shape"]]
    xs, batch, batched = _batched(inputs, in_shapes)
    regions = {int(d["weight_region"]): weights}
    regions[int(d["scratch_region"])] = np.zeros((batch, int(d["scratch_size"])), dtype=np.uint8)
    if int(d["scratch_fast_size"]) > 0:
        regions[int(d["scratch_fast_region"])] = np.zeros((batch, int(d["scratch_fast_size"])), dtype=np.uint8)
    for x, region, offset, es in zip(xs, d["input_region"], d["input_offset"], d["input_elem_size"]):
        mem = regions.get(int(region))
        if mem is None or mem.shape[0] == 1 and batch > 1 and int(region) == int(d["weight_region"]):
            raise ModelError(f"input in region {int(region)} which the raw output does not describe")
        b = _to_bytes(x.astype(_NP_DTYPES[int(es)]))
        mem[:, int(offset):int(offset) + b.shape[1]] = b
    run_command_stream(cmd, regions, batch, trace)
    outs = []
    for shape, region, offset, es in zip(d["output_shape"], d["output_region"], d["output_offset"],
                                         d["output_elem_size"]):
        shape = tuple(int(v) for v in shape)
        while len(shape) > 4 and shape[0] == 1:  # raw output shapes are 6-D with leading ones
            shape = shape[1:]
        n = int(np.prod(shape)) * int(es)
        raw = np.ascontiguousarray(regions[int(region)][:, int(offset):int(offset) + n])
        y = raw.view(np.dtype(_NP_DTYPES[int(es)]).newbyteorder("<")).reshape((batch,) + shape)
        outs.append(y if batched else y[0])
    return outs
