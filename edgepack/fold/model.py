"""Folding a whole model: every weight tensor (in a forked process pool on large models),
biases re-derived, the agreement check, the FoldResult.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os


import numpy as np

from ..errors import ModelError, StageError, UsageError
from ..tflite import WEIGHT_OPERATORS, Model, Quantization, serialize_model
from ..boards import BoardSpec, load_board
from .agreement import RANDOM_CALIBRATION_SAMPLES, agreement_inputs, calibration_inputs, compare_outputs, tflm_first_outputs
from .kmeans import MAX_CLUSTERS
from .results import Agreement, FoldedTensor, FoldResult, Gate, Progress, TradeoffPoint
from .tensor import Candidate, TensorFolder, fold_tensor, folded_tensor, given_scales

# The default end-to-end budget: on classifier outputs at least this top-1 agreement with the
# model as given, and never more than this mean absolute output difference (int8 steps)
GATE_TOP1 = 0.99
GATE_MEAN_ABS_DIFF = 1.0
# without calibration data the gate runs on random int8 inputs, far from any real input
# distribution, where every fold moves the outputs more (digits_b's own 16 clusters: 1.38 steps
# on random inputs, 0.05 on its test set): there the mean may move up to 2 steps
GATE_MEAN_ABS_DIFF_RANDOM = 2.0
SENSITIVITY_SAMPLES = 8  # calibration inputs per one-layer sensitivity run (--budget)
GATE_SENSITIVITY_SAMPLES = 4  # the same when the gate ranks what to back off
# fold_model folds tensors in a pool of forked processes only when there is enough work: a
# pool costs ~15-35 ms to start and saves at most ~40 ms on the digits models (4 tensors, 38 k
# weights, ~0.1-0.2 s); MobileNetV2 (53 tensors, 0.4 M weights) goes from 3.2 s to 1.8 s
POOL_MIN_TENSORS = 8
POOL_MIN_WEIGHTS = 100_000


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
    # TRANSPOSE_CONV takes (output shape, weights, input, bias); the others (input, weights, bias)
    data_at, bias_at = (2, 3) if op.opcode == "TRANSPOSE_CONV" else (0, 2)
    if len(op.inputs) <= bias_at or op.inputs[bias_at] < 0 or op.inputs[bias_at] in done:
        return
    bias = model.tensors[op.inputs[bias_at]]
    x = model.tensors[op.inputs[data_at]]
    if bias.data is None or bias.dtype != "int32" or x.quantization is None:
        # left alone it would no longer match the new weight scales
        raise ModelError(f"operator {op.index} ({op.name}): bias '{bias.name}' is "
                         f"{'not constant' if bias.data is None else bias.dtype}; folding "
                         "needs a constant int32 bias and a quantized input", model.path)
    n = bias.data.size
    w = model.tensors[op.inputs[1]]
    axis = WEIGHT_OPERATORS[op.opcode]
    channels = w.shape[axis] if len(w.shape) > axis else new_w.size
    if n != channels or bias.data.ndim != 1:
        raise ModelError(f"operator {op.index} ({op.name}): bias '{bias.name}' of shape "
                         f"{list(bias.shape)} does not hold one value per output channel "
                         f"({channels})", model.path)
    done.add(bias.index)
    in_scale = float(x.quantization.scale[0])
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


def parse_budget(budget) -> float | None:
    """--budget: "99%", "99" or 0.99 -> 0.99."""
    if budget is None:
        return None
    text = str(budget).strip()
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise UsageError(f"--budget must be a percentage such as 99% or 99.5, got '{budget}'") \
            from None
    if text.endswith("%") or value > 1:
        value /= 100
    if not 0 < value <= 1:
        raise UsageError(f"--budget must be a percentage in (0, 100], got '{budget}'")
    return value


def apply_folds(model: Model, pairs, folds: dict[int, FoldedTensor]) -> Model:
    """A copy of `model` with every folded tensor's codebook values and scales in place, and the
    biases re-derived."""
    folded_model = copy.deepcopy(model)
    biases_done: set[int] = set()
    applied: set[int] = set()
    for op, t in pairs:
        ft = folds[t.index]
        if t.index not in applied:
            applied.add(t.index)
            if ft.folded:
                new_t = folded_model.tensors[t.index]
                new_t.data = ft.codebook.values[ft.indices].astype(np.int8)
                new_t.quantization = Quantization(
                    scale=ft.scales.astype(np.float32),
                    zero_point=np.zeros(ft.scales.size, np.int64),
                    axis=ft.channel_axis if ft.per_channel else 0)
        if ft.folded:  # shared weights: folded once, biases per operator
            _rederive_bias(folded_model, folded_model.operators[op.index], given_scales(t),
                           ft.scales, biases_done)
    return folded_model


class Checker:
    """TFLM runs of folded variants against the model as given, on the calibration inputs."""

    def __init__(self, model: Model, pairs, calibration, labels, given_outputs=None):
        self.model, self.pairs, self.labels = model, pairs, labels
        self.batches, self.source = agreement_inputs(model, calibration)
        self.given = given_outputs
        self.runs = 1  # the model as given, here or in the fold's pool
        if self.given is None:
            self.given = tflm_first_outputs(serialize_model(model), self.batches)

    def check(self, folds: dict[int, FoldedTensor], samples: int | None = None,
              rows: np.ndarray | None = None) -> Agreement:
        """Agreement of `folds` with the model as given: on every calibration input, the first
        `samples`, or the inputs `rows`. The outputs stay in `last_outputs`."""
        m = apply_folds(self.model, self.pairs, folds)
        if rows is None:
            rows = np.arange(self.given.shape[0])[:samples]
        out = tflm_first_outputs(serialize_model(m), [b[rows] for b in self.batches])
        self.runs += 1
        self.last_outputs = out
        labels = self.labels[rows] if self.labels is not None else None
        return compare_outputs(self.given[rows], out, self.source, labels)

    def worst_rows(self, outputs: np.ndarray, count: int) -> np.ndarray:
        """The `count` inputs `outputs` (every input's) moved most: changed top-1 first, then
        the largest mean difference."""
        diff = np.abs(outputs - self.given).mean(axis=1)
        flipped = outputs.argmax(1) != self.given.argmax(1)
        order = np.lexsort((-diff, ~flipped))
        return np.sort(order[:count])


def gate_limit(a: Agreement) -> float:
    return GATE_MEAN_ABS_DIFF_RANDOM if a.source.startswith(
        f"{RANDOM_CALIBRATION_SAMPLES} random") else GATE_MEAN_ABS_DIFF


def gate_holds(a: Agreement) -> bool:
    if a.mean_abs_diff > gate_limit(a):
        return False
    return not a.classifier or a.top1_agreement >= GATE_TOP1


def budget_metric(a: Agreement) -> float:
    """What --budget bounds: accuracy on the labels, else top-1 agreement (classifiers), else
    1 - the mean absolute difference in output steps (at most 1 step apart counts as agreeing)."""
    if a.accuracy is not None:
        return a.accuracy
    if a.classifier:
        return a.top1_agreement
    return max(0.0, 1.0 - a.mean_abs_diff / 100)


def _with(folds: dict, ft: FoldedTensor) -> dict:
    out = dict(folds)
    out[ft.tensor] = ft
    return out


def _backoff_order(folds: dict[int, FoldedTensor], damage: dict[int, float]) -> list[int]:
    """Lossy folds, the most damaging first: the measured damage of each alone, then the lowest
    worst-channel SQNR."""
    lossy = [ft for ft in folds.values() if ft.folded and not ft.lossless]
    lossy.sort(key=lambda ft: (-damage.get(ft.tensor, 0.0), ft.channel_sqnr_db, ft.sqnr_db))
    return [ft.tensor for ft in lossy]


def _damage(a: Agreement) -> float:
    """One number for how far a fold moved the outputs: mean steps, plus 10 per changed top-1
    decision in a hundred."""
    return a.mean_abs_diff + 10.0 * (1 - a.top1_agreement) + 1e-6


def _measure_damage(checker: Checker, folds: dict[int, FoldedTensor], folder_of,
                    rows: np.ndarray) -> dict[int, float]:
    """Each lossy tensor folded alone (every other tensor as given), on the inputs `rows`."""
    given = {t: folded_tensor(folder_of(t), folder_of(t).dense(), "") for t in folds}
    out = {}
    for t, ft in folds.items():
        if ft.folded and not ft.lossless:
            out[t] = _damage(checker.check(_with(given, ft), rows=rows))
    return out


GATE_MAX_ROUNDS = 6  # back-off rounds (each one TFLM pass) before every lossy fold goes dense


def run_gate(checker: Checker, folds: dict[int, FoldedTensor], folder_of
             ) -> tuple[dict, Agreement, Gate, list[TradeoffPoint]]:
    """The default budget: check the fold end to end; while it misses, back off the most
    damaging lossy tensors one notch (the target's next larger codebook size, or dense), 1, 2,
    4, ... tensors a round; after GATE_MAX_ROUNDS rounds every lossy fold goes dense. The
    damage of each lossy tensor is measured alone once the first check misses, on the
    GATE_SENSITIVITY_SAMPLES inputs the fold moved most (changed top-1 first): the tensors that
    move those are the ones to blame. At most GATE_MAX_ROUNDS + 2 full TFLM passes of the folded
    model, and one short pass per lossy tensor."""
    points = []
    a = checker.check(folds)
    points.append(_point(folds, a, "as folded"))
    backed: list[str] = []
    step, rounds = 1, 0
    damage: dict[int, float] = {}
    if not gate_holds(a):
        rows = checker.worst_rows(checker.last_outputs, GATE_SENSITIVITY_SAMPLES)
        damage = _measure_damage(checker, folds, folder_of, rows)
    while not gate_holds(a):
        order = _backoff_order(folds, damage)
        if not order:
            break
        last = rounds >= GATE_MAX_ROUNDS
        for tensor in (order if last else order[:step]):
            old = folds[tensor]
            f = folder_of(tensor)
            notch = None if last else f.next_notch(old)
            why = (f"the end-to-end gate: its {old.clusters}-value fold (worst channel "
                   f"{old.channel_sqnr_db:.1f} dB) moved the outputs too far")
            if notch is None:
                new = folded_tensor(f, f.dense(), f"kept dense by {why}")
                backed.append(f"{old.name} (dense)")
            else:
                new = folded_tensor(f, notch, f"{notch.fold.codebook.size} values: backed off by "
                                               f"{why}")
                backed.append(f"{old.name} ({old.clusters} -> {new.clusters} values)")
            folds = _with(folds, new)
        a = checker.check(folds)
        points.append(_point(folds, a, f"gate round {rounds + 1}"))
        step, rounds = step * 2, rounds + 1
    gate = Gate(budget=f"top-1 agreement >= {100 * GATE_TOP1:g} % (classifier outputs), mean "
                       f"|diff| <= {gate_limit(a):g} output step"
                       + ("s (random inputs)" if gate_limit(a) != 1 else ""),
                held=gate_holds(a), backed_off=backed, runs=checker.runs)
    return folds, a, gate, points


def _point(folds: dict, a: Agreement, label: str) -> TradeoffPoint:
    return TradeoffPoint(target_bytes=sum(ft.target_bytes for ft in folds.values()),
                         top1_agreement=a.top1_agreement, mean_abs_diff=a.mean_abs_diff,
                         accuracy=a.accuracy, label=label)


def run_budget(checker: Checker, folders: dict[int, TensorFolder], budget: float,
               progress: Progress | None = None, auto: dict | None = None
               ) -> tuple[dict, Agreement, Gate, list[TradeoffPoint]]:
    """Fewest bytes within `budget`: each tensor's ladder (target steps within the floors and
    smaller than dense); each tensor's sensitivity, measured alone at its cheapest step on the
    inputs that every tensor at its cheapest step moves most; then
    steps taken greedily where they save the most bytes per unit of expected damage, and the
    longest prefix of that path that holds the budget found by bisection with TFLM runs."""
    dense = {t: folded_tensor(f, f.dense(), "kept dense: --budget") for t, f in folders.items()}
    a0 = checker.check(dense)
    points = [_point(dense, a0, "all dense")]
    if budget_metric(a0) < budget:
        what = "accuracy on the labels" if a0.accuracy is not None else "agreement"
        raise UsageError(f"--budget {100 * budget:g} % cannot be met: the model as given reaches "
                         f"{100 * budget_metric(a0):.1f} % {what} with every layer dense")
    ladders = {t: f.ladder() for t, f in folders.items()}
    # the inputs to measure sensitivity on: those that every tensor at its cheapest step moves
    # most (changed top-1 first)
    cheapest = dict(dense)
    for t, ladder in ladders.items():
        if ladder:
            cheapest[t] = folded_tensor(folders[t], ladder[0], "")
    a = checker.check(cheapest)
    points.append(_point(cheapest, a, "every tensor at its cheapest step"))
    rows = checker.worst_rows(checker.last_outputs, SENSITIVITY_SAMPLES)
    sens: dict[int, float] = {}
    n = len(ladders)
    for done, (t, ladder) in enumerate(ladders.items()):
        if progress is not None:
            progress(done, n, f"sensitivity of {folders[t].t.name}")
        if not ladder:
            continue
        sens[t] = _damage(checker.check(_with(dense, cheapest[t]), rows=rows))

    def noise(c: Candidate) -> float:
        return 0.0 if c.fold is None or math.isinf(c.fold.sqnr_db) else 10 ** (-c.fold.sqnr_db / 10)

    def damage(t: int, c: Candidate) -> float:
        base = noise(ladders[t][0])
        return sens[t] * (noise(c) / base if base > 0 else 0.0)

    # greedy path from all dense: each move takes one tensor one step cheaper
    level = {t: len(ladders[t]) for t in ladders}  # len = dense
    path: list[tuple[int, int]] = []
    while True:
        best = None
        for t, lad in ladders.items():
            if level[t] == 0 or t not in sens:
                continue
            cur = folders[t].dense() if level[t] == len(lad) else lad[level[t]]
            nxt = lad[level[t] - 1]
            saved = cur.bytes - nxt.bytes
            cost_ = max(damage(t, nxt) - (damage(t, cur) if cur.fold is not None else 0.0), 1e-9)
            ratio = saved / cost_
            if best is None or ratio > best[0]:
                best = (ratio, t)
        if best is None:
            break
        level[best[1]] -= 1
        path.append((best[1], level[best[1]]))

    def state(prefix: int) -> dict:
        lv = {t: len(ladders[t]) for t in ladders}
        for t, l in path[:prefix]:
            lv[t] = l
        out = dict(dense)
        for t, l in lv.items():
            if l < len(ladders[t]):
                c = ladders[t][l]
                out[t] = folded_tensor(folders[t], c, (
                    f"--budget {100 * budget:g} %: {c.fold.codebook.size} values "
                    f"({c.bytes} bytes against {folders[t].dense_bytes} dense)"))
        for t in ladders:
            if not out[t].folded:
                why = ("no step of the target is smaller than dense within the per-channel "
                       "floors" if not ladders[t] else "folding it costs more agreement than "
                       "its bytes are worth within the budget")
                out[t] = folded_tensor(folders[t], folders[t].dense(), f"kept dense: {why}")
        return out

    lo, hi = 0, len(path)  # lo holds (all dense); find the largest prefix that holds
    best_state, best_a = state(0), a0
    tried = {0: a0}
    while lo < hi:
        mid = (lo + hi + 1) // 2
        s = state(mid)
        a = checker.check(s)
        tried[mid] = a
        points.append(_point(s, a, f"budget path {mid}/{len(path)}"))
        if budget_metric(a) >= budget:
            lo, best_state, best_a = mid, s, a
        else:
            hi = mid - 1
    def total(folds: dict) -> int:
        return sum(ft.target_bytes for ft in folds.values())

    if auto is not None and total(auto) < total(best_state):
        # the model's own clustering (auto, through the default gate) may beat the path: take
        # it where it holds the budget
        gated, a, _, gate_points = run_gate(checker, auto, lambda t: folders[t])
        for p in gate_points:
            p.label = f"auto, {p.label}"
        points += gate_points
        if budget_metric(a) >= budget and total(gated) < total(best_state):
            best_state, best_a = gated, a
    gate = Gate(budget=f"--budget {100 * budget:g} % "
                       f"({'accuracy on the labels' if a0.accuracy is not None else 'top-1 agreement'})",
                held=True, backed_off=[], runs=checker.runs)
    return best_state, best_a, gate, points


def _fold_model(model: Model, clusters: int | str = "auto", max_error_db: float | None = None,
               calibration: np.ndarray | None = None, progress: Progress | None = None,
               check_agreement: bool = True, workers: int | None = None,
               board: BoardSpec | str | None = None, budget=None,
               labels: np.ndarray | None = None) -> FoldResult:
    """Fold every int8 weight tensor of `model` (left unchanged) into a layer-shared codebook,
    priced by `board`'s cost model (default: the host's, the CPU runtime's packed form).

    `clusters`: K in 1..256 for every tensor, or "auto" (each tensor's own clustering; on
    palette NPUs never-clustered tensors may take the largest palette). `max_error_db`:
    instead, per tensor the cheapest target step whose weight SQNR is at least this.
    `budget` ("99%"): instead, the fewest bytes whose end-to-end agreement (accuracy with
    `labels`) stays within it. Every choice keeps each channel's floors and is smaller than
    dense. `calibration`: inputs for the end-to-end check ([N, *input shape[1:]], int8 as is or
    float real values), random int8 when None. Auto and the budget are gated end to end
    (TFLM, the model as given against the folded one); auto backs off the most damaging
    tensors until the default budget holds. `workers`: processes that fold (1: this one);
    the result does not depend on it."""
    clusters = _parse_clusters(clusters)
    budget = parse_budget(budget)
    if max_error_db is not None:
        if clusters != "auto":
            raise UsageError("--clusters K and --max-error DB are alternatives: give one")
        if not math.isfinite(max_error_db) or max_error_db <= 0:
            raise UsageError(f"--max-error must be a positive number of dB, got {max_error_db}")
    if budget is not None and (clusters != "auto" or max_error_db is not None):
        raise UsageError("--budget chooses every codebook size: give it without --clusters K "
                         "or --max-error DB")
    if labels is not None and budget is None:
        raise UsageError("--labels is for --budget (the accuracy it bounds)")
    if not isinstance(board, BoardSpec):
        # no board: price as edgepack's CPU runtime stores weights (every board runs it)
        board = load_board(board or "host")
    enc = board.weight_encoding
    if not model.weight_tensors():  # one ADD, a pooling head: nothing to fold, nothing changes
        return FoldResult(copy.deepcopy(model), [], None, clusters, max_error_db,
                          target=board.name, budget=budget)
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
    gated = check_agreement and (clusters == "auto" and max_error_db is None)
    if budget is not None:
        gated = True
    given = None
    if workers > 1:
        folds, folders, given = _fold_in_pool(model, jobs, clusters, max_error_db, enc, workers,
                                              progress, check_agreement or gated, calibration,
                                              keep=budget is not None)
    else:
        folds, folders = {}, {}
        for n, (op, t) in enumerate(jobs):
            if progress is not None:
                progress(n, len(jobs), t.name)
            folds[t.index], folders[t.index] = fold_tensor(op, t, clusters, max_error_db, enc,
                                                           keep_folder=True)
    if progress is not None:
        progress(len(jobs), len(jobs), "done")

    agreement, gate, points = None, None, []
    if budget is not None or check_agreement:
        checker = Checker(model, pairs, calibration, labels, given)
        if budget is not None:
            for t in folds:
                if folders.get(t) is None:
                    op, tt = first[t]
                    folders[t] = TensorFolder(op, tt, enc)
            folds, agreement, gate, points = run_budget(checker, folders, budget, progress,
                                                        auto=folds)
        elif gated:
            def folder_of(t: int) -> TensorFolder:
                if folders.get(t) is None:
                    folders[t] = TensorFolder(*first[t], enc)
                return folders[t]

            folds, agreement, gate, points = run_gate(checker, folds, folder_of)
        else:
            agreement = checker.check(folds)
    folded_model = apply_folds(model, pairs, folds)
    folded_bytes = serialize_model(folded_model)
    folded_model.sha256 = hashlib.sha256(folded_bytes).hexdigest()
    results = [folds[t.index] for t in (tt for _, tt in jobs)]
    return FoldResult(folded_model, results, agreement, clusters, max_error_db, target=board.name,
                      budget=budget, gate=gate, tradeoff=points)


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


def _fold_job(n: int, clusters, max_error_db, enc, keep: bool):
    op, t = _POOL_JOBS[n]
    ft, folder = fold_tensor(op, t, clusters, max_error_db, enc, keep_folder=True)
    if keep:  # the budget needs every step's fold: compute them here, in parallel
        folder.ladder()
        folder.cache = None
        return ft, folder
    return ft, None


def _given_outputs_job(batches: list[np.ndarray]) -> np.ndarray:
    return tflm_first_outputs(serialize_model(_POOL_MODEL[0]), batches)


def _fold_in_pool(model: Model, jobs: list, clusters, max_error_db, enc, workers: int,
                  progress: Progress | None, run_given: bool, calibration, keep: bool):
    """Fold `jobs` in `workers` forked processes, largest tensors first (the pool finishes
    together); each tensor's fold is the same computation as in one process, so the result
    is identical. The TFLM pass of the model as given does not depend on the fold: it runs
    in the pool meanwhile. Returns the folds and folders (None unless `keep`) by tensor
    index, and the given model's outputs (None unless `run_given`)."""
    import concurrent.futures
    import multiprocessing

    global _POOL_JOBS, _POOL_MODEL
    _POOL_JOBS, _POOL_MODEL = jobs, [model]  # set before the first submit: the workers fork then
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"))
    try:
        given = None
        if run_given:
            batches, _ = agreement_inputs(model, calibration)
            given = pool.submit(_given_outputs_job, batches)
        order = sorted(range(len(jobs)), key=lambda n: -int(np.asarray(jobs[n][1].data).size))
        pending = {pool.submit(_fold_job, n, clusters, max_error_db, enc, keep): n
                   for n in order}
        folds, folders, errors, done = {}, {}, {}, 0
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
            folds[t.index], folders[t.index] = future.result()
            done += 1
            if progress is not None:
                progress(done, len(jobs), t.name)
        if errors:
            raise errors[min(errors)]
        given_out = given.result() if given is not None else None
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        _POOL_JOBS, _POOL_MODEL = [], []
    pool.shutdown()
    return folds, folders, given_out


def fold_model(*args, **kwargs) -> FoldResult:
    """See `_fold_model` (the whole of it); a TFLM crash or refusal in it names the model."""
    try:
        return _fold_model(*args, **kwargs)
    except StageError as err:
        if err.path is None:
            model = args[0] if args else kwargs["model"]
            raise StageError(str(err), model.path) from None
        raise
