"""Run real operators through the runtime exactly as `edgepack build` lowers them.

The lowering is codegen's (`edgepack.codegen.lower_model`: parameters, weight forms, scratch
sizes); this module only marshals each PlanStep's designated-initializer dict into the ctypes
mirror of its ep_*_params struct (tests/runtime_harness.py), with the data-blob symbols it names
resolved to pointers into the blob. The oracle side stays independent: `single_op_from` cuts one
operator out of the model as a TFLite model for the TFLM interpreter.
"""

from __future__ import annotations

import ctypes as C
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from edgepack import codegen
from edgepack import plan
from edgepack.tflite import Model, read_model
from tests import runtime_harness as H
from tests.opmodels import T, single_op_model

_OPTION_NAMES = {v: k for k, v in vars(tfl.BuiltinOptions).items() if not k.startswith("_")}
_NP = {tfl.TensorType.INT8: np.int8, tfl.TensorType.INT32: np.int32, tfl.TensorType.FLOAT32: np.float32,
       tfl.TensorType.INT64: np.int64}

# ep_*_params type -> its ctypes mirror; enum constants codegen writes by name (edgepack.h)
PARAMS_TYPES = {"ep_conv2d_params": H.Conv2DParams, "ep_depthwise_conv2d_params": H.DepthwiseParams,
                "ep_fully_connected_params": H.FCParams, "ep_pool_params": H.PoolParams,
                "ep_mean_params": H.MeanParams, "ep_add_params": H.AddParams, "ep_mul_params": H.MulParams,
                "ep_softmax_params": H.SoftmaxParams, "ep_sigmoid_params": H.SigmoidParams,
                "ep_hard_swish_params": H.HardSwishParams, "ep_pad_params": H.PadParams,
                "ep_concatenation_params": H.ConcatParams, "ep_reshape_params": H.ReshapeParams,
                "ep_quantize_params": H.QuantizeParams}
ENUMS = {"NULL": None, "EP_WEIGHTS_DENSE": 0, "EP_WEIGHTS_PALETTE": 1, "EP_MEAN_TFLM": 0}


def load_model(path) -> Model:
    return read_model(path)


def palettes_of(model: Model) -> dict[int, plan.PaletteWeights]:
    """Palette form of every weight tensor: codebook = its sorted distinct int8 values,
    bits = ceil(log2 K) (at least 1)."""
    out = {}
    for _, w in model.weight_tensors():
        codebook, inverse = np.unique(np.asarray(w.data, np.int8), return_inverse=True)
        bits = max(1, int(np.ceil(np.log2(codebook.size)))) if codebook.size > 1 else 1
        out[w.index] = plan.PaletteWeights(codebook.astype(np.int8),
                                              inverse.reshape(w.data.shape).astype(np.uint8), bits)
    return out


@dataclass
class Lowered:
    """One operator as codegen lowers it, marshalled for a ctypes call."""

    step: plan.PlanStep
    params: C.Structure
    in_shape: tuple
    out_shape: tuple
    keep: list = field(default_factory=list)  # the blob the params point into

    @property
    def kernel(self) -> str:  # "conv2d" for EP_KERNEL_CONV2D: the C function is ep_<kernel>_s8
        return self.step.kernel.removeprefix("EP_KERNEL_").lower()

    @property
    def scratch(self) -> int:
        return self.step.scratch_bytes

    @property
    def weight_bytes(self) -> int:
        return self.step.weight_bytes

    def run(self, rt: H.Runtime, x: np.ndarray) -> np.ndarray:
        n = int(np.prod(self.out_shape))
        fn = getattr(rt.lib, f"ep_{self.kernel}_s8")
        buf, out = rt._out(n)
        xin = np.ascontiguousarray(x, np.int8)
        if self.kernel in ("conv2d", "depthwise_conv2d", "fully_connected"):
            scratch = np.zeros(max(self.scratch, 4) // 4 + 1, np.int32)
            st = fn(C.byref(self.params), H._ptr(xin), H._ptr(out), H._ptr(scratch), scratch.nbytes)
        else:
            st = fn(C.byref(self.params), H._ptr(xin), H._ptr(out))
        assert st == 0, f"{self.kernel} returned {st}"
        rt._check_guard(buf, n, self.kernel)
        return out.copy().reshape(self.out_shape)


def marshal(ctype, values: dict, resolve):
    """A designated-initializer dict (plan.c_initializer's input) as the ctypes struct."""
    kwargs = {}
    for name, ftype in ctype._fields_:
        if name not in values:  # an optional trailing pointer the lowering leaves out (NULL)
            continue
        v = values[name]
        if isinstance(v, dict):
            kwargs[name] = marshal(ftype, v, resolve)
        elif isinstance(v, plan.C):
            kwargs[name] = resolve(v.text)
        elif isinstance(v, (list, tuple)):
            kwargs[name] = ftype(*(int(e) for e in v))
        else:
            kwargs[name] = int(v)
    return ctype(**kwargs)


def lower_all(model: Model, form: str = "dense") -> list[Lowered]:
    """Every operator through codegen.lower_model; form 'palette' gives each weight tensor the
    palette of `palettes_of`."""
    steps, blob = codegen.lower_model(model, palettes_of(model) if form == "palette" else {})
    data = np.frombuffer(blob.to_bytes(), np.uint8).copy()
    where = {a.symbol: a.offset for a in blob.arrays}

    def resolve(text: str):
        return ENUMS[text] if text in ENUMS else data.ctypes.data + where[text]

    lowered = []
    for step in steps:
        params = marshal(PARAMS_TYPES[step.params_type], step.params, resolve)
        t_in, t_out = model.tensors[step.inputs[0]], model.tensors[step.output]
        lowered.append(Lowered(step, params, tuple(t_in.shape), tuple(t_out.shape), [data]))
    return lowered


def lower(model: Model, op_index: int, form: str = "dense") -> Lowered:
    """Kernel call for operator `op_index`; form 'dense' or 'palette' for weighted operators."""
    return lower_all(model, form)[op_index]


def tensor_spec(schema: tfl.ModelT, t) -> T:
    buf = schema.buffers[t.buffer]
    data = None
    if buf.data is not None and len(buf.data):
        data = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), _NP[t.type]).reshape(t.shape)
    q = t.quantization
    if q is not None and q.scale is not None:
        return T(list(t.shape), _NP[t.type], [float(s) for s in q.scale], [int(z) for z in q.zeroPoint], data,
                 int(q.quantizedDimension))
    return T(list(t.shape), _NP[t.type], None, 0, data)


def single_op_from(model: Model, op_index: int) -> bytes:
    """The operator as a one-operator model (constant inputs kept, activations become graph
    inputs), built from the flatbuffer schema objects, not from edgepack's reading of them."""
    schema = model.fb
    sg = schema.subgraphs[0]
    op = sg.operators[op_index]
    oc = schema.operatorCodes[op.opcodeIndex]
    ins = [None if i < 0 else tensor_spec(schema, sg.tensors[i]) for i in op.inputs]
    outs = [tensor_spec(schema, sg.tensors[i]) for i in op.outputs]
    name = _OPTION_NAMES.get(op.builtinOptionsType) if op.builtinOptionsType else None
    return single_op_model(max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)), ins, outs, name,
                           op.builtinOptions, version=oc.version)


def build_plan(model: Model, form: str = "dense"):
    """A whole-model ep_plan of codegen's steps: one arena, each tensor at its own offset,
    scratch at the end. Returns (plan, arena_bytes, input_offset, output_offset, output_size,
    keepalive)."""
    offsets, cursor = {}, 0

    def place(ti):
        nonlocal cursor
        if ti not in offsets:
            offsets[ti] = cursor
            cursor += (int(np.prod(model.tensors[ti].shape)) + 15) // 16 * 16
        return offsets[ti]

    lowered = lower_all(model, form)
    ops, keep = [], []
    for lw in lowered:
        ins = np.asarray([place(i) for i in lw.step.inputs], np.int32)
        out = place(lw.step.output)
        keep += [lw, ins]
        ops.append(H.Op(H.KERNEL_IDS[lw.kernel], C.cast(C.byref(lw.params), C.c_void_p), len(ins), H._ptr(ins),
                        out))
    scratch = max(lw.scratch for lw in lowered)
    scratch_off = cursor
    arena = cursor + scratch + 16
    op_arr = (H.Op * len(ops))(*ops)
    plan = H.Plan(C.cast(op_arr, C.c_void_p), len(ops), arena, scratch_off, scratch, None, 0)
    keep.append(op_arr)
    out_t = model.outputs[0]
    return plan, arena, offsets[model.inputs[0]], offsets[out_t], int(np.prod(model.tensors[out_t].shape)), keep
