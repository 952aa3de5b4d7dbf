"""Folding in a pool of processes: large models fold their tensors on every core (the TFLM pass
of the model as given runs meanwhile), and the result is the one a single process computes,
byte for byte; small models never start a pool."""

from __future__ import annotations

import numpy as np
import pytest

import edgepack.fold.model as fold
from edgepack.errors import UsageError
from edgepack.fold import fold_model
from edgepack.tflite import parse_model, read_model, serialize_model
from tests.conftest import fixture_path
from tests.mobilenet_model import small_mobilenet

FIXTURES = ["digits_a_baseline_int8", "digits_b_cluster16_int8",
            "digits_b_cluster16_int8_pertensor", "digits_c_prune50_cluster16_sp_int8"]


@pytest.fixture(scope="module")
def mobilenet():
    return parse_model(small_mobilenet().tflite, "mobilenet_small.tflite")


def _same_result(one, many) -> None:
    assert serialize_model(many.model) == serialize_model(one.model)
    assert many.model.sha256 == one.model.sha256
    assert [t.tensor for t in many.tensors] == [t.tensor for t in one.tensors]
    for a, b in zip(one.tensors, many.tensors):
        assert (a.sqnr_db, a.clusters, a.hypothesis, a.reason, a.zeros_added) == \
            (b.sqnr_db, b.clusters, b.hypothesis, b.reason, b.zeros_added)
        assert np.array_equal(a.scales, b.scales)
        if a.folded:
            assert np.array_equal(a.indices, b.indices)
            assert np.array_equal(a.codebook.values, b.codebook.values)
    assert many.to_json() == one.to_json()


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("clusters", ["auto", 16])
def test_a_pool_folds_every_fixture_exactly_as_one_process(name, clusters):
    model = read_model(fixture_path(f"{name}.tflite"))
    one = fold_model(model, clusters, check_agreement=False, workers=1)
    two = fold_model(model, clusters, check_agreement=False, workers=2)
    _same_result(one, two)


def test_a_pool_folds_mobilenet_exactly_as_one_process_agreement_included(mobilenet):
    one = fold_model(mobilenet, "auto", workers=1)
    two = fold_model(mobilenet, "auto", workers=2)
    _same_result(one, two)
    assert two.agreement == one.agreement
    assert one.agreement.samples == 32 and one.agreement.max_abs_diff > 0
    assert sum(t.folded for t in one.tensors) == len(one.tensors) == 53


def test_a_pool_with_calibration_inputs_gives_the_same_agreement(mobilenet):
    x = np.random.default_rng(1).integers(-128, 128, (5, 48, 48, 3), dtype=np.int8)
    one = fold_model(mobilenet, 16, calibration=x, workers=1)
    three = fold_model(mobilenet, 16, calibration=x, workers=3)
    _same_result(one, three)
    assert three.agreement == one.agreement and one.agreement.samples == 5


def test_progress_counts_every_tensor_once_in_a_pool(mobilenet):
    seen = []
    fold_model(mobilenet, 16, check_agreement=False, workers=2,
               progress=lambda done, total, name: seen.append((done, total, name)))
    assert [d for d, _, _ in seen[:-1]] == list(range(1, 54))
    assert {t for _, t, _ in seen} == {53} and seen[-1] == (53, 53, "done")


def test_small_models_fold_in_this_process_and_large_ones_on_every_core(mobilenet, monkeypatch):
    jobs = lambda m: [(op, t) for op, t in m.weight_tensors() if t.dtype == "int8"]  # noqa: E731
    digits = read_model(fixture_path("digits_b_cluster16_int8.tflite"))
    monkeypatch.setattr(fold.os, "cpu_count", lambda: 2)
    assert fold._pool_workers(None, jobs(digits)) == 1  # 4 tensors, 38 k weights
    assert fold._pool_workers(None, jobs(mobilenet)) == 2  # 53 tensors
    assert fold._pool_workers(3, jobs(digits)) == 3
    monkeypatch.setattr(fold.os, "cpu_count", lambda: 1)
    assert fold._pool_workers(None, jobs(mobilenet)) == 1


def test_an_error_in_a_worker_reaches_the_caller_as_the_same_one_line(mobilenet):
    model = read_model(fixture_path("digits_c_prune50_cluster16_sp_int8.tflite"))
    with pytest.raises(UsageError) as serial:
        fold_model(model, 1, check_agreement=False, workers=1)
    with pytest.raises(UsageError) as pooled:
        fold_model(model, 1, workers=2)
    assert str(pooled.value) == str(serial.value)
    assert "1 cluster cannot keep the zero weights zero" in str(pooled.value)
    assert fold._POOL_JOBS == []


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_integer(workers):
    model = read_model(fixture_path("digits_b_cluster16_int8.tflite"))
    with pytest.raises(UsageError, match="workers must be a positive integer"):
        fold_model(model, 16, workers=workers)
