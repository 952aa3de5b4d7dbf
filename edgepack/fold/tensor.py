"""Folding one weight tensor: the real phase (k-means + closed-form scales), the integer
phase, choosing K (auto, fixed, or an error bound), and the FoldedTensor it becomes.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from ..inspect import CLUSTERED_MAX_VALUES, channel_axis, count_groups, shared_codebook_size
from ..tflite import Tensor
from .gains import recover_gains
from .kmeans import MAX_CLUSTERS, cluster_1d, nearest
from .results import Codebook, FoldedTensor, WeightFold
INT8_LIMIT = 127  # symmetric int8 weights: TFLite requires zero point 0 and [-127, 127]
MAX_ROUNDS = 40
CONVERGED = 1e-4  # stop when a round lowers the squared error by less than this fraction
HYPOTHESIS_MARGIN = 4.0  # a start whose first-round error is this much worse is dropped
CLUSTER_RECURRENCE = 4  # --clusters auto: weights per codebook value that make it a clustering


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
        u = codebook[nearest(codebook, x)]
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
        idx = nearest(values, w / scales[:, None])
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
        idx = nearest(values, w / out64[:, None])
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
            aligned = count_groups(w / gains[:, None], float(np.percentile(steps, 95)))
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



def given_scales(t: Tensor) -> np.ndarray:
    return np.asarray(t.quantization.scale if t.quantization is not None else [1.0], np.float64)


def fold_tensor(op, t: Tensor, clusters, max_error_db) -> FoldedTensor:
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


