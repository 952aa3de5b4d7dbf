"""Spec: the kernel scratch codegen reserves is exactly what the runtime asks for.

codegen mirrors the runtime's `*_get_buffer_size` formulas in Python (the arena is planned
offline). Here random CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED operators, dense and palette
with every index width, are lowered by codegen; their generated parameter structs and model
arrays are compiled into one host C program with the runtime, which prints what each
`ep_*_get_buffer_size` returns. Any drift between the C formulas and the Python mirror (a new
scratch region, a changed table size) fails here rather than on a board.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack import codegen
from edgepack import plan
from edgepack.resources import FIRMWARE_DIR
from edgepack.ops import weighted
from edgepack.quant import conv_output_size
from edgepack.tflite import read_model
from tests.opmodels import T, single_op_model

OP = tfl.BuiltinOperator
SEED = 20261122
CONFIGS = 60  # per kernel
KERNELS = {"CONV_2D": "ep_conv2d_s8_get_buffer_size", "FULLY_CONNECTED":
           "ep_fully_connected_s8_get_buffer_size",
           "DEPTHWISE_CONV_2D": "ep_depthwise_conv2d_s8_get_buffer_size"}
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O0"]


def random_operator(rng, opcode: str, palette: bool):
    """A one-operator model of random shape, and its weights' palette form (or None)."""
    pal = None

    def weights(shape):
        nonlocal pal
        w = rng.integers(-127, 128, size=shape).astype(np.int8)
        if palette:
            pal = as_palette(rng, w)
            w = pal.codebook[pal.indices]
        return w

    n = int(rng.integers(1, 3))
    if opcode == "FULLY_CONNECTED":
        din, dout = int(rng.integers(1, 700)), int(rng.integers(1, 40))
        w = weights((dout, din))
        opts = tfl.FullyConnectedOptionsT()
        model = single_op_model(OP.FULLY_CONNECTED, [T([n, din], s=0.05, zp=1), T([dout, din], s=0.01, data=w)],
                                [T([n, dout], s=0.2, zp=-3)], "FullyConnectedOptions", opts, version=4)
        return model, pal
    h, wd = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    stride, padding = int(rng.integers(1, 3)), int(rng.choice([tfl.Padding.SAME, tfl.Padding.VALID]))
    if padding == tfl.Padding.VALID:
        h, wd = max(h, kh), max(wd, kw)
    pad = "SAME" if padding == tfl.Padding.SAME else "VALID"
    oh, ow = conv_output_size(pad, h, kh, stride), conv_output_size(pad, wd, kw, stride)
    cin = int(rng.integers(1, 40))
    if opcode == "CONV_2D":
        cout = int(rng.integers(1, 24))
        w = weights((cout, kh, kw, cin))
        opts = tfl.Conv2DOptionsT()
        code, name, version = OP.CONV_2D, "Conv2DOptions", 3
    else:
        mult = int(rng.integers(1, 3))
        cout = cin * mult
        w = weights((1, kh, kw, cout))
        opts = tfl.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = mult
        code, name, version = OP.DEPTHWISE_CONV_2D, "DepthwiseConv2DOptions", 3
    opts.padding, opts.strideH, opts.strideW = padding, stride, stride
    opts.dilationHFactor = opts.dilationWFactor = 1
    qdim = 0 if opcode == "CONV_2D" else 3
    model = single_op_model(code, [T([n, h, wd, cin], s=0.05, zp=2),
                                   T(list(w.shape), s=[0.01] * cout, data=w, qdim=qdim)],
                            [T([n, oh, ow, cout], s=0.3, zp=-1)], name, opts, version=version)
    return model, pal


def as_palette(rng, w: np.ndarray) -> plan.PaletteWeights:
    """A random codebook and indices of w's shape, with a random index width 1-8."""
    bits = int(rng.integers(1, 9))
    k = int(rng.integers(1, (1 << bits) + 1))
    codebook = rng.choice(np.arange(-127, 128), size=k, replace=False).astype(np.int8)
    idx = rng.integers(0, k, size=w.shape).astype(np.uint8)
    return plan.PaletteWeights(codebook, idx, bits)


def c_array(a: plan.DataArray, raw: bytes, prefix: str) -> str:
    dtype = {"int8_t": np.int8, "uint8_t": np.uint8, "int32_t": np.int32}[a.ctype]
    values = np.frombuffer(raw[a.offset:a.offset + a.size], dtype)
    return (f"static const {a.ctype} {a.symbol.replace('ep_op', prefix)}[] = "
            f"{{{', '.join(str(int(v)) for v in values)}}};")


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    """(opcode, codegen's scratch bytes, C source of the params) for every random operator."""
    root = tmp_path_factory.mktemp("scratch")
    out = []
    for kernel_id, opcode in enumerate(KERNELS):
        for i in range(CONFIGS):
            rng = np.random.default_rng([SEED, kernel_id, i])
            palette = i % 2 == 1
            model_bytes, pal = random_operator(rng, opcode, palette)
            path = root / f"{opcode}_{i}.tflite"
            path.write_bytes(model_bytes)
            model = read_model(path)
            palettes = {model.operators[0].inputs[1]: pal} if palette else {}
            (step,), blob = codegen.lower_model(model, palettes)
            assert step.weights_form.startswith("palette" if palette else "dense")
            prefix = f"ep_k{kernel_id}c{i}_"
            raw = blob.to_bytes()
            arrays = "\n".join(c_array(a, raw, prefix) for a in blob.arrays)
            params = plan.c_initializer(step.params).replace("ep_op", prefix)
            out.append((opcode, step.scratch_bytes,
                        f"{arrays}\nstatic const {step.params_type} {prefix}params = {params};\n",
                        f"{prefix}params"))
    return out


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_codegen_scratch_equals_every_runtime_get_buffer_size(lowered, tmp_path):
    lines = ['#include <stdio.h>', '#include "edgepack.h"', ""]
    lines += [source for _, _, source, _ in lowered]
    lines += ["int main(void)", "{"]
    lines += [f"    printf(\"%ld\\n\", (long){KERNELS[op]}(&{sym}));" for op, _, _, sym in lowered]
    lines += ["    return 0;", "}", ""]
    (tmp_path / "sizes.c").write_text("\n".join(lines))
    sources = sorted(str(p) for p in (FIRMWARE_DIR / "src").glob("*.c"))
    exe = tmp_path / "sizes"
    cc = subprocess.run(["gcc", *CFLAGS, "-I", str(FIRMWARE_DIR / "include"),
                         str(tmp_path / "sizes.c"), *sources, "-o", str(exe)],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    runtime = [int(v) for v in run.stdout.split()]
    mirror = [scratch for _, scratch, _, _ in lowered]
    assert len(runtime) == len(mirror) == len(KERNELS) * CONFIGS
    # every generated params struct is valid for the runtime (a negative size means rejected)
    assert min(runtime) >= 0
    drift = [(op, i % CONFIGS, py, c) for i, ((op, py, _, _), c) in enumerate(zip(lowered, runtime))
             if py != c]
    assert drift == [], f"codegen's scratch differs from the runtime's (opcode, config, python, C): {drift[:10]}"
    # both forms and both kinds of scratch were exercised
    assert len(set(mirror)) > 20 and max(mirror) > weighted.palette_table_bytes()
