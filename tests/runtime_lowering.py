"""Lower operators of a real int8 TFLite model to runtime kernel calls (test-side model of what
the firmware generator emits): parameter structs, weight forms, and an execution plan.

Covers the operators of the fixture models (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE, SOFTMAX). Reads models with the official schema object API.
"""

from __future__ import annotations

import ctypes as C
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from tests import runtime_harness as H
from edgepack.quant import activation_range, conv_multipliers, fc_multipliers, same_padding, softmax_params
from tests.opmodels import T, single_op_model

OP = tfl.BuiltinOperator
_ACTIVATION_NAMES = {v: k for k, v in vars(tfl.ActivationFunctionType).items() if not k.startswith("_")}
_OPTION_NAMES = {v: k for k, v in vars(tfl.BuiltinOptions).items() if not k.startswith("_")}
_NP = {tfl.TensorType.INT8: np.int8, tfl.TensorType.INT32: np.int32, tfl.TensorType.FLOAT32: np.float32,
       tfl.TensorType.INT64: np.int64}


def load_model(path) -> tfl.ModelT:
    with open(path, "rb") as f:
        return tfl.ModelT.InitFromPackedBuf(f.read(), 0)


def opcode(model: tfl.ModelT, op) -> int:
    oc = model.operatorCodes[op.opcodeIndex]
    return max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))


def tensor_data(model, t) -> np.ndarray | None:
    buf = model.buffers[t.buffer]
    if buf.data is None or len(buf.data) == 0:
        return None
    return np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), _NP[t.type]).reshape(t.shape)


def qparams(t):
    q = t.quantization
    return np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64), int(q.quantizedDimension)


def tensor_spec(model, t) -> T:
    data = tensor_data(model, t)
    if t.quantization is not None and t.quantization.scale is not None:
        s, zp, qd = qparams(t)
        return T(list(t.shape), _NP[t.type], list(map(float, s)), list(map(int, zp)), data, qd)
    return T(list(t.shape), _NP[t.type], None, 0, data)


def single_op_from(model: tfl.ModelT, op_index: int) -> bytes:
    """The op as a one-operator model (constant inputs kept, activations become graph inputs)."""
    sg = model.subgraphs[0]
    op = sg.operators[op_index]
    ins = [None if i < 0 else tensor_spec(model, sg.tensors[i]) for i in op.inputs]
    outs = [tensor_spec(model, sg.tensors[i]) for i in op.outputs]
    name = _OPTION_NAMES.get(op.builtinOptionsType) if op.builtinOptionsType else None
    return single_op_model(opcode(model, op), ins, outs, name, op.builtinOptions,
                           version=model.operatorCodes[op.opcodeIndex].version)


@dataclass
class Lowered:
    kernel: str
    params: C.Structure
    in_shape: tuple
    out_shape: tuple
    scratch: int = 0
    weight_bytes: int = 0
    keep: list = field(default_factory=list)

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


def scratch_bytes(wf: H.Weights, row_len: int) -> int:
    """Caller scratch of CONV_2D / FULLY_CONNECTED: palette table (1 KiB) + int16 row + pad."""
    return (1024 if wf.form else 0) + ((row_len + 1) * 2 + 3) // 4 * 4


def _act(opts, t_out):
    s, zp, _ = qparams(t_out)
    act = _ACTIVATION_NAMES[int(opts.fusedActivationFunction)]
    return activation_range(act, float(s[0]), int(zp[0]))


def lower(model: tfl.ModelT, op_index: int, form: str = "dense", rt: H.Runtime | None = None) -> Lowered:
    """Kernel call for op `op_index`; form 'dense' or 'palette' for weighted ops."""
    sg = model.subgraphs[0]
    op = sg.operators[op_index]
    code = opcode(model, op)
    t_in = sg.tensors[op.inputs[0]]
    t_out = sg.tensors[op.outputs[0]]
    s_in, zp_in, _ = qparams(t_in)
    s_out, zp_out, _ = qparams(t_out)
    in_shape, out_shape = tuple(int(d) for d in t_in.shape), tuple(int(d) for d in t_out.shape)
    opts = op.builtinOptions

    if code in (OP.CONV_2D, OP.DEPTHWISE_CONV_2D, OP.FULLY_CONNECTED):
        t_w = sg.tensors[op.inputs[1]]
        w = tensor_data(model, t_w)
        s_w, zp_w, _ = qparams(t_w)
        bias = tensor_data(model, sg.tensors[op.inputs[2]]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        bias = None if bias is None else np.ascontiguousarray(bias, np.int32)
        rows = 1 if code == OP.DEPTHWISE_CONV_2D else w.shape[0]
        wf = H.Weights.dense_form(w) if form == "dense" else H.Weights.from_dense_as_palette(w, rows)
        lo, hi = _act(opts, t_out)
        if code == OP.FULLY_CONNECTED:
            m, s = fc_multipliers(float(s_in[0]), list(map(float, s_w)), float(s_out[0]))
        else:
            m, s = conv_multipliers(float(s_in[0]), s_w, float(s_out[0]))
        rq, keep = H.Runtime._requant(m, s)
        keep = [keep, wf, bias]
        bptr = H._ptr(bias)
        if code == OP.FULLY_CONNECTED:
            din = w.shape[1]
            batches = int(np.prod(in_shape)) // din
            p = H.FCParams(batches, din, w.shape[0], -int(zp_in[0]), -int(zp_w[0]), int(zp_out[0]), lo, hi, rq,
                           wf.struct(), bptr)
            lw = Lowered("fully_connected", p, in_shape, out_shape, scratch_bytes(wf, din), wf.nbytes, keep)
        else:
            kh, kw = w.shape[1], w.shape[2]
            sh, sw, dh, dw = opts.strideH, opts.strideW, opts.dilationHFactor, opts.dilationWFactor
            pad = (same_padding(in_shape[1], out_shape[1], sh, kh, dh),
                   same_padding(in_shape[2], out_shape[2], sw, kw, dw))
            if opts.padding == tfl.Padding.VALID:
                pad = (0, 0)
            common = (H.shape4(in_shape), H.shape4(w.shape), H.shape4(out_shape))
            if code == OP.CONV_2D:
                p = H.Conv2DParams(*common, sh, sw, dh, dw, pad[0], pad[1], -int(zp_in[0]), int(zp_out[0]), lo, hi,
                                   rq, wf.struct(), bptr)
                lw = Lowered("conv2d", p, in_shape, out_shape, scratch_bytes(wf, int(np.prod(w.shape[1:]))),
                             wf.nbytes, keep)
            else:
                p = H.DepthwiseParams(*common, opts.depthMultiplier, sh, sw, dh, dw, pad[0], pad[1], -int(zp_in[0]),
                                      int(zp_out[0]), lo, hi, rq, wf.struct(), bptr)
                lw = Lowered("depthwise_conv2d", p, in_shape, out_shape, 1024 if wf.form else 0, wf.nbytes, keep)
        return lw
    if code in (OP.MAX_POOL_2D, OP.AVERAGE_POOL_2D):
        fh, fw, sh, sw = opts.filterHeight, opts.filterWidth, opts.strideH, opts.strideW
        pad = (0, 0)
        if opts.padding == tfl.Padding.SAME:
            pad = (same_padding(in_shape[1], out_shape[1], sh, fh), same_padding(in_shape[2], out_shape[2], sw, fw))
        lo, hi = _act(opts, t_out)
        p = H.PoolParams(H.shape4(in_shape), H.shape4(out_shape), fh, fw, sh, sw, pad[0], pad[1], lo, hi)
        return Lowered("max_pool2d" if code == OP.MAX_POOL_2D else "avg_pool2d", p, in_shape, out_shape)
    if code == OP.RESHAPE:
        return Lowered("reshape", H.ReshapeParams(int(np.prod(in_shape))), in_shape, out_shape)
    if code == OP.SOFTMAX:
        m, s, dmin = softmax_params(float(opts.beta), float(s_in[0]))
        depth = in_shape[-1]
        return Lowered("softmax", H.SoftmaxParams(int(np.prod(in_shape)) // depth, depth, m, s, dmin), in_shape,
                       out_shape)
    raise NotImplementedError(f"operator {code} at index {op_index} is not lowered by the test harness")


def build_plan(model: tfl.ModelT, form: str = "dense"):
    """A whole-model ep_plan: one arena, each tensor at its own offset, scratch at the end.
    Returns (plan, arena_bytes, input_offset, output_offset, output_size, keepalive)."""
    sg = model.subgraphs[0]
    offsets, cursor = {}, 0

    def place(ti):
        nonlocal cursor
        if ti not in offsets:
            offsets[ti] = cursor
            cursor += (int(np.prod(sg.tensors[ti].shape)) + 15) // 16 * 16
        return offsets[ti]

    lowered, ops, keep = [], [], []
    for k, op in enumerate(sg.operators):
        lw = lower(model, k, form)
        lowered.append(lw)
        ins = np.asarray([place(op.inputs[0])], np.int32)
        out = place(op.outputs[0])
        keep += [lw, ins]
        ops.append(H.Op(H.KERNEL_IDS[lw.kernel], C.cast(C.byref(lw.params), C.c_void_p), 1, H._ptr(ins), out))
    scratch = max(lw.scratch for lw in lowered)
    scratch_off = cursor
    arena = cursor + scratch + 16
    op_arr = (H.Op * len(ops))(*ops)
    plan = H.Plan(C.cast(op_arr, C.c_void_p), len(ops), arena, scratch_off, scratch, None, 0)
    keep.append(op_arr)
    out_t = sg.outputs[0]
    return plan, arena, offsets[sg.inputs[0]], offsets[out_t], int(np.prod(sg.tensors[out_t].shape)), keep
