"""Spec: the layout, resize, TRANSPOSE_CONV, ARG_MAX/ARG_MIN and float I/O kernels match the TFLM
interpreter bit for bit (issue 16).

As in test_runtime_kernels.py: EP_RUNTIME_CONFIGS (default 300) seeded random configurations per
operator, each a single-operator model run by TFLM; the runtime's kernel, fed the parameters
edgepack/ops/views.py and edgepack/quant.py compute, must give zero mismatched bytes. Operators that
share a kernel (SLICE and REVERSE_V2 on STRIDED_SLICE, SPACE_TO_DEPTH and DEPTH_TO_SPACE on
TRANSPOSE, SPLIT_V and UNPACK on SPLIT, PACK on CONCATENATION) are each checked against their own
TFLM operator. Reproduce: EP_TEST_SEED=<seed> EP_TEST_ONLY=<index> pytest -k <operator>. Also run
under ASan + UBSan by test_runtime_sanitized.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack.ops import views
from edgepack.quant import ACTIVATIONS, activation_range, conv_multipliers
from tests.opmodels import T, run_tflm, run_tflm_outputs, single_op_model
from tests.runtime_harness import Runtime, Weights
from tests.test_runtime_kernels import (N_CONFIGS, compare, configs, fused, i8, log_uniform, random_weights_palette,
                                        report)

OP = tfl.BuiltinOperator


@pytest.fixture(scope="module")
def rt():
    return Runtime()


def draw_shape(rng, rank: int, max_dim: int = 5, max_size: int = 4000) -> list[int]:
    shape = [int(rng.integers(1, max_dim + 1)) for _ in range(rank)]
    while int(np.prod(shape)) > max_size:
        shape[int(np.argmax(shape))] //= 2
    return shape


def quant(rng) -> tuple[float, int]:
    return log_uniform(rng, 0.002, 0.2), int(rng.integers(-128, 128))


def i32(values) -> np.ndarray:
    return np.asarray(values, np.int32)


# ------------------------------------------------------------------------------ TRANSPOSE
def test_transpose(rt):
    """Ranks 1-5 (TFLM refuses 6-D), random permutations, size-1 dimensions included."""
    failures = []
    for i, rng in configs(40):
        rank = int(rng.integers(1, 6))
        shape = draw_shape(rng, rank)
        perm = [int(p) for p in rng.permutation(rank)]
        s, zp = quant(rng)
        x = i8(rng, shape)
        out = [shape[p] for p in perm]
        model = single_op_model(OP.TRANSPOSE, [T(shape, s=s, zp=zp), T([rank], np.int32, data=i32(perm))],
                                [T(out, s=s, zp=zp)], "TransposeOptions", tfl.TransposeOptionsT(), version=2)
        expected = run_tflm(model, [x])
        got = rt.transpose(x, views.transpose_params(shape, perm), out)
        compare(failures, "transpose", i, expected, got, f"{shape} perm {perm}")
    report(failures, N_CONFIGS)


@pytest.mark.parametrize("kind", ["SPACE_TO_DEPTH", "DEPTH_TO_SPACE"])
def test_space_depth(rt, kind):
    failures = []
    for i, rng in configs(60 if kind == "SPACE_TO_DEPTH" else 61):
        b = int(rng.integers(1, 5))
        n, h, w, c = int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 6))
        s, zp = quant(rng)
        if kind == "SPACE_TO_DEPTH":
            shape, out = [n, h * b, w * b, c], [n, h, w, b * b * c]
            opts, name, params = tfl.SpaceToDepthOptionsT(), "SpaceToDepthOptions", views.space_to_depth_params
        else:
            shape, out = [n, h, w, b * b * c], [n, h * b, w * b, c]
            opts, name, params = tfl.DepthToSpaceOptionsT(), "DepthToSpaceOptions", views.depth_to_space_params
        opts.blockSize = b
        x = i8(rng, shape)
        model = single_op_model(getattr(OP, kind), [T(shape, s=s, zp=zp)], [T(out, s=s, zp=zp)], name, opts,
                                version=2)
        expected = run_tflm(model, [x])
        got = rt.transpose(x, params(shape, b), out)
        compare(failures, kind, i, expected, got, f"{shape} block {b}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ STRIDED_SLICE
def test_strided_slice(rt):
    """Ranks 1-4 (TFLM's limit), begin/end anywhere in [-d-2, d+2] (clamped by TFLM), strides
    -3..3, begin / end / shrink masks; empty slices redrawn. (TFLM reads begin,
    end and strides for every input dimension: the lowering refuses shorter index lists.)"""
    failures = []
    done = 0
    for i, rng in configs(41):
        rank = int(rng.integers(1, 5))
        shape = draw_shape(rng, rank, 6)
        for _ in range(100):
            k = rank
            begin = [int(rng.integers(-d - 2, d + 3)) for d in shape[rank - k:]]
            end = [int(rng.integers(-d - 2, d + 3)) for d in shape[rank - k:]]
            strides = [int(rng.choice([-3, -2, -1, 1, 1, 1, 2, 3])) for _ in range(k)]
            bm, em = int(rng.integers(0, 1 << k)), int(rng.integers(0, 1 << k))
            sm = int(rng.integers(0, 1 << k)) if rng.integers(0, 3) == 0 else 0
            offset = False  # TFLM's Prepare sizes the output ignoring the offset flag: refused
            try:
                params, out = views.strided_slice_params(shape, begin, end, strides, bm, em, sm, offset)
                break
            except ValueError:
                continue
        else:
            continue
        s, zp = quant(rng)
        x = i8(rng, shape)
        opts = tfl.StridedSliceOptionsT()
        opts.beginMask, opts.endMask, opts.shrinkAxisMask, opts.offset = bm, em, sm, offset
        model = single_op_model(OP.STRIDED_SLICE,
                                [T(shape, s=s, zp=zp), T([k], np.int32, data=i32(begin)),
                                 T([k], np.int32, data=i32(end)), T([k], np.int32, data=i32(strides))],
                                [T(out, s=s, zp=zp)], "StridedSliceOptions", opts, version=2)
        expected = run_tflm(model, [x])
        got = rt.strided_slice(x, params, out)
        compare(failures, "strided_slice", i, expected, got,
                f"{shape} b{begin} e{end} s{strides} masks {bm},{em},{sm} offset {offset}")
        done += 1
    assert done >= N_CONFIGS * 0.9
    report(failures, N_CONFIGS)


def test_slice(rt):
    failures = []
    for i, rng in configs(62):
        rank = int(rng.integers(1, 6))
        shape = draw_shape(rng, rank, 6)
        begin = [int(rng.integers(0, d)) for d in shape]
        size = [-1 if rng.integers(0, 4) == 0 else int(rng.integers(1, d - b + 1)) for d, b in zip(shape, begin)]
        params, out = views.slice_params(shape, begin, size)
        s, zp = quant(rng)
        x = i8(rng, shape)
        model = single_op_model(OP.SLICE, [T(shape, s=s, zp=zp), T([rank], np.int32, data=i32(begin)),
                                           T([rank], np.int32, data=i32(size))],
                                [T(out, s=s, zp=zp)], "SliceOptions", tfl.SliceOptionsT(), version=2)
        expected = run_tflm(model, [x])
        got = rt.strided_slice(x, params, out)
        compare(failures, "slice", i, expected, got, f"{shape} begin {begin} size {size}")
    report(failures, N_CONFIGS)


def test_reverse_v2(rt):
    failures = []
    for i, rng in configs(63):
        rank = int(rng.integers(1, 6))
        shape = draw_shape(rng, rank, 6)
        naxes = int(rng.integers(1, min(rank, 1) + 1))  # TFLM's REVERSE_V2 reverses one axis
        axes = [int(a) for a in rng.choice(rank, naxes, replace=False)]
        s, zp = quant(rng)
        x = i8(rng, shape)
        model = single_op_model(OP.REVERSE_V2, [T(shape, s=s, zp=zp), T([naxes], np.int32, data=i32(axes))],
                                [T(shape, s=s, zp=zp)], "ReverseV2Options", tfl.ReverseV2OptionsT(), version=2)
        expected = run_tflm(model, [x])
        got = rt.strided_slice(x, views.reverse_params(shape, axes), shape)
        compare(failures, "reverse_v2", i, expected, got, f"{shape} axes {axes}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ SPLIT / SPLIT_V / UNPACK
@pytest.mark.parametrize("kind", ["SPLIT", "SPLIT_V", "UNPACK"])
def test_split(rt, kind):
    """Every output compared; up to 8 outputs (the plan cuts longer splits, see test_runtime_plan)."""
    failures = []
    for i, rng in configs({"SPLIT": 42, "SPLIT_V": 64, "UNPACK": 65}[kind]):
        rank = int(rng.integers(1, 5))
        shape = draw_shape(rng, rank, 6)
        axis = int(rng.integers(-rank, rank))
        d = shape[axis]
        s, zp = quant(rng)
        if kind == "SPLIT":
            divisors = [k for k in range(1, min(d, 8) + 1) if d % k == 0]
            num = int(rng.choice(divisors))
            sizes = [d // num] * num
            opts = tfl.SplitOptionsT()
            opts.numSplits = num
            ins = [T([], np.int32, data=i32(axis)), T(shape, s=s, zp=zp)]
            name = "SplitOptions"
        elif kind == "SPLIT_V":
            num = int(rng.integers(1, min(d, 8) + 1))
            cuts = sorted(int(c) for c in rng.choice(np.arange(1, d), num - 1, replace=False)) if num > 1 else []
            sizes = [b - a for a, b in zip([0] + cuts, cuts + [d])]
            given = list(sizes)
            if rng.integers(0, 3) == 0:
                given[int(rng.integers(0, num))] = -1
            opts = tfl.SplitVOptionsT()
            opts.numSplits = num
            ins = [T(shape, s=s, zp=zp), T([num], np.int32, data=i32(given)), T([], np.int32, data=i32(axis))]
            name = "SplitVOptions"
        else:
            num, sizes = d, [1] * d
            opts = tfl.UnpackOptionsT()
            opts.num, opts.axis = num, axis
            ins = [T(shape, s=s, zp=zp)]
            name = "UnpackOptions"
        outs = []
        for sz in sizes:
            o = list(shape)
            o[axis] = sz
            if kind == "UNPACK":
                del o[axis % rank]
            outs.append(T(o, s=s, zp=zp))
        x = i8(rng, shape)
        model = single_op_model(getattr(OP, kind), ins, outs, name, opts, version=2)
        expected = run_tflm_outputs(model, [x], len(outs))
        params = views.split_params(shape, axis, given if kind == "SPLIT_V" else sizes)
        got = [g for step in views.split_steps(params) for g in rt.split(x, step)]
        for e, g in zip(expected, got):
            compare(failures, kind, i, e, g, f"{shape} axis {axis} sizes {sizes}")
    report(failures, N_CONFIGS)


def test_split_cut_into_steps(rt):
    """A split of 40 outputs runs as 16 + 16 + 8 (axis_begin): the same bytes as one split."""
    rng = np.random.default_rng(7)
    x = i8(rng, [3, 40, 5])
    params = views.split_params(x.shape, 1, [1] * 40)
    steps = views.split_steps(params)
    assert [s["num_outputs"] for s in steps] == [16, 16, 8]
    got = [g for step in steps for g in rt.split(x, step)]
    for k in range(40):
        assert np.array_equal(got[k], x[:, k, :].ravel())


def test_pack_as_concatenation(rt):
    """PACK is CONCATENATION of the inputs viewed with a size-1 axis."""
    failures = []
    for i, rng in configs(66):
        rank = int(rng.integers(1, 4))
        shape = draw_shape(rng, rank, 5)
        n = int(rng.integers(1, 6))
        axis = int(rng.integers(0, rank + 1))
        s, zp = quant(rng)
        xs = [i8(rng, shape) for _ in range(n)]
        out = shape[:axis] + [n] + shape[axis:]
        opts = tfl.PackOptionsT()
        opts.valuesCount, opts.axis = n, axis
        model = single_op_model(OP.PACK, [T(shape, s=s, zp=zp) for _ in range(n)], [T(out, s=s, zp=zp)],
                                "PackOptions", opts, version=2)
        expected = run_tflm(model, xs)
        got = rt.concatenation([x.reshape(shape[:axis] + [1] + shape[axis:]) for x in xs], axis)
        compare(failures, "pack", i, expected, got, f"{n} x {shape} axis {axis}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ GATHER
def test_gather(rt):
    """Any axis, batch_dims 0-2, indices of rank 1-2 given at run time."""
    failures = []
    for i, rng in configs(43):
        rank = int(rng.integers(1, 5))
        shape = draw_shape(rng, rank, 5)
        axis = int(rng.integers(0, rank))
        batch_dims = int(rng.integers(0, axis + 1)) if rng.integers(0, 3) == 0 else 0
        idx_shape = shape[:batch_dims] + [int(rng.integers(1, 5)) for _ in range(int(rng.integers(1, 3)))]
        indices = rng.integers(0, shape[axis], size=idx_shape).astype(np.int32)
        params, out = views.gather_params(shape, idx_shape, axis, batch_dims)
        s, zp = quant(rng)
        x = i8(rng, shape)
        opts = tfl.GatherOptionsT()
        opts.axis, opts.batchDims = axis, batch_dims
        model = single_op_model(OP.GATHER, [T(shape, s=s, zp=zp), T(idx_shape, np.int32)], [T(out, s=s, zp=zp)],
                                "GatherOptions", opts, version=2)
        expected = run_tflm(model, [x, indices])
        got = rt.gather(x, indices, params, out)
        compare(failures, "gather", i, expected, got, f"{shape} axis {axis} batch_dims {batch_dims} idx {idx_shape}")
    report(failures, N_CONFIGS)


def test_gather_refuses_out_of_range_indices(rt):
    x = np.arange(12, dtype=np.int8).reshape(3, 4)
    params, out = views.gather_params([3, 4], [2], 0)
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(RuntimeError, match="returned -1"):
            rt.gather(x, np.array(bad, np.int32), params, out)


# ------------------------------------------------------------------------------ RESIZE
@pytest.mark.parametrize("kind", ["nearest_neighbor", "bilinear"])
def test_resize(rt, kind):
    """Up- and down-scaling, align_corners / half_pixel_centers in every allowed combination."""
    failures = []
    for i, rng in configs(44 if kind == "nearest_neighbor" else 45):
        n, h, w, c = int(rng.integers(1, 3)), int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 6))
        oh, ow = int(rng.integers(1, 17)), int(rng.integers(1, 17))
        align, half = [(False, False), (True, False), (False, True)][int(rng.integers(0, 3))]
        s, zp = quant(rng)
        x = i8(rng, [n, h, w, c])
        if kind == "bilinear":
            opts, name, op = tfl.ResizeBilinearOptionsT(), "ResizeBilinearOptions", OP.RESIZE_BILINEAR
        else:
            opts, name, op = (tfl.ResizeNearestNeighborOptionsT(), "ResizeNearestNeighborOptions",
                              OP.RESIZE_NEAREST_NEIGHBOR)
        opts.alignCorners, opts.halfPixelCenters = align, half
        model = single_op_model(op, [T([n, h, w, c], s=s, zp=zp), T([2], np.int32, data=i32([oh, ow]))],
                                [T([n, oh, ow, c], s=s, zp=zp)], name, opts, version=3)
        expected = run_tflm(model, [x])
        got = rt.resize(kind, x, (n, oh, ow, c), align_corners=align, half_pixel_centers=half)
        compare(failures, kind, i, expected, got, f"{h}x{w}->{oh}x{ow} align {align} half {half}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ TRANSPOSE_CONV
def test_transpose_conv(rt):
    """Dense and palette weights (index widths 1-8), per-channel and per-tensor, SAME and VALID,
    strides 1-3, with and without bias, fused activations."""
    failures = []
    for i, rng in configs(46):
        n = 1
        cin, cout = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        padding = str(rng.choice(["SAME", "VALID"]))
        oh, ow = (h * sh, w * sw) if padding == "SAME" else ((h - 1) * sh + kh, (w - 1) * sw + kw)
        s_in, zp_in = quant(rng)
        per_channel = bool(rng.integers(0, 2))
        w_scales = [log_uniform(rng, 0.001, 0.05) for _ in range(cout if per_channel else 1)]
        s_out = float(np.float32(s_in * np.mean(w_scales) * rng.uniform(2, 40) * np.sqrt(kh * kw * cin)))
        zp_out = int(rng.integers(-128, 128))
        act = str(rng.choice(ACTIVATIONS))
        fshape = (cout, kh, kw, cin)
        bits = 1 + i % 8
        codebook, indices = random_weights_palette(rng, fshape, bits)
        pal = Weights.palette_form(codebook, indices, bits, fshape, cout)
        bias = rng.integers(-20000, 20000, size=cout).astype(np.int32) if rng.integers(0, 4) else None
        x = i8(rng, (n, h, w, cin))
        opts = tfl.TransposeConvOptionsT()
        opts.padding, opts.strideH, opts.strideW = getattr(tfl.Padding, padding), sh, sw
        opts.fusedActivationFunction = fused(act)
        bias_t = None if bias is None else T([cout], np.int32, [s_in * ws for ws in w_scales], 0, bias, 0)
        model = single_op_model(OP.TRANSPOSE_CONV,
                                [T([4], np.int32, data=i32([n, oh, ow, cout])),
                                 T(list(fshape), s=w_scales, zp=0, data=pal.dense, qdim=0),
                                 T([n, h, w, cin], s=s_in, zp=zp_in), bias_t],
                                [T([n, oh, ow, cout], s=s_out, zp=zp_out)], "TransposeConvOptions", opts, version=4)
        expected = run_tflm(model, [x])
        mult, shift = conv_multipliers(s_in, w_scales, s_out)
        lo, hi = activation_range(act, s_out, zp_out)
        pad = (views.transpose_conv_padding(padding, oh, kh, sh), views.transpose_conv_padding(padding, ow, kw, sw))
        for wf in (Weights.dense_form(pal.dense), pal):
            got = rt.transpose_conv(x, wf, bias, mult, shift, filter_shape=fshape, out_shape=(n, oh, ow, cout),
                                    stride=(sh, sw), pad=pad, input_offset=-zp_in, output_offset=zp_out, act=(lo, hi))
            compare(failures, "transpose_conv", i, expected, got,
                    f"form={wf.form} bits={bits} {h}x{w} k{kh}x{kw} s{sh}x{sw} {padding} act {act}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ ARG_MAX / ARG_MIN
@pytest.mark.parametrize("kind", ["max", "min"])
def test_arg_max_min(rt, kind):
    """Any axis, int32 output (TFLM fails int64 at run time), many ties (the first index wins)."""
    failures = []
    for i, rng in configs(47 if kind == "max" else 48):
        rank = int(rng.integers(1, 5))
        shape = draw_shape(rng, rank, 6)
        axis = int(rng.integers(-rank, rank))
        s, zp = quant(rng)
        x = rng.integers(-3, 3, size=shape).astype(np.int8) if rng.integers(0, 2) else i8(rng, shape)
        out = [d for k, d in enumerate(shape) if k != axis % rank]
        if kind == "max":
            opts, name, op = tfl.ArgMaxOptionsT(), "ArgMaxOptions", OP.ARG_MAX
        else:
            opts, name, op = tfl.ArgMinOptionsT(), "ArgMinOptions", OP.ARG_MIN
        opts.outputType = tfl.TensorType.INT32
        model = single_op_model(op, [T(shape, s=s, zp=zp), T([1], np.int32, data=i32([axis]))],
                                [T(out, np.int32)], name, opts, version=2)
        expected = run_tflm(model, [x])
        got = rt.arg(kind, x, views.axis_params(shape, axis), out)
        if expected.dtype != got.dtype or not np.array_equal(expected, got):
            failures.append(f"arg_{kind} config {i}: {shape} axis {axis}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ DEQUANTIZE / QUANTIZE (float)
def test_dequantize(rt):
    """int8 -> float32: every int8 value, scales over 10 decades, all zero points; bit-identical floats."""
    failures = []
    for i, rng in configs(49):
        s = log_uniform(rng, 1e-6, 1e4)
        zp = int(rng.integers(-128, 128))
        x = np.concatenate([np.arange(-128, 128), rng.integers(-128, 128, 44)]).astype(np.int8)
        model = single_op_model(OP.DEQUANTIZE, [T([x.size], s=s, zp=zp)], [T([x.size], np.float32)], version=2)
        expected = run_tflm(model, [x])
        got = rt.dequantize(x, scale=s, zero_point=zp)
        if not np.array_equal(expected.view(np.uint32), got.view(np.uint32)):
            failures.append(f"dequantize config {i}: s={s} zp={zp}")
    report(failures, N_CONFIGS)


def test_quantize_float_input(rt):
    """float32 -> int8: values around every rounding boundary (k + 0.5) * scale, exact halves,
    values far outside the int8 range, signed zeros, NaN and infinities."""
    failures = []
    for i, rng in configs(50):
        s = log_uniform(rng, 1e-4, 10)
        zp = int(rng.integers(-128, 128))
        k = rng.integers(-300, 300, 200).astype(np.float32)
        halves = (k + np.float32(0.5)) * np.float32(s)
        near = np.nextafter(halves, np.where(rng.integers(0, 2, 200) > 0, np.inf, -np.inf).astype(np.float32))
        noise = (rng.standard_normal(200) * 200 * s).astype(np.float32)
        wild = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e30, -1e30, s * 3e9, -s * 3e9,
                         s * 2147483000.0, -s * 2147483000.0], np.float32)
        x = np.concatenate([halves, near, noise, wild]).astype(np.float32)
        model = single_op_model(OP.QUANTIZE, [T([x.size], np.float32)], [T([x.size], s=s, zp=zp)], version=2)
        expected = run_tflm(model, [x])
        got = rt.quantize_f32(x, scale=s, zero_point=zp)
        bad = np.flatnonzero(expected != got)
        if bad.size:
            failures.append(f"quantize_f32 config {i}: s={s} zp={zp}: {bad.size} mismatches, e.g. "
                            f"x={x[bad[0]]!r} tflm={expected[bad[0]]} runtime={got[bad[0]]}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND
@pytest.mark.parametrize("kind", ["SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"])
def test_space_batch(rt, kind):
    """3-D and 4-D, blocks 1-3 each way; BATCH_TO_SPACE_ND with crops, SPACE_TO_BATCH_ND without
    padding: TFLM pads with a value it never sets (0 or 1 seen, never the zero point), so the
    lowering refuses padded SPACE_TO_BATCH_ND and the kernel's pad_value is tested on its own."""
    failures = []
    for i, rng in configs(69 if kind == "SPACE_TO_BATCH_ND" else 70):
        rank = int(rng.integers(3, 5))
        spatial = rank - 2
        block = [int(rng.integers(1, 4)) for _ in range(spatial)]
        c = int(rng.integers(1, 6))
        if kind == "SPACE_TO_BATCH_ND":
            n = int(rng.integers(1, 3))
            sizes = [b * int(rng.integers(1, 4)) for b in block]
            pads = [[0, 0]] * spatial
        else:
            n = int(np.prod(block)) * int(rng.integers(1, 3))
            sizes = [int(rng.integers(1, 5)) for _ in range(spatial)]
            pads = []
            for d, b in zip(sizes, block):
                total = int(rng.integers(0, d * b))
                before = int(rng.integers(0, total + 1))
                pads.append([before, total - before])
        shape = [n] + sizes + [c]
        params, out = views.batch_space_params(kind, shape, block, pads)
        s, zp = quant(rng)
        x = i8(rng, shape)
        opts_name = "SpaceToBatchNDOptions" if kind == "SPACE_TO_BATCH_ND" else "BatchToSpaceNDOptions"
        opts = getattr(tfl, opts_name + "T")()
        model = single_op_model(getattr(OP, kind), [T(shape, s=s, zp=zp), T([spatial], np.int32, data=i32(block)),
                                                    T([spatial, 2], np.int32, data=i32(pads))],
                                [T(out, s=s, zp=zp)], opts_name, opts, version=2)
        expected = run_tflm(model, [x])
        kernel = "space_to_batch_nd" if kind == "SPACE_TO_BATCH_ND" else "batch_to_space_nd"
        got = rt.batch_space(kernel, x, params, out)
        compare(failures, kind, i, expected, got, f"{shape} block {block} pads {pads} zp {zp}")
    report(failures, N_CONFIGS)


def test_space_to_batch_pads_with_its_pad_value(rt):
    """The kernel's own padding (TFLM's is unset: see above): pad_value outside the input."""
    x = np.arange(1, 7, dtype=np.int8).reshape(1, 2, 3, 1)
    params, out = views.batch_space_params("SPACE_TO_BATCH_ND", x.shape, [1, 2], [[1, 1], [0, 1]])
    params["pad_value"] = -9
    got = rt.batch_space("space_to_batch_nd", x, params, out)
    padded = np.full((1, 4, 4, 1), -9, np.int8)
    padded[:, 1:3, 0:3] = x
    np.testing.assert_array_equal(got, np.concatenate([padded[:, :, 0::2], padded[:, :, 1::2]], axis=0))


# ------------------------------------------------------------------------------ SQUARED_DIFFERENCE
def test_squared_difference(rt):
    """Broadcasting both ways, random scales (output scale near the squared input scale) and zero points."""
    from edgepack.quant import squared_difference_params
    from tests.test_runtime_kernels import broadcast_shapes

    failures = []
    for i, rng in configs(73):
        out, a, b = broadcast_shapes(rng)
        s1, s2 = log_uniform(rng, 0.002, 0.2), log_uniform(rng, 0.002, 0.2)
        s_out = float(np.float32(max(s1, s2) ** 2 * rng.uniform(20, 4000)))
        z1, z2, zo = (int(rng.integers(-128, 128)) for _ in range(3))
        x1, x2 = i8(rng, a), i8(rng, b)
        model = single_op_model(OP.SQUARED_DIFFERENCE, [T(a, s=s1, zp=z1), T(b, s=s2, zp=z2)],
                                [T(out, s=s_out, zp=zo)])
        expected = run_tflm(model, [x1, x2])
        got = rt.squared_difference(x1, x2, out_shape=out, input1_offset=-z1, input2_offset=-z2, output_offset=zo,
                                    act_min=-128, act_max=127, **squared_difference_params(s1, s2, s_out))
        compare(failures, "squared_difference", i, expected, got, f"{a}x{b}->{out} s {s1},{s2},{s_out}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ PRELU
def test_prelu(rt):
    """Alpha per channel ([C], [1, 1, C]) or per element, as a constant or a run-time input;
    random scales and zero points (alpha's included), negative alphas."""
    from edgepack.quant import prelu_params

    failures = []
    for i, rng in configs(72):
        shape = [1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 9))]
        alpha_shape = [[shape[3]], [1, 1, shape[3]], shape[1:]][int(rng.integers(0, 3))]
        s_in, zp_in = quant(rng)
        s_a, zp_a = log_uniform(rng, 0.001, 0.05), int(rng.integers(-128, 128))
        s_out = float(np.float32(s_in * np.exp(rng.uniform(-1.5, 1.5))))
        zp_out = int(rng.integers(-128, 128))
        x, alpha = i8(rng, shape), i8(rng, alpha_shape)
        constant = bool(rng.integers(0, 2))
        a_t = T(alpha_shape, s=s_a, zp=zp_a, data=alpha if constant else None)
        model = single_op_model(OP.PRELU, [T(shape, s=s_in, zp=zp_in), a_t], [T(shape, s=s_out, zp=zp_out)])
        expected = run_tflm(model, [x] if constant else [x, alpha])
        got = rt.prelu(x, alpha, input_offset=-zp_in, alpha_offset=-zp_a, output_offset=zp_out,
                       **prelu_params(s_in, s_a, s_out))
        compare(failures, "prelu", i, expected, got, f"{shape} alpha {alpha_shape} const {constant}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ MIRROR_PAD
def test_mirror_pad(rt):
    """Ranks 1-4, REFLECT and SYMMETRIC, every padding up to the largest each mode allows."""
    failures = []
    for i, rng in configs(71):
        rank = int(rng.integers(1, 5))
        shape = draw_shape(rng, rank, 5)
        mode = str(rng.choice(["REFLECT", "SYMMETRIC"]))
        reflect = int(mode == "REFLECT")
        pads = [[int(rng.integers(0, d - reflect + 1)), int(rng.integers(0, d - reflect + 1))] for d in shape]
        params, out = views.mirror_pad_params(shape, pads, mode)
        s, zp = quant(rng)
        x = i8(rng, shape)
        opts = tfl.MirrorPadOptionsT()
        opts.mode = getattr(tfl.MirrorPadMode, mode)
        model = single_op_model(OP.MIRROR_PAD, [T(shape, s=s, zp=zp), T([rank, 2], np.int32, data=i32(pads))],
                                [T(out, s=s, zp=zp)], "MirrorPadOptions", opts, version=2)
        expected = run_tflm(model, [x])
        got = rt.mirror_pad(x, params, out)
        compare(failures, "mirror_pad", i, expected, got, f"{shape} pads {pads} {mode}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ PADV2
def test_padv2_is_pad_with_its_constant(rt):
    """PADV2's constant (an int8 in the output's quantization) is PAD's pad_value."""
    failures = []
    for i, rng in configs(68):
        shape = [int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 7))]
        pads = rng.integers(0, 3, size=(4, 2)).astype(np.int32)
        out = [d + int(p[0] + p[1]) for d, p in zip(shape, pads)]
        s, zp = quant(rng)
        value = int(rng.integers(-128, 128))
        x = i8(rng, shape)
        model = single_op_model(OP.PADV2, [T(shape, s=s, zp=zp), T([4, 2], np.int32, data=pads),
                                           T([], np.int8, s=s, zp=zp, data=np.array(value, np.int8))],
                                [T(out, s=s, zp=zp)], "PadV2Options", tfl.PadV2OptionsT(), version=2)
        expected = run_tflm(model, [x])
        got = rt.pad(x, out_shape=out, before=[int(p) for p in pads[:, 0]], pad_value=value)
        compare(failures, "padv2", i, expected, got, f"{shape} pads {pads.tolist()} value {value}")
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ EXPAND_DIMS
def test_expand_dims_is_reshape(rt):
    """EXPAND_DIMS moves no bytes: RESHAPE's kernel is its lowering."""
    failures = []
    for i, rng in configs(67):
        rank = int(rng.integers(1, 4))
        shape = draw_shape(rng, rank, 5)
        axis = int(rng.integers(-rank - 1, rank + 1))
        out = list(shape)
        out.insert(axis % (rank + 1), 1)
        s, zp = quant(rng)
        x = i8(rng, shape)
        model = single_op_model(OP.EXPAND_DIMS, [T(shape, s=s, zp=zp), T([1], np.int32, data=i32([axis]))],
                                [T(out, s=s, zp=zp)], "ExpandDimsOptions", tfl.ExpandDimsOptionsT())
        expected = run_tflm(model, [x])
        compare(failures, "expand_dims", i, expected, rt.reshape(x, out))
    report(failures, N_CONFIGS)


# ------------------------------------------------------------------------------ plans with several outputs
def _plan_of(ops: list, arena_bytes: int, constants: list | None = None):
    import ctypes as C

    from tests import runtime_harness as H

    arr = (H.Op * len(ops))(*ops)
    consts = None
    if constants:
        consts = (C.c_void_p * len(constants))(*[H._ptr(c) for c in constants])
    plan = H.Plan(C.addressof(arr), len(ops), arena_bytes, 0, 0, None if consts is None else C.addressof(consts),
                  len(constants or []))
    return plan, (arr, consts)


def test_plan_runs_split_with_several_outputs_then_gather_and_arg_max(rt):
    """SPLIT writes three arena tensors in one step; GATHER reads constant int32 indices;
    ARG_MAX writes int32; DEQUANTIZE writes float32; every output checked against numpy."""
    import ctypes as C

    from tests import runtime_harness as H

    rng = np.random.default_rng(3)
    x = i8(rng, [2, 6, 4])
    sizes = np.array([1, 3, 2], np.int32)
    split = H.SplitParams(3, 2, 4, 6, 0, H._ptr(sizes))
    outs = np.array([64, 128, 192], np.int32)
    idx = np.array([3, 0, 3], np.int32)
    gather = H.GatherParams(1, 2 * 3, 4, 1, 3)  # part 1 [2, 3, 4] gathered on its last axis
    arg = H.ArgParams(6, 4, 1)  # ARG_MAX over the last axis of part 1
    deq = H.FloatQuantParams(16, 5, 0.25)  # part 2 to float
    in0 = np.array([0], np.int32)
    g_in = np.array([128, -1], np.int32)  # -1: EP_CONST(0), the indices
    in1, in2 = np.array([128], np.int32), np.array([192], np.int32)
    ops = [H.Op(42, C.addressof(split), 1, H._ptr(in0), 0, 3, H._ptr(outs)),
           H.Op(43, C.addressof(gather), 2, H._ptr(g_in), 256, 0, None),
           H.Op(47, C.addressof(arg), 1, H._ptr(in1), 320, 0, None),
           H.Op(49, C.addressof(deq), 1, H._ptr(in2), 384, 0, None)]
    plan, keep = _plan_of(ops, 448, [idx.view(np.int8)])
    arena = np.zeros(448 + 64, np.uint8)
    arena[:x.size] = x.ravel().view(np.uint8)
    st = rt.lib.ep_plan_run(C.byref(plan), H._ptr(arena), 448, H.HOOK(), None)
    assert st == 0
    parts = [x[:, 0:1], x[:, 1:4], x[:, 4:6]]
    for off, part in zip(outs, parts):
        np.testing.assert_array_equal(arena[off:off + part.size].view(np.int8), part.ravel())
    np.testing.assert_array_equal(arena[256:256 + 18].view(np.int8), parts[1][..., idx].ravel())
    np.testing.assert_array_equal(arena[320:320 + 24].view(np.int32), np.argmax(parts[1], axis=-1).ravel())
    np.testing.assert_array_equal(arena[384:384 + 64].view(np.float32),
                                  np.float32(0.25) * (parts[2].ravel().astype(np.float32) - 5))


def test_plan_refuses_bad_multi_output_steps(rt):
    """A SPLIT without its output list, a count that disagrees with the params, an output past
    the arena, or an output list on a one-output kernel: refused before any kernel runs."""
    import ctypes as C

    from tests import runtime_harness as H

    sizes = np.array([2, 2], np.int32)
    split = H.SplitParams(2, 1, 8, 4, 0, H._ptr(sizes))
    in0 = np.array([0], np.int32)
    reshape = H.ReshapeParams(32)
    one, two_past = np.array([64], np.int32), np.array([64, 120], np.int32)
    cases = {
        "no output list": (H.Op(42, C.addressof(split), 1, H._ptr(in0), 64, 0, None), -1),
        "count mismatch": (H.Op(42, C.addressof(split), 1, H._ptr(in0), 0, 1, H._ptr(one)), -1),
        "past the arena": (H.Op(42, C.addressof(split), 1, H._ptr(in0), 0, 2, H._ptr(two_past)), -3),
        "list on RESHAPE": (H.Op(15, C.addressof(reshape), 1, H._ptr(in0), 0, 1, H._ptr(one)), -1),
    }
    for what, (op, status) in cases.items():
        plan, keep = _plan_of([op], 128)
        arena = np.full(128 + 64, 0x77, np.uint8)
        assert rt.lib.ep_plan_run(C.byref(plan), H._ptr(arena), 128, H.HOOK(), None) == status, what
        assert np.all(arena[64:] == 0x77), what
