"""Unclustered int8 models with the shapes that broke `fold --clusters auto` (issue 12).

    from tests.unclustered_models import unclustered_mobilenet
    model = unclustered_mobilenet(zero_channels=0.1, prune=0.5, depthwise_spread=100)

The small MobileNetV2 of tests/mobilenet_model.py with weights never clustered (normal values,
batch-norm folded: what plain training gives), then edited as a real model could be: a share of
each convolution's output channels all zero (structured pruning), half the remaining weights of
some layers zero (magnitude pruning), and depthwise channel scales spread `depthwise_spread`x
(channel peaks from 0.01 to 1 of the largest).
"""

from __future__ import annotations

import numpy as np

from edgepack.tflite import Model, parse_model

from .mobilenet_model import SMALL, mobilenet_v2


def unclustered_mobilenet(zero_channels: float = 0.0, prune: float = 0.0,
                          depthwise_spread: float = 1.0, seed: int = 1) -> Model:
    net = mobilenet_v2(**SMALL, clusters=None, seed=seed)
    model = parse_model(net.tflite, "unclustered-mobilenet")
    rng = np.random.default_rng(seed)
    for op, t in model.weight_tensors():
        if t.dtype != "int8" or t.quantization is None:
            continue
        q = np.array(t.data)
        if op.opcode == "DEPTHWISE_CONV_2D" and depthwise_spread > 1:
            c = t.quantization.scale.size
            t.quantization.scale = (t.quantization.scale * np.geomspace(
                1.0, 1.0 / depthwise_spread, c)[rng.permutation(c)]).astype(np.float32)
        if op.opcode == "CONV_2D" and zero_channels > 0 and q.shape[0] >= 8:
            dead = rng.choice(q.shape[0], max(1, int(zero_channels * q.shape[0])), replace=False)
            q[dead] = 0
        if op.opcode == "CONV_2D" and prune > 0 and q.shape[-1] >= 16:
            small = np.abs(q) <= np.quantile(np.abs(q), prune)
            q[small] = 0
        t.data = q
    return model
