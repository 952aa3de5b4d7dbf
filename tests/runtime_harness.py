"""Host harness for the C runtime in firmware/: compile it into a shared library, call kernels
on numpy data through ctypes.

Two builds:
* default: gcc -std=c99 -Wall -Wextra -Werror -O2 -fPIC -shared
* sanitizer (environment EP_RUNTIME_SANITIZE=1): the same plus -fsanitize=address,undefined
  -fno-sanitize-recover=all. The Python process must then run with libasan preloaded
  (see `sanitizer_env()`); tests/test_runtime_sanitized.py re-runs the kernel suites that way.

Outputs are allocated with guard bytes on both sides; every call checks the guards, so a kernel
writing out of bounds fails even in the plain build.
"""

from __future__ import annotations

import ctypes as C
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgepack.packing import pack_indices

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware"
SOURCES = sorted((FW / "src").glob("*.c"))
HEADERS = sorted((FW / "include").glob("*.h")) + sorted((FW / "src").glob("*.h"))

BASE_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-fPIC", "-shared"]
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]

EP_OK = 0
GUARD = 64


def sanitizing() -> bool:
    return os.environ.get("EP_RUNTIME_SANITIZE") == "1"


def sanitizer_env() -> dict:
    """Environment for a child Python process that loads the sanitizer build."""
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True,
                             check=True).stdout.strip()
    env = dict(os.environ)
    env.update(EP_RUNTIME_SANITIZE="1", LD_PRELOAD=libasan,
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    return env


def build_library(sanitize: bool | None = None, out_dir: Path | None = None, defines: tuple = ()) -> Path:
    """Compile firmware/src/*.c into a shared library (cached by source hash and flags)."""
    sanitize = sanitizing() if sanitize is None else sanitize
    flags = BASE_FLAGS + (SAN_FLAGS if sanitize else []) + [f"-D{d}" for d in defines]
    h = hashlib.sha256(" ".join(flags).encode())
    for p in SOURCES + HEADERS:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    out_dir = Path(out_dir or tempfile.gettempdir()) / "edgepack-runtime"
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"libedgepack-{'san' if sanitize else 'o2'}-{h.hexdigest()[:16]}.so"
    if not lib.exists():
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        cmd = ["gcc", *flags, "-I", str(FW / "include"), *map(str, SOURCES), "-o", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"runtime build failed:\n{' '.join(cmd)}\n{r.stderr}")
        os.replace(tmp, lib)
    return lib


# ----------------------------------------------------------------------------------------
# ctypes mirrors of firmware/include/edgepack.h
# ----------------------------------------------------------------------------------------
i32 = C.c_int32
vp = C.c_void_p


class Shape(C.Structure):
    _fields_ = [("n", i32), ("h", i32), ("w", i32), ("c", i32)]


class WeightsS(C.Structure):
    _fields_ = [("form", i32), ("bits", i32), ("num_codes", i32), ("data_bytes", i32), ("codebook", vp), ("data", vp)]


class Requant(C.Structure):
    _fields_ = [("multiplier", vp), ("shift", vp), ("count", i32)]


def _i32s(*names):
    return [(n, i32) for n in names]


class Conv2DParams(C.Structure):
    _fields_ = ([("input", Shape), ("filter", Shape), ("output", Shape)]
                + _i32s("stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left", "input_offset",
                        "output_offset", "act_min", "act_max")
                + [("requant", Requant), ("weights", WeightsS), ("bias", vp)])


class DepthwiseParams(C.Structure):
    _fields_ = ([("input", Shape), ("filter", Shape), ("output", Shape)]
                + _i32s("depth_multiplier", "stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left",
                        "input_offset", "output_offset", "act_min", "act_max")
                + [("requant", Requant), ("weights", WeightsS), ("bias", vp)])


class FCParams(C.Structure):
    _fields_ = (_i32s("batches", "input_depth", "output_depth", "input_offset", "weights_offset", "output_offset",
                      "act_min", "act_max")
                + [("requant", Requant), ("weights", WeightsS), ("bias", vp), ("weight_sums", vp)])


class PoolParams(C.Structure):
    _fields_ = [("input", Shape), ("output", Shape)] + _i32s("filter_h", "filter_w", "stride_h", "stride_w",
                                                             "pad_top", "pad_left", "act_min", "act_max")


class MeanParams(C.Structure):
    _fields_ = [("input", Shape)] + _i32s("mode", "input_zero_point", "output_zero_point", "multiplier", "shift")


class AddParams(C.Structure):
    _fields_ = [("input1", Shape), ("input2", Shape), ("output", Shape)] + _i32s(
        "input1_offset", "input2_offset", "output_offset", "left_shift", "input1_multiplier", "input1_shift",
        "input2_multiplier", "input2_shift", "output_multiplier", "output_shift", "act_min", "act_max")


class MulParams(C.Structure):
    _fields_ = [("input1", Shape), ("input2", Shape), ("output", Shape)] + _i32s(
        "input1_offset", "input2_offset", "output_offset", "output_multiplier", "output_shift", "act_min", "act_max")


class SoftmaxParams(C.Structure):
    _fields_ = _i32s("rows", "depth", "input_multiplier", "input_left_shift", "diff_min")


class SigmoidParams(C.Structure):
    _fields_ = _i32s("size", "input_zero_point", "input_range_radius", "input_multiplier", "input_left_shift")


class HardSwishParams(C.Structure):
    _fields_ = _i32s("size", "input_zero_point", "output_zero_point", "reluish_multiplier_fixedpoint_int16",
                     "reluish_multiplier_exponent", "output_multiplier_fixedpoint_int16",
                     "output_multiplier_exponent")


class PadParams(C.Structure):
    _fields_ = [("input", Shape), ("output", Shape), ("before", i32 * 4), ("pad_value", i32)]


class ConcatParams(C.Structure):
    _fields_ = _i32s("num_inputs", "outer", "inner") + [("axis_sizes", vp)]


class ReshapeParams(C.Structure):
    _fields_ = _i32s("size")


class QuantizeParams(C.Structure):
    _fields_ = _i32s("size", "input_zero_point", "output_zero_point", "multiplier", "shift")


class MinMaxParams(C.Structure):
    _fields_ = [("input1", Shape), ("input2", Shape), ("output", Shape)]


class ReluParams(C.Structure):
    _fields_ = _i32s("size", "mode", "input_zero_point", "output_zero_point", "multiplier", "shift", "act_min",
                     "act_max")


class LeakyReluParams(C.Structure):
    _fields_ = _i32s("size", "input_zero_point", "output_zero_point", "identity_multiplier", "identity_shift",
                     "alpha_multiplier", "alpha_shift")


# issue 16: layout operators, resizes, TRANSPOSE_CONV, ARG_MAX/MIN, float I/O
MAX_DIMS = 6


class TransposeParams(C.Structure):
    _fields_ = [("rank", i32), ("input_dims", i32 * MAX_DIMS), ("perm", i32 * MAX_DIMS)]


class StridedSliceParams(C.Structure):
    _fields_ = [("rank", i32), ("input_dims", i32 * MAX_DIMS), ("begin", i32 * MAX_DIMS),
                ("stride", i32 * MAX_DIMS), ("output_dims", i32 * MAX_DIMS)]


class SplitParams(C.Structure):
    _fields_ = _i32s("num_outputs", "outer", "inner", "axis_total", "axis_begin") + [("axis_sizes", vp)]


class GatherParams(C.Structure):
    _fields_ = _i32s("batch", "outer", "axis_size", "inner", "num_indices")


class ResizeParams(C.Structure):
    _fields_ = [("input", Shape), ("output", Shape)] + _i32s("align_corners", "half_pixel_centers")


class PreluParams(C.Structure):
    _fields_ = [("input", Shape), ("alpha", Shape)] + _i32s("input_offset", "alpha_offset", "output_offset",
                                                            "multiplier_1", "shift_1", "multiplier_2", "shift_2")


class MirrorPadParams(C.Structure):
    _fields_ = [("rank", i32), ("input_dims", i32 * MAX_DIMS), ("before", i32 * MAX_DIMS),
                ("output_dims", i32 * MAX_DIMS), ("reflect", i32)]


class BatchSpaceParams(C.Structure):
    _fields_ = [("input", Shape), ("output", Shape)] + _i32s("block_h", "block_w", "pad_top", "pad_left", "pad_value")


class TransposeConvParams(C.Structure):
    _fields_ = ([("input", Shape), ("filter", Shape), ("output", Shape)]
                + _i32s("stride_h", "stride_w", "pad_top", "pad_left", "input_offset", "output_offset", "act_min",
                        "act_max")
                + [("requant", Requant), ("weights", WeightsS), ("bias", vp)])


class ArgParams(C.Structure):
    _fields_ = _i32s("outer", "axis_size", "inner")


class FloatQuantParams(C.Structure):
    _fields_ = _i32s("size", "zero_point") + [("scale", C.c_float)]


def nd_struct(cls, params: dict):
    """A ctypes N-D params struct from edgepack.layout's dict (lists become int32 arrays)."""
    return cls(**{k: ((i32 * MAX_DIMS)(*v) if isinstance(v, list) else v) for k, v in params.items()})


class Op(C.Structure):
    _fields_ = [("kernel", i32), ("params", vp), ("num_inputs", i32), ("inputs", vp), ("output", i32),
                ("num_outputs", i32), ("outputs", vp)]


class Plan(C.Structure):
    _fields_ = [("ops", vp), ("num_ops", i32), ("arena_bytes", i32), ("scratch_offset", i32),
                ("scratch_bytes", i32), ("constants", vp), ("num_constants", i32)]


HOOK = C.CFUNCTYPE(None, vp, i32, vp, i32)

KERNEL_IDS = dict(conv2d=1, depthwise_conv2d=2, fully_connected=3, max_pool2d=4, avg_pool2d=5, mean=6, add=7, mul=8,
                  softmax=9, logistic=10, tanh=11, hard_swish=12, pad=13, concatenation=14, reshape=15, quantize=16,
                  sub=17, relu=18, leaky_relu=19, maximum=20, minimum=21, transpose=40, strided_slice=41, split=42,
                  gather=43, resize_nearest_neighbor=44, resize_bilinear=45, transpose_conv=46, arg_max=47,
                  arg_min=48, dequantize=49, quantize_f32=50, space_to_batch_nd=51, batch_to_space_nd=52,
                  mirror_pad=53, prelu=54, squared_difference=55)


def shape4(dims) -> Shape:
    d = [int(v) for v in dims]
    d = [1] * (4 - len(d)) + d
    return Shape(*d)


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data


class Weights:
    """A weight tensor for the runtime: dense int8, or palette (codebook + packed indices)."""

    def __init__(self, form: int, bits: int, codebook: np.ndarray | None, data: np.ndarray, dense: np.ndarray):
        self.form, self.bits = form, bits
        self.codebook = None if codebook is None else np.ascontiguousarray(codebook, np.int8)
        self.data = data
        self.dense = dense  # the equivalent dense int8 tensor (what TFLM sees)

    @staticmethod
    def dense_form(w: np.ndarray) -> "Weights":
        w = np.ascontiguousarray(w, np.int8)
        return Weights(0, 8, None, w.ravel().copy(), w)

    @staticmethod
    def palette_form(codebook: np.ndarray, indices: np.ndarray, bits: int, shape, rows: int) -> "Weights":
        """indices: uint8 of the tensor's shape (TFLite order); rows: 1 (depthwise) or dim 0."""
        idx = np.asarray(indices, np.uint8).reshape(rows, -1)
        packed = np.frombuffer(pack_indices(idx, bits), np.uint8).copy()
        dense = np.asarray(codebook, np.int8)[np.asarray(indices).astype(np.int64)].reshape(shape)
        return Weights(1, bits, codebook, packed, dense)

    @staticmethod
    def from_dense_as_palette(w: np.ndarray, rows: int) -> "Weights":
        """Palette form of a real int8 tensor: codebook = sorted unique values, bits = ceil(log2 K)."""
        w = np.asarray(w, np.int8)
        codebook, inv = np.unique(w, return_inverse=True)
        k = codebook.size
        bits = max(1, int(np.ceil(np.log2(k)))) if k > 1 else 1
        return Weights.palette_form(codebook.astype(np.int8), inv.reshape(w.shape), bits, w.shape, rows)

    @property
    def num_codes(self) -> int:
        return 0 if self.codebook is None else int(self.codebook.size)

    def struct(self) -> WeightsS:
        return WeightsS(self.form, self.bits, self.num_codes, int(self.data.size), _ptr(self.codebook),
                        _ptr(self.data))

    @property
    def nbytes(self) -> int:
        return int(self.data.size) + self.num_codes


class Runtime:
    """The compiled runtime. Kernel wrappers take numpy arrays and keyword parameters."""

    def __init__(self, sanitize: bool | None = None, defines: tuple = ()):
        self.sanitize = sanitizing() if sanitize is None else sanitize
        self.path = build_library(self.sanitize, defines=defines)
        self.lib = C.CDLL(str(self.path))
        for name in ["ep_conv2d_s8_get_buffer_size", "ep_depthwise_conv2d_s8_get_buffer_size",
                     "ep_fully_connected_s8_get_buffer_size"]:
            getattr(self.lib, name).restype = i32
            getattr(self.lib, name).argtypes = [vp]
        for name in ["ep_conv2d_s8", "ep_depthwise_conv2d_s8", "ep_fully_connected_s8"]:
            getattr(self.lib, name).restype = i32
            getattr(self.lib, name).argtypes = [vp, vp, vp, vp, i32]
        for name in ["ep_max_pool2d_s8", "ep_avg_pool2d_s8", "ep_mean_s8", "ep_softmax_s8", "ep_logistic_s8",
                     "ep_tanh_s8", "ep_hard_swish_s8", "ep_pad_s8", "ep_concatenation_s8", "ep_reshape_s8",
                     "ep_quantize_s8", "ep_relu_s8", "ep_leaky_relu_s8", "ep_transpose_s8", "ep_strided_slice_s8",
                     "ep_split_s8", "ep_resize_nearest_neighbor_s8", "ep_resize_bilinear_s8", "ep_transpose_conv_s8",
                     "ep_arg_max_s8", "ep_arg_min_s8", "ep_dequantize_s8", "ep_quantize_f32_s8",
                     "ep_space_to_batch_nd_s8", "ep_batch_to_space_nd_s8", "ep_mirror_pad_s8"]:
            getattr(self.lib, name).restype = i32
            getattr(self.lib, name).argtypes = [vp, vp, vp]
        for name in ["ep_add_s8", "ep_mul_s8", "ep_sub_s8", "ep_maximum_s8", "ep_minimum_s8", "ep_gather_s8",
                     "ep_prelu_s8", "ep_squared_difference_s8"]:
            getattr(self.lib, name).restype = i32
            getattr(self.lib, name).argtypes = [vp, vp, vp, vp]
        self.lib.ep_plan_run.restype = i32
        self.lib.ep_plan_run.argtypes = [vp, vp, i32, HOOK, vp]
        self.lib.ep_op_tensor_bytes.restype = i32
        self.lib.ep_op_tensor_bytes.argtypes = [vp, i32]

    # -- output buffers with guards -------------------------------------------------------
    @staticmethod
    def _out(n: int):
        buf = np.full(n + 2 * GUARD, 0x5A, np.uint8)
        return buf, buf[GUARD:GUARD + n].view(np.int8)

    @staticmethod
    def _check_guard(buf: np.ndarray, n: int, what: str):
        if not (np.all(buf[:GUARD] == 0x5A) and np.all(buf[GUARD + n:] == 0x5A)):
            raise AssertionError(f"{what}: wrote outside its output buffer")

    def _call(self, fn: str, params, inputs: list, out_n: int, scratch_n: int | None = None) -> np.ndarray:
        buf, out = self._out(out_n)
        ins = [np.ascontiguousarray(x, np.int8) for x in inputs]
        args = [C.byref(params)] + [_ptr(x) for x in ins] + [_ptr(out)]
        if scratch_n is not None:
            scratch = np.zeros(max(scratch_n, 4) // 4 + 1, np.int32)
            args += [_ptr(scratch), scratch.nbytes]
        st = getattr(self.lib, fn)(*args)
        if st != EP_OK:
            raise RuntimeError(f"{fn} returned status {st}")
        self._check_guard(buf, out_n, fn)
        return out.copy()

    @staticmethod
    def _requant(mult, shift):
        m = np.ascontiguousarray(np.atleast_1d(mult), np.int32)
        s = np.ascontiguousarray(np.atleast_1d(shift), np.int32)
        return Requant(_ptr(m), _ptr(s), m.size), (m, s)

    # -- kernels ----------------------------------------------------------------------------
    def conv2d(self, x, w: Weights, bias, mult, shift, *, filter_shape, out_shape, stride=(1, 1),
               dilation=(1, 1), pad=(0, 0), input_offset=0, output_offset=0, act=(-128, 127)):
        rq, keep = self._requant(mult, shift)
        b = None if bias is None else np.ascontiguousarray(bias, np.int32)
        p = Conv2DParams(shape4(x.shape), shape4(filter_shape), shape4(out_shape), stride[0], stride[1],
                         dilation[0], dilation[1], pad[0], pad[1], input_offset, output_offset, act[0], act[1],
                         rq, w.struct(), _ptr(b))
        n = self.lib.ep_conv2d_s8_get_buffer_size(C.byref(p))
        assert n >= 0, "invalid conv params"
        return self._call("ep_conv2d_s8", p, [x], int(np.prod(out_shape)), n).reshape(out_shape)

    def depthwise_conv2d(self, x, w: Weights, bias, mult, shift, *, filter_shape, out_shape, depth_multiplier,
                         stride=(1, 1), dilation=(1, 1), pad=(0, 0), input_offset=0, output_offset=0,
                         act=(-128, 127)):
        rq, keep = self._requant(mult, shift)
        b = None if bias is None else np.ascontiguousarray(bias, np.int32)
        p = DepthwiseParams(shape4(x.shape), shape4(filter_shape), shape4(out_shape), depth_multiplier, stride[0],
                            stride[1], dilation[0], dilation[1], pad[0], pad[1], input_offset, output_offset, act[0],
                            act[1], rq, w.struct(), _ptr(b))
        n = self.lib.ep_depthwise_conv2d_s8_get_buffer_size(C.byref(p))
        assert n >= 0, "invalid depthwise params"
        return self._call("ep_depthwise_conv2d_s8", p, [x], int(np.prod(out_shape)), n).reshape(out_shape)

    def fully_connected(self, x, w: Weights, bias, mult, shift, *, batches, input_depth, output_depth,
                        input_offset=0, weights_offset=0, output_offset=0, act=(-128, 127)):
        rq, keep = self._requant(mult, shift)
        b = None if bias is None else np.ascontiguousarray(bias, np.int32)
        p = FCParams(batches, input_depth, output_depth, input_offset, weights_offset, output_offset, act[0], act[1],
                     rq, w.struct(), _ptr(b))
        n = self.lib.ep_fully_connected_s8_get_buffer_size(C.byref(p))
        assert n >= 0
        return self._call("ep_fully_connected_s8", p, [x], batches * output_depth, n).reshape(batches, output_depth)

    def pool(self, kind: str, x, *, out_shape, filt, stride, pad, act=(-128, 127)):
        p = PoolParams(shape4(x.shape), shape4(out_shape), filt[0], filt[1], stride[0], stride[1], pad[0], pad[1],
                       act[0], act[1])
        fn = "ep_max_pool2d_s8" if kind == "max" else "ep_avg_pool2d_s8"
        return self._call(fn, p, [x], int(np.prod(out_shape))).reshape(out_shape)

    def mean(self, x, *, mode, input_zero_point, output_zero_point, multiplier=0, shift=0):
        s = shape4(x.shape)
        p = MeanParams(s, mode, input_zero_point, output_zero_point, multiplier, shift)
        return self._call("ep_mean_s8", p, [x], s.n * s.c)

    def add(self, x1, x2, *, out_shape, **kw):
        p = AddParams(shape4(x1.shape), shape4(x2.shape), shape4(out_shape), **kw)
        return self._call("ep_add_s8", p, [x1, x2], int(np.prod(out_shape))).reshape(out_shape)

    def mul(self, x1, x2, *, out_shape, **kw):
        p = MulParams(shape4(x1.shape), shape4(x2.shape), shape4(out_shape), **kw)
        return self._call("ep_mul_s8", p, [x1, x2], int(np.prod(out_shape))).reshape(out_shape)

    def softmax(self, x, *, input_multiplier, input_left_shift, diff_min):
        depth = x.shape[-1]
        rows = x.size // depth
        p = SoftmaxParams(rows, depth, input_multiplier, input_left_shift, diff_min)
        return self._call("ep_softmax_s8", p, [x], x.size).reshape(x.shape)

    def sigmoid(self, kind: str, x, *, input_zero_point, input_range_radius, input_multiplier, input_left_shift):
        p = SigmoidParams(x.size, input_zero_point, input_range_radius, input_multiplier, input_left_shift)
        return self._call(f"ep_{kind}_s8", p, [x], x.size).reshape(x.shape)

    def hard_swish(self, x, **kw):
        p = HardSwishParams(x.size, **kw)
        return self._call("ep_hard_swish_s8", p, [x], x.size).reshape(x.shape)

    def pad(self, x, *, out_shape, before, pad_value):
        b = [0] * (4 - len(before)) + list(before)
        p = PadParams(shape4(x.shape), shape4(out_shape), (i32 * 4)(*b), pad_value)
        return self._call("ep_pad_s8", p, [x], int(np.prod(out_shape))).reshape(out_shape)

    def concatenation(self, xs: list, axis: int):
        shape = list(xs[0].shape)
        axis = axis % len(shape)
        outer = int(np.prod(shape[:axis]))
        inner = int(np.prod(shape[axis + 1:]))
        sizes = np.asarray([x.shape[axis] for x in xs], np.int32)
        ins = [np.ascontiguousarray(x, np.int8) for x in xs]
        ptrs = (vp * len(ins))(*[_ptr(x) for x in ins])
        p = ConcatParams(len(xs), outer, inner, _ptr(sizes))
        out_shape = shape[:axis] + [int(sizes.sum())] + shape[axis + 1:]
        n = int(np.prod(out_shape))
        buf, out = self._out(n)
        st = self.lib.ep_concatenation_s8(C.byref(p), C.cast(ptrs, vp), _ptr(out))
        if st != EP_OK:
            raise RuntimeError(f"ep_concatenation_s8 returned {st}")
        self._check_guard(buf, n, "concatenation")
        return out.copy().reshape(out_shape)

    def reshape(self, x, out_shape):
        p = ReshapeParams(x.size)
        return self._call("ep_reshape_s8", p, [x], x.size).reshape(out_shape)

    def quantize(self, x, **kw):
        p = QuantizeParams(x.size, **kw)
        return self._call("ep_quantize_s8", p, [x], x.size).reshape(x.shape)

    def sub(self, x1, x2, *, out_shape, **kw):
        p = AddParams(shape4(x1.shape), shape4(x2.shape), shape4(out_shape), **kw)
        return self._call("ep_sub_s8", p, [x1, x2], int(np.prod(out_shape))).reshape(out_shape)

    def minmax(self, kind: str, x1, x2, *, out_shape):
        p = MinMaxParams(shape4(x1.shape), shape4(x2.shape), shape4(out_shape))
        return self._call(f"ep_{kind}_s8", p, [x1, x2], int(np.prod(out_shape))).reshape(out_shape)

    def relu(self, x, **kw):
        p = ReluParams(x.size, **kw)
        return self._call("ep_relu_s8", p, [x], x.size).reshape(x.shape)

    def leaky_relu(self, x, **kw):
        p = LeakyReluParams(x.size, **kw)
        return self._call("ep_leaky_relu_s8", p, [x], x.size).reshape(x.shape)

    # -- issue 16 kernels ---------------------------------------------------------------------
    def _call_bytes(self, fn: str, params, inputs: list, out_bytes: int) -> np.ndarray:
        """Like _call, for any input dtypes and an output of out_bytes raw bytes (uint8)."""
        buf = np.full(out_bytes + 2 * GUARD, 0x5A, np.uint8)
        out = buf[GUARD:GUARD + out_bytes]
        ins = [np.ascontiguousarray(x) for x in inputs]
        st = getattr(self.lib, fn)(C.byref(params), *[_ptr(x) for x in ins], _ptr(out))
        if st != EP_OK:
            raise RuntimeError(f"{fn} returned status {st}")
        self._check_guard(buf, out_bytes, fn)
        return out.copy()

    def transpose(self, x, params: dict, out_shape):
        p = nd_struct(TransposeParams, params)
        return self._call("ep_transpose_s8", p, [x], x.size).reshape(out_shape)

    def strided_slice(self, x, params: dict, out_shape):
        p = nd_struct(StridedSliceParams, params)
        return self._call("ep_strided_slice_s8", p, [x], int(np.prod(out_shape))).reshape(out_shape)

    def split(self, x, params: dict) -> list:
        """Outputs as flat int8 arrays, each with its own guard bytes."""
        sizes = np.ascontiguousarray(params["axis_sizes"], np.int32)
        p = SplitParams(params["num_outputs"], params["outer"], params["inner"], params["axis_total"],
                        params["axis_begin"], _ptr(sizes))
        x = np.ascontiguousarray(x, np.int8)
        lens = [params["outer"] * int(s) * params["inner"] for s in sizes]
        bufs = [self._out(n) for n in lens]
        ptrs = (vp * len(bufs))(*[_ptr(o) for _, o in bufs])
        st = self.lib.ep_split_s8(C.byref(p), _ptr(x), C.cast(ptrs, vp))
        if st != EP_OK:
            raise RuntimeError(f"ep_split_s8 returned {st}")
        for (buf, _), n in zip(bufs, lens):
            self._check_guard(buf, n, "split")
        return [o.copy() for _, o in bufs]

    def gather(self, x, indices, params: dict, out_shape):
        p = GatherParams(**params)
        idx = np.ascontiguousarray(indices, np.int32)
        buf, out = self._out(int(np.prod(out_shape)))
        st = self.lib.ep_gather_s8(C.byref(p), _ptr(np.ascontiguousarray(x, np.int8)), _ptr(idx), _ptr(out))
        if st != EP_OK:
            raise RuntimeError(f"ep_gather_s8 returned {st}")
        self._check_guard(buf, out.size, "gather")
        return out.copy().reshape(out_shape)

    def resize(self, kind: str, x, out_shape, *, align_corners: bool, half_pixel_centers: bool):
        p = ResizeParams(shape4(x.shape), shape4(out_shape), int(align_corners), int(half_pixel_centers))
        return self._call(f"ep_resize_{kind}_s8", p, [x], int(np.prod(out_shape))).reshape(out_shape)

    def squared_difference(self, x1, x2, *, out_shape, **kw):
        p = AddParams(shape4(x1.shape), shape4(x2.shape), shape4(out_shape), **kw)
        return self._call("ep_squared_difference_s8", p, [x1, x2], int(np.prod(out_shape))).reshape(out_shape)

    def prelu(self, x, alpha, **kw):
        p = PreluParams(shape4(x.shape), shape4(alpha.shape), **kw)
        return self._call("ep_prelu_s8", p, [x, alpha], x.size).reshape(x.shape)

    def mirror_pad(self, x, params: dict, out_shape):
        p = nd_struct(MirrorPadParams, params)
        return self._call("ep_mirror_pad_s8", p, [x], int(np.prod(out_shape))).reshape(out_shape)

    def batch_space(self, kind: str, x, params: dict, out_shape):
        p = BatchSpaceParams(Shape(**params["input"]), Shape(**params["output"]), params["block_h"],
                             params["block_w"], params["pad_top"], params["pad_left"], params["pad_value"])
        return self._call(f"ep_{kind}_s8", p, [x], int(np.prod(out_shape))).reshape(out_shape)

    def transpose_conv(self, x, w: Weights, bias, mult, shift, *, filter_shape, out_shape, stride, pad,
                       input_offset, output_offset, act=(-128, 127)):
        rq, keep = self._requant(mult, shift)
        b = None if bias is None else np.ascontiguousarray(bias, np.int32)
        p = TransposeConvParams(shape4(x.shape), shape4(filter_shape), shape4(out_shape), stride[0], stride[1],
                                pad[0], pad[1], input_offset, output_offset, act[0], act[1], rq, w.struct(), _ptr(b))
        return self._call("ep_transpose_conv_s8", p, [x], int(np.prod(out_shape))).reshape(out_shape)

    def arg(self, kind: str, x, params: dict, out_shape):
        p = ArgParams(**params)
        n = params["outer"] * params["inner"]
        raw = self._call_bytes(f"ep_arg_{kind}_s8", p, [np.ascontiguousarray(x, np.int8)], n * 4)
        return raw.view(np.int32).reshape(out_shape)

    def dequantize(self, x, *, scale: float, zero_point: int):
        p = FloatQuantParams(x.size, zero_point, scale)
        raw = self._call_bytes("ep_dequantize_s8", p, [np.ascontiguousarray(x, np.int8)], 4 * x.size)
        return raw.view(np.float32).reshape(x.shape)

    def quantize_f32(self, x, *, scale: float, zero_point: int):
        p = FloatQuantParams(x.size, zero_point, scale)
        raw = self._call_bytes("ep_quantize_f32_s8", p, [np.ascontiguousarray(x, np.float32)], x.size)
        return raw.view(np.int8).reshape(x.shape)
