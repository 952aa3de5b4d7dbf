"""Exact weighted 1-D k-means: a dynamic programme on grouped sorted values, refined by
boundary-moving Lloyd. The codebook search of every fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codebook import nearest

MAX_CLUSTERS = 256
DP_POINTS = 512  # the exact DP runs on at most this many (grouped) points, Lloyd refines on all


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
    # A segment whose weights vanish beside the rest (prefix sums cancel to 0 when channel gains
    # differ by ~1e10) costs nothing: 0, not 0 / 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = np.maximum(Q[jj] - Q[i] - np.where(w_ > 0, s_ * s_ / w_, 0.0), 0.0)
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
    w = table.W[ends] - table.W[starts]
    with np.errstate(divide="ignore", invalid="ignore"):
        means = (table.S[ends] - table.S[starts]) / w + table.shift
    # a cluster of vanishing weight (see dp_table): the middle of its points
    return np.where(w > 0, means, (table.xs[starts] + table.xs[ends - 1]) / 2)


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
            c[nearest(c, np.zeros(1))[0]] = 0.0
            c = np.unique(c)
    return c


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
        init[nearest(np.sort(init), np.zeros(1))[0]] = 0.0
    return _lloyd_sorted(xs, ws, init, pin_zero, prefix)


