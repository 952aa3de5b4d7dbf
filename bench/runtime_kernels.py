#!/usr/bin/env python3
"""Instruction counts of the runtime's palette kernels against its dense kernels, on the
Cortex-M55 under QEMU (mps3-an547, -icount shift=5, SysTick counting, see
../shared/notes/simulator.md), on the weighted layers of the fixture models.

For every CONV_2D / FULLY_CONNECTED layer of each fixture model the script emits C data
(weights in both forms, multipliers, a real input from the digits test set, the expected output
computed by the host build, itself bit-exact with TFLM), builds one firmware image with
arm-none-eabi-gcc (-O2 -mcpu=cortex-m55 -mthumb -mfloat-abi=hard), runs it, checks that each
kernel's output matches, and prints a markdown table: instructions, weight bytes read, ratios.

    python bench/runtime_kernels.py [--models a,b] [--keep DIR] [--cflags "-O3"]
    python bench/runtime_kernels.py --plan pertensor --images 4   # whole model via ep_plan_run
    python bench/runtime_kernels.py --board mps2-an386 --random 48  # the DSP path on a Cortex-M4

Palette form of a real layer: codebook = sorted unique int8 values of the tensor, bits =
ceil(log2 K). With --k16, layers with more than 16 distinct values are re-clustered to 16 codes
(nearest of 16 quantiles) so every layer runs at K = 16.
"""

from __future__ import annotations

import argparse
import ctypes as C
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import runtime_harness as H  # noqa: E402
from tests.opmodels import run_tflm  # noqa: E402
from tests.runtime_lowering import load_model, lower, single_op_from  # noqa: E402
from edgepack.tflite import read_model, serialize_model  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
M55 = Path(__file__).resolve().parent / "m55"
CFLAGS = ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2",
          "-ffunction-sections", "-fdata-sections"]
TICKS_PER_INSN = 1.024  # -icount shift=5


def c_array(name: str, ctype: str, values, align: int = 4) -> str:
    vals = np.asarray(values).ravel()
    body = ",".join(str(int(v)) for v in vals) if vals.size else "0"
    return f"static const {ctype} {name}[{max(vals.size, 1)}] __attribute__((aligned({align}))) = {{{body}}};\n"


def shape_c(s) -> str:
    return f"{{{s.n},{s.h},{s.w},{s.c}}}"


def recluster16(w: np.ndarray) -> np.ndarray:
    """Map a tensor onto at most 16 int8 values (nearest of 16 quantile centres)."""
    vals = np.unique(w)
    if vals.size <= 16:
        return w
    centres = np.unique(np.round(np.quantile(w.astype(np.float64), np.linspace(0, 1, 16))).astype(np.int8))
    idx = np.abs(w.astype(np.int16)[..., None] - centres.astype(np.int16)).argmin(-1)
    return centres[idx]


@dataclass
class KernelCall:
    """One weighted kernel call: the ctypes params (pointing into `keep`), shapes, sizes."""

    kernel: str  # "conv2d", "depthwise_conv2d", "fully_connected"
    params: C.Structure
    out_shape: tuple
    scratch: int
    weight_bytes: int
    keep: list = field(default_factory=list)
    weight_sums: np.ndarray | None = None  # FULLY_CONNECTED: stored per-row weight sums (else NULL)

    def run(self, rt: H.Runtime, x: np.ndarray) -> np.ndarray:
        n = int(np.prod(self.out_shape))
        buf, out = rt._out(n)
        xin = np.ascontiguousarray(x, np.int8)
        scratch = np.zeros(max(self.scratch, 4) // 4 + 1, np.int32)
        st = getattr(rt.lib, f"ep_{self.kernel}_s8")(C.byref(self.params), H._ptr(xin), H._ptr(out),
                                                     H._ptr(scratch), scratch.nbytes)
        assert st == 0, f"{self.kernel} returned {st}"
        rt._check_guard(buf, n, self.kernel)
        return out.copy().reshape(self.out_shape)


def _input_int8(model, x: np.ndarray) -> np.ndarray:
    q = model.tensors[model.inputs[0]].quantization
    return np.clip(np.round(x / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8)


def collect_layers(models: list[str], k16: bool):
    """[(label, dense call, palette call, x, expected)] for every weighted layer, lowered by
    codegen (tests/runtime_lowering.py) and checked against TFLM on the host first."""
    rt = H.Runtime(sanitize=False)
    layers = []
    for name in models:
        model = load_model(FIXTURES / name)
        if k16:
            for _, w in model.weight_tensors():
                w.data = recluster16(np.asarray(w.data, np.int8)).reshape(w.data.shape)
            with tempfile.TemporaryDirectory() as d:
                (Path(d) / name).write_bytes(serialize_model(model))
                model = read_model(Path(d) / name)
        x = np.load(FIXTURES / "digits_test.npz")["x"][:1]
        act = _input_int8(model, x)
        for k in range(len(model.operators)):
            dense = lower(model, k, "dense")
            act = act.reshape(dense.in_shape)
            expected = dense.run(rt, act)
            tflm = run_tflm(single_op_from(model, k), [act])
            assert np.array_equal(expected.ravel(), tflm.ravel()), f"host kernel differs from TFLM at {name} op {k}"
            if dense.weight_bytes:
                pal = lower(model, k, "palette")
                assert np.array_equal(pal.run(rt, act).ravel(), tflm.ravel())
                short = name.replace("digits_", "").replace("_int8", "").replace(".tflite", "")
                calls = [KernelCall(lw.kernel, lw.params, lw.out_shape, lw.scratch, lw.weight_bytes, [lw])
                         for lw in (dense, pal)]
                layers.append((f"{short} op{k} {dense.kernel}", *calls, act.copy(), expected))
            act = expected
    return layers


def weighted_pair(label: str, kind: str, x: np.ndarray, wshape, codebook, idx, bits: int, rng, *, out_shape,
                  zp_in: int, zp_out: int, shift_range=(-12, -6), depth_multiplier: int = 1, stride=(1, 1),
                  pad=(0, 0)):
    """One layer in both weight forms (dense int8 and the palette of `codebook`/`idx`), random
    per-channel requantization and bias, the host build's output as the expected value."""
    rt = H.Runtime(sanitize=False)
    rows = 1 if kind == "depthwise_conv2d" else wshape[0]
    chans = wshape[-1] if kind == "depthwise_conv2d" else wshape[0]
    pal = H.Weights.palette_form(codebook, idx, bits, wshape, rows)
    dense = H.Weights.dense_form(pal.dense)
    m = rng.integers(1 << 30, (1 << 31) - 1, size=chans).astype(np.int32)
    sh = rng.integers(shift_range[0], shift_range[1], size=chans).astype(np.int32)
    bias = rng.integers(-5000, 5000, size=chans).astype(np.int32)
    lws = []
    for wf in (dense, pal):
        rq, keep = H.Runtime._requant(m, sh)
        keep = [keep, wf, bias]
        if kind == "fully_connected":
            batches, din = x.shape
            p = H.FCParams(batches, din, chans, -zp_in, 0, zp_out, -128, 127, rq, wf.struct(), H._ptr(bias))
            lws.append(KernelCall(kind, p, out_shape, rt.lib.ep_fully_connected_s8_get_buffer_size(C.byref(p)),
                                  wf.nbytes, keep))
        elif kind == "conv2d":
            p = H.Conv2DParams(H.shape4(x.shape), H.shape4(wshape), H.shape4(out_shape), stride[0], stride[1], 1, 1,
                               pad[0], pad[1], -zp_in, zp_out, -128, 127, rq, wf.struct(), H._ptr(bias))
            lws.append(KernelCall(kind, p, out_shape, rt.lib.ep_conv2d_s8_get_buffer_size(C.byref(p)), wf.nbytes,
                                  keep))
        else:
            p = H.DepthwiseParams(H.shape4(x.shape), H.shape4(wshape), H.shape4(out_shape), depth_multiplier,
                                  stride[0], stride[1], 1, 1, pad[0], pad[1], -zp_in, zp_out, -128, 127, rq,
                                  wf.struct(), H._ptr(bias))
            n = rt.lib.ep_depthwise_conv2d_s8_get_buffer_size(C.byref(p))
            lws.append(KernelCall(kind, p, out_shape, n, wf.nbytes, keep))
    expected = lws[0].run(rt, x)
    assert np.array_equal(lws[1].run(rt, x), expected), f"{label}: palette differs from dense on the host"
    return (label, lws[0], lws[1], x, expected)


def random_layers(n: int, seed: int):
    """Random CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED layers (odd lengths and channel
    counts, every width 1-8, both forms) with the host build's outputs as expected values: checks
    the Arm-specific (DSP) code paths."""
    layers = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        bits = 1 + i % 8
        k = int(rng.integers(1, (1 << bits) + 1))
        codebook = rng.integers(-128, 128, size=k).astype(np.int8)
        zp_in, zp_out = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        if i % 3 == 2:
            c, dm = int(rng.integers(1, 41)), int(rng.choice([1, 1, 1, 2]))
            kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
            h, w = int(rng.integers(kh, 11)), int(rng.integers(kw, 11))
            sy, sx = int(rng.integers(1, 3)), int(rng.integers(1, 3))
            py, px = int(rng.integers(0, kh)), int(rng.integers(0, kw))
            oh, ow = (h + py - kh) // sy + 1, (w + px - kw) // sx + 1
            x = rng.integers(-128, 128, size=(1, h, w, c)).astype(np.int8)
            shape = (1, kh, kw, c * dm)
            idx = rng.integers(0, k, size=shape).astype(np.uint8)
            layers.append(weighted_pair(f"random {i} depthwise_conv2d b={bits}", "depthwise_conv2d", x, shape,
                                        codebook, idx, bits, rng, out_shape=(1, oh, ow, c * dm), zp_in=zp_in,
                                        zp_out=zp_out, depth_multiplier=dm, stride=(sy, sx), pad=(py, px)))
        elif i % 2:
            din, dout, batches = int(rng.integers(1, 300)), int(rng.integers(1, 24)), int(rng.integers(1, 3))
            x = rng.integers(-128, 128, size=(batches, din)).astype(np.int8)
            idx = rng.integers(0, k, size=(dout, din)).astype(np.uint8)
            layers.append(weighted_pair(f"random {i} fully_connected b={bits}", "fully_connected", x, (dout, din),
                                        codebook, idx, bits, rng, out_shape=(batches, dout), zp_in=zp_in,
                                        zp_out=zp_out))
        else:
            cin, cout = int(rng.integers(1, 12)), int(rng.integers(1, 12))
            kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            h, w = int(rng.integers(kh, 9)), int(rng.integers(kw, 9))
            x = rng.integers(-128, 128, size=(1, h, w, cin)).astype(np.int8)
            idx = rng.integers(0, k, size=(cout, kh, kw, cin)).astype(np.uint8)
            layers.append(weighted_pair(f"random {i} conv2d b={bits}", "conv2d", x, (cout, kh, kw, cin), codebook,
                                        idx, bits, rng, out_shape=(1, h - kh + 1, w - kw + 1, cout), zp_in=zp_in,
                                        zp_out=zp_out))
    return layers


# MobileNetV2's depthwise (3x3, stride 1 unless noted) and pointwise layers, at 14x14 / 7x7 so
# that QEMU stays fast: (label, kind, H, W, C_in, C_out, stride).
MOBILENET_LAYERS = [
    ("dw 3x3 14x14x32", "depthwise_conv2d", 14, 14, 32, 32, 1),
    ("dw 3x3 14x14x96", "depthwise_conv2d", 14, 14, 96, 96, 1),
    ("dw 3x3 14x14x144", "depthwise_conv2d", 14, 14, 144, 144, 1),
    ("dw 3x3 14x14x144 s2", "depthwise_conv2d", 14, 14, 144, 144, 2),
    ("dw 3x3 14x14x192", "depthwise_conv2d", 14, 14, 192, 192, 1),
    ("dw 3x3 14x14x384", "depthwise_conv2d", 14, 14, 384, 384, 1),
    ("dw 3x3 7x7x576", "depthwise_conv2d", 7, 7, 576, 576, 1),
    ("dw 3x3 7x7x960", "depthwise_conv2d", 7, 7, 960, 960, 1),
    ("pw 1x1 7x7 64->384", "conv2d", 7, 7, 64, 384, 1),
    ("pw 1x1 7x7 384->64", "conv2d", 7, 7, 384, 64, 1),
    ("pw 1x1 7x7 96->576", "conv2d", 7, 7, 96, 576, 1),
    ("pw 1x1 7x7 576->96", "conv2d", 7, 7, 576, 96, 1),
]


def mobilenet_layers(seed: int, k: int = 16):
    """MOBILENET_LAYERS with clustered weights: K codes (a layer's int8 codebook), random indices,
    SAME padding, requantization scaled so that outputs spread over the int8 range."""
    layers = []
    for i, (label, kind, h, w, cin, cout, stride) in enumerate(MOBILENET_LAYERS):
        rng = np.random.default_rng([seed, 1000 + i])
        bits = max(1, int(np.ceil(np.log2(k))))
        codebook = np.sort(rng.choice(np.arange(-127, 128), size=k, replace=False)).astype(np.int8)
        x = rng.integers(-128, 128, size=(1, h, w, cin)).astype(np.int8)
        taps = 9 if kind == "depthwise_conv2d" else cin
        # accumulator spread ~ sqrt(taps) * 74 * 74; a shift that brings it to ~ +-40
        sh = -int(np.ceil(np.log2(np.sqrt(taps) * 74 * 74 / 40)))
        if kind == "depthwise_conv2d":
            oh, ow = -(-h // stride), -(-w // stride)
            pad = (max((oh - 1) * stride + 3 - h, 0) // 2, max((ow - 1) * stride + 3 - w, 0) // 2)
            shape = (1, 3, 3, cout)
        else:
            oh, ow, pad, shape = h, w, (0, 0), (cout, 1, 1, cin)
        idx = rng.integers(0, k, size=shape).astype(np.uint8)
        layers.append(weighted_pair(f"{label}", kind, x, shape, codebook, idx, bits, rng, out_shape=(1, oh, ow, cout),
                                    zp_in=int(rng.integers(-20, 20)), zp_out=int(rng.integers(-20, 20)),
                                    shift_range=(sh, sh + 1), stride=(stride, stride), pad=pad))
    return layers


def _read(addr, n: int, dtype) -> np.ndarray:
    return np.frombuffer(C.string_at(addr, n * np.dtype(dtype).itemsize), dtype)


def emit_layer(i: int, form: str, lw, x, expected) -> tuple[str, str]:
    """C definitions and the call expression for one layer in one form (the arrays read back
    through the params' pointers)."""
    p = lw.params
    m, s = _read(p.requant.multiplier, p.requant.count, np.int32), _read(p.requant.shift, p.requant.count, np.int32)
    w = p.weights
    chans = p.output_depth if lw.kernel == "fully_connected" else p.output.c
    pre = f"L{i}{form[0]}"
    out = []
    out.append(c_array(f"{pre}_m", "int32_t", m))
    out.append(c_array(f"{pre}_s", "int32_t", s))
    if p.bias:
        out.append(c_array(f"{pre}_b", "int32_t", _read(p.bias, chans, np.int32)))
    else:
        out.append(f"#define {pre}_b NULL\n")
    if w.form == 0:
        out.append(c_array(f"{pre}_w", "int8_t", _read(w.data, w.data_bytes, np.int8)))
        out.append(f"#define {pre}_cb NULL\n")
    else:
        out.append(c_array(f"{pre}_w", "uint8_t", _read(w.data, w.data_bytes, np.uint8)))
        out.append(c_array(f"{pre}_cb", "int8_t", _read(w.codebook, w.num_codes, np.int8)))
    weights = f"{{{w.form},{w.bits},{w.num_codes},{w.data_bytes},{pre}_cb,{pre}_w}}"
    rq = f"{{{pre}_m,{pre}_s,{len(m)}}}"
    if lw.kernel == "conv2d":
        out.append(
            f"static const ep_conv2d_params {pre}_p = {{{shape_c(p.input)},{shape_c(p.filter)},{shape_c(p.output)},"
            f"{p.stride_h},{p.stride_w},{p.dilation_h},{p.dilation_w},{p.pad_top},{p.pad_left},{p.input_offset},"
            f"{p.output_offset},{p.act_min},{p.act_max},{rq},{weights},{pre}_b}};\n")
        call = f"ep_conv2d_s8(&{pre}_p, L{i}_in, out_buf, scratch, sizeof scratch)"
    elif lw.kernel == "depthwise_conv2d":
        out.append(
            f"static const ep_depthwise_conv2d_params {pre}_p = {{{shape_c(p.input)},{shape_c(p.filter)},"
            f"{shape_c(p.output)},{p.depth_multiplier},{p.stride_h},{p.stride_w},{p.dilation_h},{p.dilation_w},"
            f"{p.pad_top},{p.pad_left},{p.input_offset},{p.output_offset},{p.act_min},{p.act_max},{rq},{weights},"
            f"{pre}_b}};\n")
        call = f"ep_depthwise_conv2d_s8(&{pre}_p, L{i}_in, out_buf, scratch, sizeof scratch)"
    else:
        sums = "NULL"
        if getattr(lw, "weight_sums", None) is not None:
            out.append(c_array(f"{pre}_ws", "int32_t", lw.weight_sums))
            sums = f"{pre}_ws"
        out.append(
            f"static const ep_fully_connected_params {pre}_p = {{{p.batches},{p.input_depth},{p.output_depth},"
            f"{p.input_offset},{p.weights_offset},{p.output_offset},{p.act_min},{p.act_max},{rq},{weights},"
            f"{pre}_b,{sums}}};\n")
        call = f"ep_fully_connected_s8(&{pre}_p, L{i}_in, out_buf, scratch, sizeof scratch)"
    return "".join(out), call


def generate(layers, repeat: int) -> str:
    parts = ['#include <stdio.h>\n#include <string.h>\n#include "edgepack.h"\n#include "counter.h"\n\n',
             f"static int8_t out_buf[{max([65536] + [int(e.size) for *_, e in layers])}];\n"
             "static int32_t scratch[16384];\n"]
    calls = []
    for i, (label, dense, pal, x, expected) in enumerate(layers):
        parts.append(c_array(f"L{i}_in", "int8_t", x))
        parts.append(c_array(f"L{i}_exp", "int8_t", expected))
        for form, lw in (("dense", dense), ("palette", pal)):
            code, call = emit_layer(i, form, lw, x, expected)
            parts.append(code)
            calls.append((i, form, call, expected.size))
    parts.append("\nint main(void)\n{\n    uint64_t t0, t1, base;\n    ep_status st;\n    int bad = 0;\n"
                 "    counter_start();\n    t0 = counter_read();\n    t1 = counter_read();\n"
                 "    base = t1 - t0;\n"
                 # calibration: 1 + 2 * 4096 instructions of known count (SysTick ticks per
                 # instruction differ by board: 1.024 on mps3-an547, 0.8 on mps2-an386, ...)
                 "    t0 = counter_read();\n"
                 "    __asm__ volatile(\"mov r0, #4096\\n1: subs r0, r0, #1\\n bne 1b\" ::: \"r0\", \"cc\");\n"
                 "    t1 = counter_read();\n"
                 "    printf(\"CAL %lu\\n\", (unsigned long)(t1 - t0 - base));\n")
    for i, form, call, n in calls:
        parts.append(
            f"    memset(out_buf, 0, {n});\n    t0 = counter_read();\n"
            f"    for (int r = 0; r < {repeat}; ++r) st = {call};\n    t1 = counter_read();\n"
            f"    {{ int ok = st == EP_OK && memcmp(out_buf, L{i}_exp, {n}) == 0; bad += !ok;\n"
            f"      printf(\"RESULT {i} {form} %lu %s\\n\", (unsigned long)((t1 - t0 - base) / {repeat}),"
            f" ok ? \"ok\" : \"MISMATCH\"); }}\n")
    parts.append('    printf("DONE %d\\n", bad);\n    return bad ? 1 : 0;\n}\n')
    return "".join(parts)


def c_struct(st) -> str:
    """Initializer of an all-integer ctypes struct (nested structs and int arrays allowed)."""
    vals = []
    for name, _ in st._fields_:
        v = getattr(st, name)
        if isinstance(v, C.Structure):
            vals.append(c_struct(v))
        elif isinstance(v, C.Array):
            vals.append("{" + ",".join(str(int(e)) for e in v) + "}")
        else:
            vals.append(str(int(v)))
    return "{" + ",".join(vals) + "}"


C_TYPES = {"max_pool2d": "ep_pool_params", "avg_pool2d": "ep_pool_params", "reshape": "ep_reshape_params",
           "softmax": "ep_softmax_params"}


def generate_plan(name: str, xs: np.ndarray, expected: np.ndarray) -> str:
    """Firmware running a whole fixture model through ep_plan_run, dense and palette, with a
    per-op hook that records SysTick ticks; checks every output against TFLM's."""
    from tests.runtime_lowering import build_plan

    model = load_model(FIXTURES / name)
    parts = ['#include <stdio.h>\n#include <string.h>\n#include "edgepack.h"\n#include "counter.h"\n\n']
    parts.append(c_array("INPUTS", "int8_t", xs))
    parts.append(c_array("EXPECTED", "int8_t", expected))
    plans = []
    for form in ("dense", "palette"):
        plan, arena, in_off, out_off, out_n, keep = build_plan(model, form)
        lowered = keep[0:-1:2]
        ops = C.cast(plan.ops, C.POINTER(H.Op))
        entries = []
        for k, lw in enumerate(lowered):
            tag = f"{form[0]}{k}"
            if lw.kernel in ("conv2d", "fully_connected"):
                code, _ = emit_layer(k, form, lw, None, None)
                parts.append(code)
                pname = f"L{k}{form[0]}_p"
            else:
                pname = f"P{tag}"
                parts.append(f"static const {C_TYPES[lw.kernel]} {pname} = {c_struct(lw.params)};\n")
            parts.append(f"static const int32_t IN{tag}[1] = {{{C.cast(ops[k].inputs, C.POINTER(C.c_int32))[0]}}};\n")
            entries.append(f"{{{H.KERNEL_IDS[lw.kernel]},&{pname},1,IN{tag},{ops[k].output},0,NULL}}")
        parts.append(f"static const ep_op OPS_{form}[] = {{{','.join(entries)}}};\n")
        parts.append(f"static const ep_plan PLAN_{form} = {{OPS_{form},{len(entries)},{plan.arena_bytes},"
                     f"{plan.scratch_offset},{plan.scratch_bytes},NULL,0}};\n")
        plans.append((form, len(entries), plan.arena_bytes, in_off, out_off, out_n))
    arena_max = max(p[2] for p in plans)
    n_in = int(np.prod(xs.shape[1:]))
    parts.append(f"static uint8_t arena[{arena_max}] __attribute__((aligned(16)));\n"
                 "static uint64_t t_before, op_ticks[64];\n"
                 "static void hook(void *u, int32_t k, const ep_op *op, int32_t phase)\n"
                 "{\n    const uint64_t t = counter_read();\n    (void)u; (void)op;\n"
                 "    if (phase == 0) t_before = t; else if (k < 64) op_ticks[k] += t - t_before;\n}\n\n"
                 "int main(void)\n{\n    int bad = 0;\n    counter_start();\n")
    for form, n_ops, arena_bytes, in_off, out_off, out_n in plans:
        parts.append(
            f"    memset(op_ticks, 0, sizeof op_ticks);\n"
            f"    for (int i = 0; i < {len(xs)}; ++i) {{\n"
            f"        memcpy(arena + {in_off}, INPUTS + i * {n_in}, {n_in});\n"
            f"        ep_status st = ep_plan_run(&PLAN_{form}, arena, {arena_bytes}, hook, NULL);\n"
            f"        if (st != EP_OK || memcmp(arena + {out_off}, EXPECTED + i * {out_n}, {out_n}) != 0) ++bad;\n"
            f"    }}\n"
            f"    for (int k = 0; k < {n_ops}; ++k) printf(\"PLAN {form} %d %lu\\n\", k,"
            f" (unsigned long)(op_ticks[k] / {len(xs)}));\n")
    parts.append('    printf("DONE %d\\n", bad);\n    return bad ? 1 : 0;\n}\n')
    return "".join(parts)


def run_plan_bench(name: str, n_images: int, work: Path, cflags: list[str], board: str = "mps3-an547") -> int:
    model_bytes = (FIXTURES / name).read_bytes()
    model = load_model(FIXTURES / name)
    xs = _input_int8(model, np.load(FIXTURES / "digits_test.npz")["x"][:n_images])
    expected = np.stack([run_tflm(model_bytes, [img[None]]).ravel() for img in xs])
    out = build_and_run(generate_plan(name, xs, expected), work, cflags, board)
    res = {(m[1], int(m[2])): int(m[3]) for m in re.finditer(r"PLAN (\w+) (\d+) (\d+)", out)}
    print(f"{name}: whole model through ep_plan_run on QEMU {board}, {n_images} images, outputs vs TFLM: "
          f"{'all equal' if 'DONE 0' in out else 'MISMATCH'}\n")
    print("| op | kernel | dense instr | palette instr | ratio |")
    print("| --- | --- | --- | --- | --- |")
    td = tp = 0
    for k in range(len(model.operators)):
        d, p = res[("dense", k)] / TICKS_PER_INSN, res[("palette", k)] / TICKS_PER_INSN
        td, tp = td + d, tp + p
        print(f"| {k} | {lower(model, k).kernel} | {d:,.0f} | {p:,.0f} | {p / d:.3f} |")
    print(f"| | **model** | {td:,.0f} | {tp:,.0f} | {tp / td:.3f} |")
    return 0 if "DONE 0" in out else 1


# Boards the bench runs on: QEMU machine, compiler flags. mps3-an547 (Helium) links with
# bench/m55/link.ld; the DSP-only MPS2 boards with a script made from their board file.
BENCH_BOARDS = {
    "mps3-an547": ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"],
    "mps2-an386": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "mps2-an500": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
    "mps2-an505": ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
}
COMMON_CFLAGS = CFLAGS[3:]  # everything but the CPU flags


CAL_INSNS = 1 + 2 * 4096  # the calibration loop generate() times


def ticks_per_insn(out: str) -> float:
    """SysTick ticks per instruction measured by the firmware's calibration loop."""
    m = re.search(r"CAL (\d+)", out)
    return int(m[1]) / CAL_INSNS if m else TICKS_PER_INSN


def board_cflags(board: str) -> list[str]:
    return BENCH_BOARDS[board] + COMMON_CFLAGS


def linker_script(board: str, work: Path) -> Path:
    """bench/m55/link.ld for the M55; for another board the same layout over its board file's
    regions (code, read-only layer data in the model region, data + stack)."""
    if board == "mps3-an547":
        return M55 / "link.ld"
    from edgepack.boards import load_board

    b = load_board(board)
    code, model, data = b.region_for("code"), b.region_for("model"), b.region_for("data")
    text = (M55 / "link.ld").read_text()
    memory = (f"MEMORY\n{{\n    ITCM (rx)  : ORIGIN = {code.address:#x}, LENGTH = {code.size:#x}\n"
              f"    DTCM (rwx) : ORIGIN = {data.address:#x}, LENGTH = {data.size:#x}\n"
              f"    DDR  (r)   : ORIGIN = {model.address:#x}, LENGTH = {model.size:#x}\n}}\n")
    text = re.sub(r"MEMORY\s*\{[^}]*\}\n", memory, text, count=1)
    path = work / f"{board}.ld"
    path.write_text(text)
    return path


def build_and_run(src: str, work: Path, cflags: list[str], board: str = "mps3-an547", libs: tuple = ()) -> str:
    (work / "bench_main.c").write_text(src)
    elf = work / "fw.elf"
    cmd = (["arm-none-eabi-gcc", *cflags, "-I", str(ROOT / "firmware/include"), "-I", str(M55),
            str(work / "bench_main.c"), str(M55 / "startup.c"), *map(str, sorted((ROOT / "firmware/src").glob("*.c"))),
            "-T", str(linker_script(board, work)), "-nostartfiles", "--specs=nano.specs", "--specs=rdimon.specs",
            "-Wl,--gc-sections", f"-Wl,-Map={work / 'fw.map'}", *map(str, libs), "-o", str(elf)])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"build failed:\n{' '.join(cmd)}\n{r.stderr}")
    r = subprocess.run(["qemu-system-arm", "-M", board, "-nographic", "-semihosting-config",
                        "enable=on,target=native", "-icount", "shift=5", "-kernel", str(elf)],
                       capture_output=True, text=True, timeout=600)
    if "DONE" not in r.stdout:
        raise SystemExit(f"firmware did not finish (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="all", help="comma-separated fixture names (substring match) or 'all'")
    ap.add_argument("--k16", action="store_true", help="re-cluster every layer to 16 codes first")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--cflags", default="", help="extra compiler flags")
    ap.add_argument("--keep", help="keep the build directory here")
    ap.add_argument("--random", type=int, default=0, help="also run N random layers (correctness of Arm paths)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mobilenet", action="store_true",
                    help="also run MobileNetV2-shaped depthwise 3x3 and pointwise 1x1 layers at K = 16")
    ap.add_argument("--plan", help="run this fixture model end to end through ep_plan_run (per-op hook counts)")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--board", default="mps3-an547", choices=sorted(BENCH_BOARDS),
                    help="QEMU board: mps3-an547 (Cortex-M55, Helium) or a DSP-only MPS2 board")
    args = ap.parse_args(argv)
    cflags = board_cflags(args.board) + args.cflags.split()
    if args.plan:
        work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ep-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        name = next(p.name for p in sorted(FIXTURES.glob("*.tflite")) if args.plan in p.name)
        return run_plan_bench(name, args.images, work, cflags, args.board)
    names = sorted(p.name for p in FIXTURES.glob("*.tflite"))
    if args.models == "none":
        names = []
    elif args.models != "all":
        names = [n for n in names if any(s in n for s in args.models.split(","))]
    layers = collect_layers(names, args.k16) if names else []
    if args.mobilenet:
        layers += mobilenet_layers(args.seed)
    layers += random_layers(args.random, args.seed)
    src = generate(layers, args.repeat)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    out = build_and_run(src, work, cflags, args.board)
    res = {}
    tpi = ticks_per_insn(out)
    for m in re.finditer(r"RESULT (\d+) (\w+) (\d+) (\w+)", out):
        res[(int(m[1]), m[2])] = (int(m[3]), m[4])
    print(f"QEMU {args.board}, -icount shift=5, arm-none-eabi-gcc {' '.join(cflags)}")
    print(f"instructions = SysTick ticks / {tpi:.3f} (calibrated on a loop of known length); weight bytes = "
          "indices + codebook (palette) or int8 weights\n")
    print("| layer | K | bits | dense instr | palette instr | instr ratio | dense weight B | palette weight B "
          "| bytes ratio | outputs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    tot = {"d": 0, "p": 0, "db": 0, "pb": 0}
    for i, (label, dense, pal, x, expected) in enumerate(layers):
        (td, okd), (tp, okp) = res[(i, "dense")], res[(i, "palette")]
        wf = pal.params.weights
        di, pi = td / tpi, tp / tpi
        tot["d"] += di
        tot["p"] += pi
        tot["db"] += dense.weight_bytes
        tot["pb"] += pal.weight_bytes
        print(f"| {label} | {wf.num_codes} | {wf.bits} | {di:,.0f} | {pi:,.0f} | {pi / di:.3f} | "
              f"{dense.weight_bytes:,} | {pal.weight_bytes:,} | {pal.weight_bytes / dense.weight_bytes:.3f} | "
              f"{'ok' if okd == okp == 'ok' else 'MISMATCH'} |")
    print(f"| **total** | | | {tot['d']:,.0f} | {tot['p']:,.0f} | {tot['p'] / tot['d']:.3f} | {tot['db']:,} | "
          f"{tot['pb']:,} | {tot['pb'] / tot['db']:.3f} | |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if "DONE 0" in out else 1


if __name__ == "__main__":
    sys.exit(main())
