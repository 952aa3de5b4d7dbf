"""Folding weights into layer-shared int8 codebooks: what `edgepack.fold` promises.

Synthetic layers are made the way real ones are: a codebook of K real values, then either
per-channel quantization of the clustered layer (`layer`), or a batch-norm gain per channel
before it (`gain`); channels use overlapping windows of the codebook (so a channel's peak is not
its gain), optionally half the weights pruned to zero.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack.errors import ModelError, UsageError
from edgepack.fold import (Codebook, cluster_1d, fold_model, fold_weights, kmeans_dp,
                           measure_agreement)
from edgepack.packing import pack_indices, unpack_indices
from edgepack.tflite import parse_model, read_model, serialize_model
from tests.conftest import edit_model, fixture_path
from tests.opmodels import T, single_op_model


def separated_codebook(rng, k: int, zero: bool, gap: float = 0.04) -> np.ndarray:
    while True:
        c = np.sort(np.append(rng.uniform(-1, 1, k - zero), [0.0] if zero else []))
        others = np.abs(c[c != 0]) if zero else np.abs(c)
        if np.diff(c).min() >= gap and others.min() >= 2 * gap:
            return c


def clustered_layer(rng, channels: int, n: int, k: int = 16, kind: str = "layer",
                    prune: float = 0.0, zero_channels=()):
    """int8 weights [C, N], per-channel scales, the true cluster labels, and the codebook."""
    codebook = separated_codebook(rng, k, zero=prune > 0)
    labels = np.empty((channels, n), np.int64)
    for c in range(channels):  # each channel uses an overlapping window of the codebook
        lo, hi = rng.integers(0, k // 3), k - rng.integers(0, k // 3)
        labels[c] = rng.integers(lo, hi, n)
    if prune:
        labels[rng.random((channels, n)) < prune] = int(np.flatnonzero(codebook == 0)[0])
    real = codebook[labels]
    if kind == "gain":
        real *= rng.uniform(0.2, 5.0, channels)[:, None]
    real[list(zero_channels)] = 0
    peak = np.abs(real).max(axis=1)
    scales = np.where(peak > 0, peak / 127, 1.0).astype(np.float32)
    q = np.round(real / scales[:, None]).astype(np.int8)
    return q, scales, labels, codebook


def same_partition(truth: np.ndarray, found: np.ndarray) -> bool:
    """Each true cluster maps to exactly one codebook entry and vice versa."""
    pairs = set(zip(truth.tolist(), found.tolist()))
    return len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def sse(x, c):
    c = np.sort(c)
    idx = np.searchsorted((c[:-1] + c[1:]) / 2, x) if c.size > 1 else np.zeros(x.size, int)
    return float(np.sum((x - c[idx]) ** 2))


# --- the 1-D k-means ---------------------------------------------------------------------------

def test_dp_is_optimal_on_small_sets(rng):
    """The DP equals the brute-force optimum over every split of 8 sorted points into 3."""
    from itertools import combinations

    for _ in range(5):
        xs = np.sort(rng.normal(size=8))
        ws = rng.uniform(0.5, 2.0, 8)
        best = math.inf
        for a, b in combinations(range(1, 8), 2):
            cost = 0.0
            for part in (slice(0, a), slice(a, b), slice(b, 8)):
                m = np.average(xs[part], weights=ws[part])
                cost += float(np.sum(ws[part] * (xs[part] - m) ** 2))
            best = min(best, cost)
        c = kmeans_dp(xs, ws, 3)
        idx = np.searchsorted((c[:-1] + c[1:]) / 2, xs)
        assert np.sum(ws * (xs - c[idx]) ** 2) == pytest.approx(best, rel=1e-9)


def test_clustering_matches_exact_kmeans1d(rng):
    """On real-valued layers the clustering is as good as the exact O(kn) kmeans1d (<= 0.1 %
    worse: the DP runs on 512 value groups, Lloyd refines on every value)."""
    import kmeans1d

    for kind in ("layer", "gain"):
        q, s, _, _ = clustered_layer(rng, 32, 144, kind=kind)
        w = (q * s[:, None].astype(np.float64)).ravel()
        ours = cluster_1d(w, np.ones(1), 16)
        _, theirs = kmeans1d.cluster(w, 16)
        assert sse(w, ours) <= sse(w, np.array(theirs)) * 1.001
    dense = rng.normal(size=20000)
    _, theirs = kmeans1d.cluster(dense, 16)
    assert sse(dense, cluster_1d(dense, np.ones(1), 16)) <= sse(dense, np.array(theirs)) * 1.001


def test_clustering_weights_that_differ_by_1e20_gives_finite_centroids_without_warnings():
    """Channel gains ~1e10 apart (a model with one absurd scale) make the small weights vanish
    from the prefix sums: those clusters cost nothing and sit at their points' middle, with no
    0 / 0 on the way (a stray numpy warning the fuzz found)."""
    import warnings

    x = np.concatenate([np.linspace(-1, 1, 40), np.linspace(-3, 3, 40)])
    weights = np.concatenate([np.full(40, 1e20), np.full(40, 1e-20)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = cluster_1d(x, weights, 16)
    assert np.all(np.isfinite(c)) and 1 < c.size <= 16


# --- folding weight matrices ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["layer", "gain"])
@pytest.mark.parametrize("prune", [0.0, 0.5])
def test_fold_recovers_the_clustering(rng, kind, prune):
    for _ in range(3):
        q, s, labels, _ = clustered_layer(rng, 32, 144, kind=kind, prune=prune)
        assert np.unique(q).size > 16  # per-channel quantization spread the codebook
        f = fold_weights(q, s, 16, per_channel=True)
        assert f.codebook.size <= 16
        assert f.sqnr_db >= 40
        assert same_partition(labels[q != 0], f.indices[q != 0])
        assert np.array_equal(f.int8 == 0, q == 0)  # zeros stay zero, no weight became zero


def test_gain_layers_are_recognised_as_gain_layers(rng):
    q, s, _, _ = clustered_layer(rng, 64, 144, kind="gain")
    assert fold_weights(q, s, 16, per_channel=True).hypothesis == "per-channel gain"
    q, s, _, _ = clustered_layer(rng, 64, 144, kind="layer")
    assert fold_weights(q, s, 16, per_channel=True).hypothesis == "layer-wide scale"


def test_gain_recovery_is_not_fooled_by_clusters_next_to_zero():
    """Two channels of a batch-norm-folded layer (gains 1.008 and 1.179): channel 1 holds a
    rare outlier (127) that channel 0 lacks, and channel 0 has values next to zero (-1, 1, 2).
    A ratio that squeezes channel 1 onto those small values lines many values up within
    rounding, but only onto three distinct ones; the true gain ratio lines up 13."""
    from edgepack.fold import recover_gains

    q0 = [-127, -107, -79, -69, -62, -39, -1, 1, 2, 21, 59, 70, 92, 103, 109]
    q1 = [-69, -58, -43, -38, -34, -22, 1, 11, 32, 38, 50, 56, 60, 127]
    q = np.zeros((2, 15))
    q[0], q[1, :14] = q0, q1
    s = np.array([0.00871379766613245, 0.01867312751710415])
    gains = recover_gains(s[:, None] * q, s)
    assert gains[1] / gains[0] == pytest.approx(1.1791708807089425 / 1.0081323078203284,
                                                rel=0.01)


def test_codebook_is_int8_on_the_full_range(rng):
    q, s, _, _ = clustered_layer(rng, 16, 100, kind="gain")
    f = fold_weights(q, s, 16, per_channel=True)
    v = f.codebook.values
    assert v.dtype == np.int8 and np.all(np.diff(v.astype(int)) > 0)
    assert np.abs(v).max() >= 120 and v.min() >= -127
    assert f.scales.dtype == np.float32 and f.scales.shape == (16,) and np.all(f.scales > 0)
    real = s[:, None].astype(np.float64) * q
    err = real - f.scales[:, None].astype(np.float64) * f.int8
    assert 10 * np.log10(np.sum(real ** 2) / np.sum(err ** 2)) == pytest.approx(f.sqnr_db)


def test_tensor_with_at_most_k_values_folds_losslessly(rng):
    q = rng.choice(np.array([-100, -7, 0, 3, 60, 127], np.int8), size=(8, 50))
    s = rng.uniform(0.001, 0.01, 8).astype(np.float32)
    for k in (6, 16, 256):
        f = fold_weights(q, s, k, per_channel=True)
        assert np.array_equal(f.int8, q) and np.array_equal(f.scales, s)
        assert math.isinf(f.sqnr_db) and f.codebook.size == 6


def test_fold_never_exceeds_k_and_sqnr_grows_with_k(rng):
    q = rng.integers(-127, 128, size=(16, 256)).astype(np.int8)
    s = rng.uniform(0.001, 0.01, 16).astype(np.float32)
    previous = -math.inf
    for k in (2, 3, 4, 8, 16, 32, 64, 128):
        f = fold_weights(q, s, k, per_channel=True)
        assert f.codebook.size <= k
        assert f.sqnr_db >= previous - 0.05
        previous = f.sqnr_db
    assert previous > 40


def test_zero_is_kept_and_zero_channels_survive(rng):
    q, s, _, _ = clustered_layer(rng, 16, 64, kind="gain", prune=0.5, zero_channels=[3, 9])
    f = fold_weights(q, s, 4, per_channel=True)  # coarse: many non-zeros may round to zero
    assert 0 in f.codebook.values.tolist()
    assert np.all(f.int8[q == 0] == 0)
    assert not f.int8[[3, 9]].any()
    assert np.array_equal(f.scales[[3, 9]], s[[3, 9]])  # scales of empty channels unchanged


def test_one_cluster(rng):
    q = np.full((4, 10), 5, np.int8) * np.array([1, 2, 3, 4], np.int8)[:, None]
    f = fold_weights(q, np.full(4, 0.01, np.float32), 1, per_channel=True)
    assert f.codebook.size == 1 and f.sqnr_db > 40  # per-channel scales absorb the rest
    q[0, 0] = 0
    with pytest.raises(UsageError, match="zero"):
        fold_weights(q, np.full(4, 0.01, np.float32), 1, per_channel=True)


def test_per_tensor_weights_keep_one_scale(rng):
    q = rng.integers(-127, 128, size=(8, 64)).astype(np.int8)
    f = fold_weights(q, np.array([0.02], np.float32), 16, per_channel=False)
    assert f.scales.shape == (1,) and f.codebook.size <= 16 and f.sqnr_db > 20


def test_fold_is_deterministic(rng):
    q, s, _, _ = clustered_layer(rng, 32, 144, kind="gain", prune=0.5)
    a, b = fold_weights(q, s, 16, per_channel=True), fold_weights(q, s, 16, per_channel=True)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.scales, b.scales)
    assert np.array_equal(a.codebook.values, b.codebook.values)


def test_codebook_index_bits():
    assert [Codebook(np.arange(k, dtype=np.int8)).index_bits for k in (1, 2, 3, 4, 5, 16, 17)] \
        == [1, 1, 2, 2, 3, 4, 5]
    assert Codebook(np.arange(-128, 128).astype(np.int8)).index_bits == 8


# --- folding models -------------------------------------------------------------------------

def digits(name: str):
    return read_model(fixture_path(f"{name}.tflite"))


def test_folded_model_is_codebook_values_with_consistent_biases():
    model = digits("digits_b_cluster16_int8")
    result = fold_model(model, 16, check_agreement=False)
    folded = result.model
    assert model.tensors[result.tensors[0].tensor].data is not folded.tensors[
        result.tensors[0].tensor].data  # the input model is left alone
    # conv1 (16 x 3x3x1) is kept dense: 16 codebook bytes + 16 rows of 4-bit indices, each
    # row 4-byte aligned, would be no smaller than its 144 int8 weights (issue 12: never bigger)
    assert [ft.folded for ft in result.tensors] == [False, True, True, True]
    assert result.tensors[0].target_bytes == result.tensors[0].dense_bytes == 144
    for ft in result.tensors[1:]:
        op = folded.operators[ft.operator]
        x, w, b = (folded.tensors[i] for i in op.inputs[:3])
        assert ft.folded and ft.codebook.size <= 16 and ft.sqnr_db >= 40
        assert ft.indices.shape == w.shape and ft.indices.dtype == np.uint8
        assert np.array_equal(ft.codebook.values[ft.indices], w.data)
        assert np.array_equal(w.quantization.scale, ft.scales)
        assert not w.quantization.zero_point.any()
        in_scale = float(x.quantization.scale[0])
        np.testing.assert_allclose(b.quantization.scale, in_scale * ft.scales.astype(np.float64),
                                   rtol=1e-6)
        # the real bias is unchanged up to half of its new step
        old = model.tensors[b.index]
        real_old = old.data * old.quantization.scale.astype(np.float64)
        real_new = b.data * b.quantization.scale.astype(np.float64)
        assert np.all(np.abs(real_new - real_old) <= 0.5 * b.quantization.scale * 1.0001)
        # the packed indices round-trip through the runtime's format
        rows = ft.indices.reshape(ft.indices.shape[0], -1)
        packed = pack_indices(rows, ft.codebook.index_bits)
        assert np.array_equal(unpack_indices(packed, ft.codebook.index_bits, *rows.shape), rows)


def test_folded_model_knows_its_own_hash():
    import hashlib

    result = fold_model(digits("digits_b_cluster16_int8"), 16, check_agreement=False)
    assert result.model.sha256 == hashlib.sha256(serialize_model(result.model)).hexdigest()
    assert result.model.sha256 != digits("digits_b_cluster16_int8").sha256


def test_per_tensor_fixture_folds_bit_identically():
    """<= 16 values per tensor already: the folded model computes exactly what the input
    model computes, on every input (checked on 300 random ones through TFLM)."""
    model = digits("digits_b_cluster16_int8_pertensor")
    result = fold_model(model, "auto", check_agreement=False)
    assert all(t.folded and t.lossless and t.codebook.size <= 16 for t in result.tensors)
    for t in result.tensors:
        assert np.array_equal(result.model.tensors[t.tensor].data, model.tensors[t.tensor].data)
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, size=(300, 16, 16, 1), dtype=np.int8)
    agreement = measure_agreement(model, result.model, x)
    assert agreement.max_abs_diff == 0 and agreement.top1_agreement == 1.0
    again = fold_model(model, 16, check_agreement=False)
    assert serialize_model(again.model) == serialize_model(result.model)


def test_pruned_fixture_keeps_every_zero():
    model = digits("digits_c_prune50_cluster16_sp_int8")
    result = fold_model(model, 16, check_agreement=False)
    for ft in result.tensors:
        before = model.tensors[ft.tensor].data
        after = result.model.tensors[ft.tensor].data
        assert np.all(after[before == 0] == 0)
        assert ft.zeros == np.count_nonzero(before == 0)
        if ft.folded:  # conv1 stays dense: folded it would be no smaller (never bigger)
            assert 0 in ft.codebook.values.tolist() and ft.codebook.size <= 16
    assert sum(ft.folded for ft in result.tensors) == 3


def test_auto_folds_clustered_and_keeps_dense_tensors_dense():
    b = fold_model(digits("digits_b_cluster16_int8"), "auto", check_agreement=False)
    # conv1 stays dense on the CPU: its 16-value fold would be no smaller than 144 int8 weights
    assert [t.codebook.size if t.folded else None for t in b.tensors] == [None, 16, 16, 16]
    assert "144 dense" in b.tensors[0].reason
    a_model = digits("digits_a_baseline_int8")
    a = fold_model(a_model, "auto", check_agreement=False)
    assert not any(t.folded for t in a.tensors)
    assert all("dense" in t.reason and t.codebook is None for t in a.tensors)
    assert serialize_model(a.model) == serialize_model(a_model)


def test_max_error_picks_the_smallest_k_meeting_the_bound():
    """Model b was clustered to 16 values per layer: 40 dB needs exactly those 16."""
    model = digits("digits_b_cluster16_int8")
    result = fold_model(model, max_error_db=40, check_agreement=False)
    # conv1 stays dense: no step of the CPU's index widths is smaller than its int8 weights
    assert [ft.codebook.size if ft.folded else None for ft in result.tensors] == [
        None, 16, 16, 16]
    for ft in result.tensors[1:]:
        assert ft.folded and ft.sqnr_db >= 40
        q = np.moveaxis(model.tensors[ft.tensor].data, ft.channel_axis, 0)
        q = q.reshape(q.shape[0], -1)
        scales = model.tensors[ft.tensor].quantization.scale
        smaller = fold_weights(q, scales, ft.codebook.size - 1, per_channel=True)
        assert smaller.sqnr_db < 40


def bn_depthwise_model(rng, channels=24, k=16):
    """A DEPTHWISE_CONV_2D whose [1, 3, 3, C] weights are a 16-value codebook times a gain per
    channel (batch-norm folded), quantized per channel along axis 3."""
    q, s, _, _ = clustered_layer(rng, channels, 9, k=k, kind="gain")
    weights = q.T.reshape(1, 3, 3, channels)
    bias = rng.integers(-3000, 3000, channels).astype(np.int32)
    s_in = 0.02
    opts = tfl.DepthwiseConv2DOptionsT()
    opts.padding, opts.strideH, opts.strideW, opts.depthMultiplier = tfl.Padding.SAME, 1, 1, 1
    opts.dilationHFactor = opts.dilationWFactor = 1
    opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
    return single_op_model(
        tfl.BuiltinOperator.DEPTHWISE_CONV_2D,
        [T([1, 6, 6, channels], s=s_in, zp=-3),
         T([1, 3, 3, channels], s=list(s), zp=0, data=weights, qdim=3),
         T([channels], np.int32, [s_in * float(v) for v in s], 0, bias, 0)],
        [T([1, 6, 6, channels], s=0.05, zp=2)], "DepthwiseConv2DOptions", opts, version=3)


def test_depthwise_weights_fold_along_axis_3(rng):
    model = parse_model(bn_depthwise_model(rng), "dw.tflite")
    result = fold_model(model, 16)
    ft = result.tensors[0]
    assert ft.channel_axis == 3 and ft.indices.shape == (1, 3, 3, 24) and ft.scales.size == 24
    assert ft.sqnr_db >= 40 and ft.codebook.size <= 16 and ft.hypothesis == "per-channel gain"
    w = result.model.tensors[ft.tensor]
    assert w.quantization.axis == 3
    assert np.array_equal(ft.codebook.values[ft.indices], w.data)
    assert result.agreement.top1_agreement >= 0.9 and result.agreement.mean_abs_diff < 1.0


def test_calibration_float_and_int8_agree():
    model = digits("digits_b_cluster16_int8")
    x = np.load(fixture_path("digits_test.npz"))["x"][:40]
    by_float = fold_model(model, 16, calibration=x)
    inp = model.tensors[model.inputs[0]].quantization
    x8 = np.clip(np.round(x / inp.scale[0]) + inp.zero_point[0], -128, 127).astype(np.int8)
    by_int8 = fold_model(model, 16, calibration=x8)
    assert by_float.agreement == by_int8.agreement
    assert by_float.agreement.samples == 40 and by_float.agreement.top1_agreement >= 0.95


@pytest.mark.parametrize("k", [0, 257, -1, "many", 2.5])
def test_clusters_outside_1_to_256_are_refused(k):
    with pytest.raises(UsageError, match="1..256"):
        fold_model(digits("digits_b_cluster16_int8"), k)


def test_calibration_of_the_wrong_shape_or_dtype_is_refused():
    model = digits("digits_b_cluster16_int8")
    with pytest.raises(UsageError, match=r"shape \[5, 8, 8\].*\[1, 16, 16, 1\]"):
        fold_model(model, 16, calibration=np.zeros((5, 8, 8), np.int8))
    with pytest.raises(UsageError, match="dtype uint8.*int8"):
        fold_model(model, 16, calibration=np.zeros((5, 16, 16, 1), np.uint8))


def test_model_without_int8_weights_is_refused():
    def to_uint8(m):
        for op in m.subgraphs[0].operators:
            t = m.subgraphs[0].tensors[op.inputs[1]] if len(op.inputs) > 1 else None
            if t is not None and t.type == tfl.TensorType.INT8:
                t.type = tfl.TensorType.UINT8

    model = parse_model(edit_model("digits_b_cluster16_int8.tflite", to_uint8), "u8.tflite")
    with pytest.raises(ModelError, match="u8.tflite: no int8 weight tensors"):
        fold_model(model, 16)


def test_bias_that_cannot_follow_the_new_scales_is_refused():
    def bias_not_constant(m):
        sg = m.subgraphs[0]
        for op in sg.operators:
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                sg.tensors[op.inputs[2]].buffer = 0  # the empty buffer: no constant data
                return

    model = parse_model(edit_model("digits_b_cluster16_int8.tflite", bias_not_constant), "nb.tflite")
    with pytest.raises(ModelError, match="nb.tflite: operator 0 .*bias .* not constant"):
        # on the NPU board conv1 folds (on the CPU it would stay dense, never bigger)
        fold_model(model, 16, check_agreement=False, board="corstone-300")
