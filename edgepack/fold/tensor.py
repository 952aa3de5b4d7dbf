"""Folding one weight tensor: the real phase (k-means + closed-form scales), the integer
phase, choosing K (auto, fixed, or an error bound), and the FoldedTensor it becomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..boards import PACKED_DEFAULT as PACKED_CPU
from ..boards import WeightEncoding
from ..codebook import nearest, recover_gains, shared_codebook_size
from ..inspect import channel_axis
from ..tflite import Tensor
from . import cost
from .kmeans import cluster_1d
from .results import Codebook, FoldedTensor, WeightFold
INT8_LIMIT = 127  # symmetric int8 weights: TFLite requires zero point 0 and [-127, 127]
MAX_ROUNDS = 40
CONVERGED = 1e-4  # stop when a round lowers the squared error by less than this fraction
HYPOTHESIS_MARGIN = 4.0  # a start whose first-round error is this much worse is dropped
# Each output channel keeps a floor, not only the tensor (auto and --max-error): its own weight
# SQNR, and its peak magnitude within PEAK_TOLERANCE (a crushed channel hides in a tensor SQNR)
CHANNEL_FLOOR_DB = 20.0
PEAK_TOLERANCE = 0.25


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
                 per_channel: bool | None = None, cache: dict | None = None,
                 zero_entry: bool = False) -> WeightFold:
    """Fold int8 weights `q` ([C, N], channel first) with quantization `scales` ([C], or [1]
    per tensor) into an int8 codebook of at most `k` values shared by all C channels.
    `cache` ({"kmax": K}) keeps what does not depend on k, for folding the same weights to
    several k <= K. `zero_entry`: 0 is one of the k values even if no weight is zero (the
    target pads the tensor with zeros, which take a slot of its palette)."""
    q = np.asarray(q)
    c = q.shape[0]
    scales = np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (c,)).copy()
    if per_channel is None:
        per_channel = np.asarray(scales).size > 1 and np.unique(scales).size > 1
    zp = np.zeros(c) if zero_point is None else np.broadcast_to(
        np.asarray(zero_point, np.float64).reshape(-1), (c,))
    qi = q.astype(np.int64)
    distinct = np.unique(qi)
    if not np.any(zp) and distinct.size + (zero_entry and 0 not in distinct) <= k:
        values, idx = np.unique(qi, return_inverse=True)
        out_scales = np.asarray(scales if per_channel else scales[:1], np.float32)
        return WeightFold(Codebook(values.astype(np.int8)), idx.reshape(q.shape).astype(np.uint8),
                          out_scales, math.inf, "lossless")
    w = scales[:, None] * (qi - zp[:, None])
    pin_zero = bool(np.any(w == 0)) or zero_entry
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

def channel_floors(w: np.ndarray, folded: np.ndarray) -> tuple[float, float]:
    """The worst channel's weight SQNR (dB) and the worst relative change of a channel's peak
    magnitude, for real weights `w` and their fold `folded` ([C, N]). All-zero channels stay
    zero and are left out."""
    live = np.abs(w).max(axis=1) > 0
    if not live.any():
        return math.inf, 0.0
    w, f = w[live], folded[live]
    err = ((w - f) ** 2).sum(axis=1)
    sig = (w * w).sum(axis=1)
    with np.errstate(divide="ignore"):
        sqnr = np.where(err > 0, 10 * np.log10(sig / np.where(err > 0, err, 1)), math.inf)
    peak = np.abs(w).max(axis=1)
    moved = np.abs(np.abs(f).max(axis=1) - peak) / peak
    return float(sqnr.min()), float(moved.max())


@dataclass
class Candidate:
    """One way to store a tensor: a fold to k values (or dense when `fold` is None)."""

    k: int | None
    fold: WeightFold | None
    bytes: int  # on the target (cost model)
    channel_sqnr_db: float  # the worst channel's
    peak_moved: float  # the worst channel's relative peak change

    @property
    def within_floors(self) -> bool:
        return (self.fold is None or self.fold.hypothesis == "lossless" or
                (self.channel_sqnr_db >= CHANNEL_FLOOR_DB and self.peak_moved <= PEAK_TOLERANCE))


class TensorFolder:
    """Folds one weight tensor to the target's codebook sizes, pricing each with the cost model;
    what does not depend on k is computed once."""

    def __init__(self, op, t: Tensor, enc: WeightEncoding, kmax: int | None = None):
        self.op, self.t, self.enc = op, t, enc
        self.axis = channel_axis(op, t)
        q = np.moveaxis(np.asarray(t.data), self.axis, 0)
        self.channel_shape = q.shape
        self.q2 = q.reshape(q.shape[0], -1)
        quant = t.quantization
        self.per_channel = quant is not None and quant.per_channel
        self.scales = np.asarray(quant.scale if quant is not None else [1.0], np.float64)
        self.zp = np.asarray(quant.zero_point if quant is not None else [0], np.float64)
        self.full_scales = np.broadcast_to(self.scales, (self.q2.shape[0],))
        zp = np.broadcast_to(self.zp, (self.q2.shape[0],))
        self.w = self.full_scales[:, None] * (self.q2.astype(np.float64) - zp[:, None])
        self.pads = cost.pads_with_zeros(op.opcode, t.shape, enc)
        self.dense_bytes = cost.dense_bytes(op.opcode, t.data, enc)
        self._count = None
        # the DP table is built once for every k up to kmax: O(kmax) in time
        if kmax is None:
            own = self.count.values if self.count.clustered else 0
            kmax = min(256, max(own, 64 if enc.store == "packed" else enc.palette_steps[-1]))
        self.kmax = kmax
        self.cache = {"kmax": self.kmax}
        if self._count is not None and self._count.gains is not None:
            self.cache["gains"] = self._count.gains
        self.tried: dict[int, Candidate] = {}

    @property
    def count(self):
        """The values a layer-shared codebook needs (computed on first use)."""
        if self._count is None:
            self._count = shared_codebook_size(self.q2, self.full_scales, self.per_channel)
        return self._count

    def symbols(self, k: int) -> int:
        """Palette symbols of a k-value fold on the target (+1 when padding adds a 0)."""
        return k + (1 if self.pads else 0)

    def candidate(self, k: int, zero_entry: bool | None = None) -> Candidate:
        """A fold to k values; on padded NPU layers 0 is one of them (k palette symbols) unless
        `zero_entry` is False (k values + the padding zero: the model's own clustering)."""
        zero_entry = self.pads if zero_entry is None else zero_entry
        if (k, zero_entry) in self.tried:
            return self.tried[(k, zero_entry)]
        if k > self.kmax and self.cache is not None and "table" not in self.cache.get(
                "layer-wide scale", {}):
            self.kmax = self.cache["kmax"] = k
        fold = fold_weights(self.q2, self.scales, k, self.zp, self.per_channel, self.cache,
                            zero_entry=zero_entry)
        values = np.moveaxis(fold.int8.reshape(self.channel_shape), 0, self.axis)
        nbytes = cost.encoded_bytes(self.op.opcode, values, self.enc)
        sc = np.broadcast_to(np.asarray(fold.scales, np.float64), (self.q2.shape[0],))
        sqnr, moved = channel_floors(self.w, sc[:, None] * fold.int8.astype(np.float64))
        c = Candidate(k, fold, nbytes, sqnr, moved)
        self.tried[(k, zero_entry)] = c
        return c

    def dense(self) -> Candidate:
        return Candidate(None, None, self.dense_bytes, math.inf, 0.0)

    def steps(self) -> list[int]:
        """Codebook sizes worth trying: the target's steps (below the distinct values)."""
        distinct = int(np.unique(self.q2).size)
        return [k for k in cost.symbol_steps(self.enc)
                if k < distinct + (1 if self.pads else 0) and k <= self.kmax]

    def smaller(self, c: Candidate) -> bool:
        """Whether storing `c` beats dense: strictly smaller on the target (no larger when the
        fold is lossless: the same values, nothing to lose), and on NPU boards also no larger in
        the CPU runtime's packed form (operators the NPU leaves to the CPU, and the CPU
        firmware, read that)."""
        if c.fold is None:
            return False
        lossless = c.fold.hypothesis == "lossless"
        if not (c.bytes <= self.dense_bytes if lossless else c.bytes < self.dense_bytes):
            return False
        if self.enc.store != "packed":
            packed = cost.packed_bytes(self.op.opcode, self.t.shape, c.fold.codebook.size,
                                       PACKED_CPU)
            if packed > int(np.asarray(self.t.data).size):
                return False
        return True

    def next_notch(self, ft: FoldedTensor) -> Candidate | None:
        """The gate's back-off for a folded tensor: the target's next larger codebook size that
        keeps the floors, fits better and beats dense; None: dense."""
        have = ft.codebook.size if ft.codebook is not None else 256
        for k in cost.symbol_steps(self.enc):
            if k <= have:
                continue
            c = self.candidate(k)
            if c.within_floors and self.smaller(c) and c.fold.sqnr_db > ft.sqnr_db:
                return c
        return None

    def ladder(self) -> list[Candidate]:
        """Every step that is smaller than dense and keeps the floors, and the tensor's own
        clustering (lossless when it has few enough values), cheapest first; a step that costs
        more than a better-fitting one is left out."""
        tries = [self.candidate(k) for k in self.steps()]
        if self.count.clustered:
            tries.append(self.candidate(self.count.values, False))
        out = [c for c in tries if self.smaller(c) and c.within_floors]
        out.sort(key=lambda c: (c.bytes, -c.fold.sqnr_db))
        kept: list[Candidate] = []
        for c in out:  # cheapest first: keep only those that fit better than every cheaper one
            if not kept or c.fold.sqnr_db > kept[-1].fold.sqnr_db:
                kept.append(c)
        return kept


def choose_auto(f: TensorFolder) -> tuple[Candidate, str]:
    """Auto: the tensor's own clustering (its shared count); on palette NPUs a never-clustered
    tensor may take the largest palette. Always within the floors and smaller than dense."""
    count = f.count
    top = cost.symbol_steps(f.enc)[-1]
    tries: list[tuple[int, bool | None, str]] = []
    if count.clustered:
        k = count.values
        why = (f"auto: already palette-ready, {k} layer-shared values"
               if k >= np.unique(f.q2).size else f"auto: clustered to {k} values ({count.hypothesis})")
        tries.append((k, False, why))  # the model's own values (+ the padding zero)
        if f.enc.store != "packed" and f.symbols(k) > top:
            tries.append((top, None, f"auto: clustered to {k} values; {top} symbols, the "
                                     "target's largest palette"))
    elif f.enc.store == "npu-palette":
        tries.append((top, None, f"auto: never clustered ({count.values} shared values); {top} "
                                 "symbols, the NPU's largest palette"))
    else:
        return f.dense(), (f"kept dense: {np.unique(f.q2).size} distinct int8 values, never "
                           "clustered (pass --clusters K, --max-error DB or --budget to fold it)")
    reasons = []
    for k, zero_entry, why in tries:
        c = f.candidate(k, zero_entry)
        if not c.within_floors:
            reasons.append(f"{k} values would crush a channel (worst channel "
                           f"{c.channel_sqnr_db:.1f} dB, a peak moved {100 * c.peak_moved:.0f} %)")
            continue
        if not f.smaller(c):
            reasons.append(f"{k} values would take {c.bytes} bytes against {f.dense_bytes} "
                           "dense")
            continue
        return c, why
    return f.dense(), "kept dense: " + "; ".join(reasons)


def choose_fixed(f: TensorFolder, k: int) -> tuple[Candidate, str]:
    """--clusters K: K values (on padded NPU layers 0 is one of them, so K symbols), unless
    that is no smaller than dense."""
    c = f.candidate(k)
    why = f"--clusters {k}" + (" (0 is one of them: the NPU pads this layer with zeros)"
                               if f.pads and c.fold.hypothesis != "lossless" else "")
    if not f.smaller(c):
        return f.dense(), (f"kept dense: {k} values would take {c.bytes} bytes against "
                           f"{f.dense_bytes} dense")
    return c, why


def choose_max_error(f: TensorFolder, max_error_db: float) -> tuple[Candidate, str]:
    """--max-error: the cheapest of the target's steps whose weight SQNR meets the bound and
    keeps the floors; dense when none is smaller than dense."""
    for c in sorted((f.candidate(k) for k in f.steps()), key=lambda c: c.bytes):
        if c.fold.sqnr_db >= max_error_db and c.within_floors and f.smaller(c):
            return c, (f"--max-error {max_error_db:g} dB: {c.fold.codebook.size} values, the "
                       "cheapest step meeting the bound")
    return f.dense(), (f"kept dense: no step of the target ({', '.join(map(str, f.steps()))} "
                       f"values) meets {max_error_db:g} dB and is smaller than dense")


def given_scales(t: Tensor) -> np.ndarray:
    return np.asarray(t.quantization.scale if t.quantization is not None else [1.0], np.float64)


def folded_tensor(f: TensorFolder, choice: Candidate, reason: str) -> FoldedTensor:
    """The FoldedTensor for one choice."""
    q2, t, op = f.q2, f.t, f.op
    common = dict(operator=op.index, op_type=op.opcode, tensor=t.index, name=t.name,
                  shape=tuple(t.shape), channel_axis=f.axis, per_channel=f.per_channel,
                  distinct_before=int(np.unique(q2).size),
                  zeros=int(np.count_nonzero(q2 == 0)),
                  zero_channels=[int(c) for c in np.flatnonzero(~q2.any(axis=1))],
                  dense_bytes=f.dense_bytes, target_bytes=choice.bytes,
                  channel_sqnr_db=choice.channel_sqnr_db, pads_zeros=f.pads,
                  shared_values=f._count.values if f._count is not None else 0)
    if choice.fold is None:
        return FoldedTensor(folded=False, reason=reason, codebook=None, indices=None,
                            scales=f.scales.astype(np.float32), sqnr_db=math.inf,
                            hypothesis="dense", zeros_added=0, **common)
    fold = choice.fold
    idx = np.moveaxis(fold.indices.reshape(f.channel_shape), 0, f.axis)
    zeros_added = int(np.count_nonzero((fold.int8 == 0) & (q2 != 0)))
    if fold.hypothesis == "lossless":
        reason += " (lossless: the int8 values are unchanged)"
    return FoldedTensor(folded=True, reason=reason, codebook=fold.codebook,
                        indices=np.ascontiguousarray(idx), scales=fold.scales,
                        sqnr_db=fold.sqnr_db, hypothesis=fold.hypothesis,
                        zeros_added=zeros_added, **common)


def fold_tensor(op, t: Tensor, clusters, max_error_db, enc: WeightEncoding,
                keep_folder: bool = False):
    """Fold one tensor as `clusters` ("auto" or K) or `max_error_db` say, for the target `enc`.
    With `keep_folder`, also the TensorFolder (for the gate and the budget)."""
    f = TensorFolder(op, t, enc, kmax=clusters if isinstance(clusters, int) else None)
    try:
        if max_error_db is not None:
            choice, reason = choose_max_error(f, max_error_db)
        elif clusters == "auto":
            choice, reason = choose_auto(f)
        else:
            choice, reason = choose_fixed(f, clusters)
    except UsageError as err:
        raise UsageError(f"tensor '{t.name}': {err}") from None
    ft = folded_tensor(f, choice, reason)
    return (ft, f) if keep_folder else ft
