"""The offline index arithmetic of the layout operators: the views and windows TFLM resolves in
each kernel's Prepare/Eval, computed once in Python so the firmware only copies bytes.

Every function takes plain shapes and operator attributes and returns the fields of one runtime
params struct (firmware/include/edgepack.h) as a dict, or raises ValueError with a one-line
reason. Several TFLite operators share one runtime kernel:

* TRANSPOSE, SPACE_TO_DEPTH, DEPTH_TO_SPACE -> ep_transpose_s8 (the two block operators are
  4-D transposes of a reshaped view);
* STRIDED_SLICE, SLICE, REVERSE_V2 -> ep_strided_slice_s8 (REVERSE_V2 walks with stride -1);
* SPLIT, SPLIT_V, UNPACK -> ep_split_s8; PACK -> ep_concatenation_s8 (axis sizes 1);
* EXPAND_DIMS, SQUEEZE -> ep_reshape_s8 (the bytes do not move).

Used by the layout operators' lowering (`layout.py`) and by the runtime kernel tests.
"""


from __future__ import annotations

import numpy as np

from ..plan import MAX_OP_OUTPUTS

MAX_DIMS = 6  # EP_MAX_DIMS
MAX_OUTPUTS = MAX_OP_OUTPUTS


def _padded(values, fill: int = 0) -> list[int]:
    v = [int(x) for x in values]
    return v + [fill] * (MAX_DIMS - len(v))


def _squeeze_ones(dims: list[int], perm: list[int]) -> tuple[list[int], list[int]]:
    """Drop size-1 dimensions from a transpose (they do not change the byte order)."""
    keep = [d for d in range(len(dims)) if dims[d] != 1]
    if not keep:
        return [1], [0]
    new_index = {d: i for i, d in enumerate(keep)}
    return [dims[d] for d in keep], [new_index[p] for p in perm if p in new_index]


def transpose_params(input_shape, perm) -> dict:
    """ep_transpose_params of TRANSPOSE(input, perm); negative perm entries count from the end."""
    dims = [int(d) for d in input_shape]
    rank = len(dims)
    perm = [int(p) + rank if int(p) < 0 else int(p) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise ValueError(f"permutation {perm} is not a permutation of {rank} dimensions")
    dims, perm = _squeeze_ones(dims, perm)
    if len(dims) > MAX_DIMS:
        raise ValueError(f"a rank-{len(dims)} transpose (the runtime moves up to {MAX_DIMS}-D)")
    return {"rank": len(dims), "input_dims": _padded(dims, 1), "perm": _padded(perm)}


def space_to_depth_params(input_shape, block: int) -> dict:
    """SPACE_TO_DEPTH [N, H, W, C] -> [N, H/b, W/b, b*b*C] as TRANSPOSE [N*H/b, b, W/b, b*C] by (0, 2, 1, 3)."""
    n, h, w, c = (int(d) for d in input_shape)
    if block < 1 or h % block or w % block:
        raise ValueError(f"block size {block} does not divide the input's {h}x{w}")
    return transpose_params([n * h // block, block, w // block, block * c], [0, 2, 1, 3])


def depth_to_space_params(input_shape, block: int) -> dict:
    """DEPTH_TO_SPACE [N, H, W, b*b*C] -> [N, H*b, W*b, C] as TRANSPOSE [N*H, W, b, b*C] by (0, 2, 1, 3)."""
    n, h, w, c = (int(d) for d in input_shape)
    if block < 1 or c % (block * block):
        raise ValueError(f"{c} channels are not a multiple of block size {block} squared")
    return transpose_params([n * h, w, block, c // block], [0, 2, 1, 3])


def _clamp(v: int, lo: int, hi: int) -> int:
    return hi if v > hi else (lo if v < lo else v)


def strided_slice_params(input_shape, begin, end, strides, begin_mask: int = 0, end_mask: int = 0,
                         shrink_axis_mask: int = 0, offset: bool = False) -> tuple[dict, list[int]]:
    """(ep_strided_slice_params, output shape) of STRIDED_SLICE as TFLM resolves it
    (strided_slice_logic.h: StridedSliceStartForAxis / StridedSliceEndForAxis; indices shorter
    than the input are padded at the front with whole dimensions)."""
    dims = [int(d) for d in input_shape]
    rank = len(dims)
    if not len(begin) == len(end) == len(strides) or len(begin) > rank:
        raise ValueError(f"begin/end/strides of lengths {len(begin)}/{len(end)}/{len(strides)} "
                         f"for a rank-{rank} input")
    pad = rank - len(begin)
    begin = [0] * pad + [int(b) for b in begin]
    end = [1] * pad + [int(e) for e in end]
    strides = [1] * pad + [int(s) for s in strides]
    begin_mask = (begin_mask << pad) | ((1 << pad) - 1)
    end_mask = (end_mask << pad) | ((1 << pad) - 1)
    shrink_axis_mask <<= pad
    starts, counts, out_shape = [], [], []
    for d in range(rank):
        size, stride = dims[d], strides[d]
        if stride == 0:
            raise ValueError(f"stride 0 on axis {d}")
        start = begin[d] + size if begin[d] < 0 else begin[d]
        start = _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)
        if begin_mask & (1 << d):
            start = 0 if stride > 0 else size - 1
        if shrink_axis_mask & (1 << d):
            stop = start if start >= size else start + 1
        else:
            stop = end[d] + (start if offset else 0)
            stop = stop + size if stop < 0 else stop
            stop = _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)
            if end_mask & (1 << d):
                stop = size if stride > 0 else -1
        count = max(0, -(-(stop - start) // stride)) if stride > 0 else max(0, -(-(start - stop) // -stride))
        if count == 0:
            raise ValueError(f"an empty slice on axis {d}")
        starts.append(start)
        counts.append(count)
        if not shrink_axis_mask & (1 << d):
            out_shape.append(count)
    params = _window(dims, starts, strides, counts)
    return params, out_shape


def _window(dims, starts, strides, counts) -> dict:
    """ep_strided_slice_params of a window; size-1 input dimensions are dropped, rank checked."""
    keep = [d for d in range(len(dims)) if dims[d] != 1] or [len(dims) - 1]
    if len(keep) > MAX_DIMS:
        raise ValueError(f"a rank-{len(keep)} slice (the runtime moves up to {MAX_DIMS}-D)")
    return {"rank": len(keep), "input_dims": _padded([dims[d] for d in keep], 1),
            "begin": _padded([starts[d] for d in keep]), "stride": _padded([strides[d] for d in keep], 1),
            "output_dims": _padded([counts[d] for d in keep], 1)}


def slice_params(input_shape, begin, size) -> tuple[dict, list[int]]:
    """SLICE(input, begin, size): size -1 takes the rest of the axis."""
    dims = [int(d) for d in input_shape]
    if len(begin) != len(dims) or len(size) != len(dims):
        raise ValueError(f"begin/size of lengths {len(begin)}/{len(size)} for a rank-{len(dims)} input")
    counts = []
    for d, (b, s) in enumerate(zip(begin, size)):
        s = dims[d] - int(b) if int(s) == -1 else int(s)
        if int(b) < 0 or s < 1 or int(b) + s > dims[d]:
            raise ValueError(f"slice [{b}, {b}+{s}) outside axis {d} of size {dims[d]}")
        counts.append(s)
    return _window(dims, [int(b) for b in begin], [1] * len(dims), counts), counts


def reverse_params(input_shape, axes) -> dict:
    """REVERSE_V2(input, axes): each listed axis walked backwards from its last index."""
    dims = [int(d) for d in input_shape]
    rank = len(dims)
    axes = {int(a) + rank if int(a) < 0 else int(a) for a in axes}
    if any(a < 0 or a >= rank for a in axes):
        raise ValueError(f"axes {sorted(axes)} outside a rank-{rank} input")
    return _window(dims, [dims[d] - 1 if d in axes else 0 for d in range(rank)],
                   [-1 if d in axes else 1 for d in range(rank)], dims)


def split_params(input_shape, axis: int, sizes) -> dict:
    """ep_split_params of SPLIT / SPLIT_V / UNPACK along axis (sizes: one per output, a -1 in
    SPLIT_V takes the rest)."""
    dims = [int(d) for d in input_shape]
    rank = len(dims)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ValueError(f"axis {axis} outside a rank-{rank} input")
    sizes = [int(s) for s in sizes]
    if sizes.count(-1) > 1:
        raise ValueError("more than one size of -1")
    if -1 in sizes:
        sizes[sizes.index(-1)] = dims[axis] - (sum(sizes) + 1)
    if sum(sizes) != dims[axis] or min(sizes) < 1:
        raise ValueError(f"sizes {sizes} do not split axis {axis} of size {dims[axis]}")
    return {"num_outputs": len(sizes), "outer": int(np.prod(dims[:axis], dtype=np.int64)),
            "inner": int(np.prod(dims[axis + 1:], dtype=np.int64)), "axis_total": dims[axis], "axis_begin": 0,
            "axis_sizes": sizes}


def split_steps(params: dict) -> list[dict]:
    """Cut a split of more than MAX_OUTPUTS outputs into steps of at most MAX_OUTPUTS."""
    sizes, steps, begin = params["axis_sizes"], [], params["axis_begin"]
    for k in range(0, len(sizes), MAX_OUTPUTS):
        part = sizes[k:k + MAX_OUTPUTS]
        steps.append({**params, "num_outputs": len(part), "axis_begin": begin, "axis_sizes": part})
        begin += sum(part)
    return steps


def gather_params(input_shape, indices_shape, axis: int, batch_dims: int = 0) -> tuple[dict, list[int]]:
    """(ep_gather_params, output shape) of GATHER."""
    dims, idims = [int(d) for d in input_shape], [int(d) for d in indices_shape]
    rank = len(dims)
    axis = axis + rank if axis < 0 else axis
    batch_dims = batch_dims + len(idims) if batch_dims < 0 else batch_dims
    if not 0 <= axis < rank or not 0 <= batch_dims <= axis or batch_dims > len(idims):
        raise ValueError(f"axis {axis} / batch_dims {batch_dims} do not fit input rank {rank}, "
                         f"indices rank {len(idims)}")
    if dims[:batch_dims] != idims[:batch_dims]:
        raise ValueError(f"batch dimensions {dims[:batch_dims]} and {idims[:batch_dims]} differ")
    prod = lambda v: int(np.prod(v, dtype=np.int64))  # noqa: E731
    params = {"batch": prod(dims[:batch_dims]), "outer": prod(dims[batch_dims:axis]), "axis_size": dims[axis],
              "inner": prod(dims[axis + 1:]), "num_indices": prod(idims[batch_dims:])}
    return params, dims[:axis] + idims[batch_dims:] + dims[axis + 1:]


def axis_params(input_shape, axis: int) -> dict:
    """outer / axis_size / inner of a reduction over one axis (ARG_MAX, ARG_MIN)."""
    dims = [int(d) for d in input_shape]
    axis = axis + len(dims) if axis < 0 else axis
    if not 0 <= axis < len(dims):
        raise ValueError(f"axis {axis} outside a rank-{len(dims)} input")
    return {"outer": int(np.prod(dims[:axis], dtype=np.int64)), "axis_size": dims[axis],
            "inner": int(np.prod(dims[axis + 1:], dtype=np.int64))}


def mirror_pad_params(input_shape, pads, mode: str) -> tuple[dict, list[int]]:
    """(ep_mirror_pad_params, output shape) of MIRROR_PAD; mode "REFLECT" or "SYMMETRIC"."""
    dims = [int(d) for d in input_shape]
    pads = np.asarray(pads, np.int64).reshape(-1, 2)
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise ValueError(f"mode {mode}")
    if pads.shape[0] != len(dims):
        raise ValueError(f"{pads.shape[0]} padding rows for a rank-{len(dims)} input")
    reflect = int(mode == "REFLECT")
    for d, (b, a) in zip(dims, pads):
        if min(b, a) < 0 or max(b, a) > d - reflect:
            raise ValueError(f"paddings {pads.tolist()} reach past a mirrored input of {dims} ({mode})")
    if len(dims) > MAX_DIMS:
        raise ValueError(f"a rank-{len(dims)} input (the runtime moves up to {MAX_DIMS}-D)")
    out = [d + int(b) + int(a) for d, (b, a) in zip(dims, pads)]
    return {"rank": len(dims), "input_dims": _padded(dims, 1), "before": _padded(pads[:, 0]),
            "output_dims": _padded(out, 1), "reflect": reflect}, out


def batch_space_params(opcode: str, input_shape, block, pads) -> tuple[dict, list[int]]:
    """(ep_batch_space_params, output shape) of SPACE_TO_BATCH_ND (pads: paddings) or
    BATCH_TO_SPACE_ND (pads: crops), 3-D [N, H, C] or 4-D NHWC as TFLM takes them."""
    dims = [int(d) for d in input_shape]
    if len(dims) not in (3, 4):
        raise ValueError(f"a rank-{len(dims)} input (TFLM takes 3-D or 4-D)")
    spatial = len(dims) - 2
    block = [int(b) for b in block]
    pads = np.asarray(pads, np.int64).reshape(-1, 2) if np.size(pads) else np.zeros((0, 2), np.int64)
    if len(block) != spatial or pads.shape[0] != spatial or min(block) < 1 or np.any(pads < 0):
        raise ValueError(f"block {block} and paddings {pads.tolist()} do not fit a rank-{len(dims)} input")
    n, h, c = dims[0], dims[1], dims[-1]
    w = dims[2] if spatial == 2 else 1
    bh, bw = block[0], block[1] if spatial == 2 else 1
    (pt, pb), (pl, pr) = pads[0], (pads[1] if spatial == 2 else (0, 0))
    if opcode == "SPACE_TO_BATCH_ND":
        if (h + pt + pb) % bh or (w + pl + pr) % bw:
            raise ValueError(f"the padded {h + pt + pb}x{w + pl + pr} is not a multiple of block {block}")
        out4 = [n * bh * bw, (h + pt + pb) // bh, (w + pl + pr) // bw, c]
    else:
        if n % (bh * bw) or h * bh - pt - pb < 1 or w * bw - pl - pr < 1:
            raise ValueError(f"block {block} and crops {pads.tolist()} do not fit input {dims}")
        out4 = [n // (bh * bw), h * bh - pt - pb, w * bw - pl - pr, c]
    params = {"input": dict(zip("nhwc", [n, h, w, c])), "output": dict(zip("nhwc", out4)), "block_h": bh,
              "block_w": bw, "pad_top": int(pt), "pad_left": int(pl), "pad_value": 0}
    return params, out4 if spatial == 2 else [out4[0], out4[1], c]


def transpose_conv_padding(padding: str, out_size: int, filt: int, stride: int) -> int:
    """TFLM's TRANSPOSE_CONV padding: ComputePaddingHeightWidth with the output as the input."""
    conv_out = (out_size + stride - 1) // stride if padding == "SAME" else (out_size - filt + stride) // stride
    return max(0, ((conv_out - 1) * stride + filt - out_size) // 2)
