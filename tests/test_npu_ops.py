"""Specification: single-operator int8 models compiled by Vela and executed by the functional NPU
model equal the TFLM interpreter bit for bit (random inputs, every U55 MAC configuration where it
is cheap).  Operators Vela leaves on the CPU run through a TFLM single-op runner."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack.npu import run_vela_model
from tests.npu_support import U55_CONFIGS, compile_vela, tflm_batch, tflm_cpu_runner
from tests.opmodels import T, single_op_model

BO = tfl.BuiltinOperator
N = 64
RNG = np.random.default_rng(7)


def _w(shape, lo=-127, hi=128):
    return RNG.integers(lo, hi, size=shape, dtype=np.int8)


def conv(padding, stride, dilation, act=tfl.ActivationFunctionType.NONE, cin=5, cout=11, k=(3, 3), hw=(9, 10)):
    o = tfl.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW = padding, stride[0], stride[1]
    o.dilationHFactor, o.dilationWFactor, o.fusedActivationFunction = dilation[0], dilation[1], act
    ws = list(np.linspace(0.002, 0.01, cout))
    hout = (hw[0] - (k[0] - 1) * dilation[0] - 1) // stride[0] + 1 if padding else -(-hw[0] // stride[0])
    wout = (hw[1] - (k[1] - 1) * dilation[1] - 1) // stride[1] + 1 if padding else -(-hw[1] // stride[1])
    return single_op_model(BO.CONV_2D, [T([1, *hw, cin], s=0.05, zp=-3),
                                        T([cout, *k, cin], s=ws, zp=0, data=_w((cout, *k, cin))),
                                        T([cout], np.int32, s=[0.05 * w for w in ws], data=RNG.integers(-3000, 3000, cout))],
                           [T([1, hout, wout, cout], s=0.11, zp=5)], "Conv2DOptions", o)


def depthwise(padding, stride, dilation, c=20, hw=(8, 9)):
    o = tfl.DepthwiseConv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.depthMultiplier = padding, stride[0], stride[1], 1
    o.dilationHFactor, o.dilationWFactor = dilation, dilation
    o.fusedActivationFunction = tfl.ActivationFunctionType.RELU6
    ws = list(np.linspace(0.003, 0.02, c))
    hout, wout = -(-hw[0] // stride[0]), -(-hw[1] // stride[1])
    return single_op_model(BO.DEPTHWISE_CONV_2D, [T([1, *hw, c], s=0.04, zp=2),
                                                  T([1, 3, 3, c], s=ws, zp=0, qdim=3, data=_w((1, 3, 3, c))),
                                                  T([c], np.int32, s=[0.04 * w for w in ws], data=RNG.integers(-2000, 2000, c))],
                           [T([1, hout, wout, c], s=0.05, zp=-10)], "DepthwiseConv2DOptions", o, version=2)


def avgpool(padding, k=(3, 3), stride=(2, 2), hw=(9, 11), c=7):
    o = tfl.Pool2DOptionsT()
    o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = padding, stride[0], stride[1], k[0], k[1]
    hout = -(-hw[0] // stride[0]) if padding == tfl.Padding.SAME else (hw[0] - k[0]) // stride[0] + 1
    wout = -(-hw[1] // stride[1]) if padding == tfl.Padding.SAME else (hw[1] - k[1]) // stride[1] + 1
    return single_op_model(BO.AVERAGE_POOL_2D, [T([1, *hw, c], s=0.1, zp=4)],
                           [T([1, hout, wout, c], s=0.1, zp=4)], "Pool2DOptions", o)


def binary(opcode, opts_name, opts, s1, s2, so, shape2=(1, 6, 7, 8)):
    return single_op_model(opcode, [T([1, 6, 7, 8], s=s1, zp=3), T(list(shape2), s=s2, zp=-7)],
                           [T([1, 6, 7, 8], s=so, zp=-2)], opts_name, opts)


def minmax(opcode):
    return single_op_model(opcode, [T([1, 6, 7, 8], s=0.05, zp=3), T([1, 6, 7, 8], s=0.05, zp=3)],
                           [T([1, 6, 7, 8], s=0.05, zp=3)])


def unary(opcode, s_in, zp_in, s_out, zp_out, opts_name=None, opts=None):
    return single_op_model(opcode, [T([1, 5, 6, 16], s=s_in, zp=zp_in)], [T([1, 5, 6, 16], s=s_out, zp=zp_out)],
                           opts_name, opts)


def _leaky_opts(alpha):
    o = tfl.LeakyReluOptionsT()
    o.alpha = alpha
    return o


def leaky(alpha):
    o = tfl.LeakyReluOptionsT()
    o.alpha = alpha
    return unary(BO.LEAKY_RELU, 0.05, -20, 0.04, 10, "LeakyReluOptions", o)


def mean():
    o = tfl.ReducerOptionsT()
    o.keepDims = True
    return single_op_model(BO.MEAN, [T([1, 7, 7, 24], s=0.06, zp=-5), T([2], np.int32, data=np.array([1, 2]))],
                           [T([1, 1, 1, 24], s=0.05, zp=3)], "ReducerOptions", o)


def _add():
    return tfl.AddOptionsT()


def _mul():
    return tfl.MulOptionsT()


def _sub():
    return tfl.SubOptionsT()


P = tfl.Padding
CASES = {
    "conv_same": lambda: conv(P.SAME, (1, 1), (1, 1)),
    "conv_valid_stride2": lambda: conv(P.VALID, (2, 2), (1, 1), tfl.ActivationFunctionType.RELU),
    "conv_same_stride2_relu6": lambda: conv(P.SAME, (2, 2), (1, 1), tfl.ActivationFunctionType.RELU6),
    "conv_dilation2": lambda: conv(P.SAME, (1, 1), (2, 2), hw=(11, 12)),
    "conv_5x5_deep": lambda: conv(P.SAME, (1, 1), (1, 1), cin=40, cout=24, k=(5, 5)),
    "conv_1x1_wide": lambda: conv(P.VALID, (1, 1), (1, 1), cin=70, cout=33, k=(1, 1)),
    "depthwise_same": lambda: depthwise(P.SAME, (1, 1), 1),
    "depthwise_stride2": lambda: depthwise(P.SAME, (2, 2), 1),
    "depthwise_dilation2": lambda: depthwise(P.SAME, (1, 1), 2, hw=(10, 10)),
    "avgpool_same_padding": lambda: avgpool(P.SAME),
    "avgpool_valid": lambda: avgpool(P.VALID),
    "add_equal_scales": lambda: binary(BO.ADD, "AddOptions", _add(), 0.1, 0.1, 0.15),
    "add_different_scales": lambda: binary(BO.ADD, "AddOptions", _add(), 0.1, 0.037, 0.15),
    "add_broadcast": lambda: binary(BO.ADD, "AddOptions", _add(), 0.02, 0.09, 0.1, shape2=(1, 1, 1, 8)),
    "sub_different_scales": lambda: binary(BO.SUB, "SubOptions", _sub(), 0.05, 0.11, 0.12),
    "mul": lambda: binary(BO.MUL, "MulOptions", _mul(), 0.05, 0.04, 0.07),
    "mul_broadcast": lambda: binary(BO.MUL, "MulOptions", _mul(), 0.05, 0.04, 0.03, shape2=(1, 6, 1, 8)),
    "tanh": lambda: unary(BO.TANH, 0.03, 4, 1 / 128, 0),
    "logistic": lambda: unary(BO.LOGISTIC, 0.05, -3, 1 / 256, -128),
    "hard_swish": lambda: unary(BO.HARD_SWISH, 0.04, 2, 0.03, -20),
    "leaky_relu": lambda: leaky(0.2),
    "mean_hw": mean,
    "leaky_relu_same_quant": lambda: single_op_model(BO.LEAKY_RELU, [T([1, 5, 6, 16], s=0.05, zp=-20)],
                                                     [T([1, 5, 6, 16], s=0.05, zp=-20)], "LeakyReluOptions", _leaky_opts(0.1)),
    "sub_first_operand_broadcast": lambda: single_op_model(
        BO.SUB, [T([1, 1, 1, 8], s=0.05, zp=1), T([1, 6, 7, 8], s=0.08, zp=-4)], [T([1, 6, 7, 8], s=0.1, zp=0)],
        "SubOptions", _sub()),
    "add_constant_scalar": lambda: single_op_model(
        BO.ADD, [T([1, 6, 7, 8], s=0.05, zp=1), T([1], s=0.05, zp=1, data=np.array([37]))], [T([1, 6, 7, 8], s=0.07, zp=3)],
        "AddOptions", _add()),
    "sub_constant_scalar_first": lambda: single_op_model(
        BO.SUB, [T([1], s=0.04, zp=-2, data=np.array([-90])), T([1, 6, 7, 8], s=0.04, zp=-2)], [T([1, 6, 7, 8], s=0.05, zp=3)],
        "SubOptions", _sub()),
    "maximum": lambda: minmax(BO.MAXIMUM),
    "minimum": lambda: minmax(BO.MINIMUM),
    "abs": lambda: unary(BO.ABS, 0.05, 3, 0.05, -2),
    "relu": lambda: unary(BO.RELU, 0.05, 3, 0.04, -128),
}


def _check(model: bytes, accel: str):
    m = tfl.ModelT.InitFromPackedBuf(model, 0)
    sg = m.subgraphs[0]
    xs = [RNG.integers(-128, 128, size=(N, *sg.tensors[i].shape), dtype=np.int8) for i in sg.inputs]
    golden = tflm_batch(model, xs)[0]
    vm = compile_vela(model, accel)
    out = run_vela_model(vm, xs, cpu_op_runner=tflm_cpu_runner(vm))[0]
    diff = np.abs(out.astype(int) - golden.astype(int))
    assert diff.max() == 0, f"{(diff > 0).sum()} of {diff.size} values differ (max {diff.max()})"
    return vm


def _npu_only(vm) -> bool:
    m = tfl.ModelT.InitFromPackedBuf(vm.read_bytes(), 0)
    return all(m.operatorCodes[op.opcodeIndex].customCode == b"ethos-u" for op in m.subgraphs[0].operators)


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_bit_exact_u55_128(case):
    vm = _check(CASES[case](), "ethos-u55-128")
    assert _npu_only(vm), "Vela left the operator on the CPU: the NPU model was not exercised"


@pytest.mark.parametrize("accel", [a for a in U55_CONFIGS if a != "ethos-u55-128"])
@pytest.mark.parametrize("case", ["conv_5x5_deep", "depthwise_dilation2", "avgpool_same_padding", "add_different_scales", "tanh"])
def test_single_op_bit_exact_other_mac_configs(case, accel):
    _check(CASES[case](), accel)
