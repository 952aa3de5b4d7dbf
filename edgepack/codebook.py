"""How many values a layer-shared codebook needs: the one definition `edgepack inspect` reports
and `edgepack fold --clusters auto` folds to. Also recovers each channel's batch-norm gain, by
aligning each channel's value set with the layer's union of values.

A leaf module (numpy only): inspect and fold both import it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A layer with at most this many shared values was clustered (a 6-bit palette or less);
# more than that is what plain int8 quantization of trained weights looks like.
CLUSTERED_MAX_VALUES = 64
# free per-channel gains line up some values of any small layer: a count from recovered gains
# is a clustering only if each value recurs (on average this many times or more)
CLUSTER_RECURRENCE = 4


def nearest(codebook: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of the sorted `codebook` for every element of `x`."""
    if codebook.size == 1:
        return np.zeros(x.shape, np.intp)
    return np.searchsorted((codebook[:-1] + codebook[1:]) / 2, x, side="left")


def count_groups(values: np.ndarray, window: float) -> int:
    """Distinct values up to rounding: greedy groups of sorted values, each spanning at most
    `window` (one quantization step). Dense weights give about one group per step, clustered
    weights one group per cluster."""
    v = np.unique(values)
    groups, i = 0, 0
    while i < v.size:
        groups += 1
        i = int(np.searchsorted(v, v[i] + window, side="right"))
    return groups


@dataclass
class SharedCount:
    """How many values one codebook shared by every output channel needs."""

    values: int  # the count (all-zero channels add nothing: 0 is one value of every layer)
    hypothesis: str  # "layer-wide scale", "per-channel peak" or "per-channel gain"
    gains: np.ndarray | None  # recovered batch-norm gain per channel, None when not recovered

    @property
    def clustered(self) -> bool:
        return self.values <= CLUSTERED_MAX_VALUES


def shared_codebook_size(q: np.ndarray, scales: np.ndarray, per_channel: bool = True
                         ) -> SharedCount:
    """How many values a layer-shared codebook needs for int8 weights `q` ([C, N], channel
    first) with `scales` ([C], or [1] per tensor). With one scale the distinct int8 values are
    the codebook. Per channel, the smallest count of three hypotheses: the layer was clustered
    before per-channel quantization (real values `scale * q` repeat across channels); batch-norm
    folding gave every channel its own gain, estimated by the channel's peak (values repeat
    once each channel is divided by it), or recovered by aligning channels (a channel that
    lacks the extreme clusters, such as a depthwise 3x3 channel with 9 weights, has a peak
    below its gain). Two values of one cluster differ by about one rounding step: the 95th
    percentile of the steps, so that one channel with a wrong gain cannot merge everything.
    All-zero channels (pruned) are left out: they have no peak and no step."""
    q = np.asarray(q).astype(np.int64)
    if q.ndim != 2:
        q = q.reshape(q.shape[0] if q.ndim else 1, -1)
    if q.size == 0:
        return SharedCount(0, "layer-wide scale", None)
    scales = np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (q.shape[0],))
    distinct = int(np.unique(q).size)
    if not per_channel or np.unique(scales).size == 1:
        return SharedCount(distinct, "layer-wide scale", None)
    live = q.any(axis=1)
    if not live.any():
        return SharedCount(1, "layer-wide scale", None)
    has_zero = bool((q == 0).any())
    ql, sl = q[live], scales[live]
    real = ql * sl[:, None]
    steps = np.broadcast_to(sl[:, None], ql.shape)
    best = SharedCount(count_groups(real, float(np.percentile(steps, 95))) + (
        has_zero and not (ql == 0).any()), "layer-wide scale", None)
    peak = np.abs(ql).max(axis=1, keepdims=True).astype(np.float64)
    by_peak = count_groups(ql / peak, float(np.percentile(np.broadcast_to(1.0 / peak, ql.shape),
                                                          95))) + (has_zero and not (ql == 0).any())
    if by_peak < best.values:
        best = SharedCount(by_peak, "per-channel peak", None)
    gains = recover_gains(q * scales[:, None], scales, max_values=CLUSTERED_MAX_VALUES)
    if gains is not None:
        w = real / gains[live][:, None]
        aligned = count_groups(w, float(np.percentile(
            np.broadcast_to((sl / gains[live])[:, None], ql.shape), 95))) + (
            has_zero and not (ql == 0).any())
        if aligned < best.values and CLUSTER_RECURRENCE * aligned <= np.count_nonzero(q):
            best = SharedCount(aligned, "per-channel gain", None)
        best.gains = gains
    if distinct < best.values:
        best.values = distinct
    return best


class NotClustered(Exception):
    """recover_gains: more aligned values than a clustering has."""


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
        j = nearest(ref, x)  # NaN padding gets some index, and never a hit (NaN compares false)
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
            raise NotClustered
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
    except NotClustered:
        return None
    return gains


