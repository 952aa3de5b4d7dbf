"""Small models of the shapes public and mutated models take that once crashed or were refused
(issue 16): built in memory with tests/opmodels.py, each a few hundred bytes."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from tests.opmodels import Op, T, graph_model, single_op_model


def add_only(shape=(1, 4, 4, 3)) -> bytes:
    """One ADD of two graph inputs: no weights at all."""
    return single_op_model(tfl.BuiltinOperator.ADD,
                           [T(list(shape), s=0.05, zp=-3), T(list(shape), s=0.04, zp=2)],
                           [T(list(shape), s=0.08, zp=1)], "AddOptions", tfl.AddOptionsT())


def conv_bias_axis3(seed: int = 16) -> bytes:
    """A per-channel CONV_2D whose 1-D bias says quantized_dimension 3, as in TFLM's
    person-detection model."""
    rng = np.random.default_rng(seed)
    cout, cin = 8, 3
    w_scales = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    in_scale = 0.05
    opts = tfl.Conv2DOptionsT()
    opts.padding, opts.strideH, opts.strideW = tfl.Padding.SAME, 1, 1
    opts.dilationHFactor = opts.dilationWFactor = 1
    weights = T([cout, 3, 3, cin], s=list(w_scales), zp=0, qdim=0,
                data=rng.integers(-127, 128, (cout, 3, 3, cin), dtype=np.int8))
    bias = T([cout], np.int32, s=list(in_scale * w_scales), zp=0, qdim=3,
             data=rng.integers(-500, 500, cout, dtype=np.int32))
    return single_op_model(tfl.BuiltinOperator.CONV_2D,
                           [T([1, 6, 6, cin], s=in_scale, zp=-1), weights, bias],
                           [T([1, 6, 6, cout], s=0.1, zp=4)], "Conv2DOptions", opts, version=3)


def softmax_beta(beta: float) -> bytes:
    """One SOFTMAX with the given beta (0 kills the TFLM interpreter)."""
    opts = tfl.SoftmaxOptionsT()
    opts.beta = beta
    return single_op_model(tfl.BuiltinOperator.SOFTMAX, [T([1, 10], s=0.1, zp=0)],
                           [T([1, 10], s=1 / 256, zp=-128)], "SoftmaxOptions", opts)


def batch2() -> bytes:
    """A model whose input has a batch of 2."""
    return add_only((2, 4, 4, 3))


def huge_dimension() -> bytes:
    """An input of [1, 2147483647, 10, 1]: 20 GiB described in a few hundred bytes."""
    return add_only((1, 2147483647, 10, 1))


def output_feeds_itself() -> bytes:
    """An ADD whose output is also its second input."""
    tensors = {"x": T([1, 8], s=0.1), "y": T([1, 8], s=0.1)}
    return graph_model(tensors, [Op(tfl.BuiltinOperator.ADD, ["x", "y"], ["y"], "AddOptions",
                                    tfl.AddOptionsT())], ["x"], ["y"])
