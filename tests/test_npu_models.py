"""Specification: Vela's compilation of every int8 fixture model, executed by the functional
Ethos-U55 model (edgepack.npu), is bit-exact with the TFLM interpreter, for every U55 MAC
configuration, through both entry points (Vela's tflite output and its raw npz output), for the
model as given and as `edgepack build` folds it (200 random inputs each, softmax included)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from edgepack.fold import fold_model
from edgepack.npu import run_vela_model, run_vela_raw
from edgepack.tflite import read_model, serialize_model
from tests.conftest import INT8_MODELS, fixture_path
from tests.npu_support import U55_CONFIGS, compile_vela, tflm_batch

N_INPUTS = 200


@lru_cache(maxsize=None)
def _inputs_and_golden(model: str):
    rng = np.random.default_rng(abs(hash(model)) % 2**32)
    x = rng.integers(-128, 128, size=(N_INPUTS, 1, 16, 16, 1), dtype=np.int8)
    return x, tflm_batch(fixture_path(model), [x])[0]


@pytest.mark.parametrize("accel", U55_CONFIGS)
@pytest.mark.parametrize("model", INT8_MODELS)
def test_vela_tflite_output_is_bit_exact_with_tflm(model, accel):
    x, golden = _inputs_and_golden(model)
    out = run_vela_model(compile_vela(fixture_path(model), accel, "tflite"), [x])[0]
    assert out.dtype == golden.dtype and out.shape == golden.shape
    bad = np.nonzero((out != golden).reshape(N_INPUTS, -1).any(axis=1))[0]
    assert len(bad) == 0, f"{len(bad)} of {N_INPUTS} inputs differ, first {bad[0]}: {out[bad[0]]} vs {golden[bad[0]]}"


@lru_cache(maxsize=None)
def _folded(model: str) -> tuple[bytes, np.ndarray]:
    """The model as `edgepack build` folds it (layer-shared codebooks), and TFLM's outputs for it."""
    folded = serialize_model(fold_model(read_model(fixture_path(model))).model)
    x, _ = _inputs_and_golden(model)
    return folded, tflm_batch(folded, [x])[0]


@pytest.mark.parametrize("accel", U55_CONFIGS)
@pytest.mark.parametrize("model", INT8_MODELS)
def test_vela_output_of_the_folded_model_is_bit_exact_with_tflm(model, accel):
    x, _ = _inputs_and_golden(model)
    folded, golden = _folded(model)
    out = run_vela_model(compile_vela(folded, accel, "tflite"), [x])[0]
    assert out.shape == golden.shape == (N_INPUTS, 1, 10)
    bad = np.nonzero((out != golden).reshape(N_INPUTS, -1).any(axis=1))[0]
    assert len(bad) == 0, f"{len(bad)} of {N_INPUTS} inputs differ, first {bad[0]}: {out[bad[0]]} vs {golden[bad[0]]}"


@pytest.mark.parametrize("accel", U55_CONFIGS)
@pytest.mark.parametrize("model", INT8_MODELS)
def test_vela_raw_output_is_bit_exact_with_tflm(model, accel):
    x, golden = _inputs_and_golden(model)
    out = run_vela_raw(compile_vela(fixture_path(model), accel, "raw"), [x])[0]
    np.testing.assert_array_equal(out.reshape(golden.shape), golden)


def test_single_inference_without_batch_dimension():
    x, golden = _inputs_and_golden(INT8_MODELS[0])
    vm = compile_vela(fixture_path(INT8_MODELS[0]), "ethos-u55-128")
    out = run_vela_model(vm, [x[3]])[0]
    assert out.shape == golden.shape[1:]
    np.testing.assert_array_equal(out, golden[3])
    # the model's batch dimension of 1 may be replaced by B
    out = run_vela_model(vm.read_bytes(), [x[:5, 0]])[0]
    np.testing.assert_array_equal(out, golden[:5])


def test_test_split_accuracy_matches_tflm():
    """The real digits test split (quantized), not only random inputs."""
    from ai_edge_litert import schema_py_generated as tfl

    model = "digits_b_cluster16_int8_pertensor.tflite"
    m = tfl.ModelT.InitFromPackedBuf(fixture_path(model).read_bytes(), 0)
    q = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].quantization
    d = np.load(fixture_path("digits_test.npz"))
    x = np.clip(np.round(d["x"] / q.scale[0]) + q.zeroPoint[0], -128, 127).astype(np.int8)[:, None]
    golden = tflm_batch(fixture_path(model), [x])[0]
    out = run_vela_model(compile_vela(fixture_path(model), "ethos-u55-64"), [x])[0]
    np.testing.assert_array_equal(out, golden)
    assert (out.reshape(len(x), -1).argmax(axis=1) == d["y"]).mean() > 0.95


@pytest.mark.parametrize("model", INT8_MODELS)
def test_ethos_u65_256_shares_the_command_set(model):
    """U65-256 (one core, Dedicated_Sram: a separate scratch_fast arena cache) runs the same model."""
    x, golden = _inputs_and_golden(model)
    out = run_vela_model(compile_vela(fixture_path(model), "ethos-u65-256"), [x[:50]])[0]
    np.testing.assert_array_equal(out, golden[:50])


def test_ethos_u65_512_two_cores_is_rejected_not_guessed():
    from edgepack.errors import ModelError

    x, _ = _inputs_and_golden(INT8_MODELS[0])
    with pytest.raises(ModelError, match="512 MACs"):
        run_vela_model(compile_vela(fixture_path(INT8_MODELS[0]), "ethos-u65-512"), [x[:1]])
