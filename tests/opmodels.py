"""Single-operator int8 TFLite models built in memory, run by the TFLM interpreter (the oracle).

Reusable by any test: describe tensors with `T`, build with `single_op_model` (or several
operators with `graph_model`), run with `run_tflm`. The Prepare-time arithmetic (multipliers,
activation ranges, padding) is edgepack/quant.py's: tests check the kernels it feeds against
this interpreter, which computes its own.

    model = single_op_model(tfl.BuiltinOperator.ADD, [T([1, 4], s=0.1, zp=3), T([1, 4], s=0.2, zp=-1)],
                            [T([1, 4], s=0.3, zp=0)], "AddOptions", tfl.AddOptionsT())
    y = run_tflm(model, [x1, x2])
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl

_TYPES = {np.dtype(np.int8): tfl.TensorType.INT8, np.dtype(np.int32): tfl.TensorType.INT32,
          np.dtype(np.float32): tfl.TensorType.FLOAT32, np.dtype(np.int64): tfl.TensorType.INT64}


@dataclass
class T:
    """A tensor: shape, dtype, quantization (scale scalar or per-channel list), constant data."""

    shape: list
    dtype: type = np.int8
    s: float | list | None = None
    zp: int | list = 0
    data: np.ndarray | None = None
    qdim: int = 0
    name: str = ""


def single_op_model(opcode: int, inputs: list, outputs: list, options_name: str | None = None,
                    options=None, version: int = 1) -> bytes:
    """Bytes of a one-operator TFLite model. Inputs without data are graph inputs (in order);
    an input of None is an omitted optional input (index -1). Unnamed tensors are named t<i>."""
    tensors: dict[str, T] = {}
    names = []
    for t in [*inputs, *outputs]:
        if t is None:
            names.append(None)
            continue
        name = t.name or f"t{len(tensors)}"
        tensors[name] = t
        names.append(name)
    in_names, out_names = names[:len(inputs)], names[len(inputs):]
    graph_inputs = [n for n, t in zip(in_names, inputs) if t is not None and t.data is None]
    op = Op(opcode, in_names, out_names, options_name, options, version)
    return graph_model(tensors, [op], graph_inputs, out_names, "edgepack single-op test model")


def run_tflm(model_bytes: bytes, inputs: list, arena_size: int = 1 << 20) -> np.ndarray:
    """Run a model once in the TFLM interpreter; returns output 0."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
    for i, x in enumerate(inputs):
        it.set_input(np.ascontiguousarray(x), i)
    it.invoke()
    return np.array(it.get_output(0))


def run_tflm_outputs(model_bytes: bytes, inputs: list, num_outputs: int, arena_size: int = 1 << 20) -> list:
    """Run a model once in the TFLM interpreter; returns its first num_outputs outputs."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
    for i, x in enumerate(inputs):
        it.set_input(np.ascontiguousarray(x), i)
    it.invoke()
    return [np.array(it.get_output(k)) for k in range(num_outputs)]


# --------------------------------------------------------------------------------------
# Multi-operator graphs
# --------------------------------------------------------------------------------------

@dataclass
class Op:
    """One operator of a `graph_model`: inputs/outputs name tensors of the graph (None: omitted)."""

    opcode: int
    inputs: list
    outputs: list
    options_name: str | None = None
    options: object = None
    version: int = 1


def graph_model(tensors: dict, ops: list, inputs: list, outputs: list,
                description: str = "edgepack multi-op test model") -> bytes:
    """Bytes of a TFLite model of several operators. `tensors` maps a name to its `T` (the name is
    the tensor's name in the model); `inputs`/`outputs` name the graph's inputs and outputs."""
    model = tfl.ModelT()
    model.version = 3
    model.description = description
    model.buffers = [tfl.BufferT()]
    codes: dict[tuple[int, int], int] = {}
    model.operatorCodes = []
    sg = tfl.SubGraphT()
    sg.tensors = []
    index: dict[str, int] = {}
    for name, t in tensors.items():
        tt = tfl.TensorT()
        tt.shape = np.asarray(t.shape, np.int32)
        tt.type = _TYPES[np.dtype(t.dtype)]
        tt.name = name.encode()
        buf = tfl.BufferT()
        if t.data is not None:
            arr = np.ascontiguousarray(np.asarray(t.data, dtype=t.dtype).reshape(t.shape))
            buf.data = np.frombuffer(arr.tobytes(), np.uint8)
        model.buffers.append(buf)
        tt.buffer = len(model.buffers) - 1
        if t.s is not None:
            q = tfl.QuantizationParametersT()
            scales = np.atleast_1d(np.asarray(t.s, np.float32))
            zps = np.atleast_1d(np.asarray(t.zp, np.int64))
            if zps.size == 1 and scales.size > 1:
                zps = np.repeat(zps, scales.size)
            q.scale, q.zeroPoint, q.quantizedDimension = scales, zps, t.qdim
            tt.quantization = q
        index[name] = len(sg.tensors)
        sg.tensors.append(tt)
    sg.operators = []
    for o in ops:
        key = (o.opcode, o.version)
        if key not in codes:
            oc = tfl.OperatorCodeT()
            oc.builtinCode = o.opcode
            oc.deprecatedBuiltinCode = min(o.opcode, 127)
            oc.version = o.version
            codes[key] = len(model.operatorCodes)
            model.operatorCodes.append(oc)
        op = tfl.OperatorT()
        op.opcodeIndex = codes[key]
        op.inputs = np.asarray([-1 if n is None else index[n] for n in o.inputs], np.int32)
        op.outputs = np.asarray([index[n] for n in o.outputs], np.int32)
        if o.options_name is not None:
            op.builtinOptionsType = getattr(tfl.BuiltinOptions, o.options_name)
            op.builtinOptions = o.options
        sg.operators.append(op)
    sg.inputs = np.asarray([index[n] for n in inputs], np.int32)
    sg.outputs = np.asarray([index[n] for n in outputs], np.int32)
    sg.name = b"main"
    model.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
