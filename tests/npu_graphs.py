"""Small multi-operator int8 models for NPU tests, and a way to corrupt one layer of Vela's output.

    residual_model()   CONV c0 -> CONV a, CONV b -> ADD(a, b): Vela 5.2 runs b (operator 2) before a
    concat_model()     CONV c0 -> CONV a, CONV b -> CONCATENATION -> RESHAPE -> CONV out: the
                       concatenation and reshape have no NPU operation of their own (a and b
                       write into the concatenation's slices)
    corrupt_npu_bias(vela, db, operator)  Vela's output with the bias of output channel 0 of that
                       operator's first NPU convolution changed in place, in the encoded weight data
                       (the scale/bias stream is raw; re-encoding a weight stream with
                       `ethosu.mlw_codec.encode` gives other bytes than Vela's encoder, so the
                       compressed weights themselves are not edited)
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from edgepack.npu.debugdb import VelaDebugDb
from edgepack.npu.decoder import decode_command_stream, parse_driver_payload

from .opmodels import Op, T, graph_model

BO = tfl.BuiltinOperator


def _conv(rng, tensors, ops, name, src, cin, cout, hw, act=tfl.ActivationFunctionType.NONE, out_s=0.2):
    o = tfl.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW = tfl.Padding.SAME, 1, 1
    o.dilationHFactor = o.dilationWFactor = 1
    o.fusedActivationFunction = act
    ws = [0.004 + 0.0005 * i for i in range(cout)]
    in_s = tensors[src].s
    tensors[f"{name}/w"] = T([cout, 3, 3, cin], s=ws, data=rng.integers(-127, 128, (cout, 3, 3, cin)))
    tensors[f"{name}/b"] = T([cout], np.int32, s=[in_s * w for w in ws], data=rng.integers(-800, 800, cout))
    tensors[name] = T([1, *hw, cout], s=out_s, zp=-3)
    ops.append(Op(BO.CONV_2D, [src, f"{name}/w", f"{name}/b"], [name], "Conv2DOptions", o, 3))


def residual_model(seed: int = 5) -> bytes:
    rng = np.random.default_rng(seed)
    tensors, ops = {"input": T([1, 8, 8, 4], s=0.05, zp=1)}, []
    _conv(rng, tensors, ops, "c0", "input", 4, 8, (8, 8), tfl.ActivationFunctionType.RELU)
    _conv(rng, tensors, ops, "a", "c0", 8, 8, (8, 8))
    _conv(rng, tensors, ops, "b", "c0", 8, 8, (8, 8))
    tensors["sum"] = T([1, 8, 8, 8], s=0.3, zp=2)
    ops.append(Op(BO.ADD, ["a", "b"], ["sum"], "AddOptions", tfl.AddOptionsT()))
    return graph_model(tensors, ops, ["input"], ["sum"])


def concat_model(seed: int = 6) -> bytes:
    rng = np.random.default_rng(seed)
    tensors, ops = {"input": T([1, 6, 6, 4], s=0.05, zp=1)}, []
    _conv(rng, tensors, ops, "c0", "input", 4, 8, (6, 6), tfl.ActivationFunctionType.RELU)
    _conv(rng, tensors, ops, "a", "c0", 8, 8, (6, 6))
    _conv(rng, tensors, ops, "b", "c0", 8, 8, (6, 6))
    tensors["cat"] = T([1, 6, 6, 16], s=0.2, zp=-3)
    cat = tfl.ConcatenationOptionsT()
    cat.axis = 3
    ops.append(Op(BO.CONCATENATION, ["a", "b"], ["cat"], "ConcatenationOptions", cat))
    tensors["shape"] = T([4], np.int32, data=np.array([1, 12, 6, 8], np.int32))
    tensors["flat"] = T([1, 12, 6, 8], s=0.2, zp=-3)
    ops.append(Op(BO.RESHAPE, ["cat", "shape"], ["flat"]))
    _conv(rng, tensors, ops, "out", "flat", 8, 8, (12, 6), out_s=0.5)
    return graph_model(tensors, ops, ["input"], ["out"])


def _buffer_data(model, tensor_index: int) -> np.ndarray:
    sg = model.subgraphs[0]
    return np.asarray(model.buffers[sg.tensors[tensor_index].buffer].data, dtype=np.uint8)


def corrupt_npu_bias(vela: bytes, db: VelaDebugDb, operator: int, delta: int = 1 << 16) -> bytes:
    """Vela's output with `delta` added to the 40-bit bias of output channel 0 of `operator`'s first
    NPU convolution, in the read-only data the command stream reads (or DMAs) it from."""
    import flatbuffers

    m = tfl.ModelT.InitFromPackedBuf(vela, 0)
    sg = m.subgraphs[0]
    ethos = [op for op in sg.operators if (m.operatorCodes[op.opcodeIndex].customCode or b"") == b"ethos-u"]
    for stream, op in enumerate(ethos):
        commands = decode_command_stream(parse_driver_payload(_buffer_data(m, op.inputs[0]).tobytes()).command_stream)
        reg, dmas = {}, []
        for c in commands:
            if not c.is_operation:
                reg[c.name] = c
            elif c.name == "NPU_OP_DMA_START":
                dmas.append((reg["NPU_SET_DMA0_SRC_REGION"].fields["region"], reg["NPU_SET_DMA0_SRC"].payload,
                             reg["NPU_SET_DMA0_DST_REGION"].fields["region"], reg["NPU_SET_DMA0_DST"].payload,
                             reg["NPU_SET_DMA0_LEN"].payload))
            elif c.name in ("NPU_OP_CONV", "NPU_OP_DEPTHWISE"):
                found = db.operation(stream, c.offset)
                if found is None or operator not in found.operators:
                    continue
                region, base = reg["NPU_SET_SCALE_REGION"].param, reg["NPU_SET_SCALE_BASE"].payload
                if region != 0:  # staged by DMA from the read-only data (region 0)
                    base = next(s + base - d for sr, s, dr, d, n in reversed(dmas)
                                if sr == 0 and dr == region and d <= base < d + n)
                ro = _buffer_data(m, op.inputs[1]).copy()
                bias = int.from_bytes(ro[base:base + 5].tobytes(), "little", signed=True) + delta
                ro[base:base + 5] = np.frombuffer(bias.to_bytes(5, "little", signed=True), np.uint8)
                m.buffers[sg.tensors[op.inputs[1]].buffer].data = ro
                b = flatbuffers.Builder(1 << 16)
                b.Finish(m.Pack(b), file_identifier=b"TFL3")
                return bytes(b.Output())
    raise AssertionError(f"no NPU convolution computes operator {operator}")


def relu6_model(seed: int = 7) -> bytes:
    """CONV -> RELU6 (output quantization other than its input's) -> CONV: the RELU6 is a divergent
    NPU operator (Vela requantizes, TFLM's int8 RELU6 clamps the raw input)."""
    rng = np.random.default_rng(seed)
    tensors, ops = {"input": T([1, 6, 6, 4], s=0.05, zp=1)}, []
    _conv(rng, tensors, ops, "c0", "input", 4, 8, (6, 6), out_s=0.05)
    tensors["relu6"] = T([1, 6, 6, 8], s=6 / 255, zp=-128)
    ops.append(Op(BO.RELU6, ["c0"], ["relu6"], version=2))
    _conv(rng, tensors, ops, "out", "relu6", 8, 8, (6, 6), out_s=0.1)
    return graph_model(tensors, ops, ["input"], ["out"])


def fused_relu_model(seed: int = 8) -> bytes:
    """CONV -> RELU (same quantization) -> CONV: Vela fuses the RELU (operator 1) into the first
    convolution's NPU operation, whose OFM is the RELU's output."""
    rng = np.random.default_rng(seed)
    tensors, ops = {"input": T([1, 6, 6, 4], s=0.05, zp=1)}, []
    _conv(rng, tensors, ops, "c0", "input", 4, 8, (6, 6), out_s=0.05)
    tensors["relu"] = T([1, 6, 6, 8], s=0.05, zp=-3)
    ops.append(Op(BO.RELU, ["c0"], ["relu"], version=2))
    _conv(rng, tensors, ops, "out", "relu", 8, 8, (6, 6), out_s=0.1)
    return graph_model(tensors, ops, ["input"], ["out"])
