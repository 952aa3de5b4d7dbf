"""Spec: kernels check their own arguments. Starting from valid parameters, random fields are set
to hostile values (0, -1, huge, INT32_MIN/MAX, off-by-one); the caller's buffers are sized exactly
as the (mutated) parameters declare them (tensor sizes from ep_op_tensor_bytes, weight bytes from
data_bytes, requant arrays from count, codebook from num_codes, scratch as passed). A kernel must
then either succeed or return an error status, and never touch memory outside those buffers:
under test_runtime_sanitized.py ASan checks every read, here guard bytes check every write.
"""
from __future__ import annotations

import ctypes as C
import os

import numpy as np
import pytest

from tests import runtime_harness as H

SEED = int(os.environ.get("EP_TEST_SEED", "20261122"))
TRIALS = int(os.environ.get("EP_FUZZ_TRIALS", "400"))
LIMIT = 1 << 20
HOSTILE = [0, -1, 1, 2, 3, 7, 16, 255, 256, 257, 65535, 65536, 1 << 20, 1 << 30, (1 << 31) - 1, -(1 << 31), -128,
           127, 128, -129, 31, 32, -31, -32, 33]


@pytest.fixture(scope="module")
def rt():
    return H.Runtime()


def int_paths(st, prefix=()):
    """Paths to every int32 field of a ctypes struct (nested structs included, pointers excluded)."""
    out = []
    for name, typ in st._fields_:
        v = getattr(st, name)
        if isinstance(v, C.Structure):
            out += int_paths(v, prefix + (name,))
        elif typ is C.c_int32:
            out.append(prefix + (name,))
        elif isinstance(v, C.Array):
            out += [prefix + (name, i) for i in range(len(v))]
    return out


def set_path(st, path, value):
    obj = st
    for p in path[:-1]:
        obj = obj[p] if isinstance(p, int) else getattr(obj, p)
    last = path[-1]
    if isinstance(last, int):
        obj[last] = value
    else:
        setattr(obj, last, value)


def get_path(st, path):
    obj = st
    for p in path:
        obj = obj[p] if isinstance(p, int) else getattr(obj, p)
    return obj


def guarded(n):
    buf = np.full(max(n, 0) + 2 * H.GUARD, 0x5A, np.uint8)
    return buf, buf[H.GUARD:H.GUARD + max(n, 0)]


def intact(buf, n):
    return bool(np.all(buf[:H.GUARD] == 0x5A) and np.all(buf[H.GUARD + max(n, 0):] == 0x5A))


def valid_params(kind, rng):
    """A small valid parameter struct of `kind` with its weight/requant needs."""
    s = lambda *d: H.shape4(d)  # noqa: E731
    if kind == "conv2d":
        return H.Conv2DParams(s(1, 5, 6, 3), s(4, 3, 2, 3), s(1, 5, 6, 4), 1, 1, 1, 1, 1, 0, 5, -3, -128, 127)
    if kind == "depthwise_conv2d":
        return H.DepthwiseParams(s(1, 5, 6, 3), s(1, 3, 3, 6), s(1, 3, 4, 6), 2, 1, 1, 1, 1, 0, 0, 5, -3, -128, 127)
    if kind == "fully_connected":
        return H.FCParams(2, 37, 5, 5, 0, -3, -128, 127)
    if kind in ("max_pool2d", "avg_pool2d"):
        return H.PoolParams(s(1, 6, 6, 3), s(1, 3, 3, 3), 2, 2, 2, 2, 0, 0, -128, 127)
    if kind == "pad":
        return H.PadParams(s(1, 2, 3, 4), s(2, 4, 5, 6), (C.c_int32 * 4)(0, 1, 1, 1), 3)
    if kind == "add":
        return H.AddParams(s(1, 2, 3, 4), s(1, 1, 3, 1), s(1, 2, 3, 4), 3, -2, 1, 20, 1 << 30, -1, 1 << 30, -1,
                           1 << 30, -18, -128, 127)
    if kind == "mul":
        return H.MulParams(s(1, 2, 3, 4), s(1, 2, 1, 4), s(1, 2, 3, 4), 3, -2, 1, 1 << 30, -7, -128, 127)
    if kind == "mean":
        return H.MeanParams(s(1, 4, 5, 3), 0, 3, -2, 1 << 30, -4)
    if kind == "softmax":
        return H.SoftmaxParams(3, 10, 1 << 30, 20, -200)
    if kind == "quantize":
        return H.QuantizeParams(50, 3, -4, 1 << 30, -1)
    raise KeyError(kind)


WEIGHTED = ("conv2d", "depthwise_conv2d", "fully_connected")
KINDS = WEIGHTED + ("max_pool2d", "avg_pool2d", "pad", "add", "mul", "mean", "softmax", "quantize")


def weight_shape(kind, p):
    if kind == "fully_connected":
        return p.output_depth, p.input_depth
    f = p.filter
    return (f.n, f.h * f.w * f.c) if kind == "conv2d" else (1, f.h * f.w * f.c)


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_parameters_never_escape_buffers(rt, kind):
    errors, oks = 0, 0
    for trial in range(TRIALS):
        rng = np.random.default_rng([SEED, KINDS.index(kind), trial])
        p = valid_params(kind, rng)
        keep = []
        if kind in WEIGHTED:
            rows, row_len = weight_shape(kind, p)
            palette = bool(rng.integers(0, 2))
            bits = int(rng.integers(1, 9))
            if palette:
                nbytes = rows * ((row_len * bits + 31) // 32) * 4
                w = H.WeightsS(1, bits, int(rng.integers(1, 1 << bits) + 1), nbytes)
            else:
                w = H.WeightsS(0, 8, 0, rows * row_len)
            p.weights = w
            nch = p.output.c if kind != "fully_connected" else p.output_depth
            p.requant.count = nch if rng.integers(0, 2) else 1
        paths = [q for q in int_paths(p)]
        for _ in range(int(rng.integers(1, 4))):
            path = paths[int(rng.integers(0, len(paths)))]
            cur = int(get_path(p, path))
            v = int(rng.choice(HOSTILE)) if rng.integers(0, 2) else cur + int(rng.integers(-2, 3))
            set_path(p, path, max(-(1 << 31), min((1 << 31) - 1, v)))
        # Buffers exactly as the (mutated) parameters declare them.
        op = H.Op(H.KERNEL_IDS[kind], C.cast(C.byref(p), C.c_void_p), 2 if kind in ("add", "mul") else 1, None, 0)
        n_in = [rt.lib.ep_op_tensor_bytes(C.byref(op), i) for i in range(op.num_inputs)]
        n_out = rt.lib.ep_op_tensor_bytes(C.byref(op), -1)
        if any(n > LIMIT for n in n_in + [n_out]):
            continue  # a caller cannot own such buffers here; not a kernel question
        ins = [rng.integers(-128, 128, size=max(n, 0)).astype(np.int8) for n in n_in]
        obuf, out = guarded(n_out)
        args = [C.byref(p)] + [H._ptr(x) if x.size else None for x in ins] + [H._ptr(out) if n_out > 0 else None]
        if kind in WEIGHTED:
            wd = p.weights
            if not 0 <= wd.data_bytes <= LIMIT or not -1 <= p.requant.count <= 4096:
                continue
            data = rng.integers(0, 256, size=max(wd.data_bytes, 1)).astype(np.uint8)
            cb = rng.integers(-128, 128, size=max(1, min(max(wd.num_codes, 1), 256))).astype(np.int8)
            if wd.num_codes > 256:
                cb = np.zeros(1, np.int8)
            cnt = max(p.requant.count, 1)
            m = rng.integers(0, 1 << 31, size=cnt).astype(np.int32)
            sh = rng.integers(-40, 40, size=cnt).astype(np.int32)
            nch = p.output.c if kind != "fully_connected" else p.output_depth
            if nch > LIMIT:
                continue
            bias = rng.integers(-(1 << 20), 1 << 20, size=max(nch, 1)).astype(np.int32)
            keep += [data, cb, m, sh, bias]
            wd.data, wd.codebook = H._ptr(data), H._ptr(cb)
            p.requant.multiplier, p.requant.shift = H._ptr(m), H._ptr(sh)
            p.bias = H._ptr(bias)
            need = getattr(rt.lib, f"ep_{kind}_s8_get_buffer_size")(C.byref(p))
            n_scr = int(need) if need >= 0 else 64
            if rng.integers(0, 4) == 0:
                n_scr = max(0, n_scr - int(rng.integers(1, 64)))
            if n_scr > LIMIT:
                continue
            sbuf, scr = guarded(n_scr + (-n_scr) % 4)
            args += [H._ptr(scr) if n_scr else None, n_scr]
            st = getattr(rt.lib, f"ep_{kind}_s8")(*args)
            assert intact(sbuf, n_scr + (-n_scr) % 4), f"{kind} trial {trial}: scratch overrun"
        else:
            st = getattr(rt.lib, f"ep_{kind}_s8")(*args)
        assert intact(obuf, n_out), f"{kind} trial {trial}: wrote outside the output"
        assert st in (0, -1, -2, -3, -4), f"{kind} trial {trial}: status {st}"
        oks += st == 0
        errors += st != 0
    assert errors > 0 and oks > 0, (errors, oks)
