"""`edgepack inspect`: distinct-value counts and verdicts per weight tensor."""

import json

import numpy as np
import pytest

from edgepack.cli import main
from edgepack.inspect import inspect_model
from edgepack.tflite import read_model
from tests.conftest import INT8_MODELS, fixture_path

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover
    from tflite_runtime.interpreter import Interpreter


@pytest.mark.parametrize("name", INT8_MODELS)
def test_counts_agree_with_numpy_on_litert_tensors(name):
    """The counts are computed again, independently, from LiteRT's own view of the buffers."""
    path = fixture_path(name)
    info = inspect_model(read_model(path))
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    for w in info["weights"]:
        q = it.get_tensor(w["tensor"])
        assert list(q.shape) == w["shape"]
        assert np.unique(q).size == w["distinct_int8"]
        per_channel = np.moveaxis(q, w["channel_axis"], 0).reshape(q.shape[w["channel_axis"]], -1)
        assert max(np.unique(r).size for r in per_channel) == w["max_distinct_per_channel"]
        assert np.isclose(np.mean(q == 0), w["zero_fraction"])
        assert w["zero_channels"] == [c for c in range(len(per_channel)) if not per_channel[c].any()]


def verdicts(name):
    return [w["verdict"] for w in inspect_model(read_model(fixture_path(name)))["weights"]]


def test_verdicts_tell_clustered_per_channel_from_palette_ready_and_dense():
    assert set(verdicts("digits_a_baseline_int8.tflite")) == {"dense"}
    assert set(verdicts("digits_b_cluster16_int8.tflite")) == {"clustered-per-channel"}
    assert set(verdicts("digits_b_cluster16_int8_pertensor.tflite")) == {"palette-ready"}
    assert set(verdicts("digits_c_prune50_cluster16_sp_int8.tflite")) == {"clustered-per-channel"}


def test_shared_codebook_size_recovers_the_16_clusters():
    for name in ("digits_b_cluster16_int8.tflite", "digits_c_prune50_cluster16_sp_int8.tflite"):
        info = inspect_model(read_model(fixture_path(name)))
        assert [w["distinct_shared"] for w in info["weights"]] == [16, 16, 16, 16]
        assert all(w["distinct_int8"] > 16 for w in info["weights"][1:])


def test_batch_norm_gains_are_recovered_per_channel(rng):
    """A layer whose channels are one codebook times a per-channel gain needs that codebook."""
    from edgepack.inspect import shared_codebook_size

    codebook = np.linspace(-1, 1, 8)
    gains = rng.uniform(0.1, 3.0, size=32)
    real = gains[:, None] * codebook[rng.integers(0, 8, size=(32, 200))]
    scales = np.abs(real).max(axis=1) / 127
    q = np.round(real / scales[:, None]).astype(np.int64)
    shared = shared_codebook_size(q, scales)
    count, hypothesis = shared.values, shared.hypothesis
    assert count == 8 and hypothesis in ("per-channel peak", "per-channel gain")


def test_json_output_is_machine_readable(digits_b, capsys):
    assert main(["inspect", str(digits_b), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_weights"] == 38160
    assert {"distinct_int8", "max_distinct_per_channel", "distinct_shared", "zero_fraction",
            "zero_channels", "verdict", "summary", "granularity"} <= set(info["weights"][0])


def test_text_output_names_every_weight_tensor(digits_b, capsys):
    assert main(["inspect", str(digits_b)]) == 0
    out = capsys.readouterr().out
    assert "FULLY_CONNECTED" in out and "clustered to 16 values" in out
