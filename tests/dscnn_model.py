"""A small int8 DS-CNN keyword-spotting model (ARM's Hello Edge DS-CNN shape), built in memory.

    from tests.dscnn_model import ds_cnn
    Path("kws.tflite").write_bytes(ds_cnn())

49x10x1 MFCC input; CONV_2D 10x4 stride 2 SAME (RELU) - the layer whose kernel is taller than the
NPU's 8x8 decomposition; `blocks` x (DEPTHWISE 3x3 RELU, CONV 1x1 RELU); AVERAGE_POOL over the
whole 25x5 map; FULLY_CONNECTED to 12 classes; SOFTMAX. Weights are random int8 per channel;
every activation scale comes from a float pass on random inputs (max |value| / 127, zero point
-128 after RELU), so no layer saturates and every layer carries information.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from .opmodels import Op, T, graph_model

BO = tfl.BuiltinOperator
RELU = tfl.ActivationFunctionType.RELU


def _conv_f(x, w, b, stride, depthwise=False):
    """Float SAME convolution, NHWC x, OHWI w (depthwise: 1HWC)."""
    n, h, wd, _c = x.shape
    kh, kw = w.shape[1:3]
    oh, ow = -(-h // stride), -(-wd // stride)
    ph = max((oh - 1) * stride + kh - h, 0)
    pw = max((ow - 1) * stride + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, w.shape[3] if depthwise else w.shape[0]))
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, ky:ky + (oh - 1) * stride + 1:stride, kx:kx + (ow - 1) * stride + 1:stride]
            out += patch * w[0, ky, kx] if depthwise else patch @ w[:, ky, kx, :].T
    return out + b


def ds_cnn(channels: int = 64, blocks: int = 2, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (16, 49, 10, 1))
    tensors = {"input": T([1, 49, 10, 1], s=1 / 128, zp=0)}
    ops = []
    prev, prev_s, prev_zp = "input", 1 / 128, 0

    def add_conv(name, k, stride, cin, cout, depthwise):
        nonlocal x, prev, prev_s, prev_zp
        shape = (1, *k, cout) if depthwise else (cout, *k, cin)
        wf = rng.normal(0, 1 / np.sqrt(k[0] * k[1] * (1 if depthwise else cin)), shape)
        axis = (0, 1, 2) if depthwise else (1, 2, 3)
        ws = np.abs(wf).max(axis=axis) / 127
        wq = np.clip(np.round(wf / (ws.reshape(1, 1, 1, -1) if depthwise else ws.reshape(-1, 1, 1, 1))), -127, 127)
        bf = rng.normal(0, 0.1, cout)
        bq = np.round(bf / (prev_s * ws)).astype(np.int64)
        wdq = wq * (ws.reshape(1, 1, 1, -1) if depthwise else ws.reshape(-1, 1, 1, 1))
        x = np.maximum(_conv_f(x, wdq, bq * prev_s * ws, stride, depthwise), 0)
        s = float(x.max()) / 255 or 1e-3
        tensors[f"{name}/w"] = T(list(shape), s=list(ws), qdim=3 if depthwise else 0, data=wq.astype(np.int8))
        tensors[f"{name}/b"] = T([cout], np.int32, s=list(prev_s * ws), data=bq.astype(np.int32))
        tensors[name] = T([1, *x.shape[1:]], s=s, zp=-128)
        if depthwise:
            o = tfl.DepthwiseConv2DOptionsT()
            o.depthMultiplier = 1
            opcode, opts, version = BO.DEPTHWISE_CONV_2D, "DepthwiseConv2DOptions", 2
        else:
            o = tfl.Conv2DOptionsT()
            opcode, opts, version = BO.CONV_2D, "Conv2DOptions", 3
        o.padding, o.strideH, o.strideW = tfl.Padding.SAME, stride, stride
        o.dilationHFactor = o.dilationWFactor = 1
        o.fusedActivationFunction = RELU
        ops.append(Op(opcode, [prev, f"{name}/w", f"{name}/b"], [name], opts, o, version))
        prev, prev_s, prev_zp = name, s, -128

    add_conv("conv0", (10, 4), 2, 1, channels, False)
    for i in range(blocks):
        add_conv(f"dw{i}", (3, 3), 1, channels, channels, True)
        add_conv(f"pw{i}", (1, 1), 1, channels, channels, False)
    pool = tfl.Pool2DOptionsT()
    pool.padding, pool.strideH, pool.strideW = tfl.Padding.VALID, 1, 1
    pool.filterHeight, pool.filterWidth = x.shape[1], x.shape[2]
    tensors["pool"] = T([1, 1, 1, channels], s=prev_s, zp=prev_zp)
    ops.append(Op(BO.AVERAGE_POOL_2D, [prev], ["pool"], "Pool2DOptions", pool, 2))
    xf = x.mean(axis=(1, 2))
    wf = rng.normal(0, 1 / np.sqrt(channels), (12, channels))
    ws = float(np.abs(wf).max()) / 127
    wq = np.clip(np.round(wf / ws), -127, 127)
    logits = xf @ (wq * ws).T
    ls = float(np.abs(logits).max()) / 127 or 1e-3
    tensors["fc/w"] = T([12, channels], s=ws, data=wq.astype(np.int8))
    tensors["fc/b"] = T([12], np.int32, s=prev_s * ws, data=np.zeros(12, np.int32))
    tensors["logits"] = T([1, 12], s=ls, zp=0)
    tensors["output"] = T([1, 12], s=1 / 256, zp=-128)
    fc = tfl.FullyConnectedOptionsT()
    ops.append(Op(BO.FULLY_CONNECTED, ["pool", "fc/w", "fc/b"], ["logits"], "FullyConnectedOptions", fc, 4))
    sm = tfl.SoftmaxOptionsT()
    sm.beta = 1.0
    ops.append(Op(BO.SOFTMAX, ["logits"], ["output"], "SoftmaxOptions", sm, 2))
    return graph_model(tensors, ops, ["input"], ["output"], "edgepack DS-CNN test model")
