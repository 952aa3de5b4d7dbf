"""Entry points: run Vela's raw output (npz) or Vela's tflite output in the functional NPU model."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from edgepack.errors import CommandStreamRefused, ModelError

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


# TFLite TensorType -> numpy dtype (the types an ethos-u operator's tensors can have)
_TFL_DTYPES = {9: np.int8, 3: np.uint8, 7: np.int16, 2: np.int32, 0: np.float32, 4: np.int64, 6: np.bool_}
_OFFLINE_PLAN = "OfflineMemoryAllocation"
_FAST_MEMORY_REGION = 2  # base pointer of scratch_fast (the driver's FAST_MEMORY_BASE_ADDR_INDEX)


def read_tflite(model):
    from ai_edge_litert import schema_py_generated as tfl

    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as fh:
            model = fh.read()
    buf = bytes(model)
    try:
        return tfl.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:
        raise ModelError(f"not a TFLite flatbuffer ({e})") from None


def _as_batch(x: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.shape == shape:
        return x[None], False
    if x.shape[1:] == shape:
        return x, True
    if shape and shape[0] == 1 and x.shape[1:] == shape[1:]:
        return x.reshape((x.shape[0],) + shape), True
    raise ModelError(f"input of shape {x.shape} does not fit the model input {shape}")


def run_vela_model(vela_tflite, inputs: Sequence[np.ndarray],
                   cpu_op_runner: Callable[[int, object, list], list] | None = None,
                   trace=None) -> list[np.ndarray]:
    """Run Vela's tflite output (`<name>_vela.tflite`: path or bytes) as the device would.

    Contract (stable; `edgepack run --sim npu-model` relies on it):
    - `inputs`: one array per subgraph-0 input, in order, of the input's dtype, either of the input's
      shape (one inference) or with a leading batch dimension B (B inferences run at once; a model
      batch dimension of 1 may be replaced by B).
    - Operators run in the model's order.  Each `ethos-u` CUSTOM operator runs in the functional
      NPU model: its inputs are the command stream, the read-only weights, scratch, scratch_fast,
      then the IFMs; base pointer (region) k is the operator's input k+1 (then its outputs), and
      tensors the model's `OfflineMemoryAllocation` metadata places in the arena share one memory,
      as TFLM's ethos-u kernel and arena planner arrange.
    - Any other operator is passed to `cpu_op_runner(op_index, op, input_arrays) -> output_arrays`
      (`op` is the schema's OperatorT; every input array has the leading batch dimension B, constants
      broadcast, None for an omitted optional input; it returns one (B, *shape) array per output).
      Without a runner, a model with CPU operators raises ModelError.
    - Returns one array per subgraph output (its dtype and shape; leading B if the inputs had one).
    - Raises `edgepack.errors.ModelError` for anything it cannot execute exactly (unknown command,
      truncated stream, unsupported accelerator such as Ethos-U85, unmodelled feature), naming the
      command-stream offset; it never returns a guessed answer.
    - `trace(machine, command, ofm)` (optional) is called after each NPU operation; `machine.stream`
      says which `ethos-u` operator (0 = the model's first) and `command.offset` where in its stream.
    """
    m = read_tflite(vela_tflite)
    if not m.subgraphs:
        raise ModelError("model has no subgraph")
    sg = m.subgraphs[0]
    tensors = sg.tensors
    codes = m.operatorCodes

    def shape_of(i):
        return tuple(int(v) for v in (tensors[i].shape if tensors[i].shape is not None else []))

    def const(i):
        b = m.buffers[tensors[i].buffer]
        if b.data is None or len(b.data) == 0:
            return None
        return np.frombuffer(bytes(np.asarray(b.data, dtype=np.uint8)), dtype=_TFL_DTYPES.get(tensors[i].type, np.uint8))

    plan = {}
    for md in m.metadata or []:
        if md.name and md.name.decode() == _OFFLINE_PLAN:
            words = np.frombuffer(bytes(np.asarray(m.buffers[md.buffer].data, dtype=np.uint8)), dtype="<i4")
            n = int(words[2])
            plan = {t: int(o) for t, o in enumerate(words[3:3 + n]) if o >= 0}

    if len(inputs) != len(sg.inputs):
        raise ModelError(f"model has {len(sg.inputs)} inputs, {len(inputs)} given")
    values: dict[int, np.ndarray] = {}
    batch, batched = None, False
    for t, x in zip(sg.inputs, inputs):
        xb, was_batched = _as_batch(x, shape_of(t))
        batched |= was_batched
        if batch not in (None, xb.shape[0]):
            raise ModelError("inputs have different batch sizes")
        batch = xb.shape[0]
        values[t] = xb.astype(_TFL_DTYPES.get(tensors[t].type, xb.dtype), copy=False)
    batch = batch or 1

    def value(i):
        if i in values:
            return values[i]
        c = const(i)
        if c is None:
            raise ModelError(f"tensor {i} ({tensors[i].name!r}) is read before any operator wrote it")
        return np.broadcast_to(c.reshape(shape_of(i)), (batch,) + shape_of(i))

    stream = 0
    for op_index, op in enumerate(sg.operators or []):
        code = codes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = code.customCode.decode() if code.customCode else ""
        if builtin == 32 and custom == "ethos-u":
            try:
                _run_ethos_u_op(op, op_index, tensors, const, value, values, plan, shape_of, batch, trace,
                                stream)
            except CommandStreamRefused:
                raise
            except ModelError as e:
                raise CommandStreamRefused(str(e), op_index) from None
            stream += 1
        else:
            if cpu_op_runner is None:
                raise ModelError(f"operator {op_index} (builtin code {builtin}{' ' + custom if custom else ''}) "
                                 "runs on the CPU and no cpu_op_runner was given")
            ins = [None if i < 0 else value(i) for i in op.inputs]
            outs = cpu_op_runner(op_index, op, ins)
            if len(outs) != len(op.outputs):
                raise ModelError(f"cpu_op_runner returned {len(outs)} outputs for operator {op_index}, "
                                 f"expected {len(op.outputs)}")
            for t, y in zip(op.outputs, outs):
                values[t] = np.asarray(y).reshape((batch,) + shape_of(t))
    result = []
    for t in sg.outputs:
        y = value(t)
        result.append(np.array(y) if batched else np.array(y[0]))
    return result


def _run_ethos_u_op(op, op_index, tensors, const, value, values, plan, shape_of, batch, trace, stream):
    if len(op.inputs) < 4:
        raise ModelError(f"ethos-u operator {op_index} has {len(op.inputs)} inputs, expected command stream, "
                         "read-only, scratch, scratch_fast and IFMs")
    cms = const(op.inputs[0])
    if cms is None:
        raise ModelError(f"ethos-u operator {op_index} has no command stream data")
    base_tensors = list(op.inputs[1:]) + list(op.outputs)

    def nbytes(t):
        return int(np.prod(shape_of(t))) * np.dtype(_TFL_DTYPES.get(tensors[t].type, np.uint8)).itemsize

    arena_size = max([plan[t] + nbytes(t) for t in base_tensors if t in plan] + [0])
    arena = np.zeros((batch, arena_size), dtype=np.uint8)
    regions: dict[int, np.ndarray] = {}
    own: dict[int, np.ndarray] = {}
    for k, t in enumerate(base_tensors):
        if t < 0:
            continue
        c = const(t)
        if k == _FAST_MEMORY_REGION and c is None:
            # The Ethos-U driver points base pointer 2 at its own fast memory (ethosu_invoke_async:
            # base_addr[FAST_MEMORY_BASE_ADDR_INDEX] = drv->fast_memory), never at the arena where
            # the offline plan puts scratch_fast (at scratch's offset): Dedicated_Sram command
            # streams (Ethos-U65) stage weights there while feature maps live in scratch.
            regions[k] = np.zeros((batch, nbytes(t)), dtype=np.uint8)
        elif t in plan and c is None:
            regions[k] = arena[:, plan[t]:]
        elif c is not None:
            regions[k] = np.frombuffer(c.tobytes(), dtype=np.uint8)[None, :]
        else:
            own[t] = regions[k] = np.zeros((batch, nbytes(t)), dtype=np.uint8)
    # IFMs (inputs after scratch_fast) hold the values computed so far
    for t in op.inputs[4:]:
        if t < 0 or const(t) is not None:
            continue
        b = _to_bytes(value(t).reshape(batch, -1))
        if t in plan:
            arena[:, plan[t]:plan[t] + b.shape[1]] = b
        else:
            own[t][:] = b
    run_command_stream(cms.tobytes(), regions, batch, trace, stream)
    for t in op.outputs:
        raw = arena[:, plan[t]:plan[t] + nbytes(t)] if t in plan else own[t]
        dt = np.dtype(_TFL_DTYPES.get(tensors[t].type, np.uint8)).newbyteorder("<")
        values[t] = np.ascontiguousarray(raw).view(dt).reshape((batch,) + shape_of(t))
