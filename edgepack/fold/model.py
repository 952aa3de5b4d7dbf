"""Folding a whole model: every weight tensor (in a forked process pool on large models),
biases re-derived, the agreement check, the FoldResult.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os

from typing import Callable

import numpy as np

from ..errors import ModelError, UsageError
from ..tflite import Model, Quantization, serialize_model
from .agreement import agreement_inputs, calibration_inputs, compare_outputs, measure_agreement, tflm_first_outputs
from .kmeans import MAX_CLUSTERS
from .results import Agreement, FoldedTensor, FoldResult, Progress
from .tensor import fold_tensor, given_scales
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
            folds[t.index] = fold_tensor(op, t, clusters, max_error_db)
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
            _rederive_bias(folded_model, folded_model.operators[op.index], given_scales(t),
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
    return fold_tensor(op, t, clusters, max_error_db)


def _given_outputs_job(batches: list[np.ndarray]) -> np.ndarray:
    return tflm_first_outputs(serialize_model(_POOL_MODEL[0]), batches)


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
            batches, source = agreement_inputs(model, calibration)
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
            rest = pool.submit(tflm_first_outputs, folded_bytes, [b[half:] for b in batches])
            head = tflm_first_outputs(folded_bytes, [b[:half] for b in batches])
            folded_out = np.concatenate([head, rest.result()]) if half < batches[0].shape[0] \
                else head
            return compare_outputs(given.result(), folded_out, source)
        finally:
            pool.shutdown(cancel_futures=True)

    return folds, agreement


