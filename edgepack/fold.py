"""Fold weights into layer-shared int8 codebooks ("palette" form).

A clustered network loses its clustering on the way to int8: per-channel quantization (and
batch-norm folding before it) turns one codebook of K real values into a different int8 codebook
in every output channel. Folding finds, per weight tensor, one int8 codebook of at most K values
shared by all output channels plus per-channel scales that absorb the channel gains, so that the
int8 weights are `codebook[index]` and `real = scale[c] * codebook[index]`.

The objective is the squared error against the original real weights `scale_c * (q - zp)`.
It is minimised by alternation, from two starting hypotheses (the lower error wins):

* `layer-wide scale`: the layer was clustered before per-channel quantization, so the real
  values already repeat across channels (start with gain 1 for every channel);
* `per-channel gain`: batch-norm folding multiplied every channel by its own gain, so values
  repeat once each channel is divided by its peak (start with gain = channel peak).

Real phase: fix the gains, cluster `w / g_c` (weight `g_c^2`) with an exact 1-D k-means (dynamic
programme on sorted values with prefix sums, refined by boundary-moving Lloyd); fix the
clusters, solve each gain in closed form; stop when the error no longer falls. Integer phase: map
the codebook onto the full int8 range, then alternate assignment, codebook (rounded weighted
means: the exact integer optimum of a separable quadratic) and per-channel scales until the
error no longer falls.

Zeros: every zero weight stays exactly zero (zero is a codebook entry pinned at 0 whenever the
tensor has a zero). A non-zero weight becomes zero only when zero is its nearest codebook value,
exactly as int8 rounding would do; those are counted in `FoldedTensor.zeros_added`.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import ModelError, UsageError
from .inspect import CLUSTERED_MAX_VALUES, _count_groups, channel_axis, shared_codebook_size
from .tflite import Model, Quantization, Tensor, serialize_model

MAX_CLUSTERS = 256
INT8_LIMIT = 127  # symmetric int8 weights: TFLite requires zero point 0 and [-127, 127]
DP_POINTS = 512  # the exact DP runs on at most this many (grouped) points, Lloyd refines on all
MAX_ROUNDS = 40
CONVERGED = 1e-4  # stop when a round lowers the squared error by less than this fraction
HYPOTHESIS_MARGIN = 4.0  # a start whose first-round error is this much worse is dropped
CLUSTER_RECURRENCE = 4  # --clusters auto: weights per codebook value that make it a clustering
RANDOM_CALIBRATION_SAMPLES = 32
RANDOM_CALIBRATION_SEED = 0
PARALLEL_AGREEMENT_BYTES = 256 * 1024  # models this large run both TFLM passes at once
# fold_model folds tensors in a pool of forked processes only when there is enough work: a
# pool costs ~15-35 ms to start and saves at most ~40 ms on the digits models (4 tensors, 38 k
# weights, ~0.1-0.2 s); MobileNetV2 (53 tensors, 0.4 M weights) goes from 3.2 s to 1.8 s
POOL_MIN_TENSORS = 8
POOL_MIN_WEIGHTS = 100_000

Progress = Callable[[int, int, str], None]


# --- results -------------------------------------------------------------------------------

@dataclass
class Codebook:
    """The int8 values a layer's weights take, sorted ascending, all distinct."""

    values: np.ndarray  # int8

    @property
    def size(self) -> int:
        return int(self.values.size)

    @property
    def index_bits(self) -> int:
        """Bits of one packed index (1..8): what `edgepack.packing.pack_indices` wants."""
        return max(1, math.ceil(math.log2(max(self.size, 1))))


@dataclass
class WeightFold:
    """The fold of one weight matrix ([C, N], channel first), before it goes back in a model."""

    codebook: Codebook
    indices: np.ndarray  # uint8 [C, N]
    scales: np.ndarray  # float32 [C] (or [1] per tensor): real = scales[c] * codebook[index]
    sqnr_db: float  # weight signal-to-quantization-noise against the original real weights
    hypothesis: str  # "lossless", "layer-wide scale" or "per-channel gain"

    @property
    def int8(self) -> np.ndarray:
        return self.codebook.values[self.indices]


@dataclass
class FoldedTensor:
    operator: int  # the (first) operator that owns the weights
    op_type: str
    tensor: int
    name: str
    shape: tuple[int, ...]
    channel_axis: int
    per_channel: bool  # per-channel scales in the folded model (per-tensor inputs stay so)
    folded: bool  # False: kept dense int8 (see `reason`)
    reason: str  # why it was folded to this K, or why it was kept dense
    codebook: Codebook | None  # None when kept dense
    indices: np.ndarray | None  # uint8, the tensor's shape and element order; None when dense
    scales: np.ndarray  # float32 per channel (length 1 per tensor), as in the folded model
    sqnr_db: float  # inf when lossless
    hypothesis: str
    distinct_before: int  # distinct int8 values in the input tensor
    zeros: int  # zero weights in the input tensor (all still zero)
    zeros_added: int  # non-zero weights that became zero (zero was their nearest value)
    zero_channels: list[int]  # all-zero output channels

    @property
    def clusters(self) -> int:
        return self.codebook.size if self.codebook is not None else self.distinct_before

    @property
    def index_bits(self) -> int:
        return self.codebook.index_bits if self.codebook is not None else 8

    @property
    def lossless(self) -> bool:
        return math.isinf(self.sqnr_db)


@dataclass
class Agreement:
    """End-to-end: folded against unfolded model through the TFLM interpreter."""

    samples: int
    source: str  # where the inputs came from
    mean_abs_diff: float  # output int8 steps, averaged over every output element
    max_abs_diff: int
    top1_agreement: float  # fraction of inputs whose arg-max output is the same


@dataclass
class FoldResult:
    model: Model  # the folded model: a standard TFLite model
    tensors: list[FoldedTensor]
    agreement: Agreement | None
    clusters: int | str
    max_error_db: float | None

    def to_json(self) -> dict:
        def num(x: float):
            return None if math.isinf(x) else round(float(x), 3)

        weights = []
        for t in self.tensors:
            weights.append({
                "operator": t.operator, "op_type": t.op_type, "tensor": t.tensor, "name": t.name,
                "shape": list(t.shape), "channel_axis": t.channel_axis, "folded": t.folded,
                "reason": t.reason, "per_channel": t.per_channel,
                "clusters": t.clusters, "index_bits": t.index_bits,
                "codebook": t.codebook.values.tolist() if t.codebook is not None else None,
                "sqnr_db": num(t.sqnr_db), "lossless": t.lossless, "hypothesis": t.hypothesis,
                "distinct_before": t.distinct_before, "zeros": t.zeros,
                "zeros_added": t.zeros_added, "zero_channels": t.zero_channels,
            })
        a = self.agreement
        return {
            "model": self.model.path,
            "clusters": self.clusters,
            "max_error_db": self.max_error_db,
            "weights": weights,
            "folded_tensors": sum(t.folded for t in self.tensors),
            "min_sqnr_db": num(min((t.sqnr_db for t in self.tensors if t.folded),
                                   default=math.inf)),
            "agreement": None if a is None else {
                "samples": a.samples, "source": a.source,
                "mean_abs_diff": round(a.mean_abs_diff, 6), "max_abs_diff": a.max_abs_diff,
                "top1_agreement": round(a.top1_agreement, 6)},
        }


# --- 1-D k-means -----------------------------------------------------------------------------

def _prefix(xs: np.ndarray, ws: np.ndarray):
    z = np.zeros(1)
    return (np.concatenate([z, np.cumsum(ws)]), np.concatenate([z, np.cumsum(ws * xs)]),
            np.concatenate([z, np.cumsum(ws * xs * xs)]))


@dataclass
class DPTable:
    """The dynamic programme of one point set, good for every k up to `kmax`."""

    kmax: int
    back: np.ndarray  # [kmax, m]: where the last of c + 1 clusters ending at point j starts
    W: np.ndarray  # prefix sums of weights and weighted (centred) values
    S: np.ndarray
    shift: float
    xs: np.ndarray


def dp_table(xs: np.ndarray, ws: np.ndarray, kmax: int) -> DPTable:
    """Optimal weighted 1-D k-means of sorted distinct points `xs` (weights `ws`) for every
    k <= kmax: an O(kmax m^2) dynamic programme, vectorised over m."""
    m = xs.size
    kmax = min(kmax, m)
    shift = float(np.average(xs, weights=ws))  # centring keeps the prefix sums well conditioned
    W, S, Q = _prefix(xs - shift, ws)
    i = np.arange(m)[:, None]
    j = np.arange(m)[None, :]
    jj = np.maximum(i, j) + 1
    w_ = W[jj] - W[i]
    s_ = S[jj] - S[i]
    cost = np.maximum(Q[jj] - Q[i] - s_ * s_ / w_, 0.0)
    cost[np.broadcast_to(i > j, cost.shape)] = np.inf  # cost[i, j]: one cluster of points i..j
    best = cost[0].copy()
    back = np.zeros((kmax, m), np.int64)
    cols = np.arange(m)
    for c in range(1, kmax):
        cand = best[:-1, None] + cost[1:, :]  # the last cluster starts at point i + 1
        arg = cand.argmin(axis=0)
        best = cand[arg, cols]
        back[c] = arg + 1
    return DPTable(kmax, back, W, S, shift, xs)


def dp_centroids(table: DPTable, k: int) -> np.ndarray:
    """The optimal centroids for k clusters (k <= table.kmax, or all points)."""
    if k >= table.xs.size:
        return table.xs.astype(np.float64).copy()
    k = min(k, table.kmax)
    starts = []
    j_end = table.xs.size - 1
    for c in range(k - 1, -1, -1):
        start = int(table.back[c, j_end]) if c else 0
        starts.append(start)
        j_end = start - 1
    starts = np.array(starts[::-1])
    ends = np.concatenate([starts[1:], [table.xs.size]])
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    return (table.S[ends] - table.S[starts]) / (table.W[ends] - table.W[starts]) + table.shift


def kmeans_dp(xs: np.ndarray, ws: np.ndarray, k: int) -> np.ndarray:
    """Optimal weighted 1-D k-means of sorted distinct points into at most `k` clusters."""
    if k >= xs.size:
        return xs.astype(np.float64).copy()
    return dp_centroids(dp_table(xs, ws, k), k)


def _lloyd_sorted(xs: np.ndarray, ws: np.ndarray, centroids: np.ndarray, pin_zero: bool,
                  prefix=None, rounds: int = 300) -> np.ndarray:
    """Lloyd on sorted points, one step in O(k log m): the boundaries between clusters are the
    midpoints of neighbouring centroids, found by binary search; the means come from prefix
    sums. With `pin_zero` the cluster that holds 0 keeps its centroid at exactly 0."""
    W, S, _ = prefix if prefix is not None else _prefix(xs, ws)
    c = np.unique(centroids)
    bounds = None
    for _ in range(rounds):
        cut = np.searchsorted(xs, (c[:-1] + c[1:]) / 2, side="right")
        if bounds is not None and np.array_equal(cut, bounds):
            break
        bounds = cut
        starts = np.concatenate([[0], cut])
        ends = np.concatenate([cut, [xs.size]])
        wk = W[ends] - W[starts]
        live = wk > 0
        c = (S[ends] - S[starts])[live] / wk[live]
        if pin_zero:
            c[_nearest(c, np.zeros(1))[0]] = 0.0
            c = np.unique(c)
    return c


def _nearest(codebook: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of the sorted `codebook` for every element of `x`."""
    if codebook.size == 1:
        return np.zeros(x.shape, np.intp)
    return np.searchsorted((codebook[:-1] + codebook[1:]) / 2, x, side="left")


def cluster_1d(x: np.ndarray, weights: np.ndarray, k: int, pin_zero: bool = False,
               init: np.ndarray | None = None, tables: dict | None = None) -> np.ndarray:
    """Weighted 1-D k-means of `x` into at most `k` centroids (sorted). Without `init`: the exact
    DP on the distinct values (grouped into at most DP_POINTS value bins when there are more),
    then Lloyd on the exact values; with `init`, Lloyd from there (a warm start). `tables`
    (a dict with "kmax") keeps the DP table for later calls on the same data with other k."""
    xs, inv = np.unique(x.ravel(), return_inverse=True)
    ws = np.bincount(inv, weights=np.broadcast_to(weights, x.shape).ravel(), minlength=xs.size)
    live = ws > 0
    xs, ws = xs[live], ws[live]
    if xs.size == 0:
        return np.zeros(1)
    prefix = _prefix(xs, ws)
    if init is None:
        table = tables.get("table") if tables is not None else None
        if table is None:
            px, pw = xs, ws
            if xs.size > DP_POINTS:
                span = xs[-1] - xs[0]
                group = np.minimum(((xs - xs[0]) / span * DP_POINTS).astype(np.int64),
                                   DP_POINTS - 1)
                gw = np.bincount(group, weights=ws, minlength=DP_POINTS)
                gx = np.bincount(group, weights=ws * xs, minlength=DP_POINTS)
                used = gw > 0
                px, pw = gx[used] / gw[used], gw[used]
            table = dp_table(px, pw, max(k, tables["kmax"]) if tables is not None else k)
            if tables is not None:
                tables["table"] = table
        init = dp_centroids(table, k)
    if pin_zero:
        init = np.asarray(init, np.float64).copy()
        init[_nearest(np.sort(init), np.zeros(1))[0]] = 0.0
    return _lloyd_sorted(xs, ws, init, pin_zero, prefix)


# --- folding one weight matrix ---------------------------------------------------------------

def _sqnr_db(w: np.ndarray, err: float) -> float:
    signal = float(np.sum(w * w))
    if err <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / err)


def _solve_scales(w: np.ndarray, v: np.ndarray, previous: np.ndarray, per_channel: bool):
    """Least-squares scale per channel (or one for the tensor) for fixed values `v`."""
    num = (w * v).sum(axis=1)
    den = (v * v).sum(axis=1)
    if not per_channel:
        num, den = np.full_like(num, num.sum()), np.full_like(den, den.sum())
    ok = (den > 0) & (num > 0)
    return np.where(ok, num / np.where(ok, den, 1.0), previous)


def _fold_real(w: np.ndarray, gains: np.ndarray, k: int, pin_zero: bool, per_channel: bool,
               tables: dict | None = None, codebook: np.ndarray | None = None,
               rounds: int = MAX_ROUNDS):
    """Real phase: alternate 1-D clustering of w / g (weights g^2) and closed-form gains.
    Returns (codebook, gains, squared error); `codebook` continues an earlier call."""
    best = None
    err_prev = math.inf
    for _ in range(rounds):
        x = w / gains[:, None]
        codebook = cluster_1d(x, (gains * gains)[:, None], k, pin_zero, init=codebook,
                              tables=tables if codebook is None else None)
        u = codebook[_nearest(codebook, x)]
        gains = _solve_scales(w, u, gains, per_channel)
        err = float(np.sum((w - gains[:, None] * u) ** 2))
        if best is None or err < best[0]:
            best = (err, codebook, gains)
        if err >= err_prev * (1 - CONVERGED):
            break
        err_prev = err
    return best[1], best[2], best[0]


def _fold_int(w: np.ndarray, codebook: np.ndarray, gains: np.ndarray, pin_zero: bool,
              per_channel: bool):
    """Integer phase: put the real codebook on the full int8 range, then alternate assignment,
    integer codebook and scales while the error falls. Returns (values, indices, scales, err)."""
    peak = float(np.max(np.abs(codebook)))
    if peak == 0:
        values = np.zeros(1)
        scales = gains
    else:
        values = np.unique(np.clip(np.round(codebook / peak * INT8_LIMIT), -INT8_LIMIT, INT8_LIMIT))
        scales = gains * peak / INT8_LIMIT
    best = None
    for _ in range(MAX_ROUNDS):
        idx = _nearest(values, w / scales[:, None])
        err = float(np.sum((w - scales[:, None] * values[idx]) ** 2))
        if best is not None and err >= best[3] * (1 - CONVERGED):
            break
        best = (values, idx, scales, err)
        # exact integer optimum of each entry given assignment and scales
        t = np.broadcast_to(scales[:, None], w.shape)
        num = np.bincount(idx.ravel(), weights=(t * w).ravel(), minlength=values.size)
        den = np.bincount(idx.ravel(), weights=(t * t).ravel(), minlength=values.size)
        new = np.where(den > 0, np.round(num / np.where(den > 0, den, 1)), values)
        if pin_zero:
            new[values == 0] = 0
        new = np.clip(new, -INT8_LIMIT, INT8_LIMIT)
        scales = _solve_scales(w, new[idx], scales, per_channel)
        values = np.unique(new[den > 0]) if np.any(den > 0) else values
        if pin_zero and 0 not in values:
            values = np.unique(np.concatenate([values, [0.0]]))
    values, idx, scales, err = best
    return values, scales


ALIGN_CHUNK = 1 << 21  # elements of the (channels, ratios, values) block aligned at once
STABLE_CHANNELS = 8  # the union of aligned values is complete once this many add nothing
RATIO_SOURCES = 8  # a channel's values that propose gains (each against every union value)


def _best_ratios(vals: np.ndarray, steps: np.ndarray, ref: np.ndarray, ref_tol: np.ndarray):
    """For each row of `vals` ([C, D], NaN-padded, rounding step `steps[c]`), the ratio rho that
    lines up values with the most distinct sorted reference values `ref` (each within its own
    tolerance plus the row's rounding); ties go to the smaller residual relative to the
    tolerances. Returns (rho, hits)."""
    c, d = vals.shape
    out_rho, out_hits = np.ones(c), np.zeros(c, np.int64)
    # candidate ratios come from each row's largest magnitudes (the least rounded values)
    largest_first = np.argsort(np.where(np.isnan(vals), np.inf, -np.abs(vals)), axis=1,
                               kind="stable")  # NaN padding last
    top = np.take_along_axis(vals, largest_first[:, :RATIO_SOURCES], axis=1)
    step = max(1, ALIGN_CHUNK // max(1, d * top.shape[1] * ref.size))
    for lo in range(0, c, step):
        v, st = vals[lo:lo + step], steps[lo:lo + step]
        rho = (top[lo:lo + step, :, None] / ref[None, None, :]).reshape(v.shape[0], -1)
        valid = rho > 0  # same sign; NaN padding is never valid
        rho = np.where(valid, rho, 1.0)
        x = v[:, None, :] / rho[:, :, None]
        j = _nearest(ref, x)  # NaN padding gets some index, and never a hit (NaN compares false)
        near = np.abs(x - ref[j])
        tol = (0.5 * st[:, None, None] / rho[:, :, None] + ref_tol[j]) * 1.001
        hit = (near <= tol) & valid[:, :, None]
        # count distinct reference values hit: a ratio that squeezes the whole row onto the
        # reference's values next to zero must not count as a match of every value
        js = np.sort(np.where(hit, j, -1), axis=2)
        hits = (js[:, :, :1] >= 0).sum(axis=2) + (np.diff(js, axis=2) > 0).sum(axis=2)
        resid = np.where(hit, (near / tol) ** 2, 0.0).sum(axis=2)
        score = hits - resid / (2 * resid.max() + 1e-300)  # hits first, then residual
        score[~valid] = -np.inf
        best = score.argmax(axis=1)
        rows = np.arange(v.shape[0])
        out_rho[lo:lo + step], out_hits[lo:lo + step] = rho[rows, best], hits[rows, best]
    return out_rho, out_hits


def _merge(union, union_tol, v, tol):
    """Add aligned values to the union; a value within rounding of a kept one is the same
    cluster. Returns the new union, its tolerances and how many values were new."""
    vals = np.concatenate([union, v])
    tols = np.concatenate([union_tol, tol])
    o = np.argsort(vals, kind="stable")
    vals, tols = vals[o], tols[o]
    keep = np.ones(vals.size, bool)
    last = 0
    for i in range(1, vals.size):
        if vals[i] - vals[last] <= max(tols[i], tols[last]):
            keep[i] = False
            if tols[i] < tols[last]:
                vals[last], tols[last] = vals[i], tols[i]
        else:
            last = i
    return vals[keep], tols[keep], int(keep.sum()) - union.size


def recover_gains(w: np.ndarray, scales: np.ndarray, max_values: int | None = None
                  ) -> np.ndarray | None:
    """Each channel's gain, for layers whose channels are one codebook times a per-channel gain
    (batch-norm folding). A channel need not use every cluster (a depthwise 3x3 channel has 9
    weights), so its peak is not its gain: channels are aligned one after another (most
    distinct values first) to the union of the values aligned so far, each at the ratio that
    lines up the most of its values within rounding; a channel with fewer than two values
    lining up waits until the union has grown. Once the union stops growing, the remaining
    channels are aligned to it all at once. None when the channels are not clustered (a
    channel has more than CLUSTERED_MAX_VALUES values, or the aligned values outnumber
    `max_values`: a cheap way out for dense layers)."""
    ordered = np.sort(w, axis=1)  # each row's distinct non-zero values, as np.unique gives them
    first_of_run = np.ones(ordered.shape, bool)
    first_of_run[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    keep = first_of_run & (ordered != 0)
    sets = [row[k] for row, k in zip(ordered, keep)]
    sizes = np.array([v.size for v in sets])
    if sizes.max(initial=0) == 0 or sizes.max() > CLUSTERED_MAX_VALUES:
        return None
    scales = np.broadcast_to(np.asarray(scales, np.float64), (w.shape[0],))
    order = [int(c) for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]
    gains = np.ones(w.shape[0])
    first = order[0]
    union, union_tol = sets[first].copy(), np.full(sizes[first], 0.5 * scales[first])

    def padded(channels):
        vals = np.full((len(channels), sizes[channels].max()), np.nan)
        for row, c in enumerate(channels):
            vals[row, :sizes[c]] = sets[c]
        return vals

    def align_one(c, force=False):
        nonlocal union, union_tol
        rho, hits = _best_ratios(sets[c][None, :], scales[c:c + 1], union, union_tol)
        if hits[0] < min(2, sizes[c]) and not force:
            return None
        gains[c] = rho[0]
        union, union_tol, added = _merge(union, union_tol, sets[c] / rho[0],
                                         np.full(sizes[c], 0.5 * scales[c] / rho[0]))
        if max_values is not None and union.size > max_values and not force:
            raise _NotClustered
        return added

    try:
        waiting, quiet, rest = [], 0, []
        for n, c in enumerate(order[1:]):
            if quiet >= STABLE_CHANNELS:
                rest = order[1 + n:]
                break
            added = align_one(c)
            if added is None:
                waiting.append(c)
            else:
                quiet = quiet + 1 if added == 0 else 0
        if rest:
            rest = np.array(rest)
            rho, hits = _best_ratios(padded(rest), scales[rest], union, union_tol)
            ok = hits >= np.minimum(2, sizes[rest])
            gains[rest[ok]] = rho[ok]
            waiting += rest[~ok].tolist()
        for sweep in range(3):
            waiting = [c for c in waiting if align_one(c, force=sweep == 2) is None]
            if not waiting:
                break
    except _NotClustered:
        return None
    return gains


class _NotClustered(Exception):
    """recover_gains: more aligned values than a clustering has."""


def fold_weights(q: np.ndarray, scales: np.ndarray, k: int, zero_point: np.ndarray | None = None,
                 per_channel: bool | None = None, cache: dict | None = None) -> WeightFold:
    """Fold int8 weights `q` ([C, N], channel first) with quantization `scales` ([C], or [1]
    per tensor) into an int8 codebook of at most `k` values shared by all C channels.
    `cache` ({"kmax": K}) keeps what does not depend on k, for folding the same weights to
    several k <= K."""
    q = np.asarray(q)
    c = q.shape[0]
    scales = np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (c,)).copy()
    if per_channel is None:
        per_channel = np.asarray(scales).size > 1 and np.unique(scales).size > 1
    zp = np.zeros(c) if zero_point is None else np.broadcast_to(
        np.asarray(zero_point, np.float64).reshape(-1), (c,))
    qi = q.astype(np.int64)
    if not np.any(zp) and np.unique(qi).size <= k:
        values, idx = np.unique(qi, return_inverse=True)
        out_scales = np.asarray(scales if per_channel else scales[:1], np.float32)
        return WeightFold(Codebook(values.astype(np.int8)), idx.reshape(q.shape).astype(np.uint8),
                          out_scales, math.inf, "lossless")
    w = scales[:, None] * (qi - zp[:, None])
    pin_zero = bool(np.any(w == 0))
    if pin_zero and k < 2 and np.any(w != 0):
        raise UsageError("1 cluster cannot keep the zero weights zero and the others non-zero; "
                         "use --clusters 2 or more")
    peaks = np.abs(w).max(axis=1)
    hypotheses = [("layer-wide scale", np.ones(c))]
    if per_channel:
        gains = cache.get("gains") if cache is not None else None
        if gains is None:
            gains = recover_gains(w, scales)
            if gains is None:  # not clustered: each channel's peak is the best guess of its gain
                gains = np.where(peaks > 0, peaks, 1.0)
            if cache is not None:
                cache["gains"] = gains
        hypotheses.append(("per-channel gain", gains))
    # one round of each hypothesis; only those within HYPOTHESIS_MARGIN of the best go on
    started = []
    for name, gains in hypotheses:
        tables = cache.setdefault(name, {"kmax": cache["kmax"]}) if cache is not None else None
        started.append((name,) + _fold_real(w, gains, k, pin_zero, per_channel, tables, rounds=1))
    lowest = min(err for _, _, _, err in started)
    best = None
    for name, codebook, gains, err in started:
        if err > HYPOTHESIS_MARGIN * lowest:
            continue
        codebook, gains, _ = _fold_real(w, gains, k, pin_zero, per_channel, codebook=codebook)
        values, out = _fold_int(w, codebook, gains, pin_zero, per_channel)
        # scales as stored (float32), zero channels keep their old scale, then the final
        # assignment for exactly those scales
        out = np.where(peaks > 0, out, scales).astype(np.float32)
        out64 = out.astype(np.float64)
        idx = _nearest(values, w / out64[:, None])
        err = float(np.sum((w - out64[:, None] * values[idx]) ** 2))
        if best is None or err < best[0]:
            best = (err, name, values, idx, out)
    err, name, values, idx, out = best
    used = np.unique(idx)  # drop entries nothing maps to
    remap = np.zeros(values.size, np.int64)
    remap[used] = np.arange(used.size)
    values, idx = values[used], remap[idx]
    return WeightFold(Codebook(values.astype(np.int8)), idx.astype(np.uint8),
                      out if per_channel else out[:1], _sqnr_db(w, err), name)


# --- choosing K ------------------------------------------------------------------------------

def _auto_clusters(q: np.ndarray, scales: np.ndarray, per_channel: bool = True
                   ) -> tuple[int | None, str, np.ndarray | None]:
    """The model's own clustering, or None for a dense tensor; and the recovered gains.
    With one scale the distinct int8 values are the codebook. Per channel, the smaller of
    `edgepack inspect`'s count and the count once each channel is divided by its recovered
    batch-norm gain: inspect normalises by each channel's peak, which overcounts channels that
    lack the extreme clusters (a depthwise 3x3 channel has 9 weights)."""
    q = q.astype(np.int64)
    distinct = int(np.unique(q).size)
    gains = None
    if not per_channel:
        shared, hypothesis = distinct, "layer-wide scale"
    else:
        shared, hypothesis = shared_codebook_size(q, scales)
        w = scales[:, None] * q
        gains = recover_gains(w, scales, max_values=CLUSTERED_MAX_VALUES)
        if gains is not None:
            # two values of one cluster differ by about one rounding step (as inspect: the
            # 95th percentile, so that one channel with a wrong gain cannot merge everything)
            steps = np.broadcast_to((scales / gains)[:, None], q.shape)
            aligned = _count_groups(w / gains[:, None], float(np.percentile(steps, 95)))
            # free per-channel gains line up some values of any small layer: count it as
            # clustered only if each value recurs (on average 4 times or more)
            if aligned < shared and CLUSTER_RECURRENCE * aligned <= np.count_nonzero(q):
                shared, hypothesis = aligned, "per-channel gain"
    if shared > CLUSTERED_MAX_VALUES:
        return None, (f"kept dense: {distinct} distinct int8 values, never clustered "
                      "(pass --clusters K or --max-error DB to fold it)"), gains
    if distinct <= shared:
        return distinct, f"auto: already palette-ready, {distinct} layer-shared values", gains
    return shared, f"auto: clustered to {shared} values ({hypothesis})", gains


def _fold_to_bound(q, scales, zp, per_channel, max_error_db: float) -> tuple[WeightFold, str]:
    """Smallest K in 2..256 whose weight SQNR is at least `max_error_db`, by bisection (the
    SQNR grows with K; K = the number of distinct values is always lossless)."""
    hi = max(2, min(MAX_CLUSTERS, int(np.unique(q).size)))
    cache = {"kmax": hi}
    best = fold_weights(q, scales, hi, zp, per_channel, cache)
    lo = 2
    while lo < hi:
        mid = (lo + hi) // 2
        trial = fold_weights(q, scales, mid, zp, per_channel, cache)
        if trial.sqnr_db >= max_error_db:
            hi, best = mid, trial
        else:
            lo = mid + 1
    if best.codebook.size > hi:  # hi was never tried below the lossless fold
        best = fold_weights(q, scales, hi, zp, per_channel, cache)
    return best, f"--max-error {max_error_db:g} dB: smallest K meeting the bound is {hi}"


# --- the model -------------------------------------------------------------------------------

def _parse_clusters(clusters) -> int | str:
    if isinstance(clusters, str):
        if clusters.strip().lower() == "auto":
            return "auto"
        try:
            clusters = int(clusters)
        except ValueError:
            raise UsageError(f"--clusters must be an integer 1..{MAX_CLUSTERS} or 'auto', "
                             f"got '{clusters}'") from None
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) \
            or not 1 <= int(clusters) <= MAX_CLUSTERS:
        raise UsageError(f"--clusters must be an integer 1..{MAX_CLUSTERS} or 'auto', "
                         f"got {clusters!r}")
    return int(clusters)


def _rederive_bias(model: Model, op, old_w: np.ndarray, new_w: np.ndarray, done: set) -> None:
    """Keep every bias equal in real terms: bias scale = input scale x new weight scale."""
    if len(op.inputs) < 3 or op.inputs[2] < 0 or op.inputs[2] in done:
        return
    bias = model.tensors[op.inputs[2]]
    x = model.tensors[op.inputs[0]]
    if bias.data is None or bias.dtype != "int32" or x.quantization is None:
        # left alone it would no longer match the new weight scales
        raise ModelError(f"operator {op.index} ({op.name}): bias '{bias.name}' is "
                         f"{'not constant' if bias.data is None else bias.dtype}; folding "
                         "needs a constant int32 bias and a quantized input", model.path)
    done.add(bias.index)
    in_scale = float(x.quantization.scale[0])
    n = bias.data.size
    old = np.broadcast_to(old_w.astype(np.float64), (n,))
    if bias.quantization is not None and bias.quantization.scale.size in (1, n):
        old_bias_scale = np.broadcast_to(bias.quantization.scale.astype(np.float64), (n,))
    else:
        old_bias_scale = in_scale * old
    real = bias.data.astype(np.float64) * old_bias_scale
    new_scale = (in_scale * np.broadcast_to(new_w.astype(np.float64), (n,))).astype(np.float32)
    new = np.round(real / new_scale.astype(np.float64))
    bias.data = np.clip(new, -2**31, 2**31 - 1).astype(np.int32).reshape(bias.shape)
    per_channel = new_w.size > 1
    bias.quantization = Quantization(
        scale=new_scale if per_channel else new_scale[:1],
        zero_point=np.zeros(n if per_channel else 1, np.int64), axis=0)


def fold_model(model: Model, clusters: int | str = "auto", max_error_db: float | None = None,
               calibration: np.ndarray | None = None, progress: Progress | None = None,
               check_agreement: bool = True, workers: int | None = None) -> FoldResult:
    """Fold every int8 weight tensor of `model` (left unchanged) into a layer-shared codebook.

    `clusters`: K in 1..256 for every tensor, or "auto" (each tensor's own clustering; dense
    tensors stay dense). `max_error_db`: instead, per tensor the smallest K in 2..256 whose
    weight SQNR is at least this. `calibration`: inputs for the end-to-end agreement check
    ([N, *input shape[1:]], int8 as is or float real values), random int8 when None.
    `workers`: processes that fold (1: this one); by default every core for large models,
    with the agreement check's TFLM pass of the given model running meanwhile. The result does
    not depend on it."""
    clusters = _parse_clusters(clusters)
    if max_error_db is not None:
        if clusters != "auto":
            raise UsageError("--clusters K and --max-error DB are alternatives: give one")
        if not math.isfinite(max_error_db) or max_error_db <= 0:
            raise UsageError(f"--max-error must be a positive number of dB, got {max_error_db}")
    pairs = [(op, t) for op, t in model.weight_tensors() if t.dtype == "int8"]
    if not pairs:
        raise ModelError("no int8 weight tensors to fold (CONV_2D, DEPTHWISE_CONV_2D, "
                         "FULLY_CONNECTED, ... with int8 weights)", model.path)
    if calibration is not None:
        calibration = calibration_inputs(model, calibration)

    first: dict[int, tuple] = {}  # tensor index -> (op, tensor) that folds it
    for op, t in pairs:
        first.setdefault(t.index, (op, t))
    jobs = list(first.values())
    workers = _pool_workers(workers, jobs)
    copies: list[Model] = []
    if workers > 1:  # this process copies the model while the workers fold
        folds, pool_agreement = _fold_in_pool(model, jobs, clusters, max_error_db, workers,
                                              progress, check_agreement, calibration,
                                              lambda: copies.append(copy.deepcopy(model)))
    else:
        folds, pool_agreement = {}, None
        for n, (op, t) in enumerate(jobs):
            if progress is not None:
                progress(n, len(jobs), t.name)
            folds[t.index] = _fold_tensor(op, t, clusters, max_error_db)
        copies.append(copy.deepcopy(model))

    folded_model = copies[0]
    results: list[FoldedTensor] = []
    biases_done: set[int] = set()
    applied: set[int] = set()
    for op, t in pairs:
        ft = folds[t.index]
        if t.index not in applied:
            applied.add(t.index)
            results.append(ft)
            if ft.folded:
                new_t = folded_model.tensors[t.index]
                new_t.data = ft.codebook.values[ft.indices].astype(np.int8)
                new_t.quantization = Quantization(
                    scale=ft.scales.astype(np.float32),
                    zero_point=np.zeros(ft.scales.size, np.int64),
                    axis=ft.channel_axis if ft.per_channel else 0)
        if ft.folded:  # shared weights: folded once, biases per operator
            _rederive_bias(folded_model, folded_model.operators[op.index], _old_scales(t),
                           ft.scales, biases_done)
    if progress is not None:
        progress(len(jobs), len(jobs), "done")
    folded_bytes = serialize_model(folded_model)
    folded_model.sha256 = hashlib.sha256(folded_bytes).hexdigest()
    agreement = None
    if check_agreement and pool_agreement is not None:
        agreement = pool_agreement(folded_bytes)
    elif check_agreement:
        agreement = measure_agreement(model, folded_model, calibration)
    return FoldResult(folded_model, results, agreement, clusters, max_error_db)


def _pool_workers(workers: int | None, jobs: list) -> int:
    """How many processes fold: `workers` when given, else every core for models with enough
    work (see POOL_MIN_TENSORS / POOL_MIN_WEIGHTS), else 1 (no pool)."""
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise UsageError(f"workers must be a positive integer, got {workers!r}")
        return workers
    cores = os.cpu_count() or 1
    weights = sum(int(np.asarray(t.data).size) for _, t in jobs)
    if cores < 2 or len(jobs) < POOL_MIN_TENSORS or weights < POOL_MIN_WEIGHTS:
        return 1
    return cores


_POOL_JOBS: list = []  # the (op, tensor) pairs of the running pool: forked workers inherit them
_POOL_MODEL: list = []  # and the model as given


def _fold_job(n: int, clusters, max_error_db) -> FoldedTensor:
    op, t = _POOL_JOBS[n]
    return _fold_tensor(op, t, clusters, max_error_db)


def _given_outputs_job(batches: list[np.ndarray]) -> np.ndarray:
    return _tflm_first_outputs(serialize_model(_POOL_MODEL[0]), batches)


def _fold_in_pool(model: Model, jobs: list, clusters, max_error_db, workers: int,
                  progress: Progress | None, check_agreement: bool, calibration,
                  meanwhile: Callable[[], None]):
    """Fold `jobs` in `workers` forked processes, largest tensors first (the pool finishes
    together); each tensor's fold is the same computation as in one process, so the result
    is identical. The TFLM pass of the model as given does not depend on the fold: it runs
    in the pool meanwhile. Returns the folds by tensor index and, with `check_agreement`, a
    function of the folded model's bytes that finishes the agreement check. `meanwhile` runs
    in this process once the work is handed out."""
    import concurrent.futures
    import multiprocessing

    global _POOL_JOBS, _POOL_MODEL
    _POOL_JOBS, _POOL_MODEL = jobs, [model]  # set before the first submit: the workers fork then
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"))
    try:
        given = batches = source = None
        if check_agreement:
            batches, source = _agreement_inputs(model, calibration)
            given = pool.submit(_given_outputs_job, batches)
        order = sorted(range(len(jobs)), key=lambda n: -int(np.asarray(jobs[n][1].data).size))
        pending = {pool.submit(_fold_job, n, clusters, max_error_db): n for n in order}
        meanwhile()
        folds, errors, done = {}, {}, 0
        for future in concurrent.futures.as_completed(pending):
            n = pending[future]
            if future.cancelled():
                continue
            if future.exception() is not None:
                # the error one process would raise: the first in tensor order
                errors[n] = future.exception()
                for other, m in pending.items():
                    if m > n:
                        other.cancel()
                continue
            op, t = jobs[n]
            folds[t.index] = future.result()
            done += 1
            if progress is not None:
                progress(done, len(jobs), t.name)
        if errors:
            raise errors[min(errors)]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        _POOL_JOBS, _POOL_MODEL = [], []
    if not check_agreement:
        pool.shutdown()
        return folds, None

    def agreement(folded_bytes: bytes) -> Agreement:
        # the folded model's inputs split between a worker and this process
        try:
            half = (batches[0].shape[0] + 1) // 2
            rest = pool.submit(_tflm_first_outputs, folded_bytes, [b[half:] for b in batches])
            head = _tflm_first_outputs(folded_bytes, [b[:half] for b in batches])
            folded_out = np.concatenate([head, rest.result()]) if half < batches[0].shape[0] \
                else head
            return _compare_outputs(given.result(), folded_out, source)
        finally:
            pool.shutdown(cancel_futures=True)

    return folds, agreement


def _old_scales(t: Tensor) -> np.ndarray:
    return np.asarray(t.quantization.scale if t.quantization is not None else [1.0], np.float64)


def _fold_tensor(op, t: Tensor, clusters, max_error_db) -> FoldedTensor:
    axis = channel_axis(op, t)
    q = np.moveaxis(np.asarray(t.data), axis, 0)
    channel_shape = q.shape
    q2 = q.reshape(q.shape[0], -1)
    quant = t.quantization
    per_channel = quant is not None and quant.per_channel
    scales = np.asarray(quant.scale if quant is not None else [1.0], np.float64)
    zp = np.asarray(quant.zero_point if quant is not None else [0], np.float64)
    full_scales = np.broadcast_to(scales, (q2.shape[0],))
    zeros = int(np.count_nonzero(q2 == 0))
    zero_channels = [int(c) for c in np.flatnonzero(~q2.any(axis=1))]
    distinct = int(np.unique(q2).size)
    common = dict(operator=op.index, op_type=op.opcode, tensor=t.index, name=t.name,
                  shape=tuple(t.shape), channel_axis=axis, per_channel=per_channel,
                  distinct_before=distinct, zeros=zeros, zero_channels=zero_channels)
    if max_error_db is not None:
        fold, reason = _fold_to_bound(q2, scales, zp, per_channel, max_error_db)
    else:
        cache = None
        if clusters == "auto":
            k, reason, gains = _auto_clusters(q2, full_scales, per_channel)
            if gains is not None:  # recovered once, not again inside fold_weights
                cache = {"kmax": k or 1, "gains": gains}
            if k is None:
                return FoldedTensor(folded=False, reason=reason, codebook=None, indices=None,
                                    scales=scales.astype(np.float32), sqnr_db=math.inf,
                                    hypothesis="dense", zeros_added=0, **common)
        else:
            k, reason = clusters, f"--clusters {clusters}"
        try:
            fold = fold_weights(q2, scales, k, zp, per_channel, cache)
        except UsageError as err:
            raise UsageError(f"tensor '{t.name}': {err}") from None
    idx = np.moveaxis(fold.indices.reshape(channel_shape), 0, axis)
    new_q = fold.codebook.values[fold.indices]
    zeros_added = int(np.count_nonzero((new_q == 0) & (q2 != 0)))
    if fold.hypothesis == "lossless":
        reason += " (lossless: the int8 values are unchanged)"
    return FoldedTensor(folded=True, reason=reason, codebook=fold.codebook,
                        indices=np.ascontiguousarray(idx), scales=fold.scales,
                        sqnr_db=fold.sqnr_db, hypothesis=fold.hypothesis,
                        zeros_added=zeros_added, **common)


# --- calibration and the end-to-end check --------------------------------------------------

def load_calibration(path: str | Path) -> np.ndarray:
    """Read a calibration `.npy` (no pickles)."""
    p = Path(path)
    if not p.exists():
        raise UsageError("no such calibration file", str(path))
    if p.is_dir():
        raise UsageError("is a directory, expected a .npy calibration file", str(path))
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UsageError(f"not a readable .npy array ({err})", str(path)) from None


def calibration_inputs(model: Model, data: np.ndarray, source: str = "calibration") -> np.ndarray:
    """Calibration data as int8 model inputs [N, *input shape]. int8 is used as is; float is
    real-valued input, quantized with the input tensor's scale and zero point."""
    if len(model.inputs) != 1:
        raise UsageError(f"{source}: the model has {len(model.inputs)} inputs; calibration "
                         "files are supported for single-input models")
    x = model.tensors[model.inputs[0]]
    want = tuple(x.shape[1:]) if x.shape else ()
    data = np.asarray(data)
    given = list(data.shape)
    described = f"model input '{x.name}' {x.dtype} {list(x.shape)}"
    if data.dtype not in (np.int8, np.float32, np.float64):
        raise UsageError(f"{source}: dtype {data.dtype} does not match {described} (give int8 "
                         "values, or float32 real values to quantize with the input scale)")
    if data.ndim == len(want):
        data = data[None]
    if tuple(data.shape[1:]) != want or data.shape[0] == 0:
        raise UsageError(f"{source}: shape {given} does not match {described} "
                         f"(expected [N, {', '.join(map(str, want))}])")
    if data.dtype == np.int8:
        return data
    if x.quantization is None:
        raise UsageError(f"{source}: float data but {described} has no quantization to apply")
    s, zp = float(x.quantization.scale[0]), int(x.quantization.zero_point[0])
    return np.clip(np.round(data.astype(np.float64) / s) + zp, -128, 127).astype(np.int8)


def _tflm_first_outputs(model: bytes, batches: list[np.ndarray]) -> np.ndarray:
    """[N, outputs] int64: the first output of `model` through TFLM for each input row."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model)
    rows = []
    for n in range(batches[0].shape[0]):
        for i, b in enumerate(batches):
            interp.set_input(b[n:n + 1].astype(b.dtype), i)
        interp.invoke()
        rows.append(np.array(interp.get_output(0)).reshape(-1).astype(np.int64))
    return np.stack(rows)


def _agreement_inputs(original: Model, calibration: np.ndarray | None):
    """The inputs of the agreement check, one batch per model input, and where they came from."""
    if calibration is None:
        rng = np.random.default_rng(RANDOM_CALIBRATION_SEED)
        shapes = [(RANDOM_CALIBRATION_SAMPLES,) + tuple(original.tensors[i].shape[1:])
                  for i in original.inputs]
        batches = [rng.integers(-128, 128, size=s, dtype=np.int8) for s in shapes]
        source = f"{RANDOM_CALIBRATION_SAMPLES} random int8 inputs (seed {RANDOM_CALIBRATION_SEED})"
    else:
        batches = [calibration]
        source = f"{calibration.shape[0]} calibration inputs"
    return batches, source


def _compare_outputs(given: np.ndarray, folded: np.ndarray, source: str) -> Agreement:
    diff = np.abs(given - folded)
    return Agreement(samples=int(diff.shape[0]), source=source,
                     mean_abs_diff=float(diff.mean()), max_abs_diff=int(diff.max()),
                     top1_agreement=float(np.mean(given.argmax(1) == folded.argmax(1))))


def measure_agreement(original: Model, folded: Model,
                      calibration: np.ndarray | None = None) -> Agreement:
    """Run both models through the TFLM interpreter (the bit-exact reference) on the same
    inputs and compare the first output."""
    batches, source = _agreement_inputs(original, calibration)
    models = [serialize_model(m) for m in (original, folded)]
    if len(models[0]) >= PARALLEL_AGREEMENT_BYTES and (os.cpu_count() or 1) > 1:
        # TFLM holds the GIL: the model as given runs in a forked process meanwhile
        import concurrent.futures
        import multiprocessing

        with concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("fork")) as pool:
            given = pool.submit(_tflm_first_outputs, models[0], batches)
            outs = [None, _tflm_first_outputs(models[1], batches)]
            outs[0] = given.result()
    else:
        outs = [_tflm_first_outputs(m, batches) for m in models]
    return _compare_outputs(outs[0], outs[1], source)


# --- people's view ---------------------------------------------------------------------------

HYPOTHESIS_SHORT = {"layer-wide scale": "layer", "per-channel gain": "gain"}


def render_text(result: FoldResult, console, output: str | None = None) -> None:
    """One table row per weight tensor, then the end-to-end agreement."""
    from rich.table import Table

    short = {"DEPTHWISE_CONV_2D": "DW_CONV", "FULLY_CONNECTED": "FC"}
    table = Table(title="Weight tensors (K = codebook entries shared by all output channels; "
                        "fold: layer = one layer-wide scale, gain = per-channel gains recovered)",
                  title_justify="left", show_edge=False)
    for col in ("op", "type", "shape", "K", "bits", "SQNR dB", "zeros", "+0", "0-ch", "fold"):
        table.add_column(col, justify="left" if col in ("type", "shape", "fold") else "right",
                         no_wrap=col != "fold")
    for t in result.tensors:
        if not t.folded:
            sqnr, how = "-", "dense"
        elif t.lossless:
            sqnr, how = "lossless", "[green]lossless[/]"
        else:
            colour = "green" if t.sqnr_db >= 40 else "yellow" if t.sqnr_db >= 30 else "red"
            sqnr, how = f"[{colour}]{t.sqnr_db:.1f}[/]", HYPOTHESIS_SHORT.get(t.hypothesis, t.hypothesis)
        table.add_row(str(t.operator), short.get(t.op_type, t.op_type), "x".join(map(str, t.shape)),
                      str(t.clusters), str(t.index_bits) if t.folded else "8", sqnr,
                      f"{t.zeros:,}", str(t.zeros_added), str(len(t.zero_channels)), how)
    console.print(table)
    for t in result.tensors:
        if not t.folded or t.zero_channels:
            note = t.reason if not t.folded else f"{len(t.zero_channels)} all-zero channel(s)"
            console.print(f"  op {t.operator} ({t.name}): {note}")
    a = result.agreement
    if a is not None:
        colour = "green" if a.top1_agreement == 1.0 else "yellow"
        console.print(f"end to end (TFLM, {a.source}): top-1 agreement "
                      f"[{colour}]{100 * a.top1_agreement:.1f}%[/], mean |output difference| "
                      f"{a.mean_abs_diff:.3f} int8 steps (max {a.max_abs_diff})")
    if output:
        folded = sum(t.folded for t in result.tensors)
        console.print(f"wrote {output}: {folded} of {len(result.tensors)} weight tensors folded")
