"""Spec: every target path of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED is bit-exact with
the TFLM interpreter, run on the target itself under QEMU: the Helium path on mps3-an547
(Cortex-M55), the DSP path on mps2-an386 (Cortex-M4) and mps2-an505 (Cortex-M33). (The plain C
path is test_runtime_kernels.py on the host, and under ASan/UBSan in test_runtime_sanitized.py.)

Random single-operator models (shapes, strides, paddings, dilations, zero points, per-channel or
per-tensor scales, fused activations, weights with K <= 2^bits distinct values) are lowered by
codegen in both weight forms, dense and palette, compiled into one firmware image with TFLM's
outputs as the expected bytes, and run; every call must return EP_OK with zero mismatched bytes.
FULLY_CONNECTED runs once with weight sums stored by the build (palette form) and once without.
Helium is emulated slowly, so a modest number of configurations per kernel runs here
(EP_QEMU_CONFIGS, default 10); bench/runtime_kernels.py --tflm-random N runs more.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack.quant import ACTIVATIONS
from edgepack.tflite import read_model
from tests.opmodels import T, run_tflm, single_op_model
from tests.runtime_lowering import lower
from tests.test_runtime_kernels import draw_window, fused, i8, log_uniform, random_weights_palette

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import runtime_kernels as RK  # noqa: E402

OP = tfl.BuiltinOperator
SEED = int(os.environ.get("EP_TEST_SEED", "20261203"))
N_CONFIGS = int(os.environ.get("EP_QEMU_CONFIGS", "10"))

pytestmark = pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                                reason="needs qemu-system-arm and arm-none-eabi-gcc")


def _model(rng, kind: str, i: int):
    """(model bytes, input, weights) of one random operator; weights take at most 2^bits distinct
    values."""
    bits = 1 + i % 8
    s_in, zp_in, zp_out = log_uniform(rng, 0.002, 0.2), int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    act = str(rng.choice(ACTIVATIONS))
    if kind == "fully_connected":
        batches, din, dout = int(rng.integers(1, 3)), int(rng.integers(1, 150)), int(rng.integers(1, 24))
        fshape, rows, qdim, chans, fan_in = (dout, din), dout, 0, dout, din
        in_shape, out_shape = [batches, din], [batches, dout]
    else:
        win = draw_window(rng, 11)
        n = int(rng.integers(1, 3))
        if kind == "conv2d":
            cin, cout = int(rng.integers(1, 25)), int(rng.integers(1, 21))
            fshape, qdim, fan_in = (cout, win.kh, win.kw, cin), 0, win.kh * win.kw * cin
        else:
            cin, mult = int(rng.integers(1, 20)), int(rng.choice([1, 1, 1, 2]))
            cout = cin * mult
            fshape, qdim, fan_in = (1, win.kh, win.kw, cout), 3, win.kh * win.kw
        chans = cout
        in_shape, out_shape = [n, win.h, win.w, cin], [n, win.oh, win.ow, cout]
    per_channel = bool(rng.integers(0, 2))
    w_scales = [log_uniform(rng, 0.001, 0.05) for _ in range(chans if per_channel else 1)]
    s_out = float(np.float32(s_in * np.mean(w_scales) * rng.uniform(2, 40) * np.sqrt(fan_in)))
    codebook, idx = random_weights_palette(rng, fshape, bits)
    dense = codebook[idx]
    # TFLM's depthwise kernel needs a bias; the others run with and without
    has_bias = kind == "depthwise_conv2d" or bool(rng.integers(0, 4))
    bias = rng.integers(-20000, 20000, size=chans).astype(np.int32)
    bias_t = T([chans], np.int32, [s_in * ws for ws in w_scales], 0, bias, 0) if has_bias else None
    ins = [T(in_shape, s=s_in, zp=zp_in), T(list(fshape), s=w_scales, zp=0, data=dense, qdim=qdim), bias_t]
    outs = [T(out_shape, s=s_out, zp=zp_out)]
    if kind == "fully_connected":
        opts = tfl.FullyConnectedOptionsT()
        opts.fusedActivationFunction = fused(act)
        model = single_op_model(OP.FULLY_CONNECTED, ins, outs, "FullyConnectedOptions", opts, version=4)
    elif kind == "conv2d":
        opts = tfl.Conv2DOptionsT()
        win.set_options(opts)
        opts.fusedActivationFunction = fused(act)
        model = single_op_model(OP.CONV_2D, ins, outs, "Conv2DOptions", opts, version=3)
    else:
        opts = tfl.DepthwiseConv2DOptionsT()
        win.set_options(opts)
        opts.depthMultiplier, opts.fusedActivationFunction = cout // cin, fused(act)
        model = single_op_model(OP.DEPTHWISE_CONV_2D, ins, outs, "DepthwiseConv2DOptions", opts, version=3)
    return model, i8(rng, in_shape), dense


def tflm_layers(n: int, seed: int, work: Path):
    """n random layers of each kernel as (label, dense call, palette call, input, TFLM output)."""
    layers = []
    for k, kind in enumerate(("conv2d", "depthwise_conv2d", "fully_connected")):
        for i in range(n):
            model_bytes, x, dense = _model(np.random.default_rng([seed, k, i]), kind, i)
            path = work / f"{kind}_{i}.tflite"
            path.write_bytes(model_bytes)
            model = read_model(path)
            calls = [RK.KernelCall(lw.kernel, lw.params, lw.out_shape, lw.scratch, lw.weight_bytes, [lw])
                     for lw in (lower(model, 0, "dense"), lower(model, 0, "palette"))]
            if kind == "fully_connected":  # the palette call gets stored weight sums, the dense one not
                calls[1].weight_sums = dense.astype(np.int64).sum(axis=1).astype(np.int32)
            expected = run_tflm(model_bytes, [x]).astype(np.int8)
            layers.append((f"{kind} {i}", *calls, x, expected))
    return layers


@pytest.mark.parametrize("board", ["mps3-an547", "mps2-an386", "mps2-an505"])
def test_kernels_on_the_target_match_tflm(tmp_path, board):
    layers = tflm_layers(N_CONFIGS, SEED, tmp_path)
    out = RK.build_and_run(RK.generate(layers, 1), tmp_path, RK.board_cflags(board), board)
    results = [line for line in out.splitlines() if line.startswith("RESULT")]
    assert len(results) == 2 * len(layers)
    bad = [(layers[int(r.split()[1])][0], r.split()[2]) for r in results if not r.endswith(" ok")]
    assert not bad, f"{board}: {len(bad)} calls differ from TFLM: {bad[:10]}"
    assert "DONE 0" in out
